"""UnregisterBroker through the real codec, with a controller running the controller's own
operation (controller/quorum/brokers.py) over the fake node's image."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.handlers import broker_registrations as handlers
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata import MetadataDelta, MetadataImage
from odradek.controller.metadata.records import register_broker_record
from odradek.controller.metadata.requests import (
    BrokerResult,
    ControllerUnavailable,
    NotControllerError,
)
from odradek.controller.quorum.brokers import unregister_broker
from tests.unit.broker.handlers.acl_fixtures import (
    CLUSTER_ALTER_PRINCIPALS,
    OFF,
    cluster_alter_authorization,
)

UNREGISTER_BROKER = 64
SERVED = {UNREGISTER_BROKER: (0, 0)}


class Controller:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.fail: Exception | None = None
        self.calls: list[int] = []

    async def unregister_broker(self, broker_id: int) -> BrokerResult:
        self.calls.append(broker_id)
        if self.fail is not None:
            raise self.fail
        result = unregister_broker(self.node.image, broker_id)
        self.node.image = applied(self.node.image, result.records)
        return result.response


class Node:
    def __init__(self, authz: Authorization = OFF) -> None:
        self.image = applied(MetadataImage.EMPTY, [register_broker_record(1, "a"),
                                                   register_broker_record(2, "b")])
        self.authorization = authz
        self.controller = Controller(self)


def applied(image: MetadataImage, records: Any) -> MetadataImage:
    delta = MetadataDelta(image)
    for record in records:
        delta.replay(record, delta.offset + 1)
    return delta.apply()


def unregister(node: Node, broker_id: int, principal: str = "User:ANONYMOUS") -> Any:
    frame = codec.encode_request(codec.build_request(
        UNREGISTER_BROKER, 0, {"broker_id": broker_id}), 5, "t")
    req = codec.decode_request(frame[4:], SERVED).body
    ctx = RequestContext(UNREGISTER_BROKER, 0, 5, "t", "h", 1, principal=principal)
    payload = asyncio.run(handlers.handle_unregister_broker(node, ctx, req))  # type: ignore[arg-type]
    out = bytes(codec.encode_response(UNREGISTER_BROKER, 0, 5, payload))
    return codec.decode_response(out[4:], UNREGISTER_BROKER, 0)[1]


def test_unregisters_a_registered_broker() -> None:
    node = Node()
    response = unregister(node, 2)
    assert (response.error_code, response.error_message) == (0, None)
    assert sorted(node.image.brokers) == [1]
    assert node.controller.calls == [2]


def test_an_unknown_id_is_broker_id_not_registered_with_kafkas_text_left_to_the_client(
) -> None:
    # Kafka's controller answers only the code; the Java client then shows the error's own
    # text, "The given broker ID was not registered."
    node = Node()
    response = unregister(node, 7)
    assert (response.error_code, response.error_message) == (
        ErrorCode.broker_id_not_registered, None)
    assert sorted(node.image.brokers) == [1, 2]
    assert unregister(node, 2).error_code == 0
    assert unregister(node, 2).error_code == ErrorCode.broker_id_not_registered


@pytest.mark.parametrize(("failure", "code"), [
    (ControllerUnavailable("UnregisterBroker", 1.0, []), ErrorCode.request_timed_out),
    (NotControllerError("not the active controller"), ErrorCode.not_controller)])
def test_a_controller_failure_is_a_code_the_client_retries_on(failure: Exception,
                                                              code: ErrorCode) -> None:
    node = Node()
    node.controller.fail = failure
    response = unregister(node, 1)
    assert response.error_code == code
    assert response.error_message.startswith("the controller quorum did not complete")
    assert sorted(node.image.brokers) == [1, 2]


@pytest.mark.parametrize(("principal", "allowed"), CLUSTER_ALTER_PRINCIPALS)
def test_needs_alter_on_the_cluster(principal: str, allowed: bool) -> None:
    node = Node(cluster_alter_authorization())
    response = unregister(node, 1, principal=principal)
    if allowed:
        assert (response.error_code, sorted(node.image.brokers)) == (0, [2])
    else:
        assert (response.error_code, response.error_message) == (
            ErrorCode.cluster_authorization_failed, "Cluster authorization failed.")
        assert node.controller.calls == []


def test_api_versions_advertises_unregister_broker_from_the_node_table() -> None:
    from odradek.broker.node import handler_table

    spec = handler_table()[UNREGISTER_BROKER]
    assert (spec.min_version, spec.max_version) == (0, 0)

"""AddRaftVoter / RemoveRaftVoter through the real codec against a fake node: what reaches
the controllers, Kafka's error codes for each refusal, cluster id and ALTER CLUSTER checks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.handlers import raft_voters
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata.requests import ControllerUnavailable, VoterChangeFailed
from tests.unit.broker.handlers.acl_fixtures import (
    CLUSTER_ALTER_PRINCIPALS,
    OFF,
    cluster_alter_authorization,
)

ADD, REMOVE = 80, 81
SERVED = {ADD: (0, 1), REMOVE: (0, 0)}


class Node:
    def __init__(self, authz: Authorization = OFF) -> None:
        self.authorization = authz
        self.cluster_id = "abc"
        self.calls: list[tuple[Any, ...]] = []
        self.fail: Exception | None = None

    async def add_raft_voter(self, node_id: int, address: str, timeout_s: float,
                             directory_id: str) -> None:
        self.calls.append(("add", node_id, address, timeout_s, directory_id))
        if self.fail is not None:
            raise self.fail

    async def remove_raft_voter(self, node_id: int, timeout_s: float,
                                directory_id: str) -> None:
        self.calls.append(("remove", node_id, directory_id))
        if self.fail is not None:
            raise self.fail


def call(node: Node, api_key: int, data: dict[str, Any], version: int = 0,
         principal: str = "User:ANONYMOUS") -> Any:
    frame = codec.encode_request(codec.build_request(api_key, version, data), 5, "t")
    req = codec.decode_request(frame[4:], SERVED).body
    handler = raft_voters.handle_add_raft_voter if api_key == ADD \
        else raft_voters.handle_remove_raft_voter
    ctx = RequestContext(api_key, version, 5, "t", "h", 1, principal=principal)
    payload = asyncio.run(handler(node, ctx, req))  # type: ignore[arg-type]
    out = bytes(codec.encode_response(api_key, version, 5, payload))
    return codec.decode_response(out[4:], api_key, version)[1]


# A directory id and its text form in meta.properties (Kafka's Uuid: URL-safe base64).
DIRECTORY = uuid.UUID(bytes=bytes(range(1, 17)))
DIRECTORY_TEXT = "AQIDBAUGBwgJCgsMDQ4PEA"


def add(node: Node, voter: int = 4, cluster_id: str | None = None,
        listeners: list[dict[str, Any]] | None = None, timeout_ms: int = 5_000,
        directory: uuid.UUID = DIRECTORY, **kw: Any) -> Any:
    if listeners is None:
        listeners = [{"name": "PLAINTEXT", "host": "h", "port": 9092},
                     {"name": "CONTROLLER", "host": "c4", "port": 9093}]
    return call(node, ADD, {"cluster_id": cluster_id, "timeout": timeout_ms, "voter_id": voter,
                            "voter_directory_id": directory, "listeners": listeners,
                            "ack_when_committed": True}, version=1, **kw)


def remove(node: Node, voter: int = 3, directory: uuid.UUID = DIRECTORY, **kw: Any) -> Any:
    return call(node, REMOVE, {"cluster_id": None, "voter_id": voter,
                               "voter_directory_id": directory}, **kw)


def test_add_sends_the_controller_listener_and_timeout() -> None:
    node = Node()
    assert add(node).error_code == ErrorCode.none
    assert node.calls == [("add", 4, "c4:9093", 5.0, DIRECTORY_TEXT)]
    add(node, listeners=[{"name": "X", "host": "::1", "port": 7}])
    assert node.calls[-1][2] == "[::1]:7"
    assert remove(node).error_code == ErrorCode.none
    assert node.calls[-1] == ("remove", 3, DIRECTORY_TEXT)
    # The zero Uuid is "no directory id": passed on as "", which checks nothing.
    add(node, directory=uuid.UUID(int=0))
    assert node.calls[-1][4] == ""
    remove(node, directory=uuid.UUID(int=0))
    assert node.calls[-1] == ("remove", 3, "")


@pytest.mark.parametrize(("error", "code"), [
    ("duplicate_voter", ErrorCode.duplicate_voter),
    ("voter_not_found", ErrorCode.voter_not_found),
    ("timed_out", ErrorCode.request_timed_out),
    ("not_single_change", ErrorCode.invalid_request),
    ("directory_mismatch", ErrorCode.invalid_request),
    ("not_leader", ErrorCode.not_leader_or_follower),
    ("unsupported", ErrorCode.unsupported_version),
])
def test_refusals_map_to_kafka_errors(error: str, code: ErrorCode) -> None:
    node = Node()
    node.fail = VoterChangeFailed(error, f"because {error}")
    for answer in (add(node), remove(node)):
        assert answer.error_code == code
        assert answer.error_message == f"because {error}"


def test_no_controller_answering_is_a_timeout() -> None:
    node = Node()
    node.fail = ControllerUnavailable("AddVoter", 1.0, [])
    assert add(node).error_code == ErrorCode.request_timed_out


def test_wrong_cluster_and_bad_requests_reach_no_controller() -> None:
    node = Node()
    assert add(node, cluster_id="other").error_code == ErrorCode.inconsistent_cluster_id
    assert add(node, cluster_id="abc").error_code == ErrorCode.none
    assert add(node, listeners=[]).error_code == ErrorCode.invalid_request
    assert add(node, voter=-1).error_code == ErrorCode.invalid_request
    assert add(node, voter=0).error_code == ErrorCode.invalid_request
    assert len(node.calls) == 1


def test_the_requests_timeout_is_bounded() -> None:
    node = Node()
    for asked_ms, used_s in ((5_000, 5.0), (0, 30.0), (-7, 30.0), (2**31 - 1, 120.0)):
        assert add(node, timeout_ms=asked_ms).error_code == ErrorCode.none
        assert node.calls[-1][3] == used_s


@pytest.mark.parametrize(("principal", "allowed"), CLUSTER_ALTER_PRINCIPALS)
def test_needs_alter_on_the_cluster(principal: str, allowed: bool) -> None:
    node = Node(cluster_alter_authorization())
    for answer in (add(node, principal=principal), remove(node, principal=principal)):
        expected = ErrorCode.none if allowed else ErrorCode.cluster_authorization_failed
        assert answer.error_code == expected
    assert len(node.calls) == (2 if allowed else 0)

"""DescribeClientQuotas and AlterClientQuotas through the real codec, with a fake node whose
quota configs follow metadata images as the node's do (quota_configs_of), and a controller
running the controller's own operation over that image."""

from __future__ import annotations

import asyncio
from typing import Any

from kio.schema.errors import ErrorCode

from odradek.broker.handlers import client_quotas as handlers
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.security.authorization import Authorization
from odradek.broker.security.authorizer import AclIndex
from odradek.broker.security.quota_metadata import quota_configs_of
from odradek.broker.security.quotas import QuotaConfigs
from odradek.controller.metadata import MetadataDelta, MetadataImage
from odradek.controller.metadata.requests import ControllerUnavailable
from odradek.controller.quorum.client_quotas import alter_client_quotas

SERVED = {s.api_key: (s.min_version, s.max_version) for s in handlers.APIS}
EXACT, DEFAULT, ANY = 0, 1, 2


class Controller:
    def __init__(self, node: Node) -> None:
        self.node, self.fail, self.calls = node, False, 0

    async def alter_client_quotas(self, changes: Any) -> Any:
        self.calls += 1
        if self.fail:
            raise ControllerUnavailable("AlterClientQuotas", 1.0, [])
        result = alter_client_quotas(self.node.image, changes)
        delta = MetadataDelta(self.node.image)
        for record in result.records:
            delta.replay(record, delta.offset + 1)
        self.node.set_image(delta.apply())
        return result.response


class Node:
    def __init__(self, authorizer: bool = False) -> None:
        self.image = MetadataImage.EMPTY
        self.quota_configs = QuotaConfigs()
        self.authorization = Authorization(authorizer, frozenset({"User:admin"}), False,
                                           lambda: AclIndex.EMPTY)
        self.controller = Controller(self)

    def set_image(self, image: MetadataImage) -> None:
        # What Node._on_metadata does.
        self.quota_configs = quota_configs_of(self.quota_configs, self.image.client_quotas,
                                              image.client_quotas)
        self.image = image


def call(node: Node, api_key: int, data: dict[str, Any], version: int = 1,
         principal: str = "User:ANONYMOUS") -> Any:
    frame = codec.encode_request(codec.build_request(api_key, version, data), 5, "t")
    req = codec.decode_request(frame[4:], SERVED).body
    handler = {s.api_key: s.handler for s in handlers.APIS}[api_key]
    ctx = RequestContext(api_key, version, 5, "t", "h", 1, principal=principal)
    payload = asyncio.run(handler(node, ctx, req))  # type: ignore[arg-type]
    out = bytes(codec.encode_response(api_key, version, 5, payload))
    return codec.decode_response(out[4:], api_key, version)[1]


def entry(entity: dict[str, str | None], ops: dict[str, float | None]) -> dict[str, Any]:
    return {"entity": [{"entity_type": t, "entity_name": n} for t, n in entity.items()],
            "ops": [{"key": k, "value": 0.0 if v is None else v, "remove": v is None}
                    for k, v in ops.items()]}


def alter(node: Node, *entries: dict[str, Any], validate_only: bool = False, version: int = 1
          ) -> list[tuple[int, str | None]]:
    response = call(node, 49, {"entries": list(entries), "validate_only": validate_only},
                    version)
    return [(int(e.error_code), e.error_message) for e in response.entries]


def describe(node: Node, *components: tuple[str, int, str | None], strict: bool = False,
             version: int = 1) -> Any:
    return call(node, 48, {"components": [{"entity_type": t, "match_type": m, "match": n}
                                          for t, m, n in components], "strict": strict},
                version)


def described(response: Any) -> dict[tuple[tuple[str, str | None], ...], dict[str, float]]:
    assert response.error_code == 0, response.error_message
    return {tuple((e.entity_type, e.entity_name) for e in en.entity):
            {v.key: v.value for v in en.values} for en in response.entries}


def test_alter_then_describe_with_kafkas_filters() -> None:
    node = Node()
    assert alter(node,
                 entry({"user": "alice"}, {"producer_byte_rate": 1024.0}),
                 entry({"user": "alice", "client-id": "app"}, {"request_percentage": 50.0}),
                 entry({"user": None}, {"consumer_byte_rate": 2048.0}),
                 entry({"client-id": "app"}, {"producer_byte_rate": 10.0})) == [(0, None)] * 4
    everything = described(describe(node))
    assert len(everything) == 4
    assert described(describe(node, ("user", EXACT, "alice"))) == {
        (("user", "alice"),): {"producer_byte_rate": 1024.0},
        (("user", "alice"), ("client-id", "app")): {"request_percentage": 50.0}}
    assert described(describe(node, ("user", EXACT, "alice"), strict=True)) == {
        (("user", "alice"),): {"producer_byte_rate": 1024.0}}
    assert described(describe(node, ("user", DEFAULT, None))) == {
        (("user", None),): {"consumer_byte_rate": 2048.0}}
    assert set(described(describe(node, ("client-id", ANY, None)))) == {
        (("user", "alice"), ("client-id", "app")), (("client-id", "app"),)}
    # v0 too.
    assert len(described(describe(node, version=0))) == 4


def test_describe_errors_are_kafkas() -> None:
    response = describe(Node(), ("user", EXACT, None))
    assert (response.error_code, response.error_message, response.entries) == (
        ErrorCode.invalid_request,
        "Request specified MATCH_TYPE_EXACT, but set match string to null.", None)
    assert describe(Node(), ("nope", ANY, None)).error_code == ErrorCode.unsupported_version


def test_invalid_entries_change_nothing_and_the_others_apply() -> None:
    node = Node()
    got = alter(node,
                entry({"user": "bob"}, {"producer_byte_rate": 1.5}),
                entry({"user": "carol"}, {"unknown_key": 1.0}),
                entry({"user": "dave"}, {"consumer_byte_rate": 0.0}),
                entry({"user": "erin"}, {"producer_byte_rate": 100.0}))
    assert got == [(ErrorCode.invalid_request, "producer_byte_rate cannot be a fractional value."),
                   (ErrorCode.invalid_request, "Invalid configuration key unknown_key"),
                   (ErrorCode.invalid_request, "Quota consumer_byte_rate must be greater than 0"),
                   (0, None)]
    assert described(describe(node)) == {(("user", "erin"),): {"producer_byte_rate": 100.0}}


def test_validate_only_changes_nothing() -> None:
    node = Node()
    assert alter(node, entry({"user": "alice"}, {"producer_byte_rate": 5.0}),
                 validate_only=True) == [(0, None)]
    assert node.controller.calls == 0 and described(describe(node)) == {}


def test_removal_and_a_stale_broker_image() -> None:
    node = Node()
    alter(node, entry({"user": "alice"}, {"producer_byte_rate": 5.0}))
    # This broker's image lags: it still shows the old value, the controller has 7.
    stale = node.image
    alter(node, entry({"user": "alice"}, {"producer_byte_rate": 7.0}))
    node.image, node.quota_configs = stale, quota_configs_of(QuotaConfigs(), {},
                                                             stale.client_quotas)
    # Setting 5 again is sent (it differs at the controller) and applies.
    assert alter(node, entry({"user": "alice"}, {"producer_byte_rate": 5.0})) == [(0, None)]
    assert node.image.client_quotas[(("user", "alice"),)] == {"producer_byte_rate": 5.0}
    alter(node, entry({"user": "alice"}, {"producer_byte_rate": None}))
    assert described(describe(node)) == {}


def test_controller_trouble_is_a_retriable_error_per_valid_entry() -> None:
    node = Node()
    node.controller.fail = True
    got = alter(node, entry({"user": "a"}, {"producer_byte_rate": 1.0}),
                entry({"user": "b"}, {"bad": 1.0}))
    assert [code for code, _ in got] == [ErrorCode.request_timed_out, ErrorCode.invalid_request]


def test_quota_configs_follow_images_by_identity() -> None:
    configs = QuotaConfigs()
    image = MetadataImage.EMPTY
    assert quota_configs_of(configs, image.client_quotas, image.client_quotas) is configs


def test_quota_apis_need_the_cluster_config_permissions() -> None:
    """Kafka: DESCRIBE_CONFIGS on the cluster to describe quotas, ALTER_CONFIGS to alter."""
    node = Node(authorizer=True)
    described = call(node, 48, {"strict": False, "components": []}, principal="User:bob")
    assert int(described.error_code) == 31
    altered = call(node, 49, {"validate_only": False, "entries": [{
        "entity": [{"entity_type": "user", "entity_name": "bob"}],
        "ops": [{"key": "producer_byte_rate", "value": 1000.0, "remove": False}]}]},
        principal="User:bob")
    assert [int(e.error_code) for e in altered.entries] == [31]
    assert int(call(node, 48, {"strict": False, "components": []},
                    principal="User:admin").error_code) == 0

"""DescribeAcls, CreateAcls and DeleteAcls through the real codec, with a fake node whose ACL
index follows metadata images as the node's does (updated_index), and a fake controller."""

from __future__ import annotations

import asyncio
import random
import uuid
from types import SimpleNamespace
from typing import Any

from kio.schema.errors import ErrorCode

from odradek.broker.handlers import acls as handlers
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.security.acl_metadata import updated_index
from odradek.broker.security.authorization import Authorization
from odradek.broker.security.authorizer import AclIndex
from odradek.controller.metadata import MetadataDelta, MetadataImage
from odradek.controller.metadata.acls import StandardAcl
from odradek.controller.metadata.records import access_control_entry_record
from odradek.controller.metadata.requests import ControllerUnavailable
from odradek.controller.quorum.acls import create_acls, delete_acls

SERVED = {s.api_key: (s.min_version, s.max_version) for s in handlers.APIS}
TOPIC, GROUP = 2, 3
LITERAL, PREFIXED = 3, 4
ANY, READ, WRITE = 1, 3, 4
ALLOW = 3


class Controller:
    """The controller's own operations over the node's image (one process)."""

    def __init__(self, node: Node, fail: bool = False) -> None:
        self.node, self.fail, self.rng = node, fail, random.Random(5)
        self.asked: list[Any] = []

    def _apply(self, result: Any) -> Any:
        delta = MetadataDelta(self.node.image)
        for record in result.records:
            delta.replay(record, delta.offset + 1)
        self.node.set_image(delta.apply())
        return result.response

    async def create_acls(self, acls: Any) -> Any:
        self.asked.append(list(acls))
        if self.fail:
            raise ControllerUnavailable("CreateAcls", 1.0, [])
        return self._apply(create_acls(self.node.image, acls, self.rng))

    async def delete_acls(self, filters: Any) -> Any:
        self.asked.append(list(filters))
        return self._apply(delete_acls(self.node.image, filters))


class Node:
    def __init__(self, enabled: bool = True) -> None:
        self.image = MetadataImage.EMPTY
        self.acls = AclIndex.EMPTY
        # User:ANONYMOUS (the tests' principal) is a super user: these tests are about
        # what the APIs do; test_acl_apis_need_the_cluster_permission about who may.
        self.authorization = Authorization(enabled, frozenset({"User:ANONYMOUS"}), False,
                                           lambda: self.acls)
        self.controller = Controller(self)

    def set_image(self, image: MetadataImage) -> None:
        # What Node._on_metadata does.
        self.acls = updated_index(self.acls, self.image.acls, image.acls)
        self.image = image


def call(node: Node, api_key: int, data: dict[str, Any], version: int = 3,
         principal: str = "User:ANONYMOUS") -> Any:
    frame = codec.encode_request(codec.build_request(api_key, version, data), 5, "t")
    req = codec.decode_request(frame[4:], SERVED).body
    handler = {s.api_key: s.handler for s in handlers.APIS}[api_key]
    ctx = RequestContext(api_key, version, 5, "t", "h", 1, principal=principal)
    payload = asyncio.run(handler(node, ctx, req))  # type: ignore[arg-type]
    out = bytes(codec.encode_response(api_key, version, 5, payload))
    return codec.decode_response(out[4:], api_key, version)[1]


def creation(name: str = "orders", pattern: int = LITERAL, principal: str = "User:alice",
             op: int = READ, rtype: int = TOPIC) -> dict[str, Any]:
    return {"resource_type": rtype, "resource_name": name, "resource_pattern_type": pattern,
            "principal": principal, "host": "*", "operation": op, "permission_type": ALLOW}


def acl_filter(rtype: int = ANY, name: str | None = None, pattern: int = ANY,
               principal: str | None = None) -> dict[str, Any]:
    return {"resource_type_filter": rtype, "resource_name_filter": name,
            "pattern_type_filter": pattern, "principal_filter": principal, "host_filter": None,
            "operation": ANY, "permission_type": ANY}


def test_without_an_authorizer_every_acl_api_answers_security_disabled() -> None:
    node = Node(enabled=False)
    assert call(node, 29, acl_filter()).error_code == ErrorCode.security_disabled
    created = call(node, 30, {"creations": [creation(), creation("x")]})
    assert [r.error_code for r in created.results] == [ErrorCode.security_disabled] * 2
    assert created.results[0].error_message == "No Authorizer is configured."
    deleted = call(node, 31, {"filters": [acl_filter()]})
    assert deleted.filter_results[0].error_code == ErrorCode.security_disabled
    assert node.controller.asked == []


def test_create_checks_each_acl_and_keeps_the_request_order() -> None:
    node = Node()
    created = call(node, 30, {"creations": [
        creation(), creation("other", rtype=4),  # CLUSTER must be named kafka-cluster
        creation("pay-", PREFIXED), creation(principal="alice"), creation()]})
    assert [(r.error_code, r.error_message) for r in created.results] == [
        (0, None),
        (ErrorCode.invalid_request, "The only valid name for the CLUSTER resource is "
                                    "kafka-cluster"),
        (0, None),
        (ErrorCode.invalid_request, "Could not parse principal from `alice` (no colon is "
                                    "present separating the principal type from the "
                                    "principal name)"),
        (0, None)]
    # Only the valid ones went to the controller; the copy made no second ACL.
    assert len(node.controller.asked[0]) == 3 and len(node.image.acls) == 2
    assert len(node.acls) == 2


def test_describe_groups_by_resource_pattern_from_the_index() -> None:
    node = Node()
    call(node, 30, {"creations": [creation(), creation(op=WRITE), creation("pay-", PREFIXED),
                                  creation("g", rtype=GROUP)]})
    got = call(node, 29, acl_filter(TOPIC))
    assert got.error_code == 0
    assert [(r.resource_name, int(r.pattern_type), sorted(int(a.operation) for a in r.acls))
            for r in got.resources] == [("orders", LITERAL, [READ, WRITE]),
                                       ("pay-", PREFIXED, [READ])]
    match = call(node, 29, acl_filter(TOPIC, "pay-eu", 2))  # MATCH
    assert [r.resource_name for r in match.resources] == ["pay-"]
    bad = call(node, 29, acl_filter(TOPIC, pattern=9))
    assert (bad.error_code, bad.error_message) == (ErrorCode.invalid_request,
                                                   "Unknown patternFilter.")


def test_delete_answers_the_matching_acls_and_the_index_follows() -> None:
    node = Node()
    call(node, 30, {"creations": [creation(), creation("pay-", PREFIXED), creation("g", rtype=GROUP)]})
    deleted = call(node, 31, {"filters": [acl_filter(TOPIC), acl_filter(rtype=0)]})
    first, second = deleted.filter_results
    assert first.error_code == 0
    assert sorted(m.resource_name for m in first.matching_acls) == ["orders", "pay-"]
    assert (second.error_code, second.error_message) == (ErrorCode.invalid_request,
                                                         "Unknown patternFilter.")
    assert [b.pattern.name for b in node.acls.describe(handlers._filter_of(
        SimpleNamespace(**acl_filter())))] == ["g"]


def test_controller_trouble_is_a_retriable_error_per_acl() -> None:
    node = Node()
    node.controller.fail = True
    created = call(node, 30, {"creations": [creation(), creation(principal="bad")]})
    assert [r.error_code for r in created.results] == [ErrorCode.request_timed_out,
                                                       ErrorCode.invalid_request]


def test_updated_index_shares_unchanged_state_and_skips_unusable_acls() -> None:
    good = StandardAcl(TOPIC, "t", LITERAL, "User:a", "*", READ, ALLOW)
    unusable = StandardAcl(TOPIC, "t", LITERAL, "User:a", "*", 99, ALLOW)  # a newer operation
    delta = MetadataDelta(MetadataImage.EMPTY)
    delta.replay(access_control_entry_record(uuid.UUID(int=1), good), 0)
    delta.replay(access_control_entry_record(uuid.UUID(int=2), unusable), 1)
    image = delta.apply()
    index = updated_index(AclIndex.EMPTY, MetadataImage.EMPTY.acls, image.acls)
    assert list(dict(index.items())) == [uuid.UUID(int=1)]
    assert updated_index(index, image.acls, image.acls) is index


def test_acl_apis_need_the_cluster_permission() -> None:
    """Kafka's AclApis: DESCRIBE on the cluster to describe, ALTER to create or delete."""
    node = Node()
    denied = call(node, 29, acl_filter(), principal="User:bob")
    assert int(denied.error_code) == 31
    created = call(node, 30, {"creations": [{
        "resource_type": 2, "resource_name": "t", "resource_pattern_type": 3,
        "principal": "User:bob", "host": "*", "operation": 2, "permission_type": 3}]},
        principal="User:bob")
    assert [int(r.error_code) for r in created.results] == [31]
    deleted = call(node, 31, {"filters": [acl_filter()]}, principal="User:bob")
    assert [int(r.error_code) for r in deleted.filter_results] == [31]

"""Metadata, DescribeTopicPartitions, DescribeCluster and FindCoordinator under the
authorizer (Kafka's KafkaApis and DescribeTopicPartitionsRequestHandler): topics the
principal may not DESCRIBE are refused when named and left out of "every topic"; creating a
topic on the fly needs CREATE; KIP-430's fields tell what the authorizer allows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

from kio.schema.errors import ErrorCode as E

from odradek.broker import acl_operations
from odradek.broker.handlers import meta
from odradek.broker.kafka import codec
from odradek.broker.security.acl import PatternType
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata import PartitionRegistration
from odradek.controller.metadata.image import (
    BrokerRegistration,
    Listener,
    MetadataImage,
    TopicImage,
)
from tests.unit.broker.handlers.acl_fixtures import OFF, A, R, acl, authorization, context

LISTENER = "SASL_PLAINTEXT"
OMITTED = acl_operations.OMITTED


def bits(*ops: A) -> int:
    return acl_operations.bits(frozenset(ops))


def image(topics: Iterable[str]) -> MetadataImage:
    reg = PartitionRegistration(replicas=(1,), isr=(1,), leader=1, leader_epoch=0,
                                partition_epoch=0)
    images = {t: TopicImage(t, uuid.uuid5(uuid.NAMESPACE_OID, t), {0: reg, 1: reg})
              for t in topics}
    brokers = {1: BrokerRegistration(1, "x", (Listener(LISTENER, "host1", 9091),), None,
                                     False, 3)}
    return MetadataImage(1, brokers, images, {t.topic_id: t for t in images.values()}, {}, 0)


class Node:
    """What the meta handlers use of a node."""

    def __init__(self, auth: Authorization, topics: Iterable[str] = ("a", "b")) -> None:
        self.authorization = auth
        self.node_id = 1
        self.cluster_id = "cluster"
        self.active_controller_id = 1
        self.config = {"auto.create.topics.enable": True}
        self.image = image(topics)
        self.created: list[str] = []

    def api_versions_list(self) -> list[dict[str, int]]:
        return []

    async def auto_create_topics(self, names: list[str]) -> None:
        self.created += names

    async def coordinator_endpoint(self, key: str, key_type: int, listener_name: str
                                   ) -> tuple[int, str, int] | None:
        return 1, "host1", 9091


def call(node: Node, api_key: int, version: int, data: dict[str, Any],
         principal: str = "User:alice") -> Any:
    handler = {s.api_key: s.handler for s in meta.APIS}[api_key]
    req = codec.build_request(api_key, version, data)
    req = codec.decode_request(codec.encode_request(req, 3, "c")[4:],
                               {api_key: (0, 12)}).body
    ctx = context(api_key, version, principal)
    payload = asyncio.run(handler(node, ctx, req))  # type: ignore[arg-type]
    out = codec.encode_response(api_key, version, 3, payload)
    return codec.decode_response(bytes(out[4:]), api_key, version)[1]


def metadata(node: Node, topics: list[dict[str, Any]] | None, *, version: int = 12,
             auto: bool = False, principal: str = "User:alice", ops: bool = False) -> Any:
    return call(node, 3, version, {
        "topics": topics, "allow_auto_topic_creation": auto,
        "include_cluster_authorized_operations": ops,
        "include_topic_authorized_operations": ops}, principal)


def named(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "topic_id": None} for n in names]


def test_named_topics_need_describe_before_their_existence() -> None:
    node = Node(authorization([acl("User:alice", A.DESCRIBE, R.TOPIC, "a")]))
    resp = metadata(node, named("a", "b", "ghost"))
    got = {t.name: t for t in resp.topics}
    assert got["a"].error_code == E.none and len(got["a"].partitions) == 2
    for refused in ("b", "ghost"):  # whether "ghost" exists is not told
        assert got[refused].error_code == E.topic_authorization_failed
        assert got[refused].partitions == () and got[refused].topic_id is None


def test_every_topic_leaves_the_undescribable_out() -> None:
    node = Node(authorization([acl("User:alice", A.READ, R.TOPIC, "a")]))  # implies DESCRIBE
    assert [(t.name, t.error_code) for t in metadata(node, None).topics] == [("a", E.none)]
    assert [t.name for t in metadata(node, [], version=0).topics] == ["a"]
    assert metadata(node, None, principal="User:bob").topics == ()
    assert [t.name for t in metadata(Node(OFF), None).topics] == ["a", "b"]


def test_topics_asked_by_id_are_refused_with_their_id() -> None:
    node = Node(authorization([acl("User:alice", A.DESCRIBE, R.TOPIC, "a")]))
    b_id, unknown = node.image.topics["b"].topic_id, uuid.uuid4()
    resp = metadata(node, [{"name": None, "topic_id": tid} for tid in
                           (node.image.topics["a"].topic_id, b_id, unknown)])
    a, b, ghost = resp.topics
    assert (a.name, a.error_code) == ("a", E.none)
    # Ids are not secret, names are.
    assert (b.name, b.topic_id, b.error_code) == (None, b_id, E.topic_authorization_failed)
    assert (ghost.topic_id, ghost.error_code) == (unknown, E.unknown_topic_id)


def test_a_topic_id_with_an_empty_name_is_looked_up_by_id() -> None:
    """Kafka 4.1's Java consumer asks for the names of the topics a regex subscription was
    assigned (KIP-848) with the id and "" as the name: v12+ looks such a topic up by id."""
    node = Node(OFF)
    a_id = node.image.topics["a"].topic_id
    [a] = metadata(node, [{"name": "", "topic_id": a_id}]).topics
    assert (a.name, a.topic_id, a.error_code, len(a.partitions)) == ("a", a_id, E.none, 2)
    [ghost] = metadata(node, [{"name": "", "topic_id": uuid.uuid4()}]).topics
    assert ghost.error_code == E.unknown_topic_id
    assert node.created == []


def test_auto_creation_needs_create_on_the_cluster_or_the_topic() -> None:
    describe_all = acl("User:*", A.DESCRIBE, R.TOPIC, "", pattern=PatternType.PREFIXED)
    node = Node(authorization([describe_all, acl("User:bob", A.CREATE, R.TOPIC, "new"),
                               acl("User:carol", A.CREATE, R.CLUSTER)]))
    [t] = metadata(node, named("new"), auto=True).topics
    assert t.error_code == E.topic_authorization_failed and node.created == []
    [t] = metadata(node, named("new"), auto=True, principal="User:bob").topics
    assert t.error_code == E.leader_not_available and node.created == ["new"]
    [t] = metadata(node, named("other"), auto=True, principal="User:carol").topics
    assert t.error_code == E.leader_not_available and node.created == ["new", "other"]
    # Without auto-creation the answer is the plain one.
    [t] = metadata(node, named("ghost")).topics
    assert t.error_code == E.unknown_topic_or_partition


def test_authorized_operations_are_what_the_authorizer_allows() -> None:
    node = Node(authorization([acl("User:alice", A.READ, R.TOPIC, "a"),
                               acl("User:alice", A.DESCRIBE, R.CLUSTER),
                               acl("User:alice", A.IDEMPOTENT_WRITE, R.CLUSTER)]))
    resp = metadata(node, named("a"), version=10, ops=True)
    assert resp.topics[0].topic_authorized_operations == bits(A.READ, A.DESCRIBE)
    assert resp.cluster_authorized_operations == bits(A.DESCRIBE, A.IDEMPOTENT_WRITE)
    # No DESCRIBE on the cluster: Kafka answers 0 there.
    bob = Node(authorization([acl("User:bob", A.IDEMPOTENT_WRITE, R.CLUSTER),
                              acl("User:bob", A.WRITE, R.TOPIC, "a")]))
    resp = metadata(bob, named("a"), version=10, ops=True, principal="User:bob")
    assert resp.cluster_authorized_operations == 0
    assert resp.topics[0].topic_authorized_operations == bits(A.WRITE, A.DESCRIBE)
    # Without an authorizer: every supported operation, as before; not asked: omitted.
    resp = metadata(Node(OFF), named("a"), version=10, ops=True)
    assert resp.topics[0].topic_authorized_operations == bits(*acl_operations.TOPIC)
    assert resp.cluster_authorized_operations == bits(*acl_operations.CLUSTER)
    resp = metadata(Node(OFF), named("a"), version=10)
    assert resp.topics[0].topic_authorized_operations == OMITTED
    assert resp.cluster_authorized_operations == OMITTED


def test_describe_cluster_is_open_but_tells_operations_only_with_describe() -> None:
    node = Node(authorization([acl("User:alice", A.ALTER, R.CLUSTER)]))  # implies DESCRIBE
    asked = {"include_cluster_authorized_operations": True, "endpoint_type": 1}
    resp = call(node, 60, 1, asked)
    assert resp.error_code == E.none and resp.cluster_authorized_operations == bits(
        A.ALTER, A.DESCRIBE)
    resp = call(node, 60, 1, asked, "User:bob")
    assert resp.error_code == E.none and [b.broker_id for b in resp.brokers] == [1]
    assert resp.cluster_authorized_operations == 0
    assert call(Node(OFF), 60, 1, asked).cluster_authorized_operations == bits(
        *acl_operations.CLUSTER)


def test_find_coordinator_needs_describe_on_the_key() -> None:
    node = Node(authorization([acl("User:alice", A.READ, R.GROUP, "g"),
                               acl("User:alice", A.WRITE, R.TRANSACTIONAL_ID, "tx")]))
    resp = call(node, 10, 4, {"key_type": 0, "coordinator_keys": ["g", "h", ""]})
    assert [(c.key, c.error_code, c.node_id) for c in resp.coordinators] == [
        ("g", E.none, 1), ("h", E.group_authorization_failed, -1),
        ("", E.group_authorization_failed, -1)]
    resp = call(node, 10, 4, {"key_type": 1, "coordinator_keys": ["tx", "ty"]})
    assert [c.error_code for c in resp.coordinators] == [
        E.none, E.transactional_id_authorization_failed]
    resp = call(node, 10, 3, {"key": "h", "key_type": 0})
    assert (resp.error_code, resp.node_id) == (E.group_authorization_failed, -1)
    assert resp.error_message == "Group authorization failed."


def describe_partitions(node: Node, topics: list[str], principal: str = "User:alice",
                        limit: int = 2000) -> Any:
    return call(node, 75, 0, {"topics": [{"name": t} for t in topics],
                              "response_partition_limit": limit, "cursor": None}, principal)


def test_describe_topic_partitions_like_metadata() -> None:
    node = Node(authorization([acl("User:alice", A.DESCRIBE, R.TOPIC, "b"),
                               acl("User:alice", A.DESCRIBE, R.TOPIC, "ghost")]),
                topics=("a", "b", "c"))
    resp = describe_partitions(node, ["a", "b", "ghost"])
    assert [(t.name, t.error_code) for t in resp.topics] == [
        ("b", E.none), ("ghost", E.unknown_topic_or_partition),
        ("a", E.topic_authorization_failed)]  # refused ones last, as Kafka
    b, _, a = resp.topics
    assert b.topic_authorized_operations == bits(A.DESCRIBE)
    assert a.topic_id is None and a.partitions == ()  # the zero id, read as None
    assert [t.name for t in describe_partitions(node, []).topics] == ["b"]
    resp = describe_partitions(Node(OFF, topics=("a",)), [])
    assert resp.topics[0].topic_authorized_operations == bits(*acl_operations.TOPIC)

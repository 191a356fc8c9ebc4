"""The transaction APIs under the authorizer (Kafka's KafkaApis): WRITE on the
transactional id, WRITE on the topics added, READ on the group of AddOffsetsToTxn,
IDEMPOTENT_WRITE (or WRITE on some topic) for an idempotent producer's id, CLUSTER_ACTION
for what brokers send each other, and DESCRIBE for the transaction admin APIs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kio.schema.errors import ErrorCode as E

from odradek.broker.handlers import txn, txn_admin
from odradek.broker.kafka import codec
from odradek.broker.security.acl import PatternType
from odradek.broker.security.authorization import Authorization
from odradek.broker.txn_markers import Marker
from tests.unit.broker.handlers.acl_fixtures import (
    OFF,
    A,
    R,
    acl,
    authorization,
    context,
    deny,
)
from tests.unit.broker.handlers.test_authorization_meta import image
from tests.unit.broker.handlers.test_fetch_sessions_wire import partition
from tests.unit.broker.handlers.test_txn_admin import Node as AdminNode
from tests.unit.broker.handlers.test_txn_admin import harness


class Transactions:
    """A transaction coordinator that agrees to everything and records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def init_producer_id(self, transactional_id: str, *args: Any, **kw: Any) -> Any:
        self.calls.append(("init", transactional_id))
        return SimpleNamespace(error=E.none, producer_id=5, producer_epoch=1)

    async def add_partitions_to_txn(self, transactional_id: str, pid: int, epoch: int,
                                    partitions: Any, **kw: Any) -> Any:
        self.calls.append(("add", sorted(partitions)))
        return dict.fromkeys(partitions, E.none)

    async def add_partitions_batch(self, txns: Any, **kw: Any) -> Any:
        self.calls.append(("batch", [t.transactional_id for t in txns]))
        return {t.transactional_id: dict.fromkeys(t.partitions, E.none) for t in txns}

    async def add_offsets_to_txn(self, transactional_id: str, *args: Any, **kw: Any) -> E:
        self.calls.append(("offsets", transactional_id))
        return E.none

    async def end_txn(self, transactional_id: str, *args: Any, **kw: Any) -> Any:
        self.calls.append(("end", transactional_id))
        return SimpleNamespace(error=E.none, producer_id=5, producer_epoch=2)


class Markers:
    def __init__(self) -> None:
        self.written: list[Marker] = []

    async def write(self, marker: Marker) -> dict[tuple[str, int], E]:
        self.written.append(marker)
        return dict.fromkeys(marker.partitions, E.none)


class Node:
    def __init__(self, auth: Authorization) -> None:
        self.authorization = auth
        self.transactions = Transactions()
        self.marker_writer = Markers()
        self.image = image(("a", "b"))
        self.allocated = 0

    async def next_producer_id(self) -> int:
        self.allocated += 1
        return 100


def call(n: Any, api_key: int, version: int, data: dict[str, Any],
         principal: str = "User:alice") -> Any:
    handlers = {s.api_key: s.handler for s in (*txn.APIS, *txn_admin.APIS)}
    req = codec.build_request(api_key, version, data)
    req = codec.decode_request(codec.encode_request(req, 3, "c")[4:],
                               {api_key: (0, 5)}).body
    payload = asyncio.run(handlers[api_key](n, context(api_key, version, principal), req))
    if api_key == 65:  # kio cannot read the -1 start time of a transaction not started
        return payload
    out = codec.encode_response(api_key, version, 3, payload)
    return codec.decode_response(bytes(out[4:]), api_key, version)[1]


def init_producer_id(n: Node, transactional_id: str | None, principal: str = "User:alice"
                     ) -> tuple[E, int, int]:
    resp = call(n, 22, 5, {"transactional_id": transactional_id, "transaction_timeout": 60000,
                           "producer_id": -1, "producer_epoch": -1}, principal)
    return resp.error_code, resp.producer_id, resp.producer_epoch


def test_init_producer_id() -> None:
    n = Node(authorization([
        acl("User:alice", A.WRITE, R.TRANSACTIONAL_ID, "tx"),
        acl("User:bob", A.WRITE, R.TOPIC, "logs-", pattern=PatternType.PREFIXED),
        acl("User:carol", A.IDEMPOTENT_WRITE, R.CLUSTER),
        acl("User:dave", A.READ, R.TOPIC, "a")]))
    assert init_producer_id(n, "tx") == (E.none, 5, 1)
    assert init_producer_id(n, "other") == (E.transactional_id_authorization_failed, -1, -1)
    assert n.transactions.calls == [("init", "tx")]
    # Idempotent: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (KIP-679).
    assert init_producer_id(n, None, "User:bob") == (E.none, 100, 0)
    assert init_producer_id(n, None, "User:carol") == (E.none, 100, 0)
    assert init_producer_id(n, None, "User:dave") == (E.cluster_authorization_failed, -1, -1)
    assert init_producer_id(n, None) == (E.cluster_authorization_failed, -1, -1)
    assert n.allocated == 2
    assert init_producer_id(Node(OFF), None, "User:dave") == (E.none, 100, 0)


def add_partitions(n: Node, topics: dict[str, list[int]], principal: str = "User:alice"
                   ) -> dict[tuple[str, int], E]:
    resp = call(n, 24, 3, {"v3_and_below_transactional_id": "tx",
                           "v3_and_below_producer_id": 5, "v3_and_below_producer_epoch": 1,
                           "v3_and_below_topics": [{"name": t, "partitions": ps}
                                                   for t, ps in topics.items()]}, principal)
    return {(t.name, p.partition_index): p.partition_error_code
            for t in resp.results_by_topic_v3_and_below for p in t.results_by_partition}


def test_add_partitions_to_txn_from_clients() -> None:
    n = Node(authorization([acl("User:alice", A.WRITE, R.TRANSACTIONAL_ID, "tx"),
                            acl("User:alice", A.WRITE, R.TOPIC, "a"),
                            acl("User:alice", A.ALL, R.TOPIC, "__consumer_offsets"),
                            acl("User:bob", A.WRITE, R.TOPIC, "a")]))
    assert add_partitions(n, {"a": [0]}, "User:bob") == {
        ("a", 0): E.transactional_id_authorization_failed}
    # One refused partition fails the transaction's request: the others not attempted,
    # unknown ones said so.
    assert add_partitions(n, {"a": [0, 7], "b": [0]}) == {
        ("a", 0): E.operation_not_attempted, ("a", 7): E.unknown_topic_or_partition,
        ("b", 0): E.topic_authorization_failed}
    # Internal topics are never added this way, whatever the ACLs say (Kafka).
    assert add_partitions(n, {"a": [0], "__consumer_offsets": [0]}) == {
        ("a", 0): E.operation_not_attempted,
        ("__consumer_offsets", 0): E.topic_authorization_failed}
    assert n.transactions.calls == []
    assert add_partitions(n, {"a": [0, 1]}) == {("a", 0): E.none, ("a", 1): E.none}
    assert n.transactions.calls == [("add", [("a", 0), ("a", 1)])]


def test_broker_only_apis_need_cluster_action() -> None:
    n = Node(authorization([acl("User:broker", A.CLUSTER_ACTION, R.CLUSTER),
                            acl("User:alice", A.ALL, R.TOPIC, "a"),
                            acl("User:alice", A.ALL, R.TRANSACTIONAL_ID, "tx")]))
    batch = {"transactions": [{"transactional_id": "tx", "producer_id": 5, "producer_epoch": 1,
                               "verify_only": True,
                               "topics": [{"name": "a", "partitions": [0]}]}]}
    resp = call(n, 24, 5, batch)
    assert (resp.error_code, resp.results_by_transaction) == (
        E.cluster_authorization_failed, ())
    resp = call(n, 24, 5, batch, "User:broker")
    assert resp.error_code == E.none and n.transactions.calls == [("batch", ["tx"])]
    markers = {"markers": [{"producer_id": 5, "producer_epoch": 1, "transaction_result": True,
                            "coordinator_epoch": 0,
                            "topics": [{"name": "a", "partition_indexes": [0, 1]}]}]}
    resp = call(n, 27, 1, markers)
    assert [p.error_code for p in resp.markers[0].topics[0].partitions] == [
        E.cluster_authorization_failed, E.cluster_authorization_failed]
    assert n.marker_writer.written == []
    resp = call(n, 27, 1, markers, "User:broker")
    assert [p.error_code for p in resp.markers[0].topics[0].partitions] == [E.none, E.none]


def test_add_offsets_and_end_txn() -> None:
    n = Node(authorization([acl("User:alice", A.WRITE, R.TRANSACTIONAL_ID, "tx"),
                            acl("User:alice", A.READ, R.GROUP, "g"),
                            deny("User:alice", A.WRITE, R.TRANSACTIONAL_ID, "ty"),
                            acl("User:*", A.WRITE, R.TRANSACTIONAL_ID, "ty")]))

    def offsets(txn_id: str, group: str) -> E:
        return E(call(n, 25, 4, {"transactional_id": txn_id, "producer_id": 5,
                                 "producer_epoch": 1, "group_id": group}).error_code)

    assert offsets("tx", "g") == E.none
    assert offsets("tx", "h") == E.group_authorization_failed
    assert offsets("ty", "g") == E.transactional_id_authorization_failed  # DENY wins
    assert n.transactions.calls == [("offsets", "tx")]

    def end(txn_id: str) -> tuple[E, int, int]:
        resp = call(n, 26, 5, {"transactional_id": txn_id, "producer_id": 5,
                               "producer_epoch": 1, "committed": True})
        return resp.error_code, resp.producer_id, resp.producer_epoch

    assert end("tx") == (E.none, 5, 2)
    assert end("ty") == (E.transactional_id_authorization_failed, -1, -1)


def admin_node(auth: Authorization, tmp_path: Path | None = None) -> AdminNode:
    h = harness()
    parts = {}
    if tmp_path is not None:
        parts = {(t, 0): partition(tmp_path / t, t, 0, 1, replicas=(1,), leader=1)
                 for t in ("t", "u")}
    n = AdminNode(h.coord, parts)
    n.authorization = auth  # type: ignore[assignment]
    return n


def test_describe_transactions_and_their_topics() -> None:
    n = admin_node(authorization([acl("User:alice", A.DESCRIBE, R.TRANSACTIONAL_ID, "new"),
                                  acl("User:alice", A.READ, R.TOPIC, "u")]))
    resp = call(n, 65, 0, {"transactional_ids": ["new", "old"]})
    new, old = resp.transaction_states
    assert (new.error_code, new.transaction_state) == (E.none, "Ongoing")
    # Only the partitions of topics alice may describe: u, not t.
    assert [(t.topic, list(t.partitions)) for t in new.topics] == [("u", [0])]
    assert (old.transactional_id, old.error_code, old.transaction_state, old.topics) == (
        "old", E.transactional_id_authorization_failed, "", ())
    resp = call(admin_node(OFF), 65, 0, {"transactional_ids": ["new"]})
    assert [t.topic for t in resp.transaction_states[0].topics] == ["t", "u"]


def test_list_transactions_lists_only_describable_ids() -> None:
    n = admin_node(authorization([acl("User:alice", A.WRITE, R.TRANSACTIONAL_ID, "n",
                                      pattern=PatternType.PREFIXED)]))
    resp = call(n, 66, 0, {"state_filters": [], "producer_id_filters": []})
    assert [t.transactional_id for t in resp.transaction_states] == ["new"]
    resp = call(n, 66, 0, {"state_filters": [], "producer_id_filters": []}, "User:bob")
    assert resp.transaction_states == ()


def test_describe_producers_needs_read(tmp_path: Path) -> None:
    n = admin_node(authorization([acl("User:alice", A.READ, R.TOPIC, "t")]), tmp_path)
    resp = call(n, 61, 0, {"topics": [{"name": t, "partition_indexes": [0]}
                                      for t in ("t", "u", "ghost")]})
    assert [(t.name, t.partitions[0].error_code) for t in resp.topics] == [
        ("t", E.none), ("u", E.topic_authorization_failed),
        ("ghost", E.topic_authorization_failed)]
    assert resp.topics[1].partitions[0].error_message == "Topic authorization failed."

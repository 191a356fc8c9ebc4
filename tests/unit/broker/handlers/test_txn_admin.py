"""DescribeTransactions, ListTransactions and DescribeProducers through the real codec: a
fake node holds a real TransactionCoordinator (on an in-memory ``__transaction_state``)
and real partition logs with transactional batches and markers. Each answer is also read
back with kafka-python's decoder, which the ``odradek transactions`` commands use."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.handlers import txn_admin
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.partition import Partition
from odradek.storage import AppendOrigin, encode_marker_batch
from odradek.storage.records import Record, encode_batch
from tests.unit.broker.handlers.acl_fixtures import OFF
from tests.unit.broker.handlers.test_fetch_sessions_wire import image_of, partition
from tests.unit.broker.txn.txn_harness import Harness

SERVED = {spec.api_key: (spec.min_version, spec.max_version) for spec in txn_admin.APIS}


class Node:
    """What the transaction admin handlers use of a node."""

    def __init__(self, transactions: Any, parts: dict[tuple[str, int], Partition],
                 image_parts: dict[tuple[str, int], Partition] | None = None) -> None:
        self.transactions = transactions
        self.replicas = SimpleNamespace(get=parts.get)
        self.authorization = OFF
        self.image = image_of(image_parts or parts)


def call(node: Node, api_key: int, version: int, data: dict[str, Any]) -> tuple[Any, Any]:
    """(our decoded answer, kafka-python's decoding of the same bytes). Ours is None for
    DescribeTransactions: kio cannot read the -1 start time of a transaction not started,
    which Kafka sends too (the Java client reads it as "none")."""
    from kafka.protocol.admin import transactions as kp

    frame = codec.encode_request(codec.build_request(api_key, version, data), 3, "t")
    req = codec.decode_request(frame[4:], SERVED).body
    handler = {s.api_key: s.handler for s in txn_admin.APIS}[api_key]
    payload = asyncio.run(handler(node, RequestContext(api_key, version, 3, "t", "h", 1),  # type: ignore[arg-type]
                                  req))
    assert payload is not None
    out = bytes(codec.encode_response(api_key, version, 3, payload))
    ours = None if api_key == 65 else codec.decode_response(out[4:], api_key, version)[1]
    cls = {61: kp.DescribeProducersResponse, 65: kp.DescribeTransactionsResponse,
           66: kp.ListTransactionsResponse}[api_key]
    return ours, cls.decode(out, version=version, header=True, framed=True)


async def coordinator() -> Harness:
    """Ids ``idle`` (Empty), ``old`` (Ongoing for 11 s, on t-0), ``new`` (Ongoing for 1 s,
    on t-1 and u-0) and ``done`` (CompleteCommit)."""
    h = await Harness().load_all(epoch=3)
    pids = {t: await h.producer(t) for t in ("idle", "old", "new", "done")}
    await h.add("old", *pids["old"], ("t", 0))
    h.clock.advance(10_000)
    await h.add("new", *pids["new"], ("t", 1), ("u", 0))
    await h.add("done", *pids["done"], ("t", 2))
    await h.end("done", *pids["done"])
    await h.settle()
    h.clock.advance(1_000)
    return h


def harness() -> Harness:
    return asyncio.run(coordinator())


def test_describe_transactions() -> None:
    h = harness()
    pid, epoch = h.md("new").producer_id, h.md("new").producer_epoch
    started = h.clock.now_ms() - 1_000
    _, kp = call(Node(h.coord, {}), 65, 0, {"transactional_ids": ["new", "idle", "nope"]})
    new, idle, nope = kp.transaction_states
    assert (new.error_code, new.transactional_id, new.transaction_state, new.producer_id,
            new.producer_epoch) == (0, "new", "Ongoing", pid, epoch)
    assert (new.transaction_timeout_ms, new.transaction_start_time_ms) == (60_000, started)
    assert [(t.topic, list(t.partitions)) for t in new.topics] == [("t", [1]), ("u", [0])]
    assert (idle.error_code, idle.transaction_state, list(idle.topics)) == (0, "Empty", [])
    assert idle.transaction_start_time_ms == -1
    assert nope.error_code == ErrorCode.transactional_id_not_found.value


def test_describe_transactions_elsewhere_is_not_coordinator() -> None:
    h = harness()
    h.coord.unload_partition(h.partition("old"))
    _, kp = call(Node(h.coord, {}), 65, 0, {"transactional_ids": ["old"]})
    assert kp.transaction_states[0].error_code == ErrorCode.not_coordinator.value


@pytest.mark.parametrize("version", [0, 1, 2])
def test_list_transactions(version: int) -> None:
    h = harness()
    ours, kp = call(Node(h.coord, {}), 66, version, {"state_filters": [], "producer_id_filters": []})
    assert ours.error_code == ErrorCode.none
    got = {t.transactional_id: t.transaction_state for t in ours.transaction_states}
    assert got == {"idle": "Empty", "old": "Ongoing", "new": "Ongoing", "done": "CompleteCommit"}
    assert {t.transactional_id for t in kp.transaction_states} == set(got)
    assert {t.producer_id for t in ours.transaction_states} == {
        h.md(t).producer_id for t in got}


def test_list_transactions_filters() -> None:
    h = harness()
    node = Node(h.coord, {})
    ours, kp = call(node, 66, 0, {"state_filters": ["Ongoing", "Sleeping"],
                                  "producer_id_filters": []})
    assert sorted(t.transactional_id for t in ours.transaction_states) == ["new", "old"]
    assert list(ours.unknown_state_filters) == ["Sleeping"]
    assert list(kp.unknown_state_filters) == ["Sleeping"]
    ours, _ = call(node, 66, 0, {"producer_id_filters": [h.md("done").producer_id]})
    assert [t.transactional_id for t in ours.transaction_states] == ["done"]
    # KIP-994: v1 keeps transactions running longer than the duration (Empty ones have
    # not started and always qualify, as in Kafka).
    ours, _ = call(node, 66, 1, {"duration_filter": 5_000, "state_filters": ["Ongoing"]})
    assert [t.transactional_id for t in ours.transaction_states] == ["old"]
    ours, _ = call(node, 66, 2, {"transactional_id_pattern": "n.*"})
    assert [t.transactional_id for t in ours.transaction_states] == ["new"]


def test_list_transactions_of_a_closed_coordinator() -> None:
    h = harness()
    asyncio.run(h.coord.close())
    ours, _ = call(Node(h.coord, {}), 66, 0, {})
    assert ours.error_code == ErrorCode.coordinator_not_available
    assert ours.transaction_states == ()


# --- DescribeProducers ---------------------------------------------------------------------


def txn_batch(pid: int, epoch: int, seq: int, ts: int, n: int = 2) -> bytes:
    return encode_batch([Record(i, 0, b"k", b"v") for i in range(n)], producer_id=pid,
                        producer_epoch=epoch, base_sequence=seq, is_transactional=True,
                        timestamp_ms=ts)


def led_partition(tmp_path: Path) -> Partition:
    """t-0 led here: producer 7 (epoch 2) committed one transaction and has another open
    from offset 5; producer 9 (epoch 0) is idempotent only."""
    p = partition(tmp_path / "t-0", "t", 0, 1, replicas=(1,), leader=1)
    log = p.log
    log.append(txn_batch(7, 2, 0, 1_000), leader_epoch=0)  # offsets 0-1
    log.append(encode_marker_batch(7, 2, 4, True, 2_000), leader_epoch=0,
               origin=AppendOrigin.COORDINATOR)  # 2
    log.append(encode_batch([Record(i, 0, b"k", b"v") for i in range(2)], producer_id=9, producer_epoch=0,
                            base_sequence=0, timestamp_ms=2_500), leader_epoch=0)  # 3-4
    log.append(txn_batch(7, 2, 2, 3_000, n=3), leader_epoch=0)  # 5-7
    return p


def test_describe_producers_of_a_led_partition(tmp_path: Path) -> None:
    p = led_partition(tmp_path)
    ours, kp = call(Node(None, {("t", 0): p}), 61, 0,
                    {"topics": [{"name": "t", "partition_indexes": [0]}]})
    (topic,) = ours.topics
    (part,) = topic.partitions
    assert (topic.name, part.partition_index, part.error_code) == ("t", 0, ErrorCode.none)
    rows = [(s.producer_id, s.producer_epoch, s.last_sequence, s.last_timestamp,
             s.coordinator_epoch, s.current_txn_start_offset) for s in part.active_producers]
    assert rows == [(7, 2, 4, 3_000, 4, 5), (9, 0, 1, 2_500, -1, -1)]
    k = kp.topics[0].partitions[0].active_producers[0]
    assert (k.producer_id, k.current_txn_start_offset, k.coordinator_epoch) == (7, 5, 4)


def test_describe_producers_after_the_open_transaction_aborts(tmp_path: Path) -> None:
    p = led_partition(tmp_path)
    p.log.append(encode_marker_batch(7, 2, 5, False, 4_000), leader_epoch=0,
                 origin=AppendOrigin.COORDINATOR)
    ours, _ = call(Node(None, {("t", 0): p}), 61, 0,
                   {"topics": [{"name": "t", "partition_indexes": [0]}]})
    seven = ours.topics[0].partitions[0].active_producers[0]
    assert (seven.producer_id, seven.coordinator_epoch, seven.current_txn_start_offset,
            seven.last_timestamp) == (7, 5, -1, 4_000)


def test_describe_producers_errors(tmp_path: Path) -> None:
    hosted = partition(tmp_path / "t-0", "t", 0, 1, replicas=(1, 2), leader=1)
    # t-1 exists in the metadata but has no replica here; a follower replica answers too
    # (Kafka answers from any replica's log, which --broker-id relies on).
    elsewhere = partition(tmp_path / "t-1", "t", 1, 1, replicas=(2, 3), leader=2)
    follower = partition(tmp_path / "t-2", "t", 2, 1, replicas=(2, 1), leader=2)
    node = Node(None, {("t", 0): hosted, ("t", 2): follower},
                image_parts={("t", 0): hosted, ("t", 1): elsewhere, ("t", 2): follower})
    ours, _ = call(node, 61, 0, {"topics": [{"name": "t", "partition_indexes": [0, 1, 2, 9]},
                                            {"name": "gone", "partition_indexes": [0]}]})
    codes = {(t.name, p.partition_index): p.error_code for t in ours.topics
             for p in t.partitions}
    assert codes == {("t", 0): ErrorCode.none, ("t", 1): ErrorCode.not_leader_or_follower,
                     ("t", 2): ErrorCode.none, ("t", 9): ErrorCode.unknown_topic_or_partition,
                     ("gone", 0): ErrorCode.unknown_topic_or_partition}
    hosted.log.close()  # offline, as after a disk error
    ours, _ = call(node, 61, 0, {"topics": [{"name": "t", "partition_indexes": [0]}]})
    assert ours.topics[0].partitions[0].error_code == ErrorCode.kafka_storage_error
    assert "offline" in ours.topics[0].partitions[0].error_message

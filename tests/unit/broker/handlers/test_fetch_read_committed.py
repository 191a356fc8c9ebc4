"""The read side of transactions (KIP-98) through the real Fetch and ListOffsets handlers and
the codec, over real partition logs holding transactional batches and markers: the last
stable offset (LSO) in every answer, READ_COMMITTED fetches stopping at it with the aborted
transactions named, a parked READ_COMMITTED fetch woken when the LSO moves, fetch sessions
telling LSO changes, ListOffsets by isolation level, and the LSO lag metric."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.fetch_sessions import ContextKind, FetchSessionCache, new_context
from odradek.broker.handlers import fetch
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.metrics import NodeMetrics
from odradek.broker.node_collector import NodeCollector
from odradek.broker.partition import Partition, wait_for_any
from odradek.broker.replication_quota import ReplicationQuotas
from odradek.controller.metadata import PartitionRegistration
from odradek.controller.metadata.image import MetadataImage, TopicImage
from odradek.storage import AppendOrigin, Record, decode_batches, encode_batch, encode_marker_batch
from tests.unit.broker.handlers.acl_fixtures import OFF

TOPIC = "t"
TID = uuid.uuid5(uuid.NAMESPACE_OID, TOPIC)
RU, RC = fetch.READ_UNCOMMITTED, fetch.READ_COMMITTED
T0 = 1_700_000_000_000  # record timestamps: T0 + offset, except where a test says


class Node:
    """What the Fetch and ListOffsets handlers use of a node, over one real partition."""

    def __init__(self, p: Partition) -> None:
        self.p = p
        self.config = {"fetch.max.bytes": 50 << 20}
        reg = PartitionRegistration(replicas=p.replicas, isr=p.isr, leader=p.leader_id,
                                    leader_epoch=p.leader_epoch, partition_epoch=0)
        topic = TopicImage(TOPIC, TID, {0: reg})
        self.image = MetadataImage(1, {}, {TOPIC: topic}, {TID: topic}, {}, 0)
        self.replicas = SimpleNamespace(get={(TOPIC, 0): p}.get, wait_for_data=wait_for_any)
        self.follower_fetches: list[int] = []
        self.replication = SimpleNamespace(
            on_follower_fetch=lambda p, replica, offset, epoch:
            self.follower_fetches.append(offset))
        self.metrics = NodeMetrics(1)
        self.stopping = False
        self.fetch_sessions = FetchSessionCache(1000, 120_000)
        self.authorization = OFF
        self.replication_quotas = ReplicationQuotas(1)


def leader(path: Path, replicas: tuple[int, ...] = (1,)) -> Partition:
    """Partition t-0 led by node 1; with one replica every append is below the HW at once."""
    p = Partition(TOPIC, 0, storage.PartitionLog.open(path, storage.LogConfig()), 1)
    p.assign(PartitionRegistration(replicas=replicas, isr=replicas, leader=1, leader_epoch=0,
                                   partition_epoch=0), TID)
    return p


def data(p: Partition, n: int = 1, *, pid: int = -1, seq: int = 0,
         ts: int | None = None) -> None:
    """``n`` records, in a transaction of producer ``pid`` when it is >= 0."""
    start = p.log.log_end_offset
    records = [Record(i, i, b"k", f"v{start + i}".encode()) for i in range(n)]
    txn = pid >= 0
    p.append(encode_batch(records, producer_id=pid, producer_epoch=0 if txn else -1,
                          base_sequence=seq if txn else -1, is_transactional=txn,
                          timestamp_ms=T0 + start if ts is None else ts), acks_all=False)


def end_txn(p: Partition, pid: int, *, commit: bool) -> int:
    """The coordinator's marker, as it is appended on the leader; returns its offset."""
    offset = p.log.log_end_offset
    p.append(encode_marker_batch(pid, 0, 0, commit, T0 + offset), acks_all=False,
             origin=AppendOrigin.COORDINATOR)
    return offset


def mixed_log(path: Path) -> Partition:
    """0-1 committed by producer 10 (marker 2), 3-4 aborted by producer 11 (marker 5), 6
    plain, 7-8 producer 12's open transaction, 9 plain: HW 10, LSO 7."""
    p = leader(path)
    data(p, 2, pid=10)
    end_txn(p, 10, commit=True)
    data(p, 2, pid=11)
    end_txn(p, 11, commit=False)
    data(p)
    data(p, 2, pid=12)
    data(p)
    assert (p.log.high_watermark, p.log.last_stable_offset) == (10, 7)
    return p


def fetch_request(offset: int, isolation: int, *, version: int = 12, max_wait_ms: int = 0,
                  session_id: int = 0, epoch: int = -1, replica_id: int = -1,
                  named: bool = True) -> Any:
    """A Fetch of t-0 from ``offset`` (none named: ``named`` False), through the codec."""
    part = {"partition": 0, "current_leader_epoch": -1, "fetch_offset": offset,
            "last_fetched_epoch": -1, "log_start_offset": -1, "partition_max_bytes": 1 << 20}
    topic = {"topic_id": TID} if version >= 13 else {"topic": TOPIC}
    topics = [{**topic, "partitions": [part]}] if named else []
    body = codec.build_request(1, version, {
        "replica_id": replica_id, "replica_state": {"replica_id": replica_id,
                                                    "replica_epoch": -1},
        "max_wait": max_wait_ms, "min_bytes": 1, "max_bytes": 1 << 20,
        "isolation_level": isolation, "session_id": session_id, "session_epoch": epoch,
        "topics": topics, "forgotten_topics_data": []})
    return codec.decode_request(codec.encode_request(body, 3, "c")[4:], {1: (4, 18)}).body


async def handle(node: Node, version: int, req: Any, api_key: int = 1) -> Any:
    """``req`` handled; the answer as a client decodes it."""
    handler = fetch.handle_fetch if api_key == 1 else fetch.handle_list_offsets
    resp = await handler(node, RequestContext(api_key, version, 3, "c", "h", 1), req)  # type: ignore[arg-type]
    out = codec.encode_response(api_key, version, 3, resp)
    return codec.decode_response(bytes(out[4:]), api_key, version)[1]


def ask(node: Node, req: Any, version: int = 12) -> Any:
    return asyncio.run(handle(node, version, req))


def only(resp: Any) -> Any:
    [topic] = resp.responses
    [part] = topic.partitions
    return part


def offsets(part: Any) -> list[int]:
    """Offsets of the data records answered (markers left out)."""
    return [r.offset for h, records in decode_batches(bytes(part.records))
            if not h.is_control for r in records]


def aborted(part: Any) -> list[tuple[int, int]] | None:
    if part.aborted_transactions is None:
        return None
    return [(a.producer_id, a.first_offset) for a in part.aborted_transactions]


# --- Fetch ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 7, 11, 12, 13, 16, 18])
def test_read_committed_reads_below_the_lso_and_names_the_aborted(tmp_path: Path,
                                                                  version: int) -> None:
    node = Node(mixed_log(tmp_path))
    part = only(ask(node, fetch_request(0, RC, version=version), version))
    assert part.error_code == ErrorCode.none
    assert (part.high_watermark, part.last_stable_offset) == (10, 7)
    # Committed and plain records; the aborted ones come too, named for the consumer to
    # drop; the open transaction stops the read at its first offset (7).
    assert offsets(part) == [0, 1, 3, 4, 6]
    assert aborted(part) == [(11, 3)]
    # Read from past the aborted transaction's marker: nothing aborted within the answer.
    part = only(ask(node, fetch_request(6, RC, version=version), version))
    assert offsets(part) == [6] and aborted(part) == []


@pytest.mark.parametrize("version", [4, 12, 18])
def test_read_uncommitted_reads_to_the_high_watermark_with_the_real_lso(
        tmp_path: Path, version: int) -> None:
    node = Node(mixed_log(tmp_path))
    part = only(ask(node, fetch_request(0, RU, version=version), version))
    assert offsets(part) == [0, 1, 3, 4, 6, 7, 8, 9]
    assert (part.high_watermark, part.last_stable_offset) == (10, 7)
    assert aborted(part) is None


def test_read_committed_at_the_lso_answers_nothing_and_an_empty_list(tmp_path: Path) -> None:
    node = Node(mixed_log(tmp_path))
    part = only(ask(node, fetch_request(7, RC)))
    assert part.error_code == ErrorCode.none and not part.records
    assert aborted(part) == []  # Kafka's READ_COMMITTED answers carry the list, not null
    # Past the log end is still out of range, whatever the isolation level.
    assert only(ask(node, fetch_request(11, RC))).error_code == ErrorCode.offset_out_of_range


def test_the_commit_makes_the_open_transaction_readable(tmp_path: Path) -> None:
    p = mixed_log(tmp_path)
    node = Node(p)
    end_txn(p, 12, commit=True)  # marker at 10, HW 11: nothing unstable left
    part = only(ask(node, fetch_request(7, RC)))
    assert (part.high_watermark, part.last_stable_offset) == (11, 11)
    assert offsets(part) == [7, 8, 9] and aborted(part) == []


def test_an_lso_held_by_an_unreplicated_marker(tmp_path: Path) -> None:
    """With a follower in the ISR, a commit marker is not yet stable while it is above the
    high watermark: the LSO stays at the transaction's first offset until the follower has
    it, then READ_COMMITTED consumers read the transaction."""
    p = leader(tmp_path, replicas=(1, 2))
    node = Node(p)
    data(p, 2, pid=5)
    marker = end_txn(p, 5, commit=True)
    p.follower_fetched(2, marker, live=True)  # the follower has all but the marker
    assert (p.log.high_watermark, p.log.last_stable_offset) == (2, 0)
    part = only(ask(node, fetch_request(0, RC)))
    assert not part.records and part.last_stable_offset == 0
    p.follower_fetched(2, marker + 1, live=True)
    part = only(ask(node, fetch_request(0, RC)))
    assert offsets(part) == [0, 1] and part.last_stable_offset == 3


@pytest.mark.parametrize("version", [11, 15])
def test_a_follower_reads_to_the_log_end_whatever_isolation_it_names(
        tmp_path: Path, version: int) -> None:
    node = Node(mixed_log(tmp_path))
    part = only(ask(node, fetch_request(0, RC, version=version, replica_id=2), version))
    assert offsets(part) == [0, 1, 3, 4, 6, 7, 8, 9]
    assert aborted(part) is None and part.last_stable_offset == 7
    assert node.follower_fetches == [0]


def test_a_parked_read_committed_fetch_waits_for_the_lso_not_the_high_watermark(
        tmp_path: Path) -> None:
    p = mixed_log(tmp_path)
    node = Node(p)

    async def run() -> tuple[float, Any]:
        start = time.monotonic()
        task = asyncio.ensure_future(handle(node, 12, fetch_request(7, RC, max_wait_ms=5000)))
        await asyncio.sleep(0.1)
        # More records of the open transaction and plain ones move the high watermark,
        # not the LSO: nothing readable, still parked.
        data(p, pid=12, seq=2)
        data(p)
        await asyncio.sleep(0.1)
        assert not task.done()
        end_txn(p, 12, commit=True)  # the LSO moves: answered now
        return time.monotonic() - start, await task

    took, resp = asyncio.run(run())
    assert took < 2
    part = only(resp)
    assert offsets(part) == [7, 8, 9, 10, 11] and part.last_stable_offset == 13


def test_min_bytes_counts_only_what_is_below_the_lso(tmp_path: Path) -> None:
    """At the LSO, with records above it below the high watermark: a READ_UNCOMMITTED fetch
    answers them at once, a READ_COMMITTED one waits its max_wait for readable bytes."""
    node = Node(mixed_log(tmp_path))
    start = time.monotonic()
    assert offsets(only(ask(node, fetch_request(7, RU, max_wait_ms=3000)))) == [7, 8, 9]
    assert time.monotonic() - start < 1
    start = time.monotonic()
    assert not only(ask(node, fetch_request(7, RC, max_wait_ms=200))).records
    assert time.monotonic() - start >= 0.18


# --- fetch sessions ---------------------------------------------------------------------


def test_an_incremental_session_tells_the_new_lso(tmp_path: Path) -> None:
    p = mixed_log(tmp_path)
    node = Node(p)
    full = ask(node, fetch_request(7, RC, epoch=0))
    sid = full.session_id
    assert sid != 0 and only(full).last_stable_offset == 7
    # Caught up at the LSO, nothing changed: nothing to say.
    assert ask(node, fetch_request(7, RC, session_id=sid, epoch=1, named=False)).responses \
        == ()
    end_txn(p, 12, commit=True)
    part = only(ask(node, fetch_request(7, RC, session_id=sid, epoch=2, named=False)))
    assert (part.last_stable_offset, part.high_watermark) == (11, 11)
    assert offsets(part) == [7, 8, 9]


def test_a_session_answers_a_partition_whose_lso_alone_changed() -> None:
    """The session's rule (broker/fetch_sessions.py): an answer whose LSO differs from the
    last one told is sent, though it has no records and the same high watermark."""
    cache = FetchSessionCache(10, 120_000)
    tp = (TOPIC, 0)

    def entry(lso: int) -> dict[str, Any]:
        return {"partition_index": 0, "high_watermark": 10, "last_stable_offset": lso,
                "log_start_offset": 0, "records": b""}

    ctx = new_context(cache, 0, 0, 0, False, [(tp, "params")], [], read_committed=True)
    sid, _ = ctx.finish(cache, 0, [(tp, entry(7))])
    same = new_context(cache, 1, sid, 1, False, [], [], read_committed=True)
    assert same.kind is ContextKind.INCREMENTAL
    assert same.finish(cache, 1, [(tp, entry(7))])[1] == []
    moved = new_context(cache, 2, sid, 2, False, [], [], read_committed=True)
    assert moved.finish(cache, 2, [(tp, entry(9))])[1] == [(tp, entry(9))]


def test_a_session_read_at_another_isolation_level_reads_its_partitions_again(
        tmp_path: Path) -> None:
    """Caught up at the LSO is not caught up at the high watermark: a session left idle by
    READ_COMMITTED requests, continued READ_UNCOMMITTED, answers what lies above the LSO."""
    node = Node(mixed_log(tmp_path))
    sid = ask(node, fetch_request(7, RC, epoch=0)).session_id
    assert ask(node, fetch_request(7, RC, session_id=sid, epoch=1, named=False)).responses \
        == ()
    part = only(ask(node, fetch_request(7, RU, session_id=sid, epoch=2, named=False)))
    assert offsets(part) == [7, 8, 9]


# --- ListOffsets ------------------------------------------------------------------------


def list_offsets(node: Node, timestamp: int, isolation: int, version: int = 7
                 ) -> tuple[int, int, ErrorCode]:
    """(offset, timestamp, error) ListOffsets answers for t-0."""
    body = codec.build_request(2, version, {
        "replica_id": -1, "isolation_level": isolation, "topics": [
            {"name": TOPIC, "partitions": [{"partition_index": 0, "current_leader_epoch": -1,
                                            "timestamp": timestamp}]}]})
    req = codec.decode_request(codec.encode_request(body, 3, "c")[4:], {2: (1, 7)}).body
    resp = asyncio.run(handle(node, version, req, api_key=2))
    [topic] = resp.topics
    [part] = topic.partitions
    return part.offset, part.timestamp, part.error_code


@pytest.mark.parametrize("version", [2, 5, 7])
def test_list_offsets_latest_by_isolation_level(tmp_path: Path, version: int) -> None:
    node = Node(mixed_log(tmp_path))
    assert list_offsets(node, fetch.LATEST, RU, version)[0] == 10  # the high watermark
    assert list_offsets(node, fetch.LATEST, RC, version)[0] == 7  # the LSO
    assert list_offsets(node, fetch.EARLIEST, RC, version)[0] == 0
    # v1 has no isolation level: READ_UNCOMMITTED.
    assert list_offsets(node, fetch.LATEST, RC, version=1)[0] == 10


def test_list_offsets_timestamps_below_the_bound_of_the_isolation_level(
        tmp_path: Path) -> None:
    p = mixed_log(tmp_path)
    node = Node(p)
    # Offset 7 (timestamp T0 + 7) is in the open transaction: READ_COMMITTED consumers
    # cannot read it yet, so for them no record has that timestamp or a later one.
    assert list_offsets(node, T0 + 7, RU)[:2] == (7, T0 + 7)
    assert list_offsets(node, T0 + 7, RC)[:2] == (-1, -1)
    assert list_offsets(node, T0 + 4, RC)[:2] == (4, T0 + 4)
    # The largest timestamp is offset 9's, above the LSO.
    assert list_offsets(node, fetch.MAX_TIMESTAMP, RU)[:2] == (9, T0 + 9)
    assert list_offsets(node, fetch.MAX_TIMESTAMP, RC)[:2] == (-1, -1)
    end_txn(p, 12, commit=True)
    assert list_offsets(node, T0 + 7, RC)[:2] == (7, T0 + 7)
    assert list_offsets(node, fetch.MAX_TIMESTAMP, RC)[:2] == (10, T0 + 10)  # the marker's


def test_list_offsets_max_timestamp_above_the_high_watermark_is_not_answered(
        tmp_path: Path) -> None:
    """As Kafka: the record with the largest timestamp, not yet replicated, is not given to
    READ_UNCOMMITTED readers either."""
    p = leader(tmp_path, replicas=(1, 2))
    node = Node(p)
    data(p, ts=T0)
    p.follower_fetched(2, 1, live=True)
    data(p, ts=T0 + 50)  # above the high watermark (1)
    assert list_offsets(node, fetch.MAX_TIMESTAMP, RU)[:2] == (-1, -1)
    assert list_offsets(node, T0 + 10, RU)[:2] == (-1, -1)
    assert list_offsets(node, T0, RU)[:2] == (0, T0)
    p.follower_fetched(2, 2, live=True)
    assert list_offsets(node, fetch.MAX_TIMESTAMP, RU)[:2] == (1, T0 + 50)


# --- the metric -------------------------------------------------------------------------


def test_the_lso_lag_is_exported_for_partitions_led_here(tmp_path: Path) -> None:
    led = mixed_log(tmp_path / "led")
    followed = Partition("f", 0, storage.PartitionLog.open(tmp_path / "f",
                                                           storage.LogConfig()), 1)
    followed.assign(PartitionRegistration(replicas=(1, 2), isr=(1, 2), leader=2,
                                          leader_epoch=0, partition_epoch=0), None)
    replicas = SimpleNamespace(partitions={(TOPIC, 0): led, ("f", 0): followed}, cleaner=None,
                               get=lambda tp: None)
    collector = NodeCollector(replicas, lambda: [], lambda group: {})  # type: ignore[arg-type]

    def lags() -> dict[tuple[str, str], float]:
        return {(s.labels["topic"], s.labels["partition"]): s.value
                for m in collector.collect() for s in m.samples
                if s.name == "odradek_partition_last_stable_offset_lag"}

    assert lags() == {(TOPIC, "0"): 3}  # HW 10 - LSO 7; none for the followed partition
    end_txn(led, 12, commit=True)
    assert lags() == {(TOPIC, "0"): 0}

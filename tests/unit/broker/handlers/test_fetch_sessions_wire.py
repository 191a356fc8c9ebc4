"""A follower fetcher and a leader's Fetch handler back to back through the real codec
(no sockets): the fetcher opens a fetch session, its idle requests stop growing with the
partitions it follows, records still replicate, and the handler long-polls an incremental
fetch on every partition of the session."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.fetch_sessions import FetchSessionCache
from odradek.broker.handlers import fetch
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.metrics import NodeMetrics
from odradek.broker.partition import Partition, wait_for_any
from odradek.broker.replication import LeaderFetcher
from odradek.controller.metadata import PartitionRegistration
from odradek.storage.records import Record, encode_batch


def partition(path: Path, topic: str, index: int, node_id: int) -> Partition:
    p = Partition(topic, index, storage.PartitionLog.open(path, storage.LogConfig()), node_id)
    p.assign(PartitionRegistration(replicas=(1, 2), isr=(1, 2), leader=1, leader_epoch=0,
                                   partition_epoch=0), None)
    return p


class Leader:
    """Node 1: what handle_fetch uses of a node, over real partitions."""

    def __init__(self, parts: dict[tuple[str, int], Partition]) -> None:
        self.parts = parts
        self.config = {"fetch.max.bytes": 50 << 20}
        self.image = SimpleNamespace(topics={})
        self.replicas = SimpleNamespace(get=parts.get, wait_for_data=wait_for_any)
        self.replication = SimpleNamespace(on_follower_fetch=self._fetched)
        self.metrics = NodeMetrics(1)
        self.stopping = False
        self.fetch_sessions = FetchSessionCache(1000, 120_000)
        self.follower_offsets: dict[tuple[str, int], int] = {}

    def _fetched(self, p: Partition, replica_id: int, offset: int) -> None:
        self.follower_offsets[(p.topic, p.index)] = offset


class Loopback:
    """The fetcher's connection: each request is encoded, decoded and handled by the
    leader's handle_fetch, and the answer goes back through the codec."""

    def __init__(self, leader: Leader) -> None:
        self.leader = leader
        self.last_request_bytes = 0
        self.sent: list[tuple[int, Any]] = []  # (frame size, decoded request)

    async def request(self, api_key: int, version: int, data: dict[str, Any],
                      timeout: float) -> Any:
        frame = codec.encode_request(codec.build_request(api_key, version, data), 7, "f")
        self.last_request_bytes = len(frame)
        req = codec.decode_request(frame[4:], {1: (4, 12)}).body
        self.sent.append((len(frame), req))
        resp = await fetch.handle_fetch(self.leader, RequestContext(1, version, 7, "f", "h", 1),  # type: ignore[arg-type]
                                        req)
        out = codec.encode_response(api_key, version, 7, resp)
        return codec.decode_response(bytes(out[4:]), api_key, version)[1]


def setup(tmp_path: Path, n: int) -> tuple[dict[tuple[str, int], Partition], LeaderFetcher,
                                           Loopback]:
    leaders = {(f"topic-{i % 7}", i): partition(tmp_path / f"l{i}", f"topic-{i % 7}", i, 1)
               for i in range(n)}
    followers = {tp: partition(tmp_path / f"f{i}", tp[0], i, 2)
                 for i, tp in enumerate(leaders)}
    node = SimpleNamespace(node_id=2, metrics=NodeMetrics(2), config={
        "replica.fetch.max.bytes": 1 << 20, "replica.fetch.wait.max.ms": 30,
        "replica.fetch.response.max.bytes": 10 << 20})
    fetcher = LeaderFetcher(node, leader_id=1)  # type: ignore[arg-type]
    fetcher.partitions = followers
    return leaders, fetcher, Loopback(Leader(leaders))


def idle_request_sizes(tmp_path: Path, n: int) -> list[int]:
    leaders, fetcher, conn = setup(tmp_path, n)

    async def run() -> None:
        for _ in range(4):
            await fetcher._fetch_once(conn)  # type: ignore[arg-type]

    asyncio.run(run())
    return [size for size, _ in conn.sent]


def test_idle_follower_requests_do_not_grow_with_its_partitions(tmp_path: Path) -> None:
    small = idle_request_sizes(tmp_path / "small", 10)
    large = idle_request_sizes(tmp_path / "large", 150)
    # The first request is full: it names every partition.
    assert large[0] > small[0] + 140 * 20
    # After it, an idle follower sends the same few bytes whatever it follows.
    assert small[1:] == large[1:] and max(large[1:]) < 100, (small, large)


def test_records_replicate_through_the_session(tmp_path: Path) -> None:
    leaders, fetcher, conn = setup(tmp_path, 20)
    followers = fetcher.partitions

    async def run() -> None:
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        assert fetcher.session.session_id != 0
        for tp in [("topic-3", 3), ("topic-4", 11)]:
            leaders[tp].append(encode_batch([Record(0, value=b"v")]), acks_all=False)
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]

    asyncio.run(run())
    assert followers[("topic-3", 3)].log.log_end_offset == 1
    assert followers[("topic-4", 11)].log.log_end_offset == 1
    [_, with_data, after] = [req for _, req in conn.sent]
    assert with_data.session_epoch == 1 and with_data.topics == ()
    # The request after the records names only the two partitions that moved...
    assert sorted((t.topic, p.partition, p.fetch_offset) for t in after.topics
                  for p in t.partitions) == [("topic-3", 3, 1), ("topic-4", 11, 1)]
    # ...and the leader saw every follower's position, named or not (ISR upkeep).
    assert conn.leader.follower_offsets[("topic-3", 3)] == 1
    assert len(conn.leader.follower_offsets) == 20


def test_a_lost_session_starts_over_with_a_full_fetch(tmp_path: Path) -> None:
    leaders, fetcher, conn = setup(tmp_path, 5)

    async def run() -> None:
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        conn.leader.fetch_sessions.remove(fetcher.session.session_id)  # e.g. evicted
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]

    asyncio.run(run())
    reqs = [req for _, req in conn.sent]
    assert [(r.session_epoch, sum(len(t.partitions) for t in r.topics)) for r in reqs] \
        == [(0, 5), (1, 0), (0, 5)]
    assert reqs[2].session_id == 0
    assert len(conn.leader.fetch_sessions) == 1


def consumer_fetch(session_id: int, epoch: int, topics: list[dict[str, Any]],
                   max_wait_ms: int = 0) -> Any:
    return codec.build_request(1, 12, {
        "replica_id": -1, "max_wait": max_wait_ms, "min_bytes": 1, "max_bytes": 1 << 20,
        "isolation_level": 0, "session_id": session_id, "session_epoch": epoch,
        "topics": topics, "forgotten_topics_data": []})


def test_an_incremental_fetch_long_polls_on_all_of_its_session(tmp_path: Path) -> None:
    # A consumer's session of three partitions, led alone (ISR {1}: appends are readable).
    leaders = {}
    for i in range(3):
        p = partition(tmp_path / str(i), "t", i, 1)
        p.assign(PartitionRegistration(replicas=(1,), isr=(1,), leader=1, leader_epoch=0,
                                       partition_epoch=1), None)
        leaders[("t", i)] = p
    leader = Leader(leaders)
    ctx = RequestContext(1, 12, 1, "c", "h", 1)

    async def run() -> tuple[float, Any]:
        full = await fetch.handle_fetch(leader, ctx, consumer_fetch(  # type: ignore[arg-type]
            0, 0, [{"topic": "t", "partitions": [
                {"partition": i, "current_leader_epoch": -1, "fetch_offset": 0,
                 "last_fetched_epoch": -1, "log_start_offset": -1,
                 "partition_max_bytes": 1 << 20} for i in range(3)]}]))
        assert full.session_id != 0 and len(full.responses[0].partitions) == 3
        start = time.monotonic()
        # The incremental fetch names no partition: it waits on all three.
        task = asyncio.ensure_future(fetch.handle_fetch(
            leader, ctx, consumer_fetch(full.session_id, 1, [], 5000)))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert not task.done()  # nothing to say: parked
        leaders[("t", 2)].append(encode_batch([Record(0, value=b"v")]), acks_all=False)
        resp = await task
        return time.monotonic() - start, resp

    took, resp = asyncio.run(run())
    assert took < 2
    assert resp.error_code == ErrorCode.none
    assert [(t.topic, [p.partition_index for p in t.partitions]) for t in resp.responses] \
        == [("t", [2])]
    assert resp.responses[0].partitions[0].records


def test_bad_session_ids_and_epochs_are_protocol_errors(tmp_path: Path) -> None:
    leaders, fetcher, conn = setup(tmp_path, 1)

    def ask(session_id: int, epoch: int) -> Any:
        req = consumer_fetch(session_id, epoch, [])
        return asyncio.run(fetch.handle_fetch(conn.leader, RequestContext(1, 12, 1, "c", "h", 1),  # type: ignore[arg-type]
                                              req))

    for sid, epoch, code in ((5, 1, ErrorCode.fetch_session_id_not_found),
                             (0, 9, ErrorCode.fetch_session_id_not_found),
                             (-1, -7, ErrorCode.fetch_session_id_not_found),
                             (2**31 - 1, 2**31 - 1, ErrorCode.fetch_session_id_not_found)):
        resp = ask(sid, epoch)
        assert (resp.error_code, resp.session_id, resp.responses) == (code, 0, ())
    asyncio.run(fetcher._fetch_once(conn))  # type: ignore[arg-type]
    resp = ask(fetcher.session.session_id, 3)
    assert resp.error_code == ErrorCode.invalid_fetch_session_epoch

"""Replication throttles (KIP-73) on the fetch path, through the real Fetch handler, codec,
partitions and follower fetcher: the leader answers an out-of-sync follower's throttled
partition without records while its throttle is exceeded and wakes a parked fetch when the
throttle frees up; the follower leaves such partitions out of its session; in-sync
replicas and consumers are never held back; throttled bytes are counted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from odradek import storage
from odradek.broker.metrics import NodeMetrics
from odradek.broker.partition import Partition
from odradek.broker.replication_quota import UNLIMITED, ReplicationQuotas
from odradek.controller.metadata import PartitionRegistration
from odradek.storage import Record, encode_batch
from tests.unit.broker.handlers.test_fetch_read_committed import (
    RU,
    TID,
    TOPIC,
    Node,
    ask,
    fetch_request,
    handle,
    only,
)
from tests.unit.broker.handlers.test_fetch_sessions_wire import names, setup, topic_id

LEADER_LIST = "leader.replication.throttled.replicas"
FOLLOWER_LIST = "follower.replication.throttled.replicas"


def counted(metrics: NodeMetrics, what: str, role: str) -> float:
    name = {"bytes": "odradek_replication_throttled_bytes_total",
            "skipped": "odradek_replication_throttled_partitions_skipped_total"}[what]
    value = metrics.registry.get_sample_value(name, {"role": role})
    assert value is not None
    return value


def leader_node(path: Path, isr: tuple[int, ...], *, listed: str = "0:1",
                rate: int = 1000, used: int = 0) -> Node:
    """Node 1 leading t-0 (replicas 1, 2) with 3 records; its leader throttle at ``rate``
    B/s over ``listed``, ``used`` bytes of which went out in the last 0.9 s."""
    p = Partition(TOPIC, 0, storage.PartitionLog.open(path, storage.LogConfig()), 1)
    p.assign(PartitionRegistration(replicas=(1, 2), isr=isr, leader=1, leader_epoch=0,
                                   partition_epoch=0), TID)
    for _ in range(3):
        p.append(encode_batch([Record(0, value=b"v" * 100)]), acks_all=False)
    node = Node(p)
    node.replication_quotas.update_rates(leader=rate, follower=UNLIMITED)
    node.replication_quotas.update_topic(TOPIC, {LEADER_LIST: listed})
    if used:
        node.replication_quotas.leader.record(used, time.monotonic() - 0.9)
    return node


def follower_fetch(node: Node, max_wait_ms: int = 0) -> Any:
    return only(ask(node, fetch_request(0, RU, replica_id=2, max_wait_ms=max_wait_ms)))


def test_an_out_of_sync_follower_gets_nothing_while_the_throttle_is_exceeded(
        tmp_path: Path) -> None:
    node = leader_node(tmp_path, isr=(1,), used=5000)
    part = follower_fetch(node)
    assert bytes(part.records) == b"" and part.error_code == 0
    assert part.high_watermark == 3  # the rest of the answer is there
    assert node.follower_fetches == [0]  # its position still counts for the ISR
    assert counted(node.metrics, "skipped", "leader") == 1
    assert counted(node.metrics, "bytes", "leader") == 0
    # Consumers are never throttled by it.
    assert len(bytes(only(ask(node, fetch_request(0, RU))).records)) > 300


def test_in_sync_followers_and_other_replicas_are_not_held_back(tmp_path: Path) -> None:
    in_sync = leader_node(tmp_path / "a", isr=(1, 2), used=5000)
    part = follower_fetch(in_sync)
    assert len(bytes(part.records)) > 300
    # Their bytes count against the throttle all the same (Kafka's record of the response).
    assert counted(in_sync.metrics, "bytes", "leader") == len(bytes(part.records))
    assert counted(in_sync.metrics, "skipped", "leader") == 0
    # Listed for another broker (the list says 0:3): not throttled on this one.
    elsewhere = leader_node(tmp_path / "b", isr=(1,), listed="0:3", used=5000)
    assert len(bytes(follower_fetch(elsewhere).records)) > 300
    assert counted(elsewhere.metrics, "bytes", "leader") == 0


def test_under_the_rate_a_throttled_partition_is_served_and_counted(tmp_path: Path) -> None:
    node = leader_node(tmp_path, isr=(1,), listed="*", rate=300)
    part = follower_fetch(node)
    size = len(bytes(part.records))
    assert size > 300
    assert counted(node.metrics, "bytes", "leader") == size
    assert node.replication_quotas.leader.is_quota_exceeded(time.monotonic())  # now over


def test_a_parked_follower_fetch_wakes_when_the_throttle_frees_up(tmp_path: Path) -> None:
    # 1100 B since 0.9 s ago at 1000 B/s: let through again in about 0.2 s.
    node = leader_node(tmp_path, isr=(1,), used=1100)

    async def run() -> tuple[float, Any]:
        start = time.monotonic()
        resp = await handle(node, 12, fetch_request(0, RU, replica_id=2, max_wait_ms=5000))
        return time.monotonic() - start, only(resp)

    took, part = asyncio.run(run())
    assert len(bytes(part.records)) > 300
    assert 0.1 < took < 1.0, took  # not the whole max_wait, not at once
    # Parked, not polling: the partition was read a few times, not thousands.
    assert len(node.follower_fetches) <= 4, node.follower_fetches


def test_the_follower_leaves_throttled_out_of_sync_partitions_out_of_its_session(
        tmp_path: Path) -> None:
    leaders, fetcher, conn = setup(tmp_path, 4)
    followers = fetcher.partitions
    # Broker 2 is out of the ISR of topic-0/0 and topic-1/1, in it for topic-2/2.
    for tp in [("topic-0", 0), ("topic-1", 1)]:
        followers[tp].assign(PartitionRegistration(replicas=(1, 2), isr=(1,), leader=1,
                                                   leader_epoch=0, partition_epoch=1),
                             topic_id(tp[0]))
    quotas: ReplicationQuotas = fetcher.node.replication_quotas
    for topic in ("topic-0", "topic-1", "topic-2"):
        quotas.update_topic(topic, {FOLLOWER_LIST: "*"})
    quotas.update_rates(leader=UNLIMITED, follower=1)
    quotas.follower.record(10_000, time.monotonic())  # exceeded for seconds
    metrics = fetcher.node.metrics

    def append_everywhere() -> None:
        for p in leaders.values():
            p.append(encode_batch([Record(0, value=b"x" * 50)]), acks_all=False)

    async def run() -> None:
        append_everywhere()
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        assert [followers[tp].log.log_end_offset for tp in sorted(followers)] == [0, 0, 1, 1]
        [first] = [req for _, req in conn.sent]
        assert sorted(p for _, p, _ in names(first, 18)) == [2, 3]  # not asked for
        assert counted(metrics, "skipped", "follower") == 2
        # The throttle lifted: both named in the session's next request, and fetched.
        quotas.update_rates(leader=UNLIMITED, follower=UNLIMITED)
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        assert {(p, offset) for _, p, offset in names(conn.sent[-1][1], 18)} \
            >= {(0, 0), (1, 0)}
        assert all(p.log.log_end_offset == 1 for p in followers.values())
        # Caught up with its leader's high watermark, topic-0/0 is in sync (Kafka's
        # fetch-state lag): an exceeded throttle no longer holds it back.
        quotas.update_rates(leader=UNLIMITED, follower=1)
        append_everywhere()
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        assert all(p.log.log_end_offset == 2 for p in followers.values())

    asyncio.run(run())
    # Bytes of the three listed topics count, topic-3's do not.
    listed = sum(len(leaders[tp].log.read(0, 1 << 20, max_offset=2).records)
                 for tp in leaders if tp[0] != "topic-3")
    assert counted(metrics, "bytes", "follower") == listed


def test_a_follower_with_everything_held_back_waits_without_asking(tmp_path: Path) -> None:
    leaders, fetcher, conn = setup(tmp_path, 2)
    for tp, p in fetcher.partitions.items():
        p.assign(PartitionRegistration(replicas=(1, 2), isr=(1,), leader=1, leader_epoch=0,
                                       partition_epoch=1), topic_id(tp[0]))
        fetcher.node.replication_quotas.update_topic(tp[0], {FOLLOWER_LIST: "*"})
    quotas = fetcher.node.replication_quotas
    quotas.update_rates(leader=UNLIMITED, follower=1000)
    quotas.follower.record(1100, time.monotonic() - 0.9)  # let through in ~0.2 s

    async def run() -> float:
        start = time.monotonic()
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        return time.monotonic() - start

    took = asyncio.run(run())
    assert conn.sent == []  # nothing to ask for: no empty requests in a loop
    assert 0.1 < took < 1.0, took

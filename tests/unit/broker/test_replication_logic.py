"""Leader-side divergence detection and follower-side truncation, wired back to back
without sockets: the follower's fetch goes through the real Fetch read path."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.handlers.fetch import _read_partition
from odradek.broker.partition import Partition
from odradek.broker.replication import LeaderFetcher, ReplicationManager, _Backoff
from odradek.broker.replication_quota import ReplicationQuotas
from odradek.controller.metadata import PartitionRegistration
from odradek.storage.records import Record, decode_batches, encode_batch


def make_partition(path: Path, *, leader: bool, epoch: int, isr: tuple[int, ...]) -> Partition:
    plog = storage.PartitionLog.open(path, storage.LogConfig())
    p = Partition("t", 0, plog, node_id=1 if leader else 2)
    role(p, leader=leader, epoch=epoch, isr=isr)
    return p


def role(p: Partition, *, leader: bool, epoch: int, isr: tuple[int, ...] = (1, 2)) -> None:
    """Give ``p`` the registration that makes it leader (or follower) at ``epoch``; a new
    leader epoch starts at the log end, as a real leadership does."""
    me = p.state.node_id
    p.assign(PartitionRegistration(replicas=(1, 2), isr=isr, leader=me if leader else 3 - me,
                                   leader_epoch=epoch, partition_epoch=epoch), None)


def produce(p: Partition, values: list[str]) -> None:
    for v in values:
        p.log.append(encode_batch([Record(0, value=v.encode())]), leader_epoch=p.leader_epoch)


def values(p: Partition) -> list[str]:
    r = p.log.read(p.log.log_start_offset, 1 << 20, max_offset=p.log.log_end_offset)
    return [rec.value.decode() for _, recs in decode_batches(r.records) for rec in recs]


def fetch_round(leader: Partition, follower: Partition, fetcher: LeaderFetcher) -> Any:
    """One follower fetch: the leader answers through the real read path."""
    req = SimpleNamespace(partition=0, current_leader_epoch=follower.leader_epoch,
                          fetch_offset=follower.log.log_end_offset,
                          last_fetched_epoch=follower.log.leader_epochs.latest_epoch,
                          partition_max_bytes=1 << 20)
    leader_node = SimpleNamespace(
        replicas=SimpleNamespace(get=lambda tp: leader),
        image=SimpleNamespace(topics={"t": SimpleNamespace(partitions={0: None})}),
        replication=SimpleNamespace(on_follower_fetch=lambda p, r, o, e: None),
        replication_quotas=ReplicationQuotas(leader.state.node_id))
    entry, _, _ = _read_partition(leader_node, "t", None, req, 1 << 20, True, replica_id=2,
                                  replica_epoch=-1)
    pd = SimpleNamespace(
        error_code=entry.get("error_code", ErrorCode.none),
        diverging_epoch=SimpleNamespace(**entry.get("diverging_epoch",
                                                    {"epoch": -1, "end_offset": -1})),
        records=entry["records"], high_watermark=entry["high_watermark"],
        log_start_offset=entry["log_start_offset"])
    assert fetcher._apply(follower, pd) is _Backoff.NONE
    return entry


def test_follower_truncates_a_divergent_suffix_not_to_its_high_watermark(tmp_path: Path) -> None:
    # A led epoch 0 and wrote 0..14, of which B replicated 0..9; then B took over at epoch
    # 1 and wrote 3 records. A comes back as B's follower.
    a = make_partition(tmp_path / "a", leader=True, epoch=0, isr=(1, 2))
    produce(a, [f"r{i}" for i in range(15)])
    b = make_partition(tmp_path / "b", leader=False, epoch=0, isr=(1, 2))
    b.log.append_as_follower(a.log.read(0, 1 << 20, max_offset=10).records)
    b.log.high_watermark = 5  # B's HW lagged: truncating to it would lose 5..9
    role(b, leader=True, epoch=1)
    produce(b, ["b10", "b11", "b12"])
    role(a, leader=False, epoch=1)

    fetcher = LeaderFetcher(SimpleNamespace(node_id=1), leader_id=2)
    first = fetch_round(b, a, fetcher)
    assert first["diverging_epoch"] == {"epoch": 0, "end_offset": 10}
    assert a.log.log_end_offset == 10
    for _ in range(3):
        fetch_round(b, a, fetcher)
    assert values(a) == values(b) == [f"r{i}" for i in range(10)] + ["b10", "b11", "b12"]
    assert a.log.leader_epochs.latest_epoch == 1


def test_follower_that_missed_an_epoch_converges(tmp_path: Path) -> None:
    # Leader history: epoch 0 -> 0..7, epoch 1 -> 8..11, epoch 3 -> 12..; follower has
    # epoch 0 -> 0..9 and epoch 2 -> 10..14, neither of which the leader kept past 8.
    leader = make_partition(tmp_path / "l", leader=True, epoch=0, isr=(1, 2))
    produce(leader, [f"c{i}" for i in range(8)])
    follower = make_partition(tmp_path / "f", leader=False, epoch=0, isr=(1, 2))
    follower.log.append_as_follower(leader.log.read(0, 1 << 20, max_offset=8).records)
    role(follower, leader=True, epoch=0)
    produce(follower, ["x8", "x9"])
    role(follower, leader=True, epoch=2)
    produce(follower, ["x10", "x11", "x12", "x13", "x14"])
    assert leader.log.log_end_offset == 8
    role(leader, leader=True, epoch=1)
    produce(leader, ["l8", "l9", "l10", "l11"])
    role(leader, leader=True, epoch=3)
    produce(leader, ["l12"])
    role(follower, leader=False, epoch=3)

    fetcher = LeaderFetcher(SimpleNamespace(node_id=2), leader_id=1)
    for _ in range(6):
        fetch_round(leader, follower, fetcher)
    assert values(follower) == values(leader)
    assert values(follower)[:8] == [f"c{i}" for i in range(8)]


def test_a_fetch_from_an_earlier_process_of_a_follower_does_not_make_it_in_sync() -> None:
    """KIP-903: from Fetch v15 a follower sends its broker epoch; the leader counts it
    toward the ISR only if that is its current registration's epoch (a fetch without one,
    v14 and older, is judged by liveness alone, as in Kafka)."""
    eligible: list[bool] = []
    p = SimpleNamespace(follower_fetched=lambda replica, offset, live: eligible.append(live))
    node = SimpleNamespace(live_broker_ids=lambda: frozenset({2}),
                           image=SimpleNamespace(brokers={2: SimpleNamespace(epoch=41)}))
    manager = ReplicationManager(node)  # type: ignore[arg-type]
    for replica, epoch in ((2, -1), (2, 41), (2, 40), (3, 7)):
        manager.on_follower_fetch(p, replica, 5, epoch)  # type: ignore[arg-type]
    assert eligible == [True, True, False, False]

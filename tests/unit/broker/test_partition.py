"""The owner of a hosted partition (broker/partition.py): its log's high watermark and the
acks=all waits, driven by metadata and follower fetches, on a real log without processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.partition import NotEnoughReplicas, Partition
from odradek.controller.metadata import PartitionRegistration
from odradek.storage.records import Record, encode_batch

ME = 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def registration(leader: int = ME, isr: tuple[int, ...] = (1, 2, 3), epoch: int = 1,
                 partition_epoch: int = 1) -> PartitionRegistration:
    return PartitionRegistration(replicas=(1, 2, 3), isr=isr, leader=leader,
                                 leader_epoch=epoch, partition_epoch=partition_epoch)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def leader(tmp_path: Path, clock: Clock) -> Partition:
    p = Partition("t", 0, storage.PartitionLog.open(tmp_path / "t-0", storage.LogConfig()),
                  ME, min_isr=2, clock=clock)
    p.assign(registration(), None)
    return p


def batch(n: int = 1) -> bytes:
    return encode_batch([Record(i, value=b"v") for i in range(n)])


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_acks_all_is_answered_when_the_isr_has_the_write(leader: Partition) -> None:
    async def scenario() -> list[ErrorCode]:
        end = leader.append(batch(3), acks_all=True).last_offset + 1
        wait = asyncio.create_task(leader.wait_replicated(end, 5))
        await asyncio.sleep(0)
        leader.follower_fetched(2, end, live=True)
        await asyncio.sleep(0)
        assert not wait.done()  # replica 3 is in the ISR and has nothing yet
        leader.follower_fetched(3, end, live=True)
        return [await wait, leader.log.high_watermark]

    code, hw = run(scenario())
    assert code == ErrorCode.none and hw == 3


def test_acks_all_refused_before_append_below_min_isr(leader: Partition) -> None:
    leader.assign(registration(isr=(1,), partition_epoch=2), None)
    with pytest.raises(NotEnoughReplicas, match="min.insync.replicas=2"):
        leader.append(batch(), acks_all=True)
    assert leader.log.log_end_offset == 0
    # acks=1 still goes in; the high watermark does not move below min ISR.
    leader.append(batch(), acks_all=False)
    assert (leader.log.log_end_offset, leader.log.high_watermark) == (1, 0)


def test_waiting_write_fails_when_the_isr_shrinks_below_min_isr(leader: Partition) -> None:
    async def scenario() -> ErrorCode:
        end = leader.append(batch(), acks_all=True).last_offset + 1
        wait = asyncio.create_task(leader.wait_replicated(end, 5))
        await asyncio.sleep(0)
        leader.assign(registration(isr=(1,), partition_epoch=2), None)
        return await wait

    assert run(scenario()) == ErrorCode.not_enough_replicas_after_append


def test_waiting_write_fails_when_leadership_moves(leader: Partition) -> None:
    async def scenario() -> ErrorCode:
        end = leader.append(batch(), acks_all=True).last_offset + 1
        wait = asyncio.create_task(leader.wait_replicated(end, 5))
        await asyncio.sleep(0)
        leader.assign(registration(leader=2, epoch=2, partition_epoch=2), None)
        return await wait

    assert run(scenario()) == ErrorCode.not_leader_or_follower


def test_waiting_write_times_out(leader: Partition) -> None:
    async def scenario() -> ErrorCode:
        end = leader.append(batch(), acks_all=True).last_offset + 1
        return await leader.wait_replicated(end, 0.01)

    assert run(scenario()) == ErrorCode.request_timed_out


def test_min_isr_change_lets_the_high_watermark_move(leader: Partition) -> None:
    leader.assign(registration(isr=(1,), partition_epoch=2), None)
    leader.append(batch(2), acks_all=False)
    assert leader.log.high_watermark == 0
    leader.set_min_isr(1)
    assert leader.log.high_watermark == 2


def test_caught_up_follower_is_proposed_for_the_isr(leader: Partition) -> None:
    leader.assign(registration(isr=(1, 2), partition_epoch=2), None)
    leader.append(batch(4), acks_all=True)
    assert leader.follower_fetched(2, 4, live=True) is None  # already in the ISR
    assert leader.log.high_watermark == 4
    assert leader.follower_fetched(3, 2, live=True) is None  # behind the high watermark
    assert leader.follower_fetched(3, 4, live=False) is None  # fenced
    assert leader.follower_fetched(3, 4, live=True) == (1, 2, 3)


def test_lagging_follower_is_proposed_out_of_the_isr(leader: Partition, clock: Clock) -> None:
    leader.append(batch(2), acks_all=True)
    clock.now = 5
    leader.follower_fetched(2, 2, live=True)
    leader.follower_fetched(3, 1, live=True)
    clock.now = 31
    assert leader.isr_without_laggards(30) == (1, 2)


def test_new_leader_epoch_starts_at_the_log_end(leader: Partition) -> None:
    leader.append(batch(3), acks_all=False)
    leader.assign(registration(epoch=4, partition_epoch=2), None)
    assert leader.epoch_start == 3
    assert leader.log.leader_epochs.latest_entry is not None
    assert (leader.log.leader_epochs.latest_entry.epoch, leader.epoch_start) == (4, 3)
    # Same epoch again (a partition epoch change only): no new entry.
    leader.assign(registration(epoch=4, isr=(1, 2), partition_epoch=3), None)
    assert leader.log.leader_epochs.latest_entry.start_offset == 3


def test_follower_high_watermark_follows_its_leader(tmp_path: Path) -> None:
    p = Partition("t", 0, storage.PartitionLog.open(tmp_path / "f", storage.LogConfig()), ME)
    p.assign(registration(leader=2), None)
    p.log.append_as_follower(batch(5))
    p.follow_leader_high_watermark(8)  # the leader has more than we hold yet
    assert p.log.high_watermark == 5
    p.follow_leader_high_watermark(3)  # never back
    assert p.log.high_watermark == 5

"""The group coordinator's log on a real partition (broker/group_log.py): transactional
offset commits are accepted by storage as Kafka writes them, read back with their producer
id, and a coordinator replays them with their markers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.group.clock import ManualClock
from odradek.broker.group.coordinator import GroupCoordinator
from odradek.broker.group.log import LogMarker, LogRecord, TxnProducer
from odradek.broker.group.offsets import OffsetCommitEntry
from odradek.broker.group_log import GroupLogError, PartitionGroupLog
from odradek.broker.partition import Partition
from odradek.controller.metadata import PartitionRegistration
from odradek.storage.records import encode_marker_batch

TOPIC = "__consumer_offsets"
PID = 77


def open_partition(path: Path) -> Partition:
    p = Partition(TOPIC, 0, storage.PartitionLog.open(path, storage.LogConfig()), 1)
    p.assign(PartitionRegistration(replicas=(1,), isr=(1,), leader=1, leader_epoch=1,
                                   partition_epoch=1), None)
    return p


@pytest.fixture
def partition(tmp_path: Path) -> Partition:
    return open_partition(tmp_path / f"{TOPIC}-0")


def write_marker(p: Partition, producer_id: int, epoch: int, commit: bool) -> None:
    """What WriteTxnMarkers appends to the partition."""
    marker = encode_marker_batch(producer_id, epoch, 0, commit, int(time.time() * 1000))
    p.append(marker, acks_all=True, origin=storage.AppendOrigin.COORDINATOR)


def test_transactional_batches_are_accepted_and_read_back(partition: Partition) -> None:
    log = PartitionGroupLog({(TOPIC, 0): partition}, TOPIC, 1)

    async def scenario() -> None:
        assert await log.append(0, [(b"k0", b"plain")]) == 0
        # Two commits in one transaction: same epoch, both at base sequence 0 (as Kafka
        # writes them); a client append would take the second for a duplicate.
        producer = TxnProducer(PID, 5)
        assert await log.append(0, [(b"k1", b"a"), (b"k2", b"b")], producer) == 1
        assert await log.append(0, [(b"k1", b"c")], producer) == 3
        # The transaction holds back the last stable offset until its marker.
        assert partition.log.last_stable_offset == 1
        write_marker(partition, PID, 5, True)
        assert partition.log.last_stable_offset == partition.log.log_end_offset
        # A fenced (older) epoch is refused by storage with Kafka's error.
        await log.append(0, [(b"k3", b"d")], TxnProducer(PID, 6))
        with pytest.raises(GroupLogError) as fenced:
            await log.append(0, [(b"k3", b"e")], producer)
        assert fenced.value.error_code is ErrorCode.invalid_producer_epoch

    asyncio.run(scenario())
    assert list(log.read(0)) == [
        LogRecord(0, b"k0", b"plain"),
        LogRecord(1, b"k1", b"a", PID, True),
        LogRecord(2, b"k2", b"b", PID, True),
        LogRecord(3, b"k1", b"c", PID, True),
        LogMarker(4, PID, True),
        LogRecord(5, b"k3", b"d", PID, True),
    ]


def test_not_leader_and_too_few_replicas(partition: Partition) -> None:
    log = PartitionGroupLog({}, TOPIC, 1)
    with pytest.raises(GroupLogError) as missing:
        asyncio.run(log.append(0, [(b"k", b"v")]))
    assert missing.value.error_code is ErrorCode.not_coordinator
    partition.set_min_isr(2)
    log = PartitionGroupLog({(TOPIC, 0): partition}, TOPIC, 1)
    with pytest.raises(GroupLogError) as few:
        asyncio.run(log.append(0, [(b"k", b"v")]))
    assert few.value.error_code is ErrorCode.not_enough_replicas


def test_coordinator_replays_transactional_commits_from_the_partition(tmp_path: Path) -> None:
    path = tmp_path / f"{TOPIC}-0"
    partition = open_partition(path)

    def coordinator(p: Partition) -> GroupCoordinator:
        return GroupCoordinator(PartitionGroupLog({(TOPIC, 0): p}, TOPIC, 1),
                                partition_exists=lambda t, i: t == "t", clock=ManualClock())

    async def first() -> None:
        coord = coordinator(partition)
        await coord.load_partition(0)
        offsets = coord.offsets
        await offsets.commit_offsets("g", {("t", 0): OffsetCommitEntry(1)})
        for pid, offset in ((PID, 10), (PID + 1, 20), (PID + 2, 30)):
            res = await offsets.commit_transactional_offsets(
                "g", {("t", pid - PID): OffsetCommitEntry(offset)}, producer_id=pid,
                producer_epoch=0)
            assert res == {("t", pid - PID): ErrorCode.none}
        write_marker(partition, PID, 0, True)
        coord.on_transaction_completed(0, PID, True)
        write_marker(partition, PID + 1, 0, False)
        coord.on_transaction_completed(0, PID + 1, False)
        assert offsets.committed_offsets("g") == {("t", 0): 10}
        await coord.close()

    async def second() -> None:
        # After a restart the open transaction (PID + 2) is pending again.
        coord = coordinator(open_partition(path))
        await coord.load_partition(0)
        assert coord.offsets.committed_offsets("g") == {("t", 0): 10}
        assert coord.offsets.unstable_partitions("g") == {("t", 2)}
        await coord.close()

    asyncio.run(first())
    partition.log.close()
    asyncio.run(second())

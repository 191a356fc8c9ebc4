"""Idempotent producer checks, through the partition log."""

from __future__ import annotations

from pathlib import Path

import pytest

from odradek.storage import (
    AppendOrigin,
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
    PartitionLog,
    Record,
    encode_batch,
)
from odradek.storage.producer_state import BATCHES_TO_RETAIN
from tests.unit.storage.storage_testlib import Clock, crash, make_batch, open_log


def produce(log: PartitionLog, seq: int, n: int = 2, *, pid: int = 42, epoch: int = 0):
    return log.append(make_batch(n, pid=pid, epoch=epoch, seq=seq), leader_epoch=0)


def test_duplicate_is_answered_with_original_offsets(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    first = produce(log, 0)
    produce(log, 2)
    end = log.log_end_offset
    dup = produce(log, 0)
    assert dup.duplicate
    assert (dup.base_offset, dup.last_offset) == (first.base_offset, first.last_offset)
    assert log.log_end_offset == end
    # A different epoch with the same sequence is not a duplicate.
    assert not produce(log, 0, epoch=1).duplicate


def test_only_the_last_five_batches_are_remembered(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    for i in range(BATCHES_TO_RETAIN + 1):
        produce(log, 2 * i)
    assert produce(log, 2).duplicate  # 2nd batch is among the last five
    with pytest.raises(OutOfOrderSequenceError):
        produce(log, 0)  # 1st batch was forgotten


def test_sequence_gap_and_reorder(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    produce(log, 0)
    with pytest.raises(OutOfOrderSequenceError, match="sequence 5 does not follow .* 1"):
        produce(log, 5)
    with pytest.raises(OutOfOrderSequenceError):
        produce(log, 1)  # overlaps a written batch without matching it
    assert log.log_end_offset == 2
    produce(log, 2)


def test_epochs(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    produce(log, 0, epoch=3)
    with pytest.raises(InvalidProducerEpochError, match="epoch 2, older than .* 3"):
        produce(log, 2, epoch=2)
    with pytest.raises(OutOfOrderSequenceError, match="a new epoch starts at 0"):
        produce(log, 2, epoch=4)
    produce(log, 0, epoch=4)
    produce(log, 2, epoch=4)
    assert log.producer_state.entry(42).epoch == 4


def test_unknown_producer_may_start_anywhere(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    produce(log, 1234)
    produce(log, 1236)


def test_sequence_wraps(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    produce(log, 2**31 - 2, 3)  # 2**31-2, 2**31-1, 0
    produce(log, 1)
    produce(log, 3)
    with pytest.raises(OutOfOrderSequenceError):
        produce(log, 0)


def test_failed_multi_batch_append_changes_nothing(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    produce(log, 0)
    data = make_batch(2, pid=42, epoch=0, seq=2) + make_batch(2, pid=42, epoch=0, seq=9)
    with pytest.raises(OutOfOrderSequenceError):
        log.append(data, leader_epoch=0)
    assert log.log_end_offset == 2
    produce(log, 2)  # state did not advance past seq 1


@pytest.mark.parametrize("clean", [True, False])
def test_state_is_rebuilt_on_open(tmp_path: Path, clean: bool) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, segment_bytes=300)
    produce(log, 0, pid=1)
    produce(log, 0, pid=2, epoch=5)
    produce(log, 2, pid=1)
    produce(log, 2, pid=2, epoch=5)
    log.close() if clean else crash(log)
    log = open_log(d, segment_bytes=300)
    assert len(log.segments) > 1
    dup = produce(log, 0, pid=1)
    assert dup.duplicate and dup.base_offset == 0
    with pytest.raises(InvalidProducerEpochError):
        produce(log, 4, pid=2, epoch=4)
    with pytest.raises(OutOfOrderSequenceError):
        produce(log, 6, pid=1)
    produce(log, 4, pid=1)


def test_truncation_rolls_producer_state_back(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    produce(log, 0)
    produce(log, 2)
    log.truncate_to(2)
    # The batch with sequence 2 is gone: resending it is new data, not a duplicate.
    result = produce(log, 2)
    assert not result.duplicate and result.base_offset == 2


def test_retention_forgets_producers(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=200)
    produce(log, 0, pid=7)
    produce(log, 0, pid=8)
    log.high_watermark = log.log_end_offset
    log.delete_records(2)
    assert log.producer_state.entry(7) is None
    produce(log, 50, pid=7)  # unknown again: any sequence is accepted
    with pytest.raises(OutOfOrderSequenceError):
        produce(log, 50, pid=8)


def test_control_batches_bump_the_epoch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    produce(log, 0, epoch=1)
    marker = encode_batch(
        [Record(0, 0, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00")],
        producer_id=42,
        producer_epoch=2,
        is_control=True,
        is_transactional=True,
    )
    log.append(marker, leader_epoch=0, origin=AppendOrigin.COORDINATOR)
    with pytest.raises(InvalidProducerEpochError):
        produce(log, 2, epoch=1)
    produce(log, 0, epoch=2)


def test_follower_appends_update_state_without_checks(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader", Clock())
    follower = open_log(tmp_path / "follower", Clock())
    produce(leader, 100)
    follower.append_as_follower(leader.read(0, 10_000).records)
    assert follower.producer_state.entry(42).last_seq == 101
    assert produce(follower, 100).duplicate


def test_coordinator_writes_are_checked_for_epoch_not_sequence(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    produce(log, 0, epoch=3)
    with pytest.raises(InvalidProducerEpochError, match="epoch 2, older than the last seen epoch 3"):
        log.append(make_batch(1, pid=42, epoch=2, seq=2), leader_epoch=0,
                   origin=AppendOrigin.COORDINATOR)
    # Coordinators (offset commits inside transactions) write without sequences to check.
    result = log.append(make_batch(1, pid=42, epoch=3, seq=77), leader_epoch=0,
                        origin=AppendOrigin.COORDINATOR)
    assert result.base_offset == 2 and log.producer_state.entry(42).last_seq == 77


@pytest.mark.parametrize("clean", [True, False])
def test_every_retained_batch_survives_a_restart(tmp_path: Path, clean: bool) -> None:
    """A snapshot keeps all five batches a retrying producer may resend (Kafka's keeps one)."""
    d = tmp_path / "t-0"
    log = open_log(d)
    for i in range(BATCHES_TO_RETAIN + 1):
        produce(log, 2 * i)
    log.roll()
    produce(log, 2 * (BATCHES_TO_RETAIN + 1))
    if clean:
        log.close()
    else:
        log.flush()
        crash(log)
    log = open_log(d)
    oldest_retained = produce(log, 4)  # the 3rd batch: the 1st and 2nd were dropped
    assert oldest_retained.duplicate and oldest_retained.base_offset == 4
    with pytest.raises(OutOfOrderSequenceError):
        produce(log, 2)
    assert produce(log, 14).base_offset == 14

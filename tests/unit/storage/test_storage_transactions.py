"""Transactions (KIP-98) in the partition log: the marker codec, the producer-state rules,
the last stable offset, read_committed reads, and producer-state snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from odradek.storage import (
    AbortedTxn,
    AppendOrigin,
    CompletedTxn,
    EndTxnMarker,
    InvalidProducerEpochError,
    InvalidRecordError,
    InvalidTxnStateError,
    PartitionLog,
    Record,
    TransactionCoordinatorFencedError,
    decode_batches,
    encode_batch,
    encode_marker_batch,
    parse_marker,
    producer_snapshot,
    read_batch_header,
)
from odradek.storage.errors import CorruptRecordError, SnapshotCorruptError
from odradek.storage.producer_state import (
    BatchMetadata,
    PendingBatch,
    ProducerEntry,
    ProducerStateManager,
)
from tests.unit.storage.storage_testlib import (
    crash,
    end_txn,
    make_batch,
    open_log,
    txn_batch,
)

# Kafka 4.1.1's MemoryRecords.withEndTransactionMarker(0, 1700000000123, -1, 4242, (short) 7,
# new EndTransactionMarker(COMMIT / ABORT, 3)).
KAFKA_COMMIT = bytes.fromhex(
    "000000000000000000000042ffffffff02e84a02040030000000000000018bcfe5687b0000018bcfe5687b"
    "00000000000010920007ffffffff000000012000000008000000010c00000000000300")
KAFKA_ABORT = bytes.fromhex(
    "000000000000000000000042ffffffff021c74d44c0030000000000000018bcfe5687b0000018bcfe5687b"
    "00000000000010920007ffffffff000000012000000008000000000c00000000000300")


def snapshot_files(log: PartitionLog) -> list[int]:
    return producer_snapshot.list_offsets(log.directory)


# --- the marker codec ------------------------------------------------------------------------


def test_marker_batches_are_byte_exact_with_kafka() -> None:
    commit = encode_marker_batch(4242, 7, 3, True, 1_700_000_000_123)
    abort = encode_marker_batch(4242, 7, 3, False, 1_700_000_000_123)
    assert commit == KAFKA_COMMIT and abort == KAFKA_ABORT
    header = read_batch_header(KAFKA_ABORT)
    assert header.is_control and header.is_transactional and header.base_sequence == -1
    assert parse_marker(header, KAFKA_ABORT) == EndTxnMarker(commit=False, coordinator_epoch=3)
    assert parse_marker(read_batch_header(KAFKA_COMMIT), KAFKA_COMMIT) == EndTxnMarker(True, 3)


def test_marker_parsing_refuses_what_is_not_a_marker() -> None:
    def control(key: bytes | None, value: bytes | None) -> bytes:
        return encode_batch([Record(0, 0, key, value)], producer_id=1, producer_epoch=0,
                            is_control=True, is_transactional=True, timestamp_ms=0)

    leader_change = control(b"\x00\x00\x00\x02", b"\x00\x00\x00\x00\x00\x00")
    with pytest.raises(InvalidRecordError, match="type 2"):
        parse_marker(read_batch_header(leader_change), leader_change)
    short = control(b"\x00\x00", b"\x00\x00\x00\x00\x00\x00")
    with pytest.raises(CorruptRecordError, match="key of 2 bytes"):
        parse_marker(read_batch_header(short), short)
    no_value = control(b"\x00\x00\x00\x01", None)
    with pytest.raises(CorruptRecordError, match="value of 0 bytes"):
        parse_marker(read_batch_header(no_value), no_value)
    # A newer value version is read as version 0, as Kafka does.
    newer = control(b"\x00\x00\x00\x01", b"\x00\x01\x00\x00\x00\x09extra")
    assert parse_marker(read_batch_header(newer), newer) == EndTxnMarker(True, 9)
    empty = encode_batch([], producer_id=1, producer_epoch=0, is_control=True,
                         is_transactional=True, timestamp_ms=0)
    assert parse_marker(read_batch_header(empty), empty) is None


# --- producer-state rules ----------------------------------------------------------------------


def pending(data: bytes, offset: int) -> PendingBatch:
    h = read_batch_header(data)
    return PendingBatch(h, offset, h.max_timestamp,
                        parse_marker(h, data) if h.is_control else None)


def test_a_transaction_opens_at_its_first_batch_and_a_marker_closes_it() -> None:
    psm = ProducerStateManager()
    assert psm.apply([pending(txn_batch(5, 0), 10)]) == []
    assert psm.entry(5).current_txn_first_offset == 10
    assert psm.apply([pending(txn_batch(5, 2), 12)]) == []
    assert psm.ongoing_txns == {10: 5} and psm.first_unstable_offset == 10
    done = psm.apply([pending(encode_marker_batch(5, 0, 4, False, 99), 14)])
    assert done == [(CompletedTxn(5, 10, 14, is_aborted=True), 15)]
    entry = psm.entry(5)
    assert entry.current_txn_first_offset is None and entry.coordinator_epoch == 4
    assert (entry.last_offset, entry.last_seq, entry.last_timestamp) == (14, 3, 99)
    # Completed but not replicated: still unstable until the high watermark passes 14.
    assert psm.first_unstable_offset == 10
    psm.on_high_watermark(14)
    assert psm.first_unstable_offset == 10
    psm.on_high_watermark(15)
    assert psm.first_unstable_offset is None and psm.unreplicated_txns == {}


def test_an_aborts_lso_is_the_oldest_other_open_transaction() -> None:
    psm = ProducerStateManager()
    psm.apply([pending(txn_batch(1, 0), 0), pending(txn_batch(2, 0), 2),
               pending(txn_batch(3, 0), 4)])
    # Producer 2 ends first: producer 1's transaction (from 0) still holds the LSO.
    assert psm.apply([pending(encode_marker_batch(2, 0, 0, False, 0), 6)]) == [
        (CompletedTxn(2, 2, 6, True), 0)]
    assert psm.apply([pending(encode_marker_batch(1, 0, 0, False, 0), 7)]) == [
        (CompletedTxn(1, 0, 7, True), 4)]
    assert psm.apply([pending(encode_marker_batch(3, 0, 0, True, 0), 8)]) == [
        (CompletedTxn(3, 4, 8, False), 9)]


def test_a_marker_without_an_open_transaction_completes_nothing() -> None:
    psm = ProducerStateManager()
    assert psm.apply([pending(encode_marker_batch(8, 3, 2, True, 5), 0)]) == []
    entry = psm.entry(8)
    assert (entry.epoch, entry.coordinator_epoch, entry.last_offset) == (3, 2, 0)


def test_a_new_epoch_forgets_batches_but_not_the_open_transaction() -> None:
    psm = ProducerStateManager()
    psm.apply([pending(txn_batch(1, 0, epoch=0), 0), pending(txn_batch(1, 0, epoch=1), 2)])
    entry = psm.entry(1)
    assert entry.epoch == 1 and entry.current_txn_first_offset == 0
    assert entry.batches == [BatchMetadata(0, 1, 2, 3, 1_000_001)]


@pytest.mark.parametrize("origin", [AppendOrigin.CLIENT, AppendOrigin.COORDINATOR])
def test_a_non_transactional_write_inside_a_transaction_is_invalid(tmp_path: Path,
                                                                   origin: AppendOrigin) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(txn_batch(1, 0), leader_epoch=0)
    with pytest.raises(InvalidTxnStateError, match="transaction open since offset 0") as e:
        log.append(make_batch(1, pid=1, epoch=0, seq=2), leader_epoch=0, origin=origin)
    assert e.value.error_code == 48
    assert log.log_end_offset == 2
    end_txn(log, 1, commit=True)
    assert log.append(make_batch(1, pid=1, epoch=0, seq=2), leader_epoch=0).base_offset == 3


def test_replication_applies_what_the_leader_wrote_without_checks(tmp_path: Path) -> None:
    follower = open_log(tmp_path / "t-0")
    data = b""
    batches = [txn_batch(1, 0), make_batch(1, pid=1, epoch=0, seq=2),
               encode_marker_batch(1, 0, 5, True, 0), encode_marker_batch(1, 0, 1, False, 0)]
    offset = 0
    for raw in batches:
        buf = bytearray(raw)
        buf[0:8] = offset.to_bytes(8, "big")
        data += bytes(buf)
        offset += read_batch_header(raw).last_offset_delta + 1
    follower.append_as_follower(data)
    entry = follower.producer_state.entry(1)
    # The zombie marker (coordinator epoch 1 after 5) is applied as the leader wrote it.
    assert entry.coordinator_epoch == 1 and entry.current_txn_first_offset is None


def test_a_marker_from_an_older_coordinator_epoch_is_fenced(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(txn_batch(1, 0), leader_epoch=0)
    end_txn(log, 1, commit=True, coordinator_epoch=5)
    log.append(txn_batch(1, 2), leader_epoch=0)
    with pytest.raises(TransactionCoordinatorFencedError, match="coordinator epoch 4") as e:
        end_txn(log, 1, commit=False, coordinator_epoch=4)
    assert e.value.error_code == 52
    assert log.first_unstable_offset == 0 and log.producer_state.ongoing_txns == {3: 1}
    assert end_txn(log, 1, commit=False, coordinator_epoch=5) == 5


def test_a_marker_with_an_older_producer_epoch_is_refused(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(txn_batch(1, 0, epoch=3), leader_epoch=0)
    with pytest.raises(InvalidProducerEpochError, match="epoch 2, older than the current epoch 3"):
        end_txn(log, 1, commit=True, epoch=2)
    with pytest.raises(InvalidRecordError, match="holds no transaction marker"):
        log.append(encode_batch([], producer_id=1, producer_epoch=3, is_control=True,
                                is_transactional=True, timestamp_ms=0),
                   leader_epoch=0, origin=AppendOrigin.COORDINATOR)
    # Markers come from the coordinator only.
    with pytest.raises(InvalidRecordError, match="control batches"):
        log.append(encode_marker_batch(1, 3, 0, True, 0), leader_epoch=0)


def test_retention_keeps_a_producer_while_its_transaction_is_open(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=200)
    log.append(txn_batch(1, 0), leader_epoch=0)  # 0-1
    log.append(make_batch(2, pid=2, epoch=0, seq=0), leader_epoch=0)  # 2-3
    log.append(make_batch(1), leader_epoch=0)  # 4
    log.high_watermark = log.log_end_offset
    log.delete_records(4)
    assert log.producer_state.entry(2) is None
    assert log.producer_state.entry(1).current_txn_first_offset == 0
    # The transaction began below the log start: the log start is where it is unstable.
    assert log.first_unstable_offset == 4 and log.last_stable_offset == 4
    end_txn(log, 1, commit=False)
    log.high_watermark = log.log_end_offset
    assert log.first_unstable_offset is None and log.last_stable_offset == 6


# --- the last stable offset and read_committed -------------------------------------------------


def test_the_lso_follows_open_and_unreplicated_transactions(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(2), leader_epoch=0)  # 0-1
    log.append(txn_batch(1, 0), leader_epoch=0)  # 2-3
    log.append(make_batch(1), leader_epoch=0)  # 4
    assert (log.first_unstable_offset, log.last_stable_offset) == (2, 0)  # HW 0
    log.high_watermark = 5
    assert log.last_stable_offset == 2
    assert end_txn(log, 1, commit=True) == 5
    assert log.last_stable_offset == 2  # the commit is not below the HW yet
    log.high_watermark = 5
    assert log.last_stable_offset == 2
    log.high_watermark = 6
    assert (log.first_unstable_offset, log.last_stable_offset) == (None, 6)


def read_committed_values(log: PartitionLog, offset: int) -> tuple[list[tuple[int, bytes]],
                                                                  tuple[AbortedTxn, ...] | None,
                                                                  int]:
    result = log.read_committed(offset, 1 << 20)
    values = [(r.offset, r.value) for _, rs in decode_batches(result.records) for r in rs]
    return values, result.aborted, result.next_offset


def test_read_committed_stops_at_the_lso_and_names_the_aborted(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(txn_batch(1, 0, value=b"a"), leader_epoch=0)  # 0-1
    log.append(txn_batch(2, 0, value=b"c"), leader_epoch=0)  # 2-3
    log.append(make_batch([b"plain"]), leader_epoch=0)  # 4
    end_txn(log, 1, commit=False)  # 5
    log.append(txn_batch(3, 0, value=b"open"), leader_epoch=0)  # 6-7
    log.high_watermark = log.log_end_offset
    # Producer 2 is still open from 2: nothing at or past it may be read.
    values, aborted, end = read_committed_values(log, 0)
    assert [o for o, _ in values] == [0, 1] and end == 2
    assert aborted == (AbortedTxn(1, 0, 5, 2),)
    assert read_committed_values(log, 2) == ([], (), 2)
    end_txn(log, 2, commit=True)  # 8
    log.high_watermark = log.log_end_offset
    values, aborted, end = read_committed_values(log, 2)
    assert [o for o, _ in values] == [2, 3, 4, 5] and end == 6  # up to producer 3's start
    assert aborted == (AbortedTxn(1, 0, 5, 2),)
    # The uncommitted read sees everything up to the high watermark.
    assert log.read(0, 1 << 20, max_offset=log.high_watermark).next_offset == 9
    assert log.read(0, 1 << 20).aborted is None


# --- snapshots ---------------------------------------------------------------------------------


def sample_entries() -> tuple[list[ProducerEntry], list[CompletedTxn]]:
    producers = [
        ProducerEntry(7, 2, [BatchMetadata(0, 1, 10, 11, 500), BatchMetadata(2, 2, 14, 14, 501)],
                      20, 3, None, 600),
        ProducerEntry(9, 0, [], 30, 1, 25, -1),
    ]
    return producers, [CompletedTxn(7, 12, 20, True)]


def test_snapshot_files_round_trip_and_refuse_damage(tmp_path: Path) -> None:
    producers, txns = sample_entries()
    data = producer_snapshot.encode(producers, txns)
    assert data[:2] == b"\x00\x01"
    assert producer_snapshot.decode(data) == (producers, txns)
    for bad in (data[:-1], data + b"\x00", data[:6] + bytes([data[6] ^ 1]) + data[7:],
                b"\x00\x02" + data[2:], b"\x00"):
        with pytest.raises(SnapshotCorruptError):
            producer_snapshot.decode(bad)
    assert producer_snapshot.file_name(100) == "00000000000000000100.snapshot"
    assert producer_snapshot.parse_file_name("00000000000000000100.snapshot") == 100
    assert producer_snapshot.parse_file_name("00000000000000000100.snapshot.tmp") is None


def test_snapshots_at_roll_and_close_and_the_state_comes_back(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    log.append(make_batch(2, pid=4, epoch=1, seq=0), leader_epoch=0)  # 0-1
    log.append(txn_batch(5, 0), leader_epoch=0)  # 2-3
    log.roll()
    assert snapshot_files(log) == [4]
    end_txn(log, 5, commit=False, coordinator_epoch=2)  # 4
    log.append(txn_batch(5, 2), leader_epoch=0)  # 5-6: open
    live = dict(log.producer_state.producers)
    log.close()
    assert snapshot_files(log) == [4, 7]
    log = open_log(d)
    assert dict(log.producer_state.producers) == live
    assert log.producer_state.ongoing_txns == {5: 5}
    assert log.aborted_transactions(0, 7) == [AbortedTxn(5, 2, 4, 5)]


def test_a_transaction_that_began_in_a_deleted_segment_survives_a_restart(tmp_path: Path) -> None:
    """What a scan of the log cannot know: its first batch is gone, only the snapshot has it."""
    d = tmp_path / "t-0"
    log = open_log(d)
    log.append(txn_batch(1, 0), leader_epoch=0)  # 0-1
    log.append(make_batch(1), leader_epoch=0)  # 2
    log.roll()
    log.append(make_batch(1), leader_epoch=0)  # 3
    log.high_watermark = log.log_end_offset
    log.delete_records(3)
    assert log.segments[0].base_offset == 3
    for clean in (True, False):
        log.close() if clean else (log.flush(), crash(log))
        log = open_log(d)
        assert log.producer_state.ongoing_txns == {0: 1}
        assert log.first_unstable_offset == 3
    assert end_txn(log, 1, commit=False) == 4
    assert log.aborted_transactions(3, 5) == [AbortedTxn(1, 0, 4, 5)]


def test_a_corrupt_snapshot_is_deleted_and_an_older_one_or_the_log_used(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    log.append(make_batch(2, pid=4, epoch=0, seq=0), leader_epoch=0)  # 0-1
    log.roll()
    log.append(make_batch(2, pid=4, epoch=0, seq=2), leader_epoch=0)  # 2-3
    log.append(txn_batch(6, 0), leader_epoch=0)  # 4-5
    live = dict(log.producer_state.producers)
    log.close()
    assert snapshot_files(log) == [2, 6]
    newest = d / producer_snapshot.file_name(6)
    newest.write_bytes(newest.read_bytes()[:-1])
    log = open_log(d)
    assert dict(log.producer_state.producers) == live
    assert log.producer_state.ongoing_txns == {4: 6}
    assert not newest.exists() or producer_snapshot.decode(newest.read_bytes())
    log.close()
    for offset in snapshot_files(log):
        (d / producer_snapshot.file_name(offset)).write_bytes(b"\x00\x01garbage")
    log = open_log(d)  # none usable: every batch is read
    assert dict(log.producer_state.producers) == live


def test_truncation_deletes_snapshots_above_it_and_reloads_below(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    log.append(txn_batch(1, 0), leader_epoch=0)  # 0-1
    log.roll()
    end_txn(log, 1, commit=True)  # 2
    log.append(make_batch(1, pid=2, epoch=0, seq=0), leader_epoch=0)  # 3
    log.roll()
    assert snapshot_files(log) == [2, 4]
    log.truncate_to(3)
    assert snapshot_files(log) == [2]
    # Loaded from 2, then the commit replayed; it is not below the high watermark (0) yet.
    assert log.producer_state.ongoing_txns == {}
    assert log.producer_state.unreplicated_txns == {0: CompletedTxn(1, 0, 2, False)}
    assert log.producer_state.entry(2) is None
    log.truncate_to(2)
    assert snapshot_files(log) == [2]
    assert log.producer_state.ongoing_txns == {0: 1} and log.first_unstable_offset == 0
    assert log.producer_state.unreplicated_txns == {}


def test_a_snapshot_per_segment_and_a_few_more_are_kept(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    for i in range(8):
        log.append(make_batch(1, pid=1, epoch=0, seq=i), leader_epoch=0)
        log.roll()
        log.high_watermark = log.log_end_offset
        log.flush()
    # Each roll's, at its segment's base (the first segment, at 0, had none to take).
    assert snapshot_files(log) == [1, 2, 3, 4, 5, 6, 7, 8]
    log.delete_records(5)
    assert snapshot_files(log) == [5, 6, 7, 8]
    for seq in (8, 9):
        log.append(make_batch(1, pid=1, epoch=0, seq=seq), leader_epoch=0)
        log.close()  # one at the end each time, where no segment begins
        log = open_log(tmp_path / "t-0")
    # Of those, only the newest: a replay after a crash or a truncation starts at most one
    # segment back.
    assert snapshot_files(log) == [5, 6, 7, 8, 10]


def open_a_transaction_then_roll_twice(d: Path) -> PartitionLog:
    """The storage model's start of both sequences below: producer 11's transaction opens
    at 0 in the first segment, an idempotent write at 1 in the second, a third segment
    begins at 2; reopened, with the high watermark at 1."""
    log = open_log(d)
    log.append(txn_batch(11, 0, 1), leader_epoch=0)  # 0: open
    log.roll()
    log.append(make_batch(1, pid=1, epoch=0, seq=0), leader_epoch=0)  # 1
    log.roll()
    log.close()
    log = open_log(d)
    log.high_watermark = 1
    return log


def test_an_open_transaction_survives_its_first_segment_and_a_truncation(
        tmp_path: Path) -> None:
    """Found by the storage model: the truncation replays from the snapshot at the first
    remaining segment; without it, from an empty state that has no open transaction."""
    log = open_a_transaction_then_roll_twice(tmp_path / "t-0")
    log.delete_records(1)
    log.truncate_to(1)
    assert log.producer_state.ongoing_txns == {0: 11}
    assert log.first_unstable_offset == 1  # the open transaction, from the log start


def test_an_abort_ending_a_deleted_transaction_is_indexed_again_after_a_crash(
        tmp_path: Path) -> None:
    """Found by the storage model: the abort marker's segment lost its transaction index in
    a crash after the transaction's first segment was deleted; the rebuild starts from that
    segment's snapshot, which knows the transaction."""
    d = tmp_path / "t-0"
    log = open_a_transaction_then_roll_twice(d)
    log.truncate_to(1)
    assert end_txn(log, 11, commit=False) == 1
    log.close()
    log = open_log(d)
    log.high_watermark = 1
    log.delete_records(1)
    log.flush()
    crash(log)
    log = open_log(d)
    assert log.aborted_transactions(1, 2) == [AbortedTxn(11, 0, 1, 2)]


def test_a_forgotten_producer_is_snapshotted_and_stays_forgotten(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, segment_bytes=200)
    log.append(make_batch(2, pid=7, epoch=0, seq=0), leader_epoch=0)  # 0-1
    log.roll()
    log.append(make_batch(1), leader_epoch=0)  # 2
    log.high_watermark = log.log_end_offset
    log.delete_records(2)
    assert log.producer_state.entry(7) is None
    # At the end, beside the roll's (the newest at or below the recovery point, 2).
    assert snapshot_files(log) == [2, 3]
    log.append(make_batch(1, pid=7, epoch=0, seq=40), leader_epoch=0)  # 3: a new life
    log.flush()
    crash(log)
    log = open_log(d, segment_bytes=200)
    assert log.producer_state.entry(7).batches == [BatchMetadata(40, 40, 3, 3, 1_000_000)]


def test_the_roll_of_a_split_follower_write_still_leaves_a_snapshot(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    for seq in range(0, 12, 2):
        leader.append(make_batch(2, pid=3, epoch=0, seq=seq), leader_epoch=0)
    follower = open_log(tmp_path / "follower", segment_bytes=250)
    follower.append_as_follower(leader.read(0, 1 << 20).records)
    assert len(follower.segments) > 1
    assert snapshot_files(follower)[-1] == follower.log_end_offset
    follower.close()
    follower = open_log(tmp_path / "follower", segment_bytes=250)
    assert follower.producer_state.entry(3).last_seq == 11

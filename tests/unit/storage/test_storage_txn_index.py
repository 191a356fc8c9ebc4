"""The aborted-transaction index: its file (storage/txn_index.py) and how the partition log
keeps it right through appends, rolls, retention, truncation, crashes and damage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from odradek.storage import AbortedTxn, PartitionLog
from odradek.storage.errors import IndexCorruptError
from odradek.storage.txn_index import ENTRY_SIZE, TransactionIndex
from tests.unit.storage.storage_testlib import (
    Clock,
    crash,
    end_txn,
    make_batch,
    open_log,
    txn_batch,
)

# Written by Kafka 4.1.1's TransactionIndex (kafka-storage jar) for a segment at 100:
# AbortedTxn(4242, 90, 150, 120) then AbortedTxn(7, 151, 160, 161).
KAFKA_TXNINDEX = bytes.fromhex(
    "00000000000000001092000000000000005a00000000000000960000000000000078"
    "00000000000000000007000000000000009700000000000000a000000000000000a1")


def index_path(log: PartitionLog, base: int) -> Path:
    return log.directory / f"{base:020d}.txnindex"


def entries(log: PartitionLog) -> list[tuple[int, int, int, int, int]]:
    """(segment base, producer, first, last, lso) of every index entry of the log."""
    out = []
    for info in log.segments:
        index = TransactionIndex.load(index_path(log, info.base_offset), info.base_offset)
        for t in index.entries if index is not None else []:
            out.append((info.base_offset, t.producer_id, t.first_offset, t.last_offset,
                        t.last_stable_offset))
    return out


# --- the file ------------------------------------------------------------------------------


def test_entries_are_kafkas_34_bytes(tmp_path: Path) -> None:
    assert ENTRY_SIZE == 34
    index = TransactionIndex(tmp_path / "x.txnindex", 100)
    index.append(AbortedTxn(4242, 90, 150, 120))
    index.append(AbortedTxn(7, 151, 160, 161))
    assert (tmp_path / "x.txnindex").read_bytes() == KAFKA_TXNINDEX
    (tmp_path / "k.txnindex").write_bytes(KAFKA_TXNINDEX)
    loaded = TransactionIndex.load(tmp_path / "k.txnindex", 100)
    assert loaded is not None
    assert loaded.entries == [AbortedTxn(4242, 90, 150, 120), AbortedTxn(7, 151, 160, 161)]


def test_collect_overlaps_and_stops_at_the_upper_bound(tmp_path: Path) -> None:
    index = TransactionIndex(tmp_path / "x.txnindex", 0)
    for txn in (AbortedTxn(1, 0, 10, 5), AbortedTxn(2, 5, 20, 12), AbortedTxn(3, 21, 30, 31),
                AbortedTxn(4, 31, 40, 41)):
        index.append(txn)
    # Overlap: marker at or after the start, first offset below the bound; the search is
    # complete at the first entry whose LSO reached the bound.
    assert index.collect(11, 25) == ([AbortedTxn(2, 5, 20, 12), AbortedTxn(3, 21, 30, 31)], True)
    assert index.collect(0, 5) == ([AbortedTxn(1, 0, 10, 5)], True)
    assert index.collect(0, 6) == ([AbortedTxn(1, 0, 10, 5), AbortedTxn(2, 5, 20, 12)], True)
    assert index.collect(41, 50) == ([], False)
    # What Kafka 4.1.1's collectAbortedTxns(155, 300) answers for its own file.
    (tmp_path / "k.txnindex").write_bytes(KAFKA_TXNINDEX)
    kafka = TransactionIndex.load(tmp_path / "k.txnindex", 100)
    assert kafka is not None and kafka.collect(155, 300) == ([AbortedTxn(7, 151, 160, 161)], False)


def test_truncate_reset_and_order(tmp_path: Path) -> None:
    path = tmp_path / "x.txnindex"
    index = TransactionIndex(path, 0)
    index.append(AbortedTxn(1, 0, 10, 11))
    index.append(AbortedTxn(1, 11, 20, 21))
    with pytest.raises(ValueError, match="does not follow"):
        index.append(AbortedTxn(2, 3, 20, 21))
    index.truncate_to(20)
    assert [t.last_offset for t in index.entries] == [10]
    assert path.stat().st_size == ENTRY_SIZE
    index.reset()
    assert index.entries == [] and path.stat().st_size == 0


def test_flush_creates_an_empty_file_and_a_leftover_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "x.txnindex"
    path.write_bytes(b"garbage")
    index = TransactionIndex(path, 0)  # never loaded: the file is not ours
    index.flush()
    assert path.read_bytes() == b""
    fresh = TransactionIndex(tmp_path / "y.txnindex", 0)
    fresh.flush()
    assert (tmp_path / "y.txnindex").read_bytes() == b""


@pytest.mark.parametrize("damage", ["torn", "version", "order", "below", "beyond"])
def test_damaged_files_are_refused(tmp_path: Path, damage: str) -> None:
    good = [AbortedTxn(1, 100, 110, 111), AbortedTxn(2, 105, 120, 121)]
    data = b"".join(t.pack() for t in good)
    if damage == "torn":
        data = data[:-3]
    elif damage == "version":
        data = b"\x00\x01" + data[2:]
    elif damage == "order":
        data = good[1].pack() + good[0].pack()
    elif damage == "below":
        data = AbortedTxn(1, 10, 99, 100).pack()
    path = tmp_path / "x.txnindex"
    path.write_bytes(data)
    with pytest.raises(IndexCorruptError):
        TransactionIndex.load(path, 100, offset_limit=115 if damage == "beyond" else None)


# --- kept right by the log -----------------------------------------------------------------


def aborted_pair(log: PartitionLog) -> None:
    """Producer 1 opens at 0, producer 2 at 2; 1 aborts at 4 (LSO 2: 2 is open), 2 aborts
    at 5 (LSO 6: nothing else open)."""
    log.append(txn_batch(1, 0), leader_epoch=0)
    log.append(txn_batch(2, 0), leader_epoch=0)
    assert end_txn(log, 1, commit=False) == 4
    assert end_txn(log, 2, commit=False) == 5


def test_an_abort_writes_kafkas_entry_with_the_lso_of_the_moment(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    aborted_pair(log)
    log.append(txn_batch(3, 0), leader_epoch=0)  # 6-7
    assert end_txn(log, 3, commit=True) == 8  # commits leave no entry
    assert entries(log) == [(0, 1, 0, 4, 2), (0, 2, 2, 5, 6)]
    log.high_watermark = log.log_end_offset
    assert log.aborted_transactions(0, 9) == [AbortedTxn(1, 0, 4, 2), AbortedTxn(2, 2, 5, 6)]
    assert log.aborted_transactions(5, 9) == [AbortedTxn(2, 2, 5, 6)]
    assert log.aborted_transactions(0, 2) == [AbortedTxn(1, 0, 4, 2)]  # stops: LSO 2 >= 2
    assert log.aborted_transactions(6, 9) == []


def test_the_entry_goes_to_the_segment_of_the_marker(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(txn_batch(1, 0), leader_epoch=0)
    log.append(make_batch(1), leader_epoch=0)
    log.roll()
    log.append(make_batch(1), leader_epoch=0)
    assert end_txn(log, 1, commit=False) == 4
    assert entries(log) == [(3, 1, 0, 4, 5)]
    # Searching from the first segment goes on into the next one (LSO 5 < bound).
    assert log.aborted_transactions(1, 5) == [AbortedTxn(1, 0, 4, 5)]


def test_follower_appends_write_the_same_entries(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    aborted_pair(leader)
    follower = open_log(tmp_path / "follower")
    follower.append_as_follower(leader.read(0, 1 << 20).records)
    assert entries(follower) == entries(leader)


def test_truncation_drops_entries_of_markers_cut_off(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    aborted_pair(log)
    log.truncate_to(5)
    assert entries(log) == [(0, 1, 0, 4, 2)]
    # Producer 1's abort is not replicated yet (high watermark 0), producer 2 is open again.
    assert log.first_unstable_offset == 0
    log.high_watermark = 5
    assert log.first_unstable_offset == 2 and log.last_stable_offset == 2
    end_txn(log, 2, commit=True)
    assert entries(log) == [(0, 1, 0, 4, 2)]


def test_truncating_fully_and_retention_take_the_files(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=250)
    aborted_pair(log)
    log.append(make_batch(1), leader_epoch=0)
    log.roll()
    log.append(make_batch(1), leader_epoch=0)
    first = log.segments[0].base_offset
    assert index_path(log, first).exists()
    log.high_watermark = log.log_end_offset
    log.delete_records(log.segments[-1].base_offset)
    assert not index_path(log, first).exists()
    assert log.aborted_transactions(log.log_start_offset, log.log_end_offset) == []
    aborted_pair_at = log.log_end_offset
    log.append(txn_batch(9, 0), leader_epoch=0)
    end_txn(log, 9, commit=False)
    assert log.aborted_transactions(aborted_pair_at, log.log_end_offset)[0].producer_id == 9
    log.truncate_fully_and_start_at(100)
    assert [p for p in os.listdir(log.directory) if p.endswith(".txnindex")] == []
    assert log.aborted_transactions(100, 200) == []


@pytest.mark.parametrize("damage", ["missing", "corrupt", "emptied"])
def test_a_lost_or_damaged_index_is_rebuilt_on_a_clean_open(tmp_path: Path, damage: str) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, segment_bytes=300)
    log.append(txn_batch(1, 0), leader_epoch=0)  # 0-1: opens in the first segment
    log.roll()
    log.append(txn_batch(2, 0), leader_epoch=0)  # 2-3
    end_txn(log, 1, commit=False)  # 4: the marker is in the second segment
    end_txn(log, 2, commit=False)  # 5
    log.roll()
    before = entries(log)
    assert before == [(2, 1, 0, 4, 2), (2, 2, 2, 5, 6)]
    log.close()
    path = d / f"{2:020d}.txnindex"
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(b"\x00" * 7)
    else:
        path.write_bytes(b"")  # looks fine: an empty index is believed, as Kafka does
    log = open_log(d, segment_bytes=300)
    assert entries(log) == ([] if damage == "emptied" else before)


def test_recovery_rebuilds_the_index_of_recovered_segments(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, segment_bytes=300)
    log.append(txn_batch(1, 0), leader_epoch=0)  # 0-1, in a segment below the recovery point
    log.roll()
    log.append(txn_batch(2, 0), leader_epoch=0)  # 2-3
    end_txn(log, 1, commit=False)  # 4
    end_txn(log, 2, commit=False)  # 5
    before = entries(log)
    log.flush()
    # The crash also lost the index file's contents (it is fsynced only with the segment).
    index_path(log, 2).write_bytes(b"")
    crash(log)
    log = open_log(d, segment_bytes=300)
    assert entries(log) == before == [(2, 1, 0, 4, 2), (2, 2, 2, 5, 6)]
    assert log.aborted_transactions(0, 6) == [AbortedTxn(1, 0, 4, 2), AbortedTxn(2, 2, 5, 6)]


def test_an_unflushed_abort_lost_in_a_crash_leaves_no_entry(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, Clock())
    log.append(txn_batch(1, 0), leader_epoch=0)
    log.flush()
    end_txn(log, 1, commit=False)
    size = os.path.getsize(d / f"{0:020d}.log")
    crash(log)
    os.truncate(d / f"{0:020d}.log", size - 10)  # the marker's write was torn
    log = open_log(d, Clock())
    assert log.log_end_offset == 2 and entries(log) == []
    assert log.first_unstable_offset == 0  # the transaction is open again

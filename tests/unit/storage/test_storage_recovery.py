"""Crash recovery: torn tails, garbage, bit flips and damaged indexes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from odradek.storage import EpochEntry, LogConfig, PartitionLog
from tests.unit.storage.storage_testlib import Clock, crash, make_batch, open_log, read_all

BATCH = len(make_batch(2))
CONFIG = {"segment_bytes": 4 * BATCH, "index_interval_bytes": BATCH - 1}


def build(path: Path, batches: int = 10) -> PartitionLog:
    log = open_log(path, **CONFIG)
    for i in range(batches):
        log.append(make_batch(2, ts=1000 + i), leader_epoch=1 + i // 4)
    return log


def active_log_file(path: Path) -> Path:
    return sorted(path.glob("*.log"))[-1]


def reopen(path: Path) -> PartitionLog:
    return open_log(path, **CONFIG)


def assert_intact(log: PartitionLog, end: int) -> None:
    assert log.log_end_offset == end
    assert [o for o, _ in read_all(log)] == list(range(end))
    # Appendable right after the surviving data, and that survives a reopen too.
    assert log.append(make_batch(1), leader_epoch=9).base_offset == end
    log.close()
    log = reopen(log.directory)
    assert [o for o, _ in read_all(log)] == list(range(end + 1))
    log.close()


def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = build(d)
    log.flush()
    crash(log)
    f = active_log_file(d)
    size = f.stat().st_size
    os.truncate(f, size - BATCH // 2)  # the last batch was half written
    log = reopen(d)
    assert f.stat().st_size == size - BATCH
    assert log.leader_epochs.entries[-1] == EpochEntry(3, 16)
    assert_intact(log, 18)


def test_torn_tail_drops_epoch_entries_past_the_end(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = build(d, 9)  # the last batch (offsets 16-17) starts epoch 3
    crash(log)
    f = active_log_file(d)
    os.truncate(f, f.stat().st_size - 10)
    log = reopen(d)
    assert log.log_end_offset == 16
    assert log.leader_epochs.entries == (EpochEntry(1, 0), EpochEntry(2, 8))
    assert_intact(log, 16)


def test_garbage_after_the_last_batch(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    crash(build(d))
    with open(active_log_file(d), "ab") as f:
        f.write(os.urandom(37))
    assert_intact(reopen(d), 20)


def test_zeroes_after_the_last_batch(tmp_path: Path) -> None:
    # A file system may leave zero-filled blocks after a crash.
    d = tmp_path / "t-0"
    crash(build(d))
    with open(active_log_file(d), "ab") as f:
        f.write(b"\x00" * 4096)
    assert_intact(reopen(d), 20)


def test_flipped_byte_in_the_last_batch(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    crash(build(d))
    f = active_log_file(d)
    data = bytearray(f.read_bytes())
    data[-5] ^= 0x40
    f.write_bytes(data)
    assert_intact(reopen(d), 18)


def test_flipped_byte_after_a_clean_shutdown_is_caught_too(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    build(d).close()
    f = active_log_file(d)
    data = bytearray(f.read_bytes())
    data[-5] ^= 0x01
    f.write_bytes(data)
    assert_intact(reopen(d), 18)


@pytest.mark.parametrize("clean", [True, False])
def test_deleted_index_files_are_rebuilt(tmp_path: Path, clean: bool) -> None:
    d = tmp_path / "t-0"
    log = build(d)
    expected = {o: log.read(o, 1).first_batch_offset for o in range(20)}
    ts_expected = {t: log.offset_for_timestamp(t) for t in range(995, 1012)}
    log.close() if clean else crash(log)
    for p in list(d.glob("*.index")) + list(d.glob("*.timeindex")):
        p.unlink()
    log = reopen(d)
    assert {o: log.read(o, 1).first_batch_offset for o in range(20)} == expected
    assert {t: log.offset_for_timestamp(t) for t in range(995, 1012)} == ts_expected
    assert len(list(d.glob("*.index"))) == len(log.segments)
    assert_intact(log, 20)


@pytest.mark.parametrize("damage", ["garbage", "odd-size", "reversed", "beyond-log"])
def test_damaged_index_of_an_old_segment_is_rebuilt(tmp_path: Path, damage: str) -> None:
    d = tmp_path / "t-0"
    log = build(d)
    log.close()
    first_index = sorted(d.glob("*.index"))[0]
    first_time = sorted(d.glob("*.timeindex"))[0]
    raw = first_index.read_bytes()
    assert len(raw) >= 16
    if damage == "garbage":
        first_index.write_bytes(os.urandom(len(raw)))
        first_time.write_bytes(os.urandom(24))
    elif damage == "odd-size":
        first_index.write_bytes(raw + b"\x01")
    elif damage == "reversed":
        first_index.write_bytes(raw[8:16] + raw[0:8] + raw[16:])
    else:
        first_index.write_bytes(raw + (10**6).to_bytes(4, "big") * 2)
    log = reopen(d)
    assert first_index.read_bytes() == raw
    assert_intact(log, 20)


def test_unclean_recovery_checks_segments_from_the_recovery_point(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = build(d)
    crash(log)
    # No recovery point: every segment is checked, and a torn middle segment drops the
    # segments after it (they cannot continue a log cut short).
    (d / "recovery-point-checkpoint").unlink()
    middle = sorted(d.glob("*.log"))[1]
    os.truncate(middle, middle.stat().st_size - 3)
    log = reopen(d)
    assert [s.base_offset for s in log.segments] == [0, 8]
    assert_intact(log, 14)


def test_leader_epoch_checkpoint_rebuilt_when_missing_or_corrupt(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = build(d)
    entries = log.leader_epochs.entries
    crash(log)
    (d / "leader-epoch-checkpoint").write_text("garbage")
    assert reopen(d).leader_epochs.entries == entries
    (d / "leader-epoch-checkpoint").unlink()
    assert reopen(d).leader_epochs.entries == entries


def test_epochs_a_stale_checkpoint_lost_come_back_from_the_batches(tmp_path: Path) -> None:
    # The checkpoint is replaced without fsync: a machine crash can leave an older file
    # than the log. An unclean open takes the newer epochs from the recovered batches.
    d = tmp_path / "t-0"
    log = build(d)
    entries = log.leader_epochs.entries
    assert len(entries) >= 2
    crash(log)
    first = entries[0]
    (d / "leader-epoch-checkpoint").write_text(f"0\n1\n{first.epoch} {first.start_offset}\n")
    assert reopen(d).leader_epochs.entries == entries


def test_a_new_log_is_created_without_fsync_and_made_durable_by_its_first_flush(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    d = tmp_path / "t-0"
    log = PartitionLog.open(d, LogConfig())
    log.leader_epochs.assign(0, 0)
    assert synced == []
    log.append(make_batch(1), leader_epoch=0)
    log.flush()
    assert str(d) in synced and str(tmp_path) in synced  # both directory entries
    assert str(d / "leader-epoch-checkpoint") in synced
    synced.clear()
    log.append(make_batch(1), leader_epoch=0)
    log.flush()
    assert str(tmp_path) not in synced  # once per log


def test_leftovers_are_cleaned(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    build(d, 2).close()
    (d / "00000000000000000050.log.deleted").write_bytes(b"x")
    (d / "high-watermark-checkpoint.tmp").write_bytes(b"x")
    (d / "00000000000000000077.index").write_bytes(b"")
    (d / "partition.metadata").write_text("keep me")
    log = reopen(d)
    assert sorted(p.name for p in d.iterdir() if not p.name[0].isdigit()) == [
        "high-watermark-checkpoint",
        "leader-epoch-checkpoint",
        "partition.metadata",
        "recovery-point-checkpoint",
    ]
    assert not (d / "00000000000000000077.index").exists()
    assert_intact(log, 4)


def test_empty_directory_and_lost_segments(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = build(d, 3)
    log.high_watermark = 6
    log.delete_records(4)
    crash(log)
    # All segment files gone (e.g. wiped by hand): the log restarts at its start offset.
    for p in d.glob("0*"):
        p.unlink()
    log = reopen(d)
    assert (log.log_start_offset, log.log_end_offset) == (4, 4)
    assert log.append(make_batch(1), leader_epoch=1).base_offset == 4


def test_reopen_after_crash_keeps_clock_based_state(tmp_path: Path) -> None:
    clock = Clock()
    d = tmp_path / "t-0"
    log = open_log(d, clock, segment_ms=10_000)
    log.append(make_batch(1, ts=clock()), leader_epoch=0)
    crash(log)
    clock.advance(10_001)
    log = open_log(d, clock, segment_ms=10_000)
    log.append(make_batch(1, ts=clock()), leader_epoch=0)
    assert len(log.segments) == 2

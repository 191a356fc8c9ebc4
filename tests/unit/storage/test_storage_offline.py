"""I/O errors take a log offline without corrupting it."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from odradek import storage
from odradek.storage import LogOfflineError, PartitionLog
from tests.tmpfs import small_tmpfs
from tests.unit.storage.storage_testlib import make_batch, open_log, read_all


def fail_after(limit: int, err: int = errno.ENOSPC):
    """A write_all that writes ``limit`` bytes then fails like a full disk."""

    def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if limit:
            os.write(fd, view[:limit])
        raise OSError(err, os.strerror(err))

    return write_all


def test_failed_write_is_cut_back_and_the_log_goes_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    log.append(make_batch(3), leader_epoch=0)
    size = log.size_bytes
    monkeypatch.setattr(storage.segment, "write_all", fail_after(20))
    with pytest.raises(LogOfflineError, match=rf"{d} is offline: append failed with ENOSPC"):
        log.append(make_batch(2), leader_epoch=0)
    assert log.offline
    assert (d / "00000000000000000000.log").stat().st_size == size  # partial write undone
    for call in (
        lambda: log.append(make_batch(1), leader_epoch=0),
        lambda: log.append_as_follower(make_batch(1, base_offset=3)),
        lambda: log.read(0, 100),
        lambda: log.flush(),
        lambda: log.maybe_flush(10**15),
        lambda: log.enforce_retention(0),
        lambda: log.delete_records(0),
        lambda: log.truncate_to(0),
        lambda: log.offset_for_timestamp(0),
    ):
        with pytest.raises(LogOfflineError, match="No space left on device"):
            call()
    with pytest.raises(LogOfflineError):
        log.close()  # files released, but no clean-shutdown marker
    assert not (d / "clean-shutdown").exists()
    monkeypatch.undo()
    log = open_log(d)
    assert [o for o, _ in read_all(log)] == [0, 1, 2]
    assert log.append(make_batch(1), leader_epoch=0).base_offset == 3


def test_failed_fsync_takes_the_log_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    log.append(make_batch(1), leader_epoch=0)

    def bad_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", bad_fsync)
    with pytest.raises(LogOfflineError, match="flush failed with EIO"):
        log.flush()
    monkeypatch.undo()
    with pytest.raises(LogOfflineError):
        log.append(make_batch(1), leader_epoch=0)
    with pytest.raises(LogOfflineError):
        log.close()
    assert open_log(d).log_end_offset == 1


def test_unwritable_directory_fails_open(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LogOfflineError, match="cannot open partition log"):
        open_log(blocker / "t-0")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "mnt", "256k") as mnt:
        yield mnt


def test_real_disk_full(tiny_fs: Path) -> None:
    d = tiny_fs / "t-0"
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * 64 * 1024)  # space an operator can free later
    acked: list[int] = []
    log: PartitionLog = open_log(d, segment_bytes=64 * 1024)
    with pytest.raises(LogOfflineError, match="ENOSPC") as info:
        for _ in range(10_000):
            result = log.append(make_batch([os.urandom(1000)] * 3), leader_epoch=0)
            acked.extend(range(result.base_offset, result.last_offset + 1))
    assert str(d) in str(info.value)
    assert len(acked) > 100
    with pytest.raises(LogOfflineError):
        log.close()
    filler.unlink()
    log = open_log(d, segment_bytes=64 * 1024)
    assert [o for o, _ in read_all(log)] == acked
    assert log.append(make_batch(1), leader_epoch=0).base_offset == acked[-1] + 1
    log.close()

"""PartitionLog.read_sendable and FileRegion: the same batches as ``read``, found without
reading the data, and bytes that stay right (or fail loudly) after the log changes."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from odradek.storage import FileRegion, PartitionLog, RegionChanged
from tests.unit.storage.storage_testlib import make_batch, open_log


def _log(path: Path, sizes: list[int], **config: object) -> PartitionLog:
    log = open_log(path, **config)
    for n in sizes:
        log.append(make_batch([os.urandom(n * 7 % 300 + 1) for _ in range(n)]),
                   leader_epoch=0)
    return log


def _bytes(records: bytes | FileRegion) -> bytes:
    if isinstance(records, FileRegion):
        try:
            return records.read()
        finally:
            records.close()
    return bytes(records)


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair: a region is sent into the first and read from the second."""
    a, b = socket.socketpair()
    with a, b:
        yield a, b


@pytest.mark.parametrize("region_min", [0, 1 << 30])
def test_read_sendable_cuts_as_read_does(tmp_path: Path, region_min: int) -> None:
    # Mixed batch sizes over several segments with a dense index, so that the index skip,
    # the header walk, the whole-segment shortcut and min_one_batch all take part.
    rnd = random.Random(7)
    sizes = [rnd.choice([1, 2, 3, 9, 40]) for _ in range(300)]
    log = _log(tmp_path / "t-0", sizes, segment_bytes=60_000, index_interval_bytes=700)
    assert len(log.segments) > 3
    end = log.log_end_offset
    for _ in range(600):
        offset = rnd.randrange(0, end + 1)
        max_bytes = rnd.choice([0, 10, 500, 3000, 20_000, 70_000, 1 << 20])
        max_offset = rnd.choice([None, end, rnd.randrange(0, end + 1)])
        min_one = rnd.random() < 0.7
        want = log.read(offset, max_bytes, max_offset=max_offset, min_one_batch=min_one)
        got = log.read_sendable(offset, max_bytes, region_min_bytes=region_min,
                                max_offset=max_offset, min_one_batch=min_one)
        what = (offset, max_bytes, max_offset, min_one)
        assert (got.first_batch_offset, got.next_offset) == \
            (want.first_batch_offset, want.next_offset), what
        assert isinstance(got.records, FileRegion) == (region_min == 0 and bool(want.records))
        assert _bytes(got.records) == bytes(want.records), what


def test_read_sendable_committed_matches_read_committed(tmp_path: Path) -> None:
    log = _log(tmp_path / "t-0", [3] * 20, segment_bytes=4000)
    log.high_watermark = 31
    for offset in (0, 5, 29, 31):
        want = log.read_committed(offset, 1 << 20)
        got = log.read_sendable(offset, 1 << 20, region_min_bytes=0, committed=True)
        assert (got.next_offset, got.aborted) == (want.next_offset, want.aborted or ())
        assert _bytes(got.records) == bytes(want.records)


def test_a_region_outlives_the_deletion_of_its_segment(
        tmp_path: Path, sockets: tuple[socket.socket, socket.socket]) -> None:
    log = _log(tmp_path / "t-0", [5] * 40, segment_bytes=3000)
    log.high_watermark = log.log_end_offset
    first = log.read(0, 2000)
    region = log.read_sendable(0, 2000, region_min_bytes=0).records
    assert isinstance(region, FileRegion)
    # DeleteRecords past the first segment: its files are unlinked and its descriptor
    # closed (and its number free for the next file opened).
    log.delete_records(log.segments[2].base_offset)
    assert not (tmp_path / "t-0" / "00000000000000000000.log").exists()
    with open(tmp_path / "other", "wb") as f:
        f.write(b"x" * 5000)
    a, b = sockets
    try:
        sent = 0
        while sent < len(region):
            sent += region.send(a.fileno(), sent, len(region) - sent)
        got = b""
        while len(got) < sent:
            got += b.recv(1 << 16)
        assert got == bytes(first.records)
    finally:
        region.close()


def test_a_truncated_segment_fails_its_regions(
        tmp_path: Path, sockets: tuple[socket.socket, socket.socket]) -> None:
    log = _log(tmp_path / "t-0", [5] * 10)
    region = log.read_sendable(4, 1 << 20, region_min_bytes=0).records
    assert isinstance(region, FileRegion)
    # A leader becoming follower cuts its log and may append other batches at the same
    # positions: the region must not send them.
    log.truncate_to(5)
    log.append(make_batch([b"other"] * 5), leader_epoch=1)
    try:
        with pytest.raises(RegionChanged, match="truncated"):
            region.send(sockets[0].fileno(), 0, len(region))
        with pytest.raises(RegionChanged):
            region.read()
    finally:
        region.close()


def test_a_dropped_region_closes_its_descriptor(tmp_path: Path) -> None:
    log = _log(tmp_path / "t-0", [5] * 10)
    region = log.read_sendable(0, 1 << 20, region_min_bytes=0).records
    assert isinstance(region, FileRegion)
    fd = region.fd
    os.fstat(fd)
    del region
    with pytest.raises(OSError):
        os.fstat(fd)

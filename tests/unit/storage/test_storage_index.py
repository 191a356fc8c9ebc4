from __future__ import annotations

import struct
from pathlib import Path

import pytest

from odradek.storage.errors import IndexCorruptError
from odradek.storage.index import OffsetIndex, TimeIndex


def test_offset_index_lookup_flush_load(tmp_path: Path) -> None:
    path = tmp_path / "x.index"
    idx = OffsetIndex(path, 1000, 80)
    assert idx.lookup(1234) == (1000, 0)
    for i in range(1, 6):
        idx.append(1000 + 10 * i, 100 * i)
    assert idx.lookup(999) == (1000, 0)
    assert idx.lookup(1009) == (1000, 0)
    assert idx.lookup(1010) == (1010, 100)
    assert idx.lookup(1035) == (1030, 300)
    assert idx.lookup(10**12) == (1050, 500)
    idx.flush()
    assert path.stat().st_size == 5 * 8
    loaded = OffsetIndex.load(path, 1000, 80, log_size=600)
    assert loaded.lookup(1035) == (1030, 300) and len(loaded) == 5
    assert not loaded.is_full
    for i in range(6, 11):
        loaded.append(1000 + 10 * i, 100 * i)
    assert loaded.is_full  # 80 bytes = 10 entries


def test_offset_index_rejects_out_of_order_appends(tmp_path: Path) -> None:
    idx = OffsetIndex(tmp_path / "x.index", 0, 1024)
    idx.append(5, 100)
    with pytest.raises(ValueError):
        idx.append(5, 200)
    with pytest.raises(ValueError):
        idx.append(6, 50)


def test_offset_index_truncate_rewrites_file(tmp_path: Path) -> None:
    path = tmp_path / "x.index"
    idx = OffsetIndex(path, 0, 1024)
    for i in range(1, 5):
        idx.append(i * 10, i * 100)
    idx.flush()
    idx.truncate_to_position(300)
    assert idx.lookup(100) == (20, 200)
    idx.append(25, 250)
    idx.flush()
    loaded = OffsetIndex.load(path, 0, 1024, log_size=1000)
    assert [loaded.lookup(o) for o in (19, 24, 99)] == [(10, 100), (20, 200), (25, 250)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00" * 7, "not a multiple of 8"),
        (struct.pack(">IIII", 5, 10, 4, 20), "non-monotonic"),
        (struct.pack(">IIII", 5, 10, 6, 10), "non-monotonic"),
        (struct.pack(">II", 5, 5000), "beyond the log size"),
        (struct.pack(">II", 500, 10), "beyond the segment's end"),
    ],
)
def test_offset_index_sanity_check(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "x.index"
    path.write_bytes(data)
    with pytest.raises(IndexCorruptError, match=message):
        OffsetIndex.load(path, 0, 1024, log_size=1000, offset_limit=100)


def test_missing_index_is_corrupt(tmp_path: Path) -> None:
    with pytest.raises(IndexCorruptError, match="missing"):
        OffsetIndex.load(tmp_path / "nope.index", 0, 1024, log_size=0)
    with pytest.raises(IndexCorruptError, match="missing"):
        TimeIndex.load(tmp_path / "nope.timeindex", 0, 1024)


def test_time_index(tmp_path: Path) -> None:
    path = tmp_path / "x.timeindex"
    idx = TimeIndex(path, 100, 1200)
    idx.maybe_append(50, 105)
    idx.maybe_append(50, 107)  # not a new maximum: skipped
    idx.maybe_append(40, 108)  # older: skipped
    idx.maybe_append(70, 110)
    idx.maybe_append(90, 120)
    assert len(idx) == 3
    assert idx.lookup_before(50) is None
    assert idx.lookup_before(51) == (50, 105)
    assert idx.lookup_before(90) == (70, 110)
    assert idx.lookup_before(10**15) == (90, 120)
    assert idx.last_entry() == (90, 120)
    idx.flush()
    loaded = TimeIndex.load(path, 100, 1200, offset_limit=200)
    assert loaded.last_entry() == (90, 120)
    loaded.truncate_to_offset(110)
    assert loaded.last_entry() == (50, 105)
    loaded.flush()
    assert path.stat().st_size == 12


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00" * 13, "not a multiple of 12"),
        (struct.pack(">qIqI", 10, 1, 10, 2), "non-monotonic"),
        (struct.pack(">qIqI", 10, 5, 11, 2), "non-monotonic"),
        (struct.pack(">qI", 10, 1000), "beyond the segment's end"),
    ],
)
def test_time_index_sanity_check(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "x.timeindex"
    path.write_bytes(data)
    with pytest.raises(IndexCorruptError, match=message):
        TimeIndex.load(path, 0, 1200, offset_limit=100)

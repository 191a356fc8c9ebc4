"""Sparse offset and time indexes of one segment.

Entries are kept in memory (compact ``array``s) and appended to plain files on flush;
a lookup is a binary search over the arrays. The files need not be durable: after an
unclean shutdown the segments being recovered get fresh indexes built from the log, and
any index failing its sanity check on load is rebuilt the same way.

* offset index: 8-byte entries, (offset - base_offset) u32 -> file position u32.
  We index the *base* offset of a batch, so the batch holding an offset starts at or
  after the position found for it.
* time index: 12-byte entries, timestamp i64 -> (offset - base_offset) u32. An entry
  (T, o) promises every record at an offset <= o has a timestamp <= T; timestamps of
  entries strictly increase.
"""

from __future__ import annotations

import bisect
import operator
import os
import struct
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

from odradek.storage.errors import IndexCorruptError

_OFFSET_ENTRY = struct.Struct(">II")
_TIME_ENTRY = struct.Struct(">qI")
_MAX_U32 = 0xFFFFFFFF


def _strictly_increasing(values: array[int]) -> bool:
    return all(map(operator.lt, values, values[1:]))


def _non_decreasing(values: array[int]) -> bool:
    return all(map(operator.le, values, values[1:]))


def _read_file(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class _IndexFile:
    """Append-only file behind an index, rewritten when entries are truncated away."""

    entry_size: int
    kind: str  # "offset" or "time", for error messages

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max(1, max_index_bytes // self.entry_size)
        self._offsets = array("I")  # relative to base_offset
        self._dirty_from = 0  # first entry not yet written to the file
        # False until the file is known to hold exactly the flushed entries, fsynced.
        self._synced = False
        self._persisted = -1  # entries in the file; -1: unknown

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def is_full(self) -> bool:
        return len(self._offsets) >= self.max_entries

    @classmethod
    def _read_entries(cls, path: Path) -> bytes:
        data = _read_file(path)
        if data is None:
            raise IndexCorruptError(f"{cls.kind} index {path} is missing")
        if len(data) % cls.entry_size:
            raise IndexCorruptError(
                f"{cls.kind} index {path} has size {len(data)}, not a multiple of "
                f"{cls.entry_size}"
            )
        return data

    def _loaded(self, offset_limit: int | None) -> None:
        """Checks common to both indexes after loading; marks the file as in sync."""
        n = len(self._offsets)
        if n and offset_limit is not None and self.base_offset + self._offsets[-1] >= offset_limit:
            raise IndexCorruptError(
                f"{self.kind} index {self.path} holds offset "
                f"{self.base_offset + self._offsets[-1]} beyond the segment's end {offset_limit}"
            )
        self._dirty_from = self._persisted = n
        self._synced = True

    def _write_pending(self, pending: bytes, keep: int, fsync: bool) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            # Truncating also discards whatever a damaged or stale file held past ``keep``.
            os.ftruncate(fd, keep * self.entry_size)
            os.lseek(fd, keep * self.entry_size, os.SEEK_SET)
            view = memoryview(pending)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._synced = fsync
        self._persisted = keep + len(pending) // self.entry_size


class OffsetIndex(_IndexFile):
    entry_size = _OFFSET_ENTRY.size
    kind = "offset"

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes)
        self._positions = array("I")

    @classmethod
    def load(
        cls,
        path: Path,
        base_offset: int,
        max_index_bytes: int,
        *,
        log_size: int,
        offset_limit: int | None = None,
    ) -> OffsetIndex:
        """Read and sanity-check an index file; IndexCorruptError says what is wrong.

        ``log_size`` bounds positions and ``offset_limit`` (exclusive) bounds offsets.
        """
        data = cls._read_entries(path)
        both = array("I", data)
        if sys.byteorder == "little":
            both.byteswap()
        index = cls(path, base_offset, max_index_bytes)
        index._offsets = both[0::2]
        index._positions = both[1::2]
        n = len(index._offsets)
        if n:
            if not (
                _strictly_increasing(index._offsets) and _strictly_increasing(index._positions)
            ):
                raise IndexCorruptError(f"offset index {path} has non-monotonic entries")
            if index._positions[-1] >= log_size:
                raise IndexCorruptError(
                    f"offset index {path} points at position {index._positions[-1]} "
                    f"beyond the log size {log_size}"
                )
        index._loaded(offset_limit)
        return index

    def last_entry(self) -> tuple[int, int]:
        """(offset, position) of the last entry, or (base_offset, 0) if empty."""
        if not self._offsets:
            return self.base_offset, 0
        return self.base_offset + self._offsets[-1], self._positions[-1]

    def append(self, offset: int, position: int) -> None:
        rel = offset - self.base_offset
        if self._offsets and (rel <= self._offsets[-1] or position <= self._positions[-1]):
            raise ValueError(
                f"index entry ({offset}, {position}) does not follow {self.last_entry()}"
            )
        if not 0 <= rel <= _MAX_U32 or position > _MAX_U32:
            raise ValueError(f"index entry ({offset}, {position}) out of range")
        self._offsets.append(rel)
        self._positions.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """Largest entry with offset <= ``offset``, or (base_offset, 0)."""
        rel = offset - self.base_offset
        if rel < 0:
            return self.base_offset, 0
        i = bisect.bisect_right(self._offsets, min(rel, _MAX_U32)) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self._offsets[i], self._positions[i]

    def floor_entries(self, position: int, offset: int) -> Iterator[tuple[int, int]]:
        """(offset, position) of the entries at or below both ``position`` and ``offset``,
        the last first: where a read that must stop at both can skip ahead to, since the
        batches before an entry end at its position and below its offset."""
        rel = offset - self.base_offset
        if rel < 0:
            return
        i = min(bisect.bisect_right(self._positions, position),
                bisect.bisect_right(self._offsets, min(rel, _MAX_U32)))
        for j in range(i - 1, -1, -1):
            yield self.base_offset + self._offsets[j], self._positions[j]

    def truncate_to_position(self, position: int) -> None:
        """Drop entries pointing at ``position`` or beyond (the log is cut there)."""
        keep = bisect.bisect_left(self._positions, position)
        del self._offsets[keep:]
        del self._positions[keep:]
        self._dirty_from = min(self._dirty_from, keep)

    def reset(self) -> None:
        self.truncate_to_position(0)

    def flush(self, *, fsync: bool = True) -> None:
        n = len(self._offsets)
        if self._dirty_from == n == self._persisted and (self._synced or not fsync):
            return
        keep = self._dirty_from
        pending = b"".join(
            _OFFSET_ENTRY.pack(self._offsets[i], self._positions[i]) for i in range(keep, n)
        )
        self._write_pending(pending, keep, fsync)
        self._dirty_from = n


class TimeIndex(_IndexFile):
    entry_size = _TIME_ENTRY.size
    kind = "time"

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes)
        self._timestamps = array("q")

    @classmethod
    def load(
        cls,
        path: Path,
        base_offset: int,
        max_index_bytes: int,
        *,
        offset_limit: int | None = None,
    ) -> TimeIndex:
        data = cls._read_entries(path)
        index = cls(path, base_offset, max_index_bytes)
        for ts, rel in _TIME_ENTRY.iter_unpack(data):
            index._timestamps.append(ts)
            index._offsets.append(rel)
        n = len(index._offsets)
        if n:
            if not (_strictly_increasing(index._timestamps) and _non_decreasing(index._offsets)):
                raise IndexCorruptError(f"time index {path} has non-monotonic entries")
        index._loaded(offset_limit)
        return index

    def last_entry(self) -> tuple[int, int] | None:
        """(timestamp, offset) of the last entry."""
        if not self._offsets:
            return None
        return self._timestamps[-1], self.base_offset + self._offsets[-1]

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add (timestamp, offset) unless it would not raise the indexed maximum."""
        if self._timestamps and timestamp <= self._timestamps[-1]:
            return
        rel = offset - self.base_offset
        # Batches without timestamps (-1) leave nothing worth indexing yet.
        if rel < 0 or (self._offsets and rel < self._offsets[-1]):
            return
        if rel > _MAX_U32:
            raise ValueError(f"time index offset {offset} out of range")
        self._timestamps.append(timestamp)
        self._offsets.append(rel)

    def lookup_before(self, timestamp: int) -> tuple[int, int] | None:
        """Last entry with a timestamp strictly below ``timestamp``.

        Strictly below, because every record up to that entry's offset is then known to
        be older than ``timestamp``; an equal entry could hide earlier equal records.
        """
        i = bisect.bisect_left(self._timestamps, timestamp) - 1
        if i < 0:
            return None
        return self._timestamps[i], self.base_offset + self._offsets[i]

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries at ``offset`` or beyond."""
        rel = offset - self.base_offset
        keep = 0 if rel <= 0 else bisect.bisect_left(self._offsets, rel)
        del self._timestamps[keep:]
        del self._offsets[keep:]
        self._dirty_from = min(self._dirty_from, keep)

    def reset(self) -> None:
        self.truncate_to_offset(self.base_offset)

    def flush(self, *, fsync: bool = True) -> None:
        n = len(self._offsets)
        if self._dirty_from == n == self._persisted and (self._synced or not fsync):
            return
        keep = self._dirty_from
        pending = b"".join(
            _TIME_ENTRY.pack(self._timestamps[i], self._offsets[i]) for i in range(keep, n)
        )
        self._write_pending(pending, keep, fsync)
        self._dirty_from = n

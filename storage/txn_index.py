"""The aborted-transaction index of one segment: ``<base offset, 20 digits>.txnindex``.

A read_committed consumer gets the records below the last stable offset, aborted ones
included, plus the list of transactions that aborted in the range it read; it drops their
records itself. This index is where that list comes from without reading the log: one
entry per transaction whose ABORT marker lies in the segment, in marker order.

Kafka's byte format (TransactionIndex/AbortedTxn), 34 bytes per entry, big-endian::

    version int16 (0) | producer_id int64 | first_offset int64 | last_offset int64 |
    last_stable_offset int64

``last_offset`` is the marker's offset; ``last_stable_offset`` is the LSO as it stood when
the marker was written (the first offset of the oldest transaction of another producer still
open then, or the marker's offset + 1). Entries are in strictly increasing ``last_offset``
order, which is what lets a search stop early: once an entry's LSO reaches the upper bound
of a fetch, no later entry can hold a transaction that began below that bound.

Unlike the offset and time indexes this one cannot be rebuilt from its own segment alone (a
transaction may begin segments earlier), so the partition log rebuilds it by replaying
producer state (storage/log.py). The file is written through on every append and fsynced
with its segment; it is created (possibly empty) at the segment's first flush, so that a
missing file next to a flushed segment means lost, not "no aborts".
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from odradek.storage.errors import IndexCorruptError

ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = ENTRY.size  # 34
VERSION = 0


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    producer_id: int
    first_offset: int
    last_offset: int  # the ABORT marker's offset
    last_stable_offset: int  # the LSO when the marker was written

    def pack(self) -> bytes:
        return ENTRY.pack(VERSION, self.producer_id, self.first_offset, self.last_offset,
                          self.last_stable_offset)

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview, pos: int = 0) -> AbortedTxn:
        version, pid, first, last, lso = ENTRY.unpack_from(buf, pos)
        if version != VERSION:
            raise IndexCorruptError(f"aborted transaction entry version {version}, expected "
                                    f"{VERSION}")
        return cls(pid, first, last, lso)


def collect(entries: list[AbortedTxn], start_offset: int, upper_bound_offset: int
            ) -> tuple[list[AbortedTxn], bool]:
    """Entries overlapping [start_offset, upper_bound_offset), and whether the search is
    complete (an entry's LSO reached the upper bound: later segments cannot add any)."""
    found = []
    for txn in entries:
        if txn.last_offset >= start_offset and txn.first_offset < upper_bound_offset:
            found.append(txn)
        if txn.last_stable_offset >= upper_bound_offset:
            return found, True
    return found, False


class TransactionIndex:
    """Entries in memory (there are few: one per aborted transaction), written through to
    the file, which is opened only when there is something to write."""

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.entries: list[AbortedTxn] = []
        self._exists = False  # the file is known to exist
        self._unsynced = False

    @classmethod
    def load(cls, path: Path, base_offset: int, *, offset_limit: int | None = None
             ) -> TransactionIndex | None:
        """The index in ``path``, checked; None if the file is missing. Raises
        IndexCorruptError for a torn or implausible file."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        if len(data) % ENTRY_SIZE:
            raise IndexCorruptError(f"transaction index {path} has size {len(data)}, not a "
                                    f"multiple of {ENTRY_SIZE}")
        index = cls(path, base_offset)
        index._exists = True
        last = -1
        for pos in range(0, len(data), ENTRY_SIZE):
            txn = AbortedTxn.unpack(data, pos)
            if txn.last_offset < base_offset or txn.last_offset <= last:
                raise IndexCorruptError(
                    f"transaction index {path}: entry {txn} is out of order or below the "
                    f"segment's base offset {base_offset}")
            if offset_limit is not None and txn.last_offset >= offset_limit:
                raise IndexCorruptError(
                    f"transaction index {path}: entry {txn} lies beyond the segment's end "
                    f"{offset_limit}")
            if txn.first_offset > txn.last_offset:
                raise IndexCorruptError(f"transaction index {path}: entry {txn} ends before "
                                        "it begins")
            last = txn.last_offset
            index.entries.append(txn)
        return index

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def last_offset(self) -> int | None:
        return self.entries[-1].last_offset if self.entries else None

    def append(self, txn: AbortedTxn) -> None:
        if self.entries and txn.last_offset <= self.entries[-1].last_offset:
            raise ValueError(f"aborted transaction {txn} does not follow the last entry "
                             f"{self.entries[-1]} of {self.path}")
        # A file this index never wrote nor loaded is a leftover: start it afresh.
        fresh = 0 if self._exists else os.O_TRUNC
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | fresh, 0o644)
        try:
            data = txn.pack()
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {self.path}")
        finally:
            os.close(fd)
        self.entries.append(txn)
        self._exists = True
        self._unsynced = True

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or above ``offset``."""
        keep = len(self.entries)
        while keep and self.entries[keep - 1].last_offset >= offset:
            keep -= 1
        if keep != len(self.entries):
            self._rewrite(keep)

    def reset(self) -> None:
        if self.entries or self._exists:
            self._rewrite(0)

    def _rewrite(self, keep: int) -> None:
        del self.entries[keep:]
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, keep * ENTRY_SIZE)
        finally:
            os.close(fd)
        self._exists = True
        self._unsynced = True

    def collect(self, start_offset: int, upper_bound_offset: int
                ) -> tuple[list[AbortedTxn], bool]:
        return collect(self.entries, start_offset, upper_bound_offset)

    def flush(self) -> None:
        """Make the file durable, creating it (empty) if it was never written."""
        if not self._exists:
            # Empty: only its name could be lost in a crash, and a lost index is rebuilt.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
            self._exists = True
            return
        if not self._unsynced:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._unsynced = False

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        self._exists = False

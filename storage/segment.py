"""One log segment: ``<base offset, 20 digits>.log`` plus its ``.index``, ``.timeindex`` and
``.txnindex`` (aborted transactions, storage/txn_index.py).

The ``.log`` file is a plain concatenation of v2 record batches. It is opened with
O_APPEND: an append is one ``os.write`` and reads are ``os.pread`` on the same
descriptor, so readers never disturb the writer's file position.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from odradek.storage.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MIN_BATCH_LENGTH,
    NO_TIMESTAMP,
    BatchHeader,
    read_batch_header,
)
from odradek.storage.errors import CorruptRecordError, IndexCorruptError
from odradek.storage.index import OffsetIndex, TimeIndex
from odradek.storage.txn_index import TransactionIndex

log = logging.getLogger("odradek.storage")

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
TXNINDEX_SUFFIX = ".txnindex"
DELETED_SUFFIX = ".deleted"
# The log cleaner writes a segment's replacement under CLEANED_SUFFIX, then renames its log
# to "<base>.<end>.swap" (end: the first offset after the segments it replaces), the point
# from which recovery completes the swap instead of discarding it (storage/recovery.py).
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX, TXNINDEX_SUFFIX)

# Reads for locating an offset start small (the target is within about one index
# interval of the indexed position); full scans use big chunks to limit syscalls.
LOCATE_CHUNK = 16 * 1024
SCAN_CHUNK = 1024 * 1024
BIG_BATCH = 16 * 1024

_OFFSET_LENGTH = struct.Struct(">qi")
_LAST_DELTA = struct.Struct(">i")
_LAST_DELTA_POS = 23

# (position in the appended buffer, base offset, last offset, max timestamp, size)
BatchSpan = tuple[int, int, int, int, int]


def segment_file_name(base_offset: int, suffix: str = LOG_SUFFIX) -> str:
    return f"{base_offset:020d}{suffix}"


def parse_segment_file_name(name: str) -> tuple[int, str] | None:
    """(base offset, suffix) for a segment file name, or None for other files."""
    stem, dot, rest = name.partition(".")
    if not dot or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem), "." + rest


def delete_segment_files(directory: Path, base_offset: int) -> None:
    doomed = []
    for suffix in SEGMENT_SUFFIXES:
        path = directory / segment_file_name(base_offset, suffix)
        target = path.with_name(path.name + DELETED_SUFFIX)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            continue
        doomed.append(target)
    for path in doomed:
        path.unlink(missing_ok=True)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    with memoryview(data) as view:
        while view:
            written = os.write(fd, view)
            view = view[written:]


class LogSegment:
    def __init__(
        self,
        directory: Path,
        base_offset: int,
        fd: int,
        size: int,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
        index_interval_bytes: int,
        suffix: str = "",
        txn_index: TransactionIndex | None = None,
    ) -> None:
        self.directory = directory
        self.suffix = suffix  # "" for a live segment, CLEANED_SUFFIX while being written
        self.base_offset = base_offset
        self.fd = fd
        self.size = size
        self.offset_index = offset_index
        self.time_index = time_index
        self.txn_index = txn_index or TransactionIndex(
            directory / (segment_file_name(base_offset, TXNINDEX_SUFFIX) + suffix), base_offset)
        # True when the transaction index was lost, damaged or reset by recovery: the
        # partition log rebuilds it by replaying producer state, which this segment alone
        # cannot do (a transaction may begin in an earlier segment).
        self.txn_index_stale = False
        self.index_interval_bytes = index_interval_bytes
        self.next_offset = base_offset
        self.max_timestamp = NO_TIMESTAMP
        self.offset_of_max_timestamp = base_offset - 1
        self._bytes_since_index = 0
        # When the segment's age for segment.ms starts: the clock at its first append,
        # or for a segment found on disk its first batch's timestamp.
        self.rolling_base_ms: int | None = None
        self._unsynced = False
        # Bumped whenever bytes already written are cut off: the cleaner, which rewrites
        # sealed segments off the lock, checks it before swapping its copy in.
        self.rewrites = 0

    # --- construction ------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.directory / (segment_file_name(self.base_offset, LOG_SUFFIX) + self.suffix)

    @staticmethod
    def _paths(directory: Path, base_offset: int, suffix: str = "") -> tuple[Path, Path, Path]:
        return (
            directory / (segment_file_name(base_offset, LOG_SUFFIX) + suffix),
            directory / (segment_file_name(base_offset, INDEX_SUFFIX) + suffix),
            directory / (segment_file_name(base_offset, TIMEINDEX_SUFFIX) + suffix),
        )

    @classmethod
    def create(
        cls,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        segment_index_bytes: int,
        suffix: str = "",
    ) -> LogSegment:
        log_path, index_path, time_path = cls._paths(directory, base_offset, suffix)
        fd = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            seg = cls(
                directory,
                base_offset,
                fd,
                0,
                OffsetIndex(index_path, base_offset, segment_index_bytes),
                TimeIndex(time_path, base_offset, segment_index_bytes),
                index_interval_bytes,
                suffix,
            )
            # The index files are written at the segment's first flush: an empty segment
            # needs none (open() takes missing indexes of an empty log as empty), and a
            # broker creating thousands of partitions saves two files each.
        except BaseException:
            os.close(fd)
            raise
        return seg

    @classmethod
    def open(
        cls,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        segment_index_bytes: int,
        offset_limit: int | None = None,
        recover: bool = False,
        verify_tail: bool = False,
    ) -> tuple[LogSegment, int]:
        """Open an existing segment; returns it and how many bytes recovery cut off.

        With ``recover`` every batch is CRC-checked, a torn or corrupt tail is truncated
        and both indexes are rebuilt. Without it the indexes are loaded and sanity
        checked; a damaged or missing index, or a log whose tail does not parse, falls
        back to recovery. ``offset_limit`` is the next segment's base offset; ``verify_tail``
        also CRC-checks the batches after the last index entry.
        """
        log_path, index_path, time_path = cls._paths(directory, base_offset)
        fd = os.open(log_path, os.O_RDWR | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            seg = cls(
                directory,
                base_offset,
                fd,
                size,
                OffsetIndex(index_path, base_offset, segment_index_bytes),
                TimeIndex(time_path, base_offset, segment_index_bytes),
                index_interval_bytes,
            )
            # The transaction index is written at the segment's first flush, with the offset
            # index: without that one, its absence says nothing.
            seg._load_txn_index(offset_limit, expected=index_path.exists())
            if not recover and size == 0 and not (index_path.exists() or time_path.exists()):
                pass  # created and never flushed: nothing to index, nothing to recover
            elif not recover:
                try:
                    seg.offset_index = OffsetIndex.load(
                        index_path,
                        base_offset,
                        segment_index_bytes,
                        log_size=size,
                        offset_limit=offset_limit,
                    )
                    seg.time_index = TimeIndex.load(
                        time_path, base_offset, segment_index_bytes, offset_limit=offset_limit
                    )
                    seg._load_tail(verify_crc=verify_tail)
                except (IndexCorruptError, CorruptRecordError) as e:
                    log.warning("%s: %s; rebuilding the segment's indexes", log_path, e)
                    recover = True
            truncated = seg.recover() if recover else 0
        except BaseException:
            os.close(fd)
            raise
        return seg, truncated

    def _load_txn_index(self, offset_limit: int | None, *, expected: bool) -> None:
        path = self.txn_index.path
        try:
            loaded = TransactionIndex.load(path, self.base_offset, offset_limit=offset_limit)
        except IndexCorruptError as e:
            log.warning("%s; rebuilding it", e)
            self.txn_index.reset()
            self.txn_index_stale = True
            return
        if loaded is not None:
            self.txn_index = loaded
        elif expected:
            log.warning("%s is missing; rebuilding it", path)
            self.txn_index_stale = True

    # --- scanning ----------------------------------------------------------------------

    def iter_batches(
        self, start: int = 0, end: int | None = None, *, verify_crc: bool = False
    ) -> Iterator[tuple[int, BatchHeader]]:
        """Yield (file position, header) from ``start``; raises CorruptRecordError with
        the file position at the first batch that does not frame (or checksum) right."""
        end = self.size if end is None else end
        buf = b""
        buf_start = start
        pos = start
        chunk = SCAN_CHUNK
        while pos < end:
            rel = pos - buf_start
            left = end - pos
            if len(buf) - rel < min(HEADER_SIZE, left):
                buf = os.pread(self.fd, min(chunk, left), pos)
                buf_start, rel = pos, 0
                if len(buf) < min(HEADER_SIZE, left):
                    # The file shrank behind our back: the tail is gone.
                    raise CorruptRecordError(f"{self.log_path}: unexpected end at {pos}")
            if verify_crc and len(buf) - rel >= LOG_OVERHEAD:
                total = _OFFSET_LENGTH.unpack_from(buf, rel)[1] + LOG_OVERHEAD
                if len(buf) - rel < total <= left:
                    buf = os.pread(self.fd, max(SCAN_CHUNK, total), pos)
                    buf_start, rel = pos, 0
            try:
                if verify_crc:
                    header = read_batch_header(
                        memoryview(buf)[: rel + min(left, len(buf) - rel)],
                        rel,
                        position_base=buf_start,
                    )
                else:
                    header = read_batch_header(
                        buf, rel, verify_crc=False, available=left, position_base=buf_start
                    )
            except CorruptRecordError as e:
                raise CorruptRecordError(f"{self.log_path}: {e}") from e
            yield pos, header
            pos += header.batch_length + LOG_OVERHEAD
            if not verify_crc:
                # Header-only scans of big batches read just the next header instead of
                # pulling whole batches through memory.
                chunk = HEADER_SIZE if header.batch_length >= BIG_BATCH else SCAN_CHUNK

    def locate(self, offset: int) -> tuple[int, int] | None:
        """(position, base offset) of the first batch whose last offset >= ``offset``.

        Uses the offset index then walks headers; None if every batch is below ``offset``.
        """
        _, pos = self.offset_index.lookup(offset)
        end = self.size
        while pos < end:
            buf = os.pread(self.fd, min(LOCATE_CHUNK, end - pos), pos)
            rel = 0
            n = len(buf)
            while rel + HEADER_SIZE <= n:
                base, length = _OFFSET_LENGTH.unpack_from(buf, rel)
                if length < MIN_BATCH_LENGTH:
                    raise CorruptRecordError(
                        f"{self.log_path}: bad batchLength {length} at position {pos + rel}"
                    )
                if base + _LAST_DELTA.unpack_from(buf, rel + _LAST_DELTA_POS)[0] >= offset:
                    return pos + rel, base
                rel += length + LOG_OVERHEAD
            if rel == 0 and n < HEADER_SIZE:
                raise CorruptRecordError(f"{self.log_path}: truncated batch at position {pos}")
            pos += rel
        return None

    def first_batch_max_timestamp(self) -> int | None:
        if self.size < HEADER_SIZE:
            return None
        return BatchHeader.unpack(os.pread(self.fd, HEADER_SIZE, 0)).max_timestamp

    def _load_tail(self, *, verify_crc: bool = False) -> None:
        """Derive next offset, max timestamp and index spacing from the index tails.

        Only the batches after the last offset-index entry are read.
        """
        _, pos = self.offset_index.last_entry()
        last_time = self.time_index.last_entry()
        if last_time is None:
            self.max_timestamp, self.offset_of_max_timestamp = NO_TIMESTAMP, self.base_offset - 1
        else:
            self.max_timestamp, self.offset_of_max_timestamp = last_time
        self.next_offset = self.base_offset
        for _, header in self.iter_batches(pos, verify_crc=verify_crc):
            if header.max_timestamp > self.max_timestamp:
                self.max_timestamp = header.max_timestamp
                self.offset_of_max_timestamp = header.last_offset
            self.next_offset = header.next_offset
        self._bytes_since_index = self.size - pos

    def recover(self) -> int:
        """Validate every batch, cut the log at the first bad one, rebuild the indexes.

        Returns the number of bytes truncated.
        """
        self.offset_index.reset()
        self.time_index.reset()
        self.txn_index.reset()
        self.txn_index_stale = True
        self.max_timestamp, self.offset_of_max_timestamp = NO_TIMESTAMP, self.base_offset - 1
        self.next_offset = self.base_offset
        self._bytes_since_index = 0
        valid_end = 0
        try:
            for pos, header in self.iter_batches(0, verify_crc=True):
                if header.base_offset < self.next_offset:
                    raise CorruptRecordError(
                        f"{self.log_path}: batch at position {pos} has base offset "
                        f"{header.base_offset}, expected at least {self.next_offset}"
                    )
                self._index_batch(
                    pos,
                    header.base_offset,
                    header.last_offset,
                    header.max_timestamp,
                    header.total_size,
                )
                self.next_offset = header.next_offset
                valid_end = pos + header.total_size
        except CorruptRecordError as e:
            log.warning("recovery of %s stops at position %d: %s", self.log_path, valid_end, e)
        truncated = self.size - valid_end
        if truncated:
            os.ftruncate(self.fd, valid_end)
            self.size = valid_end
        # What survived may still sit only in the page cache of the crashed run; the
        # recovery point set after open promises it is on disk.
        self._unsynced = True
        self._index_max_timestamp()
        self.flush()
        return truncated

    # --- writing -----------------------------------------------------------------------

    def _index_batch(self, pos: int, base: int, last: int, max_ts: int, size: int) -> None:
        if max_ts > self.max_timestamp:
            self.max_timestamp = max_ts
            self.offset_of_max_timestamp = last
        if self._bytes_since_index > self.index_interval_bytes:
            self.offset_index.append(base, pos)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_index = 0
        self._bytes_since_index += size

    def append(self, data: bytes | bytearray | memoryview, spans: list[BatchSpan]) -> None:
        """Write validated batches with offsets assigned; ``spans`` describes each one.

        On an OSError the partial write is cut back (best effort) and the error re-raised.
        """
        start = self.size
        try:
            write_all(self.fd, data)
        except OSError:
            try:
                os.ftruncate(self.fd, start)
            except OSError:
                pass  # recovery on the next open cuts the torn tail instead
            raise
        self.size = start + len(data)
        self._unsynced = True
        for rel, base, last, max_ts, size in spans:
            self._index_batch(start + rel, base, last, max_ts, size)
        self.next_offset = spans[-1][2] + 1

    def truncate_to(self, offset: int) -> int:
        """Drop every batch whose last offset is >= ``offset``; returns bytes removed."""
        found = self.locate(offset)
        if found is None:
            return 0
        pos = found[0]
        removed = self.size - pos
        os.ftruncate(self.fd, pos)
        self.size = pos
        self.rewrites += 1
        self._unsynced = True
        self.offset_index.truncate_to_position(pos)
        self.time_index.truncate_to_offset(found[1])
        # An abort's entry goes with its marker; the marker starts the batch cut at ``pos``.
        self.txn_index.truncate_to(found[1])
        self._load_tail()
        if self.size == 0:
            self.rolling_base_ms = None
        return removed

    def seal(self) -> None:
        """Make the segment inactive: record its max timestamp in the time index, fsync."""
        self._index_max_timestamp()
        self.flush()

    def _index_max_timestamp(self) -> None:
        # The time index is sparse; a final entry lets the next open learn the segment's
        # max timestamp (for retention and time lookups) without reading the log.
        if self.next_offset > self.base_offset:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)

    def read(self, position: int, length: int) -> bytes:
        return os.pread(self.fd, length, position)

    def flush(self) -> None:
        if self._unsynced:
            os.fsync(self.fd)
            self._unsynced = False
        self.offset_index.flush()
        self.time_index.flush()
        self.txn_index.flush()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def delete(self) -> None:
        """Close and remove the files: rename to ``.deleted`` first so a crash midway
        leaves files the next open recognises as garbage, never a half-deleted segment."""
        self.close()
        delete_segment_files(self.directory, self.base_offset)

    def __repr__(self) -> str:
        return f"LogSegment(base={self.base_offset}, next={self.next_offset}, size={self.size})"

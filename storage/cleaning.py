"""One cleaning of one log: the part of log compaction that reads and writes segment files.

``run_clean`` runs in a cleaner worker process (storage/cleaner.py), away from the broker's
event loop and its interpreter lock. It reads sealed segments through descriptors of its
own (a segment the broker deletes meanwhile stays readable; the swap then notices it is
gone), builds the offset map over the dirty section, and writes each group's replacement
as ``<base>.log.cleaned`` (+ indexes), fsynced. It never touches the live files: the broker
swaps the copies in under the log's lock (PartitionLog.swap_cleaned), so a crash at any
point leaves either the old segments or a swap that recovery completes.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from odradek.storage import compaction
from odradek.storage.batch import LOG_OVERHEAD, BatchHeader, read_batch_header
from odradek.storage.errors import CorruptRecordError, InvalidRecordError
from odradek.storage.records import EndTxnMarker, decode_records, parse_marker
from odradek.storage.segment import CLEANED_SUFFIX, LogSegment
from odradek.storage.txn_index import AbortedTxn

_LENGTH = struct.Struct(">i")
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SegmentRef:
    base_offset: int
    next_offset: int
    size: int
    path: str


@dataclass(frozen=True, slots=True)
class CleanJob:
    """Everything a worker needs, picklable: the broker builds it under the log's lock."""

    directory: str
    # Sealed segments from the log start, grouped as their cleaned copies will be.
    groups: tuple[tuple[SegmentRef, ...], ...]
    first_dirty: int
    first_uncleanable: int
    now_ms: int
    delete_retention_ms: int
    index_interval_bytes: int
    segment_index_bytes: int
    map_capacity: int
    # Last offsets of the producers' last batches: those stay, empty if need be.
    producer_last_offsets: frozenset[int]
    io_bytes_per_second: float
    # Index entries of the aborted transactions that may have records in the groups.
    aborted_txns: tuple[AbortedTxn, ...] = ()


@dataclass(frozen=True, slots=True)
class CleanedGroup:
    base_offset: int
    replaced: tuple[int, ...]  # base offsets of the segments it replaces
    end_offset: int  # first offset after the replaced segments
    size: int


@dataclass(frozen=True, slots=True)
class CleanResult:
    end_offset: int  # the new cleaner point: the log is clean below it
    groups: tuple[CleanedGroup, ...]
    bytes_read: int  # both passes: building the offset map and copying
    bytes_written: int
    records_read: int
    records_removed: int
    # Earliest delete horizon of the tombstones still in the cleaned part, if any.
    min_delete_horizon: int | None
    elapsed_s: float
    map_full: bool = False
    copy_bytes_read: int = 0  # the copy pass alone (Kafka's recopy ratio divides by it)


@dataclass
class Throttle:
    """log.cleaner.io.max.bytes.per.second over the bytes read and written."""

    rate: float
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    read: int = 0

    def add_read(self, n: int) -> None:
        self.read += n
        self.add(n)

    def add(self, n: int) -> None:
        self.done += n
        if self.rate <= 0 or self.rate == float("inf"):
            return
        ahead = self.done / self.rate - (time.monotonic() - self.started)
        if ahead > 0.01:
            time.sleep(ahead)


def iter_segment(path: str, size: int, throttle: Throttle
                 ) -> Iterator[tuple[BatchHeader, memoryview]]:
    """Every batch of a sealed segment file, CRC-checked, read in large chunks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        buf = b""
        off = 0  # buf holds the file from pos - off
        while pos < size:
            have = len(buf) - off
            if have < LOG_OVERHEAD or have < _LENGTH.unpack_from(buf, off + 8)[0] + LOG_OVERHEAD:
                # Keep the start of the batch already read and read on from where buf ends,
                # so no byte is read twice.
                want = min(READ_CHUNK, size - pos - have)
                if have >= LOG_OVERHEAD:
                    want = max(want, _LENGTH.unpack_from(buf, off + 8)[0] + LOG_OVERHEAD - have)
                more = os.pread(fd, want, pos + have) if want > 0 else b""
                throttle.add_read(len(more))
                buf, off = bytes(buf[off:]) + more, 0
                if len(buf) < LOG_OVERHEAD:
                    raise CorruptRecordError(f"{path}: segment ends early at {pos}")
            total = _LENGTH.unpack_from(buf, off + 8)[0] + LOG_OVERHEAD
            if len(buf) - off < total:
                if pos + len(buf) - off >= size:
                    raise CorruptRecordError(f"{path}: truncated batch at {pos}")
                continue
            view = memoryview(buf)[off:off + total]
            header = read_batch_header(view, 0, position_base=pos)
            yield header, view
            pos += total
            off += total
    finally:
        os.close(fd)


def build_offset_map(job: CleanJob, offset_map: compaction.OffsetMap, throttle: Throttle
                     ) -> tuple[int, int]:
    """Map the dirty section, whole batches at a time, until its end or the map is full.

    Returns (records read, whether the map filled up as 0/1)."""
    records = 0
    offset_map.latest_offset = job.first_dirty - 1
    txns = compaction.CleanedTxns(t for t in job.aborted_txns if t.last_offset >= job.first_dirty)
    for group in job.groups:
        for ref in group:
            if ref.next_offset <= job.first_dirty:
                continue
            if ref.base_offset >= job.first_uncleanable:
                return records, 0
            for header, raw in iter_segment(ref.path, ref.size, throttle):
                if header.last_offset < job.first_dirty:
                    continue
                if header.base_offset >= job.first_uncleanable:
                    return records, 0
                if header.is_control:
                    marker, empty = _marker(header, raw)
                    txns.on_marker(header, marker, empty=empty)
                    offset_map.latest_offset = header.last_offset
                    continue
                if txns.on_data_batch(header):
                    # Aborted: its keys must not make committed records obsolete.
                    records += header.records_count
                    offset_map.latest_offset = header.last_offset
                    continue
                if not offset_map.has_room_for(header.records_count):
                    if not len(offset_map):
                        raise CorruptRecordError(
                            f"a batch of {header.records_count} records at offset "
                            f"{header.base_offset} does not fit the cleaner's offset map of "
                            f"{offset_map.capacity} keys; raise log.cleaner.dedupe.buffer.size")
                    return records, 1
                recs = decode_records(header, raw)
                records += len(recs)
                compaction.map_batch(offset_map, header, recs, job.first_dirty)
    return records, 0


def _marker(header: BatchHeader, raw: memoryview) -> tuple[EndTxnMarker | None, bool]:
    """(the marker of a control batch, whether the batch is empty); an unreadable control
    record gives (None, False): it is kept as it is."""
    if header.records_count == 0:
        return None, True
    try:
        return parse_marker(header, raw), False
    except (CorruptRecordError, InvalidRecordError):
        return None, False


def run_clean(job: CleanJob) -> CleanResult:
    """Clean the log ``job`` describes into ``.cleaned`` files beside its segments."""
    started = time.monotonic()
    throttle = Throttle(job.io_bytes_per_second)
    offset_map = compaction.OffsetMap(job.map_capacity)
    mapped, full = build_offset_map(job, offset_map, throttle)
    map_read = throttle.read
    end = offset_map.latest_offset + 1
    directory = Path(job.directory)
    cleaned: list[CleanedGroup] = []
    written = removed = read_records = 0
    min_horizon: int | None = None
    txns = compaction.CleanedTxns(job.aborted_txns)
    try:
        for group in job.groups:
            if group[0].base_offset >= end:
                break
            seg = LogSegment.create(directory, group[0].base_offset,
                                    index_interval_bytes=job.index_interval_bytes,
                                    segment_index_bytes=job.segment_index_bytes,
                                    suffix=CLEANED_SUFFIX)
            try:
                for ref in group:
                    for header, raw in iter_segment(ref.path, ref.size, throttle):
                        # Past the mapped range (at or above the last stable offset, or
                        # what a full map left for the next cleaning) nothing changes.
                        mapped = header.last_offset <= offset_map.latest_offset
                        aborted = discardable = False
                        if header.is_control:
                            marker, empty = _marker(header, raw)
                            discardable, txn = txns.on_marker(header, marker, empty=empty)
                            discardable &= mapped
                            if txn is not None and not discardable:
                                seg.txn_index.append(txn)
                        else:
                            aborted = txns.on_data_batch(header) and mapped
                        out = compaction.filter_batch(
                            header, raw, offset_map, now_ms=job.now_ms,
                            delete_retention_ms=job.delete_retention_ms,
                            keep_empty=(header.has_producer_id
                                        and header.last_offset in job.producer_last_offsets),
                            aborted=aborted, marker_discardable=discardable)
                        read_records += out.kept + out.removed
                        removed += out.removed
                        if out.horizon is not None:
                            min_horizon = (out.horizon if min_horizon is None
                                           else min(min_horizon, out.horizon))
                        if out.data is None:
                            continue
                        h = BatchHeader.unpack(out.data)
                        seg.append(out.data, [(0, h.base_offset, h.last_offset,
                                               h.max_timestamp, len(out.data))])
                        throttle.add(len(out.data))
                seg.seal()  # fsync: the swap must never expose unwritten bytes
                written += seg.size
                cleaned.append(CleanedGroup(group[0].base_offset,
                                            tuple(r.base_offset for r in group),
                                            group[-1].next_offset, seg.size))
            finally:
                seg.close()
    except BaseException:
        discard_cleaned(directory)
        raise
    return CleanResult(end, tuple(cleaned), throttle.read, written,
                       max(read_records, mapped), removed, min_horizon,
                       time.monotonic() - started, bool(full), throttle.read - map_read)


def discard_cleaned(directory: Path) -> None:
    """Remove unfinished copies (a failed or abandoned cleaning)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if name.endswith(CLEANED_SUFFIX):
            (directory / name).unlink(missing_ok=True)

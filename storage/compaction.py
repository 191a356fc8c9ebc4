"""Log compaction's rules, without I/O: what the cleaner keeps of a batch, which logs are
dirty enough to clean, and how cleaned segments are grouped.

Kafka's log cleaner (LogCleaner.scala, KIP-58, KIP-354, KIP-534), restated:

* The *offset map* holds, for every key written in the dirty section of a log (from the
  cleaner's checkpoint up to the first uncleanable offset), the offset of its latest record.
* Every segment from the log start up to the end of the mapped range is rewritten keeping a
  record only if no later record of its key is in the map. Records past the mapped range are
  kept as they are; records without a key cannot be compacted and are dropped (a topic that
  switched from ``delete`` to ``compact`` may hold some).
* A tombstone (a record with a null value) is kept until its *delete horizon* passes: the
  first cleaning that keeps it stamps its batch with now + ``delete.retention.ms`` (KIP-534:
  the batch's base timestamp carries the horizon and attribute bit 6 says so; record
  timestamps are unchanged since each record's delta is taken from the new base). Later
  cleanings drop it once the horizon is in the past, so a consumer that reads the log from
  the start within ``delete.retention.ms`` still sees every deletion.
* Batch boundaries never move: a batch keeps its base offset and last offset delta even when
  records go, so offsets stay where they were and replicas that clean on their own still
  agree on where every batch starts. A batch left without records is dropped, except the last
  batch of a producer, which stays as an empty batch so the producer's sequence and epoch
  survive (idempotence after a restart rebuilds its state from the log).
* Transactions (Kafka's CleanedTransactionMetadata): nothing at or above the last stable
  offset is cleaned (an open transaction may still abort). The records of aborted
  transactions go, whatever their keys (the aborted-transaction indexes say which: a
  transactional batch of a producer between a transaction's first offset and its ABORT
  marker), and they are never put in the offset map, so an aborted write cannot make a
  committed one obsolete. A marker stays while any batch of its transaction remains in the
  cleaned range -- an ABORT then keeps its index entry, which the cleaned segment's index
  gets again -- and once none does, it gets a delete horizon like a tombstone's batch
  (KIP-534) and goes at the first cleaning after it, so a consumer reading from the start
  within ``delete.retention.ms`` still sees it. A producer's last data batch (its last
  sequence) or, with no data left, its last marker (its epoch) stays as an empty batch.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from odradek.storage.batch import (
    CONTROL_BIT,
    HEADER_SIZE,
    LOG_OVERHEAD,
    NO_TIMESTAMP,
    BatchHeader,
    Compression,
    TimestampType,
    batch_crc,
)
from odradek.storage.records import (
    XERIAL_MAGIC,
    DecodedRecord,
    EndTxnMarker,
    Record,
    compress,
    decode_records,
    encode_record,
)
from odradek.storage.txn_index import AbortedTxn

# Attribute bit 6 of a v2 batch: its base timestamp is the delete horizon (KIP-534).
DELETE_HORIZON_BIT = 0x40
# Bytes of memory one offset-map entry costs in this process: a 16-byte digest object, an
# int and the dict slot came to 123 bytes per key with tracemalloc at 500,000 keys; 160
# leaves room for the dict's doubling when it grows. log.cleaner.dedupe.buffer.size is
# divided by this to size the map, so the setting bounds real memory as it does in Kafka.
MAP_ENTRY_BYTES = 160
MAP_LOAD_FACTOR = 0.9
INT_MAX = 2**31 - 1

_U32 = struct.Struct(">I")


def key_digest(key: bytes) -> bytes:
    """The map's key: a 16-byte digest, as Kafka's map keeps MD5s, so one huge key costs
    no more memory than a small one."""
    return hashlib.blake2b(key, digest_size=16).digest()


class OffsetMap:
    """Key digest -> offset of the key's latest record in the mapped range."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("an offset map needs room for at least one key")
        self.capacity = capacity
        self._offsets: dict[bytes, int] = {}
        self.latest_offset = -1  # the last offset the map covers (whole batches)

    def __len__(self) -> int:
        return len(self._offsets)

    def has_room_for(self, records: int) -> bool:
        return len(self._offsets) + records <= self.capacity

    def put(self, key: bytes, offset: int) -> None:
        self._offsets[key_digest(key)] = offset

    def get(self, key: bytes) -> int:
        return self._offsets.get(key_digest(key), -1)


def map_capacity(dedupe_buffer_bytes: int) -> int:
    """How many keys log.cleaner.dedupe.buffer.size holds (Kafka also fills it to 90 %)."""
    return max(1, int(dedupe_buffer_bytes // MAP_ENTRY_BYTES * MAP_LOAD_FACTOR))


def map_batch(offset_map: OffsetMap, header: BatchHeader, records: Sequence[DecodedRecord],
              start: int) -> None:
    """Put every keyed record of a data batch at or after ``start`` into the map."""
    for rec in records:
        if rec.offset >= start and rec.key is not None:
            offset_map.put(rec.key, rec.offset)
    offset_map.latest_offset = header.last_offset


def delete_horizon(header: BatchHeader) -> int | None:
    if header.attributes & DELETE_HORIZON_BIT:
        return header.base_timestamp
    return None


@dataclass(frozen=True, slots=True)
class Filtered:
    """What cleaning made of one batch."""

    data: bytes | None  # the batch to write, or None to drop it
    kept: int  # records kept
    removed: int  # records dropped
    # The delete horizon of tombstones this batch still holds, if any.
    horizon: int | None = None


def filter_batch(
    header: BatchHeader,
    raw: bytes | bytearray | memoryview,
    offset_map: OffsetMap,
    *,
    now_ms: int,
    delete_retention_ms: int,
    keep_empty: bool,
    aborted: bool = False,
    marker_discardable: bool = False,
) -> Filtered:
    """Clean one batch (``raw`` holds exactly its bytes) against ``offset_map``.

    ``keep_empty``: the batch is its producer's last, so it stays (empty if need be).
    ``aborted``: a data batch of an aborted transaction, whose records all go.
    ``marker_discardable``: a control batch whose transaction has no batch left, which
    gets a delete horizon and goes once it passed (see ``CleanedTxns``).
    """
    if header.attributes & CONTROL_BIT:
        if not marker_discardable:
            return Filtered(bytes(raw), header.records_count, 0)
        return _filter_marker(header, raw, now_ms=now_ms,
                              delete_retention_ms=delete_retention_ms, keep_empty=keep_empty)
    if aborted:
        removed = header.records_count
        if not keep_empty:
            return Filtered(None, 0, removed)
        return Filtered(empty_batch(header) if removed else bytes(raw), 0, removed)
    if header.last_offset > offset_map.latest_offset:
        return Filtered(bytes(raw), header.records_count, 0)
    records = decode_records(header, raw)
    horizon = delete_horizon(header)
    expired = horizon is not None and horizon <= now_ms
    kept: list[DecodedRecord] = []
    tombstones = False
    for rec in records:
        if rec.key is None:
            continue  # cannot be compacted: Kafka's cleaner drops it too
        if offset_map.get(rec.key) > rec.offset:
            continue  # a later record of the key is in the map
        if rec.value is None:
            if expired:
                continue
            tombstones = True
        kept.append(rec)
    stamp = tombstones and horizon is None
    if len(kept) == len(records) and not stamp:
        return Filtered(bytes(raw), len(kept), 0, horizon if tombstones else None)
    removed = len(records) - len(kept)
    if not kept:
        if not keep_empty:
            return Filtered(None, 0, removed)
        return Filtered(empty_batch(header), 0, removed)
    if stamp:
        horizon = now_ms + delete_retention_ms
    return Filtered(rebuild_batch(header, raw, kept, horizon if tombstones else None),
                    len(kept), removed, horizon if tombstones else None)


def _filter_marker(header: BatchHeader, raw: bytes | bytearray | memoryview, *, now_ms: int,
                   delete_retention_ms: int, keep_empty: bool) -> Filtered:
    count = header.records_count
    horizon = delete_horizon(header)
    if horizon is not None and horizon <= now_ms:
        if not keep_empty:
            return Filtered(None, 0, count)
        return Filtered(empty_batch(header) if count else bytes(raw), 0, count)
    if not count:  # emptied by an earlier cleaning: nothing left to wait for
        return Filtered(bytes(raw) if keep_empty else None, 0, 0)
    if horizon is None:
        horizon = now_ms + delete_retention_ms
        records = decode_records(header, raw)
        return Filtered(rebuild_batch(header, raw, records, horizon), count, 0, horizon)
    return Filtered(bytes(raw), count, 0, horizon)


class CleanedTxns:
    """Transaction state of one pass of the cleaner over a log, in offset order (Kafka's
    CleanedTransactionMetadata): which data batches belong to aborted transactions and
    which markers no longer have a batch of their transaction before them.

    ``aborted`` are the index entries of the aborted transactions that may overlap the
    pass. A producer has at most one transaction open at a time, so between an aborted
    transaction's first offset and its marker every transactional batch of its producer is
    part of it.
    """

    def __init__(self, aborted: Iterable[AbortedTxn]) -> None:
        self._pending = sorted(aborted, key=lambda t: (t.first_offset, t.last_offset))
        self._next = 0
        self._aborted: dict[int, _AbortedSeen] = {}  # producer id -> its aborted txn
        self._committed: set[int] = set()  # producers with a batch of an open commit seen

    def _start_up_to(self, offset: int) -> None:
        pending = self._pending
        while self._next < len(pending) and pending[self._next].first_offset <= offset:
            txn = pending[self._next]
            self._next += 1
            self._aborted.setdefault(txn.producer_id, _AbortedSeen(txn))

    def on_data_batch(self, header: BatchHeader) -> bool:
        """Whether the batch belongs to an aborted transaction."""
        self._start_up_to(header.last_offset)
        if not header.is_transactional:
            return False
        state = self._aborted.get(header.producer_id)
        if state is not None:
            state.seen = True
            return True
        self._committed.add(header.producer_id)
        return False

    def on_marker(self, header: BatchHeader, marker: EndTxnMarker | None, *, empty: bool
                  ) -> tuple[bool, AbortedTxn | None]:
        """(whether the marker may go, the index entry of its aborted transaction if one
        remains). ``empty``: a control batch already emptied; ``marker`` None otherwise
        means a control record we cannot read, which stays."""
        self._start_up_to(header.last_offset)
        pid = header.producer_id
        if empty:
            return True, None
        if marker is None:
            return False, None
        if marker.commit:
            if pid in self._committed:
                self._committed.discard(pid)
                return False, None
            return True, None
        state = self._aborted.pop(pid, None)
        if state is None:
            return True, None
        return not state.seen, state.txn


@dataclass(slots=True)
class _AbortedSeen:
    txn: AbortedTxn
    seen: bool = False  # a batch of the transaction is still in the log


def rebuild_batch(header: BatchHeader, raw: bytes | bytearray | memoryview,
                  records: Sequence[DecodedRecord], horizon: int | None) -> bytes:
    """The batch again with only ``records``: same offsets, producer fields, epoch,
    compression and last offset delta; the base timestamp is the delete horizon if there
    is one (attribute bit 6), and the max timestamp is recomputed for CreateTime."""
    log_append = header.timestamp_type == TimestampType.LOG_APPEND_TIME
    if horizon is not None:
        base_ts = horizon
    elif log_append:
        base_ts = header.base_timestamp
    else:
        base_ts = records[0].timestamp
    max_ts = header.max_timestamp if log_append else max(r.timestamp for r in records)
    body = b"".join(
        encode_record(Record(r.offset - header.base_offset,
                             0 if log_append else r.timestamp - base_ts,
                             r.key, r.value, r.headers))
        for r in records
    )
    codec = header.compression
    # Java clients frame snappy xerial-style; keep the framing the producer chose.
    xerial = codec == Compression.SNAPPY and bytes(raw[HEADER_SIZE:HEADER_SIZE + 8]) == XERIAL_MAGIC
    payload = compress(codec, body, xerial_snappy=xerial)
    attributes = header.attributes & ~DELETE_HORIZON_BIT
    if horizon is not None:
        attributes |= DELETE_HORIZON_BIT
    return _pack(header, attributes, base_ts, max_ts, len(records), payload)


def empty_batch(header: BatchHeader) -> bytes:
    """A batch without records that keeps the producer fields and offset range (Kafka's
    empty batch for the last batch of a producer)."""
    attributes = (header.attributes & ~(DELETE_HORIZON_BIT | 0x07))  # no compression
    ts = header.max_timestamp
    return _pack(header, attributes, ts, ts, 0, b"")


def _pack(header: BatchHeader, attributes: int, base_ts: int, max_ts: int, count: int,
          payload: bytes) -> bytes:
    out = bytearray(BatchHeader(
        base_offset=header.base_offset,
        batch_length=HEADER_SIZE - LOG_OVERHEAD + len(payload),
        partition_leader_epoch=header.partition_leader_epoch,
        magic=header.magic,
        crc=0,
        attributes=attributes,
        last_offset_delta=header.last_offset_delta,
        base_timestamp=base_ts,
        max_timestamp=max_ts,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        records_count=count,
    ).pack())
    out += payload
    _U32.pack_into(out, 17, batch_crc(out, 0, len(out)))
    return bytes(out)


def keyless_records(header: BatchHeader, raw: bytes | bytearray | memoryview) -> int:
    """How many records of a client batch have no key (a compacted topic refuses them)."""
    if header.attributes & CONTROL_BIT:
        return 0
    return sum(1 for r in decode_records(header, raw) if r.key is None)


# --- choosing what to clean ----------------------------------------------------------------


class Segment(Protocol):
    @property
    def base_offset(self) -> int: ...

    @property
    def next_offset(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def max_timestamp(self) -> int: ...

    def first_batch_max_timestamp(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Dirtiness:
    """How much of a log the cleaner could clean now (Kafka's LogToClean)."""

    first_dirty: int  # the cleaner's point: below it the log is clean
    first_uncleanable: int  # records from here on may not be cleaned yet
    clean_bytes: int
    dirty_bytes: int  # bytes of the segments in [first_dirty, first_uncleanable)
    overdue: bool  # max.compaction.lag.ms has passed for the oldest dirty record
    oldest_dirty_ms: int | None = None  # timestamp of the first dirty batch

    @property
    def ratio(self) -> float:
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0


def dirtiness(segments: Sequence[Segment], *, cleaner_point: int, log_start: int,
              high_watermark: int, now_ms: int, min_compaction_lag_ms: int,
              max_compaction_lag_ms: int) -> Dirtiness:
    """Where the dirty section of a log starts and ends, and how big each part is.

    The active (last) segment is never cleaned, nor anything at or above the high watermark
    (it may still be truncated away, and with it the record that made an older one obsolete),
    nor a segment holding a record newer than ``min.compaction.lag.ms``.
    """
    first_dirty = max(cleaner_point, log_start)
    uncleanable = min(segments[-1].base_offset, high_watermark)
    if min_compaction_lag_ms > 0:
        for seg in segments[:-1]:
            if seg.next_offset > first_dirty and seg.max_timestamp > now_ms - min_compaction_lag_ms:
                uncleanable = min(uncleanable, seg.base_offset)
                break
    uncleanable = max(uncleanable, first_dirty)
    clean = dirty = 0
    oldest: int | None = None
    for seg in segments[:-1]:
        if seg.next_offset <= first_dirty:
            clean += seg.size
        elif seg.base_offset < uncleanable:
            dirty += seg.size
            if oldest is None and seg.size:
                oldest = seg.first_batch_max_timestamp()
    if oldest == NO_TIMESTAMP:
        oldest = None
    overdue = dirty > 0 and oldest is not None and now_ms - oldest > max_compaction_lag_ms
    return Dirtiness(first_dirty, uncleanable, clean, dirty, overdue, oldest)


@dataclass(frozen=True, slots=True)
class SegmentShape:
    base_offset: int
    next_offset: int
    size: int
    index_entries: int
    time_entries: int


def group_segments(segments: Sequence[SegmentShape], *, max_bytes: int,
                   max_index_entries: int, max_time_entries: int) -> list[list[SegmentShape]]:
    """Consecutive segments merged into one cleaned segment while the originals' sizes,
    index entries and offset span fit one segment (Kafka's groupSegmentsBySize)."""
    groups: list[list[SegmentShape]] = []
    for seg in segments:
        if groups:
            g = groups[-1]
            if (sum(s.size for s in g) + seg.size <= max_bytes
                    and sum(s.index_entries for s in g) + seg.index_entries <= max_index_entries
                    and sum(s.time_entries for s in g) + seg.time_entries <= max_time_entries
                    and seg.next_offset - 1 - g[0].base_offset <= INT_MAX):
                g.append(seg)
                continue
        groups.append([seg])
    return groups

"""PartitionLog: the segmented on-disk log of one partition.

Directory layout::

    00000000000000000000.log / .index / .timeindex   segments, named by base offset
    00000000000000000000.txnindex                      aborted transactions of the segment
    00000000000000000100.snapshot                      producer state below offset 100
    leader-epoch-checkpoint                            epoch -> start offset
    log-start-offset-checkpoint                        moved by DeleteRecords/retention
    high-watermark-checkpoint                          written on flush and close
    recovery-point-checkpoint                          everything below it is fsynced
    cleaner-offset-checkpoint                          compacted logs: clean below it
    clean-shutdown                                     present only while closed cleanly

Durability model: an append is one write to the active segment; it reaches the disk on
``flush()`` (by flush.messages, flush.ms, an explicit call, a segment roll or close).
A segment is fsynced when it is rolled, so after a crash only segments at or above the
recovery point can hold torn data; those are CRC-checked and cut at the first bad batch.

All public methods are serialized by one lock (reads too: retention closes segment
files, and a pread on a recycled descriptor would return another file's bytes).

Transactions (KIP-98): the last stable offset is min(first unstable offset, high watermark)
(storage/producer_state.py says what is unstable); read_committed readers read below it and
get the aborted transactions of what they read from the segments' transaction indexes.

Producer state is snapshotted (storage/producer_snapshot.py) when a segment rolls, when the
log closes cleanly and when retention forgets a producer, and rebuilt on open and after a
truncation from the newest snapshot at or below the log end plus the batches after it; with
no usable snapshot, from every batch of the log. Kept: the newest; the newest at or below
min(high watermark, recovery point) -- neither a crash nor a truncation to at least the high
watermark can need an older one; the newest at or below each segment's base, which is the
one its roll took (as Kafka keeps them): what a crash needs to rebuild that segment's
transaction index, and, once the segments before it are deleted, the only record of what
they held that still matters (a transaction begun there and still open, or ended by a
marker in this segment: a replay from an empty state at the new first segment would not
know it); and, while above that bound, those written because retention forgot a producer. The last are why a replay never crosses a point
where a producer was forgotten, which is what makes a rebuilt state equal to the one the log
had: a producer forgotten and then writing again starts afresh, and a replay across the
forgetting would not know it happened. A truncation below the high watermark may lose that
guarantee for such a producer's older batches (what a retry of a batch deleted by retention
would be answered), and only those.

Transaction indexes lost in a crash (the segments being recovered) or found missing or
damaged are rebuilt on open by replaying producer state from a snapshot at or below the
first such segment (its transactions may begin earlier), writing their abort entries again.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from odradek.storage import (
    checkpoint,
    cleaning,
    compaction,
    producer_snapshot,
    recovery,
    retention,
)
from odradek.storage.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MIN_BATCH_LENGTH,
    NO_TIMESTAMP,
    BatchHeader,
    assign_offsets,
    parse_batches,
)
from odradek.storage.config import INT_MAX, LogConfig
from odradek.storage.epochs import CHECKPOINT_NAME as EPOCH_CHECKPOINT
from odradek.storage.epochs import LeaderEpochCache
from odradek.storage.errors import (
    CheckpointCorruptError,
    CorruptRecordError,
    InvalidRecordError,
    LogOfflineError,
    OffsetOutOfRangeError,
    OffsetOutOfSequenceError,
    RecordBatchTooLargeError,
    RecordTooLargeError,
    SnapshotCorruptError,
)
from odradek.storage.file_region import FileRegion
from odradek.storage.producer_state import (
    AppendOrigin,
    CompletedTxn,
    PendingBatch,
    ProducerStateManager,
)
from odradek.storage.records import EndTxnMarker, decode_records, parse_marker
from odradek.storage.segment import (
    CLEANED_SUFFIX,
    INDEX_SUFFIX,
    LOCATE_CHUNK,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIMEINDEX_SUFFIX,
    TXNINDEX_SUFFIX,
    BatchSpan,
    LogSegment,
    segment_file_name,
)
from odradek.storage.txn_index import AbortedTxn

__all__ = [
    "AbortedTxn",
    "AppendOrigin",
    "AppendResult",
    "LogConfig",
    "PartitionLog",
    "ReadResult",
    "SegmentInfo",
]

log = logging.getLogger("odradek.storage")

CLEAN_SHUTDOWN_FILE = "clean-shutdown"
LOG_START_CHECKPOINT = "log-start-offset-checkpoint"
HIGH_WATERMARK_CHECKPOINT = "high-watermark-checkpoint"
RECOVERY_POINT_CHECKPOINT = "recovery-point-checkpoint"
CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"

_I32 = struct.Struct(">i")
_OFFSET_LENGTH = struct.Struct(">qi")
REPLAY_CHUNK = 4096  # batches applied to producer state at a time when replaying
_LAST_DELTA_POS = 23


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    record_count: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: bytes | memoryview  # whole batches only
    first_batch_offset: int  # base offset of the first batch returned, -1 if none
    next_offset: int  # offset after the last batch returned (the requested one if none)
    # read_committed reads: the transactions that aborted within what was read (a Fetch
    # response's aborted_transactions); None for other reads.
    aborted: tuple[AbortedTxn, ...] | None = None


@dataclass(frozen=True, slots=True)
class SendableRead:
    """A read for a response that goes to a socket: ``records`` is a FileRegion (sent from
    the file by the kernel) when it is at least the size asked for, else the bytes.
    Otherwise as ReadResult."""

    records: bytes | FileRegion
    first_batch_offset: int
    next_offset: int
    aborted: tuple[AbortedTxn, ...] | None = None


@dataclass(frozen=True, slots=True)
class CleanTicket:
    """The broker's half of a CleanJob: the live segments the copies will replace, as they
    were when the job was made (checked again before the swap)."""

    job: cleaning.CleanJob
    segments: tuple[tuple[LogSegment, int, int], ...]  # (segment, size, rewrites)


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    base_offset: int
    next_offset: int
    size_bytes: int
    max_timestamp_ms: int
    path: Path


class PartitionLog:
    """Use ``PartitionLog.open``; the constructor only assembles loaded parts."""

    def __init__(self, directory: Path, config: LogConfig, now_ms: Callable[[], int]) -> None:
        self.directory = directory
        self._config = config
        self._now_ms = now_ms
        self._lock = threading.RLock()
        self._segments: list[LogSegment] = []
        self._log_start = 0
        self._leo = 0
        self._hw = 0
        self._hw_checkpointed: int | None = None
        self._recovery_point = 0
        self._unflushed = 0
        self._last_flush_ms = 0
        self._offline: str | None = None
        self._closed = False
        self._cleaner_point = 0  # compacted logs: the log is clean below this offset
        self._dirs_synced = True  # False from creation to the first flush (see _load)
        # Earliest delete horizon of the tombstones the last cleaning kept (not persisted:
        # after a restart they go at the next cleaning the dirty ratio triggers).
        self.min_delete_horizon: int | None = None
        self.leader_epochs = LeaderEpochCache(
            directory / EPOCH_CHECKPOINT, log_end_offset=lambda: self._leo
        )
        self.producer_state = ProducerStateManager()
        self._snapshots: list[int] = []  # offsets of the producer-state snapshots on disk
        self._forgetting: set[int] = set()  # those written because a producer was forgotten
        self._snapshot_due = False  # a roll skipped its snapshot (see _roll)

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        config: LogConfig,
        *,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> PartitionLog:
        """Open (creating if needed) the log in ``directory``, recovering after a crash.

        Raises LogOfflineError if the directory cannot be read or written.
        """
        directory = Path(directory)
        self = cls(directory, config, now_ms)
        try:
            self._load()
        except BaseException as e:
            for seg in self._segments:
                seg.close()
            if isinstance(e, OSError):
                raise LogOfflineError(f"cannot open partition log {directory}: {e}") from e
            raise
        return self

    def _load(self) -> None:
        d = self.directory
        # A new partition's empty log is created without fsyncs (a broker taking thousands
        # of partitions at once would spend seconds in them): a machine crash before its
        # first flush at worst loses an empty directory, which the next start creates again.
        # That first flush makes the directory entries durable (_flush_locked).
        fresh = not d.exists()
        self._dirs_synced = not fresh
        d.mkdir(parents=True, exist_ok=True)
        if fresh:
            # Nothing to recover: skip the checkpoint reads and header scans (a broker
            # creates thousands of logs at once).
            self._segments.append(self._new_segment(0, sync_dir=False))
            self._last_flush_ms = self._now_ms()
            return
        marker = d / CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
        if clean:
            # Gone before any write, durably, so a crash from now on is seen as unclean.
            marker.unlink()
            checkpoint.fsync_dir(d)

        bases = recovery.clean_directory(d)
        log_start = recovery.read_checkpoint(d, LOG_START_CHECKPOINT)
        # None: nothing to recover. Otherwise segments reaching past it are checked.
        recovery_point: int | None = None
        if not clean:
            recovery_point = recovery.read_checkpoint(d, RECOVERY_POINT_CHECKPOINT) or 0
        self._segments = recovery.open_segments(d, self._config, bases, recovery_point)

        if not self._segments:
            self._segments.append(self._new_segment(log_start or 0, sync_dir=not fresh))
        self._leo = self._segments[-1].next_offset
        self._log_start = max(log_start or 0, self._segments[0].base_offset)
        restarted = self._log_start > self._leo
        if restarted:
            log.warning(
                "%s: log start offset %d is beyond the recovered end %d; starting over there",
                d,
                self._log_start,
                self._leo,
            )
            self._truncate_fully(self._log_start)

        try:
            self.leader_epochs = LeaderEpochCache.load(
                d / EPOCH_CHECKPOINT, log_end_offset=lambda: self._leo
            )
            # A missing checkpoint next to data was lost, not empty.
            rebuild_epochs = not (d / EPOCH_CHECKPOINT).exists() and self._leo > self._log_start
        except CheckpointCorruptError as e:
            log.warning("%s: %s; rebuilding it from the batch headers", d, e)
            rebuild_epochs = True
        if restarted:
            self.leader_epochs.clear()
        self._rebuild_epochs(rebuild=rebuild_epochs, merge=not clean)
        self.leader_epochs.truncate_from_end(self._leo)
        self.leader_epochs.truncate_from_start(self._log_start)

        hw = recovery.read_checkpoint(d, HIGH_WATERMARK_CHECKPOINT)
        self._hw = min(max(hw or 0, self._log_start), self._leo)
        self._hw_checkpointed = hw
        self._load_producer_state()
        self.producer_state.on_high_watermark(self._hw)
        self._recovery_point = self._leo
        active = self._segments[-1]
        first_ts = active.first_batch_max_timestamp()
        now = self._now_ms()
        if first_ts is not None:
            active.rolling_base_ms = min(first_ts, now)
        self._last_flush_ms = now
        if (log_start or 0) != self._log_start:  # absent means 0
            checkpoint.write_offset(d / LOG_START_CHECKPOINT, self._log_start)
        point = recovery.read_checkpoint(d, CLEANER_CHECKPOINT) or 0
        self._cleaner_point = min(max(point, self._log_start), self._leo)

    def _rebuild_epochs(self, *, rebuild: bool, merge: bool) -> None:
        """Rebuild the epoch cache from batch headers (``rebuild``), or take only the epochs
        newer than its file's (``merge``, after an unclean shutdown: the checkpoint is
        replaced without fsync, see storage/epochs.py)."""
        if not (rebuild or merge):
            return
        headers = recovery.batch_headers(self.directory, self._segments)
        if rebuild:
            self.leader_epochs.replace(recovery.epochs_from_headers(headers))
        else:
            self.leader_epochs.merge_from_headers(recovery.epochs_from_headers(headers))

    # --- producer state: snapshots and replay -------------------------------------------

    def _load_producer_state(self) -> None:
        """On open: the newest usable snapshot plus the batches after it; on the way, the
        transaction indexes of the segments that lost theirs are written again."""
        found = producer_snapshot.list_offsets(self.directory)
        first_base = self._segments[0].base_offset
        # Above the log end: they describe batches a crash lost, which a later write
        # would replace with others. Gone durably before anything is written.
        beyond = [o for o in found if o > self._leo]
        for offset in beyond:
            self._snapshot_path(offset).unlink(missing_ok=True)
        if beyond:
            checkpoint.fsync_dir(self.directory)
        self._snapshots = [o for o in found if o <= self._leo]
        self._forgetting = {
            o for o in self._snapshots if o > self._hw and
            producer_snapshot.read_flags(self._snapshot_path(o)) & producer_snapshot.FLAG_FORGOT}
        psm = self.producer_state
        start = self._load_snapshot(psm, self._leo)
        stale = [seg for seg in self._segments if seg.txn_index_stale]
        if stale:
            first_stale = stale[0].base_offset
            if start <= first_stale:
                self._replay(psm, start, rebuild_indexes=True)
            else:
                scratch = ProducerStateManager()
                self._replay(scratch, self._load_snapshot(scratch, first_stale),
                             rebuild_indexes=True)
                self._replay(psm, start)
            for seg in stale:
                seg.txn_index.flush()
                seg.txn_index_stale = False
        else:
            self._replay(psm, start)
        self._forget_below_log_start()
        if any(o < first_base for o in self._snapshots):
            self._prune_snapshots()

    def _rebuild_producer_state(self) -> None:
        """After a truncation: the newest snapshot at or below the new end, replayed."""
        psm = self.producer_state
        self._replay(psm, self._load_snapshot(psm, self._leo))
        self._forget_below_log_start()
        psm.on_high_watermark(self._hw)

    def _forget_below_log_start(self) -> bool:
        """Forget the producers retention left without a write (storage/producer_state.py),
        and remember in a snapshot that they were forgotten here: a replay from an older one
        would not know, and would give a producer writing again afterwards the batches of
        its previous life. Also after a crash or a truncation, which can take away the
        writes that had kept a producer."""
        if not self.producer_state.truncate_head(self._log_start):
            return False
        self._take_snapshot(self._leo, forgot=True)
        return True

    def _snapshot_path(self, offset: int) -> Path:
        return self.directory / producer_snapshot.file_name(offset)

    def _load_snapshot(self, psm: ProducerStateManager, limit: int) -> int:
        """Load the newest intact snapshot at or below ``limit`` into ``psm`` (or clear it
        when there is none); returns the offset from which batches must be replayed."""
        first_base = self._segments[0].base_offset
        for offset in reversed(self._snapshots):
            if offset > limit:
                continue
            if offset < first_base:
                break  # the batches between it and the first segment are gone
            try:
                producers, unreplicated = producer_snapshot.read(self._snapshot_path(offset))
            except (SnapshotCorruptError, FileNotFoundError) as e:
                log.warning("%s: ignoring producer snapshot %d: %s", self.directory, offset, e)
                self._drop_snapshot(offset)
                continue
            psm.load(producers, unreplicated, offset)
            return offset
        psm.clear(first_base)
        return first_base

    def _replay(self, psm: ProducerStateManager, start: int, *,
                rebuild_indexes: bool = False) -> None:
        """Apply every batch from ``start`` to the log end to ``psm``; with
        ``rebuild_indexes`` the aborts it finds in stale segments go into their indexes."""
        for seg in self._segments:
            if seg.next_offset <= start or not seg.size:
                continue
            pos = 0
            if start > seg.base_offset:
                found = seg.locate(start)
                if found is None:
                    continue
                pos = found[0]
            chunk: list[PendingBatch] = []
            batches = self._segment_batches(seg, pos)
            while True:
                try:
                    for batch in batches:
                        chunk.append(batch)
                        if len(chunk) == REPLAY_CHUNK:
                            break
                except CorruptRecordError as e:
                    # Damage inside an old segment of a cleanly closed log: keep what
                    # precedes it; reading there fails later, as it would in Kafka.
                    log.error("%s: %s", self.directory, e)
                    batches = iter(())
                if not chunk:
                    break
                completed = psm.apply(chunk)
                chunk = []
                if rebuild_indexes and seg.txn_index_stale:
                    for txn, lso in completed:
                        if txn.is_aborted:
                            seg.txn_index.append(AbortedTxn(
                                txn.producer_id, txn.first_offset, txn.last_offset, lso))
        psm.map_end_offset = self._leo

    def _segment_batches(self, seg: LogSegment, pos: int) -> Iterator[PendingBatch]:
        for at, header in seg.iter_batches(pos):
            marker = None
            if header.is_control and header.producer_id >= 0:
                marker = self._stored_marker(seg, at, header)
            yield PendingBatch(header, header.base_offset, header.max_timestamp, marker)

    def _stored_marker(self, seg: LogSegment, pos: int, header: BatchHeader
                       ) -> EndTxnMarker | None:
        try:
            return parse_marker(header, seg.read(pos, header.total_size))
        except (CorruptRecordError, InvalidRecordError) as e:
            log.warning("%s: control batch at offset %d is not a readable transaction "
                        "marker, taken as empty: %s", self.directory, header.base_offset, e)
            return None

    def _take_snapshot(self, offset: int, *, forgot: bool = False) -> None:
        # Replacing one taken where a producer was forgotten: the state is still after that.
        forgot = forgot or offset in self._forgetting
        psm = self.producer_state
        data = producer_snapshot.encode(psm.producers.values(), psm.unreplicated_txns.values(),
                                        forgot=forgot)
        checkpoint.write_atomic(self._snapshot_path(offset), data)
        if offset not in self._snapshots:
            bisect.insort(self._snapshots, offset)
        if forgot:
            self._forgetting.add(offset)
        self._prune_snapshots()

    def _drop_snapshot(self, offset: int) -> None:
        self._snapshot_path(offset).unlink(missing_ok=True)
        self._snapshots.remove(offset)
        self._forgetting.discard(offset)

    def _snapshot_if_due(self) -> None:
        # Every roll leaves a snapshot at or after it: the cleaner only removes a marker
        # from a sealed segment, and a replay must not start before a removed marker whose
        # transaction it would then find open (see _swap_groups).
        if self._snapshot_due:
            self._snapshot_due = False
            self._take_snapshot(self._leo)

    def _prune_snapshots(self) -> None:
        """Keep what a crash or a truncation to at least the high watermark can need (see
        the module docstring); delete the rest."""
        snaps = self._snapshots
        first_base = self._segments[0].base_offset
        if len(snaps) <= 1 and (not snaps or snaps[0] >= first_base):
            return
        bound = min(self._hw, self._recovery_point)
        keep = {snaps[-1]} | {o for o in self._forgetting if o > bound}
        limits = [bound] + [seg.base_offset for seg in self._segments]
        for limit in limits:
            i = bisect.bisect_right(snaps, limit)
            if i:
                keep.add(snaps[i - 1])
        for offset in list(snaps):
            if offset not in keep or offset < first_base:
                self._drop_snapshot(offset)

    def _index_aborts(self, completed: list[tuple[CompletedTxn, int]]) -> None:
        """Write the abort entries of an append into the segments holding their markers."""
        for txn, lso in completed:
            if not txn.is_aborted:
                continue
            i = len(self._segments) - 1
            while i > 0 and self._segments[i].base_offset > txn.last_offset:
                i -= 1
            self._segments[i].txn_index.append(
                AbortedTxn(txn.producer_id, txn.first_offset, txn.last_offset, lso))

    def _new_segment(self, base_offset: int, *, sync_dir: bool = True) -> LogSegment:
        seg = LogSegment.create(
            self.directory,
            base_offset,
            index_interval_bytes=self._config.index_interval_bytes,
            segment_index_bytes=self._config.segment_index_bytes,
        )
        if sync_dir:
            checkpoint.fsync_dir(self.directory)
        return seg

    # --- state -------------------------------------------------------------------------

    @property
    def config(self) -> LogConfig:
        return self._config

    @config.setter
    def config(self, config: LogConfig) -> None:
        """New settings apply to later appends; index sizes only to new segments."""
        with self._lock:
            self._config = config
            for seg in self._segments:
                seg.index_interval_bytes = config.index_interval_bytes

    @property
    def log_start_offset(self) -> int:
        return self._log_start

    @property
    def log_end_offset(self) -> int:
        """The offset the next appended record gets."""
        return self._leo

    @property
    def high_watermark(self) -> int:
        return self._hw

    @high_watermark.setter
    def high_watermark(self, offset: int) -> None:
        """Set by the broker; clamped to [log_start_offset, log_end_offset]. Moves the last
        stable offset with it."""
        with self._lock:
            self._hw = min(max(offset, self._log_start), self._leo)
            self.producer_state.on_high_watermark(self._hw)

    @property
    def first_unstable_offset(self) -> int | None:
        """First offset of the oldest transaction still open, or completed by a marker not
        yet below the high watermark (never below the log start offset); None if none."""
        first = self.producer_state.first_unstable_offset
        return None if first is None else max(first, self._log_start)

    @property
    def last_stable_offset(self) -> int:
        """What read_committed consumers may read up to (exclusive), and what ListOffsets
        answers as the latest offset for them: min(first unstable offset, high watermark)."""
        with self._lock:
            first = self.first_unstable_offset
            return self._hw if first is None else min(first, self._hw)

    @property
    def size_bytes(self) -> int:
        return sum(seg.size for seg in self._segments)

    @property
    def segments(self) -> list[SegmentInfo]:
        with self._lock:
            return [
                SegmentInfo(s.base_offset, s.next_offset, s.size, s.max_timestamp, s.log_path)
                for s in self._segments
            ]

    @property
    def unflushed_messages(self) -> int:
        return self._unflushed

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def offline(self) -> bool:
        """True after an I/O error or close(); every method then raises LogOfflineError."""
        return self._offline is not None or self._closed

    def _check_usable(self) -> None:
        if self._offline is not None:
            raise LogOfflineError(self._offline)
        if self._closed:
            raise LogOfflineError(f"partition log {self.directory} is closed")

    def _go_offline(self, action: str, err: OSError) -> NoReturn:
        name = errno.errorcode.get(err.errno or 0, "") if err.errno else ""
        self._offline = (
            f"partition log {self.directory} is offline: {action} failed with "
            f"{name + ': ' if name else ''}{err.strerror or err}. Free space or fix the "
            "disk, then restart the broker (the log recovers on open)"
        )
        log.error("%s", self._offline)
        raise LogOfflineError(self._offline) from err

    # --- appending ---------------------------------------------------------------------

    def append(
        self,
        records: bytes | bytearray | memoryview,
        *,
        leader_epoch: int,
        origin: AppendOrigin = AppendOrigin.CLIENT,
    ) -> AppendResult:
        """Leader append: validate, assign offsets from the log end, write.

        Raises CorruptRecordError / UnsupportedMagicError (framing, CRC, empty input),
        InvalidRecordError (count mismatch, client control batch, pid without sequence),
        RecordTooLargeError (batch > max.message.bytes), RecordBatchTooLargeError (batch >
        segment.bytes), OutOfOrderSequenceError / InvalidProducerEpochError (idempotence),
        LogOfflineError. A duplicate of a retained idempotent batch is not written: the
        result carries its original offsets and ``duplicate=True``.
        """
        buf = bytearray(records)
        headers = parse_batches(buf)
        if not headers:
            raise CorruptRecordError(f"append to {self.directory} with an empty record set")
        cfg = self._config
        for h in headers:
            if h.total_size > cfg.max_message_bytes:
                raise RecordTooLargeError(
                    f"batch of {h.total_size} bytes exceeds max.message.bytes "
                    f"{cfg.max_message_bytes} of {self.directory}"
                )
            if h.total_size > cfg.segment_bytes:
                raise RecordBatchTooLargeError(
                    f"batch of {h.total_size} bytes exceeds segment.bytes "
                    f"{cfg.segment_bytes} of {self.directory}"
                )
            if origin is AppendOrigin.CLIENT:
                _validate_client_batch(h)
        if cfg.compacts and origin is AppendOrigin.CLIENT:
            _refuse_keyless(buf, headers, self.directory)
        with self._lock:
            self._check_usable()
            try:
                now = self._now_ms()
                append_time = now if cfg.log_append_time else None
                leo = self._leo
                pending = []
                spans: list[BatchSpan] = []
                offset = leo
                pos = 0
                count = 0
                for h in headers:
                    last = offset + h.last_offset_delta
                    max_ts = h.max_timestamp if append_time is None else append_time
                    marker = parse_marker(h, buf, pos) if h.is_control else None
                    pending.append(PendingBatch(h, offset, max_ts, marker))
                    spans.append((pos, offset, last, max_ts, h.total_size))
                    offset = last + 1
                    pos += h.total_size
                    count += h.records_count
                plan = self.producer_state.prepare(pending, origin)
                duplicate = plan.duplicate
                if duplicate is not None:
                    return AppendResult(
                        duplicate.first_offset,
                        duplicate.last_offset,
                        duplicate.timestamp if append_time is not None else NO_TIMESTAMP,
                        self._log_start,
                        duplicate.last_offset - duplicate.first_offset + 1,
                        duplicate=True,
                    )
                last_offset = assign_offsets(buf, leo, leader_epoch, log_append_time_ms=append_time)
                if leader_epoch >= 0 and leader_epoch != self.leader_epochs.latest_epoch:
                    self.leader_epochs.assign(leader_epoch, leo)
                self._write(buf, spans, now)
                self._index_aborts(self.producer_state.commit(plan))
                self._snapshot_if_due()
                self._after_write(count)
                return AppendResult(
                    leo,
                    last_offset,
                    append_time if append_time is not None else NO_TIMESTAMP,
                    self._log_start,
                    count,
                )
            except OSError as e:
                self._go_offline("append", e)

    def append_as_follower(self, records: bytes | bytearray | memoryview) -> AppendResult:
        """Follower append of batches that already carry the leader's offsets.

        The first batch must start at or after the log end offset (after it when the
        leader's cleaner removed the records in between) and offsets must increase
        (OffsetOutOfSequenceError otherwise). No idempotence or size checks: the leader
        made them.
        """
        headers = parse_batches(records)
        if not headers:
            raise CorruptRecordError(f"append to {self.directory} with an empty record set")
        with self._lock:
            self._check_usable()
            leo = self._leo
            if headers[0].base_offset < leo:
                raise OffsetOutOfSequenceError(
                    f"follower append to {self.directory} starts at offset "
                    f"{headers[0].base_offset} but the log end offset is {leo}"
                )
            spans: list[BatchSpan] = []
            pending: list[PendingBatch] = []
            prev_last = leo - 1
            pos = 0
            count = 0
            for h in headers:
                if h.base_offset <= prev_last:
                    raise OffsetOutOfSequenceError(
                        f"follower append to {self.directory}: batch at offset "
                        f"{h.base_offset} does not follow offset {prev_last}"
                    )
                spans.append((pos, h.base_offset, h.last_offset, h.max_timestamp, h.total_size))
                marker = None
                if h.is_control and h.producer_id >= 0:
                    marker = self._replicated_marker(h, records, pos)
                pending.append(PendingBatch(h, h.base_offset, h.max_timestamp, marker))
                prev_last = h.last_offset
                pos += h.total_size
                count += h.records_count
            try:
                for h in headers:
                    epoch = h.partition_leader_epoch
                    if epoch >= 0 and epoch != self.leader_epochs.latest_epoch:
                        self.leader_epochs.assign(epoch, h.base_offset)
                self._write(records, spans, self._now_ms())
                self._index_aborts(self.producer_state.apply(pending))
                self._snapshot_if_due()
                self._after_write(count)
                return AppendResult(
                    headers[0].base_offset,
                    headers[-1].last_offset,
                    NO_TIMESTAMP,
                    self._log_start,
                    count,
                )
            except OSError as e:
                self._go_offline("follower append", e)

    def _replicated_marker(self, header: BatchHeader, buf: bytes | bytearray | memoryview,
                           pos: int) -> EndTxnMarker | None:
        try:
            return parse_marker(header, buf, pos)
        except (CorruptRecordError, InvalidRecordError) as e:
            log.warning("%s: replicated control batch at offset %d is not a readable "
                        "transaction marker, taken as empty: %s", self.directory,
                        header.base_offset, e)
            return None

    def _write(self, buf: bytes | bytearray | memoryview, spans: list[BatchSpan], now: int) -> None:
        """Write batches to the active segment, rolling (and splitting) as needed."""
        limit = self._config.segment_bytes
        if len(buf) <= limit or len(spans) == 1:
            self._write_group(buf, spans, now)
            return
        # More than a segment's worth (a follower catching up with small segments):
        # write in groups that each fit one segment.
        with memoryview(buf) as view:
            group: list[BatchSpan] = []
            start = 0
            for span in spans:
                rel, base, last, max_ts, size = span
                if group and rel + size - start > limit:
                    self._write_group(view[start:rel], group, now)
                    group, start = [], rel
                group.append((rel - start, base, last, max_ts, size))
            self._write_group(view[start:], group, now)

    def _write_group(
        self, data: bytes | bytearray | memoryview, spans: list[BatchSpan], now: int
    ) -> None:
        seg = self._segments[-1]
        cfg = self._config
        last_offset = spans[-1][2]
        if seg.size and (
            seg.size + len(data) > cfg.segment_bytes
            or (seg.rolling_base_ms is not None and now - seg.rolling_base_ms > cfg.roll_ms)
            or seg.offset_index.is_full
            or seg.time_index.is_full
            or last_offset - seg.base_offset > INT_MAX
        ):
            seg = self._roll(spans[0][1])
        seg.append(data, spans)
        if seg.rolling_base_ms is None:
            seg.rolling_base_ms = now
        self._leo = last_offset + 1

    def _after_write(self, count: int) -> None:
        self._unflushed += count
        if self._unflushed >= self._config.flush_messages:
            self._flush_locked()

    def _roll(self, base_offset: int | None = None) -> LogSegment:
        """Seal the active segment (fsync) and start a new one at ``base_offset``."""
        old = self._segments[-1]
        old.seal()
        base = self._leo if base_offset is None else base_offset
        # Only when the state covers everything written: a write split over segments rolls
        # before its batches are applied; the append takes one at its end instead.
        if self.producer_state.map_end_offset == self._leo:
            self._take_snapshot(base)
        else:
            self._snapshot_due = True
        new = self._new_segment(base)
        self._segments.append(new)
        # Everything before the new segment is on disk now.
        self._unflushed = 0
        self._set_recovery_point(new.base_offset)
        log.info("%s: rolled new segment at offset %d", self.directory, new.base_offset)
        return new

    def roll(self) -> None:
        """Start a new segment now (if the active one holds data)."""
        with self._lock:
            self._check_usable()
            try:
                if self._segments[-1].size:
                    self._roll()
            except OSError as e:
                self._go_offline("roll", e)

    def _set_recovery_point(self, offset: int) -> None:
        if offset != self._recovery_point:
            self._recovery_point = offset
            checkpoint.write_offset(self.directory / RECOVERY_POINT_CHECKPOINT, offset)

    # --- reading -----------------------------------------------------------------------

    def read_committed(self, offset: int, max_bytes: int, *,
                       min_one_batch: bool = True) -> ReadResult:
        """A read_committed Fetch: whole batches below the last stable offset, and in
        ``aborted`` the transactions that aborted within them (the consumer drops their
        records). Raises as ``read``."""
        with self._lock:
            result = self.read(offset, max_bytes, max_offset=self.last_stable_offset,
                               min_one_batch=min_one_batch)
            if not result.records:
                return ReadResult(result.records, result.first_batch_offset,
                                  result.next_offset, ())
            aborted = self.aborted_transactions(offset, result.next_offset)
            return ReadResult(result.records, result.first_batch_offset, result.next_offset,
                              tuple(aborted))

    def read_sendable(self, offset: int, max_bytes: int, *, region_min_bytes: int,
                      max_offset: int | None = None, min_one_batch: bool = True,
                      committed: bool = False) -> SendableRead:
        """``read`` (``committed``: ``read_committed``, ``max_offset`` ignored) for a
        response written to a socket: the same batches, cut at the same bounds, but found
        from the batch headers and the offset index without reading the data, which comes
        as a FileRegion when it is ``region_min_bytes`` or more (storage/file_region.py
        says what keeps its bytes right until it is sent)."""
        with self._lock:
            self._check_usable()
            if offset < self._log_start or offset > self._leo:
                raise self._out_of_range(offset)
            bound = self.last_stable_offset if committed else max_offset
            limit = self._leo if bound is None else min(bound, self._leo)
            aborted: tuple[AbortedTxn, ...] | None = () if committed else None
            empty = SendableRead(b"", -1, offset, aborted)
            if offset >= limit:
                return empty
            try:
                located = self._locate(offset)
                if located is None:
                    return empty
                seg, (pos, first) = located
                end, next_offset = self._cut(seg, pos, max_bytes, limit, min_one_batch)
                if end == pos:
                    return empty
                n = end - pos
                records: bytes | FileRegion
                if n >= region_min_bytes:
                    records = FileRegion(os.dup(seg.fd), pos, n, seg, self._lock)
                else:
                    records = seg.read(pos, n)
                if committed:
                    aborted = tuple(self.aborted_transactions(offset, next_offset))
                return SendableRead(records, first, next_offset, aborted)
            except OSError as e:
                self._go_offline("read", e)
            return empty

    def _locate(self, offset: int) -> tuple[LogSegment, tuple[int, int]] | None:
        """The first batch whose last offset is ``offset`` or more: its segment and its
        (position, base offset) there; None when the log holds no such batch. Under the
        log's lock; raises OSError from the segment files."""
        i = max(self._segment_index(offset), 0)
        while i < len(self._segments):
            seg = self._segments[i]
            found = seg.locate(offset)
            if found is not None:
                return seg, found
            i += 1
        return None

    def _cut(self, seg: LogSegment, pos: int, max_bytes: int, limit: int,
             min_one_batch: bool) -> tuple[int, int]:
        """Where a read of whole batches from ``pos`` ends, as ``_read_from`` cuts it (at
        ``max_bytes`` and below ``limit``; the first batch whole with ``min_one_batch``),
        and the offset after its last batch: (end position, next offset). Walks at most
        about one index interval of headers: the offset index says how far to skip."""
        stop = pos + min(max(max_bytes, 0), seg.size - pos)
        if seg.next_offset <= limit and stop == seg.size:
            return seg.size, seg.next_offset  # the rest of the segment, all readable
        for _, entry_pos in seg.offset_index.floor_entries(stop, limit):
            if entry_pos <= pos:
                break
            end, nxt = self._walk(seg, entry_pos, stop, limit)
            if end > entry_pos:
                return end, nxt
            # Nothing fits past this entry: its predecessor's batches say where the
            # previous batch ends (its last offset is what the answer needs).
        end, nxt = self._walk(seg, pos, stop, limit)
        if end == pos and min_one_batch:
            head = seg.read(pos, HEADER_SIZE)
            base, length = _OFFSET_LENGTH.unpack_from(head, 0)
            last = base + _I32.unpack_from(head, _LAST_DELTA_POS)[0]
            if last < limit:
                return pos + length + LOG_OVERHEAD, last + 1
        return end, nxt

    @staticmethod
    def _walk(seg: LogSegment, start: int, stop: int, limit: int) -> tuple[int, int]:
        """Batch headers from ``start`` while batches end by ``stop`` and stay below
        ``limit``: (end position, offset after the last batch, -1 if none)."""
        pos, nxt = start, -1
        while pos + HEADER_SIZE <= seg.size:
            buf = seg.read(pos, min(LOCATE_CHUNK, seg.size - pos))
            rel, n = 0, len(buf)
            while rel + HEADER_SIZE <= n:
                base, length = _OFFSET_LENGTH.unpack_from(buf, rel)
                last = base + _I32.unpack_from(buf, rel + _LAST_DELTA_POS)[0]
                total = length + LOG_OVERHEAD
                if last >= limit or pos + rel + total > stop or length < MIN_BATCH_LENGTH:
                    return pos + rel, nxt
                rel += total
                nxt = last + 1
            if rel == 0:
                break
            pos += rel  # a batch bigger than the chunk: only its header was read
        return pos, nxt

    def aborted_transactions(self, start_offset: int, upper_bound_offset: int
                             ) -> list[AbortedTxn]:
        """The aborted transactions overlapping [start_offset, upper_bound_offset): their
        marker is at or after the start and they began before the bound (Kafka's
        collectAbortedTransactions). Searched from the segment holding ``start_offset``
        on, stopping at an entry whose LSO reached the bound."""
        with self._lock:
            self._check_usable()
            found: list[AbortedTxn] = []
            for seg in self._segments[max(self._segment_index(start_offset), 0):]:
                txns, complete = seg.txn_index.collect(start_offset, upper_bound_offset)
                found.extend(txns)
                if complete:
                    break
            return found

    def _segment_index(self, offset: int) -> int:
        return bisect.bisect_right(self._segments, offset, key=lambda s: s.base_offset) - 1

    def _out_of_range(self, offset: int) -> OffsetOutOfRangeError:
        return OffsetOutOfRangeError(
            f"offset {offset} is out of range for {self.directory}: log start offset "
            f"{self._log_start}, log end offset {self._leo}"
        )

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        max_offset: int | None = None,
        min_one_batch: bool = True,
    ) -> ReadResult:
        """Whole batches from the one holding ``offset``, up to ``max_bytes``.

        Batches reaching ``max_offset`` (exclusive; the high watermark for consumers, the
        last stable offset for read_committed ones: see ``read_committed``) are left out. With ``min_one_batch`` the first batch is returned even if larger than
        ``max_bytes``. Reads stay within one segment. Raises OffsetOutOfRangeError below
        the log start or above the log end offset.
        """
        with self._lock:
            self._check_usable()
            if offset < self._log_start or offset > self._leo:
                raise self._out_of_range(offset)
            limit = self._leo if max_offset is None else min(max_offset, self._leo)
            empty = ReadResult(b"", -1, offset)
            if offset >= limit:
                return empty
            try:
                located = self._locate(offset)
                if located is not None:
                    seg, (pos, _) = located
                    return self._read_from(seg, pos, offset, max_bytes, limit, min_one_batch)
            except OSError as e:
                self._go_offline("read", e)
            return empty

    def scan(self, chunk_bytes: int = 1 << 20) -> Iterator[ReadResult]:
        """The log from its start to its end as of the call, as reads of whole batches of
        about ``chunk_bytes`` each (a coordinator loading its state from its partition)."""
        offset = self.log_start_offset
        end = self.log_end_offset
        while offset < end:
            result = self.read(offset, chunk_bytes, max_offset=end, min_one_batch=True)
            if not result.records:
                return
            yield result
            offset = result.next_offset

    def _read_from(
        self,
        seg: LogSegment,
        pos: int,
        offset: int,
        max_bytes: int,
        limit: int,
        min_one_batch: bool,
    ) -> ReadResult:
        avail = seg.size - pos
        buf = seg.read(pos, min(max(max_bytes, HEADER_SIZE), avail))
        cap = min(len(buf), max(max_bytes, 0))
        end = 0
        first = -1
        next_offset = -1
        n = len(buf)
        # Walk headers only, to cut at whole batches, at max_bytes and at max_offset.
        while end + HEADER_SIZE <= n:
            base, length = _OFFSET_LENGTH.unpack_from(buf, end)
            last = base + _I32.unpack_from(buf, end + _LAST_DELTA_POS)[0]
            total = length + LOG_OVERHEAD
            if last >= limit or end + total > cap:
                if end == 0 and min_one_batch and last < limit:
                    if total > n:
                        buf = seg.read(pos, total)
                    first, end, next_offset = base, total, last + 1
                break
            if end == 0:
                first = base
            end += total
            next_offset = last + 1
        if end == 0:
            return ReadResult(b"", -1, offset)
        # A view, not a slice: the batches go straight into a response without a copy.
        return ReadResult(buf if end == len(buf) else memoryview(buf)[:end], first, next_offset)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the earliest record with timestamp >= ``timestamp_ms``
        at or above the log start offset, or None."""
        with self._lock:
            self._check_usable()
            try:
                for seg in self._segments:
                    if seg.max_timestamp < timestamp_ms or seg.next_offset <= self._log_start:
                        continue
                    start = max(self._log_start, seg.base_offset)
                    entry = seg.time_index.lookup_before(timestamp_ms)
                    if entry is not None:
                        start = max(start, entry[1] + 1)
                    found = seg.locate(start)
                    if found is None:
                        continue
                    for pos, header in seg.iter_batches(found[0]):
                        if header.max_timestamp < timestamp_ms:
                            continue
                        if header.last_offset < self._log_start:
                            continue
                        for rec in self._decode_at(seg, pos, header):
                            if rec[1] >= timestamp_ms and rec[0] >= self._log_start:
                                return rec
            except OSError as e:
                self._go_offline("timestamp lookup", e)
            return None

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with the largest timestamp
        (ListOffsets MAX_TIMESTAMP, KIP-734), or None for an empty log."""
        with self._lock:
            self._check_usable()
            try:
                best: tuple[LogSegment, int, BatchHeader] | None = None
                best_ts = NO_TIMESTAMP - 1
                for seg in self._segments:
                    if seg.next_offset <= self._log_start or seg.max_timestamp <= best_ts:
                        continue
                    candidate = None
                    if seg.offset_of_max_timestamp >= self._log_start:
                        found = seg.locate(seg.offset_of_max_timestamp)
                        if found is not None:
                            header = next(seg.iter_batches(found[0]))[1]
                            candidate = (found[0], header)
                    else:
                        # The segment's maximum is below the log start: find the largest
                        # timestamp among the batches that remain.
                        found = seg.locate(self._log_start)
                        if found is not None:
                            for pos, header in seg.iter_batches(found[0]):
                                if (
                                    candidate is None
                                    or header.max_timestamp > candidate[1].max_timestamp
                                ):
                                    candidate = (pos, header)
                    if candidate is not None and candidate[1].max_timestamp > best_ts:
                        best = (seg, candidate[0], candidate[1])
                        best_ts = candidate[1].max_timestamp
                if best is None:
                    return None
                seg, pos, header = best
                for offset, ts in self._decode_at(seg, pos, header):
                    if ts == best_ts and offset >= self._log_start:
                        return offset, ts
                return header.last_offset, best_ts
            except OSError as e:
                self._go_offline("timestamp lookup", e)

    def _decode_at(
        self, seg: LogSegment, pos: int, header: BatchHeader
    ) -> Iterator[tuple[int, int]]:
        data = seg.read(pos, header.total_size)
        for rec in decode_records(header, data):
            yield rec.offset, rec.timestamp

    # --- retention and truncation ------------------------------------------------------

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete segments past retention.ms / retention.bytes or wholly below the log
        start offset; returns how many were deleted.

        Only segments entirely below the high watermark are deleted. An expired active
        segment is rolled first, as Kafka does, so the log always keeps one segment.
        """
        with self._lock:
            self._check_usable()
            now = self._now_ms() if now_ms is None else now_ms
            cfg = self._config
            deleted = 0
            try:
                if cfg.deletes_by_retention and cfg.retention_ms >= 0:
                    deleted += self._delete_old_segments(
                        retention.older_than(now, cfg.retention_ms), "retention.ms")
                if cfg.deletes_by_retention and cfg.retention_bytes >= 0:
                    deleted += self._delete_old_segments(
                        retention.beyond_size(self.size_bytes, cfg.retention_bytes),
                        "retention.bytes")
                deleted += self._delete_old_segments(
                    retention.below_log_start(self._log_start), "log start offset")
            except OSError as e:
                self._go_offline("retention", e)
            return deleted

    def _delete_old_segments(self, rule: retention.Rule, reason: str) -> int:
        count = retention.deletable_prefix(self._segments, self._hw, self._leo, rule)
        if not count:
            return 0
        deletable = self._segments[:count]
        if count == len(self._segments):
            self._roll()
        for seg in deletable:
            log.info("%s: deleting segment %d (%s)", self.directory, seg.base_offset, reason)
            self._segments.remove(seg)
            seg.delete()
        if self._segments[0].base_offset > self._log_start:
            self._set_log_start(self._segments[0].base_offset)
        else:
            self._prune_snapshots()  # those of the deleted segments
        return count

    def _set_log_start(self, offset: int) -> None:
        checkpoint.write_offset(self.directory / LOG_START_CHECKPOINT, offset)
        self._log_start = offset
        self._hw = max(self._hw, offset)
        self.producer_state.on_high_watermark(self._hw)
        self.leader_epochs.truncate_from_start(offset)
        if not self._forget_below_log_start():
            self._prune_snapshots()

    def delete_records(self, before_offset: int) -> int:
        """DeleteRecords: move the log start offset up to ``before_offset`` (-1: the high
        watermark) and delete segments wholly below it. Returns the new log start offset.

        Raises OffsetOutOfRangeError above the high watermark.
        """
        with self._lock:
            self._check_usable()
            target = self._hw if before_offset == -1 else before_offset
            if target < 0 or target > self._hw:
                raise OffsetOutOfRangeError(
                    f"cannot delete records before offset {before_offset} in "
                    f"{self.directory}: it is above the high watermark {self._hw}"
                )
            try:
                if target > self._log_start:
                    self._set_log_start(target)
                    self._delete_old_segments(
                        lambda _seg, nxt: nxt is not None and nxt.base_offset <= self._log_start,
                        "delete records",
                    )
            except OSError as e:
                self._go_offline("delete records", e)
            return self._log_start

    def truncate_to(self, offset: int) -> bool:
        """Follower truncation: remove every batch holding an offset >= ``offset``.

        Batches are removed whole, so the new log end offset is the base of the batch
        holding ``offset`` if it falls mid-batch. Below the log start offset this is
        ``truncate_fully_and_start_at(offset)``. Returns whether anything changed.
        """
        with self._lock:
            self._check_usable()
            if offset < 0:
                raise OffsetOutOfRangeError(f"cannot truncate {self.directory} to {offset}")
            if offset >= self._leo:
                # No record to drop, but an epoch that starts here and holds none must go:
                # a follower reporting it as its last epoch would diverge forever.
                self.leader_epochs.truncate_from_end(offset)
                return False
            try:
                if offset < self._log_start:
                    self._truncate_fully(offset)
                    return True
                while len(self._segments) > 1 and self._segments[-1].base_offset > offset:
                    self._segments.pop().delete()
                active = self._segments[-1]
                active.truncate_to(offset)
                if active.next_offset < self._log_start:
                    # The batch holding ``offset`` began below the log start: nothing
                    # readable is left, so continue empty at the log start.
                    self._truncate_fully(self._log_start)
                    return True
                self._leo = active.next_offset
                if active.size and active.rolling_base_ms is None:
                    # An old segment became active again; its age counts from its data.
                    first_ts = active.first_batch_max_timestamp()
                    active.rolling_base_ms = min(first_ts or 0, self._now_ms())
                self._hw = min(self._hw, self._leo)
                if self._recovery_point > self._leo:
                    self._set_recovery_point(self._leo)
                if self._cleaner_point > self._leo:
                    self._set_cleaner_point(self._leo)
                self.leader_epochs.truncate_from_end(self._leo)
                # Snapshots above the new end describe batches about to be replaced; their
                # deletion (and any earlier one) must be durable before those are written.
                for gone in [o for o in self._snapshots if o > self._leo]:
                    self._drop_snapshot(gone)
                checkpoint.fsync_dir(self.directory)
                self._rebuild_producer_state()
            except OSError as e:
                self._go_offline("truncate", e)
            return True

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Drop the whole log; it continues empty at ``offset`` (also the new log start)."""
        with self._lock:
            self._check_usable()
            if offset < 0:
                raise OffsetOutOfRangeError(f"cannot restart {self.directory} at {offset}")
            try:
                self._truncate_fully(offset)
            except OSError as e:
                self._go_offline("truncate", e)

    def _truncate_fully(self, offset: int) -> None:
        # Log start first: a crash midway then reopens as "start beyond end" and finishes.
        checkpoint.write_offset(self.directory / LOG_START_CHECKPOINT, offset)
        for seg in self._segments:
            seg.delete()
        for snap in producer_snapshot.list_offsets(self.directory):
            self._snapshot_path(snap).unlink(missing_ok=True)
        self._snapshots = []
        self._forgetting = set()
        self._snapshot_due = False
        self._segments = [self._new_segment(offset)]
        self._log_start = self._leo = self._hw = offset
        self._set_recovery_point(offset)
        self._set_cleaner_point(offset)
        self.leader_epochs.clear()
        self.producer_state.clear(offset)
        self._unflushed = 0

    # --- compaction (the cleaner, storage/cleaner.py, drives these) ---------------------

    @property
    def cleaner_point(self) -> int:
        """Compacted logs: every record below this offset has been cleaned."""
        return max(self._cleaner_point, self._log_start)

    def _set_cleaner_point(self, offset: int) -> None:
        if offset != self._cleaner_point:
            self._cleaner_point = offset
            checkpoint.write_offset(self.directory / CLEANER_CHECKPOINT, offset)

    def dirtiness(self, now_ms: int | None = None) -> compaction.Dirtiness:
        """How much of the log the cleaner could clean now, and how dirty it is."""
        with self._lock:
            self._check_usable()
            cfg = self._config
            # Nothing at or above the last stable offset is cleaned: an open transaction's
            # records may yet abort, and the cleaner removes aborted records.
            return compaction.dirtiness(
                self._segments, cleaner_point=self._cleaner_point, log_start=self._log_start,
                high_watermark=self.last_stable_offset,
                now_ms=self._now_ms() if now_ms is None else now_ms,
                min_compaction_lag_ms=cfg.min_compaction_lag_ms,
                max_compaction_lag_ms=cfg.max_compaction_lag_ms,
            )

    def prepare_clean(self, *, now_ms: int, map_capacity: int, io_bytes_per_second: float,
                      horizon_only: bool = False) -> CleanTicket | None:
        """A cleaning job over the sealed segments up to the dirty section's end, or None
        when there is nothing dirty to clean. ``horizon_only``: nothing new is dirty but
        tombstones' delete horizons passed, so the clean part is rewritten without them."""
        with self._lock:
            self._check_usable()
            cfg = self._config
            dirt = self.dirtiness(now_ms)
            end = dirt.first_dirty if horizon_only else dirt.first_uncleanable
            if not horizon_only and dirt.first_uncleanable <= dirt.first_dirty:
                return None
            chosen = [s for s in self._segments[:-1] if s.base_offset < end]
            if not chosen:
                return None
            shapes = [compaction.SegmentShape(s.base_offset, s.next_offset, s.size,
                                              len(s.offset_index), len(s.time_index))
                      for s in chosen]
            by_base = {s.base_offset: s for s in chosen}
            index_entries = chosen[0].offset_index.max_entries if chosen else 1
            time_entries = chosen[0].time_index.max_entries if chosen else 1
            groups = compaction.group_segments(
                shapes, max_bytes=cfg.segment_bytes, max_index_entries=index_entries,
                max_time_entries=time_entries)
            job = cleaning.CleanJob(
                directory=str(self.directory),
                groups=tuple(
                    tuple(cleaning.SegmentRef(g.base_offset, g.next_offset, g.size,
                                              str(by_base[g.base_offset].log_path))
                          for g in group)
                    for group in groups),
                first_dirty=dirt.first_dirty,
                first_uncleanable=dirt.first_uncleanable,
                now_ms=now_ms,
                delete_retention_ms=cfg.delete_retention_ms,
                index_interval_bytes=cfg.index_interval_bytes,
                segment_index_bytes=cfg.segment_index_bytes,
                map_capacity=map_capacity,
                producer_last_offsets=frozenset(
                    # Kafka's rule: the last data batch holds the sequence to continue from;
                    # a producer with none keeps its last marker, which holds its epoch.
                    e.last_data_offset if e.batches else e.last_offset
                    for e in self.producer_state.producers.values()),
                io_bytes_per_second=io_bytes_per_second,
                aborted_txns=tuple(
                    txn for seg in self._segments for txn in seg.txn_index.entries
                    if txn.first_offset < chosen[-1].next_offset),
            )
            return CleanTicket(job, tuple((s, s.size, s.rewrites) for s in chosen))

    def swap_cleaned(self, ticket: CleanTicket, result: cleaning.CleanResult) -> int:
        """Put the cleaned copies in place of the segments they were made from; returns how
        many groups were swapped.

        A group whose segments changed since the job was made (deleted by retention, cut by
        truncation) is discarded, and so is everything after it: the offset map may have
        counted records that are gone. Each swap is crash-safe: once the copy is renamed to
        ``<base>.<end>.swap`` (fsynced) recovery finishes it; before that it is discarded.
        """
        with self._lock:
            d = self.directory
            try:
                if self.offline:
                    return 0
                live = {id(seg): (size, rewrites) for seg, size, rewrites in ticket.segments}
                by_base = {seg.base_offset: seg for seg, _, _ in ticket.segments}
                valid: list[tuple[cleaning.CleanedGroup, list[LogSegment]]] = []
                for group in result.groups:
                    olds = [by_base[b] for b in group.replaced]
                    try:
                        first = self._segments.index(olds[0])
                    except ValueError:
                        break
                    if (self._segments[first:first + len(olds)] != olds
                            or first + len(olds) >= len(self._segments)
                            or any((s.size, s.rewrites) != live[id(s)] for s in olds)):
                        break
                    valid.append((group, olds))
                if valid:
                    self._swap_groups(valid)
                if len(valid) == len(result.groups):
                    self._set_cleaner_point(max(result.end_offset, self._cleaner_point))
                    self.min_delete_horizon = result.min_delete_horizon
                return len(valid)
            except OSError as e:
                self._go_offline("swap of cleaned segments", e)
            finally:
                cleaning.discard_cleaned(d)

    def _swap_groups(self, groups: list[tuple[cleaning.CleanedGroup, list[LogSegment]]]
                     ) -> None:
        """Swap every group in, with two directory fsyncs in all: one makes the ``.swap``
        names durable (from then on recovery completes the swaps), one the final names."""
        d = self.directory
        # A snapshot inside the cleaned range may hold a transaction open whose marker the
        # cleaning removes (with the last of its records): replaying from it would never
        # close it. They go before the swap can be completed by recovery (same fsync).
        cleaned_end = max(group.end_offset for group, _ in groups)
        for offset in [o for o in self._snapshots if o < cleaned_end]:
            self._drop_snapshot(offset)
        for group, _ in groups:
            os.rename(d / (segment_file_name(group.base_offset, LOG_SUFFIX) + CLEANED_SUFFIX),
                      d / f"{group.base_offset:020d}.{group.end_offset:020d}{SWAP_SUFFIX}")
        checkpoint.fsync_dir(d)
        for group, olds in groups:
            base = group.base_offset
            for seg in olds:
                seg.delete()
            for suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX, TXNINDEX_SUFFIX):
                os.rename(d / (segment_file_name(base, suffix) + CLEANED_SUFFIX),
                          d / segment_file_name(base, suffix))
            os.rename(d / f"{base:020d}.{group.end_offset:020d}{SWAP_SUFFIX}",
                      d / segment_file_name(base, LOG_SUFFIX))
        checkpoint.fsync_dir(d)
        for group, olds in groups:
            first = self._segments.index(olds[0])
            after = self._segments[first + len(olds)]
            seg, _ = LogSegment.open(
                d, group.base_offset, index_interval_bytes=self._config.index_interval_bytes,
                segment_index_bytes=self._config.segment_index_bytes,
                offset_limit=after.base_offset)
            self._segments[first:first + len(olds)] = [seg]

    # --- flushing and lifecycle -------------------------------------------------------

    def flush(self) -> None:
        """fsync the segment data and indexes, then the checkpoints."""
        with self._lock:
            self._check_usable()
            try:
                self._flush_locked()
            except OSError as e:
                self._go_offline("flush", e)

    def _flush_locked(self) -> None:
        # The epochs of the data about to be durable are durable first.
        self.leader_epochs.sync()
        if not self._dirs_synced:  # a new log's first flush: its entries in both directories
            checkpoint.fsync_dir(self.directory)
            checkpoint.fsync_dir(self.directory.parent)
            self._dirs_synced = True
        for seg in self._segments:
            seg.flush()
        self._set_recovery_point(self._leo)
        self._checkpoint_hw()
        self._prune_snapshots()
        self._unflushed = 0
        self._last_flush_ms = self._now_ms()

    def maybe_flush(self, now_ms: int | None = None) -> bool:
        """Flush if flush.ms has passed since the last flush and data is pending."""
        with self._lock:
            self._check_usable()
            now = self._now_ms() if now_ms is None else now_ms
            if self._unflushed and now - self._last_flush_ms >= self._config.flush_ms:
                try:
                    self._flush_locked()
                except OSError as e:
                    self._go_offline("flush", e)
                return True
            return False

    def checkpoint_high_watermark(self) -> None:
        """Persist the high watermark if it changed (cheap to call periodically)."""
        with self._lock:
            self._check_usable()
            try:
                self._checkpoint_hw()
            except OSError as e:
                self._go_offline("high watermark checkpoint", e)

    def _checkpoint_hw(self) -> None:
        if self._hw != self._hw_checkpointed:
            checkpoint.write_offset(self.directory / HIGH_WATERMARK_CHECKPOINT, self._hw)
            self._hw_checkpointed = self._hw

    def close(self) -> None:
        """Flush everything, close the files and mark the shutdown clean.

        On an offline log the files are released and LogOfflineError raised: no clean
        marker is written, so the next open recovers.
        """
        with self._lock:
            if self._closed:
                return
            if self._offline is not None:
                self._release()
                raise LogOfflineError(self._offline)
            try:
                self._segments[-1].seal()
                self._flush_locked()
                if not self._snapshots or self._snapshots[-1] != self._leo:
                    # A snapshot at the end already holds this state: only appends change
                    # producers without a new snapshot, and they move the end.
                    self._take_snapshot(self._leo)
                self._release()
                checkpoint.write_atomic(self.directory / CLEAN_SHUTDOWN_FILE, b"")
            except OSError as e:
                self._release()
                self._go_offline("close", e)

    def _release(self) -> None:
        for seg in self._segments:
            seg.close()
        self._closed = True

    def close_for_delete(self) -> None:
        """Close the files of a log about to be removed (no flush, no clean marker): the
        caller renames the directory away and removes it."""
        with self._lock:
            self._release()

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.directory}, start={self._log_start}, end={self._leo}, "
            f"hw={self._hw}, segments={len(self._segments)})"
        )


def _refuse_keyless(buf: bytearray, headers: list[BatchHeader], directory: Path) -> None:
    """A compacted log keeps the latest record per key, so a record without one could never
    be kept; Kafka refuses it at produce time (INVALID_RECORD)."""
    pos = 0
    for h in headers:
        with memoryview(buf)[pos:pos + h.total_size] as raw:
            if compaction.keyless_records(h, raw):
                raise InvalidRecordError(
                    f"compacted topic cannot accept a record without a key ({directory.name}); "
                    "give every record a key, or set cleanup.policy=delete")
        pos += h.total_size


def _validate_client_batch(h: BatchHeader) -> None:
    if h.records_count <= 0:
        raise InvalidRecordError(f"batch at offset {h.base_offset} has no records")
    if h.last_offset_delta + 1 != h.records_count:
        raise InvalidRecordError(
            f"batch declares {h.records_count} records but spans {h.last_offset_delta + 1} offsets"
        )
    if h.is_control:
        raise InvalidRecordError("clients may not write control batches")
    if h.producer_id >= 0 and h.base_sequence < 0:
        raise InvalidRecordError(
            f"idempotent batch of producer {h.producer_id} has no sequence number"
        )

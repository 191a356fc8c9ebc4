"""Opening a partition log's directory after a stop or a crash: the steps that read what is
on disk and repair what a crash left half-done. storage/log.py (PartitionLog.open) puts them
together; each step here works on the directory and the segments it is given.

- Leftovers of interrupted deletes, checkpoint writes and cleanings are removed, and index
  files without their log; a cleaned segment that was already named ``.swap`` replaces the
  segments it was made from (the swap is finished).
- Segments after the recovery point (all of them after an unclean stop) are scanned, CRC by
  CRC; a torn tail is cut off, and segments after a cut are deleted: a log cut short cannot
  continue in a later segment.
- The leader-epoch cache is rebuilt from the batch headers when its checkpoint is lost or
  damaged. Producer state and the transaction indexes of recovered segments are rebuilt by
  the log from a producer-state snapshot and the batches after it (storage/log.py).
- Index files without their log are removed, the ``.txnindex`` of a segment included.
"""

from __future__ import annotations

import logging
from pathlib import Path

from odradek.storage import checkpoint
from odradek.storage.batch import BatchHeader
from odradek.storage.config import LogConfig
from odradek.storage.epochs import EpochEntry
from odradek.storage.errors import CheckpointCorruptError, CorruptRecordError
from odradek.storage.segment import (
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    LOG_SUFFIX,
    SEGMENT_SUFFIXES,
    SWAP_SUFFIX,
    LogSegment,
    delete_segment_files,
    parse_segment_file_name,
    segment_file_name,
)

log = logging.getLogger("odradek.storage.log")


def clean_directory(directory: Path) -> list[int]:
    """Remove leftovers of interrupted deletes, checkpoint writes and cleanings, finish
    interrupted swaps of cleaned segments; return the base offsets of the segments present."""
    logs: set[int] = set()
    others: list[tuple[int, Path]] = []
    swaps: list[tuple[int, int, Path]] = []
    for path in directory.iterdir():
        name = path.name
        if (name.endswith(DELETED_SUFFIX) or name.endswith(checkpoint.TMP_SUFFIX)
                or name.endswith(CLEANED_SUFFIX)):
            path.unlink(missing_ok=True)
            continue
        parsed = parse_segment_file_name(name)
        if parsed is None:
            continue
        base, suffix = parsed
        if suffix == LOG_SUFFIX:
            logs.add(base)
        elif suffix in SEGMENT_SUFFIXES:
            others.append((base, path))
        elif suffix.endswith(SWAP_SUFFIX):
            end_text = suffix[1:-len(SWAP_SUFFIX)]
            if len(end_text) == 20 and end_text.isdigit():
                swaps.append((base, int(end_text), path))
    for base, end, path in sorted(swaps):
        # The cleaner's copy was complete and fsynced before it was named .swap: it replaces
        # every segment starting in [base, end). Its indexes are rebuilt on open.
        log.warning("%s: completing the interrupted swap of cleaned segment %d", directory, base)
        for old in sorted(b for b in logs | {b for b, _ in others} if base <= b < end):
            delete_segment_files(directory, old)
            logs.discard(old)
        others = [(b, p) for b, p in others if not base <= b < end]
        path.rename(directory / segment_file_name(base, LOG_SUFFIX))
        logs.add(base)
    if swaps:
        checkpoint.fsync_dir(directory)
    for base, path in others:
        if base not in logs:
            path.unlink(missing_ok=True)  # index of a segment whose log is gone
    return sorted(logs)


def read_checkpoint(directory: Path, name: str) -> int | None:
    """An offset checkpoint, or None when it is missing or damaged (logged)."""
    try:
        return checkpoint.read_offset(directory / name)
    except CheckpointCorruptError as e:
        log.warning("%s: ignoring %s", directory, e)
        return None


def open_segments(directory: Path, config: LogConfig, bases: list[int],
                  recovery_point: int | None) -> list[LogSegment]:
    """Open the segments at ``bases``; those reaching past ``recovery_point`` are scanned
    and repaired (None: a clean stop, nothing to recover). Segments after one whose tail
    had to be cut are deleted."""
    segments: list[LogSegment] = []
    try:
        for i, base in enumerate(bases):
            limit = bases[i + 1] if i + 1 < len(bases) else None
            needs_recovery = recovery_point is not None and (
                limit is None or limit > recovery_point)
            seg, truncated = LogSegment.open(
                directory, base,
                index_interval_bytes=config.index_interval_bytes,
                segment_index_bytes=config.segment_index_bytes,
                offset_limit=limit,
                recover=needs_recovery,
                # A clean last segment still gets its tail CRC-checked: it is cheap and
                # catches damage done while the broker was down.
                verify_tail=limit is None,
            )
            segments.append(seg)
            if truncated:
                log.warning("%s: recovery truncated %d bytes of %s", directory, truncated,
                            seg.log_path)
                if limit is not None:
                    for later in bases[i + 1:]:
                        log.warning("%s: deleting segment %d after the corruption",
                                    directory, later)
                        delete_segment_files(directory, later)
                    break
    except BaseException:
        for seg in segments:
            seg.close()
        raise
    return segments


def batch_headers(directory: Path, segments: list[LogSegment]) -> list[list[BatchHeader]]:
    """The batch headers of each segment. Damage inside an old segment of a cleanly closed
    log keeps what precedes it; reading there fails later, as it would in Kafka."""
    out = []
    for seg in segments:
        headers: list[BatchHeader] = []
        try:
            headers.extend(h for _, h in seg.iter_batches())
        except CorruptRecordError as e:
            log.error("%s: %s", directory, e)
        out.append(headers)
    return out


def epochs_from_headers(headers: list[list[BatchHeader]]) -> list[EpochEntry]:
    """The leader-epoch cache as the batches say it: where each epoch's first batch is."""
    entries: list[EpochEntry] = []
    for segment_headers in headers:
        for h in segment_headers:
            epoch = h.partition_leader_epoch
            if epoch >= 0 and (not entries or epoch > entries[-1].epoch):
                entries.append(EpochEntry(epoch, h.base_offset))
    return entries

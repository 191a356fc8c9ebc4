"""Leader epoch cache: which leader epoch started at which offset (KIP-101/279).

Followers use it (through OffsetForLeaderEpoch / the fetch diverging-epoch field) to find
where their log diverged from the leader's. Persisted in ``leader-epoch-checkpoint`` in
Kafka's text format (version, count, then ``epoch start_offset`` lines), replaced
atomically on every change; changes are rare (one per leadership change), but a broker
taking over thousands of leaderships makes thousands at once.

The file is replaced without fsync (``sync()`` makes it durable; the log calls it on every
flush and on close). A process crash still finds the latest content. After a machine crash
the file may be older than the log, or empty: an unclean open merges the epochs the batch
headers name into it (PartitionLog._load), as Kafka's segment recovery assigns the epochs of
the batches it recovers, and an unreadable file is rebuilt from the headers. The only
entries that cannot be recovered so are epochs that wrote no batch, and those change no
OffsetForLeaderEpoch answer (the previous epoch ends where the next data starts either way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from odradek.storage import checkpoint
from odradek.storage.errors import CheckpointCorruptError

log = logging.getLogger("odradek.storage")

CHECKPOINT_NAME = "leader-epoch-checkpoint"
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


@dataclass(frozen=True, slots=True)
class EpochEntry:
    epoch: int
    start_offset: int


class LeaderEpochCache:
    def __init__(
        self,
        path: Path | None,
        entries: Iterable[EpochEntry] = (),
        *,
        log_end_offset: Callable[[], int] | None = None,
    ) -> None:
        """``path`` None keeps the cache in memory only; ``log_end_offset`` is the end
        offset of the latest epoch when ``end_offset_for`` is not given one."""
        self.path = path
        self._entries: list[EpochEntry] = list(entries)
        self._log_end_offset = log_end_offset
        # The file was replaced since its last fsync.
        self._unsynced = False

    @classmethod
    def load(
        cls, path: Path, *, log_end_offset: Callable[[], int] | None = None
    ) -> LeaderEpochCache:
        """Read the checkpoint (a missing file is an empty cache).

        Raises CheckpointCorruptError if the file is unparsable or not monotonic.
        """
        lines = checkpoint.read_lines(path)
        entries: list[EpochEntry] = []
        if lines is not None:
            try:
                count = int(lines[0])
                for line in lines[1:]:
                    epoch, start = line.split()
                    entries.append(EpochEntry(int(epoch), int(start)))
            except (ValueError, IndexError) as e:
                raise CheckpointCorruptError(f"{path} is malformed: {e}") from e
            if count != len(entries):
                raise CheckpointCorruptError(
                    f"{path} announces {count} entries but holds {len(entries)}"
                )
            for a, b in zip(entries, entries[1:], strict=False):
                if not (a.epoch < b.epoch and a.start_offset <= b.start_offset):
                    raise CheckpointCorruptError(f"{path} entries are not monotonic: {a}, {b}")
        return cls(path, entries, log_end_offset=log_end_offset)

    # --- queries -----------------------------------------------------------------------

    @property
    def entries(self) -> tuple[EpochEntry, ...]:
        return tuple(self._entries)

    @property
    def latest_epoch(self) -> int:
        """The latest epoch, or -1 if the cache is empty."""
        return self._entries[-1].epoch if self._entries else UNDEFINED_EPOCH

    @property
    def latest_entry(self) -> EpochEntry | None:
        return self._entries[-1] if self._entries else None

    def end_offset_for(
        self, requested_epoch: int, log_end_offset: int | None = None
    ) -> tuple[int, int]:
        """(epoch, end offset) per Kafka's OffsetForLeaderEpoch.

        * the latest epoch ends at the log end offset;
        * an older or unknown epoch: the largest known epoch <= requested, ending where
          the next larger epoch starts; if no known epoch is <= requested, the requested
          epoch itself with the first entry's start offset;
        * an epoch larger than the latest, -1, or an empty cache: (-1, -1).
        """
        if requested_epoch == UNDEFINED_EPOCH or not self._entries:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested_epoch == self._entries[-1].epoch:
            if log_end_offset is None:
                if self._log_end_offset is None:
                    raise ValueError("end_offset_for the latest epoch needs the log end offset")
                log_end_offset = self._log_end_offset()
            return requested_epoch, log_end_offset
        floor: EpochEntry | None = None
        for entry in self._entries:
            if entry.epoch > requested_epoch:
                if floor is None:
                    return requested_epoch, entry.start_offset
                return floor.epoch, entry.start_offset
            floor = entry
        # Larger than every known epoch; Kafka answers undefined here too.
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET

    def epoch_for_offset(self, offset: int) -> int:
        """The epoch the record at ``offset`` was written in (-1 if unknown)."""
        epoch = UNDEFINED_EPOCH
        for entry in self._entries:
            if entry.start_offset > offset:
                break
            epoch = entry.epoch
        return epoch

    # --- updates -----------------------------------------------------------------------

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; returns whether it changed.

        Re-assigning the latest epoch at a later offset is a no-op. Entries that would
        break monotonicity (epoch or start offset >= the new one) are dropped first, as
        Kafka does when a stale leader's entries are superseded.
        """
        if not self._assign_entry(EpochEntry(epoch, start_offset)):
            return False
        self.flush()
        return True

    def _assign_entry(self, new: EpochEntry) -> bool:
        epoch, start_offset = new.epoch, new.start_offset
        if epoch < 0 or start_offset < 0:
            return False
        latest = self.latest_entry
        if latest is not None and latest.epoch == epoch and latest.start_offset <= start_offset:
            return False
        removed = []
        while self._entries and (
            self._entries[-1].epoch >= epoch or self._entries[-1].start_offset >= start_offset
        ):
            removed.append(self._entries.pop())
        # An earlier epoch starting at the same offset held no record (a leadership that
        # wrote nothing, common around restarts and controlled shutdowns): replacing it is
        # routine. Anything else dropped here is a stale leader's history: worth a warning.
        routine = all(e.epoch < epoch and e.start_offset == start_offset for e in removed)
        if removed:
            (log.debug if routine else log.warning)(
                "%s: new entry %s truncates non-monotonic entries %s", self.path, new, removed
            )
        self._entries.append(new)
        return True

    def truncate_from_end(self, end_offset: int) -> None:
        """Drop entries starting at or after ``end_offset`` (log truncated to it)."""
        if end_offset < 0:
            return
        keep = len(self._entries)
        while keep and self._entries[keep - 1].start_offset >= end_offset:
            keep -= 1
        if keep != len(self._entries):
            del self._entries[keep:]
            self.flush()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at ``start_offset``: the epoch covering it starts there."""
        if start_offset < 0:
            return
        covering = [e for e in self._entries if e.start_offset <= start_offset]
        if not covering or (len(covering) == 1 and covering[0].start_offset == start_offset):
            return
        rest = self._entries[len(covering) :]
        self._entries = [EpochEntry(covering[-1].epoch, start_offset), *rest]
        self.flush()

    def clear(self) -> None:
        if self._entries:
            self._entries = []
            self.flush()

    def replace(self, entries: Iterable[EpochEntry]) -> None:
        self._entries = list(entries)
        self.flush()

    def merge_from_headers(self, found: Iterable[EpochEntry]) -> None:
        """After an unclean shutdown: take the epochs of recovered batches that are newer
        than the file's latest (a machine crash can lose the file's last replacements)."""
        changed = False
        for entry in found:
            if entry.epoch > self.latest_epoch:
                changed |= self._assign_entry(entry)
        if changed:
            self.flush()

    def flush(self) -> None:
        """Replace the file (not yet durable: see the module's docstring)."""
        if self.path is None:
            return
        lines = [str(len(self._entries))]
        lines += [f"{e.epoch} {e.start_offset}" for e in self._entries]
        checkpoint.write_lines(self.path, lines, sync=False)
        self._unsynced = True

    def sync(self) -> None:
        """Make the latest replacement durable (file and directory entry)."""
        if self.path is None or not self._unsynced:
            return
        checkpoint.fsync_file(self.path)
        checkpoint.fsync_dir(self.path.parent)
        self._unsynced = False

    def __repr__(self) -> str:
        return f"LeaderEpochCache({self._entries!r})"

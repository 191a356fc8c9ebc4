"""In-memory view of the Raft log: snapshot + retained entries, split at the persisted mark.

The controller's metadata log is small and compacted by snapshots, so the core keeps every
retained entry in memory and storage is only written through ``Ready``. ``stable`` is the
highest index the driver has confirmed durable; entries above it are "unstable" and are handed
out again by each ``Ready`` until ``advance`` confirms them.
"""

from __future__ import annotations

from collections.abc import Sequence

from odradek.controller.raft.messages import Entry, EntryKind, Snapshot


class LogSafetyError(AssertionError):
    """The log was asked to rewrite a committed entry: a bug or corrupted storage."""


class RaftLog:
    def __init__(
        self,
        snapshot: Snapshot | None,
        entries: Sequence[Entry],
        committed: int,
    ) -> None:
        self.snapshot = snapshot
        self.snapshot_index = snapshot.meta.index if snapshot else 0
        self.snapshot_term = snapshot.meta.term if snapshot else 0
        # Raft's own rule for installing snapshots also governs recovery: entries the
        # snapshot covers are dropped; the rest must continue it without a gap.
        kept = [e for e in entries if e.index > self.snapshot_index]
        for offset, e in enumerate(kept):
            if e.index != self.snapshot_index + 1 + offset:
                raise ValueError(
                    f"log is not contiguous after snapshot {self.snapshot_index}: "
                    f"entry {offset} has index {e.index}"
                )
        self.entries: list[Entry] = kept
        # Indexes of the retained CONFIG entries, ascending: the voter set is looked up on
        # every append, so it must not cost a scan of the log.
        self.config_indexes: list[int] = [e.index for e in kept if e.kind is EntryKind.CONFIG]
        self.stable = self.last_index
        committed = max(committed, self.snapshot_index)
        if committed > self.last_index:
            raise ValueError(
                f"hard state commit {committed} is beyond the last log index {self.last_index}: "
                "the log was truncated or lost after it was acknowledged; restore this node's "
                "data directory from a backup or wipe it so it rejoins from a snapshot"
            )
        self.committed = committed
        # The state machine is rebuilt from the snapshot, then committed entries are replayed.
        self.applied = self.snapshot_index
        # A snapshot not yet confirmed durable by advance().
        self.pending_snapshot: Snapshot | None = None

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away or not yet written."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index:
            return None
        return self.entries[index - self.snapshot_index - 1].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi; lo must not be compacted."""
        if lo <= self.snapshot_index:
            raise IndexError(f"entry {lo} is compacted (snapshot at {self.snapshot_index})")
        base = self.snapshot_index + 1
        return self.entries[lo - base : hi - base]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction (section 5.4.1)."""
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, term(i)) with i <= index and term(i) <= term.

        Every entry above it either is missing or carries a term the other side cannot have at
        that position, so replication can resume right after it.
        """
        while index > 0:
            t = self.term(index)
            if t is None:
                # Compacted: we can say nothing below here; the caller falls back to a snapshot.
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    def maybe_append(self, prev_index: int, prev_term: int, entries: Sequence[Entry]) -> int | None:
        """Follower side of AppendEntries. Returns the last index known to match, or None."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        for e in entries:
            if not self.match_term(e.index, e.term):
                # Only truncate on a real conflict: a stale, reordered AppendEntries must not
                # cut off entries that a later one already added.
                self.append(entries[e.index - prev_index - 1 :])
                break
        return last_new

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        if first <= self.committed:
            raise LogSafetyError(
                f"refusing to overwrite committed entry {first} (committed={self.committed})"
            )
        if first > self.last_index + 1:
            raise ValueError(f"gap: appending {first} after last index {self.last_index}")
        del self.entries[first - self.snapshot_index - 1 :]
        self.entries.extend(entries)
        # A truncated CONFIG entry is forgotten here, which reverts the voter set.
        while self.config_indexes and self.config_indexes[-1] >= first:
            self.config_indexes.pop()
        self.config_indexes.extend(e.index for e in entries if e.kind is EntryKind.CONFIG)
        # Whatever was persisted at or above the conflict point is now garbage on disk.
        self.stable = min(self.stable, first - 1)

    def config_at(self, index: int) -> bytes:
        """Payload of the latest CONFIG entry at or below ``index`` (falling back to the
        snapshot's); b"" if there is none."""
        for i in reversed(self.config_indexes):
            if i <= index:
                return self.entry(i).data
        return self.snapshot.meta.config if self.snapshot is not None else b""

    def latest_config_index(self) -> int:
        """Index of the latest CONFIG entry still in the log (0: only the snapshot's, if any)."""
        return self.config_indexes[-1] if self.config_indexes else 0

    def unstable_entries(self) -> list[Entry]:
        return self.entries[self.stable - self.snapshot_index :]

    def stable_to(self, index: int, term: int) -> None:
        # The term check ignores acknowledgements for entries that were replaced after the
        # Ready carrying them was produced.
        if index > self.stable and self.match_term(index, term):
            self.stable = index

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index:
                raise LogSafetyError(f"commit {index} is beyond the last index {self.last_index}")
            self.committed = index

    def applied_to(self, index: int) -> None:
        self.applied = max(self.applied, index)

    def next_committed_entries(self) -> list[Entry]:
        lo = max(self.applied, self.snapshot_index) + 1
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1)

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        self.snapshot = snapshot
        self.snapshot_index = snapshot.meta.index
        self.snapshot_term = snapshot.meta.term
        self.entries = []
        self.config_indexes = []
        self.committed = snapshot.meta.index
        self.stable = snapshot.meta.index
        self.pending_snapshot = snapshot

    def compact(self, snapshot: Snapshot) -> None:
        """Drop entries covered by a snapshot the application took of its own state."""
        index = snapshot.meta.index
        del self.entries[: index - self.snapshot_index]
        self.config_indexes = [i for i in self.config_indexes if i > index]
        self.snapshot = snapshot
        self.snapshot_index = index
        self.snapshot_term = snapshot.meta.term
        self.pending_snapshot = snapshot

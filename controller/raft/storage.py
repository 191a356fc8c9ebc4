"""What a node persisted, and the rules any storage must follow when persisting a Ready.

Storage is written only by the driver, from ``Ready``:

1. ``snapshot_to_persist``: save it, then apply Raft's snapshot rule (:func:`retain_after`):
   keep the entries after it only if the log holds the snapshot's last entry, else drop them all.
2. ``entries_to_persist``: delete stored entries with index >= the first one, then append.
3. ``hard_state``: replace atomically.

in that order, and all of it durable before any of the Ready's messages leave the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from odradek.controller.raft.messages import Entry, HardState, Snapshot

if TYPE_CHECKING:
    from odradek.controller.raft.node import Ready


@dataclass(frozen=True, slots=True)
class RaftStorageView:
    """Everything a node finds in its storage when it starts."""

    hard_state: HardState = field(default_factory=HardState)
    # Contiguous; entries the snapshot covers may be present and are ignored.
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None


def retain_after(entries: Sequence[Entry], snapshot: Snapshot) -> list[Entry]:
    """Raft section 7: the log survives a snapshot only if it contains the snapshot's tail."""
    meta = snapshot.meta
    for e in entries:
        if e.index == meta.index:
            if e.term == meta.term:
                return [x for x in entries if x.index > meta.index]
            return []
    return []


class MemoryStorage:
    """Volatile storage with the same semantics as the file store (tests, empty starts)."""

    def __init__(self, view: RaftStorageView | None = None) -> None:
        view = view or RaftStorageView()
        self.hard_state = view.hard_state
        self.snapshot = view.snapshot
        self.entries: list[Entry] = list(view.entries)

    def persist(self, ready: Ready) -> None:
        if ready.snapshot_to_persist is not None:
            self.save_snapshot(ready.snapshot_to_persist)
        if ready.entries_to_persist:
            self.append(ready.entries_to_persist)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def save_snapshot(self, snapshot: Snapshot) -> None:
        if self.snapshot is not None and snapshot.meta.index <= self.snapshot.meta.index:
            return
        self.entries = retain_after(self.entries, snapshot)
        self.snapshot = snapshot

    def append(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        if self.entries:
            # Stored entries are contiguous, so the cut point is arithmetic.
            del self.entries[max(0, first - self.entries[0].index) :]
        self.entries.extend(entries)

    def view(self) -> RaftStorageView:
        return RaftStorageView(self.hard_state, tuple(self.entries), self.snapshot)

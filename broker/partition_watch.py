"""Which of many partitions changed since a reader last looked: told, not searched.

A fetch session of a follower holds every partition its broker follows from this leader
(thousands at scale), and a follower fetcher every partition it follows from one leader.
Finding the few that changed by visiting all of them on every request made an idle
cluster of 10,000 partitions spend a fifth of each core on doing nothing. Instead a reader
asks each partition it has read to tell it once, at the partition's next wake-up (an
append, a high watermark or log start move, a leadership change, the replica leaving);
the partitions it then has to read again are exactly the ones that told it.

One-shot notices keep the bookkeeping small: a partition forgets a reader as soon as it
has told it, and a reader that goes away (a session evicted or closed, a fetcher stopped)
withdraws the notices it still has out, so no partition keeps a dead reader alive.

Pure logic, no I/O: a reader waiting for a change sets ``on_change``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class ChangeListener(Protocol[K_contra]):
    def partition_changed(self, key: K_contra) -> None: ...


class Watched(Protocol):
    """What a watch needs of a partition (broker/partition.py's Partition)."""

    @property
    def changes(self) -> int:
        """Its wake-ups so far: a reader compares it with the count it read at."""
        ...

    def notify_once(self, listener: ChangeListener[K], key: K) -> None: ...

    def forget(self, listener: ChangeListener[K], key: K) -> None: ...


class PartitionWatch(Generic[K]):
    """The partitions a reader has read and not yet seen change, and those that changed,
    each under the reader's key for it.

    Hashable by identity: partitions keep it in their listener maps."""

    __slots__ = ("changed", "_watching", "on_change")

    def __init__(self) -> None:
        # Keys whose partition woke since it was watched; the reader takes them.
        self.changed: set[K] = set()
        self._watching: dict[K, Watched] = {}
        # Called at each change (a parked reader's wake-up); None when nobody waits.
        self.on_change: Callable[[], None] | None = None

    def watch(self, key: K, partition: Watched) -> None:
        """Be told at ``partition``'s next wake-up that ``key`` changed."""
        old = self._watching.get(key)
        if old is not None and old is not partition:
            old.forget(self, key)
        self._watching[key] = partition
        partition.notify_once(self, key)

    def __len__(self) -> int:
        """How many partitions are to tell of their next change."""
        return len(self._watching)

    def partition_changed(self, key: K) -> None:
        self._watching.pop(key, None)
        self.changed.add(key)
        if self.on_change is not None:
            self.on_change()

    def mark(self, key: K) -> None:
        """Count ``key`` as changed (the reader changed it itself, or replaced it)."""
        self.changed.add(key)

    def take(self) -> set[K]:
        """The keys that changed since the last take."""
        changed, self.changed = self.changed, set()
        return changed

    def unwatch(self, key: K) -> None:
        partition = self._watching.pop(key, None)
        if partition is not None:
            partition.forget(self, key)
        self.changed.discard(key)

    def close(self) -> None:
        """Withdraw every notice still out (the reader is going away)."""
        for key, partition in self._watching.items():
            partition.forget(self, key)
        self._watching.clear()
        self.changed.clear()
        self.on_change = None

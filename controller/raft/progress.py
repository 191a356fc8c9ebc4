"""The leader's view of one follower: how far it matches and how to keep feeding it.

Flow control follows etcd-io/raft: a follower whose position is unknown is *probed* with one
AppendEntries at a time; once it acknowledges, the leader *replicates* optimistically with a
bounded window of in-flight messages; a follower behind the first retained index gets a
*snapshot* and nothing else until it answers.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    # In PROBE, one message is outstanding; cleared by any response (or a heartbeat response,
    # which is how a lost probe gets retried).
    probe_sent: bool = False
    pending_snapshot: int = 0
    # Ticks spent waiting for a snapshot answer; the snapshot may have been lost.
    snapshot_ticks: int = 0
    # Heard from within the current election timeout (CheckQuorum).
    recent_active: bool = False
    is_observer: bool = False
    max_inflight: int = 256
    # Last index of each AppendEntries sent in REPLICATE and not yet acknowledged.
    inflight: deque[int] = field(default_factory=deque)

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_ticks = 0
        self.inflight.clear()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            # If the snapshot was acknowledged (pending_snapshot still set), resume after it;
            # otherwise probe from what we know matches.
            pending = self.pending_snapshot
            self._reset(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """Record an acknowledgement; False if it is stale."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Handle a rejection of prev_log_index ``rejected``; False if it is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        # In PROBE only the answer to the probe at next-1 counts; others are reordered leftovers.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: int, count: int) -> None:
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = last_index + 1
                self.inflight.append(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def free_le(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True

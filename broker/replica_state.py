"""The replication rules of one partition on this broker, as pure state: no I/O, no clock.

One ``ReplicaState`` per hosted partition holds what the metadata says (leader, epochs,
replicas, ISR, min ISR) and what the leader has seen of its followers (their log ends and
when each was last caught up), and decides from them:

* the high watermark a leader may expose: the smallest log end over the maximal ISR (the
  ISR and any replica whose addition this leader has asked the controller for), and nothing
  while the ISR is below ``min.insync.replicas`` (KIP-966: an acknowledged acks=all write is
  then on at least min ISR replicas);
* whether an acks=all write may be appended now (ISR >= min ISR), and when a waiting one is
  done, failed or still waiting;
* which followers joined the ISR (caught up to the high watermark and into the current
  leader epoch) or left it (not caught up for ``replica.lag.time.max.ms``);
* a follower's own high watermark from its leader's.

Time is passed in (seconds, monotonic) so the rules are tested without a clock; the owner
of each partition (``broker/partition.py``) applies the answers to the log and the waiters.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Assignment:
    """A partition's registration in the metadata image, as this broker applies it."""

    leader: int
    leader_epoch: int
    partition_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class FetchClock:
    """When a follower's fetch session last made a request (the clock of the partitions).

    Shared by the partitions the session holds without reading them (see
    ``ReplicaState.hold_follower``): one write per request instead of one per partition."""

    __slots__ = ("at",)

    def __init__(self, at: float = 0.0) -> None:
        self.at = at


@dataclass(slots=True)
class FollowerProgress:
    # The follower's log end as its last fetch offset said (-1: not fetched this epoch).
    log_end: int = -1
    # When it last fetched at or past the leader's log end.
    caught_up_at: float = 0.0
    # Set while the follower is caught up at ``log_end`` and its session's requests say so
    # without naming this partition: until the leader's log end moves, each of them is a
    # fetch at the log end, made at ``held.at``.
    held: FetchClock | None = None

    def release(self, log_end: int) -> None:
        """The leader's log end is now ``log_end``: a hold that no longer describes the
        follower's position ends, its last request being the last time it was caught up."""
        held = self.held
        if held is not None and self.log_end < log_end:
            self.caught_up_at = max(self.caught_up_at, held.at)
            self.held = None


class AckState(enum.Enum):
    DONE = "done"
    WAITING = "waiting"
    NOT_LEADER = "not_leader"  # leadership moved away: the write may or may not survive
    NOT_ENOUGH_REPLICAS = "not_enough_replicas"  # the ISR fell below min ISR meanwhile


@dataclass(frozen=True, slots=True)
class Change:
    """What applying an assignment changed for this broker."""

    became_leader: bool
    stopped_leading: bool
    new_leader_epoch: bool
    # The ISR of a partition this broker leads, before and after, lost or gained members
    # (whoever asked: this leader, or the controller fencing a dead broker). Not set when
    # the leadership itself is new: that is a leader change, counted elsewhere.
    isr_shrunk: bool = False
    isr_expanded: bool = False


@dataclass(slots=True)
class ReplicaState:
    node_id: int
    min_isr: int = 1
    leader: int = -1
    leader_epoch: int = -1
    partition_epoch: int = -1
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    followers: dict[int, FollowerProgress] = field(default_factory=dict)
    # The ISR this leader asked the controller for and has not seen applied or refused.
    # While an addition is pending, the high watermark waits for the added replica too
    # (Kafka's "maximal ISR"): the controller may commit the addition, and even elect the
    # replica leader, before this broker applies the new ISR, so a write acknowledged
    # without it could be lost to the new leader's truncation.
    pending_isr: tuple[int, ...] | None = None

    @property
    def is_leader(self) -> bool:
        return self.leader == self.node_id

    # --- metadata ------------------------------------------------------------------------

    def assign(self, a: Assignment, now: float) -> Change:
        was_leader = self.is_leader
        old_isr = set(self.isr)
        new_epoch = a.leader_epoch != self.leader_epoch
        if new_epoch or a.partition_epoch != self.partition_epoch:
            # The controller applied a change (ours or its own): what was pending is settled.
            self.pending_isr = None
        self.leader, self.leader_epoch = a.leader, a.leader_epoch
        self.partition_epoch = a.partition_epoch
        self.replicas, self.isr = tuple(a.replicas), tuple(a.isr)
        leads = self.is_leader
        if leads and (not was_leader or new_epoch):
            # A new leadership: what followers reported to an earlier one says nothing about
            # this epoch, and every ISR member gets a full lag allowance from now (as Kafka).
            self.followers = {r: FollowerProgress(-1, now) for r in self.replicas
                              if r != self.node_id}
        elif leads:
            # A reassignment adds and removes replicas under the same leadership.
            self.followers = {r: f for r, f in self.followers.items() if r in self.replicas}
            for r in self.replicas:
                if r != self.node_id:
                    self.followers.setdefault(r, FollowerProgress(-1, now))
        else:
            self.followers = {}
        kept_leading = was_leader and leads
        return Change(became_leader=leads and not was_leader,
                      stopped_leading=was_leader and not leads,
                      new_leader_epoch=leads and new_epoch,
                      isr_shrunk=kept_leading and bool(old_isr - set(self.isr)),
                      isr_expanded=kept_leading and bool(set(self.isr) - old_isr))

    # --- leader: high watermark and acks=all -----------------------------------------

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """The ISR with the replicas whose addition is pending (a pending removal keeps the
        replica until the controller has applied it)."""
        if self.pending_isr is None:
            return self.isr
        return tuple(sorted({*self.isr, *self.pending_isr}))

    def propose_isr(self, isr: tuple[int, ...]) -> None:
        """This leader is asking the controller for ``isr``."""
        if self.is_leader:
            self.pending_isr = tuple(isr)

    def proposal_refused(self, isr: tuple[int, ...]) -> None:
        """The controller answered that it did not apply ``isr``: nothing is pending."""
        if self.pending_isr == tuple(isr):
            self.pending_isr = None

    def high_watermark(self, log_end: int) -> int | None:
        """The high watermark the maximal ISR supports now, or None while the ISR is below
        min ISR. The caller never moves the high watermark back."""
        if not self.is_leader or len(self.isr) < self.min_isr:
            return None
        ends = [log_end]
        for r in self.maximal_isr:
            if r != self.node_id:
                progress = self.followers.get(r)
                ends.append(max(progress.log_end, 0) if progress else 0)
        return min(ends)

    def may_append_acks_all(self) -> bool:
        """An acks=all write is refused before it is appended while the ISR is below min
        ISR (NOT_ENOUGH_REPLICAS): it could not be acknowledged."""
        return len(self.isr) >= self.min_isr

    def ack_state(self, target: int, high_watermark: int) -> AckState:
        """Where an acks=all write ending below ``target`` stands."""
        if not self.is_leader:
            return AckState.NOT_LEADER
        if high_watermark >= target:
            return AckState.DONE
        if len(self.isr) < self.min_isr:
            return AckState.NOT_ENOUGH_REPLICAS
        return AckState.WAITING

    # --- leader: followers and the ISR ---------------------------------------------------

    def follower_fetched(self, replica: int, offset: int, now: float, log_end: int) -> None:
        """A follower fetching at ``offset`` has every record below it."""
        progress = self.followers.get(replica)
        if progress is None:
            if replica not in self.replicas or replica == self.node_id:
                return
            progress = self.followers[replica] = FollowerProgress(-1, now)
        progress.release(log_end)
        progress.held = None
        progress.log_end = offset
        if offset >= log_end:
            progress.caught_up_at = now

    def hold_follower(self, replica: int, log_end: int, clock: FetchClock) -> bool:
        """Let ``clock`` stand for the fetches of a follower that is in the ISR and has
        just fetched at the leader's log end ``log_end``, until that end moves
        (``log_end_moved``). False, changing nothing, if it is not in that state."""
        progress = self.followers.get(replica)
        if progress is None or progress.log_end < log_end or replica not in self.isr:
            return False
        progress.held = clock
        return True

    def unfetched_followers(self) -> list[int]:
        """Followers a write waits for (the maximal ISR) that have not fetched this
        partition since this leadership began: their fetchers may not know of it yet."""
        return [r for r in self.maximal_isr
                if r != self.node_id and (p := self.followers.get(r)) is not None
                and p.log_end < 0]

    def log_end_moved(self, log_end: int) -> None:
        """The leader appended: followers held at the old end were last caught up at
        their session's latest request."""
        for progress in self.followers.values():
            if progress.held is not None:
                progress.release(log_end)

    def isr_to_add(self, replica: int, high_watermark: int, epoch_start: int,
                   live: bool) -> tuple[int, ...] | None:
        """The ISR with ``replica`` added, when it has caught up: it holds everything up to
        the high watermark and into the current leader epoch, and its broker is live."""
        progress = self.followers.get(replica)
        if (not self.is_leader or replica in self.isr or replica not in self.replicas
                or not live or progress is None):
            return None
        if progress.log_end < high_watermark or progress.log_end < epoch_start:
            return None
        return tuple(sorted({*self.isr, replica}))

    def isr_without_laggards(self, now: float, max_lag_s: float,
                             log_end: int) -> tuple[int, ...] | None:
        """The ISR without followers that have not caught up for ``max_lag_s`` (and are
        behind now), or None when nobody lags. The leader never removes itself."""
        if not self.is_leader or len(self.isr) <= 1:
            return None
        lagging = set()
        for r in self.isr:
            if r == self.node_id:
                continue
            progress = self.followers.get(r)
            if progress is None:
                continue
            if now - progress.caught_up_at > max_lag_s and progress.log_end < log_end:
                lagging.add(r)
        if not lagging:
            return None
        return tuple(r for r in self.isr if r not in lagging)

    def drop_lagging_addition(self, now: float, max_lag_s: float, log_end: int) -> bool:
        """Give up a pending addition whose replica stopped keeping up (its request's fate
        unknown, say the controller never answered): the high watermark must not wait for
        it forever. If the controller did add it, the controller also fences it once its
        broker stops heartbeating, so it cannot be elected meanwhile. True if dropped."""
        if self.pending_isr is None:
            return False
        for r in set(self.pending_isr) - set(self.isr):
            progress = self.followers.get(r)
            if progress is not None and now - progress.caught_up_at > max_lag_s \
                    and progress.log_end < log_end:
                self.pending_isr = None
                return True
        return False

    # --- follower ----------------------------------------------------------------------

    @staticmethod
    def follower_high_watermark(leader_high_watermark: int, log_end: int) -> int:
        """A follower's high watermark: its leader's, as far as its own log reaches."""
        return min(leader_high_watermark, log_end)

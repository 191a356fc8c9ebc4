"""The Raft state machine, sans I/O (modelled on etcd-io/raft).

The driver feeds it ``step(message)``, ``tick()`` and ``propose(data)`` and collects effects
with ``ready()``. The core never touches a clock, a socket, a disk or global randomness, so the
same inputs always give the same outputs; that is what makes the simulator's seeds replayable.

Driver loop (one thread owns the node)::

    if node.has_ready():
        rd = node.ready()
        storage.persist(rd)            # snapshot, entries, hard state; fsync
        send(rd.messages)              # only now: they may acknowledge what was just persisted
        if rd.snapshot_to_apply: state_machine.restore(rd.snapshot_to_apply)
        for e in rd.committed_entries: state_machine.apply(e)
        node.advance(rd)

``ready()`` does not change the node; it returns everything pending since the last
``advance()``, so take the next Ready only after advancing the previous one. ``step``, ``tick``
and ``propose`` may be called while a Ready is being persisted; their effects come in the next.
On restart, rebuild the state machine from ``storage.snapshot`` and let the first Readies replay
committed entries after it.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field, replace

from odradek.controller.raft.log import RaftLog
from odradek.controller.raft.membership import (
    MembershipChangeRefused,
    RefusalReason,
    VoterSet,
)
from odradek.controller.raft.messages import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    Message,
    PreVoteRequest,
    PreVoteResponse,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from odradek.controller.raft.progress import Progress, ProgressState
from odradek.controller.raft.storage import RaftStorageView


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class NotLeaderError(Exception):
    def __init__(self, leader_hint: int | None, message: str | None = None) -> None:
        self.leader_hint = leader_hint
        super().__init__(
            message
            or (
                f"this node is not the Raft leader; retry on node {leader_hint}"
                if leader_hint is not None
                else "this node is not the Raft leader and knows no leader yet; retry later"
            )
        )


class ProposalDropped(Exception):
    """The leader's uncommitted tail is full; retry after some of it commits."""


class LeadershipTransferInProgress(NotLeaderError):
    """Proposals are refused while handing over, or the old leader's tail would race the new."""


@dataclass(frozen=True, slots=True)
class RaftConfig:
    node_id: int
    # The initial voter set (static controller.quorum.voters). Once the log holds a CONFIG
    # entry, the node's current set is the latest one there (RaftNode.config tracks it).
    voters: frozenset[int]
    # Non-voting members the leader replicates to (brokers). A node not in ``voters`` is itself
    # an observer: it follows the log but never votes or campaigns.
    observers: frozenset[int] = frozenset()
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_msg: int = 64
    max_inflight_msgs: int = 256
    # Back-pressure: a leader that cannot reach a quorum (or a slow one) would otherwise grow
    # an unbounded tail that must all be replicated before anything new commits.
    max_uncommitted_entries: int = 4096

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ValueError(f"node_id must be a positive integer, got {self.node_id}")
        if not self.voters or any(v <= 0 for v in self.voters):
            raise ValueError(f"voters must be a non-empty set of positive ids, got {self.voters}")
        if any(o <= 0 for o in self.observers) or self.voters & self.observers:
            raise ValueError("observers must be positive ids and disjoint from voters")
        if not 1 <= self.heartbeat_tick < self.election_tick:
            raise ValueError("need 1 <= heartbeat_tick < election_tick")
        if min(self.max_entries_per_msg, self.max_inflight_msgs, self.max_uncommitted_entries) < 1:
            raise ValueError(
                "max_entries_per_msg, max_inflight_msgs and max_uncommitted_entries must be >= 1"
            )

    @property
    def is_observer(self) -> bool:
        return self.node_id not in self.voters

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the driver may want to react to (routing, metrics); never persisted."""

    leader_id: int | None
    role: Role


@dataclass(frozen=True, slots=True)
class Ready:
    # Persist these three (in the order of controller.raft.storage) before sending anything.
    hard_state: HardState | None = None
    entries_to_persist: tuple[Entry, ...] = ()
    snapshot_to_persist: Snapshot | None = None
    messages: tuple[Message, ...] = ()
    # Install into the state machine before applying committed_entries (they follow it).
    snapshot_to_apply: Snapshot | None = None
    committed_entries: tuple[Entry, ...] = ()
    soft_state: SoftState | None = None

    def is_empty(self) -> bool:
        return (
            self.hard_state is None
            and not self.entries_to_persist
            and self.snapshot_to_persist is None
            and not self.messages
            and self.snapshot_to_apply is None
            and not self.committed_entries
            and self.soft_state is None
        )


@dataclass(frozen=True, slots=True)
class PeerStatus:
    match: int
    next: int
    state: ProgressState
    recent_active: bool
    is_observer: bool


@dataclass(frozen=True, slots=True)
class Status:
    node_id: int
    role: Role
    term: int
    vote: int | None
    leader_id: int | None
    commit: int
    applied: int
    first_index: int
    last_index: int
    snapshot_index: int
    is_observer: bool
    lead_transferee: int | None
    # The voter set in force on this node (the latest in its log) and whether that set is
    # committed yet (False while a change is in flight).
    voters: frozenset[int] = frozenset()
    voters_committed: bool = True
    # Only on the leader.
    progress: dict[int, PeerStatus] = field(default_factory=dict)


class _Campaign(enum.Enum):
    PRE_VOTE = "pre_vote"
    ELECTION = "election"
    TRANSFER = "transfer"


class RaftNode:
    def __init__(self, config: RaftConfig, storage: RaftStorageView, rng: random.Random) -> None:
        self.config = config
        self.id = config.node_id
        self._rng = rng
        # The static voters apply until the log (or snapshot) holds a CONFIG entry; the
        # observers are the runtime's to manage and are never replicated through Raft.
        self._static_voters = config.voters
        self._observers = config.observers
        hs = storage.hard_state
        self.log = RaftLog(storage.snapshot, storage.entries, hs.commit)
        self._config_data: bytes | None = None
        self.term = hs.term
        self.vote = hs.vote
        self.lead: int | None = None
        self.role = Role.FOLLOWER
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.lead_transferee: int | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self._reset_randomized_election_timeout()
        self._msgs: list[Message] = []
        self._persisted_hs = hs
        self._prev_soft = SoftState(None, Role.FOLLOWER)
        self._snapshot_to_apply: Snapshot | None = None
        self._refresh_membership()

    # ------------------------------------------------------------------ public API

    @property
    def is_observer(self) -> bool:
        return self.config.is_observer

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def heartbeat_now(self) -> None:
        """As leader, heartbeat every peer now rather than at the next heartbeat tick
        (etcd's MsgBeat): the answers tell who is up at this moment."""
        if self.role is Role.LEADER:
            self._bcast_heartbeat()

    def propose(self, data: bytes) -> int:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)
        if self.lead_transferee is not None:
            raise LeadershipTransferInProgress(self.lead_transferee)
        if self.log.last_index - self.log.committed >= self.config.max_uncommitted_entries:
            raise ProposalDropped(
                f"{self.log.last_index - self.log.committed} entries are not committed yet "
                "(is a quorum of controllers reachable?); retry later"
            )
        index = self._append_entry(data, EntryKind.NORMAL)
        self._bcast_append()
        return index

    def transfer_leadership(self, target: int) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)
        if target not in self.config.voters:
            raise ValueError(f"cannot transfer leadership to {target}: not a voter")
        if target == self.id:
            self.lead_transferee = None
            return
        if self.lead_transferee == target:
            return
        self.lead_transferee = target
        # The transfer must finish within one election timeout or it is abandoned (tick).
        self.election_elapsed = 0
        pr = self.progress[target]
        if pr.match == self.log.last_index:
            self._send(TimeoutNow(self.id, target, self.term))
        else:
            self._send_append(target)

    def forget_leader(self, leader: int, campaign_within_ticks: int = 2) -> bool:
        """The runtime saw ``leader``'s process go (its connection closed): stop counting
        on it (etcd's ForgetLeader). Out of its lease, this follower grants pre-votes at
        once, and its election timer is brought forward so that it campaigns within
        ``campaign_within_ticks`` (at a random tick, so two followers that both noticed do
        not split their votes every time) instead of a whole election timeout.

        Safe whatever the truth: a leader that is alive after all is followed again at its
        next heartbeat, and a pre-vote only succeeds where a majority also lost the leader
        (the others are still in its lease and refuse). Returns whether anything changed."""
        if self.role is not Role.FOLLOWER or self.lead != leader or not self._promotable():
            return False
        self.lead = None
        ahead = 1 + self._rng.randrange(max(1, campaign_within_ticks))
        self.election_elapsed = max(self.election_elapsed,
                                    self.randomized_election_timeout - ahead)
        return True

    def compact(self, index: int, snapshot_data: bytes) -> None:
        """Replace entries <= index by a snapshot of the state machine at ``index``."""
        if index <= self.log.snapshot_index:
            return
        if index > self.log.applied or index > self.log.stable:
            raise ValueError(
                f"cannot compact to {index}: only {min(self.log.applied, self.log.stable)} "
                "is applied and durable"
            )
        term = self.log.term(index)
        assert term is not None
        config = self.log.config_at(index)
        voters = VoterSet.decode(config).ids if config else self._static_voters
        meta = SnapshotMeta(index, term, voters, self._observers - voters, config)
        self.log.compact(Snapshot(meta, snapshot_data))

    def set_observers(self, observers: frozenset[int]) -> None:
        """Change who the leader replicates to without voting (not replicated through Raft).
        Ids that are voters in the current set are ignored here; they become observers if a
        later change removes them."""
        self._observers = frozenset(observers)
        self._config_data = None  # force the recomputation
        self._refresh_membership()
        self._prune_progress()

    # ------------------------------------------------------------------ membership

    @property
    def voter_set(self) -> VoterSet:
        """The voter set in force: the latest in the log, else the static one (endpoints
        unknown to the core: "")."""
        data = self.log.config_at(self.log.last_index)
        return VoterSet.decode(data) if data else VoterSet.of(self._static_voters)

    @property
    def committed_voter_set(self) -> VoterSet:
        """The voter set as of the commit index (differs from voter_set while a change is
        in flight)."""
        data = self.log.config_at(self.log.committed)
        return VoterSet.decode(data) if data else VoterSet.of(self._static_voters)

    @property
    def voters_committed(self) -> bool:
        return self.log.latest_config_index() <= self.log.committed

    def propose_voters(self, new: VoterSet) -> int:
        """As leader, append a CONFIG entry changing the voter set to ``new``: one voter added
        or removed (or only endpoints changed). Returns its index; the change is in force at
        once on every node that appends it, and done when that index commits.

        Raises NotLeaderError, or MembershipChangeRefused saying why (some reasons are
        retriable: see MembershipChangeRefused.retriable)."""
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)
        if self.lead_transferee is not None:
            raise LeadershipTransferInProgress(self.lead_transferee)
        current = self.voter_set
        added = new.ids - current.ids
        removed = current.ids - new.ids
        if len(added) + len(removed) > 1 or new == current:
            raise MembershipChangeRefused(
                RefusalReason.NOT_SINGLE_CHANGE,
                f"voters {sorted(current.ids)} -> {sorted(new.ids)} is not a single change; "
                "add or remove one voter at a time",
            )
        if not self.voters_committed:
            raise MembershipChangeRefused(
                RefusalReason.CHANGE_IN_PROGRESS,
                f"the voter change at index {self.log.latest_config_index()} is not committed "
                "yet; retry when it is",
            )
        if self.log.term(self.log.committed) != self.term:
            raise MembershipChangeRefused(
                RefusalReason.NO_COMMIT_IN_TERM,
                "this leader has not committed an entry of its term yet; retry shortly",
            )
        for peer in added:
            pr = self.progress.get(peer)
            if pr is None or pr.match < self.log.committed:
                raise MembershipChangeRefused(
                    RefusalReason.NOT_CAUGHT_UP,
                    f"node {peer} has {'not been reached' if pr is None else f'{pr.match}'} "
                    f"of the {self.log.committed} committed entries; start it as an observer "
                    "and retry once it has caught up",
                )
        if self.log.last_index - self.log.committed >= self.config.max_uncommitted_entries:
            raise ProposalDropped("too many uncommitted entries; retry later")
        index = self._append_entry(new.encode(), EntryKind.CONFIG)
        self._bcast_append()
        return index

    def _refresh_membership(self) -> None:
        """Make self.config's voters the latest set in the log. Called after every change of
        the log (append, truncation, snapshot)."""
        data = self.log.config_at(self.log.last_index)
        if data == self._config_data:
            return
        self._config_data = data
        voters = VoterSet.decode(data).ids if data else self._static_voters
        self.config = replace(self.config, voters=voters, observers=self._observers - voters)
        if self.role is Role.LEADER:
            for peer in sorted((voters | self.config.observers) - self.progress.keys()):
                self.progress[peer] = self._new_progress(peer)
            for peer, pr in self.progress.items():
                pr.is_observer = peer not in voters
        elif self.lead_transferee is not None and self.lead_transferee not in voters:
            self.lead_transferee = None

    def _promotable(self) -> bool:
        """May this node campaign and vote? A voter of its latest voter set, or, while that
        set is not committed, of the committed one. The second case matters: a leader that
        appended its own removal and then lost leadership (CheckQuorum) is the only node with
        the longest log; if it could neither campaign nor vote, the voters still on the old
        set would wait for it forever. Votes are still counted by the candidate's latest set,
        which is what keeps elections safe, so campaigning from the old set is harmless."""
        if self.id in self.config.voters:
            return True
        if self.voters_committed:
            return False
        data = self.log.config_at(self.log.committed)
        committed = VoterSet.decode(data).ids if data else self._static_voters
        return self.id in committed

    def _prune_progress(self) -> None:
        """Stop replicating to nodes that are neither voters nor observers. A removed voter is
        kept until its removal commits, so that it usually learns it was removed."""
        if self.role is not Role.LEADER or not self.voters_committed:
            return
        wanted = self.config.voters | self.config.observers | {self.id}
        for peer in list(self.progress):
            if peer not in wanted:
                del self.progress[peer]

    def step(self, m: Message) -> None:
        if m.dst != self.id:
            raise ValueError(f"message for node {m.dst} stepped into node {self.id}")
        if m.term > self.term:
            if isinstance(m, VoteRequest | PreVoteRequest):
                force = isinstance(m, VoteRequest) and m.transfer
                if not force and self._in_lease():
                    # Leader lease: we heard from a live leader within the election timeout,
                    # so this candidate is partitioned or flapping; don't let it disrupt us.
                    if isinstance(m, PreVoteRequest):
                        self._send(PreVoteResponse(self.id, m.src, self.term, granted=False))
                    return
            if isinstance(m, PreVoteRequest):
                pass  # a pre-vote never changes our term
            elif isinstance(m, PreVoteResponse) and m.granted:
                pass  # granted at the term we *would* use; the term moves only if we win
            elif isinstance(m, AppendEntriesRequest | Heartbeat | InstallSnapshotRequest):
                self._become_follower(m.term, m.src)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            if isinstance(m, AppendEntriesRequest | Heartbeat) and (
                self.config.check_quorum or self.config.pre_vote
            ):
                # A deposed leader that cannot hear the new one would keep heartbeating
                # forever; an answer at our term makes it step down. (With PreVote a node
                # that grew its term alone never wins, so this also un-sticks it.)
                # match_index=0 is a no-op for a leader that happens to be at our term.
                self._send(AppendEntriesResponse(self.id, m.src, self.term, success=True))
            elif isinstance(m, PreVoteRequest):
                self._send(PreVoteResponse(self.id, m.src, self.term, granted=False))
            return

        if isinstance(m, VoteRequest | PreVoteRequest):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def has_ready(self) -> bool:
        log = self.log
        return bool(
            self._msgs
            or log.stable < log.last_index
            or log.pending_snapshot is not None
            or self._snapshot_to_apply is not None
            or log.committed > max(log.applied, log.snapshot_index)
            or self._hard_state() != self._persisted_hs
            or self._soft_state() != self._prev_soft
        )

    def ready(self) -> Ready:
        """Everything pending since the last advance(); does not change the node."""
        hs = self._hard_state()
        ss = self._soft_state()
        return Ready(
            hard_state=hs if hs != self._persisted_hs else None,
            entries_to_persist=tuple(self.log.unstable_entries()),
            snapshot_to_persist=self.log.pending_snapshot,
            messages=tuple(self._msgs),
            snapshot_to_apply=self._snapshot_to_apply,
            committed_entries=tuple(self.log.next_committed_entries()),
            soft_state=ss if ss != self._prev_soft else None,
        )

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied ``rd``."""
        log = self.log
        if rd.hard_state is not None:
            self._persisted_hs = rd.hard_state
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.snapshot_to_persist is not None and log.pending_snapshot is rd.snapshot_to_persist:
            log.pending_snapshot = None
        # Entries replaced by a conflicting append after ready() are not durable; the prefix
        # that still matches is (same index and term imply the same entries before it).
        for e in reversed(rd.entries_to_persist):
            if log.match_term(e.index, e.term):
                log.stable_to(e.index, e.term)
                break
        if rd.snapshot_to_apply is not None:
            log.applied_to(rd.snapshot_to_apply.meta.index)
            if self._snapshot_to_apply is rd.snapshot_to_apply:
                self._snapshot_to_apply = None
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
        # step() may have queued more after ready() was taken; only drop what was handed out.
        del self._msgs[: len(rd.messages)]
        if self.role is Role.LEADER:
            # The leader counts towards a quorum only with entries it has made durable.
            if self.progress[self.id].maybe_update(log.stable) and self._maybe_commit():
                self._bcast_append()

    def status(self) -> Status:
        progress: dict[int, PeerStatus] = {}
        if self.role is Role.LEADER:
            for peer, pr in sorted(self.progress.items()):
                progress[peer] = PeerStatus(
                    pr.match, pr.next, pr.state, pr.recent_active, pr.is_observer
                )
        return Status(
            node_id=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader_id=self.lead,
            commit=self.log.committed,
            applied=self.log.applied,
            first_index=self.log.first_index,
            last_index=self.log.last_index,
            snapshot_index=self.log.snapshot_index,
            is_observer=self.is_observer,
            lead_transferee=self.lead_transferee,
            voters=self.config.voters,
            voters_committed=self.voters_committed,
            progress=progress,
        )

    # ------------------------------------------------------------------ state changes

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def _reset_randomized_election_timeout(self) -> None:
        # Randomized in [election_tick, 2*election_tick) so split votes resolve (section 5.2).
        et = self.config.election_tick
        self.randomized_election_timeout = self._rng.randrange(et, 2 * et)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.lead = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.lead_transferee = None
        self.votes = {}
        self.progress = {}

    def _become_follower(self, term: int, lead: int | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead

    def _become_pre_candidate(self) -> None:
        # Neither term nor vote changes: a pre-vote round must leave no trace if it fails.
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.lead = None
        self.progress = {}

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        for peer in sorted(self.config.voters | self.config.observers | {self.id}):
            self.progress[peer] = self._new_progress(peer)
        own = self.progress[self.id]
        own.match = self.log.stable
        own.recent_active = True
        self._append_entry(b"", EntryKind.NOOP)

    def _new_progress(self, peer: int) -> Progress:
        return Progress(
            match=0,
            next=self.log.last_index + 1,
            is_observer=peer not in self.config.voters,
            max_inflight=self.config.max_inflight_msgs,
        )

    def _append_entry(self, data: bytes, kind: EntryKind) -> int:
        index = self.log.last_index + 1
        self.log.append([Entry(self.term, index, data, kind)])
        if kind is EntryKind.CONFIG:
            self._refresh_membership()
        return index

    def _send(self, m: Message) -> None:
        self._msgs.append(m)

    def _in_lease(self) -> bool:
        return (
            self.config.check_quorum
            and self.lead is not None
            and self.election_elapsed < self.config.election_tick
        )

    # ------------------------------------------------------------------ timers

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if not self._promotable():
            return
        if self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self._campaign(_Campaign.PRE_VOTE if self.config.pre_vote else _Campaign.ELECTION)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        for pr in self.progress.values():
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_ticks += 1
                if pr.snapshot_ticks >= self.config.election_tick:
                    # No answer: the snapshot (or its answer) was probably lost. Probe again;
                    # a probe below the first index resends the snapshot.
                    pr.pending_snapshot = 0
                    pr.become_probe()
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum:
                active = sum(
                    1
                    for v in self.config.voters
                    if v == self.id or (v in self.progress and self.progress[v].recent_active)
                )
                if active < self.config.quorum:
                    # We may be on the minority side of a partition; a leader there would
                    # accept proposals it can never commit, and keep clients waiting.
                    self._become_follower(self.term, None)
                    return
                for peer, pr in self.progress.items():
                    pr.recent_active = peer == self.id
            self.lead_transferee = None
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self._bcast_heartbeat()

    def _bcast_heartbeat(self) -> None:
        self.heartbeat_elapsed = 0
        for peer, pr in self.progress.items():
            if peer != self.id:
                commit = min(pr.match, self.log.committed)
                self._send(Heartbeat(self.id, peer, self.term, commit))

    # ------------------------------------------------------------------ elections

    def _campaign(self, kind: _Campaign) -> None:
        if not self._promotable():
            return
        if kind is _Campaign.PRE_VOTE:
            self._become_pre_candidate()
            vote_term = self.term + 1
        else:
            self._become_candidate()
            vote_term = self.term
        self.votes = {self.id: True}
        if self._poll_result() is True:
            if kind is _Campaign.PRE_VOTE:
                self._campaign(_Campaign.ELECTION)
            else:
                self._become_leader()
            return
        last_index, last_term = self.log.last_index, self.log.last_term
        for v in sorted(self.config.voters):
            if v == self.id:
                continue
            if kind is _Campaign.PRE_VOTE:
                self._send(PreVoteRequest(self.id, v, vote_term, last_index, last_term))
            else:
                self._send(
                    VoteRequest(
                        self.id,
                        v,
                        vote_term,
                        last_index,
                        last_term,
                        transfer=kind is _Campaign.TRANSFER,
                    )
                )

    def _poll_result(self) -> bool | None:
        granted = sum(1 for v, ok in self.votes.items() if ok and v in self.config.voters)
        rejected = sum(1 for v, ok in self.votes.items() if not ok and v in self.config.voters)
        if granted >= self.config.quorum:
            return True
        if rejected > len(self.config.voters) - self.config.quorum:
            return False
        return None

    def _handle_vote_request(self, m: VoteRequest | PreVoteRequest) -> None:
        pre = isinstance(m, PreVoteRequest)
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.lead is None)
            or (pre and m.term > self.term)
        )
        # Membership is not consulted (Raft thesis 4.1): a candidate asks only nodes in its own
        # latest voter set, and that set may already include this node while this node's log
        # does not (it was added, then restored from an older snapshot). Refusing would leave
        # the candidate waiting forever; granting is safe because each node still votes at
        # most once per term and votes are counted against the candidate's set.
        if can_vote and self.log.is_up_to_date(m.last_log_index, m.last_log_term):
            if pre:
                # Answer at the candidate's future term so it does not discard this as stale.
                self._send(PreVoteResponse(self.id, m.src, m.term, granted=True))
            else:
                self.election_elapsed = 0
                self.vote = m.src
                self._send(VoteResponse(self.id, m.src, self.term, granted=True))
        elif pre:
            self._send(PreVoteResponse(self.id, m.src, self.term, granted=False))
        else:
            self._send(VoteResponse(self.id, m.src, self.term, granted=False))

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, AppendEntriesRequest):
            self._become_follower(m.term, m.src)
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self._become_follower(m.term, m.src)
            self._handle_heartbeat(m)
        elif isinstance(m, InstallSnapshotRequest):
            self._become_follower(m.term, m.src)
            self._handle_snapshot(m)
        elif (isinstance(m, PreVoteResponse) and self.role is Role.PRE_CANDIDATE) or (
            isinstance(m, VoteResponse) and self.role is Role.CANDIDATE
        ):
            self.votes.setdefault(m.src, m.granted)
            result = self._poll_result()
            if result is True:
                if self.role is Role.PRE_CANDIDATE:
                    self._campaign(_Campaign.ELECTION)
                else:
                    self._become_leader()
                    self._bcast_append()
            elif result is False:
                self._become_follower(self.term, None)

    # ------------------------------------------------------------------ follower

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendEntriesRequest):
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_heartbeat(m)
        elif isinstance(m, InstallSnapshotRequest):
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_snapshot(m)
        elif isinstance(m, TimeoutNow):
            if self._promotable():
                self._campaign(_Campaign.TRANSFER)

    def _handle_append(self, m: AppendEntriesRequest) -> None:
        log = self.log
        if m.prev_log_index < log.committed:
            # Stale or reordered: everything up to our commit is known to match the leader.
            self._send(
                AppendEntriesResponse(self.id, m.src, self.term, True, match_index=log.committed)
            )
            return
        last_new = log.maybe_append(m.prev_log_index, m.prev_log_term, m.entries)
        self._refresh_membership()
        if last_new is not None:
            log.commit_to(min(m.commit, last_new))
            self._send(AppendEntriesResponse(self.id, m.src, self.term, True, match_index=last_new))
            return
        hint_index, hint_term = log.find_conflict_by_term(
            min(m.prev_log_index, log.last_index), m.prev_log_term
        )
        self._send(
            AppendEntriesResponse(
                self.id,
                m.src,
                self.term,
                False,
                rejected_index=m.prev_log_index,
                reject_hint_index=hint_index,
                reject_hint_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        self.log.commit_to(m.commit)
        self._send(HeartbeatResponse(self.id, m.src, self.term))

    def _handle_snapshot(self, m: InstallSnapshotRequest) -> None:
        meta = m.snapshot.meta
        log = self.log
        if meta.index <= log.committed:
            match = log.committed
        elif log.match_term(meta.index, meta.term):
            # We already hold its last entry, hence (Log Matching) everything it covers.
            log.commit_to(meta.index)
            match = meta.index
        else:
            log.restore(m.snapshot)
            self._refresh_membership()
            self._snapshot_to_apply = m.snapshot
            match = meta.index
        self._send(InstallSnapshotResponse(self.id, m.src, self.term, match))

    # ------------------------------------------------------------------ leader

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        if isinstance(m, AppendEntriesResponse):
            pr.recent_active = True
            if m.success:
                self._handle_append_success(m.src, pr, m.match_index)
            else:
                next_probe = m.reject_hint_index
                if m.reject_hint_term > 0:
                    next_probe, _ = self.log.find_conflict_by_term(
                        m.reject_hint_index, m.reject_hint_term
                    )
                if pr.maybe_decr_to(m.rejected_index, next_probe):
                    if pr.state is ProgressState.REPLICATE:
                        pr.become_probe()
                    self._send_append(m.src)
        elif isinstance(m, InstallSnapshotResponse):
            pr.recent_active = True
            self._handle_append_success(m.src, pr, m.match_index)
        elif isinstance(m, HeartbeatResponse):
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.is_paused():
                # Acks may have been lost; free one slot so the window cannot stay shut.
                pr.inflight.popleft()
            if pr.match < self.log.last_index:
                self._send_append(m.src)

    def _handle_append_success(self, peer: int, pr: Progress, index: int) -> None:
        was_paused = pr.is_paused()
        if not pr.maybe_update(index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.match + 1 >= self.log.first_index:
                pr.become_probe()
                pr.become_replicate()
        else:
            pr.free_le(index)
        if self._maybe_commit():
            self._bcast_append()
        elif self.role is not Role.LEADER:
            return  # stepped down: removed from the voters
        elif was_paused:
            self._send_append(peer)
        # Fill the pipeline while the window allows.
        while self._send_append(peer, send_if_empty=False):
            pass
        if peer == self.lead_transferee and pr.match == self.log.last_index:
            self._send(TimeoutNow(self.id, peer, self.term))

    def _maybe_commit(self) -> bool:
        matches = sorted((self.progress[v].match for v in self.config.voters), reverse=True)
        candidate = matches[self.config.quorum - 1]
        # Only entries of the current term are committed by counting replicas (section 5.4.2,
        # Figure 8); earlier ones become committed indirectly through them.
        if candidate > self.log.committed and self.log.term(candidate) == self.term:
            self.log.commit_to(candidate)
            if self.voters_committed:
                self._prune_progress()
                if self.id not in self.config.voters:
                    self._step_down_removed()
                    return False
            return True
        return False

    def _step_down_removed(self) -> None:
        """Removed, and the removal is committed: a leader outside the voter set would
        otherwise keep leading a quorum it is not part of. Tell everyone the new commit, hand
        over to the most up-to-date voter at once (rather than waiting for an election
        timeout), and stay on as an observer that never campaigns."""
        self._bcast_append()
        voters = [v for v in sorted(self.config.voters) if v in self.progress]
        if voters:
            best = max(voters, key=lambda v: self.progress[v].match)
            if self.progress[best].match == self.log.last_index:
                self._send(TimeoutNow(self.id, best, self.term))
        self._become_follower(self.term, None)

    def _bcast_append(self) -> None:
        for peer in self.progress:
            if peer != self.id:
                self._send_append(peer)

    def _send_append(self, peer: int, send_if_empty: bool = True) -> bool:
        pr = self.progress[peer]
        if pr.is_paused():
            return False
        log = self.log
        if pr.next > log.last_index + 1:
            # Cannot happen with our own acks; guards against a confused peer.
            pr.next = log.last_index + 1
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None:
            # prev is compacted away: only a snapshot can bring this peer forward.
            return self._send_snapshot(peer, pr)
        entries = log.slice(
            pr.next, min(log.last_index + 1, pr.next + self.config.max_entries_per_msg)
        )
        if not entries and not send_if_empty:
            return False
        self._send(
            AppendEntriesRequest(
                self.id, peer, self.term, prev, prev_term, tuple(entries), log.committed
            )
        )
        pr.sent_entries(prev + len(entries), len(entries))
        return True

    def _send_snapshot(self, peer: int, pr: Progress) -> bool:
        snap = self.log.snapshot
        if snap is None:
            return False
        pr.become_snapshot(snap.meta.index)
        self._send(InstallSnapshotRequest(self.id, peer, self.term, snap))
        return True

"""State of one classic (JoinGroup/SyncGroup) group: members, generation, offsets.

Pure data plus the rules that only look at one group; no timers, no I/O. The coordinator
drives it. Names and state semantics follow Kafka's classic group protocol.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from odradek.broker.group import consumer_protocol
from odradek.broker.group.clock import TimerHandle
from odradek.broker.group.member import JoinedMember, JoinResult, Member, SyncResult, resolve
from odradek.broker.group.records import GroupValue, MemberValue

TopicPartition = tuple[str, int]


class GroupState(enum.Enum):
    # Values are the names Kafka reports in DescribeGroups/ListGroups; tools match on them.
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}
    ),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}

GROUP_TYPE = "classic"


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    # Only set by OffsetCommit v2-v4 with an explicit retention time.
    expire_timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class PendingTxnOffset:
    """A TxnOffsetCommit awaiting its producer's transaction marker, with the log offset of
    its record: at COMMIT it only replaces a committed offset written before it."""

    record_offset: int
    value: CommittedOffset


@dataclass(frozen=True, slots=True)
class MemberSummary:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupSummary:
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberSummary, ...]


@dataclass(frozen=True, slots=True)
class GroupOverview:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = GROUP_TYPE


@dataclass(eq=False)
class ClassicGroup:
    group_id: str
    state: GroupState = GroupState.EMPTY
    state_timestamp: int | None = None
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    # Dynamic members that got MEMBER_ID_REQUIRED and have not rejoined yet, with the
    # timer that forgets them after a session timeout.
    pending_members: dict[str, TimerHandle | None] = field(default_factory=dict)
    pending_sync: set[str] = field(default_factory=set)
    # While the initial (empty group) rebalance delay runs, the join phase never ends
    # early, and members arriving meanwhile extend it (new_member_added).
    initial_delay: bool = False
    new_member_added: bool = False
    subscribed_topics: frozenset[str] | None = None
    offsets: dict[TopicPartition, CommittedOffset] = field(default_factory=dict)
    # Commits are applied in log order, not the order the appends finished: this is the
    # log offset of the record behind each committed offset (Kafka compares the same, so
    # a transaction committing late does not undo a newer plain commit).
    offset_seq: dict[TopicPartition, int] = field(default_factory=dict)
    pending_commits: Counter[TopicPartition] = field(default_factory=Counter)
    # Transactional commits per producer id, invisible to OffsetFetch until the producer's
    # COMMIT marker and dropped by its ABORT (Kafka's pendingTransactionalOffsetCommits).
    pending_txn_offsets: dict[int, dict[TopicPartition, PendingTxnOffset]] = field(
        default_factory=dict
    )
    join_timer: TimerHandle | None = None
    sync_timer: TimerHandle | None = None

    # --- state ---------------------------------------------------------------------

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    def transition(self, new: GroupState, now_ms: int) -> None:
        if self.state not in _VALID_PREVIOUS[new]:
            raise IllegalTransition(
                f"group {self.group_id}: cannot go from {self.state.value} to {new.value}"
            )
        self.state = new
        self.state_timestamp = now_ms

    def can_rebalance(self) -> bool:
        return self.state in _VALID_PREVIOUS[GroupState.PREPARING_REBALANCE]

    # --- membership ----------------------------------------------------------------

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    def size(self) -> int:
        return len(self.members)

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def num_awaiting_join(self) -> int:
        return sum(1 for m in self.members.values() if m.awaiting_join)

    def has_all_members_joined(self) -> bool:
        return self.num_awaiting_join() == len(self.members) and not self.pending_members

    def not_yet_rejoined(self) -> list[Member]:
        return [m for m in self.members.values() if not m.awaiting_join]

    def candidate_protocols(self) -> set[str]:
        """Protocols every member supports."""
        common: set[str] | None = None
        for m in self.members.values():
            names = set(m.protocol_names())
            common = names if common is None else common & names
        return common or set()

    def supports_protocols(self, protocol_type: str, names: list[str]) -> bool:
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        candidates = self.candidate_protocols()
        return self.protocol_type == protocol_type and any(n in candidates for n in names)

    def select_protocol(self) -> str:
        """Each member votes for its favourite common protocol; the most votes win
        (ties go to the earliest-joined member's preference, to be deterministic)."""
        candidates = self.candidate_protocols()
        if not self.members or not candidates:
            raise ValueError(f"group {self.group_id} has no protocol all members support")
        votes = Counter(m.vote(candidates) for m in self.members.values())
        best = max(votes.values())
        for m in self.members.values():
            choice = m.vote(candidates)
            if votes[choice] == best:
                return choice
        raise AssertionError("unreachable")

    def add(self, member: Member) -> None:
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.pending_members.pop(member.member_id, None)

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is not None and member.group_instance_id is not None:
            if self.static_members.get(member.group_instance_id) == member_id:
                del self.static_members[member.group_instance_id]
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        timer = self.pending_members.pop(member_id, None)
        if timer is not None:
            timer.cancel()
        self.pending_sync.discard(member_id)
        return member

    def update_member(
        self,
        member: Member,
        protocols: list[tuple[str, bytes]],
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        join_future: asyncio.Future[JoinResult] | None,
    ) -> None:
        member.protocols = protocols
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        old = member.take_join()
        if old is not None and old is not join_future:
            # A second JoinGroup supersedes the first; the first must not hang forever.
            # REBALANCE_IN_PROGRESS makes a client that still listens simply rejoin.
            resolve(old, JoinResult.failed(ErrorCode.rebalance_in_progress, member.member_id))
        member.join_future = join_future

    def replace_static_member(self, instance_id: str, old_id: str, new_id: str) -> Member:
        member = self.members.pop(old_id)
        # Whoever still waits under the old id is a zombie of the same instance: fence it.
        resolve(member.take_join(), JoinResult.failed(ErrorCode.fenced_instance_id, old_id))
        resolve(member.take_sync(), SyncResult(ErrorCode.fenced_instance_id))
        member.member_id = new_id
        self.members[new_id] = member
        if self.leader_id == old_id:
            self.leader_id = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        self.static_members[instance_id] = new_id
        return member

    def maybe_elect_new_joined_leader(self) -> bool:
        """Make sure the leader is a member that rejoined; False if nobody rejoined."""
        if self.leader_id is None:
            return False
        leader = self.members.get(self.leader_id)
        if leader is not None and leader.awaiting_join:
            return True
        for m in self.members.values():
            if m.awaiting_join:
                self.leader_id = m.member_id
                return True
        return False

    def init_next_generation(self, now_ms: int) -> None:
        self.generation += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition(GroupState.EMPTY, now_ms)
        self.pending_sync.clear()

    def current_member_metadata(self) -> tuple[JoinedMember, ...]:
        assert self.protocol_name is not None
        return tuple(
            JoinedMember(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        )

    def compute_subscribed_topics(self) -> frozenset[str] | None:
        if self.protocol_type != consumer_protocol.PROTOCOL_TYPE:
            return None
        if not self.members:
            return frozenset()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        for m in self.members.values():
            try:
                parsed = consumer_protocol.subscribed_topics(m.metadata(self.protocol_name))
            except KeyError:
                parsed = None
            if parsed is None:
                return None
            topics |= parsed
        return frozenset(topics)

    def is_subscribed_to_topic(self, topic: str) -> bool:
        return self.subscribed_topics is not None and topic in self.subscribed_topics

    def validate_member(self, member_id: str, instance_id: str | None) -> ErrorCode | None:
        """FENCED_INSTANCE_ID for a stale incarnation of a static member,
        UNKNOWN_MEMBER_ID for an id the group does not know."""
        if instance_id is not None:
            current = self.static_members.get(instance_id)
            if current is None:
                return ErrorCode.unknown_member_id
            if current != member_id:
                return ErrorCode.fenced_instance_id
            return None
        if member_id not in self.members:
            return ErrorCode.unknown_member_id
        return None

    def validate_offset_commit(
        self,
        member_id: str,
        instance_id: str | None,
        generation_id: int,
        *,
        transactional: bool = False,
    ) -> ErrorCode | None:
        """Kafka's checks; a transactional commit (TxnOffsetCommit) skips the two that
        depend on the group's state, since before v3 it carries no member id or generation
        and a producer's transaction does not wait for a rebalance."""
        if self.state is GroupState.DEAD:
            return ErrorCode.coordinator_not_available
        if generation_id < 0 and self.state is GroupState.EMPTY:
            # Admin tools and consumers without group management ("simple" groups)
            # may commit while nobody is a member.
            return None
        if generation_id >= 0 or member_id or instance_id is not None:
            err = self.validate_member(member_id, instance_id)
            if err is not None:
                return err
            if generation_id != self.generation:
                return ErrorCode.illegal_generation
        elif self.state is not GroupState.EMPTY and not transactional:
            # Without member id and generation, only an empty group accepts commits.
            return ErrorCode.unknown_member_id
        if self.state is GroupState.COMPLETING_REBALANCE and not transactional:
            # The member knows the new generation but has no assignment yet; it should
            # finish SyncGroup first. Clients handle this error by rejoining gracefully.
            return ErrorCode.rebalance_in_progress
        return None

    # --- offsets -------------------------------------------------------------------

    def apply_offset(self, tp: TopicPartition, value: CommittedOffset, seq: int) -> None:
        """Commit ``value``, written at log offset ``seq``, unless a later record set it."""
        if self.offset_seq.get(tp, -1) < seq:
            self.offsets[tp] = value
            self.offset_seq[tp] = seq

    def remove_offset(self, tp: TopicPartition) -> None:
        """What an offset tombstone does (Kafka's replay): the committed offset goes, and
        so does every transaction's pending offset for the partition."""
        self.offsets.pop(tp, None)
        self.offset_seq.pop(tp, None)
        for producer_id, pending in list(self.pending_txn_offsets.items()):
            pending.pop(tp, None)
            if not pending:
                del self.pending_txn_offsets[producer_id]

    def add_txn_offset(
        self, producer_id: int, tp: TopicPartition, value: CommittedOffset, record_offset: int
    ) -> None:
        pending = self.pending_txn_offsets.setdefault(producer_id, {})
        pending[tp] = PendingTxnOffset(record_offset, value)

    def complete_txn(self, producer_id: int, commit: bool) -> bool:
        """The producer's transaction ended: its offsets become committed (where no later
        plain commit exists) or are dropped. False if it had none in this group."""
        pending = self.pending_txn_offsets.pop(producer_id, None)
        if pending is None:
            return False
        if commit:
            for tp, p in pending.items():
                self.apply_offset(tp, p.value, p.record_offset)
        return True

    def pending_txn_partitions(self) -> set[TopicPartition]:
        """Partitions with a transactional commit awaiting its marker."""
        return {tp for pending in self.pending_txn_offsets.values() for tp in pending}

    def expired_offsets(self, now_ms: int, retention_ms: int) -> list[TopicPartition]:
        """Offsets due for removal, following Kafka's rules (KIP-211): in an empty group,
        retention counts from when it became empty; in a stable consumer group, only
        offsets of topics it no longer subscribes to expire; simple groups count from
        the commit."""
        use_state_time = False
        keep: frozenset[str] = frozenset()
        if self.protocol_type is not None and self.state is GroupState.EMPTY:
            use_state_time = True
        elif (
            self.protocol_type == consumer_protocol.PROTOCOL_TYPE
            and self.subscribed_topics is not None
            and self.state is GroupState.STABLE
        ):
            keep = self.subscribed_topics
        elif self.protocol_type is not None:
            return []
        out = []
        # An offset a transaction is about to replace stays until the transaction ends
        # (Kafka's cleanupExpiredOffsets).
        in_txn = self.pending_txn_partitions()
        for tp, o in self.offsets.items():
            if tp[0] in keep or self.pending_commits[tp] > 0 or tp in in_txn:
                continue
            if o.expire_timestamp is not None:
                expired = now_ms >= o.expire_timestamp
            else:
                base = o.commit_timestamp
                if use_state_time and self.state_timestamp is not None:
                    base = self.state_timestamp
                expired = now_ms - base >= retention_ms
            if expired:
                out.append(tp)
        return out

    # --- views ---------------------------------------------------------------------

    def summary(self) -> GroupSummary:
        # Like Kafka, metadata and assignments are only meaningful (and only shown) once
        # the group is Stable.
        if self.state is GroupState.STABLE and self.protocol_name is not None:
            protocol = self.protocol_name
            members = tuple(
                MemberSummary(
                    m.member_id,
                    m.group_instance_id,
                    m.client_id,
                    m.client_host,
                    m.metadata(protocol) if protocol in m.protocol_names() else b"",
                    m.assignment,
                )
                for m in self.members.values()
            )
            return GroupSummary(self.state.value, self.protocol_type or "", protocol, members)
        members = tuple(
            MemberSummary(m.member_id, m.group_instance_id, m.client_id, m.client_host, b"", b"")
            for m in self.members.values()
        )
        return GroupSummary(self.state.value, self.protocol_type or "", "", members)

    def overview(self) -> GroupOverview:
        return GroupOverview(self.group_id, self.protocol_type or "", self.state.value)

    def to_record(self, assignment: dict[str, bytes]) -> GroupValue:
        protocol = self.protocol_name
        members = tuple(
            MemberValue(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                m.metadata(protocol) if protocol is not None else b"",
                assignment.get(m.member_id, b""),
            )
            for m in self.members.values()
        )
        return GroupValue(
            protocol_type=self.protocol_type or "",
            generation=self.generation,
            protocol=protocol,
            leader=self.leader_id if self.members else None,
            current_state_timestamp=self.state_timestamp
            if self.state_timestamp is not None
            else -1,
            members=members,
        )

"""State of one group of the consumer group protocol (KIP-848): epochs, members, the
target assignment and who owns which partition now.

Pure data and the rules that look only at one group; no timers, no I/O. The group epoch
moves when membership, a subscription or the subscribed topics' metadata change; the
target assignment is computed for a group epoch (its *assignment epoch*); each member
reaches it at its own pace (reconciliation.py), so members are at different member
epochs while the group reconciles. ``partition_epochs`` knows, for every partition some
member holds (assigned or still to revoke), the epoch of that member: a partition is free
for its next owner only once it is absent from there.

Names and values are Kafka's: group states Empty/Assigning/Reconciling/Stable (and Dead),
member states STABLE(0)/UNREVOKED_PARTITIONS(1)/UNRELEASED_PARTITIONS(2) as stored in
``ConsumerGroupCurrentMemberAssignmentValue.State``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from odradek.broker.group.assignors import Assignment, Assignor, AssignorMember, TopicId

GROUP_TYPE = "consumer"
PROTOCOL_TYPE = "consumer"

# Member epochs with a meaning of their own in ConsumerGroupHeartbeat.
JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2


class ConsumerGroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


class MemberState(enum.IntEnum):
    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127


EMPTY_ASSIGNMENT: Mapping[TopicId, frozenset[int]] = {}


def normalize(assignment: Mapping[TopicId, frozenset[int] | set[int]]) -> dict[TopicId,
                                                                              frozenset[int]]:
    """The assignment without empty topics, with frozen partition sets (comparable)."""
    return {t: frozenset(ps) for t, ps in assignment.items() if ps}


def partition_count(assignment: Assignment) -> int:
    return sum(len(ps) for ps in assignment.values())


@dataclass(frozen=True, slots=True)
class ConsumerMember:
    """One member as the coordinator knows it. Immutable: every change makes a new value,
    so a change can be compared with what was (and written only if it differs)."""

    member_id: str
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: MemberState = MemberState.STABLE
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    rebalance_timeout_ms: int = -1
    server_assignor: str | None = None
    assigned: Mapping[TopicId, frozenset[int]] = field(default_factory=dict)
    pending_revocation: Mapping[TopicId, frozenset[int]] = field(default_factory=dict)

    def replace(self, **changes: object) -> ConsumerMember:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def metadata_key(self) -> tuple[object, ...]:
        """What ConsumerGroupMemberMetadataValue holds: a change means a new record."""
        return (self.instance_id, self.rack_id, self.client_id, self.client_host,
                self.subscribed_topic_names, self.subscribed_topic_regex,
                self.rebalance_timeout_ms, self.server_assignor)

    def assignment_key(self) -> tuple[object, ...]:
        """What ConsumerGroupCurrentMemberAssignmentValue holds."""
        return (self.member_epoch, self.previous_member_epoch, self.state,
                normalize(self.assigned), normalize(self.pending_revocation))

    def subscription_key(self) -> tuple[object, ...]:
        """A change here changes the target assignment: the group epoch moves."""
        return (frozenset(self.subscribed_topic_names), self.subscribed_topic_regex,
                self.server_assignor)


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    """What the assignment of a subscribed topic depends on."""

    topic_id: uuid.UUID
    name: str
    partitions: int


@dataclass(eq=False)
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    # member id -> its target assignment (for assignment_epoch)
    target: dict[str, dict[TopicId, frozenset[int]]] = field(default_factory=dict)
    # (topic id, partition) -> epoch of the member that holds it
    partition_epochs: dict[tuple[TopicId, int], int] = field(default_factory=dict)
    # instance id -> member id of static members
    static_members: dict[str, str] = field(default_factory=dict)
    # regex -> the topics it matches now (subscriptions by SubscribedTopicRegex), resolved
    # by the coordinator against the metadata at each heartbeat.
    resolved_regex: dict[str, frozenset[str]] = field(default_factory=dict)
    # The subscribed topics the target assignment was computed from; recorded as a hash
    # (ConsumerGroupMetadataValue.MetadataHash) so a new coordinator sees the same.
    metadata_hash: int = 0
    dead: bool = False

    # --- state -----------------------------------------------------------------------

    @property
    def state(self) -> ConsumerGroupState:
        if self.dead:
            return ConsumerGroupState.DEAD
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for m in self.members.values():
            if m.member_epoch != self.assignment_epoch or m.state is not MemberState.STABLE:
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def is_empty(self) -> bool:
        return not self.members

    def member_topics(self, member: ConsumerMember) -> frozenset[str]:
        """The topics the member subscribes to: by name, and those its regex matches."""
        names = frozenset(member.subscribed_topic_names)
        if member.subscribed_topic_regex:
            names |= self.resolved_regex.get(member.subscribed_topic_regex, frozenset())
        return names

    def subscribed_topic_names(self) -> frozenset[str]:
        return frozenset(n for m in self.members.values() for n in self.member_topics(m))

    def regexes(self) -> frozenset[str]:
        return frozenset(m.subscribed_topic_regex for m in self.members.values()
                         if m.subscribed_topic_regex)

    def preferred_assignor(self, default: str) -> str:
        """The assignor most members ask for (ties: by name), else ``default``, as Kafka
        picks it."""
        votes: dict[str, int] = {}
        for m in self.members.values():
            if m.server_assignor:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if not votes:
            return default
        return min(votes, key=lambda name: (-votes[name], name))

    # --- members -----------------------------------------------------------------------

    def current_partition_epoch(self, topic_id: TopicId, partition: int) -> int:
        """Epoch of the member holding the partition, -1 when nobody does."""
        return self.partition_epochs.get((topic_id, partition), -1)

    def update_member(self, member: ConsumerMember) -> None:
        """Put ``member`` in place of its previous value, moving its partitions' epochs."""
        old = self.members.get(member.member_id)
        if old is not None:
            self._release(old)
            if old.instance_id is not None and old.instance_id != member.instance_id:
                self.static_members.pop(old.instance_id, None)
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        for assignment in (member.assigned, member.pending_revocation):
            for topic, ps in assignment.items():
                for p in ps:
                    self.partition_epochs[(topic, p)] = member.member_epoch

    def remove_member(self, member_id: str) -> ConsumerMember | None:
        """Drop the member: its partitions are free at once, its target goes with it."""
        old = self.members.pop(member_id, None)
        if old is None:
            return None
        self._release(old)
        if old.instance_id is not None and self.static_members.get(old.instance_id) == member_id:
            del self.static_members[old.instance_id]
        self.target.pop(member_id, None)
        return old

    def _release(self, member: ConsumerMember) -> None:
        for assignment in (member.assigned, member.pending_revocation):
            for topic, ps in assignment.items():
                for p in ps:
                    # Only if the partition's epoch is still this member's: after a failed
                    # write two members may briefly claim one; never free another's.
                    if self.partition_epochs.get((topic, p)) == member.member_epoch:
                        del self.partition_epochs[(topic, p)]

    def member_by_instance(self, instance_id: str) -> ConsumerMember | None:
        member_id = self.static_members.get(instance_id)
        return None if member_id is None else self.members.get(member_id)

    def target_of(self, member_id: str) -> Mapping[TopicId, frozenset[int]]:
        return self.target.get(member_id, EMPTY_ASSIGNMENT)


def metadata_hash(topics: Mapping[str, TopicMetadata]) -> int:
    """A stable 63-bit hash of the subscribed topics' ids, names and partition counts:
    equal hashes mean the assignment inputs from metadata did not change. (Kafka 4.1 stores
    its own hash here; a coordinator reading another's hash only rebalances once.)"""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(topics):
        t = topics[name]
        h.update(f"{name}\0{t.topic_id}\0{t.partitions}\n".encode())
    return int.from_bytes(h.digest(), "big") >> 1


def compute_target(
    group: ConsumerGroup, topics: Mapping[str, TopicMetadata], assignor: Assignor
) -> dict[str, dict[TopicId, frozenset[int]]]:
    """The target assignment of every member of ``group`` from the metadata of the topics
    it subscribes to (``topics``, by name; a subscribed topic missing there does not
    exist), sticky to the current target."""
    members = {
        m.member_id: AssignorMember(
            m.member_id,
            frozenset(topics[n].topic_id for n in group.member_topics(m) if n in topics),
            group.target_of(m.member_id),
        )
        for m in group.members.values()
    }
    partitions = {t.topic_id: t.partitions for t in topics.values()}
    result = assignor.assign(members, partitions)
    return {m: normalize(result.get(m, {})) for m in group.members}

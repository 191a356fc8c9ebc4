"""How a member of a consumer group (KIP-848) moves towards its target assignment:
Kafka's CurrentAssignmentBuilder rules, as one pure function.

The two safety rules: a member reaches the target epoch only once it has stopped owning
what it must give up (it stays at its epoch in UNREVOKED_PARTITIONS, told to revoke), and
a partition is not handed to its new owner while another member still holds it (the new
owner waits in UNRELEASED_PARTITIONS and gets it at a later heartbeat, once released).
So no partition ever has two owners, and the members that keep partitions never stop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from odradek.broker.group.assignors import TopicId
from odradek.broker.group.consumer_group import ConsumerMember, MemberState, normalize


class FencedMemberEpoch(Exception):  # noqa: N818 - named for Kafka's error
    """The member claims partitions it cannot have at its epoch: FENCED_MEMBER_EPOCH."""


Owned = Mapping[TopicId, frozenset[int]]


def reconcile(
    member: ConsumerMember,
    target_epoch: int,
    target: Mapping[TopicId, frozenset[int]],
    partition_epoch: Callable[[TopicId, int], int],
    owned: Owned | None,
) -> ConsumerMember:
    """The member after one step towards ``target`` (computed for ``target_epoch``).
    ``partition_epoch(t, p)`` is the epoch of whoever holds the partition (-1: free);
    ``owned`` is what the member says it owns in this heartbeat (None: not said)."""
    if member.state is MemberState.STABLE:
        if member.member_epoch != target_epoch:
            return _next(member, member.member_epoch, target_epoch, target, partition_epoch,
                         owned)
        return member
    if member.state is MemberState.UNREVOKED_PARTITIONS:
        if _owns_any(owned, member.pending_revocation):
            return member
        return _next(member, member.member_epoch, target_epoch, target, partition_epoch, owned)
    if member.state is MemberState.UNRELEASED_PARTITIONS:
        return _next(member, member.member_epoch, target_epoch, target, partition_epoch, owned)
    # UNKNOWN: only a member that owns nothing can start over at the target.
    if owned:
        raise FencedMemberEpoch(f"member {member.member_id} is in an unknown state")
    return _next(member, target_epoch, target_epoch, target, partition_epoch, owned)


def _owns_any(owned: Owned | None, partitions: Mapping[TopicId, frozenset[int]]) -> bool:
    """Whether the member may still own some of ``partitions``: it must say it does not."""
    if owned is None:
        return True
    return any(owned.get(t, frozenset()) & ps for t, ps in partitions.items())


def _next(
    member: ConsumerMember,
    member_epoch: int,
    target_epoch: int,
    target: Mapping[TopicId, frozenset[int]],
    partition_epoch: Callable[[TopicId, int], int],
    owned: Owned | None,
) -> ConsumerMember:
    assigned: dict[TopicId, set[int]] = {}
    revoke: dict[TopicId, set[int]] = {}
    unreleased = False
    for topic in {*target, *member.assigned}:
        want = target.get(topic, frozenset())
        have = member.assigned.get(topic, frozenset())
        keep = set(have & want)
        gone = have - want
        if gone:
            revoke[topic] = set(gone)
        for p in sorted(want - have):
            if partition_epoch(topic, p) == -1:
                keep.add(p)
            else:
                unreleased = True
        if keep:
            assigned[topic] = keep
    if revoke and _owns_any(owned, normalize(revoke)):
        # Revoke first, at the current epoch; the next step moves to the target epoch.
        return member.replace(
            state=MemberState.UNREVOKED_PARTITIONS,
            previous_member_epoch=member.member_epoch,
            member_epoch=member_epoch,
            assigned=normalize(assigned),
            pending_revocation=normalize(revoke),
        )
    state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    return member.replace(
        state=state,
        previous_member_epoch=member.member_epoch,
        member_epoch=target_epoch,
        assigned=normalize(assigned),
        pending_revocation={},
    )

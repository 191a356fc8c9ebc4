"""Admin views of the groups this node coordinates: ListGroups, DescribeGroups, DeleteGroups,
ConsumerGroupDescribe, and the read-only views metrics and tools use.

Groups of both protocols are listed and deleted here; a group id names one group, of
one type ("classic" or "consumer", ListGroups v5's GroupType). As in Kafka, DescribeGroups
describes classic groups only (a consumer group is "not found" there) and
ConsumerGroupDescribe consumer groups only."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from odradek.broker.group import consumer_records as cr
from odradek.broker.group.assignors import UNIFORM
from odradek.broker.group.clock import Clock
from odradek.broker.group.consumer_group import GROUP_TYPE as CONSUMER_TYPE
from odradek.broker.group.consumer_group import PROTOCOL_TYPE as CONSUMER_PROTOCOL
from odradek.broker.group.consumer_group import ConsumerGroup, ConsumerMember
from odradek.broker.group.consumer_membership import ConsumerMembership
from odradek.broker.group.group import ClassicGroup, GroupOverview, GroupState, GroupSummary
from odradek.broker.group.log import Record, admin_write_error
from odradek.broker.group.membership import Membership
from odradek.broker.group.records import group_key, offset_key
from odradek.broker.group.registry import (
    CONSUMER_GROUP_DESCRIBE,
    DELETE_GROUPS,
    DESCRIBE_GROUPS,
    GroupRegistry,
)

EMPTY = GroupState.EMPTY
DEAD = GroupState.DEAD


@dataclass(frozen=True, slots=True)
class ConsumerGroupView:
    """ConsumerGroupDescribe's view of a consumer group (members as they are now)."""

    group_id: str
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor_name: str
    members: tuple[tuple[ConsumerMember, dict[uuid.UUID, frozenset[int]]], ...]


class GroupAdmin:
    def __init__(self, registry: GroupRegistry, membership: Membership,
                 consumer: ConsumerMembership, clock: Clock) -> None:
        self._registry = registry
        # Deleting a group forgets its pending members, whose timers membership keeps.
        self._membership = membership
        self._consumer = consumer
        self._clock = clock

    def list_groups(
        self, states: Iterable[str] = (), types: Iterable[str] = ()
    ) -> list[GroupOverview]:
        """Groups of the partitions this node coordinates, filtered by state and type
        names (case-insensitive; empty filter = all)."""
        state_filter = {s.lower() for s in states}
        type_filter = {t.lower() for t in types}
        out = []
        if not type_filter or "classic" in type_filter:
            for group in self._registry.groups():
                partition = self._registry.partition_for(group.group_id)
                if group.is_(DEAD) or not self._registry.owns(partition):
                    continue
                if self._registry.consumer_group(group.group_id) is not None:
                    continue  # the offsets of a consumer group, listed as that below
                if state_filter and group.state.value.lower() not in state_filter:
                    continue
                out.append(group.overview())
        if not type_filter or CONSUMER_TYPE in type_filter:
            for cgroup in self._registry.consumer_groups():
                partition = self._registry.partition_for(cgroup.group_id)
                if cgroup.dead or not self._registry.owns(partition):
                    continue
                state = cgroup.state.value
                if state_filter and state.lower() not in state_filter:
                    continue
                out.append(GroupOverview(cgroup.group_id, CONSUMER_PROTOCOL, state,
                                         CONSUMER_TYPE))
        return out

    def list_groups_error(self) -> ErrorCode:
        if not self._registry.active:
            return ErrorCode.coordinator_not_available
        if self._registry.loading_partitions():
            return ErrorCode.coordinator_load_in_progress
        return ErrorCode.none

    def describe_group(self, group_id: str) -> tuple[ErrorCode, GroupSummary | None]:
        """(error, summary); summary None with no error means the group does not exist."""
        err = self._registry.status(group_id, DESCRIBE_GROUPS)
        if err is not None:
            return err, None
        if self._registry.consumer_group(group_id) is not None:
            return ErrorCode.none, None  # not a classic group: Kafka says not found
        group = self._registry.get(group_id)
        if group is None or group.is_(DEAD):
            return ErrorCode.none, None
        return ErrorCode.none, group.summary()

    def describe_consumer_group(self, group_id: str) -> tuple[ErrorCode, str | None,
                                                             ConsumerGroupView | None]:
        """ConsumerGroupDescribe of one group: (error, message, view)."""
        err = self._registry.status(group_id, CONSUMER_GROUP_DESCRIBE)
        if err is not None:
            return err, None, None
        group = self._registry.consumer_group(group_id)
        if group is None or group.dead:
            classic = self._registry.get(group_id)
            if classic is not None and not classic.is_(DEAD):
                return (ErrorCode.group_id_not_found,
                        f"Group {group_id} is not a consumer group.", None)
            return ErrorCode.group_id_not_found, f"Group {group_id} not found.", None
        return ErrorCode.none, None, ConsumerGroupView(
            group.group_id, group.state.value, group.group_epoch, group.assignment_epoch,
            group.preferred_assignor(UNIFORM),
            tuple((m, dict(group.target_of(m.member_id))) for m in group.members.values()))

    async def delete_groups(self, group_ids: Iterable[str]) -> dict[str, ErrorCode]:
        """DeleteGroups: remove empty groups and their offsets."""
        result: dict[str, ErrorCode] = {}
        by_partition: dict[int, list[ClassicGroup]] = {}
        consumer: dict[int, list[ConsumerGroup]] = {}
        for group_id in dict.fromkeys(group_ids):
            err = self._registry.status(group_id, DELETE_GROUPS)
            if err is not None:
                result[group_id] = err
                continue
            cgroup = self._registry.consumer_group(group_id)
            if cgroup is not None:
                if cgroup.members:
                    result[group_id] = ErrorCode.non_empty_group
                    continue
                consumer.setdefault(self._registry.partition_for(group_id), []).append(cgroup)
            group = self._registry.get(group_id)
            if cgroup is not None and group is None:
                # A consumer group without offsets: nothing classic to delete.
                by_partition.setdefault(self._registry.partition_for(group_id), [])
                continue
            if group is None or group.is_(DEAD):
                result[group_id] = ErrorCode.group_id_not_found
            elif not group.is_(EMPTY):
                result[group_id] = ErrorCode.non_empty_group
            else:
                # Dead at once, so joins and commits racing with the write are refused
                # (retriably) instead of landing in a group that is about to vanish.
                group.transition(DEAD, self._clock.now_ms())
                by_partition.setdefault(self._registry.partition_for(group_id), []).append(group)
        for partition, groups in by_partition.items():
            records: list[Record] = []
            cgroups = consumer.get(partition, [])
            for cgroup in cgroups:
                # Kafka's order: the target assignment, then the group.
                records += [(cr.key(cr.TARGET_ASSIGNMENT_METADATA, cgroup.group_id), None),
                            (cr.key(cr.GROUP_METADATA, cgroup.group_id), None)]
            for group in groups:
                # Kafka deletes a group's pending transactional offsets with it: their
                # tombstones make replay drop them, and the transaction's marker later
                # finds nothing to commit.
                doomed = [*group.offsets, *(group.pending_txn_partitions() - group.offsets.keys())]
                records += [(offset_key(group.group_id, t, p), None) for t, p in doomed]
                records.append((group_key(group.group_id), None))
            exc = await self._registry.append(partition, records)
            for group in groups:
                if exc is None:
                    self._registry.discard(group)
                    self._membership.cancel_pending_members(group)
                    result[group.group_id] = ErrorCode.none
                else:
                    # Nothing was deleted on disk: bring the group back as it was.
                    if self._registry.is_live(group):
                        group.state = EMPTY
                    result[group.group_id] = admin_write_error(exc)
            for cgroup in cgroups:
                if exc is None:
                    self._consumer.cancel_group_timers(cgroup)
                    self._registry.discard_consumer_group(cgroup)
                    result[cgroup.group_id] = ErrorCode.none
                else:
                    result[cgroup.group_id] = admin_write_error(exc)
        return result

    # --- views for metrics and tools -------------------------------------------------------

    def group_state(self, group_id: str) -> str | None:
        cgroup = self._registry.consumer_group(group_id)
        if cgroup is not None:
            return cgroup.state.value
        group = self._registry.get(group_id)
        return None if group is None else group.state.value

    def group_states(self) -> dict[str, str]:
        states = {g.group_id: g.state.value for g in self._registry.groups() if not g.is_(DEAD)}
        states.update({g.group_id: g.state.value for g in self._registry.consumer_groups()
                       if not g.dead})
        return states

    def group(self, group_id: str) -> ClassicGroup | None:
        """The live group object (read-only use: tests, diagnostics)."""
        return self._registry.get(group_id)

"""Admin views of the groups this node coordinates: ListGroups, DescribeGroups, DeleteGroups,
and the read-only views metrics and tools use."""

from __future__ import annotations

from collections.abc import Iterable

from kio.schema.errors import ErrorCode

from odradek.broker.group.clock import Clock
from odradek.broker.group.group import ClassicGroup, GroupOverview, GroupState, GroupSummary
from odradek.broker.group.log import Record, admin_write_error
from odradek.broker.group.membership import Membership
from odradek.broker.group.records import group_key, offset_key
from odradek.broker.group.registry import DELETE_GROUPS, DESCRIBE_GROUPS, GroupRegistry

EMPTY = GroupState.EMPTY
DEAD = GroupState.DEAD


class GroupAdmin:
    def __init__(self, registry: GroupRegistry, membership: Membership, clock: Clock) -> None:
        self._registry = registry
        # Deleting a group forgets its pending members, whose timers membership keeps.
        self._membership = membership
        self._clock = clock

    def list_groups(
        self, states: Iterable[str] = (), types: Iterable[str] = ()
    ) -> list[GroupOverview]:
        """Groups of the partitions this node coordinates, filtered by state and type
        names (case-insensitive; empty filter = all)."""
        state_filter = {s.lower() for s in states}
        type_filter = {t.lower() for t in types}
        if type_filter and "classic" not in type_filter:
            return []
        out = []
        for group in self._registry.groups():
            partition = self._registry.partition_for(group.group_id)
            if group.is_(DEAD) or not self._registry.owns(partition):
                continue
            if state_filter and group.state.value.lower() not in state_filter:
                continue
            out.append(group.overview())
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
        group = self._registry.get(group_id)
        if group is None or group.is_(DEAD):
            return ErrorCode.none, None
        return ErrorCode.none, group.summary()

    async def delete_groups(self, group_ids: Iterable[str]) -> dict[str, ErrorCode]:
        """DeleteGroups: remove empty groups and their offsets."""
        result: dict[str, ErrorCode] = {}
        by_partition: dict[int, list[ClassicGroup]] = {}
        for group_id in dict.fromkeys(group_ids):
            err = self._registry.status(group_id, DELETE_GROUPS)
            if err is not None:
                result[group_id] = err
                continue
            group = self._registry.get(group_id)
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
        return result

    # --- views for metrics and tools -------------------------------------------------------

    def group_state(self, group_id: str) -> str | None:
        group = self._registry.get(group_id)
        return None if group is None else group.state.value

    def group_states(self) -> dict[str, str]:
        return {g.group_id: g.state.value for g in self._registry.groups() if not g.is_(DEAD)}

    def group(self, group_id: str) -> ClassicGroup | None:
        """The live group object (read-only use: tests, diagnostics)."""
        return self._registry.get(group_id)

"""The group coordinator: Kafka's classic consumer group protocol and committed offsets.

Each group belongs to one partition of ``__consumer_offsets`` (see ``partition_for``); this
node coordinates the groups of the partitions it leads. The broker calls
``load_partition(p)`` when it becomes leader of partition ``p`` and ``unload_partition(p)``
when it stops; requests for groups elsewhere get NOT_COORDINATOR, and while a partition
replays its records they get COORDINATOR_LOAD_IN_PROGRESS.

:class:`GroupCoordinator` is the one object the broker holds; it builds the parts and
hands each request to the one that serves it:

* :mod:`~odradek.broker.group.registry` -- the partitions this node owns or is loading,
  the live groups, the writes to ``__consumer_offsets`` and the tasks they run in;
* :mod:`~odradek.broker.group.membership` -- JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
  rebalances and their timers;
* :mod:`~odradek.broker.group.offsets` -- OffsetCommit, OffsetFetch, OffsetDelete and
  offset expiry;
* :mod:`~odradek.broker.group.admin` -- ListGroups, DescribeGroups, DeleteGroups and the
  views metrics and tools read.

Shape of the code: the request methods change state synchronously and return either a
result or an ``asyncio.Future`` that a later event (another member joining, a timer, a log
append) resolves. Timers come from an injectable :class:`~odradek.broker.group.clock.Clock`.
Writes to the log happen in tasks the coordinator owns; ``settle()`` waits for them (tests,
shutdown).

What the broker must do:

* construct it with the ``GroupLog`` over ``__consumer_offsets`` and
  ``partition_exists(topic, partition)`` (commits to unknown partitions are refused);
* ``await load_partition(p)`` / ``unload_partition(p)`` on gaining / losing leadership of
  ``__consumer_offsets-p`` (idempotent; an unload during a load abandons it);
* ``await close()`` on shutdown (parked requests are answered, timers cancelled).

Durable writes: offset commits (answered after the append), group metadata after each
completed rebalance, when a group becomes empty and on a static member's replacement,
tombstones for deleted groups/offsets and for expired offsets (checked every
``offsets_retention_check_interval_ms``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

from kio.schema.errors import ErrorCode

from odradek.broker.group.admin import GroupAdmin
from odradek.broker.group.clock import Clock, LoopClock
from odradek.broker.group.group import (
    ClassicGroup,
    CommittedOffset,
    GroupOverview,
    GroupSummary,
    TopicPartition,
)
from odradek.broker.group.log import GroupLog
from odradek.broker.group.member import JoinResult, SyncResult
from odradek.broker.group.membership import LeavingMember, Membership
from odradek.broker.group.offsets import DEFAULT_RETENTION_MS, OffsetCommitEntry, OffsetStore
from odradek.broker.group.registry import GroupRegistry


class GroupCoordinator:
    def __init__(
        self,
        group_log: GroupLog,
        *,
        partition_exists: Callable[[str, int], bool],
        initial_rebalance_delay_ms: int = 3000,
        min_session_timeout_ms: int = 6000,
        max_session_timeout_ms: int = 1_800_000,
        max_group_size: int = 2**31 - 1,
        offsets_retention_ms: int = DEFAULT_RETENTION_MS,
        offsets_retention_check_interval_ms: int = 600_000,
        offset_metadata_max_bytes: int = 4096,
        new_member_join_timeout_ms: int = 300_000,
        clock: Clock | None = None,
        node_id: int | None = None,
        load_batch_size: int = 1000,
    ) -> None:
        clock = clock or LoopClock()
        prefix = f"[node {node_id}] " if node_id is not None else ""
        self._registry = GroupRegistry(group_log, load_batch_size=load_batch_size, log_prefix=prefix)
        self._membership = Membership(
            self._registry,
            clock,
            initial_rebalance_delay_ms=initial_rebalance_delay_ms,
            min_session_timeout_ms=min_session_timeout_ms,
            max_session_timeout_ms=max_session_timeout_ms,
            max_group_size=max_group_size,
            new_member_join_timeout_ms=new_member_join_timeout_ms,
            log_prefix=prefix,
        )
        self._offsets = OffsetStore(
            self._registry,
            self._membership,
            clock,
            partition_exists=partition_exists,
            offsets_retention_ms=offsets_retention_ms,
            offsets_retention_check_interval_ms=offsets_retention_check_interval_ms,
            offset_metadata_max_bytes=offset_metadata_max_bytes,
            log_prefix=prefix,
        )
        self._admin = GroupAdmin(self._registry, self._membership, clock)

    # --- partitions and lifecycle --------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        return self._registry.num_partitions

    def partition_for(self, group_id: str) -> int:
        return self._registry.partition_for(group_id)

    def owned_partitions(self) -> set[int]:
        return self._registry.owned_partitions()

    def loading_partitions(self) -> set[int]:
        return self._registry.loading_partitions()

    async def load_partition(self, partition: int) -> None:
        """Become coordinator for the groups of ``partition``: replay its records.

        Groups come back with their generation, protocol, members and assignments as of
        the last completed rebalance (like Kafka), and members must heartbeat within
        their session timeout to stay. Call when this node becomes the partition's leader.
        """
        self._offsets.start_expiry_timer()
        await self._registry.load(partition, self._membership.on_group_loaded)

    def unload_partition(self, partition: int) -> None:
        """Stop coordinating the groups of ``partition`` (this node lost its leadership).
        Parked requests get NOT_COORDINATOR so clients look up the new coordinator."""
        self._registry.unload(partition, self._membership.on_group_unloaded)

    async def close(self) -> None:
        self._offsets.stop_expiry_timer()
        await self._registry.close(self._membership.on_group_unloaded)

    async def settle(self) -> None:
        """Wait until every write the coordinator started has finished."""
        await self._registry.settle()

    # --- membership ----------------------------------------------------------------------

    def join_group(
        self,
        group_id: str,
        member_id: str,
        *,
        group_instance_id: str | None = None,
        client_id: str = "",
        client_host: str = "",
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        require_known_member_id: bool = True,
        supports_skip_assignment: bool = False,
        reason: str | None = None,
    ) -> asyncio.Future[JoinResult]:
        """Handle a JoinGroup. The future resolves when the rebalance completes (or at once
        for errors, MEMBER_ID_REQUIRED and rejoins that need no rebalance)."""
        return self._membership.join_group(
            group_id,
            member_id,
            group_instance_id=group_instance_id,
            client_id=client_id,
            client_host=client_host,
            session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            protocol_type=protocol_type,
            protocols=protocols,
            require_known_member_id=require_known_member_id,
            supports_skip_assignment=supports_skip_assignment,
            reason=reason,
        )

    def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        *,
        group_instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
        assignments: Mapping[str, bytes] | None = None,
    ) -> asyncio.Future[SyncResult]:
        """Handle a SyncGroup. Followers wait until the leader's assignment is durable."""
        return self._membership.sync_group(
            group_id,
            generation_id,
            member_id,
            group_instance_id=group_instance_id,
            protocol_type=protocol_type,
            protocol_name=protocol_name,
            assignments=assignments,
        )

    def heartbeat(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
    ) -> ErrorCode:
        return self._membership.heartbeat(group_id, generation_id, member_id, group_instance_id)

    def leave_group(
        self, group_id: str, leaving: Iterable[LeavingMember]
    ) -> tuple[ErrorCode, list[ErrorCode]]:
        """The top-level error and one error per leaving member, in order."""
        return self._membership.leave_group(group_id, leaving)

    # --- offsets -------------------------------------------------------------------------

    async def commit_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, OffsetCommitEntry],
        *,
        generation_id: int = -1,
        member_id: str = "",
        group_instance_id: str | None = None,
        retention_ms: int = -1,
        api_version: int = 9,
    ) -> dict[TopicPartition, ErrorCode]:
        """Commit offsets; answers per partition only once the write is durable."""
        return await self._offsets.commit_offsets(
            group_id,
            offsets,
            generation_id=generation_id,
            member_id=member_id,
            group_instance_id=group_instance_id,
            retention_ms=retention_ms,
            api_version=api_version,
        )

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None
    ) -> tuple[ErrorCode, list[tuple[TopicPartition, CommittedOffset | None]]]:
        """Committed offsets (None where nothing is committed); all of them when
        ``partitions`` is None."""
        return self._offsets.fetch_offsets(group_id, partitions)

    async def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        """OffsetDelete: drop committed offsets of topics the group no longer consumes."""
        return await self._offsets.delete_offsets(group_id, partitions)

    async def expire_offsets(self) -> int:
        """Remove offsets past ``offsets.retention`` now; how many were removed."""
        return await self._offsets.expire_offsets()

    def committed_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        return self._offsets.committed_offsets(group_id)

    # --- admin ---------------------------------------------------------------------------

    def list_groups(
        self, states: Iterable[str] = (), types: Iterable[str] = ()
    ) -> list[GroupOverview]:
        """Groups of the partitions this node coordinates, filtered by state and type
        names (case-insensitive; empty filter = all)."""
        return self._admin.list_groups(states, types)

    def list_groups_error(self) -> ErrorCode:
        return self._admin.list_groups_error()

    def describe_group(self, group_id: str) -> tuple[ErrorCode, GroupSummary | None]:
        """(error, summary); summary None with no error means the group does not exist."""
        return self._admin.describe_group(group_id)

    async def delete_groups(self, group_ids: Iterable[str]) -> dict[str, ErrorCode]:
        """DeleteGroups: remove empty groups and their offsets."""
        return await self._admin.delete_groups(group_ids)

    def group_state(self, group_id: str) -> str | None:
        return self._admin.group_state(group_id)

    def group_states(self) -> dict[str, str]:
        return self._admin.group_states()

    def group(self, group_id: str) -> ClassicGroup | None:
        """The live group object (read-only use: tests, diagnostics)."""
        return self._admin.group(group_id)

"""The committed-offset store: OffsetCommit, OffsetFetch, OffsetDelete and offset expiry.

Offsets are kept per group (``ClassicGroup.offsets``) and written to the group's partition
of ``__consumer_offsets``; a commit is answered only once its write is durable, and
commits apply in the order they were handed to the log, not the order their writes
finished. Offsets past ``offsets.retention`` are removed with tombstones, checked every
``offsets_retention_check_interval_ms`` (Kafka's rules, KIP-211: see
``ClassicGroup.expired_offsets``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from odradek.broker.group import consumer_protocol
from odradek.broker.group.clock import Clock, TimerHandle
from odradek.broker.group.group import ClassicGroup, CommittedOffset, GroupState, TopicPartition
from odradek.broker.group.log import Record, admin_write_error, offset_commit_error
from odradek.broker.group.membership import Membership
from odradek.broker.group.records import OffsetValue, encode_offset_value, group_key, offset_key
from odradek.broker.group.registry import (
    OFFSET_COMMIT,
    OFFSET_DELETE,
    OFFSET_FETCH,
    GroupRegistry,
)

log = logging.getLogger("odradek.group")

EMPTY = GroupState.EMPTY
PREPARING = GroupState.PREPARING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

DEFAULT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class OffsetCommitEntry:
    offset: int
    leader_epoch: int = -1
    metadata: str | None = None


class OffsetStore:
    def __init__(
        self,
        registry: GroupRegistry,
        membership: Membership,
        clock: Clock,
        *,
        partition_exists: Callable[[str, int], bool],
        offsets_retention_ms: int,
        offsets_retention_check_interval_ms: int,
        offset_metadata_max_bytes: int,
        log_prefix: str,
    ) -> None:
        self._registry = registry
        self._membership = membership
        self._clock = clock
        self._partition_exists = partition_exists
        self.offsets_retention_ms = offsets_retention_ms
        self.offsets_retention_check_interval_ms = offsets_retention_check_interval_ms
        self.offset_metadata_max_bytes = offset_metadata_max_bytes
        self._log_prefix = log_prefix
        self._commit_seq = itertools.count(1)
        self._expiry_timer: TimerHandle | None = None

    # --- commit, fetch, delete ------------------------------------------------------------

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
        result: dict[TopicPartition, ErrorCode] = {}
        valid: dict[TopicPartition, OffsetCommitEntry] = {}
        for tp, entry in offsets.items():
            if self._partition_exists(tp[0], tp[1]):
                valid[tp] = entry
            else:
                result[tp] = ErrorCode.unknown_topic_or_partition
        if not valid:
            return result
        err = self._registry.status(group_id, OFFSET_COMMIT)
        group = self._registry.get(group_id)
        created = False
        if err is None and group is None:
            if generation_id < 0:
                # A consumer that manages its own assignment ("simple" group) or an admin
                # tool: the group exists only to hold offsets.
                group = ClassicGroup(group_id, state_timestamp=self._clock.now_ms())
                self._registry.add(group)
                created = True
            else:
                # v9 clients understand GROUP_ID_NOT_FOUND; older ones expect this.
                err = (
                    ErrorCode.group_id_not_found
                    if api_version >= 9
                    else ErrorCode.illegal_generation
                )
        if err is None and group is not None:
            err = group.validate_offset_commit(member_id, group_instance_id, generation_id)
        if err is not None or group is None:
            for tp in valid:
                result[tp] = err or ErrorCode.unknown_server_error
            return result
        member = group.members.get(member_id)
        if member is not None and group.is_(STABLE, PREPARING):
            # A commit proves the member is alive, as a heartbeat would.
            self._membership.schedule_heartbeat(group, member)

        now = self._clock.now_ms()
        expire = now + retention_ms if retention_ms >= 0 else None
        records: list[Record] = []
        staged: dict[TopicPartition, CommittedOffset] = {}
        for tp, entry in valid.items():
            if entry.metadata is not None and len(entry.metadata) > self.offset_metadata_max_bytes:
                result[tp] = ErrorCode.offset_metadata_too_large
                continue
            value = CommittedOffset(
                entry.offset, entry.leader_epoch, entry.metadata or "", now, expire
            )
            staged[tp] = value
            records.append(
                (
                    offset_key(group_id, tp[0], tp[1]),
                    encode_offset_value(
                        OffsetValue(value.offset, value.leader_epoch, value.metadata, now, expire)
                    ),
                )
            )
        if not records:
            return result
        seq = next(self._commit_seq)
        for tp in staged:
            group.pending_commits[tp] += 1
        try:
            exc = await self._registry.append(self._registry.partition_for(group_id), records)
        finally:
            for tp in staged:
                group.pending_commits[tp] -= 1
                if group.pending_commits[tp] <= 0:
                    del group.pending_commits[tp]
        code = ErrorCode.none if exc is None else offset_commit_error(exc)
        if exc is None and self._registry.is_live(group):
            for tp, value in staged.items():
                group.apply_offset(tp, value, seq)
        elif exc is not None and created:
            self._drop_if_unused(group)
        for tp in staged:
            result[tp] = code
        return result

    def _drop_if_unused(self, group: ClassicGroup) -> None:
        if (
            self._registry.is_live(group)
            and group.is_(EMPTY)
            and not group.offsets
            and not group.pending_commits
            and not group.pending_members
            and group.protocol_type is None
            and group.generation == 0
        ):
            self._registry.discard(group)

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None
    ) -> tuple[ErrorCode, list[tuple[TopicPartition, CommittedOffset | None]]]:
        """Committed offsets (None where nothing is committed); all of them when
        ``partitions`` is None. Offsets are returned whatever the group's state, since
        groups may use Kafka only for offset storage."""
        err = self._registry.status(group_id, OFFSET_FETCH)
        if err is not None:
            return err, []
        group = self._registry.get(group_id)
        if group is None or group.is_(DEAD):
            return ErrorCode.none, [(tp, None) for tp in partitions or ()]
        if partitions is None:
            return ErrorCode.none, sorted(group.offsets.items())
        return ErrorCode.none, [(tp, group.offsets.get(tp)) for tp in partitions]

    async def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        """OffsetDelete: drop committed offsets of topics the group no longer consumes."""
        partitions = list(dict.fromkeys(partitions))
        err = self._registry.status(group_id, OFFSET_DELETE)
        if err is not None:
            return err, {}
        group = self._registry.get(group_id)
        if group is None or group.is_(DEAD):
            return ErrorCode.group_id_not_found, {}
        if not group.is_(EMPTY) and group.protocol_type != consumer_protocol.PROTOCOL_TYPE:
            # Without the consumer protocol we cannot tell what an active group reads.
            return ErrorCode.non_empty_group, {}
        result: dict[TopicPartition, ErrorCode] = {}
        to_delete: list[TopicPartition] = []
        for tp in partitions:
            if not self._partition_exists(tp[0], tp[1]):
                result[tp] = ErrorCode.unknown_topic_or_partition
            elif not group.is_(EMPTY) and group.is_subscribed_to_topic(tp[0]):
                result[tp] = ErrorCode.group_subscribed_to_topic
            else:
                result[tp] = ErrorCode.none
                if tp in group.offsets:
                    to_delete.append(tp)
        if to_delete:
            records: list[Record] = [(offset_key(group_id, t, p), None) for t, p in to_delete]
            exc = await self._registry.append(self._registry.partition_for(group_id), records)
            if exc is not None:
                code = admin_write_error(exc)
                for tp in result:
                    if result[tp] is ErrorCode.none:
                        result[tp] = code
            elif self._registry.is_live(group):
                for tp in to_delete:
                    group.offsets.pop(tp, None)
                    group.offset_seq.pop(tp, None)
        return ErrorCode.none, result

    # --- expiry ---------------------------------------------------------------------------

    def start_expiry_timer(self) -> None:
        """Check for expired offsets every interval from now on (until closed)."""
        if self._expiry_timer is None and self._registry.active:
            self._expiry_timer = self._clock.call_later(
                self.offsets_retention_check_interval_ms, self._on_expiry_tick
            )

    def stop_expiry_timer(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None

    def _on_expiry_tick(self) -> None:
        self._expiry_timer = None
        if not self._registry.active:
            return
        self._registry.spawn(self.expire_offsets())
        self.start_expiry_timer()

    async def expire_offsets(self) -> int:
        """Remove offsets past ``offsets.retention`` (and empty groups left with none),
        writing tombstones. Returns how many offsets were removed."""
        now = self._clock.now_ms()
        by_partition: dict[int, list[Record]] = {}
        removed = 0
        for group in self._registry.groups():
            partition = self._registry.partition_for(group.group_id)
            if not self._registry.owns(partition) or group.is_(DEAD):
                continue
            expired = group.expired_offsets(now, self.offsets_retention_ms)
            records = by_partition.setdefault(partition, [])
            for tp in expired:
                group.offsets.pop(tp, None)
                group.offset_seq.pop(tp, None)
                records.append((offset_key(group.group_id, tp[0], tp[1]), None))
            removed += len(expired)
            if (
                group.is_(EMPTY)
                and not group.offsets
                and not group.pending_commits
                and not group.pending_members
            ):
                group.transition(DEAD, now)
                self._registry.discard(group)
                records.append((group_key(group.group_id), None))
        for partition, records in by_partition.items():
            if records:
                # Best effort: the cache is already clean; tombstones that fail to land
                # only mean the offsets come back after a failover and expire again.
                await self._registry.append(partition, records)
        if removed:
            log.info("%sremoved %d expired offsets", self._log_prefix, removed)
        return removed

    # --- views for metrics and tools -------------------------------------------------------

    def committed_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        group = self._registry.get(group_id)
        if group is None or group.is_(DEAD):
            return {}
        # list(): also read by the metrics thread while commits land
        return {tp: o.offset for tp, o in list(group.offsets.items())}

"""The committed-offset store: OffsetCommit, TxnOffsetCommit, OffsetFetch, OffsetDelete
and offset expiry.

Offsets are kept per group (``ClassicGroup.offsets``) and written to the group's partition
of ``__consumer_offsets``; a commit is answered only once its write is durable, and
commits apply in log order (by the log offset of their record), not the order their
writes finished. Offsets past ``offsets.retention`` are removed with tombstones, checked
every ``offsets_retention_check_interval_ms`` (Kafka's rules, KIP-211: see
``ClassicGroup.expired_offsets``).

Transactional commits (KIP-98, KIP-447) are written as one transactional batch of the
producer and stay pending per producer id (``ClassicGroup.pending_txn_offsets``), unseen
by OffsetFetch, until the producer's transaction marker is durable on the partition: the
broker then calls ``complete_transaction`` (through
``GroupCoordinator.on_transaction_completed``). Expiry leaves alone an offset a
transaction is about to replace, and a group with an open transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from odradek.broker.group import consumer_protocol
from odradek.broker.group import consumer_records as cr
from odradek.broker.group.clock import Clock, TimerHandle
from odradek.broker.group.consumer_group import ConsumerGroup
from odradek.broker.group.group import ClassicGroup, CommittedOffset, GroupState, TopicPartition
from odradek.broker.group.log import Record, TxnProducer, admin_write_error, offset_commit_error
from odradek.broker.group.membership import Membership
from odradek.broker.group.records import OffsetValue, encode_offset_value, group_key, offset_key
from odradek.broker.group.registry import (
    OFFSET_COMMIT,
    OFFSET_DELETE,
    OFFSET_FETCH,
    TXN_OFFSET_COMMIT,
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


def consumer_commit_error(group: ConsumerGroup, member_id: str, member_epoch: int,
                          api_version: int) -> ErrorCode | None:
    """Kafka's checks of an OffsetCommit to a consumer group (KIP-848): without a member
    epoch only an empty group takes commits (admin tools, consumers without group
    management); a member commits at its current epoch (STALE_MEMBER_EPOCH otherwise,
    after which the client commits again at the epoch its next heartbeat gives it),
    with OffsetCommit v9 or later (older versions cannot say an epoch)."""
    if member_epoch < 0 and not group.members:
        return None
    member = group.members.get(member_id)
    if member is None:
        return ErrorCode.unknown_member_id
    if api_version < 9:
        return ErrorCode.unsupported_version
    if member_epoch != member.member_epoch:
        return ErrorCode.stale_member_epoch
    return None


def consumer_txn_commit_error(group: ConsumerGroup, member_id: str,
                              instance_id: str | None, member_epoch: int) -> ErrorCode | None:
    """TxnOffsetCommit to a consumer group (KIP-848), as Kafka checks it: without member id,
    epoch and instance id (before v3, or a producer not tied to the group) it is taken;
    else the member must exist and commit at its epoch. The producer does not know
    STALE_MEMBER_EPOCH, so a stale epoch is ILLEGAL_GENERATION here, as in Kafka."""
    if member_epoch < 0 and not member_id and instance_id is None:
        return None
    if member_epoch < 0 and not group.members:
        return None
    member = group.members.get(member_id)
    if member is None:
        return ErrorCode.unknown_member_id
    if member_epoch != member.member_epoch:
        return ErrorCode.illegal_generation
    return None


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
        result, valid = self._known_partitions(offsets)
        if not valid:
            return result
        # v9 clients understand GROUP_ID_NOT_FOUND; older ones expect ILLEGAL_GENERATION.
        missing = ErrorCode.group_id_not_found if api_version >= 9 else ErrorCode.illegal_generation
        consumer = self._registry.consumer_group(group_id) \
            if self._registry.status(group_id, OFFSET_COMMIT) is None else None
        if consumer is not None:
            # A consumer group (KIP-848): the member's epoch, not a generation, counts.
            err = consumer_commit_error(consumer, member_id, generation_id, api_version)
            if err is not None:
                return self._fail(result, valid, err)
            generation_id = -1  # checked; the offsets holder is a plain (simple) group
        group, created, err = self._group_for_commit(group_id, OFFSET_COMMIT, generation_id, missing)
        if err is None and group is not None and consumer is None:
            err = group.validate_offset_commit(member_id, group_instance_id, generation_id)
        if err is not None or group is None:
            return self._fail(result, valid, err)
        member = group.members.get(member_id) if consumer is None else None
        if member is not None and group.is_(STABLE, PREPARING):
            # A commit proves the member is alive, as a heartbeat would.
            self._membership.schedule_heartbeat(group, member)
        now = self._clock.now_ms()
        expire = now + retention_ms if retention_ms >= 0 else None
        staged, records = self._stage(group_id, valid, now, expire, result)
        if not records:
            return result
        written = await self._write(group, staged, records, None)
        if not isinstance(written, BaseException) and self._registry.is_live(group):
            for i, (tp, value) in enumerate(staged.items()):
                group.apply_offset(tp, value, written + i)
        elif isinstance(written, BaseException) and created:
            self._drop_if_unused(group)
        return self._answer(result, staged, written)

    async def commit_transactional_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, OffsetCommitEntry],
        *,
        producer_id: int,
        producer_epoch: int,
        generation_id: int = -1,
        member_id: str = "",
        group_instance_id: str | None = None,
    ) -> dict[TopicPartition, ErrorCode]:
        """TxnOffsetCommit: write the offsets as one transactional batch of the producer
        (the log refuses a fenced epoch) and keep them pending until the producer's
        transaction marker reaches this partition (``complete_transaction``)."""
        result, valid = self._known_partitions(offsets)
        if not valid:
            return result
        consumer = self._registry.consumer_group(group_id) \
            if self._registry.status(group_id, TXN_OFFSET_COMMIT) is None else None
        if consumer is not None:
            err = consumer_txn_commit_error(consumer, member_id, group_instance_id,
                                            generation_id)
            if err is not None:
                return self._fail(result, valid, err)
            generation_id = -1  # checked; the offsets holder is a plain (simple) group
        group, created, err = self._group_for_commit(
            group_id, TXN_OFFSET_COMMIT, generation_id, ErrorCode.illegal_generation
        )
        if err is None and group is not None and consumer is None:
            err = group.validate_offset_commit(
                member_id, group_instance_id, generation_id, transactional=True
            )
        if err is not None or group is None:
            return self._fail(result, valid, err)
        staged, records = self._stage(group_id, valid, self._clock.now_ms(), None, result)
        if not records:
            return result
        written = await self._write(group, staged, records, TxnProducer(producer_id, producer_epoch))
        if not isinstance(written, BaseException) and self._registry.is_live(group):
            for i, (tp, value) in enumerate(staged.items()):
                group.add_txn_offset(producer_id, tp, value, written + i)
        elif isinstance(written, BaseException) and created:
            self._drop_if_unused(group)
        return self._answer(result, staged, written)

    def complete_transaction(self, partition: int, producer_id: int, commit: bool) -> None:
        """The producer's COMMIT or ABORT marker is durable on ``partition``: its pending
        offsets in the groups of that partition become committed or are dropped. While
        the partition loads this waits for the load (whose read may end before the
        marker); on a partition this node does not coordinate there is nothing to do (a
        later load reads the marker from the log)."""
        if self._registry.is_loading(partition):
            self._registry.after_load(
                partition, lambda: self.complete_transaction(partition, producer_id, commit)
            )
            return
        if not self._registry.owns(partition):
            return
        for group in self._registry.groups():
            if (
                producer_id in group.pending_txn_offsets
                and self._registry.partition_for(group.group_id) == partition
                and group.complete_txn(producer_id, commit)
            ):
                log.debug(
                    "%s%s transactional offsets of producer %d in group %s",
                    self._log_prefix,
                    "committed" if commit else "aborted",
                    producer_id,
                    group.group_id,
                )

    def _known_partitions(
        self, offsets: Mapping[TopicPartition, OffsetCommitEntry]
    ) -> tuple[dict[TopicPartition, ErrorCode], dict[TopicPartition, OffsetCommitEntry]]:
        """(answers for partitions that do not exist, the entries of those that do)."""
        result: dict[TopicPartition, ErrorCode] = {}
        valid: dict[TopicPartition, OffsetCommitEntry] = {}
        for tp, entry in offsets.items():
            if self._partition_exists(tp[0], tp[1]):
                valid[tp] = entry
            else:
                result[tp] = ErrorCode.unknown_topic_or_partition
        return result, valid

    def _group_for_commit(
        self, group_id: str, api: int, generation_id: int, missing: ErrorCode
    ) -> tuple[ClassicGroup | None, bool, ErrorCode | None]:
        """(group, whether this created it, error): a commit without a generation to a
        group that does not exist creates a "simple" group; with one it gets ``missing``."""
        err = self._registry.status(group_id, api)
        if err is not None:
            return None, False, err
        group = self._registry.get(group_id)
        if group is not None:
            return group, False, None
        if generation_id >= 0:
            return None, False, missing
        # A consumer that manages its own assignment ("simple" group), an admin tool or a
        # transactional producer: the group exists only to hold offsets.
        group = ClassicGroup(group_id, state_timestamp=self._clock.now_ms())
        self._registry.add(group)
        return group, True, None

    @staticmethod
    def _fail(
        result: dict[TopicPartition, ErrorCode],
        valid: Mapping[TopicPartition, OffsetCommitEntry],
        err: ErrorCode | None,
    ) -> dict[TopicPartition, ErrorCode]:
        for tp in valid:
            result[tp] = err or ErrorCode.unknown_server_error
        return result

    def _stage(
        self,
        group_id: str,
        valid: Mapping[TopicPartition, OffsetCommitEntry],
        now: int,
        expire: int | None,
        result: dict[TopicPartition, ErrorCode],
    ) -> tuple[dict[TopicPartition, CommittedOffset], list[Record]]:
        """The offsets to write and their records, in the same order; oversized metadata
        is answered in ``result`` instead."""
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
        return staged, records

    async def _write(
        self,
        group: ClassicGroup,
        staged: Mapping[TopicPartition, CommittedOffset],
        records: list[Record],
        producer: TxnProducer | None,
    ) -> int | BaseException:
        # Counted while in flight, so expiry and cleanup leave the partitions alone.
        for tp in staged:
            group.pending_commits[tp] += 1
        try:
            return await self._registry.write(
                self._registry.partition_for(group.group_id), records, producer
            )
        finally:
            for tp in staged:
                group.pending_commits[tp] -= 1
                if group.pending_commits[tp] <= 0:
                    del group.pending_commits[tp]

    @staticmethod
    def _answer(
        result: dict[TopicPartition, ErrorCode],
        staged: Mapping[TopicPartition, CommittedOffset],
        written: int | BaseException,
    ) -> dict[TopicPartition, ErrorCode]:
        code = offset_commit_error(written) if isinstance(written, BaseException) else ErrorCode.none
        for tp in staged:
            result[tp] = code
        return result

    def _drop_if_unused(self, group: ClassicGroup) -> None:
        if (
            self._registry.is_live(group)
            and group.is_(EMPTY)
            and not group.offsets
            and not group.pending_commits
            and not group.pending_txn_offsets
            and not group.pending_members
            and group.protocol_type is None
            and group.generation == 0
        ):
            self._registry.discard(group)

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None,
        member_id: str | None = None, member_epoch: int = -1,
    ) -> tuple[ErrorCode, list[tuple[TopicPartition, CommittedOffset | None]]]:
        """Committed offsets (None where nothing is committed); all of them when
        ``partitions`` is None. Offsets are returned whatever the group's state, since
        groups may use Kafka only for offset storage. A member of a consumer group
        (OffsetFetch v9+, KIP-848) names itself and its epoch, which must be current."""
        err = self._registry.status(group_id, OFFSET_FETCH)
        if err is not None:
            return err, []
        consumer = self._registry.consumer_group(group_id)
        if consumer is not None and member_epoch >= 0:
            member = consumer.members.get(member_id or "")
            if member is None:
                return ErrorCode.unknown_member_id, []
            if member.member_epoch != member_epoch:
                return ErrorCode.stale_member_epoch, []
        group = self._registry.get(group_id)
        if group is None or group.is_(DEAD):
            return ErrorCode.none, [(tp, None) for tp in partitions or ()]
        if partitions is None:
            return ErrorCode.none, sorted(group.offsets.items())
        return ErrorCode.none, [(tp, group.offsets.get(tp)) for tp in partitions]

    def unstable_partitions(self, group_id: str) -> set[TopicPartition]:
        """Partitions of the group with a transactional commit awaiting its marker: an
        OffsetFetch with require_stable (v7+) answers them UNSTABLE_OFFSET_COMMIT, so a
        consumer starting up does not read from an offset a transaction may still move."""
        group = self._registry.get(group_id)
        if group is None or group.is_(DEAD):
            return set()
        return group.pending_txn_partitions()

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
        consumer = self._registry.consumer_group(group_id)
        # A consumer group (KIP-848) keeps the offsets of the topics its members subscribe
        # to; its offsets live in a memberless holder here.
        subscribed = consumer.subscribed_topic_names() if consumer is not None else frozenset()
        if not group.is_(EMPTY) and group.protocol_type != consumer_protocol.PROTOCOL_TYPE:
            # Without the consumer protocol we cannot tell what an active group reads.
            return ErrorCode.non_empty_group, {}
        result: dict[TopicPartition, ErrorCode] = {}
        to_delete: list[TopicPartition] = []
        for tp in partitions:
            if not self._partition_exists(tp[0], tp[1]):
                result[tp] = ErrorCode.unknown_topic_or_partition
            elif (not group.is_(EMPTY) and group.is_subscribed_to_topic(tp[0])) \
                    or tp[0] in subscribed:
                result[tp] = ErrorCode.group_subscribed_to_topic
            else:
                result[tp] = ErrorCode.none
                # A pending transactional offset is deleted too (Kafka writes the
                # tombstone for it as well, and replay drops it then).
                if tp in group.offsets or tp in group.pending_txn_partitions():
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
                    group.remove_offset(tp)
        return ErrorCode.none, result

    def _owned_live_groups(self) -> Iterator[tuple[int, ClassicGroup]]:
        """(offsets partition, group) of the live groups this node coordinates now."""
        for group in self._registry.groups():
            partition = self._registry.partition_for(group.group_id)
            if self._registry.owns(partition) and not group.is_(DEAD):
                yield partition, group

    async def forget_deleted_topics(self, topics: Collection[str]) -> int:
        """Topics were deleted: every group coordinated here forgets its offsets of them,
        committed and pending in transactions, with tombstones (Kafka's
        onPartitionsDeleted). A topic created again under the name then starts without
        them: its consumers follow auto.offset.reset instead of resuming at positions of
        the old log. Returns how many offsets were removed."""
        by_partition: dict[int, list[Record]] = {}
        removed = 0
        for partition, group in self._owned_live_groups():
            gone = sorted(tp for tp in {*group.offsets, *group.pending_txn_partitions()}
                          if tp[0] in topics)
            if not gone:
                continue
            records = by_partition.setdefault(partition, [])
            for tp in gone:
                group.remove_offset(tp)
                records.append((offset_key(group.group_id, tp[0], tp[1]), None))
            removed += len(gone)
        for partition, records in by_partition.items():
            # Best effort, as for expiry: the cache is already clean; tombstones that fail
            # to land leave the offsets in the log until they expire.
            await self._registry.append(partition, records)
        if removed:
            log.info("%sremoved %d offsets of deleted topics %s", self._log_prefix, removed,
                     sorted(topics))
        return removed

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
        for partition, group in self._owned_live_groups():
            consumer = self._registry.consumer_group(group.group_id)
            if consumer is not None and consumer.members:
                # A consumer group (KIP-848) with members keeps its offsets, as Kafka
                # does (it does not look at which topics they subscribe to).
                continue
            expired = group.expired_offsets(now, self.offsets_retention_ms)
            records = by_partition.setdefault(partition, [])
            for tp in expired:
                group.remove_offset(tp)
                records.append((offset_key(group.group_id, tp[0], tp[1]), None))
            removed += len(expired)
            if (
                group.is_(EMPTY)
                and not group.offsets
                and not group.pending_commits
                and not group.pending_members
                # An open transaction keeps its group (Kafka's cleanupExpiredOffsets).
                and not group.pending_txn_offsets
            ):
                group.transition(DEAD, now)
                self._registry.discard(group)
                records.append((group_key(group.group_id), None))
        for cgroup in self._registry.consumer_groups():
            partition = self._registry.partition_for(cgroup.group_id)
            holder = self._registry.get(cgroup.group_id)
            if cgroup.members or not self._registry.owns(partition) or (
                    holder is not None and not holder.is_(DEAD) and (
                        holder.offsets or holder.pending_commits
                        or holder.pending_txn_offsets)):
                continue
            # An empty consumer group without offsets left goes, as in Kafka.
            self._registry.discard_consumer_group(cgroup)
            by_partition.setdefault(partition, []).extend([
                (cr.key(cr.TARGET_ASSIGNMENT_METADATA, cgroup.group_id), None),
                (cr.key(cr.GROUP_METADATA, cgroup.group_id), None)])
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

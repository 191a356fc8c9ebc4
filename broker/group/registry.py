"""The groups this node coordinates, and its partitions of ``__consumer_offsets``.

The one owner of what the coordinator's parts (membership, offsets, admin) share: which
partitions this node owns or is still loading, each under a load epoch; the live group
objects of those partitions; the writes to them; and the tasks those writes run in.

A load or write that started under an epoch the partition no longer has is stale: a load
is abandoned, a write answers NOT_COORDINATOR. Loading replays the partition's records
(:class:`~odradek.broker.group.loading.Replay`) a batch at a time, so requests meanwhile
get COORDINATOR_LOAD_IN_PROGRESS instead of waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine

from kio.schema.errors import ErrorCode

from odradek.broker.group.consumer_group import ConsumerGroup
from odradek.broker.group.group import ClassicGroup, GroupState
from odradek.broker.group.loading import Replay
from odradek.broker.group.log import GroupLog, Record, TxnProducer
from odradek.broker.group.partitioning import partition_for
from odradek.broker.group.records import RecordFormatError

log = logging.getLogger("odradek.group")

# API keys, for the per-API rules in GroupRegistry.status.
JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP = 11, 12, 13, 14
OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_GROUPS, DELETE_GROUPS, OFFSET_DELETE = 8, 9, 15, 42, 47
TXN_OFFSET_COMMIT = 28
# Kafka accepts the empty group id where it only names stored state (offsets, describe,
# delete), for compatibility with old clients; membership APIs need a real id.
_EMPTY_ID_ALLOWED = frozenset({OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_GROUPS, DELETE_GROUPS})

CONSUMER_GROUP_HEARTBEAT, CONSUMER_GROUP_DESCRIBE = 68, 69

GroupCallback = Callable[[ClassicGroup], None]
ConsumerGroupCallback = Callable[[ConsumerGroup], None]


def _ignore(group: ConsumerGroup) -> None:
    pass


class NotCoordinator(Exception):
    """The partition was lost before or during a write."""

    error_code = ErrorCode.not_coordinator


class GroupRegistry:
    def __init__(self, group_log: GroupLog, *, load_batch_size: int, log_prefix: str) -> None:
        self._log = group_log
        self._load_batch = max(load_batch_size, 1)
        self._log_prefix = log_prefix
        self._groups: dict[str, ClassicGroup] = {}
        # Groups of the consumer group protocol (KIP-848). A group id names at most one
        # group with members: a consumer group's committed offsets stay in a
        # ClassicGroup of the same id, which then has no members and no protocol (the
        # classic side of the coordinator refuses that id while the consumer group has
        # members; see Membership.join_group).
        self._consumer: dict[str, ConsumerGroup] = {}
        # partition -> load epoch; a load or write that started under another epoch is stale.
        self._owned: dict[int, int] = {}
        self._loading: dict[int, int] = {}
        self._epochs = itertools.count(1)
        self._active = True
        self._tasks: set[asyncio.Task[object]] = set()
        # What must happen to a partition's groups once its load finishes (transactions
        # that completed while it was being read; see after_load).
        self._after_load: dict[int, list[Callable[[], None]]] = {}

    # --- partitions ----------------------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        return self._log.num_partitions

    @property
    def active(self) -> bool:
        """False once closed: nothing loads any more and requests are refused."""
        return self._active

    def partition_for(self, group_id: str) -> int:
        return partition_for(group_id, self._log.num_partitions)

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    def owned_partitions(self) -> set[int]:
        return set(self._owned)

    def loading_partitions(self) -> set[int]:
        return set(self._loading)

    def is_loading(self, partition: int) -> bool:
        return partition in self._loading

    def after_load(self, partition: int, action: Callable[[], None]) -> None:
        """Run ``action`` once the load of ``partition`` (in progress) has made its groups
        live; dropped if the load is abandoned (the next load reads the log again)."""
        self._after_load.setdefault(partition, []).append(action)

    def status(self, group_id: str, api: int) -> ErrorCode | None:
        """Why this node cannot serve ``api`` for ``group_id`` now, or None if it can."""
        if not group_id and api not in _EMPTY_ID_ALLOWED:
            return ErrorCode.invalid_group_id
        if not self._active:
            return ErrorCode.coordinator_not_available
        p = self.partition_for(group_id)
        if p in self._loading:
            return ErrorCode.coordinator_load_in_progress
        if p not in self._owned:
            return ErrorCode.not_coordinator
        return None

    async def load(self, partition: int, on_loaded: GroupCallback,
                   on_consumer_loaded: ConsumerGroupCallback = _ignore) -> None:
        """Replay ``partition`` and take over its groups, calling ``on_loaded`` for each
        as it goes live. Nothing happens if the partition is owned or loading already, or
        if it is unloaded before the replay finishes."""
        if not self._active or partition in self._owned or partition in self._loading:
            return
        epoch = next(self._epochs)
        self._loading[partition] = epoch
        try:
            replayed = await self._replay(partition, epoch)
        except Exception:
            log.exception("%sloading __consumer_offsets-%d failed", self._log_prefix, partition)
            if self._loading.get(partition) == epoch:
                del self._loading[partition]
                self._after_load.pop(partition, None)
            return
        if replayed is None or self._loading.get(partition) != epoch:
            return  # unloaded (and maybe reloaded) while we were reading
        groups, consumer_groups = replayed
        del self._loading[partition]
        self._owned[partition] = epoch
        for group in groups:
            self._groups[group.group_id] = group
            on_loaded(group)
        for cgroup in consumer_groups:
            self._consumer[cgroup.group_id] = cgroup
            on_consumer_loaded(cgroup)
        for action in self._after_load.pop(partition, []):
            action()
        log.info(
            "%sloaded %d groups from __consumer_offsets-%d",
            self._log_prefix,
            len(groups) + len(consumer_groups),
            partition,
        )

    def unload(self, partition: int, on_unloaded: GroupCallback,
               on_consumer_unloaded: ConsumerGroupCallback = _ignore) -> None:
        """Drop the groups of ``partition``, calling ``on_unloaded`` (classic) or
        ``on_consumer_unloaded`` (consumer groups) for each."""
        was_loading = self._loading.pop(partition, None) is not None
        self._after_load.pop(partition, None)
        if self._owned.pop(partition, None) is None and not was_loading:
            return
        unloaded = 0
        for group_id, group in list(self._groups.items()):
            if self.partition_for(group_id) == partition:
                del self._groups[group_id]
                on_unloaded(group)
                unloaded += 1
        for group_id, cgroup in list(self._consumer.items()):
            if self.partition_for(group_id) == partition:
                del self._consumer[group_id]
                cgroup.dead = True
                on_consumer_unloaded(cgroup)
                unloaded += 1
        log.info(
            "%sunloaded %d groups of __consumer_offsets-%d",
            self._log_prefix,
            unloaded,
            partition,
        )

    async def close(self, on_unloaded: GroupCallback,
                    on_consumer_unloaded: ConsumerGroupCallback = _ignore) -> None:
        """Refuse everything from now on, unload every partition, cancel the writes."""
        self._active = False
        for p in list(self._owned) + list(self._loading):
            self.unload(p, on_unloaded, on_consumer_unloaded)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _replay(self, partition: int, epoch: int
                      ) -> tuple[list[ClassicGroup], list[ConsumerGroup]] | None:
        replay = Replay()
        for i, entry in enumerate(self._log.read(partition)):
            if i and i % self._load_batch == 0:
                # Let requests (answered COORDINATOR_LOAD_IN_PROGRESS) through meanwhile.
                await asyncio.sleep(0)
                if self._loading.get(partition) != epoch:
                    return None
            try:
                replay.apply(entry)
            except RecordFormatError as e:
                log.warning(
                    "%sskipping undecodable record in __consumer_offsets-%d: %s",
                    self._log_prefix,
                    partition,
                    e,
                )
        return replay.groups(), replay.consumer_groups()

    # --- groups --------------------------------------------------------------------------

    def get(self, group_id: str) -> ClassicGroup | None:
        return self._groups.get(group_id)

    def groups(self) -> list[ClassicGroup]:
        return list(self._groups.values())

    def add(self, group: ClassicGroup) -> None:
        self._groups[group.group_id] = group

    def discard(self, group: ClassicGroup) -> None:
        """Forget ``group`` if it is still the live object for its id."""
        if self._groups.get(group.group_id) is group:
            del self._groups[group.group_id]

    def is_live(self, group: ClassicGroup) -> bool:
        """Whether ``group`` is still the object registered for its id."""
        return self._groups.get(group.group_id) is group

    def current(self, group: ClassicGroup) -> bool:
        """Whether ``group`` is still the live object for its id (timers and writes that
        finish late must not touch a group that was unloaded, deleted or replaced)."""
        return self._groups.get(group.group_id) is group and group.state is not GroupState.DEAD

    # --- consumer groups (KIP-848) ------------------------------------------------------

    def consumer_group(self, group_id: str) -> ConsumerGroup | None:
        return self._consumer.get(group_id)

    def consumer_groups(self) -> list[ConsumerGroup]:
        return list(self._consumer.values())

    def add_consumer_group(self, group: ConsumerGroup) -> None:
        self._consumer[group.group_id] = group

    def discard_consumer_group(self, group: ConsumerGroup) -> None:
        if self._consumer.get(group.group_id) is group:
            del self._consumer[group.group_id]
        group.dead = True

    def consumer_current(self, group: ConsumerGroup) -> bool:
        """Whether ``group`` is still the live consumer group for its id."""
        return self._consumer.get(group.group_id) is group and not group.dead

    # --- writes --------------------------------------------------------------------------

    async def append(self, partition: int, records: list[Record]) -> BaseException | None:
        """Append to the log; the exception if it failed or we lost the partition meanwhile."""
        written = await self.write(partition, records)
        return written if isinstance(written, BaseException) else None

    async def write(
        self, partition: int, records: list[Record], producer: TxnProducer | None = None
    ) -> int | BaseException:
        """Append to the log: the log offset of the first record, or the exception if it
        failed or we lost the partition meanwhile."""
        epoch = self._owned.get(partition)
        if epoch is None:
            return NotCoordinator()
        try:
            first = await self._log.append(partition, records, producer)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning(
                "%swrite to __consumer_offsets-%d failed: %r", self._log_prefix, partition, e
            )
            return e
        if self._owned.get(partition) != epoch:
            return NotCoordinator()
        return first

    def spawn(self, coro: Coroutine[object, object, object]) -> None:
        """Run ``coro`` (a write and what follows it) as a task the registry owns."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def settle(self) -> None:
        """Wait until every task spawned here has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%sgroup coordinator task failed", self._log_prefix, exc_info=task.exception()
            )

"""The transactional ids this node coordinates, and its partitions of ``__transaction_state``.

The one owner of what the coordinator's parts share: which partitions this node owns or is
still loading, each under its coordinator epoch (the partition's leader epoch); the
metadata of their transactional ids; the writes to them; the tasks those writes and the
marker sending run in, and the clock those tasks wait on.

A write or a marker task that started under a coordinator epoch the partition no longer
has (unloaded, or loaded again at a newer epoch) is stale: its result is dropped and the
client gets NOT_COORDINATOR. Loading replays a partition's records a batch at a time, so
requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS instead of waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from odradek.broker.group.clock import Clock
from odradek.broker.group.partitioning import partition_for
from odradek.broker.txn.loading import Replay
from odradek.broker.txn.log import TRANSACTION_STATE_TOPIC, LogAppendError, Record, TxnLog
from odradek.broker.txn.metadata import TransactionMetadata
from odradek.broker.txn.records import RecordFormatError, UnknownVersionError

log = logging.getLogger("odradek.txn")


@dataclass(slots=True)
class _Partition:
    coordinator_epoch: int
    txns: dict[str, TransactionMetadata] = field(default_factory=dict)


class TxnRegistry:
    def __init__(
        self, txn_log: TxnLog, clock: Clock, *, load_batch_size: int, log_prefix: str
    ) -> None:
        self._log = txn_log
        self._clock = clock
        self._load_batch = max(load_batch_size, 1)
        self.log_prefix = log_prefix
        self._owned: dict[int, _Partition] = {}
        # partition -> (coordinator epoch, load token); a load whose token is gone is stale.
        self._loading: dict[int, tuple[int, int]] = {}
        self._tokens = itertools.count(1)
        self._active = True
        self._tasks: dict[asyncio.Task[object], int | None] = {}
        # Tasks waiting on the clock (a backoff): idle as far as settle() is concerned.
        self._parked: set[asyncio.Task[object]] = set()
        self._changed: asyncio.Event | None = None

    # --- partitions ----------------------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        return self._log.num_partitions

    @property
    def active(self) -> bool:
        return self._active

    def partition_for(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self._log.num_partitions)

    def owned_partitions(self) -> set[int]:
        return set(self._owned)

    def loading_partitions(self) -> set[int]:
        return set(self._loading)

    def coordinator_epoch(self, partition: int) -> int | None:
        p = self._owned.get(partition)
        return None if p is None else p.coordinator_epoch

    def status(self, transactional_id: str) -> ErrorCode | None:
        """Why this node cannot serve ``transactional_id`` now, or None if it can."""
        if not self._active:
            return ErrorCode.coordinator_not_available
        p = self.partition_for(transactional_id)
        if p in self._loading:
            return ErrorCode.coordinator_load_in_progress
        if p not in self._owned:
            return ErrorCode.not_coordinator
        return None

    async def load(
        self, partition: int, coordinator_epoch: int
    ) -> list[TransactionMetadata] | None:
        """Replay ``partition`` and take over its transactional ids at ``coordinator_epoch``;
        the loaded metadata, or None if nothing was loaded: the partition is owned or
        loading at this epoch or a newer one already, or it was unloaded (or loaded again)
        before the replay finished. A newer epoch replaces what an older one loaded."""
        if not self._active:
            return None
        owned = self._owned.get(partition)
        if owned is not None:
            if owned.coordinator_epoch >= coordinator_epoch:
                return None
            self.unload(partition)
        loading = self._loading.get(partition)
        if loading is not None and loading[0] >= coordinator_epoch:
            return None
        token = next(self._tokens)
        self._loading[partition] = (coordinator_epoch, token)
        try:
            txns = await self._replay(partition, token)
        except Exception:
            log.exception(
                "%sloading %s-%d failed", self.log_prefix, TRANSACTION_STATE_TOPIC, partition
            )
            if self._loading.get(partition, (0, 0))[1] == token:
                del self._loading[partition]
            return None
        if txns is None or self._loading.get(partition) != (coordinator_epoch, token):
            return None
        del self._loading[partition]
        self._owned[partition] = _Partition(coordinator_epoch, txns)
        log.info(
            "%sloaded %d transactional ids from %s-%d at coordinator epoch %d",
            self.log_prefix,
            len(txns),
            TRANSACTION_STATE_TOPIC,
            partition,
            coordinator_epoch,
        )
        return list(txns.values())

    def unload(self, partition: int, coordinator_epoch: int | None = None) -> None:
        """Drop the transactional ids of ``partition`` (or abandon its load). With
        ``coordinator_epoch``, only what was loaded at that epoch or an older one: a late
        resignation must not drop a newer leadership."""
        loading = self._loading.get(partition)
        if loading is not None and (coordinator_epoch is None or loading[0] <= coordinator_epoch):
            del self._loading[partition]
        owned = self._owned.get(partition)
        if owned is None or (
            coordinator_epoch is not None and owned.coordinator_epoch > coordinator_epoch
        ):
            return
        del self._owned[partition]
        # Tasks of the partition that wait on the clock are stopped now; the ones in the
        # middle of a write or a marker request find out they are stale when it returns.
        for task, p in list(self._tasks.items()):
            if p == partition and task in self._parked:
                task.cancel()
        log.info(
            "%sunloaded %d transactional ids of %s-%d",
            self.log_prefix,
            len(owned.txns),
            TRANSACTION_STATE_TOPIC,
            partition,
        )

    async def close(self) -> None:
        """Refuse everything from now on, unload every partition, cancel the tasks."""
        self._active = False
        for p in list(self._owned) + list(self._loading):
            self.unload(p)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _replay(self, partition: int, token: int) -> dict[str, TransactionMetadata] | None:
        replay = Replay()
        for i, (key, value) in enumerate(self._log.read(partition)):
            if i and i % self._load_batch == 0:
                # Let requests (answered COORDINATOR_LOAD_IN_PROGRESS) through meanwhile.
                await asyncio.sleep(0)
                if self._loading.get(partition, (0, 0))[1] != token:
                    return None
            try:
                replay.apply(key, value)
            except UnknownVersionError as e:
                log.info("%sskipping a record of %s-%d: %s", self.log_prefix,
                         TRANSACTION_STATE_TOPIC, partition, e)
            except RecordFormatError as e:
                log.warning("%sskipping an undecodable record of %s-%d: %s", self.log_prefix,
                            TRANSACTION_STATE_TOPIC, partition, e)
        await asyncio.sleep(0)
        if self._loading.get(partition, (0, 0))[1] != token:
            return None
        return replay.transactions()

    # --- transactional ids ---------------------------------------------------------------

    def get(
        self, transactional_id: str
    ) -> tuple[ErrorCode | None, int, TransactionMetadata | None]:
        """(error, coordinator epoch, metadata): an error if this node cannot serve the id
        now; otherwise the metadata, None if the id is unknown."""
        err = self.status(transactional_id)
        if err is not None:
            return err, -1, None
        p = self._owned[self.partition_for(transactional_id)]
        return None, p.coordinator_epoch, p.txns.get(transactional_id)

    def put_if_absent(self, md: TransactionMetadata) -> TransactionMetadata:
        p = self._owned[self.partition_for(md.transactional_id)]
        return p.txns.setdefault(md.transactional_id, md)

    def remove(self, md: TransactionMetadata, coordinator_epoch: int) -> None:
        """Forget ``md`` if it is still the live metadata of its id at that epoch."""
        if self.is_current(md, coordinator_epoch):
            del self._owned[self.partition_for(md.transactional_id)].txns[md.transactional_id]

    def is_current(self, md: TransactionMetadata, coordinator_epoch: int) -> bool:
        """Whether ``md`` is still the live metadata of its id, owned at that epoch."""
        p = self._owned.get(self.partition_for(md.transactional_id))
        return (
            p is not None
            and p.coordinator_epoch == coordinator_epoch
            and p.txns.get(md.transactional_id) is md
        )

    def transactions(self) -> Iterator[tuple[int, TransactionMetadata]]:
        """(coordinator epoch, metadata) of every id of the owned partitions."""
        for p in list(self._owned.values()):
            for md in list(p.txns.values()):
                yield p.coordinator_epoch, md

    # --- writes and tasks ----------------------------------------------------------------

    async def append(
        self, partition: int, records: list[Record], coordinator_epoch: int
    ) -> BaseException | None:
        """Append to the log at ``coordinator_epoch``; the exception if it failed."""
        p = self._owned.get(partition)
        if p is None or p.coordinator_epoch != coordinator_epoch:
            return LogAppendError(ErrorCode.not_coordinator, "the partition moved")
        try:
            await self._log.append(partition, records, leader_epoch=coordinator_epoch)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning(
                "%swrite to %s-%d failed: %r", self.log_prefix, TRANSACTION_STATE_TOPIC,
                partition, e,
            )
            return e
        return None

    def spawn(self, coro: Coroutine[object, object, object], partition: int | None = None) -> None:
        """Run ``coro`` as a task the registry owns (unloading ``partition`` stops it if it
        is waiting on the clock)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks[task] = partition
        task.add_done_callback(self._task_done)

    async def sleep(self, delay_ms: int) -> None:
        """Wait on the coordinator's clock (a backoff): the task counts as idle meanwhile."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        handle = self._clock.call_later(delay_ms, wake)
        task = asyncio.current_task()
        if task is not None:
            self._parked.add(task)
            self._notify()
        try:
            await fut
        finally:
            handle.cancel()
            if task is not None:
                self._parked.discard(task)

    async def settle(self) -> None:
        """Wait until every task is done or waiting on the clock."""
        while True:
            busy = [t for t in self._tasks if t not in self._parked]
            if not busy:
                return
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            waiter = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait([*busy, waiter], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.pop(task, None)
        self._parked.discard(task)
        self._notify()
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%stransaction coordinator task failed", self.log_prefix,
                exc_info=task.exception(),
            )

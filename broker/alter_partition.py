"""ISR changes sent to the controller in batches, one request in flight (Kafka's
AlterPartitionManager).

A broker restarting beside 10,000 partitions catches up on thousands of them within a
second; one AlterPartition call each opened thousands of concurrent streams to the active
controller, which refuses streams beyond its limit (and commits a Raft entry per call).
Here proposals queue while a request is in flight and the next request carries all of them
(up to ``MAX_ITEMS``); a partition has at most one proposal queued or in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from odradek.controller.metadata.requests import (
    AlterPartitionItem,
    AlterPartitionItemResult,
    AlterPartitionResult,
)

log = logging.getLogger("odradek.replication")

MAX_ITEMS = 2000

Key = tuple[str, int]  # (topic, partition)
# Called with the partition's result, or with the exception that lost the whole request
# (its fate unknown: the controller may have applied it).
Done = Callable[[AlterPartitionItemResult | BaseException], None]


@dataclass(slots=True)
class _Pending:
    item: AlterPartitionItem
    done: Done


class AlterPartitionBatcher:
    def __init__(self, send: Callable[[list[AlterPartitionItem]], Awaitable[AlterPartitionResult]],
                 max_items: int = MAX_ITEMS) -> None:
        self._send = send
        self._max_items = max_items
        self._queued: dict[Key, _Pending] = {}
        self._inflight: set[Key] = set()
        self._task: asyncio.Task[None] | None = None

    def busy(self, key: Key) -> bool:
        """A proposal for the partition is queued or in flight."""
        return key in self._queued or key in self._inflight

    def submit(self, key: Key, item: AlterPartitionItem, done: Done) -> bool:
        """Queue a proposal; False (and nothing queued) when the partition has one already."""
        if self.busy(key):
            return False
        self._queued[key] = _Pending(item, done)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="alter-partition")
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while self._queued:
            keys = list(self._queued)[: self._max_items]
            batch = {k: self._queued.pop(k) for k in keys}
            self._inflight.update(keys)
            try:
                result = await self._send([p.item for p in batch.values()])
            except Exception as e:  # noqa: BLE001 - every proposal learns it
                for pending in batch.values():
                    _call(pending.done, e)
                continue
            finally:
                self._inflight.difference_update(keys)
            by_partition = {(r.topic_id, r.partition): r for r in result.partitions}
            for pending in batch.values():
                item = pending.item
                answer = by_partition.get((item.topic_id, item.partition))
                if answer is None:  # a request-level refusal (stale broker epoch...)
                    answer = AlterPartitionItemResult(
                        item.topic_id, item.partition,
                        result.error_code or -1, result.error_message or
                        "the controller's answer did not name this partition")
                _call(pending.done, answer)


def _call(done: Done, outcome: AlterPartitionItemResult | BaseException) -> None:
    try:
        done(outcome)
    except Exception:
        log.exception("handling an AlterPartition result failed")

"""The partitions this broker hosts: their logs, leadership, and who waits on them.

The replica manager learns what it hosts only from metadata deltas (``apply_delta``),
never from requests, so every broker arrives at the same answer from the same records.
Appends wake fetches that are long-polling on the partition.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odradek import storage
from odradek.storage.errors import StorageError

log = logging.getLogger("odradek.replicas")

TopicPartition = tuple[str, int]


@dataclass
class Partition:
    topic: str
    index: int
    log: storage.PartitionLog
    leader_id: int = -1
    leader_epoch: int = -1
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    is_leader: bool = False
    topic_id: uuid.UUID | None = None
    partition_epoch: int = -1
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    # Log end offsets followers reported in their fetches (leader side of replication).
    follower_leo: dict[int, int] = field(default_factory=dict)

    def wake(self) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()


def partition_dir_name(topic: str, index: int) -> str:
    return f"{topic}-{index}"


class ReplicaManager:
    def __init__(
        self,
        node_id: int,
        log_dir: Path,
        log_config_for: Callable[[str], storage.LogConfig],
        min_isr_for: Callable[[str], int],
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.node_id = node_id
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_config_for = log_config_for
        self.min_isr_for = min_isr_for
        self.now_ms = now_ms
        self.partitions: dict[TopicPartition, Partition] = {}
        # Callbacks told when this node gains or loses leadership of a partition.
        self.leadership_listeners: list[Callable[[TopicPartition, bool], None]] = []

    # --- metadata ---------------------------------------------------------------------

    def apply_delta(self, changes: Any, image: Any) -> None:
        """Apply a MetadataDelta's local changes for this node."""
        for tp in changes.deleted:
            self._drop(tp)
        for tp, reg in changes.leaders.items():
            self._become(tp, reg, changes.topic_ids.get(tp[0]), leader=True)
        for tp, reg in changes.followers.items():
            self._become(tp, reg, changes.topic_ids.get(tp[0]), leader=False)

    def update_configs(self, topics: Iterable[str]) -> None:
        for (topic, _), p in self.partitions.items():
            if topic in topics:
                p.log.config = self.log_config_for(topic)

    def _become(self, tp: TopicPartition, reg: Any, topic_id: uuid.UUID | None, *,
                leader: bool) -> None:
        p = self.partitions.get(tp)
        if p is None:
            path = self.log_dir / partition_dir_name(*tp)
            plog = storage.PartitionLog.open(path, self.log_config_for(tp[0]), now_ms=self.now_ms)
            p = Partition(tp[0], tp[1], plog)
            self.partitions[tp] = p
        was_leader = p.is_leader
        new_epoch = reg.leader_epoch != p.leader_epoch
        p.topic_id = topic_id
        p.partition_epoch = reg.partition_epoch
        p.leader_id = reg.leader
        p.replicas = tuple(reg.replicas)
        p.isr = tuple(reg.isr)
        p.is_leader = leader
        if leader and reg.leader_epoch > p.leader_epoch:
            # Batches written from now on carry the new epoch (OffsetForLeaderEpoch, KIP-101).
            if not p.log.offline:
                p.log.leader_epochs.assign(reg.leader_epoch, p.log.log_end_offset)
        p.leader_epoch = reg.leader_epoch
        if leader:
            self.maybe_advance_hw(p)
        if was_leader != leader or (leader and new_epoch):
            for cb in self.leadership_listeners:
                cb(tp, leader)
        p.wake()

    def _drop(self, tp: TopicPartition) -> None:
        p = self.partitions.pop(tp, None)
        if p is None:
            return
        if p.is_leader:
            for cb in self.leadership_listeners:
                cb(tp, False)
        p.wake()
        try:
            p.log.delete()
        except StorageError:
            shutil.rmtree(self.log_dir / partition_dir_name(*tp), ignore_errors=True)

    # --- data path ----------------------------------------------------------------------

    def get(self, tp: TopicPartition) -> Partition | None:
        return self.partitions.get(tp)

    def append(self, p: Partition, records: bytes) -> storage.AppendResult:
        result = p.log.append(records, leader_epoch=p.leader_epoch)
        self.maybe_advance_hw(p)
        p.wake()
        return result

    def on_follower_fetch(self, p: Partition, replica_id: int, offset: int) -> None:
        """A follower fetching at ``offset`` has everything below it: maybe advance the HW."""
        p.follower_leo[replica_id] = offset
        if self.maybe_advance_hw(p):
            p.wake()

    def maybe_advance_hw(self, p: Partition) -> bool:
        """Leader: the high watermark is the smallest log end over the ISR; it never moves
        back. While the ISR is below min.insync.replicas it does not move at all."""
        if len(p.isr) < self.min_isr_for(p.topic):
            return False
        ends = [p.log.log_end_offset]
        ends += [p.follower_leo.get(r, 0) for r in p.isr if r != self.node_id]
        hw = min(ends)
        if hw > p.log.high_watermark:
            p.log.high_watermark = hw
            return True
        return False

    async def wait_for_data(self, parts: Iterable[Partition], timeout_s: float) -> None:
        """Wait until one of ``parts`` gets an append (or a leadership change) or timeout."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        parts = list(parts)
        for p in parts:
            p.waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            pass
        finally:
            for p in parts:
                p.waiters.discard(fut)

    # --- housekeeping ---------------------------------------------------------------------

    def enforce_retention(self) -> int:
        deleted = 0
        now = self.now_ms()
        for p in list(self.partitions.values()):
            if p.log.offline:
                continue
            try:
                deleted += p.log.enforce_retention(now)
            except StorageError as e:
                log.error("retention failed for %s-%d: %s", p.topic, p.index, e)
        return deleted

    def flush_due(self) -> None:
        now = self.now_ms()
        for p in list(self.partitions.values()):
            if p.log.offline:
                continue
            try:
                p.log.maybe_flush(now)
            except StorageError as e:
                log.error("flush failed for %s-%d: %s", p.topic, p.index, e)

    def close(self) -> None:
        for p in self.partitions.values():
            p.wake()
            try:
                p.log.close()
            except StorageError as e:
                log.error("closing %s-%d: %s", p.topic, p.index, e)
        self.partitions.clear()

"""The partitions this broker hosts (broker/partition.py), created, updated and dropped from
the metadata.

The replica manager learns what it hosts only from metadata deltas (``apply``), never
from requests, so every broker arrives at the same answer from the same records.

A delta can name thousands of partitions (a bulk creation, a broker taking over another's
leaderships). ``apply`` gives the event loop back every ``LOOP_SLICE_S`` so heartbeats,
Raft and client requests go on meanwhile, and deleted logs are removed from disk in a
thread. The node applies deltas one at a time, in log order (Node._apply_replica_changes).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from odradek import storage
from odradek.broker.loop_slice import LoopSlice
from odradek.broker.partition import Partition, wait_for_any
from odradek.controller.metadata import MetadataImage, PartitionRegistration
from odradek.controller.metadata.delta import LocalReplicaChanges
from odradek.storage.cleaner import LogCleaner
from odradek.storage.config import LONG_MAX
from odradek.storage.errors import StorageError

log = logging.getLogger("odradek.replicas")

TopicPartition = tuple[str, int]

# Partition directories being removed carry this suffix (Kafka's "-delete"): a topic
# deleted and created again gets a fresh directory at once, and a removal cut short by a
# crash is finished at the next start.
DELETE_SUFFIX = "-delete"


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
        cleaner: LogCleaner | None = None,
    ) -> None:
        self.node_id = node_id
        # Compacts the logs of compacted topics; every hosted log is registered with it
        # (it looks at each one's cleanup.policy when it runs).
        self.cleaner = cleaner
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._removals: set[asyncio.Task[None]] = set()
        for leftover in self.log_dir.glob(f"*{DELETE_SUFFIX}"):
            shutil.rmtree(leftover, ignore_errors=True)
        self.log_config_for = log_config_for
        self.min_isr_for = min_isr_for
        self.now_ms = now_ms
        self.partitions: dict[TopicPartition, Partition] = {}
        # Set by the node: wakes the fetch sessions of followers that have not fetched a
        # partition they must replicate (Partition.on_unfetched_followers).
        self.nudge_followers: Callable[[list[int]], None] | None = None
        # The partitions whose log has a flush.ms, which flush_due visits.
        self._flushed_by_time: dict[TopicPartition, Partition] = {}
        # Callbacks told when this node gains or loses leadership of a partition.
        self.leadership_listeners: list[Callable[[TopicPartition, bool], None]] = []
        # Told "shrink" or "expand" when the ISR of a partition this node keeps leading
        # changes in the metadata (the odradek_isr_changes_total counter).
        self.isr_listeners: list[Callable[[str], None]] = []

    # --- metadata ---------------------------------------------------------------------

    async def apply(self, changes: LocalReplicaChanges, image: MetadataImage) -> None:
        """Apply a MetadataDelta's local changes for this node, giving the event loop back
        every ``LOOP_SLICE_S``."""
        loop_slice = LoopSlice()
        for tp in changes.deleted:
            self._drop(tp)
            if loop_slice.due():
                await loop_slice.pause()
        for tp, reg in [*changes.leaders.items(), *changes.followers.items()]:
            self._become(tp, reg, changes.topic_ids.get(tp[0]))
            if loop_slice.due():
                await loop_slice.pause()

    def update_configs(self, topics: Iterable[str]) -> None:
        for (topic, _), p in self.partitions.items():
            if topic in topics:
                p.log.config = self.log_config_for(topic)
                p.set_min_isr(self.min_isr_for(topic))
                self._track_flush((topic, p.index), p)
        if self.cleaner is not None:
            self.cleaner.wake()  # a log may have become compacted, or dirtier by its ratio

    def _become(self, tp: TopicPartition, reg: PartitionRegistration,
                topic_id: uuid.UUID | None) -> None:
        p = self.partitions.get(tp)
        if p is None:
            path = self.log_dir / partition_dir_name(*tp)
            plog = storage.PartitionLog.open(path, self.log_config_for(tp[0]), now_ms=self.now_ms)
            p = Partition(tp[0], tp[1], plog, self.node_id, self.min_isr_for(tp[0]))
            p.on_unfetched_followers = self.nudge_followers
            self.partitions[tp] = p
            self._track_flush(tp, p)
            if self.cleaner is not None:
                self.cleaner.add(partition_dir_name(*tp), plog)
        change = p.assign(reg, topic_id)
        if change.became_leader or change.stopped_leading or change.new_leader_epoch:
            for cb in self.leadership_listeners:
                cb(tp, p.is_leader)
        for kind, happened in (("shrink", change.isr_shrunk), ("expand", change.isr_expanded)):
            if happened:
                for listener in self.isr_listeners:
                    listener(kind)

    def _drop(self, tp: TopicPartition) -> None:
        p = self.partitions.pop(tp, None)
        if p is None:
            return
        self._flushed_by_time.pop(tp, None)
        if self.cleaner is not None:
            self.cleaner.remove(partition_dir_name(*tp))
        if p.is_leader:
            for cb in self.leadership_listeners:
                cb(tp, False)
        p.close()
        directory = self.log_dir / partition_dir_name(*tp)
        try:
            p.log.close_for_delete()
            doomed = directory.with_name(f"{directory.name}.{uuid.uuid4().hex}{DELETE_SUFFIX}")
            directory.rename(doomed)
        except (StorageError, OSError) as e:
            log.warning("removing %s: %s", directory, e)
            shutil.rmtree(directory, ignore_errors=True)
            return
        self._remove_later(doomed)

    def _remove_later(self, doomed: Path) -> None:
        """Remove a renamed partition directory in a thread (thousands of files for a big
        log); without a running loop (tests), at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            shutil.rmtree(doomed, ignore_errors=True)
            return
        task = loop.create_task(asyncio.to_thread(shutil.rmtree, doomed, ignore_errors=True))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    # --- data path ----------------------------------------------------------------------

    def get(self, tp: TopicPartition) -> Partition | None:
        return self.partitions.get(tp)

    async def wait_for_data(self, parts: Iterable[Partition], timeout_s: float,
                            woken: asyncio.Future[None] | None = None) -> None:
        """Wait until one of ``parts`` gets an append (or a leadership change), ``woken``
        is done, or timeout."""
        await wait_for_any(parts, timeout_s, woken)

    # --- housekeeping ---------------------------------------------------------------------

    def enforce_retention(self) -> int:
        deleted = 0
        now = self.now_ms()
        for p in list(self.partitions.values()):
            if p.log.offline:
                continue
            try:
                gone = p.log.enforce_retention(now)
            except StorageError as e:
                log.error("retention failed for %s-%d: %s", p.topic, p.index, e)
                continue
            if gone:
                deleted += gone
                p.wake()  # its log start may have moved: readers are told (fetch sessions)
        return deleted

    def _track_flush(self, tp: TopicPartition, p: Partition) -> None:
        if p.log.config.flush_ms < LONG_MAX:
            self._flushed_by_time[tp] = p
        else:
            self._flushed_by_time.pop(tp, None)

    def flush_due(self) -> None:
        now = self.now_ms()
        # Only the logs with a flush.ms (unbounded by default): this runs every second, and
        # visiting 10,000 logs to find none due cost an idle broker 1 % of a core.
        for p in list(self._flushed_by_time.values()):
            plog = p.log
            if not plog.unflushed_messages or plog.offline:
                continue
            try:
                plog.maybe_flush(now)
            except StorageError as e:
                log.error("flush failed for %s-%d: %s", p.topic, p.index, e)

    def close(self) -> None:
        if self.cleaner is not None:
            self.cleaner.stop()
        for p in self.partitions.values():
            p.close()
            try:
                p.log.close()
            except StorageError as e:
                log.error("closing %s-%d: %s", p.topic, p.index, e)
        self.partitions.clear()

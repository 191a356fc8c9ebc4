"""Gauges computed when Prometheus scrapes: partitions, log sizes, transactions holding
back read_committed consumers, the log cleaner and consumer lag."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from odradek.broker.partition import Partition
from odradek.broker.replica_manager import ReplicaManager
from odradek.storage.errors import StorageError


class GroupListing(Protocol):
    """The name of a group (a GroupOverview of the group coordinator)."""

    @property
    def group_id(self) -> str: ...


class NodeCollector(Collector):
    def __init__(self, replicas: ReplicaManager,
                 list_groups: Callable[[], Iterable[GroupListing]],
                 committed_offsets: Callable[[str], Mapping[tuple[str, int], int]]) -> None:
        """``list_groups`` and ``committed_offsets``: the group coordinator's views of the
        groups it coordinates."""
        self.replicas = replicas
        self.list_groups = list_groups
        self.committed_offsets = committed_offsets

    def collect(self) -> Iterator[Metric]:
        led = GaugeMetricFamily("odradek_partitions_led", "Partitions this node leads.")
        hosted = GaugeMetricFamily("odradek_partitions_hosted",
                                   "Partition replicas on this node.")
        offline = GaugeMetricFamily(
            "odradek_offline_log_partitions",
            "Partitions on this node whose log is offline after a disk error.")
        under_min_isr = GaugeMetricFamily(
            "odradek_under_min_isr_partitions",
            "Partitions led here whose ISR is smaller than min.insync.replicas.")
        under_replicated = GaugeMetricFamily(
            "odradek_under_replicated_partitions",
            "Partitions led here whose ISR is smaller than the replica set.")
        size = GaugeMetricFamily("odradek_log_size_bytes", "Size of a partition's log.",
                                 labels=["topic", "partition"])
        end = GaugeMetricFamily("odradek_log_end_offset", "Next offset of a partition's log.",
                                labels=["topic", "partition"])
        hw = GaugeMetricFamily(
            "odradek_log_high_watermark",
            "High watermark of a partition as this replica knows it (exact on the leader).",
            labels=["topic", "partition"])
        lso_lag = GaugeMetricFamily(
            "odradek_partition_last_stable_offset_lag",
            "High watermark minus last stable offset of a partition led here: offsets "
            "read_committed consumers cannot read yet because a transaction is open.",
            labels=["topic", "partition"])
        committed_offset = GaugeMetricFamily(
            "odradek_consumer_group_committed_offset",
            "Committed offset per group and partition (groups coordinated by this node).",
            labels=["group", "topic", "partition"])
        lag = GaugeMetricFamily(
            "odradek_consumer_group_lag",
            "High watermark minus committed offset, per group and partition (groups "
            "coordinated by this node, partitions with a replica on this node).",
            labels=["group", "topic", "partition"])
        parts = list(self.replicas.partitions.values())
        counts = {"led": 0, "offline": 0, "min_isr": 0, "urp": 0}
        for p in parts:
            if p.log.offline:
                counts["offline"] += 1
                continue
            labels = [p.topic, str(p.index)]
            size.add_metric(labels, p.log.size_bytes)
            end.add_metric(labels, p.log.log_end_offset)
            hw.add_metric(labels, p.log.high_watermark)
            if p.is_leader:
                counts["led"] += 1
                counts["urp"] += len(p.isr) < len(p.replicas)
                counts["min_isr"] += p.under_min_isr
                # Kafka's LastStableOffsetLag. The LSO is read first: it is never above the
                # high watermark, which only grows on a leader, so the lag is not negative.
                lso = p.log.last_stable_offset
                lso_lag.add_metric(labels, max(0, p.log.high_watermark - lso))
        led.add_metric([], counts["led"])
        hosted.add_metric([], len(parts))
        offline.add_metric([], counts["offline"])
        under_min_isr.add_metric([], counts["min_isr"])
        under_replicated.add_metric([], counts["urp"])
        for overview in self.list_groups():
            for (topic, index), committed in self.committed_offsets(
                    overview.group_id).items():
                labels = [overview.group_id, topic, str(index)]
                committed_offset.add_metric(labels, committed)
                # A follower's high watermark trails the leader's by at most one fetch, so
                # the coordinator can report lag for every partition it holds a replica of.
                held = self.replicas.get((topic, index))
                if held is not None and not held.log.offline:
                    lag.add_metric(labels, max(0, held.log.high_watermark - committed))
        yield from (led, hosted, offline, under_min_isr, under_replicated, size, end, hw,
                    lso_lag, committed_offset, lag)
        yield from self._cleaner(parts)

    def _cleaner(self, parts: list[Partition]) -> Iterator[Metric]:
        """The log cleaner: per compacted partition, how far it is cleaned and how dirty it
        is; overall, what the cleaner did (Kafka's kafka.log:type=LogCleaner* beans)."""
        dirty = GaugeMetricFamily(
            "odradek_log_cleaner_dirty_ratio",
            "Share of a compacted partition's cleanable bytes not yet cleaned (the cleaner "
            "starts at min.cleanable.dirty.ratio).", labels=["topic", "partition"])
        point = GaugeMetricFamily(
            "odradek_log_cleaner_cleaned_offset",
            "Offset below which a compacted partition's log is cleaned (its checkpoint).",
            labels=["topic", "partition"])
        for p in parts:
            if p.log.offline or not p.log.config.compacts:
                continue
            labels = [p.topic, str(p.index)]
            try:
                dirty.add_metric(labels, p.log.dirtiness().ratio)
            except StorageError:
                continue
            point.add_metric(labels, p.log.cleaner_point)
        yield dirty
        yield point
        cleaner = self.replicas.cleaner
        if cleaner is None:
            return
        s = cleaner.stats
        for name, doc, value in (
                ("odradek_log_cleaner_cleanings", "Cleanings finished.", s.cleanings),
                ("odradek_log_cleaner_failures", "Cleanings that failed.", s.failures),
                ("odradek_log_cleaner_read_bytes", "Bytes the cleaner read.", s.bytes_read),
                ("odradek_log_cleaner_written_bytes", "Bytes the cleaner wrote.",
                 s.bytes_written),
                ("odradek_log_cleaner_removed_records", "Records the cleaner removed.",
                 s.records_removed)):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter
        for name, doc, gauge_value in (
                ("odradek_log_cleaner_max_dirty_ratio",
                 "Highest dirty ratio among the compacted partitions at the last look.",
                 s.max_dirty_ratio),
                ("odradek_log_cleaner_max_compaction_delay_seconds",
                 "How far the most overdue partition is past max.compaction.lag.ms (<= 0: "
                 "none is overdue).", s.max_compaction_delay_s),
                ("odradek_log_cleaner_last_clean_seconds", "Duration of the last cleaning.",
                 s.last_clean_seconds),
                ("odradek_log_cleaner_max_clean_seconds", "Longest cleaning so far.",
                 s.max_clean_seconds),
                ("odradek_log_cleaner_recopy_ratio",
                 "Bytes written over bytes read by the copy pass of the last cleaning.", s.last_recopy_ratio),
                ("odradek_log_cleaner_uncleanable_partitions",
                 "Partitions the cleaner gave up on after an error (see the node's log).",
                 len(s.uncleanable))):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], gauge_value)
            yield gauge

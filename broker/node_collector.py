"""Gauges computed when Prometheus scrapes: partitions, log sizes and consumer lag."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from odradek.broker.replica_manager import ReplicaManager


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

    def collect(self) -> Iterator[GaugeMetricFamily]:
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
                    committed_offset, lag)

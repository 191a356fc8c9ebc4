"""Gauges computed when Prometheus scrapes: controller role and cluster-wide counts from the
metadata image.

Which node exports what:

- every node: ``odradek_controller_active`` (0 or 1; summed over the cluster it is 1) and
  ``odradek_metadata_offset``;
- nodes with the controller role in a Raft quorum: the ``odradek_raft_*`` series
  (odradek.controller.raft_runtime.metrics, registered by the node's metadata plane);
- the active controller only: the ``odradek_cluster_*`` series, computed from its image, so
  that a sum over nodes counts each broker and partition once (as Kafka's
  OfflinePartitionsCount and FencedBrokerCount come from the active controller).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from odradek.controller.metadata import MetadataImage

NO_LEADER = -1


class MetadataCollector(Collector):
    def __init__(self, image: Callable[[], MetadataImage],
                 is_active_controller: Callable[[], bool]) -> None:
        self.image = image
        self.is_active_controller = is_active_controller

    def collect(self) -> Iterator[Metric]:
        image = self.image()
        active = self.is_active_controller()
        g = GaugeMetricFamily("odradek_controller_active",
                              "1 on the active controller (the Raft leader), else 0.")
        g.add_metric([], int(active))
        yield g
        g = GaugeMetricFamily("odradek_metadata_offset",
                              "Offset of the last metadata record applied to this node's image.")
        g.add_metric([], image.offset)
        yield g
        if active:
            yield from self._cluster_metrics(image)

    @staticmethod
    def _cluster_metrics(image: MetadataImage) -> Iterator[Metric]:
        brokers = list(image.brokers.values())
        partitions = offline = imbalanced = 0
        for topic in image.topics.values():
            for reg in topic.partitions.values():
                partitions += 1
                offline += reg.leader == NO_LEADER
                imbalanced += bool(reg.replicas) and reg.leader != reg.replicas[0]
        for name, doc, value in (
            ("odradek_cluster_registered_brokers", "Brokers registered with the controller, "
             "fenced or not.", len(brokers)),
            ("odradek_cluster_fenced_brokers", "Registered brokers that are fenced (no "
             "heartbeat within the session timeout, or shutting down).",
             sum(b.fenced for b in brokers)),
            ("odradek_cluster_topics", "Topics in the cluster.", len(image.topics)),
            ("odradek_cluster_partitions", "Partitions in the cluster.", partitions),
            ("odradek_cluster_offline_partitions", "Partitions without a leader: neither "
             "readable nor writable.", offline),
            ("odradek_cluster_preferred_replica_imbalance", "Partitions not led by their "
             "preferred (first) replica.", imbalanced),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g

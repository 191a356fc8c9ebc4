"""Gauges computed when Prometheus scrapes: controller role, Raft state and cluster-wide
counts from the metadata image.

Which node exports what:

- every node: ``odradek_controller_active`` (0 or 1; summed over the cluster it is 1) and
  ``odradek_metadata_offset``;
- nodes with the controller role in a Raft quorum: the ``odradek_raft_*`` series (broker-only
  nodes and single-node mode have no Raft, so none);
- the active controller only: the ``odradek_cluster_*`` series, computed from its image, so
  that a sum over nodes counts each broker and partition once (as Kafka's
  OfflinePartitionsCount and FencedBrokerCount come from the active controller).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from odradek.controller.raft import Role

NO_LEADER = -1


class MetadataCollector(Collector):
    def __init__(self, node: Any) -> None:
        self.node = node
        self.leader_changes = 0
        self._last_leader: tuple[int, int] = (NO_LEADER, -1)
        # Both planes have `raft` (None without a quorum) and `is_active_controller`.
        raft = self.node.plane.raft
        if raft is not None:
            raft.on_leader_change(self._on_leader_change)

    def _on_leader_change(self) -> None:
        # Counted like etcd's leader_changes_seen: each (leader, term) once it is known.
        raft = self.node.plane.raft
        seen = (raft.leader_id, raft.term)
        if seen[0] != NO_LEADER and seen != self._last_leader:
            self._last_leader = seen
            self.leader_changes += 1

    def collect(self) -> Iterator[Metric]:
        node = self.node
        active = node.plane.is_active_controller
        g = GaugeMetricFamily("odradek_controller_active",
                              "1 on the active controller (the Raft leader), else 0.")
        g.add_metric([], int(active))
        yield g
        g = GaugeMetricFamily("odradek_metadata_offset",
                              "Offset of the last metadata record applied to this node's image.")
        g.add_metric([], node.image.offset)
        yield g
        raft = node.plane.raft
        if raft is not None:
            yield from self._raft_metrics(raft)
        if active:
            yield from self._cluster_metrics(node.image)

    def _raft_metrics(self, raft: Any) -> Iterator[Metric]:
        status = raft.driver.status()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            return g

        yield gauge("odradek_raft_term", "Current Raft term (leader epoch) of the metadata "
                    "quorum as this node knows it.", status.term)
        yield gauge("odradek_raft_leader_id", "Node id of the metadata quorum leader as this "
                    "node knows it; -1 while none is known.", raft.leader_id)
        yield gauge("odradek_raft_commit_index", "Index of the last Raft entry known committed.",
                    status.commit)
        yield gauge("odradek_raft_applied_index", "Index of the last Raft entry applied to the "
                    "metadata image.", status.applied)
        yield gauge("odradek_raft_last_index", "Index of the last entry in this node's Raft "
                    "log.", status.last_index)
        yield gauge("odradek_raft_snapshot_index", "Raft index covered by the latest metadata "
                    "snapshot.", status.snapshot_index)
        role = GaugeMetricFamily("odradek_raft_role",
                                 "1 for this node's current Raft role, 0 for the others.",
                                 labels=["role"])
        current = "observer" if status.is_observer else status.role.value
        for name in [r.value for r in Role] + ["observer"]:
            role.add_metric([name], int(name == current))
        yield role
        c = CounterMetricFamily("odradek_raft_leader_changes", "Metadata quorum leaders this "
                                "node has seen take office (a new leader or a new term).")
        c.add_metric([], self.leader_changes)
        yield c
        c = CounterMetricFamily("odradek_raft_snapshots_installed",
                                "Metadata snapshots received from the leader.")
        c.add_metric([], raft.snapshots_installed)
        yield c

    @staticmethod
    def _cluster_metrics(image: Any) -> Iterator[Metric]:
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

"""Prometheus gauges of one controller's Raft runtime: the ``odradek_raft_*`` series.

Exported by nodes with the controller role in a Raft quorum (broker-only nodes and
single-node mode have no Raft, so none); docs/metrics.md lists them.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from odradek.controller.raft import Role
from odradek.controller.raft_runtime.metadata_log import NO_LEADER, RaftMetadataLog


class RaftCollector(Collector):
    def __init__(self, raft: RaftMetadataLog) -> None:
        self.raft = raft
        self.leader_changes = 0
        self._last_leader: tuple[int, int] = (NO_LEADER, -1)
        raft.on_leader_change(self._on_leader_change)

    def _on_leader_change(self) -> None:
        # Counted like etcd's leader_changes_seen: each (leader, term) once it is known.
        seen = (self.raft.leader_id, self.raft.term)
        if seen[0] != NO_LEADER and seen != self._last_leader:
            self._last_leader = seen
            self.leader_changes += 1

    def collect(self) -> Iterator[Metric]:
        raft = self.raft
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

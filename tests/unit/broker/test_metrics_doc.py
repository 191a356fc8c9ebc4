from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from prometheus_client import generate_latest
from prometheus_client.registry import Collector

from odradek.broker.metadata_collector import MetadataCollector
from odradek.broker.metrics import NodeMetrics
from odradek.broker.metrics_http import WithoutCreated
from odradek.broker.node_collector import NodeCollector
from odradek.controller.metadata import MetadataImage
from odradek.controller.raft import Role
from odradek.controller.raft_runtime.metrics import RaftCollector

DOC = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()


class FakeRaft:
    """Just what RaftCollector reads from a RaftMetadataLog."""

    def __init__(self) -> None:
        self.leader_id, self.term, self.snapshots_installed = -1, 0, 0
        self.callbacks: list = []
        self.driver = SimpleNamespace(status=lambda: SimpleNamespace(
            term=self.term, commit=7, applied=7, last_index=8, snapshot_index=0,
            role=Role.LEADER if self.leader_id == 1 else Role.FOLLOWER, is_observer=False))

    def on_leader_change(self, callback) -> None:  # type: ignore[no-untyped-def]
        self.callbacks.append(callback)

    def elect(self, leader: int, term: int) -> None:
        self.leader_id, self.term = leader, term
        for cb in self.callbacks:
            cb()


def _metadata(active: bool) -> MetadataCollector:
    return MetadataCollector(lambda: MetadataImage.EMPTY, lambda: active)


def _samples(collector: Collector) -> dict[str, float]:
    return {s.name + "".join(f"{{{v}}}" for v in s.labels.values()): s.value
            for m in collector.collect() for s in m.samples}


def _exported_names() -> set[str]:
    names = {m.name for m in NodeMetrics(1).registry.collect()}
    from odradek.storage.cleaner import CleanerConfig, LogCleaner

    no_replicas = SimpleNamespace(partitions={}, cleaner=LogCleaner(CleanerConfig()))
    names |= {m.name for m in NodeCollector(no_replicas, lambda: [],  # type: ignore[arg-type]
                                            lambda group: {}).collect()}
    # Raft series (controllers) and cluster series (active controller).
    names |= {m.name for m in RaftCollector(FakeRaft()).collect()}  # type: ignore[arg-type]
    names |= {m.name for m in _metadata(True).collect()}
    return {n for n in names if n.startswith("odradek_")}


def test_every_exported_metric_is_documented() -> None:
    names = _exported_names()
    assert len(names) > 15
    for name in names:
        # prometheus_client reports counters without their _total suffix.
        assert f"`{name}`" in DOC or f"`{name}_total`" in DOC, f"{name} is not in docs/metrics.md"


def test_controller_series_depend_on_the_node_role() -> None:
    follower = _samples(_metadata(False))
    assert follower["odradek_controller_active"] == 0
    assert not any(k.startswith("odradek_cluster_") for k in follower)
    assert _samples(RaftCollector(FakeRaft()))["odradek_raft_leader_id"] == -1  # type: ignore[arg-type]
    single = _samples(_metadata(True))
    assert single["odradek_controller_active"] == 1
    assert single["odradek_cluster_registered_brokers"] == 0


def test_leader_changes_count_each_leader_and_term_once() -> None:
    raft = FakeRaft()
    collector = RaftCollector(raft)  # type: ignore[arg-type]
    raft.elect(2, 1)
    raft.elect(2, 1)  # same state announced again
    raft.elect(-1, 2)  # election under way: no leader known yet
    raft.elect(1, 2)
    raft.elect(1, 3)  # re-elected in a new term
    s = _samples(collector)
    assert s["odradek_raft_leader_changes_total"] == 3
    assert s["odradek_raft_role{leader}"] == 1 and s["odradek_raft_role{follower}"] == 0
    assert s["odradek_raft_term"] == 3


def test_exposition_has_no_created_series() -> None:
    metrics = NodeMetrics(1)
    metrics.observe_request(0, 0.01, 100)
    metrics.messages_in.labels(topic="t").inc(3)
    text = generate_latest(WithoutCreated(metrics.registry)).decode()  # type: ignore[arg-type]
    assert "_created" not in text
    assert 'odradek_requests_total{api="produce"} 1.0' in text
    assert 'odradek_request_latency_seconds_bucket{api="produce",le="0.01"} 1.0' in text
    assert 'odradek_messages_in_total{topic="t"} 3.0' in text

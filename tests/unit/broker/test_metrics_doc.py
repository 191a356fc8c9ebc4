from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from broker.metrics import NodeMetrics
from broker.node_collector import NodeCollector

DOC = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()


def _exported_names() -> set[str]:
    names = {m.name for m in NodeMetrics(1).registry.collect()}
    empty_node = SimpleNamespace(replicas=SimpleNamespace(partitions={}),
                                 groups=SimpleNamespace(list_groups=lambda: []),
                                 min_insync_replicas=lambda topic: 1)
    names |= {m.name for m in NodeCollector(empty_node).collect()}
    return {n for n in names if n.startswith("odradek_")}


def test_every_exported_metric_is_documented() -> None:
    names = _exported_names()
    assert len(names) > 15
    for name in names:
        # prometheus_client reports counters without their _total suffix.
        assert f"`{name}`" in DOC or f"`{name}_total`" in DOC, f"{name} is not in docs/metrics.md"

"""Where a cluster's nodes publish their metrics: ``--metrics [ID=]URL`` options and the
cluster.json that ``odradek cluster up`` writes. Shared by the console and the CLI commands
that read the nodes' /metrics (``odradek topics describe`` for the log cleaner's progress);
no HTTP here, so the CLI can use it without the console's web stack."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DEFAULT_CLUSTER_FILE = Path("odradek-data/cluster.json")


@dataclass(frozen=True, slots=True)
class MetricsTarget:
    """A node's /metrics URL, and the node's id when it is known (``ID=URL`` on the command
    line, or from cluster.json): the id joins the node's health to its broker."""

    url: str
    node_id: int | None = None

    @classmethod
    def parse(cls, text: str) -> MetricsTarget:
        node, sep, url = text.partition("=")
        if sep and node.strip().isdigit():
            return cls(metrics_url(url.strip()), int(node))
        return cls(metrics_url(text.strip()))


def metrics_url(url: str) -> str:
    if "://" not in url:
        url = "http://" + url
    if not url.rstrip("/").endswith("/metrics"):
        url = url.rstrip("/") + "/metrics"
    return url


def from_cluster_file(path: Path) -> tuple[str, list[MetricsTarget]]:
    """(bootstrap servers, metrics targets) of a cluster started by ``odradek cluster up``;
    OSError or ValueError when the file is missing or not that."""
    info = json.loads(path.read_text())
    return info["bootstrap"], [MetricsTarget(n["metrics"], n["id"])
                               for n in info.get("nodes", [])]


def partition_gauges(target: MetricsTarget, names: set[str], topic: str,
                     timeout: float = 2.0) -> dict[tuple[str, int], float]:
    """(metric name, partition) -> value of the per-partition gauges ``names`` for
    ``topic`` on one node; OSError when it cannot be scraped."""
    with urllib.request.urlopen(target.url, timeout=timeout) as response:  # noqa: S310
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name not in names:
            continue
        for sample in family.samples:
            if sample.labels.get("topic") == topic and "partition" in sample.labels:
                out[(family.name, int(sample.labels["partition"]))] = sample.value
    return out

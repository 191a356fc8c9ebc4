"""Real Odradek node processes for integration tests, and the waits tests share.

Nodes and clusters come from the product's own module, odradek.broker.local_cluster (also
used by ``odradek verify``): a ``NodeProcess`` is one ``odradek node`` process with its own
data directory and ephemeral ports, killed by PID; a ``Cluster`` (``LocalCluster``) is n of
them forming one controller quorum.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from odradek.broker.local_cluster import LocalCluster, NodeProcess, free_port, in_parallel
from tests.helpers import metric_sum

__all__ = ["REPO", "Cluster", "LocalCluster", "NodeProcess", "free_port", "in_parallel",
           "metric", "scrape", "wait_for", "wait_port"]

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]

Cluster = LocalCluster


def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             interval: float = 0.2) -> T:
    """The first truthy result of `predicate`, polled every `interval` seconds; exceptions
    count as "not yet" (a cluster may be mid-failover, a node starting or stopping)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last!r}")


def scrape(node: NodeProcess) -> str:
    """The node's /metrics page (Prometheus text)."""
    with urllib.request.urlopen(node.metrics_url, timeout=5) as r:
        return str(r.read().decode())


def metric(node: NodeProcess, name: str, labels: str = "") -> float:
    """A metric of the node, summed over its samples whose labels contain ``labels``."""
    value = metric_sum(scrape(node), name, labels)
    assert value is not None, f"{name}{{{labels}}} is not exported"
    return value


def wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")

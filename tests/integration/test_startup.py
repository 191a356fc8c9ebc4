"""Clients that connect the moment a node's Kafka port opens get a working cluster.

A node used to accept connections as soon as it started and answer Metadata with no brokers
until it had caught up with the cluster metadata; librdkafka then waited minutes for its next
refresh. Now a broker's Kafka listeners accept only once it is registered, unfenced and its
image holds its own registration (broker/node.py: Node.start). These tests start the real
clients at the first moment a connection is accepted, on a fresh cluster and with a
restarting node as the only bootstrap address, six times each.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from odradek.broker.local_cluster import accepts
from tests.integration.flows import FIRST_WRITE_FLOWS as FLOWS
from tests.integration.flows import LIMIT_S
from tests.integration.harness import Cluster, NodeProcess

pytestmark = pytest.mark.integration

TRIES = 6


def _run_when_ports_open(bootstrap: str, rf: int) -> dict[str, float]:
    """Wait for every address of ``bootstrap`` to accept, then run every client flow at once;
    the time each took, from the ports opening to its first write acknowledged."""
    deadline = time.monotonic() + 90
    for address in bootstrap.split(","):
        while not accepts(address):
            assert time.monotonic() < deadline, f"{address} never opened"
            time.sleep(0.01)
    opened = time.monotonic()
    took: dict[str, float] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str, flow: Callable[[str, str, int], None]) -> None:
        try:
            flow(bootstrap, f"startup-{name}-{uuid.uuid4().hex[:6]}", rf)
            took[name] = time.monotonic() - opened
        except BaseException as e:  # reported below
            errors[name] = e

    threads = [threading.Thread(target=run, args=item) for item in FLOWS.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LIMIT_S + 30)
    assert not errors, errors
    assert set(took) == set(FLOWS), f"clients still running: {set(FLOWS) - set(took)}"
    return took


def test_fresh_cluster_serves_clients_from_the_first_accepted_connection(
        tmp_path: Path) -> None:
    worst = 0.0
    for attempt in range(TRIES):
        cluster = Cluster(tmp_path / f"fresh-{attempt}", n=3)
        starter = threading.Thread(target=cluster.start)
        starter.start()
        try:
            # All three ports: each opens once its broker is unfenced, so from then on a
            # topic with three replicas can be placed (what compose's health checks give an
            # application that depends on the nodes being healthy).
            took = _run_when_ports_open(cluster.bootstrap, rf=3)
        finally:
            starter.join()
            cluster.kill_all()
        assert max(took.values()) < LIMIT_S, (attempt, took)
        worst = max(worst, *took.values())
    print(f"fresh cluster: slowest first acks=all write {worst:.2f}s after the port opened")


def test_restarting_node_as_only_bootstrap(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "restart", n=3).start()
    try:
        node: NodeProcess = cluster.nodes[0]
        worst = 0.0
        for attempt in range(TRIES):
            # Half the restarts after a crash, half after a clean stop.
            if attempt % 2:
                node.stop()
            else:
                node.kill()
            starter = threading.Thread(target=node.start)
            starter.start()
            try:
                took = _run_when_ports_open(node.bootstrap, rf=3)
            finally:
                starter.join()
            assert max(took.values()) < LIMIT_S, (attempt, took)
            worst = max(worst, *took.values())
        print(f"restarting node: slowest first acks=all write {worst:.2f}s after the port "
              "opened")
    finally:
        cluster.kill_all()

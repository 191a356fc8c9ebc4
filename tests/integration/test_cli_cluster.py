"""The admin command line against a 3-node cluster: what only a quorum shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from odradek.broker.verify.faults import quorum_leader
from tests.integration.harness import REPO, Cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cli-cluster"), 3,
                overrides={"num.partitions": 2, "replica.lag.time.max.ms": 2000,
                           "broker.session.timeout.ms": 3000}).start()
    yield c
    c.kill_all()


def cli(cluster: Cluster, *argv: str, check: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", *argv,
                           "--bootstrap", cluster.bootstrap],
                          input=stdin, capture_output=True, text=True, env=env, timeout=90)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def cli_json(cluster: Cluster, *argv: str) -> Any:
    return json.loads(cli(cluster, *argv, "--json").stdout)


def test_cluster_status_names_the_active_controller(cluster: Cluster) -> None:
    # Every broker names the active controller (issue 17: each named itself, so successive
    # calls, answered by different brokers, disagreed).
    active = wait_for(lambda: quorum_leader(cluster.nodes), 20, "a controller leader")
    seen = [cli_json(cluster, "cluster", "status")["controller_id"] for _ in range(6)]
    assert seen == [active] * 6, f"active controller {active}, status said {seen}"

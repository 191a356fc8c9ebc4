"""A clean stop of a 3-node cluster, one node at a time as `odradek cluster up` and
LocalCluster.stop_all do: every node hands its leaderships (partitions and the Raft
quorum) to nodes still up, and logs nothing that looks like trouble."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import unique_name
from tests.integration.harness import REPO, Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "clean-stop", 3).start()
    yield c
    c.kill_all()


def cli(cluster: Cluster, *argv: str, stdin: str | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", *argv,
                           "--bootstrap", cluster.bootstrap],
                          input=stdin, capture_output=True, text=True, env=env, timeout=90)
    assert proc.returncode == 0, proc.stderr


def test_a_clean_stop_logs_no_epoch_truncation_or_failed_handover(cluster: Cluster) -> None:
    # issue 17: a clean stop logged "truncates non-monotonic entries" warnings
    # (docs/reliability.md's symptom of data loss) and Raft hand-offs that found no live
    # voter while two were up, or waited on one that had already stopped.
    topic = unique_name("stop")
    cli(cluster, "topics", "create", topic, "--partitions", "6", "--replication-factor", "3")
    cli(cluster, "produce", topic, stdin="".join(f"r{i}\n" for i in range(100)))
    sizes = {n.node_id: n.log_path.stat().st_size for n in cluster.nodes}
    cluster.stop_all()
    logs = {n.node_id: Path(n.log_path).read_bytes()[sizes[n.node_id]:].decode(errors="replace")
            for n in cluster.nodes}
    # stop_all stops node 3, then 2, then 1: only node 1, the last, has no voter left.
    last = cluster.nodes[0].node_id
    for node_id, text in logs.items():
        bad = [line for line in text.splitlines()
               if "non-monotonic" in line or "did not finish" in line
               or (node_id != last and ("no live voter" in line
                                        or "none to hand leadership to" in line))]
        assert not bad, f"node {node_id}:\n" + "\n".join(bad)

"""``odradek quorum describe|add-controller|remove-controller`` against real nodes: a live
controller is removed from the voters (it keeps following as an observer and tells its
directory id), added back from its own node configuration (its meta.properties' directory
id recorded with it), and the commands' refusals say what to do."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from odradek.storage.meta_properties import read_meta_properties
from tests.integration.harness import Cluster, NodeProcess, wait_for

pytestmark = pytest.mark.integration

OTHER_DIRECTORY = "J8aAPcfLQt2bqs1JT_rMgQ"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, n=3).start()
    yield c
    c.kill_all()


def quorum(node: NodeProcess, *argv: str, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    # The environment as it is: PYTHONPATH may point the CLI at the code under test.
    proc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", "quorum", *argv,
                           "--bootstrap", node.bootstrap],
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def describe(node: NodeProcess) -> dict[int, dict[str, Any]]:
    rows = json.loads(quorum(node, "describe", "--json").stdout)
    return {r["node_id"]: r for r in rows}


def test_remove_and_add_back_a_controller(cluster: Cluster, tmp_path: Path) -> None:
    n1, n3 = cluster.node(1), cluster.node(3)
    rows = describe(n1)
    assert sorted(rows) == [1, 2, 3]
    assert sorted(r["role"] for r in rows.values()) == ["Follower", "Follower", "Leader"]
    # Static voters (controller.quorum.voters) have no directory id recorded.
    assert all(r["directory_id"] == "" for r in rows.values())
    table = quorum(n1, "describe").stdout
    assert table.split("\n")[0].split() == ["NODE", "ROLE", "DIRECTORY-ID", "LOG-END", "LAG",
                                            "ENDPOINTS"]

    out = quorum(n1, "remove-controller", "--controller-id", "3").stdout
    assert out.strip() == "removed controller 3 from the voters"
    meta = read_meta_properties(n3.data_dir)
    assert meta is not None and meta.directory_id

    # Still running, node 3 follows as an observer and tells the leader its directory id.
    def observer() -> dict[str, Any] | None:
        row = describe(n1).get(3)
        return row if row and row["role"] == "Observer" else None

    row = wait_for(observer, 30, "node 3 an observer")
    assert row["directory_id"] == meta.directory_id

    added = json.loads(quorum(n1, "add-controller", "--config", str(n3.config_path),
                              "--json").stdout)["added"]
    assert added["node_id"] == 3 and added["directory_id"] == meta.directory_id
    host, _, port = n3.overrides["controller.listener"].rpartition(":")
    assert (added["listener"], added["host"], added["port"]) == ("CONTROLLER", host, int(port))
    rows = describe(n1)
    assert rows[3]["role"] in ("Leader", "Follower")
    assert rows[3]["directory_id"] == meta.directory_id
    assert rows[3]["endpoints"] == [f"CONTROLLER://{n3.overrides['controller.listener']}"]

    again = quorum(n1, "add-controller", "--config", str(n3.config_path), check=False)
    assert again.returncode == 1
    assert "cannot add controller 3: DuplicateVoter" in again.stderr
    assert "odradek quorum describe" in again.stderr
    wrong = quorum(n1, "remove-controller", "--controller-id", "3",
                   "--controller-directory-id", OTHER_DIRECTORY, check=False)
    assert wrong.returncode == 1 and "VoterNotFound" in wrong.stderr, wrong.stderr
    assert f"has directory id {meta.directory_id}" in wrong.stderr
    # Without --controller-directory-id: the one the quorum records.
    out = quorum(n1, "remove-controller", "--controller-id", "3").stdout
    assert out.strip() == f"removed controller 3 (directory {meta.directory_id}) from the voters"
    assert 3 not in [i for i, r in describe(n1).items() if r["role"] != "Observer"]


def test_add_controller_refusals_say_what_to_do(cluster: Cluster, tmp_path: Path) -> None:
    n1 = cluster.node(1)
    # A node configuration whose data directory was never used: no meta.properties yet.
    fresh = tmp_path / "node-9.yaml"
    fresh.write_text(yaml.safe_dump({"node.id": 9, "data.dir": str(tmp_path / "node-9"),
                                     "controller.listener": "127.0.0.1:1"}))
    out = quorum(n1, "add-controller", "--config", str(fresh), check=False)
    assert out.returncode == 1
    assert "meta.properties does not exist: start the node once" in out.stderr
    broker_only = tmp_path / "node-8.yaml"
    broker_only.write_text(yaml.safe_dump({"node.id": 8, "data.dir": str(tmp_path / "node-8"),
                                           "process.roles": "broker"}))
    out = quorum(n1, "add-controller", "--config", str(broker_only), check=False)
    assert out.returncode == 1 and "only a node with the controller role" in out.stderr
    out = quorum(n1, "remove-controller", "--controller-id", "7", check=False)
    assert out.returncode == 1 and "controller 7 is not a voter" in out.stderr


def _node_cmd(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "odradek.broker.cli.node", "node", "--config",
                           str(config)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("written", "error"), [
    ("version=1\ncluster.id=abc\nnode.id=5\n", "belongs to node 5, not node 1"),
    ("version=1\ncluster.id=abc\nnode.id=1\n", "belongs to cluster abc, but this node is "
                                               "configured for cluster xyz"),
    ("version=1\nnode.id=1\n", "cluster.id is missing"),
])
def test_a_node_refuses_a_data_dir_of_another_node_or_cluster(
        tmp_path: Path, written: str, error: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.properties").write_text(written)
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"node.id": 1, "data.dir": str(data), "cluster.id": "xyz",
                                      "listeners": "PLAINTEXT://127.0.0.1:0"}))
    p = _node_cmd(config)
    assert p.returncode == 1, p.stderr
    assert f"cannot start: {data / 'meta.properties'}" in p.stderr and error in p.stderr
    assert (data / "meta.properties").read_text() == written  # left as it was


def test_a_data_dir_of_an_older_version_gains_a_directory_id(tmp_path: Path) -> None:
    """A node started on a directory whose meta.properties has no directory.id (as Odradek
    wrote it before directory ids) starts, keeps its cluster id and gets a directory id."""
    first = NodeProcess(tmp_path, node_id=1).start(60)
    first.kill()
    meta = read_meta_properties(first.data_dir)
    assert meta is not None and meta.directory_id
    (first.data_dir / "meta.properties").write_text(
        f"version=1\ncluster.id={meta.cluster_id}\nnode.id=1\n")
    again = NodeProcess(tmp_path, node_id=1, kafka_port=first.kafka_port).start(60)
    try:
        upgraded = read_meta_properties(again.data_dir)
        assert upgraded is not None and upgraded.cluster_id == meta.cluster_id
        assert upgraded.directory_id and upgraded.directory_id != meta.directory_id
        assert "directory.id=" in (again.data_dir / "meta.properties").read_text()
    finally:
        again.kill()

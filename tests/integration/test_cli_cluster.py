"""The admin command line against a 3-node cluster: what only a quorum shows (the cluster's
defaults, the active controller, a group coordinator that does not exist yet, internal
topics in the status)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from odradek.broker.verify.faults import quorum_leader
from tests.helpers import unique_name
from tests.integration.harness import REPO, Cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cli-cluster"), 3,
                # Kafka's default delay before a new group's first rebalance (the harness
                # sets 0): a group join takes that long here, as on a real cluster.
                overrides={"num.partitions": 2, "replica.lag.time.max.ms": 2000,
                           "broker.session.timeout.ms": 3000,
                           "group.initial.rebalance.delay.ms": 3000}).start()
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


def test_groups_describe_on_a_fresh_cluster_gives_one_answer(cluster: Cluster) -> None:
    # First in this module: __consumer_offsets does not exist yet, so the first
    # FindCoordinator creates it (issue 17: the first call said CoordinatorNotAvailable, the
    # next ones that the group does not exist).
    answers = [cli(cluster, "groups", "describe", "my-group", check=False) for _ in range(2)]
    for proc in answers:
        assert proc.returncode == 1
        assert proc.stderr.startswith("odradek: error: group 'my-group' does not exist"), \
            proc.stderr
    assert answers[0].stderr == answers[1].stderr


def test_topics_create_without_flags_takes_the_cluster_defaults(cluster: Cluster) -> None:
    # num.partitions=2 and default.replication.factor=3 (issue 17: the CLI sent 1 and 1).
    topic = unique_name("deftest")
    created = cli_json(cluster, "topics", "create", topic)
    assert (created["partitions"], created["replication_factor"]) == (2, 3)
    desc = cli_json(cluster, "topics", "describe", topic)
    assert len(desc["partitions"]) == 2
    assert all(len(p["replicas"]) == 3 for p in desc["partitions"])
    assert "(2 partitions, replication factor 3)" in cli(
        cluster, "topics", "create", unique_name("deftest")).stdout


def test_cluster_status_names_the_active_controller(cluster: Cluster) -> None:
    # Every broker names the active controller (issue 17: each named itself, so successive
    # calls, answered by different brokers, disagreed).
    active = wait_for(lambda: quorum_leader(cluster.nodes), 20, "a controller leader")
    seen = [cli_json(cluster, "cluster", "status")["controller_id"] for _ in range(6)]
    assert seen == [active] * 6, f"active controller {active}, status said {seen}"


def test_cluster_status_folds_internal_topics(cluster: Cluster) -> None:
    node = cluster.nodes[2]
    node.kill()
    try:
        def folded() -> str | None:
            out = cli(cluster, "cluster", "status").stdout
            return out if "__consumer_offsets: " in out else None

        out = wait_for(folded, 30, "under-replicated __consumer_offsets in the status")
        assert not re.search(r"__consumer_offsets-\d+ ", out), out
        full = cli(cluster, "cluster", "status", "--include-internal").stdout
        assert re.search(r"__consumer_offsets-\d+ replicas=", full), full
    finally:
        node.start()


def test_consume_timeout_counts_from_the_assignment(cluster: Cluster) -> None:
    # issue 17: the group join (3 s of initial rebalance delay) ate --timeout-ms 3000 and
    # the command printed "consumed 0 record(s)" with records present.
    topic = unique_name("billing")
    cli(cluster, "topics", "create", topic)
    lines = [f"invoice-{i}" for i in range(20)]
    cli(cluster, "produce", topic, stdin="".join(f"{x}\n" for x in lines))
    proc = cli(cluster, "consume", topic, "--group", unique_name("billing"),
               "--from-beginning", "--timeout-ms", "3000")
    assert sorted(proc.stdout.splitlines()) == sorted(lines)
    assert "consumed 20 record(s)" in proc.stderr

"""Metric series a dashboard or an alert relies on: there at 0 from the start, and the ISR
change counter telling a failure (shrinks) from a recovery (expands)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import metric_sum, unique_name
from tests.integration.harness import REPO, Cluster, NodeProcess, metric, scrape, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("metrics-series"), 3,
                overrides={"replica.lag.time.max.ms": 2000,
                           "broker.session.timeout.ms": 3000}).start()
    yield c
    c.kill_all()


def cli(cluster: Cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", *argv,
                           "--bootstrap", cluster.bootstrap],
                          capture_output=True, text=True, env=env, timeout=90)
    assert proc.returncode == 0, proc.stderr
    return proc


def cli_json(cluster: Cluster, *argv: str) -> Any:
    return json.loads(cli(cluster, *argv, "--json").stdout)


def test_labelled_counters_exist_at_zero_on_a_fresh_node(cluster: Cluster) -> None:
    # First in this module: nothing has happened yet (issue 17: series with a known label
    # set appeared only with their first event, so rate() saw nothing on a healthy cluster).
    text = scrape(cluster.nodes[0])
    for labels in ('kind="shrink"', 'kind="expand"'):
        assert metric_sum(text, "odradek_isr_changes_total", labels) == 0
    for api in ("produce", "fetch", "create_topics", "join_group", "offset_commit"):
        assert metric_sum(text, "odradek_request_errors_total", f'api="{api}"') == 0, api
        assert metric_sum(text, "odradek_requests_total", f'api="{api}"') is not None, api
    for reason in ("idle", "stalled", "unread_responses"):
        assert metric_sum(text, "odradek_connections_closed_total",
                          f'reason="{reason}"') is not None
    # A topic's traffic counters, from when a node leads a partition of it.
    topic = unique_name("quiet")
    cli(cluster, "topics", "create", topic, "--partitions", "3", "--replication-factor", "3")

    def exported() -> bool:
        leaders = {p["leader"] for p in cli_json(cluster, "topics", "describe",
                                                 topic)["partitions"]}
        return all(metric_sum(scrape(n), name, f'topic="{topic}"') == 0
                   for n in cluster.nodes if n.node_id in leaders
                   for name in ("odradek_messages_in_total", "odradek_bytes_in_total",
                                "odradek_messages_out_total", "odradek_bytes_out_total"))

    wait_for(exported, 20, f"traffic counters of {topic} at 0 on every leader")


def _isr_changes(nodes: list[NodeProcess], kind: str) -> float:
    return sum(metric(n, "odradek_isr_changes_total", f'kind="{kind}"') for n in nodes)


def test_isr_changes_count_the_failure_as_shrinks_and_the_recovery_as_expands(
        cluster: Cluster) -> None:
    # issue 17: a rejoin counted as shrinks, the outage as nothing.
    topic = unique_name("isr")
    cli(cluster, "topics", "create", topic, "--partitions", "6", "--replication-factor", "3")
    wait_for(lambda: all(len(p["isr"]) == 3 for p in
                         cli_json(cluster, "topics", "describe", topic)["partitions"]),
             30, "full ISRs")
    victim, *survivors = cluster.nodes
    shrinks, expands = _isr_changes(survivors, "shrink"), _isr_changes(survivors, "expand")
    victim.kill()
    wait_for(lambda: _isr_changes(survivors, "shrink") > shrinks, 30, "ISR shrinks counted")
    # Shrinks go on arriving until the controller has fenced the victim, which takes it out
    # of every ISR left in one batch: only then is the outage's count complete.
    wait_for(lambda: any(b["id"] == victim.node_id and b["fenced"]
                         for b in cli_json(cluster, "cluster", "status")["brokers"])
             and all(victim.node_id not in p["isr"]
                     for p in cli_json(cluster, "topics", "describe", topic)["partitions"]),
             30, "the victim fenced and out of every ISR")
    assert _isr_changes(survivors, "expand") == expands
    after_outage = _isr_changes(survivors, "shrink")
    victim.start()
    wait_for(lambda: _isr_changes(survivors, "expand") > expands, 60, "ISR expands counted")
    wait_for(lambda: all(len(p["isr"]) == 3 for p in
                         cli_json(cluster, "topics", "describe", topic)["partitions"]),
             60, "full ISRs again")
    assert _isr_changes(survivors, "shrink") == after_outage



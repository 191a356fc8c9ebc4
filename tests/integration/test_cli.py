"""The admin command line (``odradek topics|produce|consume|groups|cluster status``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import unique_name
from tests.integration.harness import NodeProcess

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]



def cli(node: NodeProcess, *argv: str, stdin: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", *argv,
                           "--bootstrap", node.bootstrap],
                          input=stdin, capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def cli_json(node: NodeProcess, *argv: str, stdin: str | None = None) -> Any:
    return json.loads(cli(node, *argv, "--json", stdin=stdin).stdout)


def test_topics_lifecycle(shared_node: NodeProcess) -> None:
    topic = unique_name("cli")
    created = cli_json(shared_node, "topics", "create", topic, "--partitions", "2",
                       "--config", "retention.ms=1000000")
    assert created["created"] and created["partitions"] == 2
    assert topic in cli_json(shared_node, "topics", "list")
    desc = cli_json(shared_node, "topics", "describe", topic)
    assert [p["partition"] for p in desc["partitions"]] == [0, 1]
    assert all(p["leader"] == 1 and p["isr"] == [1] for p in desc["partitions"])
    assert desc["configs"].get("retention.ms") == "1000000"
    cli_json(shared_node, "topics", "alter", topic, "--partitions", "3",
             "--config", "retention.ms=2000000")
    desc = cli_json(shared_node, "topics", "describe", topic)
    assert len(desc["partitions"]) == 3
    assert desc["configs"].get("retention.ms") == "2000000"
    human = cli(shared_node, "topics", "describe", topic).stdout
    assert "PARTITION" in human and topic in human
    assert cli_json(shared_node, "topics", "delete", topic)["deleted"]
    deadline = time.monotonic() + 10
    while topic in cli_json(shared_node, "topics", "list") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert topic not in cli_json(shared_node, "topics", "list")


def test_produce_consume_groups(shared_node: NodeProcess) -> None:
    topic, group = unique_name("pc"), unique_name("grp")
    cli(shared_node, "topics", "create", topic)
    lines = [f"line-{i}" for i in range(5)]
    out = cli_json(shared_node, "produce", topic, "--key", "k1", "--header", "h=v",
                   stdin="\n".join(lines) + "\n")
    assert out["produced"] == 5
    got = cli(shared_node, "consume", topic, "--from-beginning", "--max-messages", "5",
              "--json").stdout.splitlines()
    records = [json.loads(line) for line in got]
    assert [r["value"] for r in records] == lines
    assert all(r["key"] == "k1" and r["headers"] == {"h": "v"} for r in records)

    # A partial consume in a group leaves lag 3.
    part = cli(shared_node, "consume", topic, "--group", group, "--from-beginning",
               "--max-messages", "2").stdout.splitlines()
    assert part == lines[:2]
    desc = cli_json(shared_node, "groups", "describe", group)
    assert desc["partitions"] == [{"topic": topic, "partition": 0, "committed": 2,
                                   "log_end": 5, "lag": 3}]
    assert group in [g["group"] for g in cli_json(shared_node, "groups", "list")]
    assert "LAG" in cli(shared_node, "groups", "describe", group).stdout

    reset = cli_json(shared_node, "groups", "reset-offsets", group, "--to-earliest")
    assert reset["partitions"] == [{"topic": topic, "partition": 0, "committed": 0}]
    assert cli_json(shared_node, "groups", "describe", group)["partitions"][0]["lag"] == 5
    cli_json(shared_node, "groups", "reset-offsets", group, "--topic", topic, "--to-offset", "4")
    assert cli_json(shared_node, "groups", "describe", group)["partitions"][0]["committed"] == 4

    one = cli(shared_node, "consume", topic, "--partition", "0", "--offset", "3",
              "--max-messages", "1").stdout.splitlines()
    assert one == ["line-3"]
    assert cli_json(shared_node, "groups", "delete", group)["deleted"]


def test_cluster_status(shared_node: NodeProcess) -> None:
    status = cli_json(shared_node, "cluster", "status")
    assert [(b["id"], b["alive"], b["fenced"]) for b in status["brokers"]] == [(1, True, False)]
    assert status["offline_partitions"] == []
    assert "quorum" not in status
    assert "alive" in cli(shared_node, "cluster", "status").stdout


def test_errors_are_one_clear_line(shared_node: NodeProcess) -> None:
    missing = unique_name("missing")
    proc = cli(shared_node, "topics", "describe", missing, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip() == f"odradek: error: topic '{missing}' does not exist"
    proc = cli(shared_node, "topics", "alter", missing, check=False)
    assert proc.returncode != 0 and "nothing to alter" in proc.stderr


def test_unreachable_bootstrap_fails_fast() -> None:
    from tests.integration.harness import free_port

    port = free_port()  # nothing listens there
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv in (["topics", "list"], ["produce", "t"], ["consume", "t"]):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", *argv,
                               "--bootstrap", f"127.0.0.1:{port}"], input="x\n",
                              capture_output=True, text=True, env=env, timeout=60)
        took = time.monotonic() - started
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("odradek: error: cannot reach any bootstrap server"), \
            proc.stderr
        assert "odradek cluster up" in proc.stderr
        assert took < 15, f"{argv} took {took:.1f}s to report an unreachable cluster"


def test_progress_on_long_work(shared_node: NodeProcess) -> None:
    topic = unique_name("progress")
    cli(shared_node, "topics", "create", topic, "--partitions", "1")
    lines = "".join(f"line-{i}\n" for i in range(3000))
    proc = cli(shared_node, "produce", topic, "--progress", stdin=lines)
    # (text mode turns the progress line's carriage returns into newlines)
    assert "produced 3000 record(s) (" in proc.stderr and "3000 acknowledged" in proc.stderr
    assert proc.stderr.rstrip().endswith("produced 3000 record(s) to " + topic)
    proc = cli(shared_node, "consume", topic, "--from-beginning", "--progress",
               "--max-messages", "3000")
    assert proc.stdout.splitlines() == [f"line-{i}" for i in range(3000)]
    assert "consumed 3000 record(s) (" in proc.stderr

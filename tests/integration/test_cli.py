"""The admin command line (``odradek topics|produce|consume|groups|cluster status``)."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import unique_name
from tests.integration.harness import NodeProcess, wait_for

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
    consumed = cli(shared_node, "consume", topic, "--group", group, "--from-beginning",
                   "--max-messages", "2")
    assert consumed.stdout.splitlines() == lines[:2], consumed.stderr
    desc = cli_json(shared_node, "groups", "describe", group)
    assert desc["partitions"] == [{"topic": topic, "partition": 0, "committed": 2,
                                   "log_end": 5, "lag": 3}]
    assert group in [g["group"] for g in cli_json(shared_node, "groups", "list")]
    assert "LAG" in cli(shared_node, "groups", "describe", group).stdout

    reset = cli_json(shared_node, "groups", "reset-offsets", group, "--to-earliest",
                     "--execute")
    assert reset["partitions"] == [{"topic": topic, "partition": 0, "current": 2, "new": 0}]
    assert cli_json(shared_node, "groups", "describe", group)["partitions"][0]["lag"] == 5
    cli_json(shared_node, "groups", "reset-offsets", group, "--topic", topic, "--to-offset", "4",
             "--execute")
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


def test_server_errors_are_one_line_with_the_servers_message(shared_node: NodeProcess) -> None:
    # issue 17: ~600 characters of the client's request and response repr, the server's
    # message buried inside. Now: what failed, the error's name, the server's message and
    # what to do, on one line.
    topic = unique_name("errs")
    cli(shared_node, "topics", "create", topic, "--partitions", "2")
    cases = [
        (("topics", "create", "my topic"), "cannot create topic 'my topic': InvalidTopic: ",
         "illegal"),
        (("topics", "create", unique_name("p0"), "--partitions", "0"),
         ": InvalidPartitions: ", "larger than 0"),
        (("topics", "create", unique_name("rf5"), "--replication-factor", "5"),
         ": InvalidReplicationFactor: ", "replication factor"),
        (("topics", "create", topic), f"cannot create topic '{topic}': TopicAlreadyExists: ",
         "already exists"),
        (("topics", "alter", topic, "--partitions", "1"),
         f"cannot change the partitions of '{topic}': InvalidPartitions: ", "partition"),
        (("topics", "alter", topic, "--config", "retention.ms=soon"),
         f"cannot change the configs of '{topic}': InvalidConfiguration: ", "retention.ms"),
        (("topics", "alter", topic, "--config", "no.such.config=1"),
         ": InvalidConfiguration: ", "no.such.config"),
    ]
    for argv, expected, server_words in cases:
        proc = cli(shared_node, *argv, check=False)
        assert proc.returncode == 1, (argv, proc.stdout)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, (argv, proc.stderr)
        line = lines[0]
        assert line.startswith("odradek: error: "), line
        assert expected in line and server_words in line, (argv, line)
        assert "Request(" not in line and "Response(" not in line, line
        assert len(line) < 400, (argv, len(line), line)


def test_topic_configs_set_delete_and_describe(shared_node: NodeProcess) -> None:
    topic = unique_name("cfg")
    cli(shared_node, "topics", "create", topic, "--config", "retention.ms=1000000",
        "--config", "segment.ms=3600000")
    cli(shared_node, "topics", "alter", topic, "--config", "retention.ms=2000000",
        "--delete-config", "segment.ms")
    configs = cli_json(shared_node, "topics", "describe", topic)["configs"]
    assert configs.get("retention.ms") == "2000000" and "segment.ms" not in configs
    assert "Configs: retention.ms=2000000" in cli(shared_node, "topics", "describe",
                                                  topic).stdout
    proc = cli(shared_node, "topics", "alter", topic, "--config", "segment.ms=1",
               "--delete-config", "segment.ms", check=False)
    assert proc.returncode == 1 and "both --config and --delete-config" in proc.stderr


def test_consume_into_a_closed_pipe_exits_quietly(shared_node: NodeProcess) -> None:
    # issue 17: `odradek consume ... | head -2` ended with a BrokenPipeError traceback and
    # exit code 1. Enough records to fill the pipe's buffer after the reader has gone.
    topic = unique_name("pipe")
    cli(shared_node, "topics", "create", topic)
    cli(shared_node, "produce", topic, stdin="".join(f"record-{i:06d}-{'x' * 40}\n"
                                                     for i in range(5000)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "odradek.broker.cli.main", "consume", topic,
                             "--from-beginning", "--max-messages", "5000",
                             "--bootstrap", shared_node.bootstrap],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    first = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()  # what `head -2` does
    code = proc.wait(60)
    err = proc.stderr.read().decode()
    assert [x.decode().split("-x")[0] for x in first] == ["record-000000", "record-000001"]
    assert code == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_keys_headers_and_record_fields(shared_node: NodeProcess) -> None:
    topic = unique_name("kv")
    cli(shared_node, "topics", "create", topic)
    cli(shared_node, "produce", topic, "--property", "parse.key=true",
        "--property", "key.separator=:", "--header", "source=cli",
        stdin="user-1:hello\nuser-2:a:b\n")
    cli(shared_node, "produce", topic, "--property", "parse.headers=true",
        "--property", "parse.key=true", stdin="h1:x,h2:y\tuser-3\tthird\n")
    records = [json.loads(x) for x in cli(shared_node, "consume", topic, "--from-beginning",
                                          "--max-messages", "3", "--json").stdout.splitlines()]
    assert [(r["key"], r["value"], r["headers"]) for r in records] == [
        ("user-1", "hello", {"source": "cli"}), ("user-2", "a:b", {"source": "cli"}),
        ("user-3", "third", {"h1": "x", "h2": "y"})]
    out = cli(shared_node, "consume", topic, "--from-beginning", "--max-messages", "3",
              "--property", "print.key=true", "--property", "print.partition=true",
              "--property", "print.offset=true", "--property", "print.headers=true",
              "--property", "print.timestamp=true").stdout.splitlines()
    ts = records[0]["timestamp"]
    assert out[0] == f"CreateTime:{ts}\tPartition:0\tOffset:0\tsource:cli\tuser-1\thello"
    assert out[2].endswith("\tOffset:2\th1:x,h2:y\tuser-3\tthird")
    keys = cli(shared_node, "consume", topic, "--from-beginning", "--max-messages", "1",
               "--property", "print.key=true", "--property", "key.separator= => ").stdout
    assert keys.splitlines() == ["user-1 => hello"]
    proc = cli(shared_node, "produce", topic, "--property", "parse.key=true",
               stdin="no separator here\n", check=False)
    assert proc.returncode == 1 and "line 1: no key separator" in proc.stderr


def test_consume_from_a_timestamp(shared_node: NodeProcess) -> None:
    topic = unique_name("ts")
    cli(shared_node, "topics", "create", topic)
    cli(shared_node, "produce", topic, stdin="old-1\nold-2\n")
    time.sleep(1.5)
    middle = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=0.5)
    cli(shared_node, "produce", topic, stdin="new-1\nnew-2\n")
    for when in (middle.isoformat(), str(int(middle.timestamp() * 1000))):
        out = cli(shared_node, "consume", topic, "--from-timestamp", when,
                  "--timeout-ms", "1500").stdout.splitlines()
        assert out == ["new-1", "new-2"], when
    group = unique_name("tsg")
    out = cli(shared_node, "consume", topic, "--group", group, "--from-timestamp",
              middle.isoformat(), "--timeout-ms", "1500").stdout.splitlines()
    assert out == ["new-1", "new-2"]
    proc = cli(shared_node, "consume", topic, "--from-timestamp", "yesterday", check=False)
    assert proc.returncode == 1 and "--from-timestamp" in proc.stderr


def test_follow_until_interrupted(shared_node: NodeProcess) -> None:
    topic, group = unique_name("follow"), unique_name("followers")
    cli(shared_node, "topics", "create", topic)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "odradek.broker.cli.main", "consume", topic,
                             "--follow", "--group", group, "--from-beginning",
                             "--timeout-ms", "500", "--bootstrap", shared_node.bootstrap],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    # A consumer that never prints fails the test instead of blocking its readline(), and
    # a failing test leaves no consumer behind.
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        cli(shared_node, "produce", topic, stdin="one\n")
        assert proc.stdout.readline() == "one\n"
        time.sleep(1.5)  # longer than --timeout-ms: follow mode keeps going
        cli(shared_node, "produce", topic, stdin="two\n")
        assert proc.stdout.readline() == "two\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "consumed 2 record(s)" in err
    # Ctrl-C committed what was printed.
    desc = cli_json(shared_node, "groups", "describe", group)
    assert [(p["committed"], p["lag"]) for p in desc["partitions"]] == [(2, 0)]


def test_reset_offsets_dry_run_execute_datetime_shift(shared_node: NodeProcess) -> None:
    topic, group = unique_name("reset"), unique_name("resetg")
    cli(shared_node, "topics", "create", topic)
    cli(shared_node, "produce", topic, stdin="".join(f"r{i}\n" for i in range(10)))
    cli(shared_node, "consume", topic, "--group", group, "--from-beginning",
        "--max-messages", "10")

    def committed() -> int:
        return int(cli_json(shared_node, "groups", "describe", group)["partitions"][0]
                   ["committed"])

    dry = cli(shared_node, "groups", "reset-offsets", group, "--to-earliest")
    assert "dry run" in dry.stderr and committed() == 10
    assert dry.stdout.splitlines()[1].split() == [topic, "0", "10", "0"]
    cli(shared_node, "groups", "reset-offsets", group, "--shift-by", "-3", "--execute")
    assert committed() == 7
    out = cli_json(shared_node, "groups", "reset-offsets", group, "--shift-by", "-100",
                   "--execute")
    assert out["executed"] and out["partitions"][0]["new"] == 0  # clamped to the log start
    cli(shared_node, "groups", "reset-offsets", group, "--to-datetime", "2000-01-01T00:00:00",
        "--execute")
    assert committed() == 0
    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).isoformat()
    cli(shared_node, "groups", "reset-offsets", group, "--to-datetime", future, "--execute")
    assert committed() == 10  # no record that late: the log end, as Kafka's tool does
    cli(shared_node, "groups", "reset-offsets", group, "--to-latest", "--dry-run")
    assert committed() == 10

    # A group with a live member is refused, as kafka-consumer-groups refuses it.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    member = subprocess.Popen([sys.executable, "-m", "odradek.broker.cli.main", "consume", topic,
                               "--group", group, "--follow",
                               "--bootstrap", shared_node.bootstrap],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        def active() -> bool:
            return bool(cli_json(shared_node, "groups", "describe", group)["members"])

        wait_for(active, 30, "the consumer to join")
        proc = cli(shared_node, "groups", "reset-offsets", group, "--to-earliest", "--execute",
                   check=False)
        assert proc.returncode == 1
        assert "only while the group is inactive" in proc.stderr and "1 member" in proc.stderr
    finally:
        member.send_signal(signal.SIGINT)
        member.wait(30)
    assert committed() == 10


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


def test_consume_in_a_group_with_no_partition_left_stops_after_its_timeout(
        shared_node: NodeProcess) -> None:
    # More members than partitions: this one gets none once the group has rebalanced, and
    # --timeout-ms counts from then (not from a partition that never comes).
    topic, group = unique_name("full"), unique_name("fullg")
    cli(shared_node, "topics", "create", topic, "--partitions", "1")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-m", "odradek.broker.cli.main", "consume", topic,
                               "--group", group, "--follow",
                               "--bootstrap", shared_node.bootstrap],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: cli_json(shared_node, "groups", "describe", group)["members"], 30,
                 "the first member to join")
        started = time.monotonic()
        proc = cli(shared_node, "consume", topic, "--group", group, "--timeout-ms", "1000")
        assert "consumed 0 record(s)" in proc.stderr
        assert time.monotonic() - started < 30
    finally:
        holder.send_signal(signal.SIGINT)
        holder.wait(30)

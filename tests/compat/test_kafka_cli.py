"""Kafka's own command-line tools (kafka-topics, kafka-console-producer/consumer,
kafka-consumer-groups, kafka-leader-election, kafka-log-dirs, kafka-metadata-quorum,
kafka-configs, kafka-features, kafka-cluster, kafka-reassign-partitions; Kafka 4.1 from Maven
Central, run with Java) against a 3-node cluster: each common command's exit code and output,
and what it changed seen through another client."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from odradek.broker.kafka.client import KafkaConnection
from tests.compat.kafka_tools import (
    CLUSTER,
    CONFIGS,
    CONSOLE_CONSUMER,
    CONSOLE_PRODUCER,
    CONSUMER_GROUPS,
    FEATURES,
    LEADER_ELECTION,
    LOG_DIRS,
    METADATA_QUORUM,
    TOPICS,
    KafkaTools,
    Result,
    kafka_tools,
    kafka_tools_lib,
)
from tests.helpers import unique_name
from tests.integration.harness import Cluster, wait_for

pytestmark = pytest.mark.integration

# 2024-01-01T00:00:00Z: record timestamps for --to-datetime.
BASE_MS = 1_704_067_200_000
MINUTE_MS = 60_000


@pytest.fixture(scope="module")
def lib() -> Path:
    """The tools' jars: looked for (or fetched) before any node starts, so a machine without
    Java skips at once."""
    return kafka_tools_lib()


@pytest.fixture(scope="module")
def cluster(lib: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # No automatic rebalancing: only the elections the tests ask for move leaders.
    c = Cluster(tmp_path_factory.mktemp("kafka-cli"), n=3,
                overrides={"auto.leader.rebalance.enable": False}).start()
    yield c
    c.kill_all()


@pytest.fixture(scope="module")
def tools(cluster: Cluster, lib: Path) -> KafkaTools:
    return kafka_tools(cluster.bootstrap, lib)


@pytest.fixture
def admin(cluster: Cluster) -> Iterator[KafkaAdminClient]:
    a = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=15_000)
    yield a
    a.close()


def partitions_described(out: str) -> dict[int, dict[str, Any]]:
    """kafka-topics --describe's partition lines, by partition."""
    parts: dict[int, dict[str, Any]] = {}
    for m in re.finditer(r"Partition: (\d+)\tLeader: (-?\d+)\tReplicas: ([\d,]*)\tIsr: ([\d,]*)",
                         out):
        parts[int(m[1])] = {"leader": int(m[2]),
                            "replicas": [int(x) for x in m[3].split(",") if x],
                            "isr": [int(x) for x in m[4].split(",") if x]}
    return parts


def leaders(admin: KafkaAdminClient, topic: str) -> dict[int, int]:
    [t] = admin.describe_topics([topic])
    return {p["partition_index"]: p["leader_id"] for p in t["partitions"]}


def isrs(admin: KafkaAdminClient, topic: str) -> dict[int, list[int]]:
    [t] = admin.describe_topics([topic])
    return {p["partition_index"]: sorted(p["isr_nodes"]) for p in t["partitions"]}


def all_in_sync(admin: KafkaAdminClient) -> bool:
    """Every partition of every topic has all its replicas in its ISR."""
    return all(sorted(p["isr_nodes"]) == sorted(p["replica_nodes"])
               for t in admin.describe_topics() for p in t["partitions"])


def table(out: str, group: str) -> list[list[str]]:
    """The rows of a kafka-consumer-groups table (describe or reset-offsets) for ``group``."""
    return [line.split() for line in out.splitlines() if line.split()[:1] == [group]]


def offsets(out: str, group: str, column: int) -> dict[int, str]:
    """Partition -> the value in ``column`` of the group's table rows (one topic)."""
    return {int(row[2]): row[column] for row in table(out, group)}


# --- kafka-topics -----------------------------------------------------------------------


def test_topics_create_list_describe_alter_delete(tools: KafkaTools,
                                                  admin: KafkaAdminClient) -> None:
    topic = unique_name("cli-topic")
    out = tools.ok(TOPICS, "--create", "--topic", topic, "--partitions", "3",
                   "--replication-factor", "3", "--config", "retention.ms=123456",
                   "--config", "max.message.bytes=200000")
    assert out.strip() == f"Created topic {topic}."

    assert topic in tools.ok(TOPICS, "--list").split()

    out = tools.ok(TOPICS, "--describe", "--topic", topic)
    head = out.splitlines()[0]
    assert head.startswith(f"Topic: {topic}\tTopicId: ")
    assert "\tPartitionCount: 3\tReplicationFactor: 3\t" in head
    configs = head.split("Configs: ")[1].split(",")
    assert sorted(configs) == ["max.message.bytes=200000", "retention.ms=123456"]
    parts = partitions_described(out)
    assert sorted(parts) == [0, 1, 2]
    for p in parts.values():
        assert sorted(p["replicas"]) == [1, 2, 3]
        assert sorted(p["isr"]) == [1, 2, 3]
        assert p["leader"] in p["replicas"]
    # Replicas spread: not every partition led by the same broker.
    assert len({p["replicas"][0] for p in parts.values()}) == 3

    # Created again: refused, the tool says why and exits 1.
    r = tools.run(TOPICS, "--create", "--topic", topic, "--partitions", "1")
    assert r.returncode == 1, str(r)
    assert r.stdout.strip() == \
        f"Error while executing topic command : Topic '{topic}' already exists.", str(r)

    assert tools.ok(TOPICS, "--alter", "--topic", topic, "--partitions", "5") == ""
    parts = partitions_described(tools.ok(TOPICS, "--describe", "--topic", topic))
    assert sorted(parts) == [0, 1, 2, 3, 4]
    assert all(len(p["replicas"]) == 3 for p in parts.values())
    assert sorted(leaders(admin, topic)) == [0, 1, 2, 3, 4]

    # Fewer partitions: Kafka refuses that.
    r = tools.run(TOPICS, "--alter", "--topic", topic, "--partitions", "2")
    assert r.returncode == 1, str(r)
    assert "Error while executing topic command" in r.output, str(r)
    assert "partitions" in r.output.lower(), str(r)

    assert tools.ok(TOPICS, "--delete", "--topic", topic) == ""
    wait_for(lambda: topic not in tools.ok(TOPICS, "--list").split(), 15, "topic deleted")
    assert topic not in admin.list_topics()

    r = tools.run(TOPICS, "--describe", "--topic", topic)
    assert r.returncode == 1, str(r)
    assert f"Topic '{topic}' does not exist" in r.output, str(r)


# --- kafka-console-producer / kafka-console-consumer ---------------------------------------


def test_console_producer_and_consumer_round_trip(tools: KafkaTools, cluster: Cluster,
                                                  admin: KafkaAdminClient) -> None:
    topic = unique_name("cli-console")
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])
    lines = [f"key-{i}:value {i}" for i in range(20)]
    tools.ok(CONSOLE_PRODUCER, "--topic", topic, "--property", "parse.key=true",
             "--property", "key.separator=:", stdin="\n".join(lines) + "\n")

    r = tools.run(CONSOLE_CONSUMER, "--topic", topic, "--from-beginning",
                  "--max-messages", "20", "--timeout-ms", "20000",
                  "--property", "print.key=true", "--property", "key.separator=:",
                  "--property", "print.partition=true")
    assert r.returncode == 0, str(r)
    assert "Processed a total of 20 messages" in r.stderr, str(r)
    # "Partition:<p>:<key>:<value>": key.separator also ends the partition.
    got = [line.split(":", 2)[1:] for line in r.stdout.splitlines()]
    assert sorted(kv for _, kv in got) == sorted(lines)
    # The same key always lands in the same partition (the producer's hash, not Odradek's).
    by_key = {kv.split(":")[0]: int(part) for part, kv in got}
    assert len(set(by_key.values())) > 1

    # The keys are record keys, not part of the value: another client sees them so.
    consumer = KafkaConsumer(topic, bootstrap_servers=cluster.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    try:
        records = [next(consumer) for _ in range(20)]
    finally:
        consumer.close()
    assert sorted((r.key, r.value) for r in records) == sorted(
        (f"key-{i}".encode(), f"value {i}".encode()) for i in range(20))
    assert all(by_key[r.key.decode()] == r.partition for r in records)


# --- kafka-consumer-groups --------------------------------------------------------------


def _produce(cluster: Cluster, topic: str, partition: int, minutes: range) -> None:
    """One record per minute in ``minutes`` after BASE_MS, into ``partition``."""
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    try:
        for m in minutes:
            producer.send(topic, key=b"k", value=f"m{m}".encode(), partition=partition,
                          timestamp_ms=BASE_MS + m * MINUTE_MS)
        producer.flush()
    finally:
        producer.close()


def test_consumer_groups(tools: KafkaTools, cluster: Cluster,
                         admin: KafkaAdminClient) -> None:
    topic, group = unique_name("cli-groups"), unique_name("cli-group")
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=3)])
    _produce(cluster, topic, 0, range(0, 6))   # offsets 0-5, minutes 0-5
    _produce(cluster, topic, 1, range(0, 4))   # offsets 0-3, minutes 0-3

    # A console consumer in the group reads everything and commits when it closes.
    r = tools.run(CONSOLE_CONSUMER, "--topic", topic, "--group", group, "--from-beginning",
                  "--max-messages", "10", "--timeout-ms", "20000")
    assert r.returncode == 0, str(r)
    assert len(r.stdout.splitlines()) == 10, str(r)

    assert group in tools.ok(CONSUMER_GROUPS, "--list").split()
    states = {row[0]: row[1:] for row in
              (line.split() for line in tools.ok(CONSUMER_GROUPS, "--list", "--state")
               .splitlines()) if row}
    assert states["GROUP"] == ["STATE"]
    assert states[group] == ["Empty"]

    _produce(cluster, topic, 0, range(10, 13))  # offsets 6-8, minutes 10-12: lag 3

    def describe() -> str:
        return tools.ok(CONSUMER_GROUPS, "--describe", "--group", group)

    out = describe()
    header = next(line.split() for line in out.splitlines() if line.startswith("GROUP"))
    assert header == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET",
                      "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
    rows = {int(row[2]): row for row in table(out, group)}
    assert rows[0][1] == topic
    assert rows[0][3:7] == ["6", "9", "3", "-"]
    assert rows[1][3:7] == ["4", "4", "0", "-"]

    def reset(*args: str) -> dict[int, str]:
        out = tools.ok(CONSUMER_GROUPS, "--reset-offsets", "--group", group, *args)
        return offsets(out, group, 3)

    # --dry-run: the plan is printed, nothing is committed.
    assert reset("--topic", topic, "--to-earliest", "--dry-run") == {0: "0", 1: "0"}
    assert offsets(describe(), group, 3) == {0: "6", 1: "4"}

    assert reset("--topic", topic, "--to-earliest", "--execute") == {0: "0", 1: "0"}
    out = describe()
    assert offsets(out, group, 3) == {0: "0", 1: "0"}
    assert offsets(out, group, 5) == {0: "9", 1: "4"}  # lag

    assert reset("--topic", f"{topic}:0", "--shift-by", "2", "--execute") == {0: "2"}
    # Shifted before the log start: clamped to it.
    assert reset("--topic", f"{topic}:0", "--shift-by", "-5", "--execute") == {0: "0"}
    assert reset("--all-topics", "--to-latest", "--execute") == {0: "9", 1: "4"}
    assert offsets(describe(), group, 5) == {0: "0", 1: "0"}

    # --to-datetime: the first record at or after the time; none (partition 1's last is at
    # minute 3) falls back to the log end, with a warning.
    out = tools.run(CONSUMER_GROUPS, "--reset-offsets", "--group", group, "--topic", topic,
                    "--to-datetime", "2024-01-01T00:02:30.000Z", "--execute")
    assert out.returncode == 0, str(out)
    assert offsets(out.stdout, group, 3) == {0: "3", 1: "3"}
    out = tools.run(CONSUMER_GROUPS, "--reset-offsets", "--group", group, "--topic", topic,
                    "--to-datetime", "2024-01-01T00:05:30.000Z", "--execute")
    assert out.returncode == 0, str(out)
    assert offsets(out.stdout, group, 3) == {0: "6", 1: "4"}
    assert f"Partition 1 from topic {topic} is empty" in out.output, str(out)
    assert offsets(describe(), group, 3) == {0: "6", 1: "4"}

    assert reset("--topic", topic, "--to-offset", "4", "--execute") == {0: "4", 1: "4"}
    # --export: the plan as CSV (topic,partition,offset), for --from-file.
    out = tools.ok(CONSUMER_GROUPS, "--reset-offsets", "--group", group, "--all-topics",
                   "--to-current", "--export", "--dry-run")
    assert sorted(out.split()) == [f"{topic},0,4", f"{topic},1,4"]

    # An active member: describe names it; offsets cannot be reset under it.
    consumer = KafkaConsumer(topic, group_id=group, bootstrap_servers=cluster.bootstrap,
                             enable_auto_commit=False, client_id="cli-test-member")
    try:
        wait_for(lambda: consumer.poll(200) is not None and consumer.assignment(), 30,
                 "the member's assignment")
        out = tools.ok(CONSUMER_GROUPS, "--describe", "--group", group)
        rows = {int(row[2]): row for row in table(out, group)}
        assert {row[8] for row in rows.values()} == {"cli-test-member"}
        assert all(row[6].startswith("cli-test-member") for row in rows.values())
        out = tools.ok(CONSUMER_GROUPS, "--describe", "--group", group, "--members")
        [member] = table(out, group)
        assert member[3] == "cli-test-member" and member[4] == "2"
        out = tools.ok(CONSUMER_GROUPS, "--describe", "--group", group, "--state")
        [state] = table(out, group)
        assert state[-2:] == ["Stable", "1"] and "range" in state

        r = tools.run(CONSUMER_GROUPS, "--reset-offsets", "--group", group, "--topic", topic,
                      "--to-earliest", "--execute")
        assert "can only be reset if the group" in r.output and "Stable" in r.output, str(r)
        assert offsets(tools.ok(CONSUMER_GROUPS, "--describe", "--group", group), group,
                       3) == {0: "4", 1: "4"}
    finally:
        consumer.close()

    wait_for(lambda: "Empty" in tools.ok(CONSUMER_GROUPS, "--describe", "--group", group,
                                         "--state"), 30, "the group empty")
    out = tools.ok(CONSUMER_GROUPS, "--delete-offsets", "--group", group, "--topic",
                   f"{topic}:1")
    assert f"Request succeeded for deleting offsets from group {group}." in out
    assert [line.split() for line in out.splitlines()[-2:]] == [
        ["TOPIC", "PARTITION", "STATUS"], [topic, "1", "Successful"]]
    assert offsets(tools.ok(CONSUMER_GROUPS, "--describe", "--group", group), group,
                   3) == {0: "4"}

    out = tools.ok(CONSUMER_GROUPS, "--delete", "--group", group)
    assert f"Deletion of requested consumer groups ('{group}') was successful." in out
    assert group not in tools.ok(CONSUMER_GROUPS, "--list").split()
    # Kafka 4's answer for a group that does not exist (its own DescribeConsumerGroupTest).
    r = tools.run(CONSUMER_GROUPS, "--describe", "--group", group)
    assert f"GroupIdNotFoundException: Group {group} not found." in r.output, str(r)


# --- kafka-log-dirs ---------------------------------------------------------------------


def test_log_dirs_describe(tools: KafkaTools, cluster: Cluster,
                           admin: KafkaAdminClient) -> None:
    topic = unique_name("cli-logdirs")
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=3)])
    _produce(cluster, topic, 0, range(5))  # acks=all: on every replica when it returns
    r = tools.run(LOG_DIRS, "--describe", "--topic-list", topic)
    assert r.returncode == 0, str(r)
    lines = r.stdout.splitlines()
    assert lines[0] == "Querying brokers for log directories information"
    assert lines[1] == "Received log directory information from brokers 1,2,3"
    doc = json.loads(lines[2])
    assert doc["version"] == 1
    assert [b["broker"] for b in doc["brokers"]] == [1, 2, 3]
    sizes = []
    for b in doc["brokers"]:
        [d] = b["logDirs"]
        assert d["error"] is None
        assert d["logDir"] == str(cluster.node(b["broker"]).data_dir)
        parts = {p["partition"]: p for p in d["partitions"]}
        assert sorted(parts) == [f"{topic}-0", f"{topic}-1"]
        assert parts[f"{topic}-1"]["size"] == 0
        assert all(p["offsetLag"] == 0 and p["isFuture"] is False for p in parts.values())
        sizes.append(parts[f"{topic}-0"]["size"])
    assert sizes[0] > 0 and len(set(sizes)) == 1  # the same batches on every replica

    r = tools.run(LOG_DIRS, "--describe", "--broker-list", "2")
    assert r.returncode == 0, str(r)
    [b] = json.loads(r.stdout.splitlines()[2])["brokers"]
    assert b["broker"] == 2
    assert {f"{topic}-0", f"{topic}-1"} <= {p["partition"] for p in b["logDirs"][0]["partitions"]}


# --- kafka-metadata-quorum --------------------------------------------------------------


def test_metadata_quorum_describe(tools: KafkaTools, cluster: Cluster) -> None:
    out = tools.ok(METADATA_QUORUM, "describe", "--status")
    status = dict(re.split(r":\s+", line, maxsplit=1) for line in out.splitlines() if line)
    assert list(status) == ["ClusterId", "LeaderId", "LeaderEpoch", "HighWatermark",
                            "MaxFollowerLag", "MaxFollowerLagTimeMs", "CurrentVoters",
                            "CurrentObservers"]
    leader = int(status["LeaderId"])
    assert leader in (1, 2, 3)
    assert int(status["LeaderEpoch"]) >= 1 and int(status["HighWatermark"]) > 0
    voters = json.loads(status["CurrentVoters"])
    assert [v["id"] for v in voters] == [1, 2, 3]
    for v in voters:
        listener = cluster.node(v["id"]).overrides["controller.listener"]
        assert v["endpoints"] == [f"CONTROLLER://{listener}"]
    assert json.loads(status["CurrentObservers"]) == []

    out = tools.ok(METADATA_QUORUM, "describe", "--replication")
    lines = out.splitlines()
    assert lines[0].split() == ["NodeId", "DirectoryId", "LogEndOffset", "Lag",
                                "LastFetchTimestamp", "LastCaughtUpTimestamp", "Status"]
    rows = {int(row[0]): row for row in (line.split() for line in lines[1:])}
    assert sorted(rows) == [1, 2, 3]
    assert rows[leader][-1] == "Leader"
    assert sorted(row[-1] for row in rows.values()) == ["Follower", "Follower", "Leader"]
    assert all(int(row[2]) > 0 and int(row[3]) >= 0 for row in rows.values())


# --- kafka-configs ----------------------------------------------------------------------


def _dynamic_configs(out: str) -> dict[str, str]:
    """``key=value`` of each config line kafka-configs --describe prints."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"  ([\w.]+)=(\S*) sensitive=", line)
        if m:
            found[m[1]] = m[2]
    return found


def test_configs_topic(tools: KafkaTools, admin: KafkaAdminClient) -> None:
    topic = unique_name("cli-configs")
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                  topic_configs={"retention.ms": "123456"})])
    describe = ("--describe", "--entity-type", "topics", "--entity-name", topic)
    out = tools.ok(CONFIGS, *describe)
    assert out.splitlines()[0] == f"Dynamic configs for topic {topic} are:"
    assert _dynamic_configs(out) == {"retention.ms": "123456"}
    # Synonyms: the topic's own value, then the broker key that gives its default.
    assert "  retention.ms=123456 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=" \
        "123456, DEFAULT_CONFIG:log.retention.ms=604800000}" in out.splitlines()

    out = tools.ok(CONFIGS, "--alter", "--entity-type", "topics", "--entity-name", topic,
                   "--add-config", "retention.ms=99999,max.message.bytes=200000")
    assert out.strip() == f"Completed updating config for topic {topic}."
    assert _dynamic_configs(tools.ok(CONFIGS, *describe)) == {
        "retention.ms": "99999", "max.message.bytes": "200000"}

    tools.ok(CONFIGS, "--alter", "--entity-type", "topics", "--entity-name", topic,
             "--delete-config", "retention.ms")
    assert _dynamic_configs(tools.ok(CONFIGS, *describe)) == {"max.message.bytes": "200000"}

    every = _dynamic_configs(tools.ok(CONFIGS, *describe, "--all"))
    assert every["max.message.bytes"] == "200000"
    assert every["retention.ms"] == "604800000"  # back to the default
    assert every["cleanup.policy"] == "delete"

    r = tools.run(CONFIGS, "--alter", "--entity-type", "topics", "--entity-name", topic,
                  "--add-config", "retention.ms=soon")
    assert r.returncode == 1, str(r)
    assert "InvalidConfigurationException" in r.output, str(r)


def test_configs_broker_and_cluster_default(tools: KafkaTools) -> None:
    def describe(*entity: str) -> str:
        return tools.ok(CONFIGS, "--describe", "--entity-type", "brokers", *entity)

    def alter(*args: str) -> str:
        return tools.ok(CONFIGS, "--alter", "--entity-type", "brokers", *args)

    out = describe("--entity-name", "1")
    assert out.splitlines()[0] == "Dynamic configs for broker 1 are:"
    assert _dynamic_configs(out) == {}

    out = alter("--entity-name", "1", "--add-config", "log.retention.ms=3600000")
    assert out.strip() == "Completed updating config for broker 1."
    out = describe("--entity-name", "1")
    assert _dynamic_configs(out) == {"log.retention.ms": "3600000"}
    assert "  log.retention.ms=3600000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:" \
        "log.retention.ms=3600000, DEFAULT_CONFIG:log.retention.ms=604800000}" \
        in out.splitlines()
    assert _dynamic_configs(describe("--entity-name", "2")) == {}  # one broker's only
    every = _dynamic_configs(describe("--entity-name", "1", "--all"))
    assert every["log.retention.ms"] == "3600000"
    assert every["num.partitions"] == "1"

    out = alter("--entity-default", "--add-config", "max.connections.per.ip=1000")
    assert out.strip() == "Completed updating default config for brokers in the cluster."
    out = describe("--entity-default")
    assert out.splitlines()[0] == "Default configs for brokers in the cluster are:"
    assert _dynamic_configs(out) == {"max.connections.per.ip": "1000"}
    assert "  max.connections.per.ip=1000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_" \
        "CONFIG:max.connections.per.ip=1000}" in out.splitlines()  # Kafka 4.1 prints the same
    every = _dynamic_configs(describe("--entity-name", "2", "--all"))
    assert every["max.connections.per.ip"] == "1000"  # the cluster-wide value reaches 2

    alter("--entity-name", "1", "--delete-config", "log.retention.ms")
    alter("--entity-default", "--delete-config", "max.connections.per.ip")
    assert _dynamic_configs(describe("--entity-name", "1")) == {}
    assert _dynamic_configs(describe("--entity-default")) == {}

    # A key that cannot change at runtime is refused, as Kafka refuses its read-only ones.
    r = tools.run(CONFIGS, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                  "--add-config", "node.id=7")
    assert r.returncode == 1, str(r)
    assert "InvalidRequestException" in r.output, str(r)
    assert "Cannot update these configs dynamically" in r.output and "node.id" in r.output


def test_configs_replication_throttles(tools: KafkaTools, admin: KafkaAdminClient) -> None:
    """KIP-73's configs as an operator sets them with kafka-configs (the same ones
    kafka-reassign-partitions.sh --throttle sets): the rates per broker, the throttled
    replicas per topic (Kafka's bracketed list syntax), and Kafka's refusals."""
    def alter(entity: str, name: str, *args: str) -> str:
        return tools.ok(CONFIGS, "--alter", "--entity-type", entity, "--entity-name", name,
                        *args)

    def dynamic(entity: str, name: str) -> dict[str, str]:
        return _dynamic_configs(tools.ok(CONFIGS, "--describe", "--entity-type", entity,
                                         "--entity-name", name))

    out = alter("brokers", "1", "--add-config", "leader.replication.throttled.rate=10485760,"
                "follower.replication.throttled.rate=20971520")
    assert out.strip() == "Completed updating config for broker 1."
    assert dynamic("brokers", "1") == {"leader.replication.throttled.rate": "10485760",
                                       "follower.replication.throttled.rate": "20971520"}

    topic = unique_name("cli-throttle")
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=3)])
    alter("topics", topic, "--add-config", "follower.replication.throttled.replicas=[0:2,1:3],"
          "leader.replication.throttled.replicas=*")
    assert dynamic("topics", topic) == {"follower.replication.throttled.replicas": "0:2,1:3",
                                        "leader.replication.throttled.replicas": "*"}

    r = tools.run(CONFIGS, "--alter", "--entity-type", "topics", "--entity-name", topic,
                  "--add-config", "follower.replication.throttled.replicas=[0:2,all]")
    assert r.returncode == 1, str(r)
    assert "InvalidConfigurationException" in r.output, str(r)
    assert "follower.replication.throttled.replicas must be the literal '*' or a list of " \
        "replicas in the following format" in r.output, str(r)
    r = tools.run(CONFIGS, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                  "--add-config", "leader.replication.throttled.rate=-1")
    assert r.returncode == 1 and "InvalidRequestException" in r.output, str(r)

    alter("brokers", "1", "--delete-config",
          "leader.replication.throttled.rate,follower.replication.throttled.rate")
    alter("topics", topic, "--delete-config",
          "follower.replication.throttled.replicas,leader.replication.throttled.replicas")
    assert dynamic("brokers", "1") == {} and dynamic("topics", topic) == {}


def test_configs_client_quotas(tools: KafkaTools, cluster: Cluster) -> None:
    """kafka-configs on quota entities (a user with a client id, KIP-546; an address,
    KIP-612): AlterClientQuotas and DescribeClientQuotas as Kafka's admin client sends
    them, and Kafka's validation through the tool."""
    user = unique_name("quser")
    user_client = ("--entity-type", "users", "--entity-name", user, "--entity-type", "clients",
                   "--entity-name", "app")
    ip = ("--entity-type", "ips", "--entity-name", "10.1.2.3")
    tools.ok(CONFIGS, "--alter", *user_client, "--add-config",
             "producer_byte_rate=1024,request_percentage=50")
    tools.ok(CONFIGS, "--alter", *ip, "--add-config", "connection_creation_rate=15")
    out = tools.ok(CONFIGS, "--describe", *user_client)
    assert f"'{user}'" in out and "'app'" in out, out
    assert "producer_byte_rate=1024.0" in out and "request_percentage=50.0" in out, out
    out = tools.ok(CONFIGS, "--describe", "--entity-type", "ips")  # every ip entity
    assert "10.1.2.3" in out and "connection_creation_rate=15" in out, out
    # An ip entity takes connection_creation_rate only (Kafka's message, via the tool).
    r = tools.run(CONFIGS, "--alter", *ip, "--add-config", "producer_byte_rate=10")
    assert r.returncode != 0 and "producer_byte_rate" in r.output, str(r)
    tools.ok(CONFIGS, "--alter", *ip, "--delete-config", "connection_creation_rate")

    def no_ip_quota_left() -> bool:
        with KafkaConnection.to(cluster.nodes[0].bootstrap) as conn:
            return not conn.request(48, 1, {"strict": False, "components": [
                {"entity_type": "ip", "match_type": 2, "match": None}]}).entries
    wait_for(no_ip_quota_left, 10, "the ip quota to be deleted")


# --- kafka-features ---------------------------------------------------------------------

TV = "transaction.version"


def _finalized_everywhere(cluster: Cluster, level: int) -> bool:
    """Every broker's ApiVersions finalizes transaction.version at ``level`` (0: unlisted)."""
    for node in cluster.nodes:
        with KafkaConnection.to(node.bootstrap) as conn:
            r = conn.request(18, 3, {"client_software_name": "t", "client_software_version": "1"})
        if {f.name: f.max_version_level for f in r.finalized_features}.get(TV, 0) != level:
            return False
    return True


def _upgrade(cluster: Cluster, level: int) -> None:
    """UpdateFeatures without the tool, to leave the module's cluster as it was."""
    with KafkaConnection.to(cluster.nodes[0].bootstrap) as conn:
        r = conn.request(57, 1, {"feature_updates": [
            {"feature": TV, "max_version_level": level, "upgrade_type": 1}],
            "validate_only": False})
    assert r.error_code == 0, r


def test_features_describe_downgrade_upgrade(tools: KafkaTools, cluster: Cluster) -> None:
    """kafka-features (FeatureCommand): the level of transaction.version through ApiVersions
    and UpdateFeatures, kept in the metadata log and seen by every broker. Few runs: each
    starts a JVM."""
    def described_level() -> int:
        out = tools.ok(FEATURES, "describe")
        m = re.search(rf"^Feature: {re.escape(TV)}\tSupportedMinVersion: 0\t"
                      r"SupportedMaxVersion: 2\tFinalizedVersionLevel: (\d+)\tEpoch: \d+$",
                      out, re.M)
        assert m, out
        return int(m[1])

    assert described_level() == 2  # a log that never set it
    try:
        out = tools.ok(FEATURES, "downgrade", "--feature", f"{TV}=1")
        assert out.strip() == f"{TV} was downgraded to 1.", out
        wait_for(lambda: _finalized_everywhere(cluster, 1), 15, "level 1 on every broker")
        assert described_level() == 1
        # A level out of the supported range: refused whole, with Kafka's messages.
        r = tools.run(FEATURES, "downgrade", "--feature", f"{TV}=3")
        assert r.returncode == 1, str(r)
        assert re.search(
            rf"^Could not downgrade {re.escape(TV)} to 3\. The update failed for all features "
            rf"since the following feature had an error: Invalid update version 3 for feature "
            rf"{re.escape(TV)}\. Local controller \d+ only supports versions 0-2$",
            r.stdout, re.M), str(r)
        assert "1 out of 1 operation(s) failed." in r.stderr, str(r)
        out = tools.ok(FEATURES, "upgrade", "--feature", f"{TV}=2")
        assert out.strip() == f"{TV} was upgraded to 2.", out
        wait_for(lambda: _finalized_everywhere(cluster, 2), 15, "level 2 on every broker")
    finally:
        if not _finalized_everywhere(cluster, 2):
            _upgrade(cluster, 2)


# --- kafka-cluster unregister -----------------------------------------------------------


def _brokers_listed(cluster: Cluster, via: int) -> tuple[set[int], set[int]]:
    """The broker ids node ``via`` lists: DescribeCluster v2 with its fenced brokers, and
    Metadata."""
    with KafkaConnection.to(cluster.node(via).bootstrap) as conn:
        described = conn.request(60, 2, {"include_cluster_authorized_operations": False,
                                         "include_fenced_brokers": True})
        metadata = conn.request(3, 12, {"topics": [], "allow_auto_topic_creation": False,
                                        "include_topic_authorized_operations": False})
    return ({b.broker_id for b in described.brokers}, {b.node_id for b in metadata.brokers})


def test_cluster_unregister(tools: KafkaTools, cluster: Cluster, admin: KafkaAdminClient
                            ) -> None:
    """kafka-cluster unregister (ClusterTool, UnregisterBroker): refused for an id that is not
    registered; a stopped broker's id is forgotten by every broker; the node registers again
    when it starts. Two JVM runs."""
    def unregister(broker_id: int) -> Result:
        # The bootstrap server is an option of the subcommand, so it comes after it.
        return tools.run(CLUSTER, "unregister", "--bootstrap-server", cluster.bootstrap,
                         "--id", str(broker_id), bootstrap=False)

    r = unregister(9)
    assert r.returncode == 1, str(r)
    assert "BrokerIdNotRegisteredException: The given broker ID was not registered." \
        in r.output, str(r)

    everyone = {1, 2, 3}
    cluster.node(3).stop()
    try:
        wait_for(lambda: _brokers_listed(cluster, 1) == (everyone, {1, 2}), 30,
                 "node 3 fenced, still registered")
        r = unregister(3)
        assert (r.returncode, r.stdout.strip()) == (0, "Broker 3 is no longer registered."), \
            str(r)
        for via in (1, 2):
            wait_for(lambda via=via: _brokers_listed(cluster, via) == ({1, 2}, {1, 2}), 15,
                     f"node {via} no longer listing node 3")
    finally:
        cluster.node(3).start()
    # A restarted broker registers anew, as Kafka's does.
    wait_for(lambda: _brokers_listed(cluster, 1) == (everyone, everyone), 60,
             "node 3 registered and unfenced again")
    # Leave every partition in sync for the tests below.
    wait_for(lambda: all_in_sync(admin), 60, "node 3 back in every ISR")


# --- kafka-reassign-partitions ------------------------------------------------------------

REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"


def _replicas(admin: KafkaAdminClient, topic: str) -> dict[int, list[int]]:
    [t] = admin.describe_topics([topic])
    return {p["partition_index"]: list(p["replica_nodes"]) for p in t["partitions"]}


def test_reassign_partitions(tools: KafkaTools, cluster: Cluster, admin: KafkaAdminClient,
                             tmp_path: Path) -> None:
    topic = unique_name("cli-move")
    tools.ok(TOPICS, "--create", "--topic", topic, "--replica-assignment", "1:2,2:3,3:1")
    wait_for(lambda: all_in_sync(admin), 30, "every partition in sync")
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    for i in range(30):
        producer.send(topic, f"v{i}".encode(), partition=i % 3)
    producer.flush()
    producer.close()

    # --generate: the current layout and a proposal over the brokers named.
    topics_file = tmp_path / "topics.json"
    topics_file.write_text(json.dumps({"version": 1, "topics": [{"topic": topic}]}))
    out = tools.ok(REASSIGN, "--generate", "--topics-to-move-json-file", str(topics_file),
                   "--broker-list", "1,2,3")
    current, proposed = (json.loads(line) for line in out.splitlines()
                         if line.startswith("{"))
    assert {p["partition"]: p["replicas"] for p in current["partitions"]} == {
        0: [1, 2], 1: [2, 3], 2: [3, 1]}
    assert all(len(set(p["replicas"])) == 2 and set(p["replicas"]) <= {1, 2, 3}
               for p in proposed["partitions"])

    # --execute a plan, then --verify until it reports every move completed.
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [3, 2]},
        {"topic": topic, "partition": 1, "replicas": [1, 3]}]}))
    out = tools.ok(REASSIGN, "--execute", "--reassignment-json-file", str(plan))
    assert "Save this to use as the --reassignment-json-file option during rollback" in out
    assert f"Successfully started partition reassignments for {topic}-0,{topic}-1" in out, out
    verified = wait_for(lambda: (o := tools.ok(REASSIGN, "--verify", "--reassignment-json-file",
                                                str(plan))) and "in progress" not in o and o,
                        30, "the moves to complete")
    assert f"Reassignment of partition {topic}-0 is completed." in verified, verified
    assert f"Reassignment of partition {topic}-1 is completed." in verified, verified
    assert _replicas(admin, topic) == {0: [3, 2], 1: [1, 3], 2: [3, 1]}
    wait_for(lambda: all_in_sync(admin), 30, "the moved partitions in sync")
    assert tools.ok(REASSIGN, "--list").strip() == "No partition reassignments found."
    consumer = KafkaConsumer(topic, bootstrap_servers=cluster.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    try:
        values = sorted(r.value for r in (next(consumer) for _ in range(30)))
    finally:
        consumer.close()
    assert values == sorted(f"v{i}".encode() for i in range(30))

    # A throttled move (4 MB at 200 kB/s) is still running while it is listed, verified as
    # in progress and cancelled; cancelling also clears the throttles --execute set.
    slow = unique_name("cli-slow")
    tools.ok(TOPICS, "--create", "--topic", slow, "--replica-assignment", "1:2")
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    for _ in range(400):
        producer.send(slow, b"x" * 10_000, partition=0)
    producer.flush()
    producer.close()
    move = tmp_path / "slow.json"
    move.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": slow, "partition": 0, "replicas": [2, 3]}]}))
    out = tools.ok(REASSIGN, "--execute", "--reassignment-json-file", str(move),
                   "--throttle", "200000")
    assert "The inter-broker throttle limit was set to 200000 B/s" in out, out
    assert f"Successfully started partition reassignment for {slow}-0" in out, out
    throttles = _dynamic_configs(tools.ok(CONFIGS, "--describe", "--entity-type", "topics",
                                          "--entity-name", slow))
    assert throttles["follower.replication.throttled.replicas"] == "0:3", throttles
    assert sorted(throttles["leader.replication.throttled.replicas"].split(",")) == [
        "0:1", "0:2"], throttles
    listed = tools.ok(REASSIGN, "--list")
    assert f"{slow}-0: replicas: 2,3,1. adding: 3. removing: 1." in listed, listed
    out = tools.ok(REASSIGN, "--verify", "--reassignment-json-file", str(move),
                   "--preserve-throttles")
    assert f"Reassignment of partition {slow}-0 is still in progress." in out, out
    out = tools.ok(REASSIGN, "--cancel", "--reassignment-json-file", str(move))
    assert f"Successfully cancelled partition reassignment for: {slow}-0" in out, out
    assert tools.ok(REASSIGN, "--list").strip() == "No partition reassignments found."
    assert _replicas(admin, slow) == {0: [2, 1]}  # Kafka's revert: the target's order kept
    assert _dynamic_configs(tools.ok(CONFIGS, "--describe", "--entity-type", "topics",
                                     "--entity-name", slow)) == {}
    for broker in ("1", "2", "3"):
        assert _dynamic_configs(tools.ok(CONFIGS, "--describe", "--entity-type", "brokers",
                                         "--entity-name", broker)) == {}, broker


# --- kafka-leader-election (last: it kills and restarts node 2) ------------------------


def test_leader_election_preferred(tools: KafkaTools, cluster: Cluster,
                                   admin: KafkaAdminClient) -> None:
    topic = unique_name("cli-elect")
    tools.ok(TOPICS, "--create", "--topic", topic, "--replica-assignment", "2:1:3,2:3:1")
    wait_for(lambda: leaders(admin, topic) == {0: 2, 1: 2}, 15, "node 2 leading both")

    def elect(*args: str) -> str:
        return tools.ok(LEADER_ELECTION, "--election-type", "preferred", *args)

    cluster.node(2).kill()
    try:
        wait_for(lambda: 2 not in leaders(admin, topic).values(), 20, "leaders off node 2")
        under = wait_for(lambda: partitions_described(tools.ok(
            TOPICS, "--describe", "--under-replicated-partitions", "--topic", topic)), 30,
            "the topic's partitions under-replicated")
        assert sorted(under) == [0, 1]
        assert all(2 not in p["isr"] and len(p["isr"]) == 2 for p in under.values())
        assert tools.ok(TOPICS, "--describe", "--unavailable-partitions", "--topic",
                        topic) == ""
        # The preferred replica is down: the tool says so per partition and exits 1.
        r = tools.run(LEADER_ELECTION, "--election-type", "preferred", "--topic", topic,
                      "--partition", "0")
        assert r.returncode == 1, str(r)
        assert f"Error completing leader election (PREFERRED) for partition: {topic}-0" \
            in r.output, str(r)
        assert "PreferredLeaderNotAvailableException" in r.output, str(r)
    finally:
        cluster.node(2).start()
    # Every partition in sync again, so that no election below finds a preferred replica
    # out of the ISR (the all-partitions election would report it as an error).
    wait_for(lambda: all_in_sync(admin), 60, "node 2 back in every ISR")
    assert 2 not in leaders(admin, topic).values()  # nothing moved leadership back yet

    out = elect("--topic", topic, "--partition", "0")
    assert out.strip() == \
        f"Successfully completed leader election (PREFERRED) for partitions {topic}-0"
    wait_for(lambda: leaders(admin, topic)[0] == 2, 15, "node 2 leading partition 0")
    assert leaders(admin, topic)[1] != 2

    # Every partition: only those whose preferred leader was not leading are reported.
    out = elect("--all-topic-partitions")
    assert out.startswith("Successfully completed leader election (PREFERRED) for partitions")
    elected = out.strip().split(" for partitions ")[1].split(", ")
    assert f"{topic}-1" in elected and f"{topic}-0" not in elected
    wait_for(lambda: leaders(admin, topic) == {0: 2, 1: 2}, 15, "node 2 leading both again")

    out = elect("--topic", topic, "--partition", "0")
    assert out.strip() == f"Valid replica already elected for partitions {topic}-0"
    assert topic not in elect("--all-topic-partitions")


TRANSACTIONS = "org.apache.kafka.tools.TransactionsCommand"


def test_transactions_tool(tools: KafkaTools, cluster: Cluster, admin: KafkaAdminClient) -> None:
    """kafka-transactions.sh against an open transaction: list, describe,
    describe-producers, and find-hanging (which finds none: its coordinator knows it)."""
    from confluent_kafka import Producer

    topic, tid = unique_name("txtool"), unique_name("tid")
    admin.create_topics([NewTopic(topic, 1, 3)])
    p = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": tid})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, value=b"open")
    p.flush(10)
    try:
        listed = tools.ok(TRANSACTIONS, "list")
        row = next(line.split() for line in listed.splitlines() if line.startswith(tid))
        assert row[3] == "Ongoing", listed
        described = tools.ok(TRANSACTIONS, "describe", "--transactional-id", tid)
        assert f"{topic}-0" in described and "Ongoing" in described, described
        producers = tools.ok(TRANSACTIONS, "describe-producers", "--topic", topic,
                             "--partition", "0")
        lines = [line.split() for line in producers.splitlines()[1:] if line.strip()]
        assert len(lines) == 1 and lines[0][-1] == "0", producers  # its transaction starts at 0
        hanging = tools.ok(TRANSACTIONS, "find-hanging", "--broker-id", "1")
        assert topic not in hanging, hanging
    finally:
        p.commit_transaction(30)

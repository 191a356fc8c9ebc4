"""Kafka's Java consumer (4.1) on the consumer group protocol (KIP-848,
group.protocol=consumer), against an Odradek node: three members
(tests/compat/streams/GroupMember.java) share a 12-partition topic, one leaves cleanly and
one is killed; the rest take their partitions incrementally and nothing committed is lost
or read twice (tests/integration/group_members.py). Then a group of Java and librdkafka
members together.

Run by hand without a JDK or Maven, the test skips and says what is missing; in CI the
missing piece fails it (tests/requirements.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.compat.java_app import SOURCES, JavaApp, compile_app
from tests.compat.kafka_tools import kafka_tools_lib
from tests.helpers import unique_name
from tests.integration.group_members import LIBRDKAFKA_MEMBER, Member, leave_then_kill
from tests.integration.harness import REPO, NodeProcess

pytestmark = pytest.mark.integration

SESSION_MS = 8000
PARTITIONS = 12


@pytest.fixture(scope="module")
def member_app() -> JavaApp:
    """GroupMember compiled against Kafka 4.1's jars, before any node starts."""
    return compile_app(SOURCES / "GroupMember.java", kafka_tools_lib())


@pytest.fixture
def node(member_app: JavaApp, tmp_path: Path) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path / "node", overrides={
        "group.consumer.session.timeout.ms": SESSION_MS,
        "group.consumer.heartbeat.interval.ms": 1000}).start()
    yield n
    n.kill()


def _topic(node: NodeProcess, prefix: str) -> str:
    topic = unique_name(prefix)
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    return topic


def test_java_consumers_rebalance_incrementally(member_app: JavaApp, node: NodeProcess,
                                                tmp_path: Path) -> None:
    topic = _topic(node, "java848")
    group = f"g-{topic}"

    def start(i: int) -> Member:
        out = tmp_path / f"java{i}.txt"
        return Member(member_app.argv(node.bootstrap, topic, group, str(out)), out,
                      dict(os.environ), stop_file=True)

    leave_then_kill(node.bootstrap, topic, group, PARTITIONS, start, SESSION_MS / 1000)


def test_java_and_librdkafka_members_in_one_group(member_app: JavaApp, node: NodeProcess,
                                                  tmp_path: Path) -> None:
    topic = _topic(node, "mixed848")
    group = f"g-{topic}"
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))

    def start(i: int) -> Member:
        out = tmp_path / f"member{i}.txt"
        if i == 1:
            return Member([sys.executable, "-c", LIBRDKAFKA_MEMBER, node.bootstrap, topic,
                           group, str(out)], out, env)
        return Member(member_app.argv(node.bootstrap, topic, group, str(out)), out,
                      dict(os.environ), stop_file=True)

    leave_then_kill(node.bootstrap, topic, group, PARTITIONS, start, SESSION_MS / 1000)


def test_kafka_consumer_groups_tool_on_a_consumer_group(member_app: JavaApp, node: NodeProcess,
                                                        tmp_path: Path) -> None:
    """kafka-consumer-groups.sh describes a KIP-848 group as it does on Kafka 4.1: its
    type in --list, members with their epochs and assignments, offsets and lag."""
    from tests.compat.kafka_tools import CONSUMER_GROUPS, kafka_tools
    from tests.integration.group_members import produce
    from tests.integration.harness import wait_for

    topic = _topic(node, "tool848")
    group = f"g-{topic}"
    produce(node.bootstrap, topic, 0, 120)
    out = tmp_path / "java0.txt"
    member = Member(member_app.argv(node.bootstrap, topic, group, str(out)), out,
                    dict(os.environ), stop_file=True)
    tools = kafka_tools(node.bootstrap)
    try:
        wait_for(lambda: len(member.read()) == 120, 60, "the member to read every record")
        listed = tools.ok(CONSUMER_GROUPS, "--list", "--type")
        assert any(line.split()[:2] == [group, "Consumer"] for line in listed.splitlines()
                   if line.strip()), listed
        members = tools.ok(CONSUMER_GROUPS, "--describe", "--group", group, "--members",
                           "--verbose")
        rows = [line.split() for line in members.splitlines() if line.startswith(group)]
        # GROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS CURRENT-EPOCH CURRENT-ASSIGNMENT
        # TARGET-EPOCH TARGET-ASSIGNMENT: one member, at epoch 1, with every partition.
        assert len(rows) == 1, members
        [row] = rows
        every = f"{topic}:" + ",".join(map(str, range(PARTITIONS)))
        assert (row[4], row[5], row[6], row[7], row[8]) == (
            str(PARTITIONS), "1", every, "1", every), members
        offsets = tools.ok(CONSUMER_GROUPS, "--describe", "--group", group)
        lags = [line.split() for line in offsets.splitlines() if line.startswith(group)]
        assert len(lags) == PARTITIONS and all(row[5] == "0" for row in lags), offsets
        state = tools.ok(CONSUMER_GROUPS, "--describe", "--group", group, "--state")
        assert "Stable" in state, state
    finally:
        member.leave()


def test_java_regex_subscription(member_app: JavaApp, node: NodeProcess,
                                 tmp_path: Path) -> None:
    """subscribe(SubscriptionPattern): the broker resolves the regex; a matching topic
    created later is read too, one that does not match is not."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from tests.integration.group_members import produce
    from tests.integration.harness import wait_for

    prefix = unique_name("jrx")
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    for f in admin.create_topics([NewTopic(f"{prefix}-a", 2, 1),
                                  NewTopic(f"other-{prefix}", 2, 1)]).values():
        f.result(30)
    expected = produce(node.bootstrap, f"{prefix}-a", 0, 20)
    produce(node.bootstrap, f"other-{prefix}", 0, 20)
    out = tmp_path / "jrx.txt"
    member = Member(member_app.argv(node.bootstrap, f"regex:{prefix}-.*", f"g-{prefix}",
                                    str(out)), out, dict(os.environ), stop_file=True)
    try:
        wait_for(lambda: {v for _, _, v in member.read()} >= expected, 60,
                 f"the records of {prefix}-a")
        admin.create_topics([NewTopic(f"{prefix}-b", 1, 1)])[f"{prefix}-b"].result(30)
        expected |= produce(node.bootstrap, f"{prefix}-b", 100, 10)
        wait_for(lambda: {v for _, _, v in member.read()} >= expected, 90,
                 f"the records of {prefix}-b, created later")
        assert {v for _, _, v in member.read()} == expected  # nothing of other-*
    finally:
        member.leave()

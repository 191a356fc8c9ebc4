"""The consumer group protocol (KIP-848) with librdkafka (confluent-kafka,
group.protocol=consumer): three members share a 12-partition topic; one leaves cleanly,
then one is killed; the others take their partitions incrementally, without giving up
their own, and nothing committed is lost or read twice (only what the killed member read
and never committed is read again). A classic kafka-python group keeps working beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.helpers import unique_name
from tests.integration.group_members import (
    LIBRDKAFKA_MEMBER,
    Member,
    leave_then_kill,
    only_assigned,
    produce,
)
from tests.integration.harness import REPO, Cluster, NodeProcess, wait_for

pytestmark = pytest.mark.integration

SESSION_MS = 8000
PARTITIONS = 12

CLASSIC = r"""
import sys
from kafka import KafkaConsumer
bootstrap, topic, group, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                  auto_offset_reset="earliest", enable_auto_commit=False,
                  consumer_timeout_ms=60000)
seen = set()
for m in c:
    seen.add(m.value)
    c.commit()
    if len(seen) >= n:
        break
print(len(seen))
"""


@pytest.fixture
def kip848_node(tmp_path: Path) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path / "node", overrides={
        "group.consumer.session.timeout.ms": SESSION_MS,
        "group.consumer.heartbeat.interval.ms": 1000}).start()
    yield n
    n.kill()


def test_librdkafka_group_rebalances_incrementally(kip848_node: NodeProcess,
                                                   tmp_path: Path) -> None:
    node = kip848_node
    topic, classic_topic = unique_name("kip848"), unique_name("classic")
    group = f"g-{topic}"
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1),
                                  NewTopic(classic_topic, 3, 1)]).values():
        f.result(30)
    classic_values = produce(node.bootstrap, classic_topic, 0, 300)

    # A classic group on another topic, at the same time: it reads half its records before
    # and half after the consumer group's rebalances.
    classic_result: list[str] = []

    def classic() -> None:
        p = subprocess.run([sys.executable, "-c", CLASSIC, node.bootstrap, classic_topic,
                            f"classic-{classic_topic}", str(2 * len(classic_values))],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH",
                                                                          str(REPO))))
        classic_result.append(p.stdout.strip() or p.stderr[-2000:])

    classic_thread = threading.Thread(target=classic)
    classic_thread.start()

    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))

    def start(i: int) -> Member:
        out = tmp_path / f"m{i}.txt"
        return Member([sys.executable, "-c", LIBRDKAFKA_MEMBER, node.bootstrap, topic, group, str(out)],
                      out, env)

    try:
        leave_then_kill(node.bootstrap, topic, group, PARTITIONS, start, SESSION_MS / 1000)
        classic_values |= produce(node.bootstrap, classic_topic, 300, 300)
    finally:
        classic_thread.join(130)
    assert classic_result == [str(len(classic_values))], classic_result


def test_consumer_group_offsets_follow_member_epochs(kip848_node: NodeProcess) -> None:
    """A member commits at its epoch; the admin API lists, describes and deletes the
    group once it is empty, and the group is gone after that."""
    node = kip848_node
    topic = unique_name("kip848o")
    group = f"g-{topic}"
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    produce(node.bootstrap, topic, 0, 10)
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": group,
                  "group.protocol": "consumer", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < 10 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got += 1
    assert got == 10
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    assert sum(tp.offset for tp in committed) == 10
    # `odradek groups describe` shows it (through ConsumerGroupDescribe).
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))
    proc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", "groups",
                           "describe", group, "--json", "--bootstrap", node.bootstrap],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    view = json.loads(proc.stdout)
    assert view["state"] == "Stable" and len(view["members"]) == 1, view
    assert view["total_lag"] == 0 and len(view["partitions"]) == 2, view
    # ... and refuses to reset its offsets while it has a member.
    proc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", "groups",
                           "reset-offsets", group, "--to-earliest", "--execute",
                           "--bootstrap", node.bootstrap],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0 and "is Stable with 1 member(s)" in proc.stderr, proc.stderr
    fs = admin.delete_consumer_groups([group])
    with pytest.raises(Exception, match="NON_EMPTY_GROUP"):
        fs[group].result(30)
    c.close()
    admin.delete_consumer_groups([group])[group].result(30)
    listed = {g.group_id for g in admin.list_consumer_groups().result(30).valid}
    assert group not in listed


def test_group_survives_coordinator_failover(tmp_path: Path) -> None:
    """The coordinator's node is killed: the node that takes over its __consumer_offsets
    partition rebuilds the group from its records, and the members go on with their
    epochs and assignments (no partition taken from them), reading everything."""
    cluster = Cluster(tmp_path / "cluster", n=3, overrides={
        "group.consumer.session.timeout.ms": SESSION_MS,
        "group.consumer.heartbeat.interval.ms": 1000}).start()
    members: list[Member] = []
    try:
        bootstrap = cluster.bootstrap
        topic = unique_name("kip848f")
        group = f"g-{topic}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 6, 3)])[topic].result(30)
        expected = produce(bootstrap, topic, 0, 600)
        env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))
        members = [Member([sys.executable, "-c", LIBRDKAFKA_MEMBER, bootstrap, topic, group,
                           str(tmp_path / f"f{i}.txt")], tmp_path / f"f{i}.txt", env)
                   for i in range(2)]
        wait_for(lambda: all(len(m.assigned()) == 3 for m in members), 90,
                 "two members with three partitions each")
        before = [m.assigned() for m in members]
        marks = [len(m.events()) for m in members]
        desc = admin.describe_consumer_groups([group])[group].result(30)
        coordinator = desc.coordinator.id
        epochs = {m.member_id: m for m in desc.members}
        assert len(epochs) == 2

        cluster.node(coordinator).kill()
        expected |= produce(bootstrap, topic, 600, 600)

        def rebuilt() -> object:
            d = admin.describe_consumer_groups([group])[group].result(10)
            return d if d.coordinator.id != coordinator and len(d.members) == 2 else None

        after = wait_for(rebuilt, 90, "another node to coordinate the group")
        assert {m.member_id for m in after.members} == set(epochs)
        wait_for(lambda: {v for m in members for _, _, v in m.read()} >= expected, 90,
                 "every record read after the failover")
        for i, m in enumerate(members):
            assert m.assigned() == before[i]
            later = m.events()[marks[i]:]
            assert only_assigned(later), later
    finally:
        for m in members:
            m.kill()
        cluster.kill_all()


def test_regex_subscription_is_resolved_by_the_coordinator(kip848_node: NodeProcess) -> None:
    """librdkafka sends a ``^regex`` subscription as SubscribedTopicRegex: the coordinator
    matches it against the topics (whole names), and a topic created later that matches
    is assigned and read; a topic that does not match is not."""
    node = kip848_node
    prefix = unique_name("rx")
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    for f in admin.create_topics([NewTopic(f"{prefix}-a", 2, 1),
                                  NewTopic(f"other-{prefix}", 2, 1)]).values():
        f.result(30)
    expected = produce(node.bootstrap, f"{prefix}-a", 0, 20)
    produce(node.bootstrap, f"other-{prefix}", 0, 20)
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": f"g-{prefix}",
                  "group.protocol": "consumer", "auto.offset.reset": "earliest",
                  "topic.metadata.refresh.interval.ms": 1000})
    c.subscribe([f"^{prefix}-.*"])
    got: set[str] = set()
    topics: set[str] = set()

    def read_all() -> bool:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.add(m.value().decode())
            topics.add(m.topic())
        return got >= expected

    try:
        wait_for(read_all, 60, f"the records of {prefix}-a", interval=0)
        admin.create_topics([NewTopic(f"{prefix}-b", 1, 1)])[f"{prefix}-b"].result(30)
        expected |= produce(node.bootstrap, f"{prefix}-b", 100, 10)
        wait_for(read_all, 60, f"the records of {prefix}-b, created later", interval=0)
        assert topics == {f"{prefix}-a", f"{prefix}-b"}
        desc = admin.describe_consumer_groups([f"g-{prefix}"])[f"g-{prefix}"].result(30)
        [member] = desc.members
        assert {tp.topic for tp in member.assignment.topic_partitions} == topics
    finally:
        c.close()


def test_static_member_restart_keeps_its_partitions(kip848_node: NodeProcess) -> None:
    """A static member (group.instance.id) closed and started again takes its partitions
    back under its new member id, and the other member is not disturbed."""
    node = kip848_node
    topic = unique_name("kip848s")
    group = f"g-{topic}"
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    events: dict[str, list[str]] = {"i1": [], "i2": []}

    def member(instance: str) -> Consumer:
        c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": group,
                      "group.protocol": "consumer", "group.instance.id": instance})
        c.subscribe([topic],
                    on_assign=lambda _, ps: events[instance].append(f"assign {len(ps)}"),
                    on_revoke=lambda _, ps: events[instance].append(f"revoke {len(ps)}"),
                    on_lost=lambda _, ps: events[instance].append(f"lost {len(ps)}"))
        return c

    def assigned(c: Consumer) -> set[int]:
        return {tp.partition for tp in c.assignment()}

    first, other = member("i1"), member("i2")
    again: Consumer | None = None
    try:
        def balanced() -> bool:
            first.poll(0.1)
            other.poll(0.1)
            return len(assigned(first)) == 2 and len(assigned(other)) == 2

        wait_for(balanced, 60, "two static members with two partitions each", interval=0)
        mine, theirs = assigned(first), assigned(other)
        mark = len(events["i2"])
        first.close()
        again = member("i1")

        def back() -> bool:
            assert again is not None
            again.poll(0.1)
            other.poll(0.1)
            return assigned(again) == mine

        wait_for(back, 30, "the restarted instance to get its partitions back", interval=0)
        for _ in range(20):
            other.poll(0.1)
        assert assigned(other) == theirs
        assert events["i2"][mark:] == [], events["i2"]
        desc = admin.describe_consumer_groups([group])[group].result(30)
        assert sorted(m.group_instance_id for m in desc.members) == ["i1", "i2"]
    finally:
        for c in (again, other):
            if c is not None:
                c.close()

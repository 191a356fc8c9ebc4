"""Partition reassignment on real processes (KIP-455): a cluster grows by a fourth broker
and every partition of a 12-partition RF=3 topic moves onto it and off an old broker while
an idempotent acks=all producer and a consumer group run, with nothing lost or duplicated;
a move that cannot finish is listed and cancelled. Driven through kafka-python 3's admin
client (AlterPartitionReassignments v0, ListPartitionReassignments v0)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, TopicPartition

from tests.helpers import unique_name
from tests.integration.harness import Cluster, NodeProcess, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 12


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("reassign"), n=3, overrides={
        "auto.leader.rebalance.enable": False}).start()
    c.add_broker(4).start()
    yield c
    c.kill_all()


@pytest.fixture
def admin(cluster: Cluster) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=cluster.bootstrap.split(","),
                              request_timeout_ms=30_000)
    yield client
    client.close()


def create(cluster: Cluster, topic: str, partitions: int, rf: int) -> None:
    """On the three original brokers, each of them first in turn."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    placement = [[1 + (p + k) % 3 for k in range(rf)] for p in range(partitions)]
    for fut in admin.create_topics([NewTopic(topic, partitions, replica_assignment=placement)]).values():
        fut.result(30)


def assignment(cluster: Cluster, topic: str) -> dict[int, tuple[list[int], list[int], int]]:
    """partition -> (replicas, isr, leader) as Metadata shows them."""
    meta = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10)
    return {p.id: (list(p.replicas), list(p.isrs), p.leader)
            for p in meta.topics[topic].partitions.values()}


def partition_dirs(node: NodeProcess, topic: str | None = None) -> set[str]:
    """The partition directories the node holds, of ``topic`` or of every topic."""
    logs = Path(node.data_dir) / "logs"
    return {d.name for d in logs.glob("*-*" if topic is None else f"{topic}-*")
            if d.is_dir() and not d.name.endswith("-delete")}


def test_every_partition_moves_onto_a_new_broker_under_load(
        cluster: Cluster, admin: KafkaAdminClient) -> None:
    topic = unique_name("move")
    create(cluster, topic, PARTITIONS, 3)
    before = wait_for(lambda: (a := assignment(cluster, topic)) and all(
        len(isr) == 3 for _, isr, _ in a.values()) and a, 30, "a full ISR everywhere")
    assert not any(4 in replicas for replicas, _, _ in before.values())

    acked: list[bytes] = []
    failed: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 5,
                             "message.timeout.ms": 60_000})

        def done(err: KafkaError | None, msg: object) -> None:
            if err is None:
                acked.append(msg.value())  # type: ignore[attr-defined]
            else:
                failed.append(str(err))

        n = 0
        while not stop.is_set():
            producer.produce(topic, str(n).encode(), partition=n % PARTITIONS, on_delivery=done)
            n += 1
            producer.poll(0)
            if n % 200 == 0:
                time.sleep(0.02)
        assert producer.flush(60) == 0

    consumed: list[bytes] = []  # appended by the consumer thread (list.append is atomic)
    group = unique_name("g")
    assigned = threading.Event()

    def consume() -> None:
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": True,
                             "isolation.level": "read_committed"})
        consumer.subscribe([topic], on_assign=lambda c, parts: assigned.set())
        while not stop.is_set():
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                consumed.append(msg.value())
        consumer.close()

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) > 2000 and assigned.is_set(), 30,
                 "the producer to get going and the group to be assigned")
        read_before = len(consumed)
        # Broker 1 leaves every partition, broker 4 takes its place (same position, so the
        # partitions broker 1 preferred to lead now prefer broker 4).
        target = {TopicPartition(topic, p): [4 if b == 1 else b for b in replicas]
                  for p, (replicas, _, _) in before.items()}
        result = admin.alter_partition_reassignments(target)
        assert result == {tp: None for tp in target if 1 in before[tp.partition][0]}, result
        wait_for(lambda: not admin.list_partition_reassignments({topic: range(PARTITIONS)}),
                 60, "the reassignments to complete")
        written_during = len(acked)
        wait_for(lambda: len(acked) > written_during + 1000, 30, "writes after the move")
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    assert not failed, failed[:5]

    after = assignment(cluster, topic)
    for p, (replicas, isr, leader) in after.items():
        assert replicas == [4 if b == 1 else b for b in before[p][0]], (p, replicas)
        assert sorted(isr) == sorted(replicas), (p, isr)
        assert leader in replicas
    assert sum(1 for replicas, _, _ in after.values() if replicas[0] == 4) >= 1
    # Broker 1 deleted its replicas; broker 4 holds one of each partition.
    wait_for(lambda: not partition_dirs(cluster.node(1), topic), 20,
             "broker 1 to delete its replicas")
    assert len(partition_dirs(cluster.node(4), topic)) == PARTITIONS

    # Nothing acknowledged is lost, nothing is written twice: read it all back.
    reader = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": unique_name("r"),
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    reader.subscribe([topic])
    seen: Counter[bytes] = Counter()
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 3:
        msg = reader.poll(0.3)
        if msg is not None and msg.error() is None:
            seen[msg.value()] += 1
            idle_since = time.monotonic()
    reader.close()
    assert set(acked) <= set(seen), len(set(acked) - set(seen))
    assert [v for v, n in seen.items() if n > 1] == []
    # The group kept reading while the partitions moved, only what was written, once.
    assert len(consumed) > read_before
    assert set(consumed) <= set(seen)
    assert [v for v, n in Counter(consumed).items() if n > 1] == []


def test_an_unfinished_move_is_listed_and_cancelled(cluster: Cluster) -> None:
    topic = unique_name("cancel")
    create(cluster, topic, 1, 2)
    replicas, _, _ = wait_for(lambda: (a := assignment(cluster, topic)[0]) and len(a[1]) == 2
                              and a, 20, "a full ISR")
    spare = next(b for b in (1, 2, 3) if b not in replicas)
    fourth = cluster.node(4)
    fourth.stop()  # the replica being added cannot catch up: the move stays open
    wait_for(lambda: 4 not in AdminClient({"bootstrap.servers": cluster.bootstrap})
             .list_topics(timeout=5).brokers, 10, "broker 4 out of the broker list")
    # A client that never knew broker 4 (kafka-python's admin fails a call on a refused
    # connection to a broker it still has in its metadata).
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap.split(","),
                             request_timeout_ms=30_000)
    try:
        tp = TopicPartition(topic, 0)
        target = [replicas[0], 4]
        assert admin.alter_partition_reassignments({tp: target}) == {tp: None}
        listed = admin.list_partition_reassignments([tp])
        removing = [b for b in replicas if b not in target]
        assert listed == {tp: {"replicas": target + removing, "adding_replicas": [4],
                               "removing_replicas": removing}}, listed
        # The operator's view: odradek topics describe shows the move.
        described = json.loads(subprocess.run(
            [sys.executable, "-m", "odradek.broker.cli.main", "topics", "describe", topic,
             "--json", "--bootstrap", cluster.bootstrap],
            capture_output=True, text=True, check=True, timeout=60).stdout)
        assert described["moving"] == [{"partition": 0, "adding": [4],
                                        "removing": removing}], described
        # A new target while it runs: 4 is dropped again, `spare` added (it is live).
        assert admin.alter_partition_reassignments({tp: [replicas[0], spare]}) == {tp: None}
        wait_for(lambda: not admin.list_partition_reassignments([tp]), 20,
                 "the second target to complete")
        assert assignment(cluster, topic)[0][0] == [replicas[0], spare]
        # Now one that cannot finish, cancelled.
        assert admin.alter_partition_reassignments({tp: [4, spare]}) == {tp: None}
        assert admin.list_partition_reassignments([tp])[tp]["adding_replicas"] == [4]
        assert admin.alter_partition_reassignments({tp: None}) == {tp: None}
        assert admin.list_partition_reassignments([tp]) == {}
        # Metadata comes from any broker, which applies the committed cancel a moment
        # after the controller answers (as in Kafka, brokers' metadata is eventually
        # consistent: once under two modules at a time, a broker still listed [1, 3, 4]).
        wait_for(lambda: (a := assignment(cluster, topic)[0]) and sorted(a[0]) == sorted(
            [replicas[0], spare]) and 4 not in a[1], 10, "the cancelled move in Metadata")
        # Cancelling again: nothing is in progress (Kafka's error).
        from kafka.errors import NoReassignmentInProgressError
        assert admin.alter_partition_reassignments({tp: None}) == {
            tp: NoReassignmentInProgressError}
    finally:
        admin.close()
        fourth.start()


def test_a_throttled_move_copies_at_the_throttled_rate(cluster: Cluster,
                                                       admin: KafkaAdminClient) -> None:
    """The throttles kafka-reassign-partitions.sh --throttle sets (both rates on the brokers
    involved, the current replicas as leader-throttled, the new one as follower-throttled)
    bound how fast the new replica copies the partition: within 20 % of the rate."""
    from tests.integration.test_replication_throttle import MB, _alter, _log_size, _produce

    rate = 2 * MB
    topic = unique_name("slowmove")
    admin_cf = AdminClient({"bootstrap.servers": cluster.bootstrap})
    for fut in admin_cf.create_topics([NewTopic(topic, 1, replica_assignment=[[1, 2]])]).values():
        fut.result(30)
    _produce(cluster, topic, 16 * MB)
    size = _log_size(cluster.node(1), topic)
    _alter(admin_cf, [("broker", b, {"leader.replication.throttled.rate": str(rate),
                                     "follower.replication.throttled.rate": str(rate)})
                      for b in ("1", "2", "4")])
    _alter(admin_cf, [("topic", topic, {"leader.replication.throttled.replicas": "0:1,0:2",
                                        "follower.replication.throttled.replicas": "0:4"})])
    tp = TopicPartition(topic, 0)
    try:
        assert admin.alter_partition_reassignments({tp: [4, 2]}) == {tp: None}
        new = cluster.node(4)
        # The first window may let a burst through; measure from the first copy after it.
        first = wait_for(lambda: _log_size(new, topic), 10, "broker 4 copying", interval=0.02)
        start_size = wait_for(lambda: (s := _log_size(new, topic)) > first and s, 10,
                              "broker 4 copying on", interval=0.02)
        started = time.monotonic()
        time.sleep(5)
        copied = _log_size(new, topic) - start_size
        measured = copied / (time.monotonic() - started)
        # Never over the throttle by more than 20 %; under it only as far as a busy machine
        # slows the copy (a loaded 2-core run measured 1.6 MB/s, a quiet one 1.9).
        assert 0.5 * rate <= measured <= 1.2 * rate, measured / MB
        assert admin.list_partition_reassignments([tp])[tp]["adding_replicas"] == [4]
    finally:
        _alter(admin_cf, [("broker", b, {"leader.replication.throttled.rate": None,
                                         "follower.replication.throttled.rate": None})
                          for b in ("1", "2", "4")])
        _alter(admin_cf, [("topic", topic, {"leader.replication.throttled.replicas": None,
                                            "follower.replication.throttled.replicas": None})])
    wait_for(lambda: not admin.list_partition_reassignments([tp]), 30, "the move to complete")
    assert assignment(cluster, topic)[0][0] == [4, 2]
    assert _log_size(cluster.node(4), topic) == size


def test_an_old_broker_is_retired_once_it_holds_nothing(cluster: Cluster,
                                                        admin: KafkaAdminClient) -> None:
    """The end of docs/operations.md's procedure (last here: it stops node 1): every
    partition on broker 1, the internal topics' too, moves to another broker; then the
    stopped broker is unregistered and the cluster runs on without it, every partition in
    sync. (Node 1 stays a controller voter: the voter set is fixed.)"""
    from odradek.broker.kafka.client import KafkaConnection

    meta = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=10)
    moves = {}
    for name, topic in meta.topics.items():
        for p in topic.partitions.values():
            if 1 in p.replicas:
                spare = next(b for b in (4, 2, 3) if b not in p.replicas)
                moves[TopicPartition(name, p.id)] = [spare if b == 1 else b
                                                     for b in p.replicas]
    assert any(tp.topic == "__consumer_offsets" for tp in moves)
    assert set(admin.alter_partition_reassignments(moves).values()) == {None}
    wait_for(lambda: not admin.list_partition_reassignments(), 60, "every move completed")
    wait_for(lambda: not partition_dirs(cluster.node(1)), 20,
             "broker 1 to delete every replica it held")

    cluster.node(1).stop()
    with KafkaConnection.to(cluster.node(2).bootstrap) as c:
        assert c.request(64, 0, {"broker_id": 1}).error_code == 0  # UnregisterBroker

    def settled() -> bool:
        meta = AdminClient({"bootstrap.servers": cluster.node(2).bootstrap}).list_topics(
            timeout=5)
        return set(meta.brokers) == {2, 3, 4} and all(
            1 not in p.replicas and sorted(p.isrs) == sorted(p.replicas)
            for t in meta.topics.values() for p in t.partitions.values())

    wait_for(settled, 30, "brokers 2-4 serving every partition, in sync")
    topic = unique_name("after")
    admin_cf = AdminClient({"bootstrap.servers": cluster.node(2).bootstrap})
    for fut in admin_cf.create_topics([NewTopic(topic, 3, 3)]).values():
        fut.result(30)
    producer = Producer({"bootstrap.servers": cluster.node(2).bootstrap, "acks": "all"})
    for i in range(3):
        producer.produce(topic, b"x", partition=i)
    assert producer.flush(30) == 0

"""Replication throttles (KIP-73) on a real 3-node cluster, set as kafka-reassign-partitions.sh
--throttle sets them (IncrementalAlterConfigs through librdkafka's admin client): a broker
that was down and fell out of the ISR catches up at the follower throttle's rate, measured
from the size of its log (DescribeLogDirs on that broker, not the throttle's own counters),
while acks=all writes go on undisturbed (the in-sync follower is named by the same
throttle but never held back); with the throttle removed it catches up at full speed and
rejoins the ISR."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from odradek.broker.kafka.client import KafkaConnection
from tests.helpers import unique_name
from tests.integration.harness import Cluster, NodeProcess, metric, wait_for

pytestmark = pytest.mark.integration

MB = 1 << 20
RATE = 2 * MB  # follower.replication.throttled.rate under test
BEHIND = 30 * MB  # what the stopped broker misses
THROTTLED_S = 6.0  # how long the throttled catch-up is measured


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Shared by both roles' tests: each uses its own topic and restarts broker 3.
    c = Cluster(tmp_path_factory.mktemp("throttle"), 3, overrides={
        "auto.leader.rebalance.enable": False, "replica.lag.time.max.ms": 3000}).start()
    yield c
    c.kill_all()


@pytest.fixture
def admin(cluster: Cluster):  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": cluster.bootstrap})


def _alter(admin, resources: list[tuple[str, str, dict[str, str | None]]]) -> None:  # type: ignore[no-untyped-def]
    """IncrementalAlterConfigs: SET (a value) or DELETE (None), per (type, name); one
    request each (librdkafka sends a BROKER resource alone, to that broker)."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    for rtype, name, ops in resources:
        res = ConfigResource(rtype, name, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET if v is not None
                        else AlterConfigOpType.DELETE) for k, v in ops.items()])
        for fut in admin.incremental_alter_configs([res]).values():
            fut.result(15)


def _isr(admin, topic: str) -> list[int]:  # type: ignore[no-untyped-def]
    md = admin.list_topics(topic, timeout=10)
    return sorted(md.topics[topic].partitions[0].isrs)


def _log_size(node: NodeProcess, topic: str) -> int:
    """The size of the topic's partition 0 log on ``node`` (DescribeLogDirs)."""
    with KafkaConnection.to(node.bootstrap) as c:
        r = c.request(35, 4, {"topics": [{"topic": topic, "partitions": [0]}]})
    for t in r.results[0].topics:
        for p in t.partitions:
            return int(p.partition_size)
    return 0


def _produce(cluster: Cluster, topic: str, total: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 20,
                  "batch.size": MB, "compression.type": "none"})
    value = os.urandom(100 * 1024)  # incompressible, ~100 KB a record
    for _ in range(total // len(value)):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0


@pytest.mark.parametrize("role", ["follower", "leader"])
def test_a_follower_catches_up_at_the_throttled_rate(cluster: Cluster, admin,  # type: ignore[no-untyped-def]
                                                     role: str) -> None:
    """``role``: which throttle applies, the restarted follower's or its leader's."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    rate_key, replicas_key = (f"{role}.replication.throttled.rate",
                              f"{role}.replication.throttled.replicas")
    # Where kafka-reassign-partitions.sh --throttle sets each rate: on the brokers that
    # fetch (2 in sync, 3 behind) or on the leader (1).
    throttled = ["2", "3"] if role == "follower" else ["1"]
    topic = unique_name("throttled")
    # Leader 1; 2 stays in sync; 3 is stopped and falls behind. min ISR 2: acks=all
    # writes need broker 2's fetches.
    for fut in admin.create_topics([NewTopic(
            topic, 1, replica_assignment=[[1, 2, 3]],
            config={"min.insync.replicas": "2"})]).values():
        fut.result(15)
    wait_for(lambda: _isr(admin, topic) == [1, 2, 3], 15, "the topic in sync")
    # What kafka-reassign-partitions.sh --throttle sets: the rate on the brokers (each
    # broker's own value, which librdkafka sends to that broker: set while it is up)...
    _alter(admin, [("broker", b, {rate_key: str(RATE)}) for b in throttled])
    lagging = cluster.node(3)
    lagging.stop()
    wait_for(lambda: _isr(admin, topic) == [1, 2], 15, "broker 3 out of the ISR")
    _produce(cluster, topic, BEHIND)
    target = _log_size(cluster.node(1), topic)
    assert target > 0.95 * BEHIND
    # ...and the topic's throttled replicas ("*": broker 2's in-sync one is named too).
    _alter(admin, [("topic", topic, {replicas_key: "*"})])
    lagging.start()
    # Its first fetches may go through at once (the first window's burst, before it even
    # serves clients); the rate is measured from the first fetch that arrives after that.
    first_size = _log_size(lagging, topic)
    start_size = wait_for(lambda: (size := _log_size(lagging, topic)) > first_size and size,
                          10, "broker 3 fetching", interval=0.02)
    started = time.monotonic()

    # acks=all keeps working meanwhile: the in-sync follower is not held back.
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    latencies = []
    for i in range(10):
        sent = time.monotonic()
        producer.produce(topic, f"during-{i}".encode())
        assert producer.flush(10) == 0
        latencies.append(time.monotonic() - sent)
    del producer
    assert max(latencies) < 1.0, latencies

    time.sleep(max(0.0, THROTTLED_S - (time.monotonic() - started)))
    throttled_size = _log_size(lagging, topic)
    elapsed = time.monotonic() - started
    rate = (throttled_size - start_size) / elapsed
    # Within 20 % of the throttle (a fetch carries up to replica.fetch.max.bytes, 1 MB, so
    # the measured span may hold one fetch more or less than the rate's).
    assert 0.8 * RATE <= rate <= 1.2 * RATE, (rate / MB, elapsed)
    assert throttled_size < target  # still behind: the throttle, not the end, stopped it
    holding = lagging if role == "follower" else cluster.node(1)
    assert metric(holding, "odradek_replication_throttled_partitions_skipped_total",
                  f'role="{role}"') > 0
    assert 3 not in _isr(admin, topic)

    # The throttle removed: the rest comes at full speed, and broker 3 is back in the ISR.
    _alter(admin, [*[("broker", b, {rate_key: None}) for b in throttled],
                   ("topic", topic, {replicas_key: None})])
    freed = time.monotonic()
    wait_for(lambda: _log_size(lagging, topic) >= target, 30, "broker 3 caught up")
    fast = (target - throttled_size) / (time.monotonic() - freed)
    assert fast > 3 * RATE, fast / MB
    wait_for(lambda: _isr(admin, topic) == [1, 2, 3], 15, "broker 3 back in the ISR")
    print(f"{role} throttle: catch-up {rate / MB:.2f} MB/s (throttle {RATE / MB:.0f} MB/s) over "
          f"{elapsed:.1f} s; unthrottled {fast / MB:.1f} MB/s")

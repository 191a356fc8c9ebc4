"""Log compaction on a 3-node cluster with real clients: every replica cleans its own log,
consumers read the latest value of every key from whichever replica leads, tombstones go
after delete.retention.ms, keyless records are refused, cleanup.policy changes at runtime,
and __consumer_offsets stays bounded under a group that commits all the time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as CfTopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import InvalidRecordError
from kafka.structs import OffsetAndMetadata

from odradek.storage import LogConfig, PartitionLog
from tests.helpers import metric_sum, unique_name
from tests.integration.harness import Cluster, NodeProcess, metric, scrape, wait_for
from tests.unit.storage.storage_testlib import read_records

pytestmark = pytest.mark.integration

KEYS = 40
ROUNDS = 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("compaction"), n=3, overrides={
        # Look often, so that the test does not wait for Kafka's 15 s.
        "log.cleaner.backoff.ms": 200,
        "offsets.topic.num.partitions": 1,
        "offsets.topic.segment.bytes": 16 * 1024,
        "auto.leader.rebalance.enable": False,
    }).start()
    yield c
    c.kill_all()


def create(cluster: Cluster, topic: str, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 3, config=configs)]).values():
        fut.result(30)


def kafka_producer(cluster: Cluster) -> KafkaProducer:
    # Batches must fit the small segments these topics use (kafka-python 3.0's retry of a
    # split batch never completes its flush).
    return KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", linger_ms=5,
                         batch_size=2048)


def latest(records: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for _, key, value in records:
        assert key is not None
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def consume_all(cluster: Cluster, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record of partition 0 from the beginning, with confluent-kafka (librdkafka)."""
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": unique_name("g"),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    c.assign([CfTopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            m = c.poll(1)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaException(m.error())
            out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    raise AssertionError(f"did not reach the end of {topic}")


def partition_metric(node: NodeProcess, name: str, topic: str) -> float | None:
    return metric_sum(scrape(node), name, f'topic="{topic}"')


def test_replicas_clean_their_logs_and_consumers_see_the_latest_values(
        cluster: Cluster) -> None:
    topic = unique_name("compacted")
    create(cluster, topic, **{"cleanup.policy": "compact", "segment.bytes": "8192",
                              "min.cleanable.dirty.ratio": "0.1",
                              "delete.retention.ms": "2000"})
    producer = kafka_producer(cluster)
    expected: dict[bytes, bytes] = {}
    for r in range(ROUNDS):
        for k in range(KEYS):
            key, value = b"key-%d" % k, b"value-%d-%d" % (k, r) + b"." * 100
            producer.send(topic, key=key, value=value)
            expected[key] = value
    # Tombstones for a quarter of the keys.
    for k in range(0, KEYS, 4):
        producer.send(topic, key=b"key-%d" % k, value=None)
        expected.pop(b"key-%d" % k)
    producer.flush()
    # A compacted topic refuses a record without a key, as Kafka does.
    with pytest.raises(InvalidRecordError):
        producer.send(topic, value=b"no key").get(30)
    producer.close()
    written = ROUNDS * KEYS + KEYS // 4
    # The confluent producer (gzip batches) adds a round on top.
    cp = Producer({"bootstrap.servers": cluster.bootstrap, "compression.type": "gzip",
                   "linger.ms": 5})
    for k in range(1, KEYS, 4):
        cp.produce(topic, key=b"key-%d" % k, value=b"gz-%d" % k)
        expected[b"key-%d" % k] = b"gz-%d" % k
    assert cp.flush(30) == 0
    written += len(range(1, KEYS, 4))

    # Every replica cleans on its own: its checkpoint moves and its log shrinks.
    def all_cleaned() -> bool:
        points = [partition_metric(n, "odradek_log_cleaner_cleaned_offset", topic)
                  for n in cluster.all_nodes()]
        return all(p is not None and p >= written - 2 * KEYS for p in points)

    wait_for(all_cleaned, 60, "every replica to clean the compacted topic")
    sizes = [partition_metric(n, "odradek_log_size_bytes", topic) for n in cluster.all_nodes()]
    assert all(s is not None and s < ROUNDS * KEYS * 100 / 4 for s in sizes), sizes
    assert sum(metric(n, "odradek_log_cleaner_removed_records_total")
               for n in cluster.all_nodes()) >= 3 * (written - 3 * KEYS)

    # `odradek topics describe` shows how far the leader cleaned, from its metrics.
    out = subprocess.run(
        [sys.executable, "-m", "odradek.broker.cli.main", "topics", "describe", topic,
         "--bootstrap", cluster.bootstrap,
         *[a for n in cluster.all_nodes() for a in ("--metrics", f"{n.node_id}={n.metrics_url}")]],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "CLEANED TO OFFSET" in out.stdout and "cleanup.policy=compact" in out.stdout
    row = out.stdout.splitlines()[-1].split()
    assert row[0] == "0" and int(row[2]) >= written - 2 * KEYS, out.stdout

    records = consume_all(cluster, topic)
    assert len(records) < written / 4
    assert latest(records) == expected
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets))
    # kafka-python reads the same thing (it must step over the gaps compaction left).
    kc = KafkaConsumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest",
                       consumer_timeout_ms=3000, enable_auto_commit=False)
    kc.assign([TopicPartition(topic, 0)])
    assert latest([(m.offset, m.key, m.value) for m in kc]) == expected
    kc.close()

    # Another replica leads: same latest values (its log was cleaned by itself).
    leader = cluster.node(leader_of(cluster, topic))
    leader.kill()
    try:
        wait_for(lambda: leader_of(cluster, topic) not in (-1, leader.node_id), 30,
                 "a new leader")
        assert latest(consume_all(cluster, topic)) == expected
    finally:
        leader.restart()

    # Tombstones are gone once delete.retention.ms (2 s) passed and the cleaner ran again.
    time.sleep(2.5)
    producer = kafka_producer(cluster)
    for _ in range(3):
        for k in range(KEYS):
            producer.send(topic, key=b"key-%d" % (k + KEYS), value=b"x" * 100)
            expected[b"key-%d" % (k + KEYS)] = b"x" * 100
    producer.close()
    wait_for(lambda: not any(v is None for _, _, v in consume_all(cluster, topic)), 60,
             "expired tombstones to be removed")
    assert latest(consume_all(cluster, topic)) == expected


def leader_of(cluster: Cluster, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    return int(admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader)


def test_cleanup_policy_changes_at_runtime(cluster: Cluster) -> None:
    topic = unique_name("switch")
    create(cluster, topic, **{"segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.1"})
    producer = kafka_producer(cluster)
    for r in range(20):
        for k in range(10):
            producer.send(topic, key=b"k%d" % k, value=b"%d" % r + b"." * 100)
    producer.close()
    time.sleep(1)  # the cleaner leaves a delete-policy log alone
    assert len(consume_all(cluster, topic)) == 200
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(30)
    wait_for(lambda: len(consume_all(cluster, topic)) < 100, 60,
             "the log to be compacted after cleanup.policy=compact")
    got = latest(consume_all(cluster, topic))
    assert got == {b"k%d" % k: b"19" + b"." * 100 for k in range(10)}


def test_consumer_offsets_stay_bounded_under_continuous_commits(cluster: Cluster) -> None:
    """A group commits without a pause: __consumer_offsets (16 KiB segments here) is
    compacted as it goes, so its size levels off far below what was written. In make test
    for 2,000 commits; `make soak` runs it for COMPACTION_SOAK_S seconds (600) and checks
    the bound every 10 s."""
    soak_s = float(os.environ.get("COMPACTION_SOAK_S", "0"))
    topic = unique_name("commits")
    create(cluster, topic)
    group = unique_name("busy")
    c = KafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id=group,
                      enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    c.assign([tp])

    def offsets_topic() -> tuple[float, float]:
        sizes = [partition_metric(n, "odradek_log_size_bytes", "__consumer_offsets") or 0
                 for n in cluster.all_nodes()]
        ends = [partition_metric(n, "odradek_log_end_offset", "__consumer_offsets") or 0
                for n in cluster.all_nodes()]
        return max(sizes), max(ends)

    bound = 4 * 16 * 1024  # the active segment plus a few sealed ones awaiting a cleaning
    commits = 0
    started = time.monotonic()
    next_check = started + 30
    peak = 0.0
    while commits < 2000 or time.monotonic() - started < soak_s:
        c.commit({tp: OffsetAndMetadata(commits, "", -1)})
        commits += 1
        if soak_s and time.monotonic() >= next_check:
            size, end = offsets_topic()
            peak = max(peak, size)
            assert size < bound, (f"__consumer_offsets grew to {size:.0f} bytes after "
                                  f"{commits} commits ({end:.0f} records written)")
            next_check = time.monotonic() + 10
    c.close()

    def bounded() -> bool:
        size, end = offsets_topic()
        return end >= commits and size < bound

    wait_for(bounded, 60, "__consumer_offsets to be compacted")
    size, end = offsets_topic()
    # Roughly 100 bytes per commit record were written: bounded means far below that.
    assert size < end * 100 / 3
    if soak_s:
        print(f"\nsoak: {commits} commits in {time.monotonic() - started:.0f} s, "
              f"{end:.0f} records, __consumer_offsets-0 peak {peak:.0f} bytes, "
              f"final {size:.0f} bytes")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])
    result = next(iter(committed.values())).result(30)
    assert [p.offset for p in result.topic_partitions if p.topic == topic] == [commits - 1]


def test_each_replica_log_on_disk_is_compacted_and_agrees(cluster: Cluster) -> None:
    """After a clean stop, every replica's log of a compacted topic, opened from its
    directory: offsets increase, each key appears once below the cleaner's point, and all
    three replay to the same latest values. It stops the cluster, so it comes last."""
    topic = unique_name("ondisk")
    create(cluster, topic, **{"cleanup.policy": "compact", "segment.bytes": "4096",
                              "min.cleanable.dirty.ratio": "0.1"})
    producer = kafka_producer(cluster)
    for r in range(25):
        for k in range(20):
            producer.send(topic, key=b"k%d" % k, value=b"v%d" % r + b"." * 80)
    producer.close()
    wait_for(lambda: all((partition_metric(n, "odradek_log_cleaner_cleaned_offset", topic)
                          or 0) >= 300 for n in cluster.all_nodes()), 60,
             "every replica to clean")
    cluster.stop_all()
    replays = []
    for node in cluster.all_nodes():
        d = next(Path(node.data_dir).rglob(f"{topic}-0"))
        plog = PartitionLog.open(d, LogConfig(cleanup_policy="compact"))
        try:
            got = read_records(plog)
            below = [k for o, k, _ in got if o < plog.cleaner_point]
            assert len(below) == len(set(below)), node.node_id
            assert [o for o, _, _ in got] == sorted({o for o, _, _ in got})
            replays.append(latest(got))
        finally:
            plog.close()
    assert replays[0] == replays[1] == replays[2]
    assert replays[0] == {b"k%d" % k: b"v24" + b"." * 80 for k in range(20)}

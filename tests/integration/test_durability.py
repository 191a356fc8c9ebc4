"""Data, offsets and metadata survive a SIGKILL of the broker; retention deletes old data."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tests.helpers import unique_name
from tests.integration.harness import NodeProcess

pytestmark = pytest.mark.integration


def test_data_and_committed_offsets_survive_sigkill(node: NodeProcess) -> None:
    topic = unique_name("dur")
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=node.bootstrap, acks="all")
    sent = {}
    for i in range(300):
        md = producer.send(topic, key=str(i).encode(), value=f"v{i}".encode()).get(10)
        sent[(md.partition, md.offset)] = f"v{i}".encode()
    producer.close()

    group = f"g-{topic}"
    consumer = KafkaConsumer(topic, bootstrap_servers=node.bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=5000)
    first = []
    for m in consumer:
        first.append(m)
        if len(first) == 150:
            break
    consumer.commit()
    committed = {tp: consumer.committed(tp) for tp in consumer.assignment()}
    consumer.close(autocommit=False)

    node.kill()
    node.start()

    consumer = KafkaConsumer(bootstrap_servers=node.bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    for tp, offset in committed.items():
        assert consumer.committed(tp) == offset, f"committed offset of {tp} lost"
    consumer.close()

    reader = KafkaConsumer(bootstrap_servers=node.bootstrap, consumer_timeout_ms=5000,
                           auto_offset_reset="earliest")
    tps = [TopicPartition(topic, p) for p in range(3)]
    reader.assign(tps)
    reader.seek_to_beginning(*tps)
    got = {(m.partition, m.offset): m.value for m in reader}
    reader.close()
    assert got == sent


def test_topics_and_configs_survive_restart(node: NodeProcess) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    admin.create_topics([NewTopic("keep-me", 4, 1, topic_configs={"retention.ms": "123456"})])
    admin.close()
    node.kill()
    node.start()
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    assert "keep-me" in admin.list_topics()
    desc = admin.describe_topics(["keep-me"])
    assert len(desc[0]["partitions"]) == 4
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "keep-me")])
    admin.close()
    assert res["topic"]["keep-me"]["retention.ms"]["value"] == "123456"


def test_retention_deletes_old_segments(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "ret", overrides={
        "log.retention.check.interval.ms": 200}).start()
    try:
        topic = "retained"
        admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={
            "segment.bytes": "4096", "retention.ms": "1500"})])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=node.bootstrap, acks="all", linger_ms=0)
        for i in range(200):
            producer.send(topic, b"x" * 200 + str(i).encode()).get(10)
        producer.close()
        part_dir = tmp_path / "ret" / "node-1" / "logs" / f"{topic}-0"
        segments_before = len(list(part_dir.glob("*.log")))
        assert segments_before > 5
        consumer = KafkaConsumer(bootstrap_servers=node.bootstrap)
        tp = TopicPartition(topic, 0)
        deadline = time.monotonic() + 30
        start = 0
        while time.monotonic() < deadline:
            start = consumer.beginning_offsets([tp])[tp]
            if start == 200:
                break
            time.sleep(0.3)
        end = consumer.end_offsets([tp])[tp]
        consumer.close()
        assert start == end == 200, (start, end)
        assert len(list(part_dir.glob("*.log"))) == 1
    finally:
        node.kill()

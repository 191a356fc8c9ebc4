"""Admin operations through real admin clients (kafka-python and confluent-kafka)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    NewPartitions,
    NewTopic,
)

from odradek.broker.kafka.client import KafkaConnection
from tests.helpers import unique_name
from tests.integration.harness import NodeProcess

pytestmark = pytest.mark.integration



def test_topic_lifecycle_with_kafka_python(shared_node: NodeProcess) -> None:
    topic = unique_name("life")
    admin = KafkaAdminClient(bootstrap_servers=shared_node.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
        assert topic in admin.list_topics()
        admin.create_partitions({topic: NewPartitions(5)})
        assert len(admin.describe_topics([topic])[0]["partitions"]) == 5
        with pytest.raises(Exception, match="INVALID_PARTITIONS|InvalidPartitions"):
            admin.create_partitions({topic: NewPartitions(3)})
        with pytest.raises(Exception, match="TOPIC_ALREADY_EXISTS|TopicAlreadyExists"):
            admin.create_topics([NewTopic(topic, 1, 1)])
        with pytest.raises(Exception, match="INVALID_REPLICATION_FACTOR|InvalidReplication"):
            admin.create_topics([NewTopic(unique_name("rf"), 1, 3)])
        admin.delete_topics([topic])
        deadline = time.monotonic() + 10
        while topic in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert topic not in admin.list_topics()
        cluster = admin.describe_cluster()
        assert [b["broker_id"] for b in cluster["brokers"]] == [1]
    finally:
        admin.close()


def test_configs_alter_and_incremental(shared_node: NodeProcess) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry
    from confluent_kafka.admin import ConfigResource as CfResource

    topic = unique_name("cfg")
    admin = KafkaAdminClient(bootstrap_servers=shared_node.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"retention.ms": "1000000"})])
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                            configs={"retention.bytes": "5000000"})])
        got = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        cfg = got["topic"][topic]
        # Legacy AlterConfigs replaces the whole set of overrides.
        assert cfg["retention.bytes"]["value"] == "5000000"
        assert cfg["retention.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        bad = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                  configs={"retention.ms": "soon"})])
        assert "[Error 40]" in bad["topic"][topic]
        assert "retention.ms" in bad["topic"][topic]
    finally:
        admin.close()

    cf = AdminClient({"bootstrap.servers": shared_node.bootstrap})
    assert topic in cf.list_topics(timeout=10).topics
    res = CfResource("topic", topic, incremental_configs=[
        ConfigEntry("segment.bytes", "1048576",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    for fut in cf.incremental_alter_configs([res]).values():
        fut.result(10)
    desc = cf.describe_configs([CfResource("topic", topic)])
    entries = next(iter(desc.values())).result(10)
    assert entries["segment.bytes"].value == "1048576"
    assert entries["retention.bytes"].value == "-1"  # back to the default
    assert entries["retention.bytes"].is_default


def test_list_offsets_by_time_and_delete_records(shared_node: NodeProcess) -> None:
    topic = unique_name("time")
    producer = KafkaProducer(bootstrap_servers=shared_node.bootstrap, acks="all")
    base = int(time.time() * 1000) - 100_000
    for i in range(100):
        producer.send(topic, f"r{i}".encode(), timestamp_ms=base + i * 1000).get(10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=shared_node.bootstrap)
    tp = TopicPartition(topic, 0)
    found = consumer.offsets_for_times({tp: base + 42_500})[tp]
    assert (found.offset, found.timestamp) == (43, base + 43_000)
    assert consumer.offsets_for_times({tp: base + 1_000_000})[tp] is None
    admin = KafkaAdminClient(bootstrap_servers=shared_node.bootstrap)
    admin.delete_records({tp: 60})
    admin.close()
    assert consumer.beginning_offsets([tp])[tp] == 60
    assert consumer.end_offsets([tp])[tp] == 100
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    first = next(iter(consumer))
    assert (first.offset, first.value) == (60, b"r60")
    consumer.close()


def test_offset_for_leader_epoch(shared_node: NodeProcess) -> None:
    topic = unique_name("epoch")
    producer = KafkaProducer(bootstrap_servers=shared_node.bootstrap)
    for _ in range(7):
        producer.send(topic, b"x")
    producer.flush()
    producer.close()
    with KafkaConnection.to(shared_node.bootstrap) as c:
        r = c.request(23, 4, {"replica_id": -1, "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0},
            {"partition": 0, "current_leader_epoch": 5, "leader_epoch": 0},
            {"partition": 3, "current_leader_epoch": -1, "leader_epoch": 0}]}]})
        ok, future_epoch, missing = r.topics[0].partitions
        assert (ok.error_code.value, ok.leader_epoch, ok.end_offset) == (0, 0, 7)
        assert future_epoch.error_code.name == "unknown_leader_epoch"
        assert missing.error_code.name == "unknown_topic_or_partition"


def test_authorized_operations_are_reported_when_asked(shared_node: NodeProcess) -> None:
    """KIP-430 through librdkafka: without an authorizer every operation the resource type
    supports is allowed (as Kafka answers); before, the cluster and topics reported none."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation, AdminClient
    from confluent_kafka.admin import NewTopic as CkNewTopic

    topic, group = unique_name("ops"), unique_name("ops-group")
    admin = AdminClient({"bootstrap.servers": shared_node.bootstrap})
    admin.create_topics([CkNewTopic(topic, 1, 1)])[topic].result(30)
    producer = KafkaProducer(bootstrap_servers=shared_node.bootstrap)
    producer.send(topic, b"x").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=shared_node.bootstrap, group_id=group,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    next(iter(consumer))
    consumer.commit()
    consumer.close()

    cluster = admin.describe_cluster(include_authorized_operations=True).result(30)
    assert set(cluster.authorized_operations) == {
        AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
        AclOperation.DESCRIBE}
    described = admin.describe_topics(TopicCollection([topic]),
                                      include_authorized_operations=True)[topic].result(30)
    assert set(described.authorized_operations) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE,
        AclOperation.DELETE, AclOperation.ALTER, AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS}
    g = admin.describe_consumer_groups([group], include_authorized_operations=True)[group] \
        .result(30)
    assert set(g.authorized_operations) == {AclOperation.READ, AclOperation.DESCRIBE,
                                            AclOperation.DELETE}
    # Not asked: not reported (Kafka's INT32_MIN sentinel, which librdkafka shows as None).
    assert admin.describe_cluster().result(30).authorized_operations is None
    assert admin.describe_topics(TopicCollection([topic]))[topic].result(30) \
        .authorized_operations is None


def test_describe_log_dirs(shared_node: NodeProcess) -> None:
    """DescribeLogDirs through kafka-python's admin client: the node's data dir, each
    hosted partition's size (what kafka-log-dirs.sh shows), the volume's space (v4)."""
    topic = unique_name("logdirs")
    admin = KafkaAdminClient(bootstrap_servers=shared_node.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
        producer = KafkaProducer(bootstrap_servers=shared_node.bootstrap)
        for _ in range(20):
            producer.send(topic, b"x" * 1000, partition=1)
        producer.flush()
        producer.close()
        [answer] = admin.describe_log_dirs()
        assert answer["broker"] == 1
        [result] = answer["log_dirs"]
        assert result["error_code"] == 0
        assert result["log_dir"] == str(shared_node.data_dir.resolve())
        sizes = {(t["name"], p["partition_index"]): p["partition_size"]
                 for t in result["topics"] for p in t["partitions"]}
        assert sizes[(topic, 0)] == 0 and sizes[(topic, 1)] > 20_000
        assert result["total_bytes"] >= result["usable_bytes"] > 0
        # Asking for one partition answers only that one.
        [answer] = admin.describe_log_dirs(topic_partitions={topic: [1]})
        [result] = answer["log_dirs"]
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]])
                for t in result["topics"]] == [(topic, [1])]
    finally:
        admin.close()


def test_describe_topic_partitions_pages_with_a_cursor(shared_node: NodeProcess) -> None:
    """DescribeTopicPartitions (KIP-966, what Kafka 4's Java admin uses to describe topics):
    name order, index order, a page at most the limit, the cursor where the next starts."""
    a, b = sorted([unique_name("dtp"), unique_name("dtp")])
    admin = KafkaAdminClient(bootstrap_servers=shared_node.bootstrap)
    try:
        admin.create_topics([NewTopic(a, 5, 1), NewTopic(b, 3, 1)])
        time.sleep(0.5)
        page = admin.describe_topic_partitions([b, a], response_partition_limit=4)
        assert [t["name"] for t in page["topics"]] == [a]
        [ta] = page["topics"]
        assert ta["error_code"] == 0 and ta["topic_id"]
        assert [p["partition_index"] for p in ta["partitions"]] == [0, 1, 2, 3]
        p0 = ta["partitions"][0]
        assert (p0["leader_id"], p0["replica_nodes"], p0["isr_nodes"]) == (1, [1], [1])
        # An empty ELR (kafka-python reads an empty nullable array as None).
        assert p0["eligible_leader_replicas"] in ([], None) and not p0["offline_replicas"]
        assert page["next_cursor"] == {"topic_name": a, "partition_index": 4}
        page = admin.describe_topic_partitions([a, b], response_partition_limit=4,
                                               cursor=page["next_cursor"])
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]])
                for t in page["topics"]] == [(a, [4]), (b, [0, 1, 2])]
        assert page["next_cursor"] is None
        missing = unique_name("missing")
        [t] = admin.describe_topic_partitions([missing])["topics"]
        assert (t["name"], t["error_code"], t["partitions"]) == (missing, 3, [])
        # A cursor on a topic not asked for is an invalid request, as in Kafka.
        answer = admin.describe_topic_partitions(
            [b], cursor={"topic_name": a, "partition_index": 0})
        assert [t["error_code"] for t in answer["topics"]] == [42]
    finally:
        admin.close()


@pytest.mark.parametrize(("api_key", "versions"), [(35, range(1, 5)), (43, range(0, 3)),
                                                     (55, range(0, 3)), (75, range(0, 1))])
def test_every_version_of_the_new_admin_apis(shared_node: NodeProcess, api_key: int,
                                             versions: range) -> None:
    """The clients above speak the newest versions; this asks every version ApiVersions
    advertises for DescribeLogDirs, ElectLeaders, DescribeQuorum and DescribeTopicPartitions
    (kio builds each version's shape) and checks the answer."""
    topic = unique_name("versions")
    admin = KafkaAdminClient(bootstrap_servers=shared_node.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    with KafkaConnection.to(shared_node.bootstrap) as c:
        api = next(a for a in c.request(18, 3, {"client_software_name": "t",
                                                "client_software_version": "1"}).api_keys
                   if a.api_key == api_key)
        assert (api.min_version, api.max_version) == (versions.start, versions.stop - 1)
        for v in versions:
            if api_key == 35:
                r = c.request(35, v, {"topics": [{"topic": topic, "partitions": [0]}]})
                [result] = r.results
                assert [t.name for t in result.topics] == [topic], v
                assert result.topics[0].partitions[0].partition_index == 0
            elif api_key == 43:
                data: dict[str, Any] = {"topic_partitions": [
                    {"topic": topic, "partitions": [0]}], "timeout": 5000}
                if v >= 1:
                    data["election_type"] = 0
                r = c.request(43, v, data)
                [res] = r.replica_election_results
                # One replica, already the leader: nothing to elect.
                assert res.partition_result[0].error_code.name == "election_not_needed", v
            elif api_key == 55:
                r = c.request(55, v, {"topics": [{"topic_name": "__cluster_metadata",
                                                  "partitions": [{"partition_index": 0}]}]})
                p = r.topics[0].partitions[0]
                assert (p.error_code.value, p.leader_id) == (0, 1), v
                assert [x.replica_id for x in p.current_voters] == [1]
            else:
                r = c.request(75, v, {"topics": [{"name": topic}],
                                      "response_partition_limit": 10, "cursor": None})
                [t] = r.topics
                assert (t.name, t.error_code.value, len(t.partitions)) == (topic, 0, 1)

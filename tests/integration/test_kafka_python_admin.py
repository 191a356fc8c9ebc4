"""kafka-python 3's KafkaAdminClient: the methods no other test calls, each against the
shared node, with what it changed seen through another call. Together with the admin,
group, transaction and security tests this covers every method of the client that maps to
an API Odradek serves (alter_replica_log_dirs does not: one log directory per node)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    MemberToRemove,
    NewTopic,
    OffsetSpec,
)
from kafka.structs import OffsetAndMetadata

from tests.helpers import unique_name
from tests.integration.harness import NodeProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(shared_node: NodeProcess) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=shared_node.bootstrap, request_timeout_ms=15_000)
    yield client
    client.close()


def _topic_with_records(admin: KafkaAdminClient, shared_node: NodeProcess, n: int) -> str:
    topic = unique_name("kpadmin")
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.wait_for_topics([topic], timeout_ms=10_000)
    producer = KafkaProducer(bootstrap_servers=shared_node.bootstrap, acks="all")
    for i in range(n):
        producer.send(topic, f"v{i}".encode(), partition=i % 2, timestamp_ms=1_000 * (i + 1))
    producer.flush()
    producer.close()
    return topic


def test_cluster_features_and_version_data(admin: KafkaAdminClient,
                                           shared_node: NodeProcess) -> None:
    features = admin.describe_features()
    assert features["transaction.version"]["finalized"] == (2, 2), features
    assert features["transaction.version"]["supported"] == (0, 2), features
    data = admin.get_broker_version_data(shared_node.node_id)
    assert data.api_versions  # the node's ApiVersions answer, as the client keeps it


def test_partition_offsets_by_spec(admin: KafkaAdminClient, shared_node: NodeProcess) -> None:
    topic = _topic_with_records(admin, shared_node, 10)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    got = admin.list_partition_offsets({tp0: OffsetSpec.EARLIEST, tp1: OffsetSpec.LATEST})
    assert (got[tp0].offset, got[tp1].offset) == (0, 5)
    got = admin.list_partition_offsets({tp0: OffsetSpec.MAX_TIMESTAMP, tp1: 4_500})
    # Partition 0 holds the even values (timestamps 1, 3, ..., 9 s), 1 the odd (2, ..., 10 s).
    assert (got[tp0].offset, got[tp0].timestamp) == (4, 9_000)
    assert (got[tp1].offset, got[tp1].timestamp) == (2, 6_000)


def test_reset_configs_removes_overrides(admin: KafkaAdminClient) -> None:
    topic = unique_name("kpcfg")
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"retention.ms": "3600000"})])
    admin.wait_for_topics([topic], timeout_ms=10_000)
    modified = ConfigResource(ConfigResourceType.TOPIC, topic)
    (overrides,) = admin.describe_configs([modified])["topic"].values()
    assert list(overrides) == ["retention.ms"]
    assert overrides["retention.ms"]["value"] == "3600000"
    assert overrides["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs=["retention.ms"])
    assert admin.reset_configs([resource]) == {"topic": {topic: "OK"}}
    # Only the overrides are described by default: none is left.
    assert admin.describe_configs([modified]) == {"topic": {topic: {}}}


def test_group_offsets_altered_reset_and_members_removed(
        admin: KafkaAdminClient, shared_node: NodeProcess) -> None:
    topic = _topic_with_records(admin, shared_node, 10)
    group = unique_name("kpgroup")
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    errors = admin.alter_group_offsets(group, {tp0: OffsetAndMetadata(3, "m", -1),
                                               tp1: OffsetAndMetadata(1, "", -1)})
    assert all(getattr(e, "errno", 0) == 0 for e in errors.values()), errors
    assert {tp: o.offset for tp, o in admin.list_group_offsets(group)[group].items()} == {
        tp0: 3, tp1: 1}
    errors = admin.reset_group_offsets(group, {tp0: OffsetSpec.EARLIEST, tp1: OffsetSpec.LATEST})
    assert all(getattr(e, "errno", 0) == 0 for e in errors.values()), errors
    assert {tp: o.offset for tp, o in admin.list_group_offsets(group)[group].items()} == {
        tp0: 0, tp1: 5}

    # A static member, removed by its group.instance.id (LeaveGroup v3+ from an admin).
    consumer = KafkaConsumer(topic, bootstrap_servers=shared_node.bootstrap, group_id=group,
                             group_instance_id="static-1", session_timeout_ms=30_000,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        deadline = time.monotonic() + 20
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(200)
        assert consumer.assignment()
        members = admin.describe_groups([group])[group]["members"]
        assert [m["group_instance_id"] for m in members] == ["static-1"], members
        member = MemberToRemove(group_instance_id="static-1")
        result = admin.remove_group_members(group, [member])
        assert all(getattr(e, "errno", 0) == 0 for e in result.values()), result
        assert admin.describe_groups([group])[group]["members"] == []
    finally:
        consumer.close(autocommit=False)


def test_transaction_tools_on_a_partition_with_an_open_transaction(
        admin: KafkaAdminClient, shared_node: NodeProcess) -> None:
    from confluent_kafka import Producer

    topic = unique_name("kptxn")
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.wait_for_topics([topic], timeout_ms=10_000)
    producer = Producer({"bootstrap.servers": shared_node.bootstrap,
                         "transactional.id": unique_name("tid")})
    producer.init_transactions(15)
    producer.begin_transaction()
    producer.produce(topic, b"open", partition=0)
    producer.flush(15)
    try:
        tp = TopicPartition(topic, 0)
        states = admin.describe_producers([tp])
        (active,) = states[tp].active_producers
        assert active.current_transaction_start_offset == 0, active
        # Its coordinator knows it and it is young: nothing is hanging.
        assert admin.find_hanging_transactions(max_transaction_timeout_ms=900_000) == []
    finally:
        producer.abort_transaction(15)


def test_deleting_a_topic_deletes_the_groups_offsets_of_it(
        admin: KafkaAdminClient, shared_node: NodeProcess) -> None:
    """As in Kafka: a topic created again under a deleted one's name starts without the
    old topic's committed offsets (consumers follow auto.offset.reset, not positions of a
    log that is gone); other topics' offsets stay."""
    from tests.integration.harness import wait_for

    topic, kept = _topic_with_records(admin, shared_node, 4), _topic_with_records(
        admin, shared_node, 4)
    group = unique_name("kpdel")
    offsets = {TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1),
               TopicPartition(kept, 0): OffsetAndMetadata(1, "", -1)}
    admin.alter_group_offsets(group, offsets)
    admin.delete_topics([topic])
    wait_for(lambda: list(admin.list_group_offsets(group)[group]) == [TopicPartition(kept, 0)],
             10, "the deleted topic's offsets gone")
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.wait_for_topics([topic], timeout_ms=10_000)
    assert {tp: o.offset for tp, o in admin.list_group_offsets(group)[group].items()} == {
        TopicPartition(kept, 0): 1}

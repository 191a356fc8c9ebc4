"""Dynamic broker configs (KIP-226) through real admin clients: cluster-wide ("") and
per-broker values take effect on the running node, DescribeConfigs tells their source, a
restart keeps them, and keys that cannot change at runtime are refused as Kafka does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from odradek.broker.kafka.client import KafkaConnection
from tests.helpers import unique_name
from tests.integration.harness import NodeProcess, wait_for

pytestmark = pytest.mark.integration

DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC, DEFAULT = 2, 3, 4, 5


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path / "cluster", overrides={
        "log.retention.ms": 3_600_000,  # a static value, to see the levels over it
        "log.retention.check.interval.ms": 200,
    }).start()
    yield n
    n.kill()


def _confluent(node: NodeProcess):  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": node.bootstrap})


def _incremental(node: NodeProcess, name: str, ops: dict[str, str | None],
                 validate_only: bool = False) -> None:
    """SET (value) or DELETE (None) through librdkafka's IncrementalAlterConfigs. Neither
    librdkafka nor kafka-python can name the cluster-wide resource "" (both want a broker
    id; Kafka's Java admin and kafka-configs.sh --entity-default can), so that one is sent
    as the Java admin client sends it."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    if name == "":
        with KafkaConnection.to(node.bootstrap) as c:
            r = c.request(44, 1, {"validate_only": validate_only, "resources": [{
                "resource_type": 4, "resource_name": "", "configs": [
                    {"name": k, "config_operation": 0 if v is not None else 1, "value": v}
                    for k, v in ops.items()]}]})
        (res,) = r.responses
        if res.error_code.value:
            raise KafkaException(f"{res.error_code.name}: {res.error_message}")
        return
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET if v is not None
                           else AlterConfigOpType.DELETE) for k, v in ops.items()]
    admin = _confluent(node)
    for fut in admin.incremental_alter_configs(
            [ConfigResource("broker", name, incremental_configs=entries)],
            validate_only=validate_only).values():
        fut.result(15)


def _describe(node: NodeProcess, name: str) -> dict[str, tuple[str, int]]:
    """(value, source) per key of BROKER resource `name`, through librdkafka (the
    cluster-wide resource "" as Kafka's Java admin client asks for it)."""
    from confluent_kafka.admin import ConfigResource

    if name == "":
        with KafkaConnection.to(node.bootstrap) as c:
            r = c.request(32, 4, {"resources": [{"resource_type": 4, "resource_name": "",
                                                 "configuration_keys": None}],
                                  "include_synonyms": False, "include_documentation": False})
        return {e.name: (e.value, int(e.config_source)) for e in r.results[0].configs}
    admin = _confluent(node)
    fut = next(iter(admin.describe_configs([ConfigResource("broker", name)]).values()))
    return {k: (e.value, int(e.source)) for k, e in fut.result(15).items()}


def _metadata_error(node: NodeProcess, topic: str) -> tuple[str, int]:
    with KafkaConnection.to(node.bootstrap) as c:
        r = c.request(3, 9, {"topics": [{"name": topic}], "allow_auto_topic_creation": True})
        t = r.topics[0]
        return t.error_code.name, len(t.partitions)


def _wait_config(node: NodeProcess, name: str, key: str, want: tuple[str, int]) -> None:
    wait_for(lambda: _describe(node, name).get(key) == want, 10,
             f"{key} of broker resource {name!r} to be {want}")


def test_cluster_default_and_per_broker_values_take_effect(node: NodeProcess) -> None:
    # Cluster-wide through librdkafka: no auto-creation, 3 partitions for new topics.
    _incremental(node, "", {"auto.create.topics.enable": "false", "num.partitions": "3"})
    _wait_config(node, "1", "auto.create.topics.enable", ("false", DYNAMIC_DEFAULT))
    assert _metadata_error(node, unique_name("nope")) == ("unknown_topic_or_partition", 0)
    # The default resource lists the cluster-wide values only, as Kafka does.
    assert _describe(node, "") == {"auto.create.topics.enable": ("false", DYNAMIC_DEFAULT),
                                   "num.partitions": ("3", DYNAMIC_DEFAULT)}

    # Per broker through kafka-python: broker 1's own value beats the cluster-wide one.
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        res = admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, "1", configs={
            "auto.create.topics.enable": "true"})])
        assert "Error" not in str(res), res
        _wait_config(node, "1", "auto.create.topics.enable", ("true", DYNAMIC_BROKER))
        topic = unique_name("auto")
        wait_for(lambda: _metadata_error(node, topic) == ("none", 3), 10,
                 "the auto-created topic with num.partitions=3")
        got = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")],
                                     include_synonyms=True, config_filter="all")
        cfg = got["broker"]["1"]
        assert cfg["auto.create.topics.enable"]["config_source"] == "DYNAMIC_BROKER_CONFIG"
        assert cfg["num.partitions"]["config_source"] == "DYNAMIC_DEFAULT_BROKER_CONFIG"
        assert cfg["log.retention.ms"]["config_source"] == "STATIC_BROKER_CONFIG"
        assert cfg["log.segment.bytes"]["config_source"] == "DEFAULT_CONFIG"
        assert not cfg["auto.create.topics.enable"]["read_only"]
        assert cfg["node.id"]["read_only"]
        synonyms = [(s["value"], s["source"]) for s in
                    cfg["auto.create.topics.enable"]["synonyms"]]
        assert [v for v, _ in synonyms] == ["true", "false", "true"], synonyms

        # Kafka's refusal for keys that cannot change at runtime, per key, by name.
        bad = admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, "1", configs={
            "listeners": "PLAINTEXT://127.0.0.1:1"})], raise_on_unknown=False)
        assert "[Error 42]" in str(bad) and "listeners" in str(bad), bad
        wrong_level = admin.alter_configs([ConfigResource(
            ConfigResourceType.BROKER, "1", configs={"num.partitions": "5"})],
            raise_on_unknown=False)
        assert "[Error 42]" in str(wrong_level) and "cluster-wide" in str(wrong_level)
    finally:
        admin.close()
    from confluent_kafka import KafkaException

    with pytest.raises(KafkaException, match="node.id"):
        _incremental(node, "", {"node.id": "7"})
    with pytest.raises(KafkaException, match="max.connections"):
        _incremental(node, "", {"max.connections": "0"})
    # validate_only changes nothing.
    _incremental(node, "", {"num.partitions": "9"}, validate_only=True)
    assert _describe(node, "")["num.partitions"] == ("3", DYNAMIC_DEFAULT)

    # A restart keeps them: they live in the metadata log.
    node.restart()
    assert _describe(node, "1")["auto.create.topics.enable"] == ("true", DYNAMIC_BROKER)
    assert _describe(node, "1")["num.partitions"] == ("3", DYNAMIC_DEFAULT)
    _incremental(node, "1", {"auto.create.topics.enable": None})
    _wait_config(node, "1", "auto.create.topics.enable", ("false", DYNAMIC_DEFAULT))
    assert _metadata_error(node, unique_name("nope"))[0] == "unknown_topic_or_partition"


def test_retention_defaults_apply_to_existing_topics(node: NodeProcess) -> None:
    topic = unique_name("ret")
    producer = KafkaProducer(bootstrap_servers=node.bootstrap, linger_ms=0)
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=node.bootstrap)
    producer.send(topic, b"first").get(10)
    # Per-level precedence on a static key: dynamic default over the file, then deleted.
    _incremental(node, "", {"log.retention.ms": "7200000"})
    _wait_config(node, "1", "log.retention.ms", ("7200000", DYNAMIC_DEFAULT))
    _incremental(node, "", {"log.retention.ms": None})
    _wait_config(node, "1", "log.retention.ms", ("3600000", STATIC))

    # Small segments and a byte limit for topics without their own: the existing topic
    # rolls and then loses its oldest segments.
    _incremental(node, "", {"log.segment.bytes": "1000", "log.retention.bytes": "3000"})
    _wait_config(node, "1", "log.retention.bytes", ("3000", DYNAMIC_DEFAULT))
    for i in range(40):
        producer.send(topic, f"{i:04d}".encode() * 50).get(10)
    producer.close()
    wait_for(lambda: consumer.beginning_offsets([tp])[tp] > 0, 10,
             "retention to drop the oldest segments of the existing topic")
    # DescribeConfigs on the topic tells where its effective value comes from.
    from confluent_kafka.admin import ConfigResource as CfResource

    admin = _confluent(node)
    fut = next(iter(admin.describe_configs([CfResource("topic", topic)]).values()))
    entries = fut.result(15)
    assert (entries["retention.bytes"].value, int(entries["retention.bytes"].source)) == (
        "3000", DYNAMIC_DEFAULT)
    consumer.close()


def test_max_connections_applies_to_new_connections(node: NodeProcess) -> None:
    # In effect once the change is answered (the node applies committed metadata first);
    # not read back here, as that would take connections of its own.
    _incremental(node, "1", {"max.connections": "3"})
    time.sleep(0.5)  # the admin client's connections close

    def served(conn: KafkaConnection) -> bool:
        try:
            conn.request(18, 0, {})
            return True
        except Exception:
            return False

    opened = []
    try:
        for _ in range(6):
            c = KafkaConnection.to(node.bootstrap)
            opened.append(c)
            if not served(c):
                break
        else:
            pytest.fail("max.connections=3 did not refuse a 6th connection")
        assert len(opened) <= 4
    finally:
        for c in opened:
            c.close()
    _incremental(node, "1", {"max.connections": None})
    _wait_config(node, "1", "max.connections", (str(2**31 - 1), DEFAULT))
    conns = [KafkaConnection.to(node.bootstrap) for _ in range(6)]
    try:
        assert all(served(c) for c in conns)
    finally:
        for c in conns:
            c.close()


def test_every_node_applies_its_levels_and_a_restarted_one_too(tmp_path: Path) -> None:
    """Two broker-only nodes following a dedicated controller's metadata log: the
    cluster-wide value reaches both, broker 2's own value only broker 2, the controller
    uses the cluster-wide num.partitions / default.replication.factor for -1, and a node
    restarted later applies them as it loads the metadata."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from tests.integration.harness import Cluster

    cluster = Cluster(tmp_path / "c", 2, dedicated_controllers=1).start()
    try:
        one, two = cluster.node(1), cluster.node(2)
        _incremental(one, "", {"auto.create.topics.enable": "false", "num.partitions": "4",
                               "default.replication.factor": "1"})
        _incremental(two, "2", {"auto.create.topics.enable": "true"})  # librdkafka -> node 2
        for n in (one, two):
            _wait_config(n, "", "num.partitions", ("4", DYNAMIC_DEFAULT))
        _wait_config(two, "2", "auto.create.topics.enable", ("true", DYNAMIC_BROKER))
        assert _describe(one, "1")["auto.create.topics.enable"] == ("false", DYNAMIC_DEFAULT)
        assert _metadata_error(one, unique_name("no"))[0] == "unknown_topic_or_partition"
        auto = unique_name("auto")
        wait_for(lambda: _metadata_error(two, auto) == ("none", 4), 15,
                 "broker 2 to auto-create with 4 partitions")

        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        topic = unique_name("minus-one")
        for fut in admin.create_topics([NewTopic(topic)]).values():  # -1 and -1
            fut.result(15)
        meta = admin.list_topics(topic, timeout=15).topics[topic]
        assert len(meta.partitions) == 4
        assert {len(p.replicas) for p in meta.partitions.values()} == {1}

        # Kafka: a broker takes per-broker changes for itself only.
        with KafkaConnection.to(one.bootstrap) as c:
            r = c.request(44, 1, {"validate_only": False, "resources": [{
                "resource_type": 4, "resource_name": "2", "configs": [{
                    "name": "max.connections", "config_operation": 0, "value": "5"}]}]})
        (res,) = r.responses
        assert res.error_code.name == "invalid_request"
        assert "Unexpected broker id, expected 1, but received 2" in res.error_message

        one.kill()
        one.start()
        assert _describe(one, "1")["auto.create.topics.enable"] == ("false", DYNAMIC_DEFAULT)
        assert _metadata_error(one, unique_name("no"))[0] == "unknown_topic_or_partition"
    finally:
        cluster.kill_all()

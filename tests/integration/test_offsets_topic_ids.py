"""OffsetCommit v10 and OffsetFetch v10 (topics named by id, KIP-848) on a real node, and the
versions real clients commit and fetch offsets with.

Every version ApiVersions advertises for both APIs is asked with kio-built requests: what
one version commits, every version reads back, by name or (v10) by id. An id the node's
metadata does not know is answered UNKNOWN_TOPIC_ID, and so is a deleted topic's id, also
once the topic is created again under its name (with a new id).

A single node behind a recording proxy (it advertises the proxy's address, so every request
goes through it) shows which versions each client sends: Kafka 4.1.1's Java client names
topics by name (its consumer and admin client build both requests for v9 at most), as do
librdkafka 2.12 (v9) and kafka-python 3.0 (v8); all of them commit and read back their
offsets.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kio.schema.errors import ErrorCode

from odradek.broker.kafka.client import KafkaConnection
from tests.fuzz.recording_proxy import ExchangeRecorder, node_behind
from tests.helpers import unique_name
from tests.integration.harness import NodeProcess, wait_for
from tests.integration.test_fetch_topic_ids import create, produce

pytestmark = pytest.mark.integration

COMMIT, FETCH, FIND_COORDINATOR, API_VERSIONS = 8, 9, 10, 18
COMMIT_VERSIONS, FETCH_VERSIONS = (2, 10), (1, 10)
IDS_FROM = 10  # both APIs name topics by id from v10


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ExchangeRecorder]]:
    # v10 is unstable in Kafka 4.1, served only when asked for, as there.
    with node_behind(ExchangeRecorder, tmp_path_factory.mktemp("offset-ids"),
                     {"unstable.api.versions.enable": True}) as proxied:
        yield proxied


def coordinator_ready(c: KafkaConnection, group: str) -> None:
    """Wait until the node coordinates ``group``: the first FindCoordinator creates
    __consumer_offsets, whose partitions then load."""
    def ready() -> bool:
        found = c.request(FIND_COORDINATOR, 3, {"key": group, "key_type": 0})
        if found.error_code is not ErrorCode.none:
            return False
        [g] = c.request(FETCH, 8, {"groups": [{"group_id": group, "topics": None}]}).groups
        return g.error_code is ErrorCode.none
    wait_for(ready, 30, f"the coordinator of {group}")


def topic_ref(version: int, name: str, tid: uuid.UUID) -> dict[str, Any]:
    return {"topic_id": tid} if version >= IDS_FROM else {"name": name}


def commit(c: KafkaConnection, version: int, group: str, name: str, tid: uuid.UUID,
           offsets: dict[int, int]) -> dict[int, ErrorCode]:
    """Commit ``offsets`` (partition -> offset) as a standalone group (no generation);
    each partition's error. The answer names the topic as the request did."""
    data: dict[str, Any] = {
        "group_id": group, "generation_id_or_member_epoch": -1, "member_id": "",
        "topics": [{**topic_ref(version, name, tid), "partitions": [
            {"partition_index": p, "committed_offset": o, "committed_leader_epoch": -1,
             "committed_metadata": f"v{version}"} for p, o in offsets.items()]}]}
    if version <= 4:
        data["retention_time"] = -1
    [topic] = c.request(COMMIT, version, data).topics
    assert (topic.topic_id if version >= IDS_FROM else topic.name) == \
        (tid if version >= IDS_FROM else name), (version, topic)
    return {p.partition_index: p.error_code for p in topic.partitions}


def fetch(c: KafkaConnection, version: int, group: str, name: str, tid: uuid.UUID,
          partitions: list[int]) -> dict[int, tuple[int, ErrorCode]]:
    """The group's committed offsets of ``partitions``: partition -> (offset, error)."""
    asked = [{**topic_ref(version, name, tid), "partition_indexes": partitions}]
    if version >= 8:
        [g] = c.request(FETCH, version, {"groups": [{"group_id": group, "topics": asked}]}).groups
        assert g.error_code is ErrorCode.none, (version, g)
        topics = g.topics
    else:
        r = c.request(FETCH, version, {"group_id": group, "topics": asked})
        assert getattr(r, "error_code", ErrorCode.none) is ErrorCode.none, (version, r)
        topics = r.topics
    [topic] = topics
    assert (topic.topic_id if version >= IDS_FROM else topic.name) == \
        (tid if version >= IDS_FROM else name), (version, topic)
    return {p.partition_index: (p.committed_offset, p.error_code) for p in topic.partitions}


def fetch_all(c: KafkaConnection, version: int, group: str) -> list[Any]:
    [g] = c.request(FETCH, version, {"groups": [{"group_id": group, "topics": None}]}).groups
    assert g.error_code is ErrorCode.none, g
    return list(g.topics)


def test_every_version_commits_and_reads_back(proxied: tuple[str, ExchangeRecorder]) -> None:
    """What each OffsetCommit version (v10 by id) commits, each OffsetFetch version reads
    back, by name or by id, with the committed metadata."""
    bootstrap, _ = proxied
    topic = unique_name("offsets-versions")
    tid = create(bootstrap, topic, 2)
    group = unique_name("offsets-versions")
    with KafkaConnection.to(bootstrap) as c:
        apis = {a.api_key: (a.min_version, a.max_version)
                for a in c.request(API_VERSIONS, 3, {"client_software_name": "t",
                                                     "client_software_version": "1"}).api_keys}
        assert (apis[COMMIT], apis[FETCH]) == (COMMIT_VERSIONS, FETCH_VERSIONS)
        coordinator_ready(c, group)
        for cv in range(COMMIT_VERSIONS[0], COMMIT_VERSIONS[1] + 1):
            wanted = {0: 10 * cv, 1: 10 * cv + 1}
            assert commit(c, cv, group, topic, tid, wanted) == {0: ErrorCode.none,
                                                                1: ErrorCode.none}, cv
            for fv in range(FETCH_VERSIONS[0], FETCH_VERSIONS[1] + 1):
                got = fetch(c, fv, group, topic, tid, [0, 1])
                assert got == {p: (o, ErrorCode.none) for p, o in wanted.items()}, (cv, fv)
        # Fetched by id or by name, the v10 commit is the same offsets, metadata included.
        [by_id] = fetch_all(c, 10, group)
        [by_name] = fetch_all(c, 9, group)
        assert by_id.topic_id == tid and by_name.name == topic
        assert [(p.partition_index, p.committed_offset, p.metadata) for p in by_id.partitions] \
            == [(p.partition_index, p.committed_offset, p.metadata) for p in by_name.partitions] \
            == [(0, 100, "v10"), (1, 101, "v10")]


def test_unknown_and_deleted_topic_ids(proxied: tuple[str, ExchangeRecorder]) -> None:
    """An id the node does not know is UNKNOWN_TOPIC_ID, per partition, for OffsetCommit and
    OffsetFetch v10 alike; so is a deleted topic's id, also after the topic is created again
    under its name, whose new id commits and fetches as any other. A v10 fetch of every
    offset names only topics that exist."""
    bootstrap, _ = proxied
    topic = unique_name("offsets-again")
    group = unique_name("offsets-again")
    old = create(bootstrap, topic, 2)
    unknown = uuid.uuid4()
    with KafkaConnection.to(bootstrap) as c:
        coordinator_ready(c, group)
        assert commit(c, 10, group, topic, old, {0: 5, 1: 6}) == {0: ErrorCode.none,
                                                                  1: ErrorCode.none}
        assert commit(c, 10, group, topic, unknown, {0: 1}) == {0: ErrorCode.unknown_topic_id}
        assert fetch(c, 10, group, topic, unknown, [0, 1]) == {
            0: (-1, ErrorCode.unknown_topic_id), 1: (-1, ErrorCode.unknown_topic_id)}

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([topic])
            wait_for(lambda: topic not in admin.list_topics(), 20, f"{topic} deleted")
        finally:
            admin.close()
        gone = {0: (-1, ErrorCode.unknown_topic_id), 1: (-1, ErrorCode.unknown_topic_id)}
        assert fetch(c, 10, group, topic, old, [0, 1]) == gone
        assert commit(c, 10, group, topic, old, {0: 7}) == {0: ErrorCode.unknown_topic_id}
        assert fetch_all(c, 10, group) == []

        new = create(bootstrap, topic, 2)
        assert new != old
        assert fetch(c, 10, group, topic, old, [0, 1]) == gone
        assert commit(c, 10, group, topic, old, {0: 8}) == {0: ErrorCode.unknown_topic_id}
        assert commit(c, 10, group, topic, new, {0: 9, 1: 10}) == {0: ErrorCode.none,
                                                                   1: ErrorCode.none}
        assert fetch(c, 10, group, topic, new, [0, 1]) == {0: (9, ErrorCode.none),
                                                            1: (10, ErrorCode.none)}
        assert fetch(c, 9, group, topic, new, [0, 1]) == {0: (9, ErrorCode.none),
                                                           1: (10, ErrorCode.none)}
        assert [t.topic_id for t in fetch_all(c, 10, group)] == [new]


def versions(proxy: ExchangeRecorder, label: str) -> dict[str, list[int]]:
    """The OffsetCommit and OffsetFetch versions sent under ``label``, checked answered
    without errors."""
    out = {}
    for api, name, served in ((COMMIT, "OffsetCommit", COMMIT_VERSIONS),
                              (FETCH, "OffsetFetch", FETCH_VERSIONS)):
        seen = proxy.exchanges(label, api, served)
        for v, _, resp in seen:
            assert resp is not None, (label, name, v)
            groups = resp.groups if api == FETCH and v >= 8 else [resp]
            codes = {p.error_code for g in groups for t in g.topics for p in t.partitions}
            assert codes <= {ErrorCode.none}, (label, name, v, resp)
        out[name] = sorted({v for v, _, _ in seen})
    print(f"{label}: {out}")
    return out


def test_clients_commit_and_fetch_offsets(proxied: tuple[str, ExchangeRecorder]) -> None:
    """kafka-python, librdkafka (confluent-kafka) and Kafka 4.1.1's Java console consumer
    (with kafka-consumer-groups reading its offsets back) each commit the offsets they
    consumed to and read them back; the versions they send are recorded."""
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTopicPartition

    from tests.compat.kafka_tools import CONSOLE_CONSUMER, CONSUMER_GROUPS, kafka_tools

    bootstrap, proxy = proxied
    topic = unique_name("offsets-clients")
    create(bootstrap, topic, 2)
    values = [f"c{i}" for i in range(20)]
    produce(bootstrap, topic, values, 2)
    end = {0: 10, 1: 10}

    label = proxy.label = f"{topic}-kafka-python"
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=label,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    assert sorted(m.value.decode() for m in consumer) == sorted(values)
    consumer.commit()
    assert {p: consumer.committed(TopicPartition(topic, p)) for p in end} == end
    consumer.close()
    kafka_python = versions(proxy, label)

    label = proxy.label = f"{topic}-librdkafka"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": label,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: list[str] = []
    deadline = time.monotonic() + 30
    while len(got) < len(values) and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value().decode())
    assert sorted(got) == sorted(values)
    c.commit(asynchronous=False)
    committed = c.committed([CTopicPartition(topic, p) for p in end], timeout=10)
    c.close()
    assert {tp.partition: tp.offset for tp in committed} == end
    librdkafka = versions(proxy, label)

    tools = kafka_tools(bootstrap)  # skips by hand without Java; CI installs it
    group = f"{topic}-java"
    label = proxy.label = f"{group}-consumer"
    r = tools.run(CONSOLE_CONSUMER, "--topic", topic, "--group", group, "--from-beginning",
                  "--timeout-ms", "5000")
    assert sorted(r.stdout.split()) == sorted(values), r
    java_consumer = versions(proxy, label)
    label = proxy.label = f"{group}-admin"
    out = tools.ok(CONSUMER_GROUPS, "--describe", "--group", group)
    rows = {int(row[2]): row[3] for row in (line.split() for line in out.splitlines())
            if row[:2] == [group, topic]}
    assert rows == {p: str(o) for p, o in end.items()}, out
    java_admin = versions(proxy, label)
    assert java_admin["OffsetFetch"]

    # Which client uses what (docs/compatibility.md says the same): none of them names
    # topics by id, so v10 is asked only by clients that know topic ids (the kio requests
    # of the tests above).
    for name, seen in (("kafka-python", kafka_python), ("librdkafka", librdkafka),
                       ("java consumer", java_consumer)):
        assert seen["OffsetCommit"] and seen["OffsetFetch"], (name, seen)
    for name, seen in (("kafka-python", kafka_python), ("librdkafka", librdkafka),
                       ("java consumer", java_consumer), ("java admin", java_admin)):
        assert max(seen["OffsetCommit"] + seen["OffsetFetch"]) < IDS_FROM, (name, seen)


def test_v10_is_not_advertised_by_default(shared_node: NodeProcess) -> None:
    """As on Kafka 4.1.1, whose default ApiVersions answer stops at v9 for both."""
    with KafkaConnection.to(shared_node.bootstrap) as c:
        apis = {a.api_key: (a.min_version, a.max_version)
                for a in c.request(API_VERSIONS, 3, {"client_software_name": "t",
                                                     "client_software_version": "1"}).api_keys}
    assert (apis[COMMIT], apis[FETCH]) == ((2, 9), (1, 9))

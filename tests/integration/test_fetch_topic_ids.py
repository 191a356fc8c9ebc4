"""Fetch v13+ (topics by id, KIP-516) with real clients and on the wire.

A single node behind a recording proxy (it advertises the proxy's address, so every request
of every client goes through it) shows which Fetch version each client negotiates with us
and what it sends: Kafka 4.1.1's Java consumer and librdkafka fetch by topic id, kafka-python
and aiokafka (which stop at v12) by name, and all of them consume. The Java consumer keeps
consuming through its fetch session when the topic it reads is deleted and created again
under its name. On a three-node cluster, a broker that does not lead a partition answers a
v16 fetch with the leader's address (KIP-951), and followers replicate at v18 (their broker
epoch checked before they rejoin the ISR after a restart, KIP-903)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError
from kio.schema.errors import ErrorCode

from odradek.broker.kafka.client import KafkaConnection
from tests.fuzz.recording_proxy import ExchangeRecorder, node_behind
from tests.helpers import unique_name
from tests.integration.harness import Cluster, NodeProcess, wait_for

pytestmark = pytest.mark.integration

FETCH = 1


class FetchRecorder(ExchangeRecorder):
    def fetches(self, label: str) -> list[tuple[int, Any, Any]]:
        """(version, request, response or None) of each Fetch sent under ``label``."""
        return self.exchanges(label, FETCH, (4, 18))


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FetchRecorder]]:
    with node_behind(FetchRecorder, tmp_path_factory.mktemp("ids")) as proxied:
        yield proxied


def create(bootstrap: str, topic: str, partitions: int = 1, replicas: int = 1) -> uuid.UUID:
    """Create ``topic`` (retrying while a deleted topic of that name is still going away);
    its topic id."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        def created() -> bool:
            try:
                admin.create_topics([NewTopic(topic, partitions, replicas)])
                return True
            except TopicAlreadyExistsError:
                return False
        wait_for(created, 20, f"{topic} created")

        def described() -> Any:
            [t] = admin.describe_topics([topic])
            ready = len(t["partitions"]) == partitions and all(
                p["leader_id"] >= 0 and len(p["isr_nodes"]) == replicas for p in t["partitions"])
            return t if ready else None
        return uuid.UUID(str(wait_for(described, 30, f"{topic} ready")["topic_id"]))
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, values: list[str], partitions: int = 1) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i, v in enumerate(values):
            p.send(topic, v.encode(), partition=i % partitions)
        p.flush(10)
    finally:
        p.close()


def topics_named(request: Any, version: int) -> set[Any]:
    return {t.topic_id if version >= 13 else t.topic for t in request.topics}


def test_librdkafka_fetches_by_topic_id(proxied: tuple[str, FetchRecorder]) -> None:
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTopicPartition

    bootstrap, proxy = proxied
    topic = unique_name("ids-rdk")
    tid = create(bootstrap, topic, 3)
    values = [f"r{i}" for i in range(30)]
    produce(bootstrap, topic, values, 3)
    proxy.label = topic
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic,
                  "enable.auto.commit": False})
    c.assign([CTopicPartition(topic, i, 0) for i in range(3)])
    got: list[str] = []
    deadline = time.monotonic() + 20
    while len(got) < len(values) and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value().decode())
    c.close()
    assert sorted(got) == sorted(values)
    fetches = proxy.fetches(topic)
    versions = {v for v, _, _ in fetches}
    print(f"librdkafka fetched with Fetch {sorted(versions)}, session epochs "
          f"{sorted({req.session_epoch for _, req, _ in fetches})}")
    # librdkafka 2.12 asks for v16 (its highest); it names topics by id from v13.
    assert fetches and min(versions) >= 13, versions
    assert all(topics_named(req, v) <= {tid} for v, req, _ in fetches)
    assert any(resp is not None and any(p.records for t in resp.responses
                                        for p in t.partitions) for _, _, resp in fetches)


def test_java_consumer_fetches_by_topic_id_through_a_session(
        proxied: tuple[str, FetchRecorder]) -> None:
    from tests.compat.kafka_tools import CONSOLE_CONSUMER, kafka_tools

    bootstrap, proxy = proxied
    tools = kafka_tools(bootstrap)  # skips by hand without Java; CI installs it
    topic = unique_name("ids-java")
    tid = create(bootstrap, topic, 4)
    values = [f"j{i}" for i in range(40)]
    produce(bootstrap, topic, values, 4)
    proxy.label = topic
    result = tools.run(CONSOLE_CONSUMER, "--topic", topic, "--from-beginning",
                       "--timeout-ms", "5000")
    assert sorted(result.stdout.split()) == sorted(values), result
    fetches = proxy.fetches(topic)
    # Kafka 4.1.1's highest Fetch is v18, as ours.
    assert {v for v, _, _ in fetches} == {18}
    assert all(topics_named(req, v) <= {tid} for v, req, _ in fetches)
    # Incremental requests of one session, answered without errors.
    assert any(req.session_epoch > 0 and req.session_id != 0 for _, req, _ in fetches)
    answered = [resp for _, _, resp in fetches if resp is not None]
    assert answered and all(resp.error_code == ErrorCode.none for resp in answered)
    assert {t.topic_id for resp in answered for t in resp.responses} == {tid}


def test_clients_without_topic_ids_still_fetch_by_name(
        proxied: tuple[str, FetchRecorder]) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as ATopicPartition

    bootstrap, proxy = proxied
    topic = unique_name("ids-names")
    create(bootstrap, topic, 2)
    values = [f"n{i}" for i in range(20)]
    produce(bootstrap, topic, values, 2)

    proxy.label = f"{topic}-kafka-python"
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    consumer.assign([TopicPartition(topic, i) for i in range(2)])
    got = [m.value.decode() for m in consumer]
    consumer.close()
    assert sorted(got) == sorted(values)

    proxy.label = f"{topic}-aiokafka"

    async def aio() -> list[str]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
        await c.start()
        try:
            c.assign([ATopicPartition(topic, i) for i in range(2)])
            out: list[str] = []
            deadline = time.monotonic() + 15
            while len(out) < len(values) and time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    out += [m.value.decode() for m in msgs]
            return out
        finally:
            await c.stop()

    assert sorted(asyncio.run(aio())) == sorted(values)
    for client in ("kafka-python", "aiokafka"):
        fetches = proxy.fetches(f"{topic}-{client}")
        versions = {v for v, _, _ in fetches}
        print(f"{client} fetched with Fetch {sorted(versions)}")
        assert fetches and max(versions) <= 12, (client, versions)
        assert all(topics_named(req, v) <= {topic} for v, req, _ in fetches)


def test_java_consumer_follows_its_topic_deleted_and_created_again(
        proxied: tuple[str, FetchRecorder]) -> None:
    """The consumer reads a0..a4 through a v18 session; the topic is deleted and created
    again under its name (a new id) and b0..b4 written. As with Apache Kafka, the broker
    answers the session's old id UNKNOWN_TOPIC_OR_PARTITION while the topic is gone and
    INCONSISTENT_TOPIC_ID once the name has another id. The consumer learns the new id from
    Metadata and replaces the old id by the new one (while its metadata has no id for the
    name it fetches by name, v12, which the broker refuses in a session opened by id with
    FETCH_SESSION_TOPIC_ID_ERROR, and the client opens another session); told its position
    is out of range in the new topic, it resets to its start: it prints all ten values."""
    from tests.compat.kafka_tools import CONSOLE_CONSUMER, kafka_tools

    bootstrap, proxy = proxied
    tools = kafka_tools(bootstrap)
    topic = unique_name("ids-again")
    old = create(bootstrap, topic)
    produce(bootstrap, topic, [f"a{i}" for i in range(5)])
    proxy.label = topic
    result: list[Any] = []
    run = threading.Thread(target=lambda: result.append(tools.run(
        CONSOLE_CONSUMER, "--topic", topic, "--partition", "0", "--offset", "earliest",
        "--consumer-property", "auto.offset.reset=earliest",
        # The consumer's own metadata requests must not create the topic again.
        "--consumer-property", "allow.auto.create.topics=false",
        "--max-messages", "10", "--timeout-ms", "30000", timeout=90)))
    run.start()
    try:
        # Delete once the consumer's session has moved past a0..a4.
        wait_for(lambda: any(req.session_epoch > 0 and any(
            t.topic_id == old and p.fetch_offset == 5 for t in req.topics
            for p in t.partitions) for _, req, _ in proxy.fetches(topic)),
            60, "the Java consumer read a0..a4")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()
        new = create(bootstrap, topic)
        assert new != old
        produce(bootstrap, topic, [f"b{i}" for i in range(5)])
    finally:
        run.join(120)
    assert result, "the console consumer did not finish"
    assert result[0].stdout.split() == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)], \
        result[0]
    fetches = proxy.fetches(topic)
    answered = [(v, req, resp) for v, req, resp in fetches if resp is not None]
    # The broker's answers to the session's old id, then to the new one.
    old_errors = {p.error_code for v, _, resp in answered if v >= 13
                  for t in resp.responses if t.topic_id == old for p in t.partitions}
    assert old_errors & {ErrorCode.unknown_topic_or_partition,
                         ErrorCode.inconsistent_topic_id}, old_errors
    assert any(p.records for v, _, resp in answered if v >= 13 for t in resp.responses
               if t.topic_id == new for p in t.partitions)
    # While the topic has no id in its metadata the Java client fetches it by name (v12):
    # a session is continued only by requests of its own kind, as in Kafka; the client
    # then opens a new session.
    kinds: dict[int, bool] = {}  # session id -> opened by a request naming topics by id
    for v, req, resp in answered:
        if req.session_epoch == 0 and resp.session_id:
            kinds[resp.session_id] = v >= 13
        elif req.session_epoch > 0 and req.session_id in kinds:
            mixed = kinds[req.session_id] != (v >= 13)
            assert (resp.error_code == ErrorCode.fetch_session_topic_id_error) == mixed, \
                (v, req, resp)


# --- three nodes --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("ids3") / "c3", 3,
                overrides={"replica.lag.time.max.ms": 3000}).start()
    try:
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.kill_all()


def describe(c: Cluster, topic: str) -> dict[str, Any]:
    """``topic`` as a live broker describes it (one that knows it already)."""
    live = ",".join(n.bootstrap for n in c.nodes if n.alive())
    admin = KafkaAdminClient(bootstrap_servers=live)
    try:
        def known() -> Any:
            [t] = admin.describe_topics([topic])
            return t if t["partitions"] else None
        return wait_for(known, 20, f"{topic} described")
    finally:
        admin.close()


def test_a_broker_that_does_not_lead_names_the_leader_from_v16(cluster: Cluster) -> None:
    topic = unique_name("ids-hint")
    tid = create(cluster.bootstrap, topic, 1, 3)
    [p] = describe(cluster, topic)["partitions"]
    leader = p["leader_id"]
    other = next(n for n in cluster.nodes if n.node_id != leader)
    partition = {"partition": 0, "current_leader_epoch": -1, "fetch_offset": 0,
                 "last_fetched_epoch": -1, "log_start_offset": -1,
                 "partition_max_bytes": 1 << 20}
    with KafkaConnection.to(other.bootstrap) as conn:
        for version in (15, 16, 18):
            resp = conn.request(FETCH, version, {
                "replica_id": -1, "max_wait": 0, "min_bytes": 1, "session_id": 0,
                "session_epoch": -1, "forgotten_topics_data": [],
                "topics": [{"topic_id": tid, "partitions": [partition]},
                           {"topic_id": uuid.uuid4(), "partitions": [partition]}]})
            [named, unknown] = resp.responses
            assert (named.topic_id, named.partitions[0].error_code) \
                == (tid, ErrorCode.not_leader_or_follower)
            assert unknown.partitions[0].error_code == ErrorCode.unknown_topic_id
            if version < 16:
                assert named.partitions[0].current_leader.leader_id == -1
                continue
            hint = named.partitions[0].current_leader
            assert (hint.leader_id, hint.leader_epoch) == (leader, p["leader_epoch"])
            [endpoint] = resp.node_endpoints
            assert (endpoint.node_id, f"{endpoint.host}:{endpoint.port}") \
                == (leader, cluster.node(leader).bootstrap)


def fetch_versions(node: NodeProcess) -> set[int]:
    """The Fetch versions a broker's follower fetchers logged they use."""
    return {int(v) for v in re.findall(r"with Fetch v(\d+)", node.logs(1 << 30))}


def test_followers_replicate_by_topic_id_and_rejoin_the_isr_after_a_restart(
        cluster: Cluster) -> None:
    """Followers fetch at v18 (the log says so); a follower killed and started again
    registers with a new broker epoch, which its fetches carry (KIP-903): the leader takes
    it back into the ISR."""
    topic = unique_name("ids-isr")
    create(cluster.bootstrap, topic, 1, 3)
    [p] = describe(cluster, topic)["partitions"]
    follower = next(r for r in p["replica_nodes"] if r != p["leader_id"])
    cluster.node(follower).kill()
    wait_for(lambda: follower not in describe(cluster, topic)["partitions"][0]["isr_nodes"],
             30, f"broker {follower} out of the ISR")
    produce(",".join(n.bootstrap for n in cluster.nodes if n.alive()), topic,
            [f"x{i}" for i in range(10)])
    cluster.node(follower).start()
    wait_for(lambda: sorted(describe(cluster, topic)["partitions"][0]["isr_nodes"])
             == sorted(p["replica_nodes"]), 30, f"broker {follower} back in the ISR")
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    consumer.assign([TopicPartition(topic, 0)])
    assert [m.value for m in consumer] == [f"x{i}".encode() for i in range(10)]
    consumer.close()
    # Every follower of the topic fetched at v18, and no broker at any other version (a
    # broker that leads all it hosts fetches from no one).
    logged = {n.node_id: fetch_versions(n) for n in cluster.nodes}
    assert all(logged[r] == {18} for r in p["replica_nodes"] if r != p["leader_id"]), logged
    assert set().union(*logged.values()) == {18}, logged

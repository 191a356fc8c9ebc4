"""Fetch sessions (KIP-227) on a real three-node cluster: kafka-python's consumer opens
sessions and consumes across many partitions and through a leader change, librdkafka's
sessionless fetches still work, and idle followers of many partitions send requests that
name almost none of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tests.helpers import unique_name
from tests.integration.harness import Cluster, metric, scrape, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("fs") / "c3", 3,
                overrides={"replica.lag.time.max.ms": 3000,
                           "leader.imbalance.check.interval.seconds": 2}).start()
    try:
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.kill_all()


def create(c: Cluster, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 3)])
        wait_for(lambda: all(len(p["isr_nodes"]) == 3 for p in
                             admin.describe_topics([topic])[0]["partitions"])
                 and len(admin.describe_topics([topic])[0]["partitions"]) == partitions,
                 30, f"{topic} fully replicated")
    finally:
        admin.close()


def leaders(c: Cluster, topic: str) -> dict[int, int]:
    live = ",".join(n.bootstrap for n in c.nodes if n.alive())
    admin = KafkaAdminClient(bootstrap_servers=live)
    try:
        return {p["partition_index"]: p["leader_id"] for p in
                admin.describe_topics([topic])[0]["partitions"]}
    finally:
        admin.close()


def produce(c: Cluster, topic: str, records: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    """(partition, offset) of each record, written with acks=all."""
    p = KafkaProducer(bootstrap_servers=c.bootstrap, acks="all", linger_ms=5)
    try:
        futures = [p.send(topic, value=v, partition=part) for part, v in records]
        p.flush()
        return [(f.get(10).partition, f.get(10).offset) for f in futures]
    finally:
        p.close()


def consume(consumer: Any, want: int, timeout: float) -> list[tuple[int, int, bytes]]:
    got: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        for tp, msgs in consumer.poll(timeout_ms=200).items():
            got += [(tp.partition, m.offset, m.value) for m in msgs]
    return got


def sessions_in_use(consumer: Any) -> list[tuple[int, int]]:
    """(session id, epoch) of each broker kafka-python's fetcher holds a session with."""
    handlers = consumer._fetcher._session_handlers  # kafka-python's FetchSessionHandlers
    return [(h.next_metadata.session_id, h.next_metadata.epoch) for h in handlers.values()
            if h.next_metadata.session_id != 0]


def test_kafka_python_consumes_many_partitions_through_sessions(cluster: Cluster) -> None:
    topic = unique_name("fs-many")
    create(cluster, topic, 30)
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, fetch_max_wait_ms=200)
    try:
        consumer.assign([TopicPartition(topic, i) for i in range(30)])
        assert consumer.poll(timeout_ms=1000) == {}
        # Data in only a few partitions: the others stay silent in incremental answers.
        acked = produce(cluster, topic, [(p, f"{p}-{i}".encode()) for p in (2, 17, 29)
                                         for i in range(50)])
        got = consume(consumer, 150, 20)
        acked += produce(cluster, topic, [(5, f"5-{i}".encode()) for i in range(20)])
        got += consume(consumer, 20, 20)
        assert sorted((p, o) for p, o, _ in got) == sorted(acked)
        assert {v for _, _, v in got} == {f"{p}-{i}".encode() for p in (2, 17, 29)
                                          for i in range(50)} | {f"5-{i}".encode()
                                                                 for i in range(20)}
        # The consumer really fetched incrementally: the brokers gave it sessions, and it
        # has sent requests past the first of each (epoch > 1).
        in_use = sessions_in_use(consumer)
        assert in_use and all(sid > 0 for sid, _ in in_use)
        assert max(epoch for _, epoch in in_use) > 1, in_use
        assert sum(metric(n, "odradek_fetch_sessions") for n in cluster.nodes) >= len(in_use)
    finally:
        consumer.close()


def _replica_fetch(c: Cluster) -> dict[str, float]:
    out = {}
    for name in ("requests", "partitions", "request_bytes"):
        for kind in ("full", "incremental"):
            out[f"{name}.{kind}"] = sum(metric(n, f"odradek_replica_fetch_{name}_total",
                                               f'kind="{kind}"') for n in c.nodes)
    return out


def test_idle_followers_of_many_partitions_name_almost_none(cluster: Cluster) -> None:
    topic = unique_name("fs-idle")
    create(cluster, topic, 200)
    time.sleep(1)

    def quiet_window() -> dict[str, float] | None:
        """Counts of one 2 s window in which the followers named (next to) no partition;
        None while leaderships still move (a leadership that moves is named twice: forgotten
        by one fetcher, added to another)."""
        before = _replica_fetch(cluster)
        time.sleep(2)
        after = _replica_fetch(cluster)
        d = {k: after[k] - before[k] for k in after}
        d["full_bytes"] = after["request_bytes.full"] / max(1, after["requests.full"])
        requests = d["requests.incremental"]
        ok = requests >= 8 and d["requests.full"] == 0 \
            and d["partitions.incremental"] / requests < 1 \
            and d["request_bytes.incremental"] / requests < 100
        return d if ok else None

    # Six fetchers (each broker from each other) long-poll 500 ms: some 20 requests in 2 s,
    # all incremental, naming nothing and a few dozen bytes each, where a sessionless
    # request named all 200 partitions of this topic and every other followed partition
    # (some 33 bytes each).
    d = wait_for(quiet_window, 20, "a window of idle incremental follower fetches",
                 interval=0)
    print(f"follower fetch: full requests {d['full_bytes']:.0f} B on average (sent before "
          f"the topic existed); idle "
          f"incremental requests "
          f"{d['request_bytes.incremental'] / d['requests.incremental']:.0f} B, "
          f"{d['partitions.incremental'] / d['requests.incremental']:.2f} partitions named")
    # Replication still works: acks=all writes to a few partitions are acknowledged (the
    # ISR has them) and every replica holds them.
    acked = produce(cluster, topic, [(p, b"x" * 100) for p in (0, 77, 199) for _ in range(10)])
    assert len(acked) == 30

    def log_ends(node: Any) -> dict[str, float]:
        out = {}
        for line in scrape(node).splitlines():
            if line.startswith("odradek_log_end_offset{") and f'topic="{topic}"' in line:
                part = line.split('partition="', 1)[1].split('"', 1)[0]
                out[part] = float(line.rsplit(" ", 1)[1])
        return out

    def replicated() -> bool:
        ends = [log_ends(n) for n in cluster.nodes]
        return all(len(e) == 200 and all(e[p] == (10 if p in ("0", "77", "199") else 0)
                                          for p in e) for e in ends)

    wait_for(replicated, 15, "the writes on every replica")


def test_leader_change_mid_consumption_loses_and_repeats_nothing(cluster: Cluster) -> None:
    topic = unique_name("fs-move")
    create(cluster, topic, 6)
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, fetch_max_wait_ms=200)
    consumer.assign([TopicPartition(topic, i) for i in range(6)])
    got: list[tuple[int, int, bytes]] = []
    acked: list[tuple[int, int]] = []
    stop = threading.Event()

    def write() -> None:
        p = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", retries=20,
                          retry_backoff_ms=200, request_timeout_ms=5000)
        i = 0
        while not stop.is_set():
            futures = [p.send(topic, value=f"v{i}-{k}".encode(), partition=k % 6)
                       for k in range(12)]
            for f in futures:
                try:
                    md = f.get(15)
                    acked.append((md.partition, md.offset))
                except Exception:  # noqa: BLE001 - unacknowledged writes may be lost
                    pass
            i += 1
            time.sleep(0.05)
        p.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        got += consume(consumer, 60, 10)
        victim = leaders(cluster, topic)[0]
        cluster.node(victim).kill()
        got += consume(consumer, len(got) + 60, 8)
        cluster.node(victim).start()
        got += consume(consumer, len(got) + 60, 6)
    finally:
        stop.set()
        writer.join(60)
    try:
        wait_for(lambda: (got.extend(consume(consumer, 1, 0.5)) or True)
                 and set(acked) <= {(p, o) for p, o, _ in got}, 30,
                 "every acknowledged record consumed")
        consumer_positions = [(p, o) for p, o, _ in got]
        # Nothing consumed twice: a session reset never replays records.
        assert len(consumer_positions) == len(set(consumer_positions))
        assert len(acked) > 100
    finally:
        consumer.close()


def test_librdkafka_sessionless_fetches_still_work(cluster: Cluster) -> None:
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTopicPartition

    topic = unique_name("fs-cf")
    create(cluster, topic, 8)
    acked = produce(cluster, topic, [(p, f"{p}-{i}".encode()) for p in (1, 6)
                                     for i in range(40)])
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": topic,
                  "enable.auto.commit": False})
    c.assign([CTopicPartition(topic, i, 0) for i in range(8)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 80 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append((msg.partition(), msg.offset()))
    c.close()
    assert sorted(got) == sorted(acked)


def test_java_console_consumer_opens_a_session(cluster: Cluster) -> None:
    """Kafka 4.1.1's own consumer (kafka-console-consumer) fetches through a session."""
    from tests.compat.kafka_tools import CONSOLE_CONSUMER, kafka_tools

    tools = kafka_tools(cluster.bootstrap)  # skips by hand without Java; CI installs it
    topic = unique_name("fs-java")
    create(cluster, topic, 12)
    produce(cluster, topic, [(p, f"{p}".encode()) for p in range(12)])
    sessions = sum(metric(n, "odradek_fetch_sessions") for n in cluster.nodes)
    result: list[Any] = []
    run = threading.Thread(target=lambda: result.append(tools.run(
        CONSOLE_CONSUMER, "--topic", topic, "--from-beginning", "--timeout-ms", "6000")))
    run.start()
    peak = sessions
    while run.is_alive():
        peak = max(peak, sum(metric(n, "odradek_fetch_sessions") for n in cluster.nodes))
        time.sleep(0.3)
    run.join()
    assert result and "Processed a total of 12 messages" in result[0].stderr, result
    assert peak > sessions

"""Pipelined produce (broker/server.py, _PIPELINED_PRODUCE_MAX): once an acks=all Produce's
records are appended, its connection reads and handles the next request while the first
waits for its replicas; records are appended and answers sent in request order, and any
other request waits for the answers before it.

A raw protocol client sends several requests before reading any answer, as librdkafka and
the Java producer do with max.in.flight > 1. With a follower paused (SIGSTOP: it stays in
the ISR for replica.lag.time.max.ms, 30 s), every acks=all Produce waits out its timeout (3 s):
two of them answered one after the other would take two timeouts, pipelined they take one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode

from odradek.broker.kafka import codec
from odradek.broker.kafka.client import KafkaConnection
from odradek.storage.records import Record, decode_batches, encode_batch
from tests.helpers import unique_name
from tests.integration.harness import Cluster, NodeProcess, metric, wait_for

pytestmark = pytest.mark.integration

PRODUCE, FETCH, API_VERSIONS = 0, 1, 18
# Answered one after the other, two Produce requests take two timeouts (6 s); pipelined,
# one and a little (3.2 s here). The bound between leaves room for a loaded machine.
TIMEOUT_MS = 3_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # A long session: the paused follower must stay registered (and in the ISR) throughout.
    c = Cluster(tmp_path_factory.mktemp("pipelined"), n=3, overrides={
        "broker.session.timeout.ms": 20_000,
        "auto.leader.rebalance.enable": False,
    }).start()
    yield c
    c.kill_all()


def two_replica_topic(cluster: Cluster) -> tuple[str, NodeProcess, NodeProcess]:
    """A 1-partition topic on two nodes that are not the active controller: (topic,
    leader, follower), its ISR full."""
    leader, follower = [n for n in cluster.all_nodes()
                        if metric(n, "odradek_controller_active") == 0][:2]
    topic = unique_name("pipelined")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, replica_assignment=[
            [leader.node_id, follower.node_id]])]).values():
        fut.result(30)
    wait_for(lambda: (p := admin.list_topics(topic, timeout=5).topics[topic].partitions[0])
             and p.leader == leader.node_id and len(p.isrs) == 2, 20, "a full ISR")
    return topic, leader, follower


def produce_frame(topic: str, value: bytes, correlation_id: int) -> bytes:
    body = codec.build_request(PRODUCE, 9, {
        "transactional_id": None, "acks": -1, "timeout": TIMEOUT_MS,
        "topic_data": [{"name": topic, "partition_data": [
            {"index": 0, "records": encode_batch([Record(0, value=value)])}]}]})
    return bytes(codec.encode_request(body, correlation_id, "pipelined"))


def answers(c: KafkaConnection, kinds: list[int], started: float
            ) -> list[tuple[int, float, Any]]:
    """(correlation id, seconds since ``started``, body) of the next answers, which must
    answer requests of ``kinds`` (their API keys, v9 Produce or v3 ApiVersions) in order."""
    out = []
    for api_key in kinds:
        got_id, body = codec.decode_response(c.read_frame(), api_key,
                                             9 if api_key == PRODUCE else 3)
        out.append((got_id, time.monotonic() - started, body))
    return out


def test_acks_all_produces_on_one_connection_wait_together(cluster: Cluster) -> None:
    topic, leader, follower = two_replica_topic(cluster)
    follower.pause()
    try:
        with KafkaConnection.to(leader.bootstrap, timeout=30) as c:
            started = time.monotonic()
            c.send_raw(produce_frame(topic, b"first", 1) + produce_frame(topic, b"second", 2)
                       + bytes(codec.encode_request(
                           codec.build_request(API_VERSIONS, 3, {
                               "client_software_name": "t", "client_software_version": "1"}),
                           3, "pipelined")))
            got = answers(c, [PRODUCE, PRODUCE, API_VERSIONS], started)
    finally:
        follower.resume()
    assert [g[0] for g in got] == [1, 2, 3], got  # in request order
    for _, _, body in got[:2]:
        assert body.responses[0].partition_responses[0].error_code == \
            ErrorCode.request_timed_out
    # Both waited out one timeout together: one after the other would take two.
    assert TIMEOUT_MS / 1000 <= got[1][1] < 1.6 * TIMEOUT_MS / 1000, got
    assert got[2][1] >= got[1][1]  # the ApiVersions answer waited for theirs
    # Appended in request order, and committed once the follower is back.
    with KafkaConnection.to(leader.bootstrap, timeout=30) as c:
        values = wait_for(lambda: committed_values(c, topic), 20, "both records committed")
    assert values == [b"first", b"second"]


def test_answers_and_offsets_follow_the_request_order(cluster: Cluster) -> None:
    topic, leader, _ = two_replica_topic(cluster)
    n = 40  # more than a connection's pipelined limit (16): the rest wait their turn
    with KafkaConnection.to(leader.bootstrap, timeout=30) as c:
        started = time.monotonic()
        c.send_raw(b"".join(produce_frame(topic, b"%d" % i, i + 1) for i in range(n)))
        got = answers(c, [PRODUCE] * n, started)
        assert [g[0] for g in got] == list(range(1, n + 1))
        parts = [body.responses[0].partition_responses[0] for _, _, body in got]
        assert all(p.error_code == ErrorCode.none for p in parts), parts
        assert [p.base_offset for p in parts] == list(range(n))
        assert wait_for(lambda: committed_values(c, topic, n), 20, "all committed") == [
            b"%d" % i for i in range(n)]


def committed_values(c: KafkaConnection, topic: str, count: int = 2) -> list[bytes] | None:
    """The values of the partition's committed records (read_committed is not needed: a
    consumer's fetch reads up to the high watermark), once there are ``count``."""
    r = c.request(FETCH, 4, {
        "replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": 1 << 20,
        "isolation_level": 0, "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]}]})
    p = r.responses[0].partitions[0]
    if p.high_watermark < count:
        return None
    return [rec.value or b"" for _, records in decode_batches(bytes(p.records or b""))
            for rec in records]

"""Zero-copy Fetch (broker/splice.py) with real processes and clients: consumers read
multi-segment logs byte for byte across segment boundaries, answers on one connection stay
in request order, a reader that stops reading holds nobody else up and can go away
mid-answer, a segment deleted while its answer is in flight is still sent whole, and a
follower replicates through the same path."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tests.bench.raw_fetch import FETCH, FETCH_VERSION, Conn, _fetch_body, walk_batches
from tests.helpers import read_frame, unique_name
from tests.integration.harness import Cluster, NodeProcess, metric, wait_for

pytestmark = pytest.mark.integration

SEGMENT = 1 << 20  # the smallest segment.bytes Kafka accepts: several segments per log
RECORDS_PER_PARTITION = 400


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path_factory.mktemp("zc")).start()
    try:
        yield n
    except BaseException:
        print(n.logs())
        raise
    finally:
        n.kill()


def _create(bootstrap: str, topic: str, partitions: int, rf: int = 1,
            segment: int = SEGMENT) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, rf,
                                      topic_configs={"segment.bytes": str(segment)})])
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, partitions: int,
             per_partition: int = RECORDS_PER_PARTITION
             ) -> dict[int, list[tuple[bytes, bytes]]]:
    """Random 2-20 KiB values, acks=all; what each partition holds, in order."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                      batch_size=256 * 1024, max_request_size=8 << 20)
    sent: dict[int, list[tuple[bytes, bytes]]] = {i: [] for i in range(partitions)}
    for part in range(partitions):
        for i in range(per_partition):
            key, value = f"k{part}-{i}".encode(), os.urandom(2048 + (i * 7919) % 18000)
            p.send(topic, key=key, value=value, partition=part)
            sent[part].append((key, value))
    p.flush(60)
    p.close()
    return sent


@pytest.fixture(scope="module")
def topic(node: NodeProcess) -> tuple[str, dict[int, list[tuple[bytes, bytes]]]]:
    name = unique_name("zc")
    _create(node.bootstrap, name, 2)
    return name, _produce(node.bootstrap, name, 2)


def _segments(node: NodeProcess, topic: str, partition: int) -> list[Path]:
    return sorted((node.data_dir / "logs" / f"{topic}-{partition}").glob("*.log"))


def test_consumers_read_what_was_produced_across_segments(
        node: NodeProcess, topic: tuple[str, dict[int, list[tuple[bytes, bytes]]]]) -> None:
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTopicPartition

    name, sent = topic
    assert all(len(_segments(node, name, p)) >= 3 for p in sent)
    before = metric(node, "odradek_zero_copy_bytes_total")

    c = KafkaConsumer(bootstrap_servers=node.bootstrap, enable_auto_commit=False,
                      max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20,
                      auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    c.assign([TopicPartition(name, p) for p in sent])
    got: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in sent}
    for m in c:
        got[m.partition].append((m.key, m.value))
        if sum(map(len, got.values())) == sum(map(len, sent.values())):
            break
    c.close()
    assert got == sent

    cc = Consumer({"bootstrap.servers": node.bootstrap, "group.id": unique_name("g"),
                   "enable.auto.commit": False, "fetch.max.bytes": 16 << 20,
                   "max.partition.fetch.bytes": 4 << 20})
    cc.assign([CTopicPartition(name, p, 0) for p in sent])
    cgot: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in sent}
    deadline = time.monotonic() + 60
    while sum(map(len, cgot.values())) < sum(map(len, sent.values())) \
            and time.monotonic() < deadline:
        for m in cc.consume(1000, timeout=1.0):
            assert m.error() is None, m.error()
            cgot[m.partition()].append((m.key(), m.value()))
    cc.close()
    assert cgot == sent
    # Both read through the zero-copy path (each log, twice).
    total = sum(len(k) + len(v) for recs in sent.values() for k, v in recs)
    assert metric(node, "odradek_zero_copy_bytes_total") - before >= 2 * total


def _raw(node: NodeProcess, rcvbuf: int | None = None) -> Conn:
    conn = Conn(node.bootstrap, 64 << 20)
    if rcvbuf is not None:
        # Set after connecting the window is already offered; a small buffer still stops
        # the broker's send within a few hundred KiB.
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    return conn


def _request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    head = struct.pack(">hhi", api_key, version, correlation_id) + struct.pack(">h", 1) + b"t"
    return struct.pack(">i", len(head) + len(body)) + head + body


def _all_records(answer: bytes) -> dict[int, bytes]:
    """Each partition's records in a one-topic Fetch v4 answer (after the correlation
    id); every length field must add up to the frame's size."""
    pos = 4 + 4  # throttle, topics
    (name_len,) = struct.unpack_from(">h", answer, pos)
    pos += 2 + name_len
    (n_parts,) = struct.unpack_from(">i", answer, pos)
    pos += 4
    out = {}
    for _ in range(n_parts):
        (index,) = struct.unpack_from(">i", answer, pos)
        pos += 4 + 2 + 16  # index, error, hw, lso
        (n_aborted,) = struct.unpack_from(">i", answer, pos)
        pos += 4 + max(0, n_aborted) * 16
        (size,) = struct.unpack_from(">i", answer, pos)
        out[index] = answer[pos + 4:pos + 4 + size]
        pos += 4 + size
    assert pos == len(answer), "length fields disagree with the frame size"
    return out


def _records_of(answer: bytes) -> bytes:
    (records,) = _all_records(answer).values()
    return records


def _segment_bytes(node: NodeProcess, topic: str, partition: int) -> bytes:
    return b"".join(p.read_bytes() for p in _segments(node, topic, partition))


def test_pipelined_answers_keep_request_order(
        node: NodeProcess, topic: tuple[str, dict[int, list[tuple[bytes, bytes]]]]) -> None:
    name, _ = topic
    log = _segment_bytes(node, name, 0)
    first = _segments(node, name, 0)[0].read_bytes()
    s = socket.create_connection(node.bootstrap.rsplit(":", 1))  # type: ignore[arg-type]
    try:
        fetch = _fetch_body(name.encode(), {0: 0}, 64 << 20, 64 << 20)
        api_versions = b""
        s.sendall(_request(18, 0, 1, api_versions) + _request(FETCH, FETCH_VERSION, 2, fetch)
                  + _request(18, 0, 3, api_versions) + _request(FETCH, FETCH_VERSION, 4, fetch)
                  + _request(3, 1, 5, struct.pack(">i", 0)))
        answers = [read_frame(s) for _ in range(5)]
    finally:
        s.close()
    assert [struct.unpack_from(">i", a)[0] for a in answers] == [1, 2, 3, 4, 5]
    for a in (answers[1], answers[3]):
        records = _records_of(a[4:])
        # A read stays within a segment: the first one, whole, byte for byte.
        assert records == first and log.startswith(records)


def test_a_reader_that_stops_reading_holds_nobody_else(
        node: NodeProcess, topic: tuple[str, dict[int, list[tuple[bytes, bytes]]]]) -> None:
    name, sent = topic
    # Answers of ~22 MB, more than loopback's socket buffers hold (4 MiB send at most).
    big = unique_name("zcbig")
    _create(node.bootstrap, big, 2, segment=64 << 20)
    _produce(node.bootstrap, big, 2, per_partition=2000)
    stuck = [_raw(node, rcvbuf=32 * 1024) for _ in range(3)]
    try:
        for conn in stuck:
            conn.correlation += 1
            conn.sock.sendall(_request(FETCH, FETCH_VERSION, conn.correlation, _fetch_body(
                big.encode(), {0: 0, 1: 0}, 64 << 20, 32 << 20)))
        time.sleep(1.0)  # their answers fill the sockets; the splices wait for room
        # Others are served meanwhile, through the same path, to the end of the logs.
        start = time.monotonic()
        c = KafkaConsumer(bootstrap_servers=node.bootstrap, enable_auto_commit=False,
                          max_partition_fetch_bytes=4 << 20, auto_offset_reset="earliest",
                          consumer_timeout_ms=10_000)
        c.assign([TopicPartition(name, p) for p in sent])
        n = 0
        for _ in c:
            n += 1
            if n == sum(map(len, sent.values())):
                break
        c.close()
        assert n == sum(map(len, sent.values()))
        assert time.monotonic() - start < 20
        # One stuck reader reads its answer at last: whole and right.
        conn = stuck[0]
        conn.sock.settimeout(10)
        answer = read_frame(conn.sock)
        assert _all_records(answer[4:]) == {p: _segment_bytes(node, big, p) for p in (0, 1)}
    finally:
        # The others go away mid-answer: their splices fail, nothing else does.
        for conn in stuck:
            conn.close()
    ok = _raw(node)
    try:
        r = ok.call(FETCH, FETCH_VERSION, _fetch_body(name.encode(), {1: 0}, 64 << 20, 64 << 20))
        nxt, whole = walk_batches(r[4 + 4 + 2 + len(name) + 4 + 4 + 2 + 16 + 4 + 4:])
        assert nxt > 0 and whole > 0
    finally:
        ok.close()
    assert "Traceback" not in node.logs()


def test_a_segment_deleted_while_its_answer_is_in_flight(node: NodeProcess) -> None:
    name = unique_name("zcdel")
    _create(node.bootstrap, name, 1)
    sent = _produce(node.bootstrap, name, 1)
    first = _segments(node, name, 0)[0]
    expected = first.read_bytes()
    conn = _raw(node, rcvbuf=32 * 1024)
    try:
        conn.correlation += 1
        conn.sock.sendall(_request(FETCH, FETCH_VERSION, conn.correlation, _fetch_body(
            name.encode(), {0: 0}, 64 << 20, 64 << 20)))
        time.sleep(0.5)  # the answer is on its way, stuck on the socket
        admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
        try:
            admin.delete_records({TopicPartition(name, 0): len(sent[0]) - 1})
        finally:
            admin.close()
        wait_for(lambda: not first.exists(), 10, "the first segment deleted")
        conn.sock.settimeout(10)
        answer = read_frame(conn.sock)
        assert _records_of(answer[4:]) == expected
    finally:
        conn.close()


def test_a_follower_replicates_through_the_zero_copy_path(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c2", 2).start()
    try:
        name = unique_name("zcrep")
        _create(c.bootstrap, name, 1, rf=2)
        leader, follower = c.nodes
        before = {n.node_id: metric(n, "odradek_zero_copy_bytes_total") for n in c.nodes}
        _produce(c.bootstrap, name, 1)

        def same() -> bool:
            return _segment_bytes(leader, name, 0) == _segment_bytes(follower, name, 0)
        wait_for(same, 30, "the follower's log equal to the leader's")
        # No consumer read it: the bytes went to followers (whichever node led).
        assert sum(metric(n, "odradek_zero_copy_bytes_total") - before[n.node_id]
                   for n in c.nodes) >= len(_segment_bytes(leader, name, 0)) // 2
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.kill_all()

"""Malformed and hostile input gets an error or a closed connection, never a broken broker."""

from __future__ import annotations

import random
import socket
import struct

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.kafka import codec
from odradek.broker.kafka.client import ConnectionClosed, KafkaConnection
from odradek.storage.records import Record, encode_batch
from tests.helpers import produce_raw, unique_name
from tests.integration.harness import NodeProcess

pytestmark = pytest.mark.integration


def assert_still_serving(node: NodeProcess) -> None:
    with KafkaConnection.to(node.bootstrap) as c:
        r = c.request(18, 3, {"client_software_name": "t", "client_software_version": "1"})
        assert r.error_code == ErrorCode.none
        assert any(k.api_key == 0 for k in r.api_keys)


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def raw(node: NodeProcess) -> socket.socket:
    host, port = node.bootstrap.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


@pytest.mark.parametrize("length", [2**31 - 1, 200 * 1024 * 1024, -5, 3])
def test_bad_length_fields_close_the_connection(shared_node: NodeProcess, length: int) -> None:
    with raw(shared_node) as s:
        s.sendall(struct.pack(">i", length) + b"\0" * 16)
        assert closed_by_peer(s)
    assert_still_serving(shared_node)


def test_random_frames_close_only_their_connection(shared_node: NodeProcess) -> None:
    rng = random.Random(1234)
    with KafkaConnection.to(shared_node.bootstrap) as bystander:
        for _ in range(60):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(8, 300)))
            with raw(shared_node) as s:
                s.sendall(struct.pack(">i", len(body)) + body)
                s.shutdown(socket.SHUT_WR)
                closed_by_peer(s)
        # A connection opened before the garbage still works.
        r = bystander.request(3, 12, {"topics": [], "allow_auto_topic_creation": False})
        assert r.brokers


def test_truncated_frame_then_disconnect(shared_node: NodeProcess) -> None:
    frame = codec.encode_request(codec.build_request(3, 12, {"topics": None}), 1, "t")
    with raw(shared_node) as s:
        s.sendall(frame[: len(frame) // 2])
    with raw(shared_node) as s:
        # A header cut short inside a declared frame size is malformed.
        s.sendall(struct.pack(">i", 9) + frame[4:13])
        assert closed_by_peer(s)
    assert_still_serving(shared_node)


def test_unknown_api_key_closes(shared_node: NodeProcess) -> None:
    with KafkaConnection.to(shared_node.bootstrap) as c:
        c.send_raw(struct.pack(">ihhi", 10, 999, 0, 1) + b"\xff\xff")
        with pytest.raises(ConnectionClosed):
            c.read_frame()
    assert_still_serving(shared_node)


def test_unsupported_versions(shared_node: NodeProcess) -> None:
    # ApiVersions at an unknown version: answered with v0 and UNSUPPORTED_VERSION (KIP-511).
    with KafkaConnection.to(shared_node.bootstrap) as c:
        c.send_raw(struct.pack(">ihhih", 10, 18, 77, 5, -1))
        frame = c.read_frame()
        cid, body = codec.decode_response(frame, 18, 0)
        assert cid == 5
        assert body.error_code == ErrorCode.unsupported_version
        assert {k.api_key for k in body.api_keys} >= {0, 1, 3, 18}
    # Any other API at an unsupported version: the connection is closed.
    with KafkaConnection.to(shared_node.bootstrap) as c:
        c.send_raw(struct.pack(">ihhih", 10, 3, 99, 6, -1))
        with pytest.raises(ConnectionClosed):
            c.read_frame()
    assert_still_serving(shared_node)


def test_wrong_crc_is_rejected_and_not_stored(shared_node: NodeProcess) -> None:
    topic = unique_name("crc")
    with KafkaConnection.to(shared_node.bootstrap) as c:
        r = c.request(19, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                          "replication_factor": 1}], "timeout": 5000})
        assert r.topics[0].error_code == ErrorCode.none
        good = encode_batch([Record(0, value=b"good")])
        bad = bytearray(encode_batch([Record(0, value=b"evil")]))
        bad[-1] ^= 0xFF
        assert produce_raw(c, topic, good).error_code == ErrorCode.none
        res = produce_raw(c, topic, bytes(bad))
        assert res.error_code == ErrorCode.corrupt_message
        truncated = good[:-3]
        assert produce_raw(c, topic, truncated).error_code == ErrorCode.corrupt_message
        assert produce_raw(c, topic, good).base_offset == 1  # nothing bad was appended
        lo = c.request(2, 7, {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}]})
        assert lo.topics[0].partitions[0].offset == 2


def test_a_failed_acks0_produce_closes_the_connection(shared_node: NodeProcess) -> None:
    """acks=0 gets no answer, so a failure is told by closing the connection, as Kafka
    does: the producer notices and refreshes its metadata. A good one keeps it open."""
    topic = unique_name("acks0")
    with KafkaConnection.to(shared_node.bootstrap) as c:
        r = c.request(19, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                          "replication_factor": 1}], "timeout": 5000})
        assert r.topics[0].error_code == ErrorCode.none

        def produce_acks0(partition: int) -> None:
            body = codec.build_request(0, 9, {"acks": 0, "timeout": 5000, "topic_data": [
                {"name": topic, "partition_data": [
                    {"index": partition, "records": encode_batch([Record(0, value=b"v")])}]}]})
            c.send_raw(codec.encode_request(body, 99, "acks0"))

        produce_acks0(0)
        assert c.request(18, 0, {}).error_code == ErrorCode.none  # still served
        produce_acks0(7)  # no such partition
        c.sock.settimeout(10)
        with pytest.raises((ConnectionClosed, ConnectionResetError)):
            c.request(18, 0, {})
    assert_still_serving(shared_node)


def test_invalid_topic_names(shared_node: NodeProcess) -> None:
    with KafkaConnection.to(shared_node.bootstrap) as c:
        bad = ["bad name", "a" * 250, "..", "ümlaut", ""]
        r = c.request(19, 7, {"topics": [{"name": n, "num_partitions": 1,
                                          "replication_factor": 1} for n in bad],
                              "timeout": 5000})
        assert [t.error_code for t in r.topics] == [ErrorCode.invalid_topic_exception] * 5
        assert all(t.error_message for t in r.topics)
        m = c.request(3, 12, {"topics": [{"name": "bad name"}],
                              "allow_auto_topic_creation": True})
        assert m.topics[0].error_code == ErrorCode.invalid_topic_exception
        p = produce_raw(c, unique_name("no-such-topic", 6), encode_batch([Record(0)]))
        assert p.error_code == ErrorCode.unknown_topic_or_partition
    assert_still_serving(shared_node)


def test_oversize_batch_gets_message_too_large(shared_node: NodeProcess) -> None:
    topic = unique_name("big")
    with KafkaConnection.to(shared_node.bootstrap) as c:
        c.request(19, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                      "replication_factor": 1, "configs": [
                                          {"name": "max.message.bytes", "value": "2000"}]}],
                          "timeout": 5000})
        res = produce_raw(c, topic, encode_batch([Record(0, value=b"x" * 5000)]))
        assert res.error_code == ErrorCode.message_too_large


def test_fetch_long_poll_waits_for_data_and_honours_max_wait(shared_node: NodeProcess) -> None:
    import threading
    import time

    topic = unique_name("poll")
    with KafkaConnection.to(shared_node.bootstrap) as c:
        c.request(19, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                      "replication_factor": 1}], "timeout": 5000})

    def fetch(max_wait: int, min_bytes: int) -> tuple[float, object]:
        with KafkaConnection.to(shared_node.bootstrap) as c:
            start = time.monotonic()
            r = c.request(1, 12, {"replica_id": -1, "max_wait": max_wait, "min_bytes": min_bytes,
                                  "max_bytes": 1 << 20, "isolation_level": 1, "topics": [
                                      {"topic": topic, "partitions": [
                                          {"partition": 0, "fetch_offset": 0,
                                           "partition_max_bytes": 1 << 20}]}]})
            return time.monotonic() - start, r.responses[0].partitions[0]

    # Nothing arrives: the fetch answers empty after max_wait, not before.
    waited, empty = fetch(800, 1)
    assert 0.7 <= waited < 3 and not empty.records
    # A record arriving mid-wait ends the wait early.
    def produce_later() -> None:
        with KafkaConnection.to(shared_node.bootstrap) as c:
            produce_raw(c, topic, encode_batch([Record(0, value=b"hi")]))

    timer = threading.Timer(0.5, produce_later)
    timer.start()
    waited, got = fetch(10_000, 1)
    timer.join()
    assert waited < 5, waited
    assert got.records and got.high_watermark == 1

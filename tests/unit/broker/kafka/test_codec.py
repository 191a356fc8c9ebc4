from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from odradek.broker.kafka import codec
from odradek.broker.kafka.budget import RequestBudget
from odradek.broker.kafka.connection import (
    FrameReceived,
    ProtocolViolation,
    RequestReceived,
    ServerConnection,
    VersionRejected,
)

SUPPORTED = {0: (3, 11), 3: (0, 12), 18: (0, 4)}


def frame(api_key: int, version: int, data: dict, cid: int = 1) -> bytes:
    return codec.encode_request(codec.build_request(api_key, version, data), cid, "test")


def test_request_round_trip_every_metadata_version() -> None:
    for v in range(0, 13):
        f = frame(3, v, {"topics": [{"name": "a"}]}, cid=v + 1)
        req = codec.decode_request(f[4:], SUPPORTED)
        assert (req.api_key, req.api_version, req.correlation_id) == (3, v, v + 1)
        assert req.client_id == "test"
        assert [t.name for t in req.body.topics] == ["a"]


def test_build_drops_fields_a_version_lacks_and_zero_fills() -> None:
    data = {"throttle_time": 5, "brokers": [{"node_id": 1, "host": "h", "port": 9}],
            "cluster_id": "c", "controller_id": 1, "topics": [
                {"error_code": 3, "name": "t", "topic_id": None, "partitions": []}]}
    v0 = codec.build_response(3, 0, data)
    assert not hasattr(v0, "throttle_time")
    assert v0.topics[0].error_code == ErrorCode.unknown_topic_or_partition
    v12 = codec.build_response(3, 12, data)
    assert codec.ms(v12.throttle_time) == 5
    assert v12.topics[0].is_internal is False


def test_api_versions_response_header_is_never_flexible() -> None:
    body = codec.build_response(18, 3, {"api_keys": [{"api_key": 0, "min_version": 3,
                                                      "max_version": 11}]})
    out = codec.encode_response(18, 3, 42, body)
    size, cid = struct.unpack_from(">ii", out)
    assert size == len(out) - 4 and cid == 42
    # Header v0: the body (error code 0) follows the correlation id directly.
    assert out[8:10] == b"\x00\x00"


def test_flexible_response_header_has_tag_section() -> None:
    body = codec.build_response(3, 12, {"brokers": [], "topics": []})
    out = codec.encode_response(3, 12, 7, body)
    assert out[8] == 0  # empty tagged fields of response header v1
    assert codec.decode_response(out[4:], 3, 12) == (7, body)


def decoded(conn: ServerConnection, data: bytes) -> list[object]:
    """Frame then decode, as the transport does."""
    return [conn.decode(e.frame) if isinstance(e, FrameReceived) else e
            for e in conn.receive_data(data)]


def test_connection_splits_frames_across_reads() -> None:
    conn = ServerConnection(SUPPORTED, 1 << 20)
    data = frame(3, 12, {"topics": None}, 1) + frame(18, 3, {}, 2)
    events = []
    for i in range(len(data)):
        events += decoded(conn, data[i:i + 1])
    assert [type(e) for e in events] == [RequestReceived, RequestReceived]
    assert [e.request.correlation_id for e in events] == [1, 2]


def test_connection_refuses_oversize_before_buffering() -> None:
    conn = ServerConnection(SUPPORTED, 1000)
    events = conn.receive_data(struct.pack(">i", 1001))
    assert isinstance(events[0], ProtocolViolation)
    assert "socket.request.max.bytes=1000" in events[0].reason
    assert conn.closed and conn.receive_data(b"more") == []


def test_connection_version_handling() -> None:
    conn = ServerConnection(SUPPORTED, 1 << 20)
    ev = decoded(conn, struct.pack(">ihhih", 10, 18, 9, 3, -1))
    assert ev == [VersionRejected(18, 9, 3)]
    ev = decoded(conn, struct.pack(">ihhih", 10, 3, 99, 4, -1))
    assert isinstance(ev[0], ProtocolViolation)
    conn = ServerConnection(SUPPORTED, 1 << 20)
    ev = decoded(conn, struct.pack(">ihhih", 10, 1234, 0, 4, -1))
    assert isinstance(ev[0], ProtocolViolation) and "1234" in ev[0].reason


def test_trailing_bytes_are_ignored_like_kafka_does() -> None:
    # librdkafka's all-topics Metadata v12 request has three bytes after its last field.
    f = frame(3, 12, {"topics": None})
    req = codec.decode_request(f[4:] + b"\x01\x00\x00", SUPPORTED)
    assert req.body.topics is None


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_garbage_never_raises_anything_but_events(data: bytes) -> None:
    conn = ServerConnection(SUPPORTED, 1 << 16)
    payload = struct.pack(">i", len(data)) + data
    for event in decoded(conn, payload):
        assert isinstance(event, RequestReceived | VersionRejected | ProtocolViolation)


def test_frames_wait_for_the_request_budget() -> None:
    """A frame's declared size is reserved before its body is read; without room, framing
    stops (the transport stops reading) until the budget has room again."""
    budget = RequestBudget(limit=1000)
    a = ServerConnection(SUPPORTED, 1 << 20, budget.try_reserve)
    b = ServerConnection(SUPPORTED, 1 << 20, budget.try_reserve)
    big = frame(3, 12, {"topics": [{"name": "x" * 600}]})
    (got,) = a.receive_data(big)
    assert budget.used == len(big) - 4
    # b's frame does not fit next to a's: nothing is framed, its bytes stay buffered.
    assert b.receive_data(big) == [] and b.blocked and b.buffered == len(big)
    budget.release(got.size)
    (again,) = b.receive_data(b"")
    assert not b.blocked and again.frame == big[4:] and budget.used == len(big) - 4


def test_reservation_is_held_for_a_partial_frame() -> None:
    budget = RequestBudget(limit=10_000)
    conn = ServerConnection(SUPPORTED, 1 << 20, budget.try_reserve)
    f = frame(3, 12, {"topics": None})
    assert conn.receive_data(f[:6]) == []
    assert conn.reserved == budget.used == len(f) - 4


def test_budget_without_bound_and_idle_grant() -> None:
    unbounded = RequestBudget(-1)
    assert unbounded.try_reserve(10**12) and not unbounded.full
    small = RequestBudget(100)
    assert small.try_reserve(500)  # an idle budget grants one frame whatever its size
    assert not small.try_reserve(1) and small.full
    small.release(500)
    assert small.used == 0 and small.try_reserve(1)

"""The bounds check that guards kio's native reader (broker/kafka/bounds.py, ADR 0005).

A frame that would make the native reader allocate without limit must be refused before the
reader sees it. These tests run the native reader in this process on purpose: if a hostile
frame slips through, the test process aborts, and that is a failure nobody can miss.
"""

from __future__ import annotations

import io
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import Records

from odradek.broker.kafka import bounds, codec
from odradek.broker.node import handler_table

st.register_type_strategy(Records, st.binary(max_size=64))

SERVED = {k: (s.min_version, s.max_version) for k, s in handler_table().items()}
VERSIONS = [(k, v) for k, (lo, hi) in sorted(SERVED.items()) for v in range(lo, hi + 1)]


def encode(entity: object) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


def header(api_key: int, version: int, correlation_id: int = 1) -> bytes:
    cls = codec.request_class(api_key, version)
    flexible_header = cls.__header_schema__.__flexible__
    return struct.pack(">hhih", api_key, version, correlation_id, -1) + (
        b"\0" if flexible_header else b"")


@pytest.mark.parametrize("kind", ["request", "response"])
@pytest.mark.parametrize(("api_key", "version"), VERSIONS)
def test_walk_and_native_reader_agree_on_valid_messages(api_key: int, version: int,
                                                        kind: str) -> None:
    """For every request and response we serve, the walk ends where the native reader does:
    were they to disagree on where a field starts, a length could escape the check."""
    cls = (codec.request_class if kind == "request" else codec.response_class)(api_key, version)

    @settings(max_examples=15, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.from_type(cls))
    def agree(entity: object) -> None:
        try:
            data = encode(entity)
            _, consumed = entity_reader(cls)(data, 0)
        except (ValueError, OverflowError):
            return  # a value kio cannot carry through (a duration beyond timedelta's)
        assert bounds.check(cls, data, 0).end == consumed == len(data)

    agree()


def _mutations(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        pos = rng.randrange(len(out)) if out else 0
        if kind == 0 and out:
            out[pos] = 0xFF
        elif kind == 1 and len(out) >= pos + 4:
            out[pos:pos + 4] = rng.choice([b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff",
                                           b"\xff\xff\xff\x0f", b"\x80\x80\x80\x80"])
        elif kind == 2 and out:
            out[pos] ^= 1 << rng.randrange(8)
        else:
            del out[pos:]
    return bytes(out)


@pytest.mark.parametrize(("api_key", "version"), VERSIONS)
def test_mutated_requests_are_refused_or_parsed(api_key: int, version: int) -> None:
    """Large counts and lengths dropped into real requests of every served version."""
    cls = codec.request_class(api_key, version)
    rng = random.Random(api_key * 100 + version)

    @settings(max_examples=10, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.from_type(cls))
    def check(entity: object) -> None:
        try:
            body = encode(entity)
        except (ValueError, OverflowError):
            return
        for _ in range(20):
            frame = header(api_key, version) + _mutations(body, rng)
            try:
                codec.decode_request(frame, SERVED)
            except codec.MalformedRequest:
                pass

    check()


def _legacy_array_count_frame(count: int) -> bytes:
    # Metadata v1: topics is a (nullable) legacy array of {name}.
    return header(3, 1) + struct.pack(">i", count)


@pytest.mark.parametrize("count", [2**31 - 1, 1_000_000, 3])
def test_array_count_beyond_the_frame_is_refused(count: int) -> None:
    with pytest.raises(codec.MalformedRequest, match="do not fit"):
        codec.decode_request(_legacy_array_count_frame(count) + b"\0\x01a", SERVED)


def test_compact_array_count_beyond_the_frame_is_refused() -> None:
    # The frame of the original report: a Metadata v9 request whose compact topics count is
    # four billion made the native reader ask for 32 GiB and abort the process.
    frame = header(3, 9) + bytes.fromhex("ffffffff0f00000000")
    with pytest.raises(codec.MalformedRequest, match="4294967294 elements"):
        codec.decode_request(frame, SERVED)


@pytest.mark.parametrize(("api_key", "version", "body"), [
    (2, 1, struct.pack(">ii", -1, -1)),                      # ListOffsets topics
    (9, 1, struct.pack(">h", 1) + b"g" + struct.pack(">i", -1)),  # OffsetFetch v1 topics
    (10, 0, struct.pack(">h", -1)),                          # FindCoordinator key
    (10, 4, b"\0" + b"\0" + b"\0"),                          # FindCoordinator v4 keys
])
def test_null_in_a_non_nullable_field_is_refused(api_key: int, version: int,
                                                 body: bytes) -> None:
    with pytest.raises(codec.MalformedRequest, match="null|past the end"):
        codec.decode_request(header(api_key, version) + body, SERVED)


def test_join_group_null_protocols_refused() -> None:
    body = codec.build_request(11, 5, {"group_id": "g", "session_timeout": 10_000,
                                       "rebalance_timeout": 10_000, "member_id": "",
                                       "protocol_type": "consumer", "protocols": []})
    data = bytearray(encode(body))
    assert data[-4:] == b"\0\0\0\0"  # protocols: empty legacy array, last field
    data[-4:] = struct.pack(">i", -1)
    with pytest.raises(codec.MalformedRequest, match="protocols is null"):
        codec.decode_request(header(11, 5) + bytes(data), SERVED)


def test_length_beyond_the_frame_is_refused() -> None:
    frame = header(3, 1) + struct.pack(">i", 1) + struct.pack(">h", 0x7FFF) + b"abc"
    with pytest.raises(codec.MalformedRequest, match="runs past the end"):
        codec.decode_request(frame, SERVED)


def test_overlong_varint_is_refused() -> None:
    frame = header(3, 9) + b"\x80\x80\x80\x80\x80\x01"
    with pytest.raises(codec.MalformedRequest, match="varint"):
        codec.decode_request(frame, SERVED)


def test_element_budget() -> None:
    # Metadata v1 with MAX_ELEMENTS + 1 one-letter topic names in a frame big enough to
    # hold them: refused on the count, before anything is built.
    n = bounds.MAX_ELEMENTS + 1
    frame = _legacy_array_count_frame(n) + b"\0\x01a" * n
    with pytest.raises(codec.MalformedRequest, match="more than"):
        codec.decode_request(frame, SERVED)


def _fetch_v12_with_tags(tags: bytes) -> bytes:
    body = codec.build_request(1, 12, {"max_wait": 100, "min_bytes": 1, "topics": [],
                                       "forgotten_topics_data": []})
    data = encode(body)
    assert data[-1:] == b"\0"  # empty tagged-field section
    return header(1, 12) + data[:-1] + tags


def test_unknown_tagged_fields_are_skipped() -> None:
    """KIP-482: a reader skips tags it does not know (kio's reader would refuse them)."""
    plain = codec.decode_request(_fetch_v12_with_tags(b"\0"), SERVED)
    # Tag 0 (cluster_id, known) with tags 7 and 300 (unknown) around it.
    known = b"\0\x04\x04abc"
    tagged = b"\x03" + b"\x07\x02zz" + known + b"\xac\x02\x01q"
    req = codec.decode_request(_fetch_v12_with_tags(tagged), SERVED)
    assert req.body.cluster_id == "abc"
    assert req.body.topics == plain.body.topics


def test_known_tag_must_fill_its_declared_size() -> None:
    with pytest.raises(codec.MalformedRequest, match="does not take"):
        codec.decode_request(_fetch_v12_with_tags(b"\x01\0\x06\x04abcXY"), SERVED)


def test_tag_size_beyond_the_frame_is_refused() -> None:
    with pytest.raises(codec.MalformedRequest, match="runs past the end"):
        codec.decode_request(_fetch_v12_with_tags(b"\x01\x07\xff\xff\x03zz"), SERVED)


def test_malformed_response_is_an_error_not_an_abort() -> None:
    # Metadata v12 response claiming four billion brokers.
    frame = struct.pack(">i", 1) + b"\0" + struct.pack(">i", 0) + bytes.fromhex("ffffffff0f")
    with pytest.raises(codec.MalformedResponse):
        codec.decode_response(frame, 3, 12)

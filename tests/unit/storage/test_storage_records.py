from __future__ import annotations

import struct

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.storage import (
    Compression,
    CorruptRecordError,
    Record,
    TimestampType,
    decode_batch,
    decode_batches,
    encode_batch,
    read_batch_header,
)
from odradek.storage.batch import batch_crc
from odradek.storage.records import compress, decompress

maybe_bytes = st.none() | st.binary(max_size=64)
headers = st.lists(st.tuples(st.text(max_size=8), maybe_bytes), max_size=3).map(tuple)


@st.composite
def record_lists(draw: st.DrawFn) -> list[Record]:
    n = draw(st.integers(1, 12))
    return [
        Record(
            i,
            draw(st.integers(0, 2**40)),
            draw(maybe_bytes),
            draw(maybe_bytes),
            draw(headers),
        )
        for i in range(n)
    ]


@settings(max_examples=60, deadline=None)
@given(
    records=record_lists(),
    codec=st.sampled_from(list(Compression)),
    base=st.integers(0, 2**40),
    ts=st.integers(0, 2**42),
    pid=st.integers(-1, 2**40),
)
def test_round_trip(
    records: list[Record], codec: Compression, base: int, ts: int, pid: int
) -> None:
    raw = encode_batch(
        records,
        base_offset=base,
        compression=codec,
        producer_id=pid,
        producer_epoch=3,
        base_sequence=9,
        partition_leader_epoch=4,
        timestamp_ms=ts,
        is_transactional=True,
    )
    header, decoded = decode_batch(raw)
    assert header.compression is codec
    assert header.is_transactional and not header.is_control
    assert header.producer_id == pid and header.base_sequence == 9
    assert header.max_timestamp == ts + max(r.timestamp_delta for r in records)
    assert len(decoded) == len(records)
    for r, d in zip(records, decoded, strict=True):
        assert d.offset == base + r.offset_delta
        assert d.timestamp == ts + r.timestamp_delta
        assert (d.key, d.value, d.headers) == (r.key, r.value, r.headers)


@pytest.mark.parametrize("codec", list(Compression))
def test_every_codec_compresses_and_round_trips(codec: Compression) -> None:
    records = [Record(i, 0, b"key", b"x" * 1000) for i in range(20)]
    raw = encode_batch(records, compression=codec, timestamp_ms=1)
    if codec is not Compression.NONE:
        assert len(raw) < 20 * 1000
    _, decoded = decode_batch(raw)
    assert [d.value for d in decoded] == [b"x" * 1000] * 20


def test_xerial_snappy_as_java_clients_send_it() -> None:
    records = [Record(i, i, None, bytes([i]) * 50_000) for i in range(3)]
    raw = encode_batch(records, compression=Compression.SNAPPY, xerial_snappy=True)
    assert raw[61:69] == b"\x82SNAPPY\x00"
    _, decoded = decode_batch(raw)
    assert [d.value for d in decoded] == [r.value for r in records]


def test_zstd_stream_without_content_size() -> None:
    data = b"hello zstd" * 100
    c = cramjam.zstd.Compressor()
    c.compress(data)
    assert decompress(Compression.ZSTD, bytes(c.finish())) == data


def test_log_append_time_records_take_the_batch_timestamp() -> None:
    raw = encode_batch(
        [Record(0, 5, None, b"a"), Record(1, 9, None, b"b")],
        timestamp_ms=100,
        timestamp_type=TimestampType.LOG_APPEND_TIME,
    )
    _, decoded = decode_batch(raw)
    assert [d.timestamp for d in decoded] == [109, 109]


def test_decode_batches_and_control_flag() -> None:
    raw = encode_batch([Record(0)], is_control=True) + encode_batch([Record(0), Record(1)])
    got = list(decode_batches(raw))
    assert got[0][0].is_control and len(got[1][1]) == 2


def _with_payload(payload: bytes, count: int, codec: Compression = Compression.NONE) -> bytes:
    raw = bytearray(encode_batch([Record(0, 0, None, b"v")], compression=codec))
    buf = bytearray(raw[:61]) + payload
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    struct.pack_into(">i", buf, 57, count)
    struct.pack_into(">I", buf, 17, batch_crc(buf, 0, len(buf)))
    return bytes(buf)


def test_corrupt_records_are_reported() -> None:
    with pytest.raises(CorruptRecordError, match="declares length"):
        decode_batch(_with_payload(b"\x7f\x00", 1))  # record length 63 > remaining
    with pytest.raises(CorruptRecordError, match="truncated varint"):
        decode_batch(_with_payload(b"", 1))
    with pytest.raises(CorruptRecordError, match="bytes after its 0 records"):
        decode_batch(_with_payload(b"\x00", 0))
    with pytest.raises(CorruptRecordError, match="cannot decompress GZIP"):
        decode_batch(_with_payload(b"not gzip", 1, Compression.GZIP))


def test_compress_helpers_round_trip() -> None:
    for codec in Compression:
        assert decompress(codec, compress(codec, b"abc" * 100)) == b"abc" * 100
    assert read_batch_header(encode_batch([])).records_count == 0

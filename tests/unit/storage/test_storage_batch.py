from __future__ import annotations

import struct

import crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from odradek.storage import (
    HEADER_SIZE,
    BatchHeader,
    Compression,
    CorruptRecordError,
    TimestampType,
    UnsupportedMagicError,
    assign_offsets,
    iter_batches,
    parse_batches,
    read_batch_header,
)
from odradek.storage.batch import LOG_OVERHEAD
from tests.unit.storage.storage_testlib import make_batch

i64 = st.integers(-(2**63), 2**63 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
i16 = st.integers(-(2**15), 2**15 - 1)


@given(
    st.builds(
        BatchHeader,
        base_offset=i64,
        batch_length=i32,
        partition_leader_epoch=i32,
        magic=st.integers(-128, 127),
        crc=st.integers(0, 2**32 - 1),
        attributes=i16,
        last_offset_delta=i32,
        base_timestamp=i64,
        max_timestamp=i64,
        producer_id=i64,
        producer_epoch=i16,
        base_sequence=i32,
        records_count=i32,
    )
)
def test_header_pack_unpack_round_trip(header: BatchHeader) -> None:
    packed = header.pack()
    assert len(packed) == HEADER_SIZE == 61
    assert BatchHeader.unpack(packed) == header


def test_header_properties() -> None:
    raw = make_batch(3, ts=5000, pid=7, epoch=2, seq=2**31 - 2, compression=Compression.LZ4)
    h = read_batch_header(raw)
    assert h.magic == 2
    assert h.records_count == 3
    assert h.last_offset == h.base_offset + 2
    assert h.total_size == len(raw)
    assert h.compression is Compression.LZ4
    assert h.timestamp_type is TimestampType.CREATE_TIME
    assert not h.is_transactional and not h.is_control
    assert h.max_timestamp == 5002 and h.base_timestamp == 5000
    # 2**31-2, 2**31-1, 0: sequences wrap
    assert h.last_sequence == 0
    # CRC is CRC-32C over attributes..end
    assert h.crc == crc32c.crc32c(raw[21:])


def test_iter_batches_multiple() -> None:
    buf = make_batch(2) + make_batch(5) + make_batch(1)
    headers = parse_batches(buf)
    assert [h.records_count for h in headers] == [2, 5, 1]
    assert sum(h.total_size for h in headers) == len(buf)
    assert list(iter_batches(b"")) == []


def test_bad_crc_is_reported_with_position() -> None:
    first = make_batch(1)
    bad = bytearray(make_batch(2))
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match=rf"CRC mismatch .* byte {len(first)}"):
        parse_batches(first + bytes(bad))
    # Without CRC verification the framing alone is fine.
    assert len(parse_batches(first + bytes(bad), verify_crc=False)) == 2


def test_truncated_batch() -> None:
    raw = make_batch(3)
    with pytest.raises(CorruptRecordError, match="truncated record batch at byte 0"):
        parse_batches(raw[:-1])
    with pytest.raises(CorruptRecordError, match="truncated .* 5 bytes left"):
        parse_batches(raw + raw[:5])
    with pytest.raises(CorruptRecordError, match="truncated"):
        parse_batches(raw[:30])


def test_bad_length() -> None:
    raw = bytearray(make_batch(1))
    struct.pack_into(">i", raw, 8, 10)
    with pytest.raises(CorruptRecordError, match="batchLength 10, below the minimum 49"):
        parse_batches(raw)


@pytest.mark.parametrize("magic", [0, 1, 3, -1])
def test_unsupported_magic(magic: int) -> None:
    raw = bytearray(make_batch(1))
    struct.pack_into(">b", raw, 16, magic)
    with pytest.raises(UnsupportedMagicError, match=f"has magic {magic}; only magic v2"):
        parse_batches(raw)


def test_negative_counts_are_corrupt() -> None:
    raw = bytearray(make_batch(1))
    struct.pack_into(">i", raw, 57, -3)
    struct.pack_into(">I", raw, 17, crc32c.crc32c(bytes(raw[21:])))
    with pytest.raises(CorruptRecordError, match="negative recordsCount -3"):
        parse_batches(raw)


def test_unknown_compression_codec() -> None:
    raw = bytearray(make_batch(1))
    struct.pack_into(">h", raw, 21, 6)
    with pytest.raises(CorruptRecordError, match="unknown compression codec 6"):
        _ = BatchHeader.unpack(raw).compression


def test_assign_offsets_patches_offsets_and_epoch_without_touching_crc() -> None:
    buf = bytearray(make_batch(2) + make_batch(3) + make_batch(1))
    before = parse_batches(buf)
    last = assign_offsets(buf, 100, 7)
    assert last == 105
    after = parse_batches(buf)  # CRCs still valid
    assert [h.base_offset for h in after] == [100, 102, 105]
    assert all(h.partition_leader_epoch == 7 for h in after)
    assert [h.crc for h in after] == [h.crc for h in before]
    assert assign_offsets(bytearray(), 5, 0) == 4


def test_assign_offsets_log_append_time_rewrites_crc() -> None:
    buf = bytearray(make_batch(2, ts=10) + make_batch(1, ts=20))
    assign_offsets(buf, 0, 1, log_append_time_ms=99_999)
    for h in parse_batches(buf):  # recomputed CRCs validate
        assert h.timestamp_type is TimestampType.LOG_APPEND_TIME
        assert h.max_timestamp == 99_999
    assert parse_batches(buf)[0].base_timestamp == 10


def test_log_overhead_constant() -> None:
    raw = make_batch(1)
    assert read_batch_header(raw).batch_length == len(raw) - LOG_OVERHEAD

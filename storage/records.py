"""Full magic v2 record encoding and decoding.

Only the places that must look inside batches use this (internal topics, ListOffsets by
timestamp, tests); the produce/fetch paths work on headers alone (see ``batch``).

A record inside a batch::

    length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
    keyLength varint | key | valueLength varint | value | headerCount varint |
    (headerKeyLength varint | headerKey | headerValueLength varint | headerValue)*

All varints are zig-zag encoded; a length of -1 means null.

Transaction markers (KIP-98) are control batches (attribute bits 4 and 5 set, no sequence)
holding one record whose key is ``version int16 = 0 | type int16`` (0 = ABORT, 1 = COMMIT,
Kafka's ControlRecordType) and whose value is ``version int16 = 0 | coordinator_epoch
int32`` (Kafka's EndTransactionMarker). The log must read that key to learn whether a
transaction committed or aborted; the header alone does not say.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cramjam

from odradek.storage.batch import (
    CONTROL_BIT,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchHeader,
    Compression,
    TimestampType,
    batch_crc,
    read_batch_header,
)
from odradek.storage.errors import CorruptRecordError, InvalidRecordError

Header = tuple[str, bytes | None]

# Java clients frame snappy with xerial's stream format: magic, version, compatible
# version, then (big-endian length, raw snappy block)*.
XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024
_U32 = struct.Struct(">I")
_CONTROL_KEY = struct.Struct(">hh")  # version, type
_MARKER_VALUE = struct.Struct(">hi")  # version, coordinator epoch

CONTROL_TYPE_ABORT = 0
CONTROL_TYPE_COMMIT = 1
MARKER_VERSION = 0


@dataclass(frozen=True, slots=True)
class EndTxnMarker:
    """What a transaction marker says: commit or abort, and the coordinator epoch that wrote
    it (a marker from an older coordinator epoch is a zombie's)."""

    commit: bool
    coordinator_epoch: int


@dataclass(frozen=True, slots=True)
class Record:
    offset_delta: int
    timestamp_delta: int = 0
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


# --- varints ---------------------------------------------------------------------------


def _put_varint(out: bytearray, value: int) -> None:
    u = (value << 1) ^ (value >> 63)
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)


def _get_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise CorruptRecordError(f"truncated varint at byte {pos} of the records section")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise CorruptRecordError(f"varint longer than 10 bytes at byte {pos}")
    return (result >> 1) ^ -(result & 1), pos


def _put_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        _put_varint(out, -1)
    else:
        _put_varint(out, len(data))
        out += data


def _get_bytes(buf: bytes | memoryview, pos: int, what: str) -> tuple[bytes | None, int]:
    n, pos = _get_varint(buf, pos)
    if n < 0:
        if n != -1:
            raise CorruptRecordError(f"invalid {what} length {n} at byte {pos}")
        return None, pos
    end = pos + n
    if end > len(buf):
        raise CorruptRecordError(f"{what} of {n} bytes at byte {pos} runs past the record")
    return bytes(buf[pos:end]), end


def encode_record(record: Record) -> bytes:
    body = bytearray()
    body.append(0)  # record attributes: unused in v2
    _put_varint(body, record.timestamp_delta)
    _put_varint(body, record.offset_delta)
    _put_bytes(body, record.key)
    _put_bytes(body, record.value)
    _put_varint(body, len(record.headers))
    for hkey, hvalue in record.headers:
        _put_bytes(body, hkey.encode())
        _put_bytes(body, hvalue)
    out = bytearray()
    _put_varint(out, len(body))
    out += body
    return bytes(out)


# --- compression -----------------------------------------------------------------------


def compress(codec: Compression, data: bytes, *, xerial_snappy: bool = False) -> bytes:
    """Compress a records section. ``xerial_snappy`` frames snappy like the Java client."""
    if codec == Compression.NONE:
        return data
    if codec == Compression.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == Compression.SNAPPY:
        if not xerial_snappy:
            return bytes(cramjam.snappy.compress_raw(data))
        out = bytearray(_XERIAL_HEADER)
        for start in range(0, len(data), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK]))
            out += _U32.pack(len(block))
            out += block
        return bytes(out)
    if codec == Compression.LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec == Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(f"unknown compression codec {codec!r}")


def _snappy_decompress(data: bytes | memoryview) -> bytes:
    if bytes(data[:8]) != XERIAL_MAGIC:
        return bytes(cramjam.snappy.decompress_raw(bytes(data)))
    out = bytearray()
    pos = 16
    end = len(data)
    while pos < end:
        if pos + 4 > end:
            raise CorruptRecordError("truncated xerial snappy block length")
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        if pos + n > end:
            raise CorruptRecordError("truncated xerial snappy block")
        out += cramjam.snappy.decompress_raw(bytes(data[pos : pos + n]))
        pos += n
    return bytes(out)


def decompress(codec: Compression, data: bytes | memoryview) -> bytes:
    try:
        if codec == Compression.NONE:
            return bytes(data)
        if codec == Compression.GZIP:
            return bytes(cramjam.gzip.decompress(bytes(data)))
        if codec == Compression.SNAPPY:
            return _snappy_decompress(data)
        if codec == Compression.LZ4:
            return bytes(cramjam.lz4.decompress(bytes(data)))
        if codec == Compression.ZSTD:
            return bytes(cramjam.zstd.decompress(bytes(data)))
    except cramjam.DecompressionError as e:
        raise CorruptRecordError(f"cannot decompress {codec.name} records: {e}") from e
    raise CorruptRecordError(f"unknown compression codec {codec!r}")


# --- batches ---------------------------------------------------------------------------


def encode_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    compression: Compression = Compression.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    timestamp_ms: int | None = None,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
    is_transactional: bool = False,
    is_control: bool = False,
    xerial_snappy: bool = False,
) -> bytes:
    """Build one v2 batch. ``timestamp_ms`` (default: now) is the base timestamp."""
    if timestamp_ms is None:
        timestamp_ms = time.time_ns() // 1_000_000
    body = b"".join(encode_record(r) for r in records)
    payload = compress(compression, body, xerial_snappy=xerial_snappy)
    attributes = int(compression)
    if timestamp_type == TimestampType.LOG_APPEND_TIME:
        attributes |= TIMESTAMP_TYPE_BIT
    if is_transactional:
        attributes |= TRANSACTIONAL_BIT
    if is_control:
        attributes |= CONTROL_BIT
    last_offset_delta = records[-1].offset_delta if records else 0
    max_timestamp = timestamp_ms + max((r.timestamp_delta for r in records), default=0)
    header = BatchHeader(
        base_offset=base_offset,
        batch_length=HEADER_SIZE - LOG_OVERHEAD + len(payload),
        partition_leader_epoch=partition_leader_epoch,
        magic=MAGIC_V2,
        crc=0,
        attributes=attributes,
        last_offset_delta=last_offset_delta,
        base_timestamp=timestamp_ms,
        max_timestamp=max_timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        records_count=len(records),
    )
    buf = bytearray(header.pack())
    buf += payload
    _U32.pack_into(buf, 17, batch_crc(buf, 0, len(buf)))
    return bytes(buf)


def decode_records(
    header: BatchHeader, buf: bytes | bytearray | memoryview, pos: int = 0
) -> list[DecodedRecord]:
    """Decode the records of the batch whose header was read at ``pos`` of ``buf``."""
    with memoryview(buf) as mv:
        payload = mv[pos + HEADER_SIZE : pos + header.total_size]
        data = decompress(header.compression, payload)
    log_append = header.timestamp_type == TimestampType.LOG_APPEND_TIME
    out: list[DecodedRecord] = []
    p = 0
    end = len(data)
    # Slicing a memoryview bounds each record without copying the rest of the batch.
    view = memoryview(data)
    for i in range(header.records_count):
        length, p = _get_varint(data, p)
        rec_end = p + length
        if length < 0 or rec_end > end:
            raise CorruptRecordError(
                f"record {i} of batch at offset {header.base_offset} declares length "
                f"{length} but only {end - p} bytes remain"
            )
        rec = view[:rec_end]
        p += 1  # attributes
        ts_delta, p = _get_varint(rec, p)
        off_delta, p = _get_varint(rec, p)
        key, p = _get_bytes(rec, p, "key")
        value, p = _get_bytes(rec, p, "value")
        nheaders, p = _get_varint(rec, p)
        if nheaders < 0:
            raise CorruptRecordError(f"negative header count {nheaders} in record {i}")
        headers: list[Header] = []
        for _ in range(nheaders):
            hkey, p = _get_bytes(rec, p, "header key")
            if hkey is None:
                raise CorruptRecordError(f"null header key in record {i}")
            hvalue, p = _get_bytes(rec, p, "header value")
            headers.append((hkey.decode("utf-8", "replace"), hvalue))
        if p != rec_end:
            raise CorruptRecordError(
                f"record {i} of batch at offset {header.base_offset} has "
                f"{rec_end - p} unexpected trailing bytes"
            )
        timestamp = header.max_timestamp if log_append else header.base_timestamp + ts_delta
        out.append(
            DecodedRecord(header.base_offset + off_delta, timestamp, key, value, tuple(headers))
        )
    if p != end:
        raise CorruptRecordError(
            f"batch at offset {header.base_offset} has {end - p} bytes after its "
            f"{header.records_count} records"
        )
    return out


def decode_batch(buf: bytes | bytearray | memoryview) -> tuple[BatchHeader, list[DecodedRecord]]:
    """Validate and fully decode the first batch in ``buf``."""
    header = read_batch_header(buf, 0)
    return header, decode_records(header, buf, 0)


def decode_batches(
    buf: bytes | bytearray | memoryview,
) -> Iterator[tuple[BatchHeader, list[DecodedRecord]]]:
    """Validate and decode every batch in ``buf`` (e.g. a fetch response's records)."""
    pos = 0
    while pos < len(buf):
        header = read_batch_header(buf, pos)
        yield header, decode_records(header, buf, pos)
        pos += header.total_size


# --- transaction markers ---------------------------------------------------------------


def encode_marker_batch(
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    commit: bool,
    timestamp_ms: int,
    *,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
) -> bytes:
    """A transaction marker batch, byte for byte what Kafka's
    ``MemoryRecords.withEndTransactionMarker`` builds (uncompressed, CreateTime, no sequence,
    one record at offset delta 0 with the marker timestamp)."""
    key = _CONTROL_KEY.pack(MARKER_VERSION,
                            CONTROL_TYPE_COMMIT if commit else CONTROL_TYPE_ABORT)
    value = _MARKER_VALUE.pack(MARKER_VERSION, coordinator_epoch)
    return encode_batch(
        [Record(0, 0, key, value)],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=-1,
        partition_leader_epoch=partition_leader_epoch,
        timestamp_ms=timestamp_ms,
        is_transactional=True,
        is_control=True,
    )


def parse_marker(
    header: BatchHeader, buf: bytes | bytearray | memoryview, pos: int = 0
) -> EndTxnMarker | None:
    """The marker held by the control batch whose header was read at ``pos`` of ``buf``.

    None for a control batch without records (the cleaner leaves those). Raises
    InvalidRecordError for a control record that is not a transaction marker, and
    CorruptRecordError for one that does not parse. Versions above 0 are read as version 0,
    as Kafka does (fields are only ever appended).
    """
    if header.records_count == 0:
        return None
    records = decode_records(header, buf, pos)
    if not records:
        return None
    key, value = records[0].key, records[0].value
    if key is None or len(key) < _CONTROL_KEY.size:
        raise CorruptRecordError(
            f"control record at offset {header.base_offset} has a key of "
            f"{0 if key is None else len(key)} bytes, a control key needs 4")
    version, kind = _CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise CorruptRecordError(
            f"control record at offset {header.base_offset} has key version {version}")
    if kind not in (CONTROL_TYPE_ABORT, CONTROL_TYPE_COMMIT):
        raise InvalidRecordError(
            f"control record at offset {header.base_offset} has type {kind}, not a "
            "transaction marker (0 = ABORT, 1 = COMMIT)")
    if value is None or len(value) < _MARKER_VALUE.size:
        raise CorruptRecordError(
            f"transaction marker at offset {header.base_offset} has a value of "
            f"{0 if value is None else len(value)} bytes, it needs 6")
    value_version, coordinator_epoch = _MARKER_VALUE.unpack_from(value)
    if value_version < 0:
        raise CorruptRecordError(
            f"transaction marker at offset {header.base_offset} has value version "
            f"{value_version}")
    return EndTxnMarker(kind == CONTROL_TYPE_COMMIT, coordinator_epoch)

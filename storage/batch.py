"""Magic v2 record batch header codec.

The log stores batches exactly as producers sent them; the broker only ever needs the
61-byte header (offsets, lengths, timestamps, producer fields) and the CRC. Nothing here
looks at individual records, which keeps the produce and fetch paths free of per-record
Python work.

Layout (big-endian)::

    0  baseOffset           int64   \\ the 12 bytes of "log overhead" that batchLength
    8  batchLength          int32   /  does not count
    12 partitionLeaderEpoch int32      outside the CRC: the broker patches it
    16 magic                int8
    17 crc                  uint32     CRC-32C of everything from attributes to the end
    21 attributes           int16
    23 lastOffsetDelta      int32
    27 baseTimestamp        int64
    35 maxTimestamp         int64
    43 producerId           int64
    51 producerEpoch        int16
    53 baseSequence         int32
    57 recordsCount         int32
    61 records...
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import crc32c

from odradek.storage.errors import CorruptRecordError, UnsupportedMagicError

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LOG_OVERHEAD = 12
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
MAGIC_V2 = 2

BASE_OFFSET_POS = 0
LENGTH_POS = 8
LEADER_EPOCH_POS = 12
MAGIC_POS = 16
CRC_POS = 17
ATTRIBUTES_POS = 21
LAST_OFFSET_DELTA_POS = 23
BASE_TIMESTAMP_POS = 27
MAX_TIMESTAMP_POS = 35
PRODUCER_ID_POS = 43

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1
NO_TIMESTAMP = -1

_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")
_OFFSET_LENGTH = struct.Struct(">qi")


class Compression(IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(IntEnum):
    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def total_size(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def compression(self) -> Compression:
        codec = self.attributes & COMPRESSION_MASK
        try:
            return Compression(codec)
        except ValueError:
            raise CorruptRecordError(
                f"batch at base offset {self.base_offset} uses unknown compression codec {codec}"
            ) from None

    @property
    def timestamp_type(self) -> TimestampType:
        if self.attributes & TIMESTAMP_TYPE_BIT:
            return TimestampType.LOG_APPEND_TIME
        return TimestampType.CREATE_TIME

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record; sequences wrap from 2**31-1 to 0."""
        if self.base_sequence < 0:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF

    def pack(self) -> bytes:
        return HEADER.pack(
            self.base_offset,
            self.batch_length,
            self.partition_leader_epoch,
            self.magic,
            self.crc,
            self.attributes,
            self.last_offset_delta,
            self.base_timestamp,
            self.max_timestamp,
            self.producer_id,
            self.producer_epoch,
            self.base_sequence,
            self.records_count,
        )

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
        """Decode the header at ``pos`` without any validation."""
        return cls(*HEADER.unpack_from(buf, pos))


def batch_crc(buf: bytes | bytearray | memoryview, pos: int, total_size: int) -> int:
    with memoryview(buf) as mv:
        return crc32c.crc32c(mv[pos + ATTRIBUTES_POS : pos + total_size])


def read_batch_header(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    verify_crc: bool = True,
    available: int | None = None,
    position_base: int = 0,
) -> BatchHeader:
    """Validate the batch starting at ``pos`` of ``buf`` and return its header.

    Raises CorruptRecordError (truncated, bad length, bad CRC, negative counts) or
    UnsupportedMagicError; messages give the byte position within ``buf`` plus
    ``position_base`` (so a file scan can report file positions).

    ``available`` (only without ``verify_crc``) is how many bytes of the batch exist
    from ``pos`` on when ``buf`` holds just a prefix of it, at least its header; a
    header-only scan of a file then needs not read whole batches.
    """
    if available is not None and verify_crc:
        raise ValueError("verify_crc needs the whole batch in buf")
    remaining = len(buf) - pos if available is None else available
    if remaining < LOG_OVERHEAD:
        raise CorruptRecordError(
            f"truncated record batch at byte {pos + position_base}: {remaining} bytes left, "
            f"a batch needs at least {HEADER_SIZE}"
        )
    base_offset, length = _OFFSET_LENGTH.unpack_from(buf, pos)
    # Legacy (v0/v1) messages also keep their magic at byte 16, so check it before the
    # v2 length rules: the error then names the real problem.
    if remaining > MAGIC_POS:
        magic = buf[pos + MAGIC_POS]
        if magic != MAGIC_V2:
            raise UnsupportedMagicError(
                f"record batch at byte {pos + position_base} (base offset {base_offset}) has magic "
                f"{magic if magic < 128 else magic - 256}; only magic v2 is supported "
                "(use a Kafka client >= 0.11)"
            )
    if length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"record batch at byte {pos + position_base} (base offset {base_offset}) has batchLength "
            f"{length}, below the minimum {MIN_BATCH_LENGTH} for magic v2"
        )
    total = length + LOG_OVERHEAD
    if total > remaining:
        raise CorruptRecordError(
            f"truncated record batch at byte {pos + position_base} (base offset {base_offset}): "
            f"batchLength says {total} bytes, only {remaining} present"
        )
    header = BatchHeader(*HEADER.unpack_from(buf, pos))
    if verify_crc:
        computed = batch_crc(buf, pos, total)
        if computed != header.crc:
            raise CorruptRecordError(
                f"CRC mismatch in record batch at byte {pos + position_base} (base offset {base_offset}): "
                f"stored 0x{header.crc:08x}, computed 0x{computed:08x}"
            )
    if header.records_count < 0 or header.last_offset_delta < 0:
        raise CorruptRecordError(
            f"record batch at byte {pos + position_base} (base offset {base_offset}) has negative "
            f"recordsCount {header.records_count} or lastOffsetDelta "
            f"{header.last_offset_delta}"
        )
    return header


def iter_batches(
    buf: bytes | bytearray | memoryview, *, verify_crc: bool = True
) -> Iterator[BatchHeader]:
    """Yield the header of every batch in ``buf``; the batches must fill it exactly."""
    pos = 0
    end = len(buf)
    while pos < end:
        header = read_batch_header(buf, pos, verify_crc=verify_crc)
        yield header
        pos += header.batch_length + LOG_OVERHEAD


def parse_batches(
    buf: bytes | bytearray | memoryview, *, verify_crc: bool = True
) -> list[BatchHeader]:
    return list(iter_batches(buf, verify_crc=verify_crc))


def assign_offsets(
    buf: bytearray,
    base_offset: int,
    leader_epoch: int,
    *,
    log_append_time_ms: int | None = None,
) -> int:
    """Give the (already validated) batches in ``buf`` consecutive offsets, in place.

    baseOffset and partitionLeaderEpoch sit outside the CRC, so they are patched without
    touching the checksum. With ``log_append_time_ms`` the batches are switched to
    LogAppendTime (timestamp-type bit + maxTimestamp, both inside the CRC), so the CRC
    is recomputed. Returns the last offset assigned (``base_offset - 1`` if ``buf`` is empty).
    """
    pos = 0
    end = len(buf)
    offset = base_offset
    while pos < end:
        total = _I32.unpack_from(buf, pos + LENGTH_POS)[0] + LOG_OVERHEAD
        last_delta = _I32.unpack_from(buf, pos + LAST_OFFSET_DELTA_POS)[0]
        _I64.pack_into(buf, pos + BASE_OFFSET_POS, offset)
        _I32.pack_into(buf, pos + LEADER_EPOCH_POS, leader_epoch)
        if log_append_time_ms is not None:
            attributes = _I16.unpack_from(buf, pos + ATTRIBUTES_POS)[0] | TIMESTAMP_TYPE_BIT
            _I16.pack_into(buf, pos + ATTRIBUTES_POS, attributes)
            _I64.pack_into(buf, pos + MAX_TIMESTAMP_POS, log_append_time_ms)
            _U32.pack_into(buf, pos + CRC_POS, batch_crc(buf, pos, total))
        offset += last_delta + 1
        pos += total
    return offset - 1

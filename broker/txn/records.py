"""Binary format of the transaction coordinator's records in ``__transaction_state``.

Byte for byte Kafka's ``TransactionLogKey`` and ``TransactionLogValue`` (Kafka 4.x), so the
topic means the same thing to Kafka tooling and its compaction keys agree. Big-endian
integers throughout.

Key (always version 0; the leading int16 is Kafka's coordinator record type, 0)::

    version: int16 = 0, transactional_id: string (int16 length + UTF-8)

Value, prefixed by its int16 version. Version 0 (not flexible)::

    producer_id: int64, producer_epoch: int16, transaction_timeout_ms: int32,
    transaction_status: int8,
    partitions: nullable array (int32 count, -1 = null) of
        topic: string, partition_ids: array (int32 count) of int32
    last_update_timestamp_ms: int64, start_timestamp_ms: int64

Version 1 (flexible, KIP-482) has the same fields with compact encodings (unsigned varint
lengths stored plus one, 0 = null; every struct ends with a tagged-field section) and these
tagged fields in the value's trailing section, written only when not at their default:

    tag 0 previous_producer_id: int64 (default -1)
    tag 1 next_producer_id: int64 (default -1)
    tag 2 client_transaction_version: int16 (default 0)

A null value (tombstone) deletes the transactional id. Unknown tagged fields are kept
(``unknown_tags``) and written back, as Kafka's generated code does, so a record written by
a newer Kafka survives a round trip. ``last_producer_epoch`` is not part of the record:
Kafka keeps it in memory only and loads it as -1.

Decoding is strict: truncated input, trailing bytes, negative or oversized lengths,
non-ascending tags, invalid UTF-8 and impossible counts raise :class:`RecordFormatError`
before anything is allocated for them. A value or key of a version this module does not
know raises :class:`UnknownVersionError` (a RecordFormatError), which loading skips like
Kafka does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

KEY_VERSION = 0
VALUE_VERSIONS = (0, 1)
LATEST_VALUE_VERSION = 1

TAG_PREVIOUS_PRODUCER_ID = 0
TAG_NEXT_PRODUCER_ID = 1
TAG_CLIENT_TRANSACTION_VERSION = 2

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")

# Kafka reads unsigned varints of at most 5 bytes (32 bits).
_MAX_VARINT_BYTES = 5


class RecordFormatError(ValueError):
    """A record in ``__transaction_state`` could not be decoded (or encoded)."""


class UnknownVersionError(RecordFormatError):
    """A key or value of a version this coordinator does not know (a newer Kafka's)."""


@dataclass(frozen=True, slots=True)
class TxnPartitions:
    """One entry of ``TransactionPartitions``: a topic and partition ids of the transaction."""

    topic: str
    partition_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TxnLogValue:
    """``TransactionLogValue`` as it is stored. ``partitions`` None is the schema's null
    (Kafka writes null for transactions in the Empty state)."""

    producer_id: int
    producer_epoch: int
    transaction_timeout_ms: int
    transaction_status: int
    partitions: tuple[TxnPartitions, ...] | None
    last_update_timestamp_ms: int
    start_timestamp_ms: int
    previous_producer_id: int = -1
    next_producer_id: int = -1
    client_transaction_version: int = 0
    # Tagged fields of a newer schema, (tag, raw bytes), ascending by tag.
    unknown_tags: tuple[tuple[int, bytes], ...] = field(default=())


# --- writing -------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def _pack(self, s: struct.Struct, v: int, what: str) -> None:
        try:
            self.buf += s.pack(v)
        except struct.error as e:
            raise RecordFormatError(f"{what} {v} does not fit its field") from e

    def i8(self, v: int, what: str) -> None:
        self._pack(_I8, v, what)

    def i16(self, v: int, what: str) -> None:
        self._pack(_I16, v, what)

    def i32(self, v: int, what: str) -> None:
        self._pack(_I32, v, what)

    def i64(self, v: int, what: str) -> None:
        self._pack(_I64, v, what)

    def uvarint(self, v: int) -> None:
        if not 0 <= v <= 0xFFFFFFFF:
            raise RecordFormatError(f"{v} does not fit an unsigned varint")
        while v >= 0x80:
            self.buf.append((v & 0x7F) | 0x80)
            v >>= 7
        self.buf.append(v)

    def string(self, v: str, compact: bool) -> None:
        data = v.encode()
        if compact:
            self.uvarint(len(data) + 1)
        else:
            if len(data) > 0x7FFF:
                raise RecordFormatError(f"string of {len(data)} bytes does not fit an int16 length")
            self.i16(len(data), "string length")
        self.buf += data


def _encode_tags(w: _Writer, tags: list[tuple[int, bytes]]) -> None:
    w.uvarint(len(tags))
    for tag, data in tags:
        w.uvarint(tag)
        w.uvarint(len(data))
        w.buf += data


def encode_key(transactional_id: str) -> bytes:
    w = _Writer()
    w.i16(KEY_VERSION, "key version")
    w.string(transactional_id, compact=False)
    return bytes(w.buf)


def encode_value(value: TxnLogValue, version: int = LATEST_VALUE_VERSION) -> bytes:
    if version not in VALUE_VERSIONS:
        raise UnknownVersionError(f"cannot write transaction log value version {version}")
    flexible = version >= 1
    w = _Writer()
    w.i16(version, "value version")
    w.i64(value.producer_id, "producer id")
    w.i16(value.producer_epoch, "producer epoch")
    w.i32(value.transaction_timeout_ms, "transaction timeout")
    w.i8(value.transaction_status, "transaction status")
    parts = value.partitions
    if parts is None:
        if flexible:
            w.uvarint(0)
        else:
            w.i32(-1, "array length")
    else:
        if flexible:
            w.uvarint(len(parts) + 1)
        else:
            w.i32(len(parts), "array length")
        for p in parts:
            w.string(p.topic, compact=flexible)
            if flexible:
                w.uvarint(len(p.partition_ids) + 1)
            else:
                w.i32(len(p.partition_ids), "array length")
            for pid in p.partition_ids:
                w.i32(pid, "partition id")
            if flexible:
                w.uvarint(0)  # the element's (empty) tagged fields
    w.i64(value.last_update_timestamp_ms, "last update timestamp")
    w.i64(value.start_timestamp_ms, "start timestamp")
    if flexible:
        tags: dict[int, bytes] = dict(value.unknown_tags)
        if value.previous_producer_id != -1:
            tags[TAG_PREVIOUS_PRODUCER_ID] = _I64.pack(value.previous_producer_id)
        if value.next_producer_id != -1:
            tags[TAG_NEXT_PRODUCER_ID] = _I64.pack(value.next_producer_id)
        if value.client_transaction_version != 0:
            tags[TAG_CLIENT_TRANSACTION_VERSION] = _I16.pack(value.client_transaction_version)
        _encode_tags(w, sorted(tags.items()))
    return bytes(w.buf)


# --- reading -------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining:
            raise RecordFormatError("record is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def i8(self) -> int:
        return int(_I8.unpack(self._take(1))[0])

    def i16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def i64(self) -> int:
        return int(_I64.unpack(self._take(8))[0])

    def uvarint(self) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            b = self._take(1)[0]
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if value > 0xFFFFFFFF:
                    raise RecordFormatError("varint does not fit 32 bits")
                return value
        raise RecordFormatError("varint is longer than 5 bytes")

    def _utf8(self, n: int) -> str:
        try:
            return bytes(self._take(n)).decode()
        except UnicodeDecodeError as e:
            raise RecordFormatError(f"string is not valid UTF-8: {e}") from e

    def string(self, compact: bool) -> str:
        if compact:
            n = self.uvarint() - 1
            if n < 0:
                raise RecordFormatError("null where a string is required")
        else:
            n = self.i16()
            if n < 0:
                raise RecordFormatError("null or negative length where a string is required")
        return self._utf8(n)

    def count(self, compact: bool, nullable: bool, min_element_size: int) -> int | None:
        """An array length, checked against what is left so nothing huge is allocated."""
        if compact:
            n = self.uvarint() - 1
        else:
            n = self.i32()
        if n < 0:
            if nullable and n == -1:
                return None
            raise RecordFormatError(f"invalid array length {n}")
        if n * min_element_size > self.remaining:
            raise RecordFormatError(f"array of {n} elements cannot fit in {self.remaining} bytes")
        return n

    def end(self) -> None:
        if self.remaining:
            raise RecordFormatError(f"{self.remaining} unexpected trailing bytes")


def _read_tags(r: _Reader) -> list[tuple[int, memoryview]]:
    n = r.uvarint()
    if n * 2 > r.remaining:  # every field is at least a tag and a size byte
        raise RecordFormatError(f"{n} tagged fields cannot fit in {r.remaining} bytes")
    out: list[tuple[int, memoryview]] = []
    last = -1
    for _ in range(n):
        tag = r.uvarint()
        if tag <= last:
            raise RecordFormatError(f"tagged field {tag} out of order (after {last})")
        last = tag
        size = r.uvarint()
        out.append((tag, r._take(size)))
    return out


def decode_key(data: bytes) -> str:
    """The transactional id of a key; UnknownVersionError for another key type/version."""
    r = _Reader(data)
    version = r.i16()
    if version != KEY_VERSION:
        raise UnknownVersionError(f"unknown transaction log key version {version}")
    transactional_id = r.string(compact=False)
    r.end()
    return transactional_id


def decode_value(data: bytes) -> TxnLogValue:
    r = _Reader(data)
    version = r.i16()
    if version < 0:
        raise RecordFormatError(f"invalid transaction log value version {version}")
    if version not in VALUE_VERSIONS:
        raise UnknownVersionError(f"unknown transaction log value version {version}")
    flexible = version >= 1
    producer_id = r.i64()
    producer_epoch = r.i16()
    timeout_ms = r.i32()
    status = r.i8()
    # The smallest element: an empty topic name and an empty id array (plus, flexible,
    # an empty tag section).
    n = r.count(flexible, nullable=True, min_element_size=3 if flexible else 6)
    partitions: tuple[TxnPartitions, ...] | None = None
    if n is not None:
        entries = []
        for _ in range(n):
            topic = r.string(compact=flexible)
            m = r.count(flexible, nullable=False, min_element_size=4)
            assert m is not None
            ids = tuple(r.i32() for _ in range(m))
            if flexible:
                # Unknown tagged fields of a nested struct are dropped (nothing to keep
                # them in); the known schema has none.
                _read_tags(r)
            entries.append(TxnPartitions(topic, ids))
        partitions = tuple(entries)
    last_update = r.i64()
    start = r.i64()
    previous_pid = next_pid = -1
    client_tv = 0
    unknown: list[tuple[int, bytes]] = []
    if flexible:
        for tag, raw in _read_tags(r):
            if tag in (TAG_PREVIOUS_PRODUCER_ID, TAG_NEXT_PRODUCER_ID):
                if len(raw) != 8:
                    raise RecordFormatError(f"tagged field {tag} has {len(raw)} bytes, not 8")
                v = int(_I64.unpack(raw)[0])
                if tag == TAG_PREVIOUS_PRODUCER_ID:
                    previous_pid = v
                else:
                    next_pid = v
            elif tag == TAG_CLIENT_TRANSACTION_VERSION:
                if len(raw) != 2:
                    raise RecordFormatError(f"tagged field {tag} has {len(raw)} bytes, not 2")
                client_tv = int(_I16.unpack(raw)[0])
            else:
                unknown.append((tag, bytes(raw)))
    r.end()
    return TxnLogValue(
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        transaction_timeout_ms=timeout_ms,
        transaction_status=status,
        partitions=partitions,
        last_update_timestamp_ms=last_update,
        start_timestamp_ms=start,
        previous_producer_id=previous_pid,
        next_producer_id=next_pid,
        client_transaction_version=client_tv,
        unknown_tags=tuple(unknown),
    )

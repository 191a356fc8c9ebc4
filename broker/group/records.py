"""Binary format of the group coordinator's records in ``__consumer_offsets``.

The layout is Kafka's own (the non-flexible versions of ``OffsetCommitKey/Value`` and
``GroupMetadataKey/Value``), so the topic stays readable by Kafka tooling that knows those
schemas and so its compaction keys mean the same thing. All integers are big-endian;
``string`` is an int16 length + UTF-8 bytes (length -1 = null where noted); ``bytes`` is an
int32 length + bytes; arrays are an int32 count followed by the elements.

Record keys (the key's leading int16 selects the key type):

    version 0|1  offset commit   group: string, topic: string, partition: int32
    version 2    group metadata  group: string

Values start with their own int16 version:

    OffsetCommitValue
      v0  offset: int64, metadata: string, commit_timestamp: int64
      v1  offset: int64, metadata: string, commit_timestamp: int64, expire_timestamp: int64
      v2  = v0
      v3  offset: int64, leader_epoch: int32, metadata: string, commit_timestamp: int64
    We write v3, or v1 when the commit carried an explicit retention (OffsetCommit v2-v4).

    GroupMetadataValue
      protocol_type: string, generation: int32, protocol: nullable string,
      leader: nullable string, current_state_timestamp: int64 (v2+),
      members: array of
        member_id: string, group_instance_id: nullable string (v3+), client_id: string,
        client_host: string, rebalance_timeout: int32 (v1+), session_timeout: int32,
        subscription: bytes, assignment: bytes
    We write v3.

A null value (tombstone) deletes the offset or the group. Keys of other types are the
consumer group protocol's (KIP-848): consumer_records.py holds their format. Transactional offset commits use
the same offset records, in a transactional batch of their producer (see loading.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
OFFSET_VALUE_VERSION_WITH_EXPIRY = 1
GROUP_VALUE_VERSION = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class RecordFormatError(ValueError):
    """A record in ``__consumer_offsets`` could not be decoded."""


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group: str


@dataclass(frozen=True, slots=True)
class OffsetValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class MemberValue:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int
    members: tuple[MemberValue, ...] = field(default=())


class RecordWriter:
    """Big-endian fields of the classic (non-flexible) record schemas; consumer_records.py
    extends it with the flexible ones."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def i16(self, v: int) -> None:
        self.buf += _I16.pack(v)

    def i32(self, v: int) -> None:
        self.buf += _I32.pack(v)

    def i64(self, v: int) -> None:
        self.buf += _I64.pack(v)

    def string(self, v: str | None) -> None:
        if v is None:
            self.i16(-1)
            return
        data = v.encode()
        if len(data) > 0x7FFF:
            raise RecordFormatError(f"string of {len(data)} bytes does not fit an int16 length")
        self.i16(len(data))
        self.buf += data

    def bytes_(self, v: bytes) -> None:
        self.i32(len(v))
        self.buf += v


class RecordReader:
    """Reads what RecordWriter writes; RecordFormatError when the bytes run out."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise RecordFormatError("record is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def i16(self) -> int:
        return int(_I16.unpack(self.take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self.take(4))[0])

    def i64(self) -> int:
        return int(_I64.unpack(self.take(8))[0])

    def nullable_string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        return bytes(self.take(n)).decode()

    def string(self) -> str:
        s = self.nullable_string()
        if s is None:
            raise RecordFormatError("null where a string is required")
        return s

    def bytes_(self) -> bytes:
        n = self.i32()
        if n < 0:
            return b""
        return bytes(self.take(n))


# --- keys ----------------------------------------------------------------------------


def offset_key(group: str, topic: str, partition: int) -> bytes:
    w = RecordWriter()
    w.i16(OFFSET_KEY_VERSION)
    w.string(group)
    w.string(topic)
    w.i32(partition)
    return bytes(w.buf)


def group_key(group: str) -> bytes:
    w = RecordWriter()
    w.i16(GROUP_KEY_VERSION)
    w.string(group)
    return bytes(w.buf)


def decode_key(data: bytes) -> OffsetKey | GroupKey | None:
    """The key, or None for key types this coordinator does not use."""
    r = RecordReader(data)
    version = r.i16()
    if version in (0, 1):
        return OffsetKey(r.string(), r.string(), r.i32())
    if version == GROUP_KEY_VERSION:
        return GroupKey(r.string())
    return None


# --- offset values -------------------------------------------------------------------


def encode_offset_value(v: OffsetValue) -> bytes:
    w = RecordWriter()
    if v.expire_timestamp is not None:
        # Only v1 can carry an explicit expiry (OffsetCommit v2-v4 retention_time).
        w.i16(OFFSET_VALUE_VERSION_WITH_EXPIRY)
        w.i64(v.offset)
        w.string(v.metadata)
        w.i64(v.commit_timestamp)
        w.i64(v.expire_timestamp)
    else:
        w.i16(OFFSET_VALUE_VERSION)
        w.i64(v.offset)
        w.i32(v.leader_epoch)
        w.string(v.metadata)
        w.i64(v.commit_timestamp)
    return bytes(w.buf)


def decode_offset_value(data: bytes) -> OffsetValue:
    r = RecordReader(data)
    version = r.i16()
    if version in (0, 2):
        return OffsetValue(r.i64(), -1, r.nullable_string() or "", r.i64())
    if version == 1:
        offset, metadata, ts, expire = r.i64(), r.nullable_string() or "", r.i64(), r.i64()
        return OffsetValue(offset, -1, metadata, ts, None if expire < 0 else expire)
    if version == 3:
        return OffsetValue(r.i64(), r.i32(), r.nullable_string() or "", r.i64())
    raise RecordFormatError(f"unsupported offset commit value version {version}")


# --- group values --------------------------------------------------------------------


def encode_group_value(v: GroupValue) -> bytes:
    w = RecordWriter()
    w.i16(GROUP_VALUE_VERSION)
    w.string(v.protocol_type)
    w.i32(v.generation)
    w.string(v.protocol)
    w.string(v.leader)
    w.i64(v.current_state_timestamp)
    w.i32(len(v.members))
    for m in v.members:
        w.string(m.member_id)
        w.string(m.group_instance_id)
        w.string(m.client_id)
        w.string(m.client_host)
        w.i32(m.rebalance_timeout)
        w.i32(m.session_timeout)
        w.bytes_(m.subscription)
        w.bytes_(m.assignment)
    return bytes(w.buf)


def decode_group_value(data: bytes) -> GroupValue:
    r = RecordReader(data)
    version = r.i16()
    if not 0 <= version <= 3:
        raise RecordFormatError(f"unsupported group metadata value version {version}")
    protocol_type = r.nullable_string() or ""
    generation = r.i32()
    protocol = r.nullable_string()
    leader = r.nullable_string()
    state_ts = r.i64() if version >= 2 else -1
    members = []
    for _ in range(max(r.i32(), 0)):
        member_id = r.string()
        instance_id = r.nullable_string() if version >= 3 else None
        client_id = r.nullable_string() or ""
        client_host = r.nullable_string() or ""
        session_timeout = r.i32() if version == 0 else 0
        rebalance_timeout = r.i32() if version >= 1 else session_timeout
        if version >= 1:
            session_timeout = r.i32()
        members.append(
            MemberValue(
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                r.bytes_(),
                r.bytes_(),
            )
        )
    return GroupValue(protocol_type, generation, protocol, leader, state_ts, tuple(members))

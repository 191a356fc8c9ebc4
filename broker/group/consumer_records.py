"""Binary format of the consumer group protocol's (KIP-848) records in ``__consumer_offsets``.

Kafka 4.1's own layout, so a Kafka coordinator taking over the partition (or a tool
reading it) sees the same groups. A key is an int16 record type followed by the
non-flexible fields (``string`` = int16 length + UTF-8). A value is an int16 version (0)
followed by the flexible encoding: compact strings and arrays (unsigned varint length+1,
0 = null), uuids as 16 bytes, and a tagged-field section at the end of every struct.

    type 3  ConsumerGroupMetadata         key: group    value: Epoch int32,
                                                              tag 0: MetadataHash int64
    type 4  ConsumerGroupPartitionMetadata (Kafka < 4.1; read and ignored)
    type 5  ConsumerGroupMemberMetadata   key: group, member
            value: InstanceId?, RackId?, ClientId, ClientHost, SubscribedTopicNames [],
                   SubscribedTopicRegex?, RebalanceTimeoutMs int32, ServerAssignor?,
                   tag 0: ClassicMemberMetadata (classic members in a consumer group;
                   not written here, skipped when read)
    type 6  ConsumerGroupTargetAssignmentMetadata  key: group   value: AssignmentEpoch int32
    type 7  ConsumerGroupTargetAssignmentMember    key: group, member
            value: TopicPartitions [TopicId uuid, Partitions [int32]]
    type 8  ConsumerGroupCurrentMemberAssignment   key: group, member
            value: MemberEpoch int32, PreviousMemberEpoch int32, State int8,
                   AssignedPartitions [..], PartitionsPendingRevocation [..]
    type 16 ConsumerGroupRegularExpression (regex subscriptions; read and ignored)

A tombstone (null value) removes what its key named.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from odradek.broker.group.records import RecordFormatError, RecordReader, RecordWriter

GROUP_METADATA = 3
PARTITION_METADATA = 4
MEMBER_METADATA = 5
TARGET_ASSIGNMENT_METADATA = 6
TARGET_ASSIGNMENT_MEMBER = 7
CURRENT_MEMBER_ASSIGNMENT = 8
REGULAR_EXPRESSION = 16
RECORD_TYPES = frozenset({GROUP_METADATA, PARTITION_METADATA, MEMBER_METADATA,
                          TARGET_ASSIGNMENT_METADATA, TARGET_ASSIGNMENT_MEMBER,
                          CURRENT_MEMBER_ASSIGNMENT, REGULAR_EXPRESSION})
_WITH_MEMBER = frozenset({MEMBER_METADATA, TARGET_ASSIGNMENT_MEMBER, CURRENT_MEMBER_ASSIGNMENT})
VALUE_VERSION = 0

_I8 = struct.Struct(">b")
_I64 = struct.Struct(">q")

Partitions = Mapping[uuid.UUID, frozenset[int]]


@dataclass(frozen=True, slots=True)
class ConsumerKey:
    """A key of one of the types above; ``member`` for the per-member types, and the
    regular expression for type 16."""

    record_type: int
    group: str
    member: str | None = None


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    epoch: int
    metadata_hash: int = 0


@dataclass(frozen=True, slots=True)
class MemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None


@dataclass(frozen=True, slots=True)
class TargetAssignmentMetadataValue:
    assignment_epoch: int


@dataclass(frozen=True, slots=True)
class TargetAssignmentMemberValue:
    partitions: Partitions


@dataclass(frozen=True, slots=True)
class CurrentAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int
    assigned: Partitions
    pending_revocation: Partitions


ConsumerValue = (GroupMetadataValue | MemberMetadataValue | TargetAssignmentMetadataValue
                 | TargetAssignmentMemberValue | CurrentAssignmentValue)


class _Writer(RecordWriter):
    """The flexible (KIP-482) fields of the KIP-848 values, beside the classic ones."""

    def i8(self, v: int) -> None:
        self.buf += _I8.pack(v)

    def uvarint(self, v: int) -> None:
        while v >= 0x80:
            self.buf.append((v & 0x7F) | 0x80)
            v >>= 7
        self.buf.append(v)

    def compact_string(self, v: str | None) -> None:
        if v is None:
            self.uvarint(0)
            return
        data = v.encode()
        self.uvarint(len(data) + 1)
        self.buf += data

    def partitions(self, v: Partitions) -> None:
        topics = sorted(t for t, ps in v.items() if ps)
        self.uvarint(len(topics) + 1)
        for t in topics:
            self.buf += t.bytes
            ps = sorted(v[t])
            self.uvarint(len(ps) + 1)
            for p in ps:
                self.i32(p)
            self.uvarint(0)  # no tagged fields

    def no_tags(self) -> None:
        self.uvarint(0)


class _Reader(RecordReader):
    def i8(self) -> int:
        return int(_I8.unpack(self.take(1))[0])

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise RecordFormatError("varint is too long")

    def compact_nullable_string(self) -> str | None:
        n = self.uvarint()
        if n == 0:
            return None
        return bytes(self.take(n - 1)).decode()

    def compact_string(self) -> str:
        s = self.compact_nullable_string()
        if s is None:
            raise RecordFormatError("null where a string is required")
        return s

    def array_len(self) -> int:
        n = self.uvarint()
        if n == 0:
            raise RecordFormatError("null where an array is required")
        return n - 1

    def partitions(self) -> dict[uuid.UUID, frozenset[int]]:
        out: dict[uuid.UUID, frozenset[int]] = {}
        for _ in range(self.array_len()):
            topic = uuid.UUID(bytes=bytes(self.take(16)))
            out[topic] = frozenset(self.i32() for _ in range(self.array_len()))
            self.skip_tags()
        return out

    def tags(self) -> dict[int, memoryview]:
        out = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            out[tag] = self.take(self.uvarint())
        return out

    def skip_tags(self) -> None:
        self.tags()


# --- keys ----------------------------------------------------------------------------


def key(record_type: int, group: str, member: str | None = None) -> bytes:
    w = _Writer()
    w.i16(record_type)
    w.string(group)
    if record_type in _WITH_MEMBER:
        if member is None:
            raise ValueError(f"record type {record_type} needs a member id")
        w.string(member)
    return bytes(w.buf)


def decode_key(data: bytes) -> ConsumerKey | None:
    """The key if it is one of the consumer group protocol's, else None."""
    r = _Reader(data)
    record_type = r.i16()
    if record_type not in RECORD_TYPES:
        return None
    group = r.string()
    member = r.string() if record_type in _WITH_MEMBER or record_type == REGULAR_EXPRESSION \
        else None
    return ConsumerKey(record_type, group, member)


# --- values --------------------------------------------------------------------------


def encode_value(v: ConsumerValue) -> bytes:
    w = _Writer()
    w.i16(VALUE_VERSION)
    if isinstance(v, GroupMetadataValue):
        w.i32(v.epoch)
        if v.metadata_hash:
            w.uvarint(1)
            w.uvarint(0)
            w.uvarint(8)
            w.i64(v.metadata_hash)
        else:
            w.no_tags()
    elif isinstance(v, MemberMetadataValue):
        w.compact_string(v.instance_id)
        w.compact_string(v.rack_id)
        w.compact_string(v.client_id)
        w.compact_string(v.client_host)
        w.uvarint(len(v.subscribed_topic_names) + 1)
        for name in v.subscribed_topic_names:
            w.compact_string(name)
        w.compact_string(v.subscribed_topic_regex)
        w.i32(v.rebalance_timeout_ms)
        w.compact_string(v.server_assignor)
        w.no_tags()
    elif isinstance(v, TargetAssignmentMetadataValue):
        w.i32(v.assignment_epoch)
        w.no_tags()
    elif isinstance(v, TargetAssignmentMemberValue):
        w.partitions(v.partitions)
        w.no_tags()
    else:
        w.i32(v.member_epoch)
        w.i32(v.previous_member_epoch)
        w.i8(v.state)
        w.partitions(v.assigned)
        w.partitions(v.pending_revocation)
        w.no_tags()
    return bytes(w.buf)


def decode_value(record_type: int, data: bytes) -> ConsumerValue | None:
    """The value of a record of ``record_type``; None for the types read and ignored."""
    r = _Reader(data)
    version = r.i16()
    if record_type in (PARTITION_METADATA, REGULAR_EXPRESSION):
        return None
    if version != VALUE_VERSION:
        raise RecordFormatError(f"unsupported value version {version} of record type "
                                f"{record_type}")
    if record_type == GROUP_METADATA:
        epoch = r.i32()
        tags = r.tags()
        hash_ = int(_I64.unpack(tags[0])[0]) if 0 in tags and len(tags[0]) == 8 else 0
        return GroupMetadataValue(epoch, hash_)
    if record_type == MEMBER_METADATA:
        instance_id = r.compact_nullable_string()
        rack_id = r.compact_nullable_string()
        client_id = r.compact_string()
        client_host = r.compact_string()
        names = tuple(r.compact_string() for _ in range(r.array_len()))
        regex = r.compact_nullable_string()
        rebalance_timeout = r.i32()
        server_assignor = r.compact_nullable_string()
        r.skip_tags()
        return MemberMetadataValue(instance_id, rack_id, client_id, client_host, names, regex,
                                   rebalance_timeout, server_assignor)
    if record_type == TARGET_ASSIGNMENT_METADATA:
        return TargetAssignmentMetadataValue(r.i32())
    if record_type == TARGET_ASSIGNMENT_MEMBER:
        return TargetAssignmentMemberValue(r.partitions())
    if record_type == CURRENT_MEMBER_ASSIGNMENT:
        return CurrentAssignmentValue(r.i32(), r.i32(), r.i8(), r.partitions(), r.partitions())
    raise RecordFormatError(f"unknown record type {record_type}")

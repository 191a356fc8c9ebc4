"""The bytes a Raft snapshot of the metadata log holds: an image as records with their
replay offsets (odradek.controller.metadata.diff.image_to_records).

Snapshot data layout (big-endian)::

    8-byte magic | i64 last offset L | u32 count | count x (i64 offset | u32 length | record)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from odradek.controller.metadata import MetadataImage, decode_record, encode_record
from odradek.controller.metadata.diff import OffsetRecord, SnapshotError, image_to_records

SNAPSHOT_MAGIC = b"ODRMSN01"
_HEAD = struct.Struct(">qI")
_REC = struct.Struct(">qI")


@dataclass(frozen=True)
class SnapshotData:
    last_offset: int  # offset of the image's last record; -1 for an empty log
    records: tuple[tuple[int, bytes], ...]  # (replay offset, encoded MetadataRecord)

    def decoded(self) -> list[OffsetRecord]:
        return [(offset, decode_record(data)) for offset, data in self.records]


def encode_snapshot_data(image: MetadataImage) -> bytes:
    records = image_to_records(image)
    parts = [SNAPSHOT_MAGIC, _HEAD.pack(image.offset, len(records))]
    for offset, record in records:
        data = encode_record(record)
        parts.append(_REC.pack(offset, len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_snapshot_data(data: bytes) -> SnapshotData:
    head = len(SNAPSHOT_MAGIC) + _HEAD.size
    if len(data) < head or data[: len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC:
        raise SnapshotError(
            "Raft snapshot data is not an Odradek metadata snapshot (bad magic); "
            "was this data directory written by a newer version?"
        )
    last_offset, count = _HEAD.unpack_from(data, len(SNAPSHOT_MAGIC))
    pos = head
    records: list[tuple[int, bytes]] = []
    prev = -1
    for k in range(count):
        if pos + _REC.size > len(data):
            raise SnapshotError(f"metadata snapshot ends inside record {k}")
        offset, length = _REC.unpack_from(data, pos)
        pos += _REC.size
        if pos + length > len(data) or offset <= prev or offset > last_offset:
            raise SnapshotError(f"metadata snapshot record {k} is damaged (offset {offset})")
        records.append((offset, data[pos : pos + length]))
        prev = offset
        pos += length
    if pos != len(data) or (records and prev != last_offset):
        raise SnapshotError("metadata snapshot has trailing bytes or a wrong last offset")
    return SnapshotData(last_offset, tuple(records))

"""Encoding of metadata records for the log, and small conversions shared by replay and ops."""

from __future__ import annotations

import uuid

from controller.metadata.gen import metadata_pb2 as pb

MetadataRecord = pb.MetadataRecord


class RecordDecodeError(ValueError):
    """The bytes are not a metadata record this version understands."""


def encode_record(record: pb.MetadataRecord) -> bytes:
    if record.WhichOneof("record") is None:
        raise ValueError("refusing to encode a MetadataRecord with no record set")
    # Deterministic so that the same record always has the same bytes (and CRC) everywhere.
    return record.SerializeToString(deterministic=True)


def decode_record(data: bytes) -> pb.MetadataRecord:
    record = pb.MetadataRecord()
    try:
        record.ParseFromString(data)
    except Exception as exc:  # protobuf raises its own DecodeError, not a ValueError subclass
        raise RecordDecodeError(f"malformed metadata record ({len(data)} bytes): {exc}") from exc
    if record.WhichOneof("record") is None:
        # Either an empty record or one written by a newer version with a record type we do
        # not know; applying the rest of the log without it would give a wrong image.
        raise RecordDecodeError(
            f"metadata record of {len(data)} bytes has no record type this version knows; "
            "upgrade this node before replaying the log"
        )
    return record


def uuid_to_bytes(value: uuid.UUID) -> bytes:
    return value.bytes


def uuid_from_bytes(data: bytes) -> uuid.UUID:
    if len(data) != 16:
        raise RecordDecodeError(f"topic id must be 16 bytes, got {len(data)}")
    return uuid.UUID(bytes=data)

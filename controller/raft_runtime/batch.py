"""The data of one Raft entry: one atomic batch of metadata records.

Layout (big-endian)::

    u8 version (1) | u32 record count (>= 1) | count x (u32 length | record bytes)

No checksum: the entry is already checksummed by the Raft log store on disk and by TCP on the
wire. Record offsets are not stored; every node derives them by counting records as it
applies entries in log order, so they cannot disagree.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

BATCH_VERSION = 1
_HEAD = struct.Struct(">BI")
_LEN = struct.Struct(">I")


class BatchFormatError(ValueError):
    """Entry data that is not a record batch this version understands."""


def encode_batch(records: Sequence[bytes]) -> bytes:
    if not records:
        raise ValueError("a batch needs at least one record")
    parts = [_HEAD.pack(BATCH_VERSION, len(records))]
    for record in records:
        parts.append(_LEN.pack(len(record)))
        parts.append(bytes(record))
    return b"".join(parts)


def decode_batch(data: bytes) -> list[bytes]:
    if len(data) < _HEAD.size:
        raise BatchFormatError(f"record batch of {len(data)} bytes is too short")
    version, count = _HEAD.unpack_from(data)
    if version != BATCH_VERSION:
        raise BatchFormatError(
            f"record batch version {version} is unknown (this node reads {BATCH_VERSION}); "
            "upgrade this node"
        )
    if count == 0:
        raise BatchFormatError("record batch with no records")
    view = memoryview(data)
    pos = _HEAD.size
    out: list[bytes] = []
    for k in range(count):
        if pos + _LEN.size > len(data):
            raise BatchFormatError(f"record batch ends inside the length of record {k}")
        (length,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + length > len(data):
            raise BatchFormatError(f"record batch ends inside record {k}")
        out.append(bytes(view[pos : pos + length]))
        pos += length
    if pos != len(data):
        raise BatchFormatError(f"{len(data) - pos} bytes after the last record of a batch")
    return out

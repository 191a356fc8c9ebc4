"""Let the fuzzer past the CRC of the record batches it produces.

A produce request's records are checked against their CRC-32C before anything else looks
at them (storage/batch.py), so a mutated batch is almost always refused there and the
producer-state and append paths behind it stay unexplored. A batch whose stored CRC is
zero gets its real CRC filled in before the request is dispatched: the fuzzer learns that
four zero bytes open the way, and every other CRC still meets the real check (a batch's
CRC is zero for one in four billion real batches).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from odradek.storage.batch import CRC_POS, LENGTH_POS, LOG_OVERHEAD, MIN_BATCH_LENGTH, batch_crc

PRODUCE_KEY = 0
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_ZERO = b"\0\0\0\0"


def fill_zero_crcs(records: bytes) -> bytes | None:
    """``records`` with each batch whose CRC field is zero given its real CRC, or None when
    there was none. Stops at the first batch whose length does not fit."""
    buf = bytearray(records)
    pos = 0
    changed = False
    while pos + LOG_OVERHEAD + MIN_BATCH_LENGTH <= len(buf):
        (length,) = _I32.unpack_from(buf, pos + LENGTH_POS)
        total = length + LOG_OVERHEAD
        if length < MIN_BATCH_LENGTH or pos + total > len(buf):
            break
        if buf[pos + CRC_POS:pos + CRC_POS + 4] == _ZERO:
            _U32.pack_into(buf, pos + CRC_POS, batch_crc(buf, pos, total))
            changed = True
        pos += total
    return bytes(buf) if changed else None


def with_batch_crcs(api_key: int, body: Any) -> Any:
    """A produce request with zero CRCs filled in; any other request as it is."""
    if api_key != PRODUCE_KEY:
        return body
    topics = []
    changed = False
    for t in body.topic_data:
        parts = []
        for pd in t.partition_data:
            fixed = fill_zero_crcs(bytes(pd.records)) if pd.records else None
            if fixed is not None:
                pd = dataclasses.replace(pd, records=type(pd.records)(fixed))
                changed = True
            parts.append(pd)
        topics.append(dataclasses.replace(t, partition_data=tuple(parts)))
    if not changed:
        return body
    return dataclasses.replace(body, topic_data=tuple(topics))

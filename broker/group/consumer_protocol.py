"""Just enough of the consumer protocol (protocol type ``"consumer"``) to read subscriptions.

The coordinator treats member metadata as opaque, except that OffsetDelete must refuse to
delete offsets of topics a consumer group is still subscribed to, and offset expiry keeps
them. Every ``ConsumerProtocolSubscription`` version starts with the v0 prefix
``version: int16, topics: [string]``, so reading only that prefix works for versions
newer than we know about.
"""

from __future__ import annotations

import struct

PROTOCOL_TYPE = "consumer"

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


def subscribed_topics(metadata: bytes) -> frozenset[str] | None:
    """The topics in a consumer subscription, or None when the bytes are not one."""
    try:
        pos = 2  # version: every version shares the v0 layout for what we read
        (count,) = _I32.unpack_from(metadata, pos)
        pos += 4
        if count < 0:
            return frozenset()
        topics = []
        for _ in range(count):
            (n,) = _I16.unpack_from(metadata, pos)
            pos += 2
            if n < 0 or pos + n > len(metadata):
                return None
            topics.append(metadata[pos : pos + n].decode())
            pos += n
        return frozenset(topics)
    except (struct.error, UnicodeDecodeError):
        return None


def encode_subscription(topics: list[str], user_data: bytes | None = None) -> bytes:
    """A v0 subscription (used by tests and our own tools)."""
    out = bytearray(_I16.pack(0))
    out += _I32.pack(len(topics))
    for t in topics:
        data = t.encode()
        out += _I16.pack(len(data)) + data
    if user_data is None:
        out += _I32.pack(-1)
    else:
        out += _I32.pack(len(user_data)) + user_data
    return bytes(out)

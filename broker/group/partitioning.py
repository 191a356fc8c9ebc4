"""Which ``__consumer_offsets`` partition owns a group.

This must agree bit for bit with Kafka (``abs(groupId.hashCode()) % partitions``) so that
tools which compute the coordinator themselves, and operators reading Kafka's docs, find
the same partition we do.
"""

from __future__ import annotations

_INT_MIN = -(2**31)


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode()``: ``s[0]*31^(n-1) + ... + s[n-1]`` over UTF-16 code units,
    in wrapping 32-bit signed arithmetic."""
    h = 0
    data = s.encode("utf-16-be", "surrogatepass")
    # Java strings are UTF-16: characters outside the BMP hash as two surrogate units.
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_abs(n: int) -> int:
    """Kafka's ``Utils.abs``: like Math.abs, but Integer.MIN_VALUE maps to 0 instead of
    staying negative, so the modulo below never yields a negative partition."""
    return 0 if n == _INT_MIN else abs(n)


def partition_for(group_id: str, num_partitions: int) -> int:
    return kafka_abs(java_string_hash(group_id)) % num_partitions

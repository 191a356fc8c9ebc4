"""Which __consumer_offsets partition owns a group: Java's String.hashCode, as Kafka uses it."""

from __future__ import annotations

from odradek.broker.group.partitioning import java_string_hash, partition_for


def reference_hash(s: str) -> int:
    """String.hashCode spelled out: sum of s[i] * 31^(n-1-i), as a signed 32-bit int."""
    data = s.encode("utf-16-be")
    units = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    n = len(units)
    total = sum(u * 31 ** (n - 1 - i) for i, u in enumerate(units)) % 2**32
    return total - 2**32 if total >= 2**31 else total


def test_java_string_hash_known_values() -> None:
    # Values Java itself gives (and worked by hand for the short ones).
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("ab") == 97 * 31 + 98 == 3105
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("hello world") == 1794106052
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112
    # Outside the BMP Java hashes the two UTF-16 surrogates: 0xD83D*31 + 0xDE00.
    assert java_string_hash("\U0001f600") == 0xD83D * 31 + 0xDE00 == 1772899
    # The famous one whose hash is Integer.MIN_VALUE: Kafka's abs() maps it to 0.
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert partition_for("polygenelubricants", 50) == 0
    for s in ["my-group", "console-consumer-12345", "группа", "x" * 100]:
        assert java_string_hash(s) == reference_hash(s)


def test_partition_for_matches_kafka() -> None:
    assert partition_for("hello", 50) == 99162322 % 50 == 22
    # "my-group" hashes negative: abs(-1906497762) % 50.
    assert java_string_hash("my-group") == -1906497762
    assert partition_for("my-group", 50) == 12
    assert partition_for("a", 50) == 47
    assert partition_for("", 50) == 0
    assert partition_for("hello world", 7) == 1794106052 % 7

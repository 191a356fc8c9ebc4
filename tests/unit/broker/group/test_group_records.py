"""The record format of __consumer_offsets: keys and values byte for byte as Kafka writes them."""

from __future__ import annotations

from odradek.broker.group import records


def test_record_format_is_kafkas() -> None:
    # OffsetCommitKey v1: version, group, topic, partition.
    assert records.offset_key("g", "t", 2) == b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x02"
    assert records.group_key("grp") == b"\x00\x02\x00\x03grp"
    v3 = records.encode_offset_value(records.OffsetValue(10, 4, "m", 1234))
    assert v3 == (
        b"\x00\x03"
        + (10).to_bytes(8, "big")
        + (4).to_bytes(4, "big")
        + b"\x00\x01m"
        + (1234).to_bytes(8, "big")
    )
    v1 = records.encode_offset_value(records.OffsetValue(10, -1, "", 1234, 9999))
    assert v1[:2] == b"\x00\x01"
    assert records.decode_offset_value(v1) == records.OffsetValue(10, -1, "", 1234, 9999)
    assert records.decode_key(records.offset_key("g", "t", 2)) == records.OffsetKey("g", "t", 2)
    assert records.decode_key(records.group_key("grp")) == records.GroupKey("grp")


def test_group_value_round_trip_and_old_versions() -> None:
    member = records.MemberValue("m-1", "inst", "cid", "/10.0.0.1", 30_000, 10_000, b"sub", b"asg")
    value = records.GroupValue("consumer", 5, "range", "m-1", 777, (member,))
    assert records.decode_group_value(records.encode_group_value(value)) == value
    empty = records.GroupValue("consumer", 6, None, None, 888, ())
    assert records.decode_group_value(records.encode_group_value(empty)) == empty
    # Version 0 (no rebalance timeout, state timestamp or instance id), as older Kafka wrote.
    v0 = (
        b"\x00\x00"
        + b"\x00\x08consumer"
        + (2).to_bytes(4, "big")
        + b"\x00\x05range"
        + b"\x00\x01m"
        + (1).to_bytes(4, "big")
        + b"\x00\x01m"
        + b"\x00\x03cid"
        + b"\x00\x02/h"
        + (6000).to_bytes(4, "big")
        + (3).to_bytes(4, "big")
        + b"sub"
        + (0).to_bytes(4, "big")
    )
    decoded = records.decode_group_value(v0)
    assert decoded.generation == 2 and decoded.current_state_timestamp == -1
    (m,) = decoded.members
    assert (m.session_timeout, m.rebalance_timeout, m.subscription) == (6000, 6000, b"sub")

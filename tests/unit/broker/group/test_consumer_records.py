"""The consumer group protocol's (KIP-848) records in __consumer_offsets: Kafka 4.1's
layout (the byte strings below were written and read by Kafka 4.1.1's own generated
classes), and replay rebuilding a group from them."""

from __future__ import annotations

import uuid

from odradek.broker.group import consumer_records as cr
from odradek.broker.group.consumer_group import MemberState
from odradek.broker.group.loading import Replay
from odradek.broker.group.log import LogRecord

T = uuid.UUID("12345678-1234-5678-1234-567812345678")

# Kafka 4.1.1's ConsumerGroupMemberMetadataValue(instanceId="inst", clientId="cid",
# clientHost="/127.0.0.1", subscribedTopicNames=[a, b], rebalanceTimeoutMs=30000,
# serverAssignor="uniform") with its defaults (empty rack id and regex), after the version.
KAFKA_MEMBER = bytes.fromhex(
    "0000" "05696e737401046369640b2f3132372e302e302e310302610262010000753008756e69666f726d00")


def test_values_are_kafkas_bytes() -> None:
    assert cr.encode_value(cr.GroupMetadataValue(7, 123456789)) == bytes.fromhex(
        "00000000000701000800000000075bcd15")
    assert cr.encode_value(cr.CurrentAssignmentValue(
        5, 4, 1, {T: frozenset({0, 2})}, {T: frozenset({1})})) == bytes.fromhex(
        "000000000005000000040102" + T.hex + "03000000000000000200" "02" + T.hex
        + "02000000010000")
    assert cr.key(cr.MEMBER_METADATA, "g", "m") == bytes.fromhex("000500016700016d")
    assert cr.key(cr.GROUP_METADATA, "g") == bytes.fromhex("0003000167")
    member = cr.decode_value(cr.MEMBER_METADATA, KAFKA_MEMBER)
    assert member == cr.MemberMetadataValue("inst", "", "cid", "/127.0.0.1", ("a", "b"), "",
                                            30000, "uniform")


def test_round_trips() -> None:
    values: list[tuple[int, cr.ConsumerValue]] = [
        (cr.GROUP_METADATA, cr.GroupMetadataValue(3)),
        (cr.MEMBER_METADATA, cr.MemberMetadataValue(None, "r1", "c", "/h", (), "^t.*", -1,
                                                    None)),
        (cr.TARGET_ASSIGNMENT_METADATA, cr.TargetAssignmentMetadataValue(9)),
        (cr.TARGET_ASSIGNMENT_MEMBER, cr.TargetAssignmentMemberValue({T: frozenset({4})})),
    ]
    for record_type, value in values:
        assert cr.decode_value(record_type, cr.encode_value(value)) == value
    assert cr.decode_key(cr.key(cr.CURRENT_MEMBER_ASSIGNMENT, "g", "m")) == cr.ConsumerKey(
        cr.CURRENT_MEMBER_ASSIGNMENT, "g", "m")


def _log(records: list[tuple[bytes, bytes | None]]) -> Replay:
    replay = Replay()
    for i, (k, v) in enumerate(records):
        replay.apply(LogRecord(i, k, v))
    return replay


def _member_records(member: str, epoch: int) -> list[tuple[bytes, bytes | None]]:
    return [
        (cr.key(cr.MEMBER_METADATA, "g", member), cr.encode_value(cr.MemberMetadataValue(
            None, None, "c", "/h", ("t",), None, 45000, None))),
        (cr.key(cr.TARGET_ASSIGNMENT_MEMBER, "g", member),
         cr.encode_value(cr.TargetAssignmentMemberValue({T: frozenset({0, 1})}))),
        (cr.key(cr.CURRENT_MEMBER_ASSIGNMENT, "g", member), cr.encode_value(
            cr.CurrentAssignmentValue(epoch, epoch - 1, 2, {T: frozenset({0})}, {}))),
    ]


def test_replay_rebuilds_the_group_and_tombstones_remove() -> None:
    records = [
        (cr.key(cr.GROUP_METADATA, "g"), cr.encode_value(cr.GroupMetadataValue(2, 77))),
        *_member_records("a", 2),
        *_member_records("b", 1),
        (cr.key(cr.TARGET_ASSIGNMENT_METADATA, "g"),
         cr.encode_value(cr.TargetAssignmentMetadataValue(2))),
    ]
    [group] = _log(records).consumer_groups()
    assert (group.group_epoch, group.assignment_epoch, group.metadata_hash) == (2, 2, 77)
    a = group.members["a"]
    assert a.member_epoch == 2 and a.state is MemberState.UNRELEASED_PARTITIONS
    assert a.assigned == {T: frozenset({0})} and a.rebalance_timeout_ms == 45000
    assert group.target["a"] == {T: frozenset({0, 1})}
    # b leaves: its three tombstones; then the group is deleted.
    gone = [(k, None) for k, _ in _member_records("b", 1)]
    [group] = _log(records + gone).consumer_groups()
    assert set(group.members) == {"a"} and "b" not in group.target
    deleted = records + [(k, None) for k, _ in _member_records("a", 2)] + [
        (cr.key(cr.TARGET_ASSIGNMENT_METADATA, "g"), None), (cr.key(cr.GROUP_METADATA, "g"), None)]
    assert _log(deleted).consumer_groups() == []

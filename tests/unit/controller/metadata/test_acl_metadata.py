"""ACLs in the metadata log: records, replay, snapshots, and the controller's filter
matching, checked against the broker's ACL model case by case."""

from __future__ import annotations

import itertools
import uuid

import pytest

from odradek.broker.acl_operations import AclOperation
from odradek.broker.security.acl import (
    AccessControlEntryFilter,
    AclBindingFilter,
    PatternType,
    PermissionType,
    ResourcePatternFilter,
    ResourceType,
)
from odradek.broker.security.acl_metadata import binding_of, stored_filter
from odradek.controller.metadata import (
    MetadataDelta,
    MetadataImage,
    MetadataRecord,
    MetadataReplayError,
    decode_record,
    encode_record,
)
from odradek.controller.metadata.acls import StandardAcl
from odradek.controller.metadata.diff import diff_records, image_to_records, replay
from odradek.controller.metadata.records import (
    access_control_entry_record,
    remove_access_control_entry_record,
)

TOPIC, GROUP, CLUSTER = 2, 3, 4
LITERAL, PREFIXED = 3, 4
READ, WRITE, ALL = 3, 4, 2
DENY, ALLOW = 2, 3
A, B, C = (uuid.UUID(int=i) for i in (1, 2, 3))


def acl(name: str = "orders", principal: str = "User:alice", pattern: int = LITERAL,
        rtype: int = TOPIC, op: int = READ, perm: int = ALLOW, host: str = "*") -> StandardAcl:
    return StandardAcl(rtype, name, pattern, principal, host, op, perm)


def build(records: list[MetadataRecord], image: MetadataImage = MetadataImage.EMPTY
          ) -> MetadataImage:
    delta = MetadataDelta(image)
    for record in records:
        delta.replay(record, delta.offset + 1)
    return delta.apply()


def test_records_round_trip_through_their_encoding() -> None:
    for record in (access_control_entry_record(A, acl()), remove_access_control_entry_record(A)):
        assert decode_record(encode_record(record)) == record


def test_replay_adds_and_removes_by_id() -> None:
    image = build([access_control_entry_record(A, acl()),
                   access_control_entry_record(B, acl("pay-", pattern=PREFIXED, op=WRITE))])
    assert dict(image.acls) == {A: acl(), B: acl("pay-", pattern=PREFIXED, op=WRITE)}
    image = build([remove_access_control_entry_record(A)], image)
    assert list(image.acls) == [B]


def test_replay_refuses_a_reused_id_and_a_missing_one() -> None:
    image = build([access_control_entry_record(A, acl())])
    with pytest.raises(MetadataReplayError, match="in use"):
        build([access_control_entry_record(A, acl("other"))], image)
    with pytest.raises(MetadataReplayError, match="no ACL with id"):
        build([remove_access_control_entry_record(B)], image)


def test_snapshot_and_diff_round_trip() -> None:
    base = build([access_control_entry_record(A, acl()),
                  access_control_entry_record(B, acl("g", rtype=GROUP))])
    assert replay(image_to_records(base)) == base
    target = build([remove_access_control_entry_record(A),
                    access_control_entry_record(C, acl("kafka-cluster", rtype=CLUSTER, op=ALL))],
                   base)
    records = diff_records(base, target)
    assert replay(records, base) == target
    assert sorted(r.WhichOneof("record") for _, r in records) == [
        "access_control_entry", "remove_access_control_entry"]


# The controller's AclFilter must match exactly what the broker's AclBindingFilter matches
# (DescribeAcls uses the latter, DeleteAcls the former).
NAMES = ("orders", "ord", "*", "pay-", "pay-eu", "")
STORED = [acl(name, principal, pattern, rtype, op, perm, host)
          for name, pattern, rtype in itertools.product(
              ("orders", "ord", "*", "pay-"), (LITERAL, PREFIXED), (TOPIC, GROUP))
          for principal, op, perm, host in (("User:alice", READ, ALLOW, "*"),
                                            ("User:*", ALL, DENY, "10.0.0.1"))]
FILTERS = [
    AclBindingFilter(ResourcePatternFilter(rtype, name, ptype),
                     AccessControlEntryFilter(principal, host, op, perm))
    for rtype in (ResourceType.ANY, ResourceType.TOPIC, ResourceType.GROUP)
    for name in (None, *NAMES)
    for ptype in (PatternType.ANY, PatternType.MATCH, PatternType.LITERAL, PatternType.PREFIXED)
    for principal, host, op, perm in (
        (None, None, AclOperation.ANY, PermissionType.ANY),
        ("User:alice", None, AclOperation.READ, PermissionType.ANY),
        ("User:*", "10.0.0.1", AclOperation.ANY, PermissionType.DENY),
        (None, "*", AclOperation.ALL, PermissionType.ALLOW))
]


def test_controller_filters_match_as_the_brokers_do() -> None:
    checked = 0
    for broker_filter in FILTERS:
        controller_filter = stored_filter(broker_filter)
        for stored in STORED:
            assert controller_filter.matches(stored) == broker_filter.matches(
                binding_of(stored)), (broker_filter, stored)
            checked += 1
    assert checked > 10_000

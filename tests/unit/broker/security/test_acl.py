"""Kafka's ACL values (broker/security/acl.py) and operation codes (broker/acl_operations.py).

The codes are on the wire and in the metadata log, the filters decide what DescribeAcls shows
and DeleteAcls removes, and the validation messages reach users through kafka-acls: each
is checked against what Kafka's classes do (AclOperation, ResourceType, PatternType,
AclPermissionType, ResourcePatternFilter, AccessControlEntryFilter, the controller's
AclControlManager.validateNewAcl and the broker's AclApis).
"""

from __future__ import annotations

import pytest

from odradek.broker import acl_operations
from odradek.broker.acl_operations import AclOperation
from odradek.broker.security.acl import (
    CLUSTER_NAME,
    AccessControlEntry,
    AccessControlEntryFilter,
    AclBinding,
    AclBindingFilter,
    PatternType,
    PermissionType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    supported_operations,
    validate_binding,
    validate_filter,
)

A = AclOperation
RT = ResourceType
PT = PatternType
P = PermissionType


def pattern(name: str, pattern_type: PatternType = PT.LITERAL,
            resource_type: ResourceType = RT.TOPIC) -> ResourcePattern:
    return ResourcePattern(resource_type, name, pattern_type)


def entry(principal: str = "User:alice", host: str = "*", operation: AclOperation = A.READ,
          permission: PermissionType = P.ALLOW) -> AccessControlEntry:
    return AccessControlEntry(principal, host, operation, permission)


def binding(name: str = "orders", pattern_type: PatternType = PT.LITERAL,
            resource_type: ResourceType = RT.TOPIC, principal: str = "User:alice",
            host: str = "*", operation: AclOperation = A.READ,
            permission: PermissionType = P.ALLOW) -> AclBinding:
    return AclBinding(pattern(name, pattern_type, resource_type),
                      entry(principal, host, operation, permission))


# -- codes -------------------------------------------------------------------------------


def test_operation_codes_are_kafkas() -> None:
    assert {op.name: op.value for op in AclOperation} == {
        "UNKNOWN": 0, "ANY": 1, "ALL": 2, "READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6,
        "ALTER": 7, "DESCRIBE": 8, "CLUSTER_ACTION": 9, "DESCRIBE_CONFIGS": 10,
        "ALTER_CONFIGS": 11, "IDEMPOTENT_WRITE": 12, "CREATE_TOKENS": 13,
        "DESCRIBE_TOKENS": 14, "TWO_PHASE_COMMIT": 15}


def test_resource_pattern_and_permission_codes_are_kafkas() -> None:
    assert {t.name: t.value for t in ResourceType} == {
        "UNKNOWN": 0, "ANY": 1, "TOPIC": 2, "GROUP": 3, "CLUSTER": 4, "TRANSACTIONAL_ID": 5,
        "DELEGATION_TOKEN": 6, "USER": 7}
    assert {t.name: t.value for t in PatternType} == {
        "UNKNOWN": 0, "ANY": 1, "MATCH": 2, "LITERAL": 3, "PREFIXED": 4}
    assert {t.name: t.value for t in PermissionType} == {
        "UNKNOWN": 0, "ANY": 1, "DENY": 2, "ALLOW": 3}


@pytest.mark.parametrize("enum_type", [AclOperation, ResourceType, PatternType, PermissionType])
def test_a_code_this_broker_does_not_know_decodes_as_unknown(enum_type: type) -> None:
    # Kafka's fromCode: a newer client's code is refused as UNKNOWN, not crashed on.
    assert enum_type.from_code(3) == enum_type(3)
    assert enum_type.from_code(99).name == "UNKNOWN"
    assert enum_type.from_code(-1).name == "UNKNOWN"


def test_supported_operations_per_resource_type_are_kafkas() -> None:
    assert supported_operations(RT.TOPIC) == {A.READ, A.WRITE, A.CREATE, A.DESCRIBE, A.DELETE,
                                              A.ALTER, A.DESCRIBE_CONFIGS, A.ALTER_CONFIGS}
    assert supported_operations(RT.CLUSTER) == {A.CREATE, A.CLUSTER_ACTION,
                                                A.DESCRIBE_CONFIGS, A.ALTER_CONFIGS,
                                                A.IDEMPOTENT_WRITE, A.ALTER, A.DESCRIBE}
    assert supported_operations(RT.GROUP) == {A.READ, A.DESCRIBE, A.DELETE}
    assert supported_operations(RT.TRANSACTIONAL_ID) == {A.DESCRIBE, A.WRITE}
    assert supported_operations(RT.DELEGATION_TOKEN) == {A.DESCRIBE}
    assert supported_operations(RT.USER) == {A.CREATE_TOKENS, A.DESCRIBE_TOKENS}
    for not_concrete in (RT.ANY, RT.UNKNOWN):
        with pytest.raises(ValueError, match="not a concrete resource type"):
            supported_operations(not_concrete)


def test_bits_and_authorized_keep_working_for_kip_430() -> None:
    # The Metadata, DescribeCluster and DescribeGroups handlers use these as before.
    assert acl_operations.bits(frozenset({A.READ, A.DESCRIBE})) == (1 << 3) | (1 << 8)
    assert acl_operations.authorized(acl_operations.GROUP, True) == (1 << 3) | (1 << 6) | (1 << 8)
    assert acl_operations.authorized(acl_operations.TOPIC, False) == acl_operations.OMITTED
    assert acl_operations.OMITTED == -(2**31)


# -- ResourcePatternFilter.matches ---------------------------------------------------------


def test_resource_type_any_ignores_the_type_otherwise_it_must_be_equal() -> None:
    any_type = ResourcePatternFilter(RT.ANY, None, PT.ANY)
    assert any_type.matches(pattern("a", resource_type=RT.GROUP))
    assert any_type.matches(pattern("a", resource_type=RT.TOPIC))
    topics = ResourcePatternFilter(RT.TOPIC, None, PT.ANY)
    assert topics.matches(pattern("a"))
    assert not topics.matches(pattern("a", resource_type=RT.GROUP))
    assert ResourcePatternFilter.ANY == any_type


def test_a_null_name_matches_every_name() -> None:
    for pattern_type in (PT.ANY, PT.MATCH):
        filt = ResourcePatternFilter(RT.TOPIC, None, pattern_type)
        assert filt.matches(pattern("a"))
        assert filt.matches(pattern("*"))
        assert filt.matches(pattern("a", PT.PREFIXED))
    literal_only = ResourcePatternFilter(RT.TOPIC, None, PT.LITERAL)
    assert literal_only.matches(pattern("a"))
    assert not literal_only.matches(pattern("a", PT.PREFIXED))


def test_pattern_type_any_takes_every_type_but_compares_the_name_exactly() -> None:
    filt = ResourcePatternFilter(RT.TOPIC, "foo", PT.ANY)
    assert filt.matches(pattern("foo"))
    assert filt.matches(pattern("foo", PT.PREFIXED))
    assert not filt.matches(pattern("*"))
    assert not filt.matches(pattern("f", PT.PREFIXED))
    assert not filt.matches(pattern("foobar"))
    # The wildcard name in an ANY filter selects only wildcard ACLs.
    wildcard = ResourcePatternFilter(RT.TOPIC, "*", PT.ANY)
    assert wildcard.matches(pattern("*"))
    assert not wildcard.matches(pattern("foo"))


def test_a_specific_pattern_type_selects_only_that_type_and_the_exact_name() -> None:
    literal = ResourcePatternFilter(RT.TOPIC, "foo", PT.LITERAL)
    assert literal.matches(pattern("foo"))
    assert not literal.matches(pattern("foo", PT.PREFIXED))
    assert not literal.matches(pattern("*"))
    prefixed = ResourcePatternFilter(RT.TOPIC, "foo", PT.PREFIXED)
    assert prefixed.matches(pattern("foo", PT.PREFIXED))
    assert not prefixed.matches(pattern("fo", PT.PREFIXED))
    assert not prefixed.matches(pattern("foo"))


def test_match_selects_every_pattern_that_applies_to_the_name() -> None:
    filt = ResourcePatternFilter(RT.TOPIC, "payments.eu", PT.MATCH)
    assert filt.matches(pattern("payments.eu"))
    assert filt.matches(pattern("*"))
    assert filt.matches(pattern("payments.", PT.PREFIXED))
    assert filt.matches(pattern("p", PT.PREFIXED))
    assert filt.matches(pattern("payments.eu", PT.PREFIXED))  # a prefix may be the whole name
    assert not filt.matches(pattern("payments"))  # a literal applies to its own name only
    assert not filt.matches(pattern("payments.eu.x", PT.PREFIXED))
    assert not filt.matches(pattern("payments.eu", resource_type=RT.GROUP))


def test_match_for_the_wildcard_name_selects_only_the_wildcard() -> None:
    filt = ResourcePatternFilter(RT.GROUP, "*", PT.MATCH)
    assert filt.matches(pattern("*", resource_type=RT.GROUP))
    assert not filt.matches(pattern("a", resource_type=RT.GROUP))
    assert not filt.matches(pattern("a", PT.PREFIXED, RT.GROUP))


# -- AccessControlEntryFilter.matches -----------------------------------------------------


def test_entry_filter_null_and_any_fields_match_anything() -> None:
    ace = entry("User:bob", "10.0.0.1", A.WRITE, P.DENY)
    assert AccessControlEntryFilter.ANY.matches(ace)
    assert AccessControlEntryFilter("User:bob", None, A.ANY, P.ANY).matches(ace)
    assert AccessControlEntryFilter(None, "10.0.0.1", A.ANY, P.ANY).matches(ace)
    assert AccessControlEntryFilter(None, None, A.WRITE, P.ANY).matches(ace)
    assert AccessControlEntryFilter(None, None, A.ANY, P.DENY).matches(ace)
    assert AccessControlEntryFilter("User:bob", "10.0.0.1", A.WRITE, P.DENY).matches(ace)


def test_entry_filter_fields_are_compared_exactly() -> None:
    ace = entry("User:bob", "10.0.0.1", A.WRITE, P.DENY)
    assert not AccessControlEntryFilter("User:alice", None, A.ANY, P.ANY).matches(ace)
    # A filter does not apply wildcards: "User:*" selects only wildcard entries, "*" only
    # entries for every host, ALL only ALL entries.
    assert not AccessControlEntryFilter("User:*", None, A.ANY, P.ANY).matches(ace)
    assert AccessControlEntryFilter("User:*", None, A.ANY, P.ANY).matches(entry("User:*"))
    assert not AccessControlEntryFilter(None, "*", A.ANY, P.ANY).matches(ace)
    assert not AccessControlEntryFilter(None, None, A.ALL, P.ANY).matches(ace)
    assert not AccessControlEntryFilter(None, None, A.READ, P.ANY).matches(ace)
    assert not AccessControlEntryFilter(None, None, A.ANY, P.ALLOW).matches(ace)


def test_binding_filter_needs_both_halves_and_to_filter_matches_itself() -> None:
    acl = binding("orders", operation=A.WRITE)
    assert AclBindingFilter.ANY.matches(acl)
    assert acl.to_filter().matches(acl)
    assert not acl.to_filter().matches(binding("orders", operation=A.READ))
    assert not acl.to_filter().matches(binding("orders", PT.PREFIXED, operation=A.WRITE))
    half = AclBindingFilter(ResourcePatternFilter(RT.TOPIC, "orders", PT.LITERAL),
                            AccessControlEntryFilter("User:bob", None, A.ANY, P.ANY))
    assert not half.matches(acl)


# -- validation ------------------------------------------------------------------------------


def test_a_well_formed_binding_is_valid() -> None:
    assert validate_binding(binding()) is None
    assert validate_binding(binding("orders-", PT.PREFIXED, principal="User:*",
                                    host="192.168.0.1", operation=A.ALL,
                                    permission=P.DENY)) is None
    assert validate_binding(binding("*")) is None
    assert validate_binding(binding(CLUSTER_NAME, resource_type=RT.CLUSTER,
                                    operation=A.IDEMPOTENT_WRITE)) is None
    for resource_type in (RT.GROUP, RT.TRANSACTIONAL_ID, RT.DELEGATION_TOKEN, RT.USER):
        assert validate_binding(binding("x", resource_type=resource_type)) is None


@pytest.mark.parametrize(("acl", "message"), [
    (binding(resource_type=RT.UNKNOWN), "Invalid resourceType UNKNOWN"),
    (binding(resource_type=RT.ANY), "Invalid resourceType ANY"),
    (binding(pattern_type=PT.UNKNOWN), "Invalid patternType UNKNOWN"),
    (binding(pattern_type=PT.ANY), "Invalid patternType ANY"),
    (binding(pattern_type=PT.MATCH), "Invalid patternType MATCH"),
    (binding(operation=A.UNKNOWN), "Invalid operation UNKNOWN"),
    (binding(operation=A.ANY), "Invalid operation ANY"),
    (binding(permission=P.UNKNOWN), "Invalid permissionType UNKNOWN"),
    (binding(permission=P.ANY), "Invalid permissionType ANY"),
    (binding("my-cluster", resource_type=RT.CLUSTER),
     "The only valid name for the CLUSTER resource is kafka-cluster"),
    (binding("*", resource_type=RT.CLUSTER),
     "The only valid name for the CLUSTER resource is kafka-cluster"),
    (binding(""), "Invalid empty resource name"),
    (binding("", PT.PREFIXED, RT.GROUP), "Invalid empty resource name"),
    (binding(principal="alice"),
     "Could not parse principal from `alice` (no colon is present separating the "
     "principal type from the principal name)"),
])
def test_an_invalid_binding_gets_kafkas_message(acl: AclBinding, message: str) -> None:
    assert validate_binding(acl) == message


def test_kafka_accepts_what_looks_odd_but_is_well_formed() -> None:
    # Kafka's parser splits at the first colon and accepts an empty name or type.
    assert validate_binding(binding(principal="User:")) is None
    assert validate_binding(binding(principal="User:CN=a,O=b:c")) is None
    # Hosts are not checked: they are compared as strings with the client's address.
    assert validate_binding(binding(host="not-an-ip")) is None
    # A PREFIXED "*" is accepted; it matches names starting with "*", it is no wildcard.
    assert validate_binding(binding("*", PT.PREFIXED, RT.GROUP)) is None
    # Kafka does not check the operation against the resource type either.
    assert validate_binding(binding(resource_type=RT.GROUP, operation=A.CLUSTER_ACTION)) is None


def test_filters_are_refused_only_for_unknown_codes() -> None:
    assert validate_filter(AclBindingFilter.ANY) is None
    assert validate_filter(AclBindingFilter(
        ResourcePatternFilter(RT.TOPIC, "x", PT.MATCH),
        AccessControlEntryFilter("nocolon", None, A.ALL, P.DENY))) is None
    assert validate_filter(AclBindingFilter(
        ResourcePatternFilter(RT.UNKNOWN, None, PT.ANY),
        AccessControlEntryFilter.ANY)) == "Unknown patternFilter."
    assert validate_filter(AclBindingFilter(
        ResourcePatternFilter(RT.TOPIC, None, PT.UNKNOWN),
        AccessControlEntryFilter.ANY)) == "Unknown patternFilter."
    assert validate_filter(AclBindingFilter(
        ResourcePatternFilter.ANY,
        AccessControlEntryFilter(None, None, A.UNKNOWN, P.ANY))) == "Unknown entryFilter."
    assert validate_filter(AclBindingFilter(
        ResourcePatternFilter.ANY,
        AccessControlEntryFilter(None, None, A.ANY, P.UNKNOWN))) == "Unknown entryFilter."


def test_pattern_type_is_specific_only_for_literal_and_prefixed() -> None:
    assert {t for t in PatternType if t.is_specific} == {PT.LITERAL, PT.PREFIXED}

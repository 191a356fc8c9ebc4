"""The ACL index and the authorizer (broker/security/authorizer.py) against Kafka's rules.

The explicit cases follow the scenarios of Kafka's StandardAuthorizerTest and AuthorizerTest
(each named in its docstring); the property tests compare ``authorize`` with a reference that
scans every ACL the way the rules are written, and check ``authorize_by_resource_type``
against what it claims: a yes means some resource of the type is authorized, and, for an
operation nothing implies, a no means none is.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
)
from odradek.broker.security.authorizer import AclIndex, Authorizer, Rule

A = AclOperation
RT = ResourceType
PT = PatternType
P = PermissionType
LITERAL, PREFIXED = PT.LITERAL, PT.PREFIXED
ALLOW, DENY = P.ALLOW, P.DENY
TOPIC, GROUP, CLUSTER, TXN = RT.TOPIC, RT.GROUP, RT.CLUSTER, RT.TRANSACTIONAL_ID
CONCRETE_OPS = [op for op in AclOperation if op not in (A.UNKNOWN, A.ANY)]
HOST1, HOST2 = "192.168.1.1", "192.168.1.2"


def acl(resource_type: ResourceType, name: str, pattern_type: PatternType, principal: str,
        host: str, operation: AclOperation, permission: PermissionType) -> AclBinding:
    return AclBinding(ResourcePattern(resource_type, name, pattern_type),
                      AccessControlEntry(principal, host, operation, permission))


def ids() -> Iterable[uuid.UUID]:
    return (uuid.UUID(int=i) for i in itertools.count(1))


def index(*bindings: AclBinding) -> AclIndex:
    return AclIndex.of(zip(ids(), bindings, strict=False))


def authorizer(*bindings: AclBinding, super_users: Iterable[str] = ("User:superman",),
               allow_everyone: bool = False) -> Authorizer:
    return Authorizer(index(*bindings), frozenset(super_users), allow_everyone)


# -- AclIndex --------------------------------------------------------------------------------

FOO_READ = acl(TOPIC, "foo_", PREFIXED, "User:bob", "*", A.READ, ALLOW)
FOO_WRITE = acl(TOPIC, "foo_", PREFIXED, "User:bob", "*", A.WRITE, ALLOW)
BAR_DC = acl(GROUP, "bar", LITERAL, "User:*", "*", A.DESCRIBE_CONFIGS, DENY)
BAR_AC = acl(GROUP, "bar", LITERAL, "User:*", "*", A.ALTER_CONFIGS, DENY)


def test_an_index_lists_its_acls_by_id_in_the_order_they_were_added() -> None:
    """StandardAuthorizerTest.testListAcls: add, remove, list all and by type."""
    one, two, three, four = (uuid.UUID(int=i) for i in range(1, 5))
    acls = AclIndex.of([(one, FOO_READ), (two, FOO_WRITE), (three, BAR_DC), (four, BAR_AC)])
    assert list(acls.items()) == [(one, FOO_READ), (two, FOO_WRITE), (three, BAR_DC),
                                  (four, BAR_AC)]
    assert len(acls) == 4 and two in acls and acls.get(two) == FOO_WRITE
    smaller = acls.without_acl(two)
    assert smaller.describe(AclBindingFilter.ANY) == [FOO_READ, BAR_DC, BAR_AC]
    topics = AclBindingFilter(ResourcePatternFilter(TOPIC, None, PT.ANY),
                              AccessControlEntryFilter.ANY)
    assert smaller.describe(topics) == [FOO_READ]
    assert smaller.matching(topics) == [(one, FOO_READ)]
    # The index it came from has not changed: readers holding it keep a consistent view.
    assert acls.describe(AclBindingFilter.ANY) == [FOO_READ, FOO_WRITE, BAR_DC, BAR_AC]
    assert two not in smaller and smaller.get(two) is None and len(smaller) == 3


def test_updated_removes_then_adds_and_refuses_what_the_log_cannot_hold() -> None:
    one, two = uuid.UUID(int=1), uuid.UUID(int=2)
    acls = AclIndex.EMPTY.with_acl(one, FOO_READ)
    # Removing and re-adding an id in one batch is a replacement.
    replaced = acls.updated(added=[(one, FOO_WRITE)], removed=[one])
    assert list(replaced.items()) == [(one, FOO_WRITE)]
    with pytest.raises(KeyError, match="no ACL with id"):
        acls.without_acl(two)
    with pytest.raises(ValueError, match="already exists"):
        acls.with_acl(one, FOO_WRITE)
    with pytest.raises(ValueError, match="Invalid patternType MATCH"):
        acls.with_acl(two, acl(GROUP, "g", PT.MATCH, "User:a", "*", A.READ, ALLOW))
    with pytest.raises(ValueError, match="Invalid resourceType UNKNOWN"):
        acls.with_acl(two, acl(RT.UNKNOWN, "g", LITERAL, "User:a", "*", A.READ, ALLOW))
    with pytest.raises(ValueError, match="Invalid operation ANY"):
        acls.with_acl(two, acl(GROUP, "g", LITERAL, "User:a", "*", A.ANY, ALLOW))
    with pytest.raises(ValueError, match="Invalid permissionType ANY"):
        acls.with_acl(two, acl(GROUP, "g", LITERAL, "User:a", "*", A.READ, P.ANY))
    # CreateAcls' own rules are the request path's business: the index takes what the log
    # committed (Kafka's controller takes a CLUSTER "*" given to it directly).
    cluster_wildcard = acl(CLUSTER, "*", LITERAL, "User:a", "*", A.ALTER, ALLOW)
    assert acls.with_acl(two, cluster_wildcard).get(two) == cluster_wildcard
    assert list(acls.items()) == [(one, FOO_READ)]


def test_find_returns_the_id_of_an_equal_binding() -> None:
    acls = index(FOO_READ, BAR_DC)
    assert acls.find(BAR_DC) == uuid.UUID(int=2)
    assert acls.find(FOO_WRITE) is None
    assert acls.find(acl(TOPIC, "foo_", LITERAL, "User:bob", "*", A.READ, ALLOW)) is None
    assert acls.find(acl(TXN, "t", LITERAL, "User:bob", "*", A.WRITE, ALLOW)) is None


def test_describe_and_matching_apply_kafkas_filters() -> None:
    """AuthorizerTest.testAddAclsOn{Literal,Wildcard,Prefixed}Resource and the MATCH filter:
    a filter on one pattern does not list the others; MATCH lists all that apply."""
    literal = acl(TOPIC, "foo-1", LITERAL, "User:*", "*", A.READ, ALLOW)
    wildcard = acl(TOPIC, "*", LITERAL, "User:*", "*", A.WRITE, ALLOW)
    prefixed = acl(TOPIC, "foo", PREFIXED, "User:*", "*", A.READ, DENY)
    other = acl(GROUP, "foo-1", LITERAL, "User:*", "*", A.READ, ALLOW)
    acls = index(literal, wildcard, prefixed, other)

    def describe(resource_type: ResourceType, name: str | None,
                 pattern_type: PatternType) -> list[AclBinding]:
        return acls.describe(AclBindingFilter(
            ResourcePatternFilter(resource_type, name, pattern_type),
            AccessControlEntryFilter.ANY))

    assert describe(TOPIC, "foo-1", LITERAL) == [literal]
    assert describe(TOPIC, "*", LITERAL) == [wildcard]
    assert describe(TOPIC, "foo", PREFIXED) == [prefixed]
    assert describe(TOPIC, "foo-1", PT.ANY) == [literal]
    assert describe(RT.ANY, "foo-1", PT.ANY) == [literal, other]
    assert describe(TOPIC, "foo-1", PT.MATCH) == [literal, wildcard, prefixed]
    assert describe(TOPIC, "bar", PT.MATCH) == [wildcard]
    assert describe(TXN, None, PT.ANY) == []
    denies = AclBindingFilter(ResourcePatternFilter.ANY,
                              AccessControlEntryFilter(None, None, A.ANY, DENY))
    assert acls.describe(denies) == [prefixed]
    assert Authorizer(acls).describe(denies) == [prefixed]
    assert Authorizer(acls).matching(denies) == [(uuid.UUID(int=3), prefixed)]


def test_removing_the_last_acl_of_a_resource_makes_it_have_no_acls_again() -> None:
    """AuthorizerTest.testDeleteAllAclOnWildcardResource / ...OnPrefixedResource."""
    allow_everyone = Authorizer(index(acl(TOPIC, "*", LITERAL, "User:x", "*", A.READ, ALLOW),
                                      acl(TOPIC, "f", PREFIXED, "User:x", "*", A.READ, ALLOW)),
                                frozenset(), True)
    assert not allow_everyone.authorize("User:bob", HOST1, A.READ, TOPIC, "foo")
    emptied = allow_everyone.with_acls(allow_everyone.acls.updated(
        removed=[uuid.UUID(int=1), uuid.UUID(int=2)]))
    assert len(emptied.acls) == 0
    assert emptied.authorize("User:bob", HOST1, A.READ, TOPIC, "foo")


# -- authorize: explicit cases -------------------------------------------------------------


def test_super_users_may_do_anything_whatever_the_acls_say() -> None:
    """AuthorizerTest.testSuperUserHasAccess: a DENY ALL for everyone does not stop them."""
    auth = authorizer(acl(TOPIC, "*", LITERAL, "User:*", "*", A.ALL, DENY),
                      super_users=["User:superuser1", "User:superuser2"])
    for user in ("User:superuser1", "User:superuser2"):
        assert auth.authorize(user, "192.0.4.4", A.READ, TOPIC, "foo")
        assert auth.decide(user, "192.0.4.4", A.READ, TOPIC, "foo").rule is Rule.SUPER_USER
    assert not auth.authorize("User:alice", "192.0.4.4", A.READ, TOPIC, "foo")
    # The super user is the whole "Type:name", not the name under another type.
    assert not auth.authorize("Group:superuser1", "192.0.4.4", A.READ, TOPIC, "foo")


def test_with_no_acls_the_default_decides() -> None:
    """AuthorizerTest.testNoAclFound, testNoAclFoundOverride."""
    assert not authorizer().authorize("User:alice", HOST1, A.READ, TOPIC, "foo")
    assert authorizer(allow_everyone=True).authorize("User:alice", HOST1, A.READ, TOPIC, "foo")
    decision = authorizer().decide("User:alice", HOST1, A.READ, TOPIC, "foo")
    assert decision.rule is Rule.NO_ACLS and decision.acl is None


@pytest.mark.parametrize("allow_everyone", [True, False])
def test_allow_everyone_applies_only_to_resources_no_acl_applies_to(allow_everyone: bool) -> None:
    """StandardAuthorizerTest.testAllowEveryoneIfNoAclFoundConfig{Enabled,Disabled}: an ACL
    for alice on topic1 leaves bob denied on topic1 (ACLs apply to it, none to bob), and
    decides nothing about topic2."""
    auth = authorizer(acl(TOPIC, "topic1", LITERAL, "User:alice", "*", A.READ, ALLOW),
                      super_users=["User:alice", "User:chris"], allow_everyone=allow_everyone)
    assert not auth.authorize("User:bob", HOST1, A.READ, TOPIC, "topic1")
    assert auth.decide("User:bob", HOST1, A.READ, TOPIC, "topic1").rule is Rule.NO_MATCHING_ACL
    assert auth.authorize("User:bob", HOST1, A.READ, TOPIC, "topic2") is allow_everyone
    # An ACL on another resource type, or another host, principal or operation on the same
    # resource, still counts as "an ACL applies": only the pattern matters.
    assert auth.authorize("User:bob", HOST1, A.READ, GROUP, "topic1") is allow_everyone
    assert not auth.authorize("User:bob", HOST1, A.WRITE, TOPIC, "topic1")


def test_an_acl_applies_to_its_literal_name_the_wildcard_and_matching_prefixes() -> None:
    """AuthorizerTest.testAccessAllowedIfAllowAclExistsOn{Wildcard,Prefixed}Resource."""
    auth = authorizer(acl(TOPIC, "orders", LITERAL, "User:a", "*", A.READ, ALLOW),
                      acl(TOPIC, "pay", PREFIXED, "User:b", "*", A.READ, ALLOW),
                      acl(TOPIC, "*", LITERAL, "User:c", "*", A.READ, ALLOW))
    assert auth.authorize("User:a", HOST1, A.READ, TOPIC, "orders")
    assert not auth.authorize("User:a", HOST1, A.READ, TOPIC, "orders2")  # literal is exact
    assert not auth.authorize("User:a", HOST1, A.READ, TOPIC, "order")
    assert auth.authorize("User:b", HOST1, A.READ, TOPIC, "pay")  # a prefix of itself
    assert auth.authorize("User:b", HOST1, A.READ, TOPIC, "payments")
    assert not auth.authorize("User:b", HOST1, A.READ, TOPIC, "pa")
    assert not auth.authorize("User:b", HOST1, A.READ, TOPIC, "xpay")
    for name in ("orders", "payments", "anything", "*", ""):
        assert auth.authorize("User:c", HOST1, A.READ, TOPIC, name)
    # ACLs of one resource type say nothing about another type's resource of the same name.
    assert not auth.authorize("User:a", HOST1, A.READ, GROUP, "orders")
    assert not auth.authorize("User:c", HOST1, A.READ, GROUP, "orders")


def test_a_prefixed_star_is_a_prefix_not_a_wildcard() -> None:
    auth = authorizer(acl(GROUP, "*", PREFIXED, "User:a", "*", A.READ, ALLOW))
    assert auth.authorize("User:a", HOST1, A.READ, GROUP, "*")
    assert auth.authorize("User:a", HOST1, A.READ, GROUP, "*group")
    assert not auth.authorize("User:a", HOST1, A.READ, GROUP, "group")


def test_authorizing_an_empty_name_uses_the_wildcard() -> None:
    """AuthorizerTest.testAuthorizeWithEmptyResourceName."""
    assert not authorizer().authorize("User:alice", HOST1, A.READ, GROUP, "")
    auth = authorizer(acl(GROUP, "*", LITERAL, "User:*", "*", A.READ, ALLOW))
    assert auth.authorize("User:alice", HOST1, A.READ, GROUP, "")


def test_principals_match_exactly_or_through_the_user_wildcard() -> None:
    """StandardAuthorizerTest.testFindResultPrincipalMatching."""
    auth = authorizer(acl(TOPIC, "foo_", PREFIXED, "User:bob", "*", A.READ, ALLOW),
                      acl(GROUP, "bar", LITERAL, "User:*", "*", A.READ, DENY),
                      acl(GROUP, "bar", LITERAL, "User:alice", "*", A.READ, ALLOW))
    assert auth.authorize("User:bob", HOST1, A.READ, TOPIC, "foo_bar")
    assert not auth.authorize("User:alice", HOST1, A.READ, TOPIC, "foo_bar")
    assert not auth.authorize("User:Bob", HOST1, A.READ, TOPIC, "foo_bar")  # case matters
    assert not auth.authorize("User:alice", HOST1, A.READ, GROUP, "bar")  # wildcard DENY


def test_the_user_wildcard_matches_every_principal_type_and_no_other_wildcard_exists() -> None:
    # Kafka matches an ACL's principal against {the principal, "User:*"}: "User:*" covers
    # principals of any type a principal builder makes, "Group:*" only the principal
    # literally named "Group:*".
    auth = authorizer(acl(TOPIC, "t1", LITERAL, "User:*", "*", A.READ, ALLOW),
                      acl(TOPIC, "t2", LITERAL, "Group:*", "*", A.READ, ALLOW))
    assert auth.authorize("Group:admins", HOST1, A.READ, TOPIC, "t1")
    assert auth.authorize("User:alice", HOST1, A.READ, TOPIC, "t1")
    assert not auth.authorize("Group:admins", HOST1, A.READ, TOPIC, "t2")
    assert auth.authorize("Group:*", HOST1, A.READ, TOPIC, "t2")


def test_hosts_match_exactly_or_through_the_wildcard() -> None:
    """StandardAuthorizerTest.testHostAddressAclValidation."""
    local = "127.0.0.1"
    auth = authorizer(acl(TOPIC, "foo", LITERAL, "User:alice", HOST1, A.READ, DENY),
                      acl(TOPIC, "foo", LITERAL, "User:alice", "*", A.READ, ALLOW),
                      acl(TOPIC, "bar", LITERAL, "User:bob", HOST2, A.READ, ALLOW),
                      acl(TOPIC, "bar", LITERAL, "User:*", local, A.DESCRIBE, ALLOW))
    actions = [(A.READ, "foo"), (A.READ, "bar"), (A.DESCRIBE, "bar")]

    def results(principal: str, host: str) -> list[bool]:
        return [auth.authorize(principal, host, op, TOPIC, name) for op, name in actions]

    assert results("User:alice", local) == [True, False, True]
    assert results("User:alice", HOST1) == [False, False, False]
    assert results("User:alice", HOST2) == [True, False, False]
    assert results("User:bob", local) == [False, False, True]
    assert results("User:bob", HOST1) == [False, False, False]
    assert results("User:bob", HOST2) == [False, True, True]


def test_topic_acl_scenario() -> None:
    """AuthorizerTest.testTopicAcl: per-host allows and denies, and READ/WRITE imply
    DESCRIBE."""
    alice, rob, batman = "User:alice", "User:rob", "User:batman"
    auth = authorizer(acl(TOPIC, "t", LITERAL, alice, HOST1, A.READ, ALLOW),
                      acl(TOPIC, "t", LITERAL, alice, HOST2, A.READ, ALLOW),
                      acl(TOPIC, "t", LITERAL, alice, HOST1, A.READ, DENY),
                      acl(TOPIC, "t", LITERAL, alice, HOST1, A.WRITE, ALLOW),
                      acl(TOPIC, "t", LITERAL, alice, "*", A.DESCRIBE, ALLOW),
                      acl(TOPIC, "t", LITERAL, rob, "*", A.READ, ALLOW),
                      acl(TOPIC, "t", LITERAL, batman, "*", A.WRITE, ALLOW))
    assert auth.authorize(alice, HOST2, A.READ, TOPIC, "t")
    assert not auth.authorize(alice, HOST1, A.READ, TOPIC, "t")
    assert auth.authorize(alice, HOST1, A.WRITE, TOPIC, "t")
    assert not auth.authorize(alice, HOST2, A.WRITE, TOPIC, "t")
    assert auth.authorize(alice, HOST1, A.DESCRIBE, TOPIC, "t")
    assert auth.authorize(alice, HOST2, A.DESCRIBE, TOPIC, "t")
    assert not auth.authorize(alice, HOST1, A.ALTER, TOPIC, "t")
    assert auth.authorize(rob, HOST1, A.DESCRIBE, TOPIC, "t")
    assert auth.authorize(batman, HOST1, A.DESCRIBE, TOPIC, "t")
    assert auth.authorize(rob, HOST1, A.READ, TOPIC, "t")
    assert auth.authorize(batman, HOST1, A.WRITE, TOPIC, "t")


@pytest.mark.parametrize(("acl_op", "implied"), [
    (A.ALL, set(CONCRETE_OPS)),
    (A.READ, {A.DESCRIBE}),
    (A.WRITE, {A.DESCRIBE}),
    (A.DELETE, {A.DESCRIBE}),
    (A.ALTER, {A.DESCRIBE}),
    (A.ALTER_CONFIGS, {A.DESCRIBE_CONFIGS}),
    (A.CREATE, set()),
    (A.DESCRIBE, set()),
    (A.DESCRIBE_CONFIGS, set()),
    (A.CLUSTER_ACTION, set()),
    (A.IDEMPOTENT_WRITE, set()),
])
def test_what_an_allow_implies(acl_op: AclOperation, implied: set[AclOperation]) -> None:
    """AuthorizerTest.testAclInheritance (allow half), StandardAuthorizerTest
    .testFindResultImplication."""
    auth = authorizer(acl(CLUSTER, CLUSTER_NAME, LITERAL, "User:alice", "*", acl_op, ALLOW))
    for op in CONCRETE_OPS:
        expected = op == acl_op or op in implied
        assert auth.authorize("User:alice", HOST1, op, CLUSTER, CLUSTER_NAME) is expected, op


@pytest.mark.parametrize(("acl_op", "denied"), [
    (A.ALL, set(CONCRETE_OPS)),
    (A.READ, {A.READ}),  # a DENY implies nothing: DESCRIBE stays allowed
    (A.ALTER_CONFIGS, {A.ALTER_CONFIGS}),
    (A.DESCRIBE, {A.DESCRIBE}),
    (A.DESCRIBE_CONFIGS, {A.DESCRIBE_CONFIGS}),
])
def test_what_a_deny_denies(acl_op: AclOperation, denied: set[AclOperation]) -> None:
    """AuthorizerTest.testAclInheritance (deny half): against an ALLOW ALL."""
    auth = authorizer(acl(CLUSTER, CLUSTER_NAME, LITERAL, "User:alice", "*", acl_op, DENY),
                      acl(CLUSTER, CLUSTER_NAME, LITERAL, "User:alice", "*", A.ALL, ALLOW))
    for op in CONCRETE_OPS:
        assert auth.authorize("User:alice", HOST1, op, CLUSTER, CLUSTER_NAME) is (
            op not in denied), op


def test_deny_takes_precedence_over_allow() -> None:
    """AuthorizerTest.testDenyTakesPrecedence, and the decision names the DENY."""
    deny = acl(TOPIC, "t", LITERAL, "User:alice", HOST1, A.ALL, DENY)
    auth = authorizer(acl(TOPIC, "t", LITERAL, "User:*", "*", A.ALL, ALLOW), deny)
    decision = auth.decide("User:alice", HOST1, A.READ, TOPIC, "t")
    assert not decision.allowed
    assert decision.rule is Rule.MATCHING_ACL and decision.acl == (uuid.UUID(int=2), deny)
    assert auth.authorize("User:alice", HOST2, A.READ, TOPIC, "t")


def test_deny_precedence_with_operation_all() -> None:
    """StandardAuthorizerTest.testDenyPrecedenceWithOperationAll: literal DENY ALL on "foo"
    beats prefixed ALLOWs on "foo", which still apply to "foobar"."""
    auth = authorizer(acl(TOPIC, "foo", LITERAL, "User:alice", "*", A.ALL, DENY),
                      acl(TOPIC, "foo", PREFIXED, "User:alice", "*", A.READ, ALLOW),
                      acl(TOPIC, "foo", LITERAL, "User:*", "*", A.ALL, DENY),
                      acl(TOPIC, "foo", PREFIXED, "User:*", "*", A.DESCRIBE, ALLOW))
    assert [auth.authorize("User:alice", HOST1, op, TOPIC, name) for op, name in [
        (A.WRITE, "foo"), (A.READ, "foo"), (A.DESCRIBE, "foo"), (A.READ, "foobar")]] == [
        False, False, False, True]
    assert [auth.authorize("User:bob", HOST1, op, TOPIC, name) for op, name in [
        (A.DESCRIBE, "foo"), (A.READ, "foo"), (A.WRITE, "foo"), (A.DESCRIBE, "foobaz"),
        (A.READ, "foobaz")]] == [False, False, False, True, False]


def test_topic_acls_with_operation_all() -> None:
    """StandardAuthorizerTest.testTopicAclWithOperationAll."""
    auth = authorizer(acl(TOPIC, "foo", LITERAL, "User:*", "*", A.ALL, ALLOW),
                      acl(TOPIC, "bar", PREFIXED, "User:alice", "*", A.ALL, ALLOW),
                      acl(TOPIC, "baz", LITERAL, "User:bob", "*", A.ALL, ALLOW))

    def results(principal: str, actions: list[tuple[AclOperation, str]]) -> list[bool]:
        return [auth.authorize(principal, HOST1, op, TOPIC, name) for op, name in actions]

    assert results("User:alice", [(A.WRITE, "foo"), (A.DESCRIBE_CONFIGS, "bar"),
                                  (A.DESCRIBE, "baz")]) == [True, True, False]
    assert results("User:bob", [(A.WRITE, "foo"), (A.READ, "bar"),
                                (A.DESCRIBE, "baz")]) == [True, False, True]
    assert results("User:malory", [(A.DESCRIBE, "foo"), (A.WRITE, "bar"),
                                   (A.READ, "baz")]) == [True, False, False]


def test_many_acls_of_every_pattern() -> None:
    """StandardAuthorizerTest.testAuthorizationWithManyAcls: overlapping prefixes ("alp"
    DENY under "alpha" ALLOW), literals that are prefixes of others, group wildcards."""
    auth = authorizer(acl(TOPIC, "green2", LITERAL, "User:*", "*", A.READ, ALLOW),
                      acl(TOPIC, "green", PREFIXED, "User:bob", "*", A.READ, ALLOW),
                      acl(TOPIC, "betamax4", LITERAL, "User:bob", "*", A.READ, ALLOW),
                      acl(TOPIC, "betamax", LITERAL, "User:bob", "*", A.READ, ALLOW),
                      acl(TOPIC, "beta", PREFIXED, "User:*", "*", A.READ, ALLOW),
                      acl(TOPIC, "alpha", PREFIXED, "User:*", "*", A.READ, ALLOW),
                      acl(TOPIC, "alp", PREFIXED, "User:bob", "*", A.READ, DENY),
                      acl(GROUP, "*", LITERAL, "User:bob", "*", A.WRITE, ALLOW),
                      acl(GROUP, "wheel", LITERAL, "User:*", "*", A.WRITE, DENY))
    bob = "User:bob"
    assert auth.authorize(bob, HOST1, A.READ, TOPIC, "green1")
    assert not auth.authorize(bob, HOST1, A.WRITE, GROUP, "wheel")
    assert not auth.authorize(bob, HOST1, A.READ, TOPIC, "alpha")
    assert auth.authorize(bob, HOST1, A.WRITE, GROUP, "arbitrary")
    assert not auth.authorize(bob, HOST1, A.READ, TOPIC, "ala")
    assert auth.authorize("User:alice", HOST1, A.READ, TOPIC, "alpha")
    assert auth.authorize("User:alice", HOST1, A.READ, TOPIC, "betamax4")
    assert not auth.authorize("User:alice", HOST1, A.READ, TOPIC, "bet")
    assert auth.decide(bob, HOST1, A.READ, TOPIC, "alpha").acl == (
        uuid.UUID(int=7), acl(TOPIC, "alp", PREFIXED, bob, "*", A.READ, DENY))


def test_authorize_refuses_filter_codes() -> None:
    auth = authorizer()
    for op, resource_type in [(A.ANY, TOPIC), (A.UNKNOWN, TOPIC), (A.READ, RT.ANY),
                              (A.READ, RT.UNKNOWN)]:
        with pytest.raises(ValueError, match="must be concrete"):
            auth.authorize("User:a", HOST1, op, resource_type, "t")
        with pytest.raises(ValueError, match="must be concrete"):
            auth.authorize_by_resource_type("User:a", HOST1, op, resource_type)


def test_authorized_operations_are_the_supported_ones_allowed() -> None:
    auth = authorizer(acl(TOPIC, "t", LITERAL, "User:a", "*", A.READ, ALLOW),
                      acl(GROUP, "g", LITERAL, "User:a", "*", A.ALL, ALLOW),
                      acl(GROUP, "g", LITERAL, "User:a", "*", A.DELETE, DENY))
    assert auth.authorized_operations("User:a", HOST1, TOPIC, "t") == {A.READ, A.DESCRIBE}
    assert auth.authorized_operations("User:a", HOST1, GROUP, "g") == {A.READ, A.DESCRIBE}
    assert auth.authorized_operations("User:b", HOST1, TOPIC, "t") == frozenset()
    assert auth.authorized_operations("User:superman", HOST1, CLUSTER, CLUSTER_NAME) == {
        A.CREATE, A.CLUSTER_ACTION, A.DESCRIBE_CONFIGS, A.ALTER_CONFIGS, A.IDEMPOTENT_WRITE,
        A.ALTER, A.DESCRIBE}


# -- authorize_by_resource_type: explicit cases ----------------------------------------------

U1 = "User:user1"


class Acls:
    """An authorizer whose ACLs change as Kafka's AuthorizerTest adds and removes them."""

    def __init__(self, super_users: Iterable[str] = (), allow_everyone: bool = False) -> None:
        self.auth = Authorizer(AclIndex.EMPTY, frozenset(super_users), allow_everyone)
        self._ids = iter(ids())

    def add(self, *bindings: AclBinding) -> None:
        self.auth = self.auth.with_acls(self.auth.acls.updated(
            added=[(next(self._ids), b) for b in bindings]))

    def remove(self, *bindings: AclBinding) -> None:
        gone = [acl_id for b in bindings if (acl_id := self.auth.acls.find(b)) is not None]
        self.auth = self.auth.with_acls(self.auth.acls.updated(removed=gone))

    def any_of(self, op: AclOperation, resource_type: ResourceType, principal: str = U1,
               host: str = HOST1) -> bool:
        return self.auth.authorize_by_resource_type(principal, host, op, resource_type)


def test_by_type_multiple_add_and_remove() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypeMultipleAddAndRemove."""
    acls = Acls()
    allow = acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.READ, ALLOW)
    deny = acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.READ, DENY)
    for _ in range(3):
        assert not acls.any_of(A.READ, TOPIC)
        acls.add(allow)
        assert acls.any_of(A.READ, TOPIC)
        for _ in range(3):
            acls.add(deny)
            assert not acls.any_of(A.READ, TOPIC)
            acls.remove(deny)
            assert acls.any_of(A.READ, TOPIC)
        acls.remove(allow)
        assert not acls.any_of(A.READ, TOPIC)


def test_by_type_unrelated_denies_do_not_dominate_an_allow() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypeIsolationUnrelatedDenyWontDominateAllow."""
    acls = Acls()
    u2 = "User:user2"
    acls.add(acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.READ, DENY),
             acl(TOPIC, "sb1", LITERAL, u2, HOST1, A.READ, DENY),
             acl(TOPIC, "sb1", LITERAL, U1, HOST2, A.WRITE, DENY),
             acl(TOPIC, "sb1", LITERAL, u2, HOST2, A.READ, DENY),
             acl(TOPIC, "sb1", LITERAL, U1, HOST2, A.READ, ALLOW),
             acl(TOPIC, "sb2", LITERAL, U1, HOST2, A.READ, DENY),
             acl(GROUP, "s", PREFIXED, U1, HOST2, A.READ, DENY))
    for resource_type in (TOPIC, GROUP, TXN, CLUSTER):
        assert not acls.any_of(A.READ, resource_type, host=HOST1)
    assert acls.any_of(A.READ, TOPIC, host=HOST2)


def test_by_type_deny_takes_precedence() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypeDenyTakesPrecedence."""
    acls = Acls()
    acls.add(acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.WRITE, ALLOW))
    assert acls.any_of(A.WRITE, TOPIC)
    acls.add(acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.WRITE, DENY))
    assert not acls.any_of(A.WRITE, TOPIC)


def test_by_type_a_denied_prefix_dominates_longer_allowed_ones() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypePrefixedResourceDenyDominate."""
    acls = Acls()

    def group(prefix: str, permission: PermissionType) -> AclBinding:
        return acl(GROUP, prefix, PREFIXED, U1, HOST1, A.READ, permission)

    acls.add(group("abcde", ALLOW))
    assert acls.any_of(A.READ, GROUP)
    acls.add(group("abcd", DENY))
    assert not acls.any_of(A.READ, GROUP)
    acls.add(group("abc", ALLOW))
    assert acls.any_of(A.READ, GROUP)  # "abcX" is allowed
    acls.add(group("a", DENY))
    assert not acls.any_of(A.READ, GROUP)
    acls.add(group("ab", ALLOW))
    assert not acls.any_of(A.READ, GROUP)


def test_by_type_a_literal_allow_is_dominated_by_its_literal_or_a_prefix_deny() -> None:
    acls = Acls()
    acls.add(acl(GROUP, "abc", LITERAL, U1, HOST1, A.READ, ALLOW),
             acl(GROUP, "abc", LITERAL, U1, HOST1, A.READ, DENY))
    assert not acls.any_of(A.READ, GROUP)
    acls.add(acl(GROUP, "abd", LITERAL, U1, HOST1, A.READ, ALLOW))
    assert acls.any_of(A.READ, GROUP)
    acls.add(acl(GROUP, "ab", PREFIXED, U1, HOST1, A.READ, DENY))
    assert not acls.any_of(A.READ, GROUP)
    # A literal DENY does not dominate a prefixed ALLOW of the same name: "abX" is allowed.
    acls = Acls()
    acls.add(acl(GROUP, "ab", PREFIXED, U1, HOST1, A.READ, ALLOW),
             acl(GROUP, "ab", LITERAL, U1, HOST1, A.READ, DENY))
    assert acls.any_of(A.READ, GROUP)


def test_by_type_a_wildcard_deny_dominates_everything() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypeWildcardResourceDenyDominate."""
    acls = Acls()
    allow_ace = (U1, HOST1, A.WRITE, ALLOW)
    acls.add(acl(GROUP, "hello", PREFIXED, *allow_ace))
    assert acls.any_of(A.WRITE, GROUP)
    acls.add(acl(GROUP, "*", LITERAL, U1, HOST1, A.WRITE, DENY))
    assert not acls.any_of(A.WRITE, GROUP)
    acls.add(acl(GROUP, "*", LITERAL, *allow_ace))
    assert not acls.any_of(A.WRITE, GROUP)
    acls.add(acl(GROUP, "aloha", LITERAL, *allow_ace))
    assert not acls.any_of(A.WRITE, GROUP)


def test_by_type_a_wildcard_allow_suffices() -> None:
    acls = Acls()
    acls.add(acl(TXN, "*", LITERAL, "User:*", "*", A.WRITE, ALLOW),
             acl(TXN, "t", PREFIXED, U1, "*", A.WRITE, DENY))
    assert acls.any_of(A.WRITE, TXN)


def test_by_type_with_operation_all() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypeWithAllOperationAce."""
    acls = Acls()
    assert not acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.WRITE, DENY),
             acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.ALL, ALLOW))
    assert acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.ALL, DENY))
    assert not acls.any_of(A.READ, TOPIC)


def test_by_type_with_the_host_wildcard() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypeWithAllHostAce."""
    acls = Acls()
    assert not acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.READ, ALLOW))
    assert acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb1", LITERAL, U1, "*", A.READ, DENY))
    assert not acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb2", LITERAL, U1, HOST1, A.READ, DENY))
    assert not acls.any_of(A.READ, TOPIC)
    assert not acls.any_of(A.READ, TOPIC, host=HOST2)
    acls.add(acl(TOPIC, "sb2", LITERAL, U1, "*", A.READ, ALLOW))
    assert acls.any_of(A.READ, TOPIC, host=HOST2)
    acls.add(acl(TOPIC, "sb2", LITERAL, U1, "*", A.READ, DENY))
    assert not acls.any_of(A.READ, TOPIC, host=HOST2)


def test_by_type_with_the_principal_wildcard() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypeWithAllPrincipalAce."""
    acls = Acls()
    u2 = "User:user2"
    assert not acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.READ, ALLOW))
    assert acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb1", LITERAL, "User:*", HOST1, A.READ, DENY))
    assert not acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb2", LITERAL, U1, HOST1, A.READ, DENY))
    assert not acls.any_of(A.READ, TOPIC)
    assert not acls.any_of(A.READ, TOPIC, principal=u2)
    acls.add(acl(TOPIC, "sb2", LITERAL, "User:*", HOST1, A.READ, ALLOW))
    assert acls.any_of(A.READ, TOPIC, principal=u2)
    acls.add(acl(TOPIC, "sb2", LITERAL, "User:*", HOST1, A.READ, DENY))
    assert not acls.any_of(A.READ, TOPIC, principal=u2)


def test_by_type_super_users_pass_every_deny() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypeSuperUserHasAccess."""
    acls = Acls(super_users=["User:superuser1"])
    for resource_type in (TOPIC, CLUSTER, GROUP, TXN):
        acls.add(acl(resource_type, "*", LITERAL, "User:*", "*", A.ALL, DENY))
    for resource_type in (TOPIC, CLUSTER, GROUP, TXN):
        assert acls.any_of(A.READ, resource_type, principal="User:superuser1")
        assert not acls.any_of(A.READ, resource_type)


def test_by_type_with_allow_everyone() -> None:
    """AuthorizerTest.testAuthorizeByResourceTypeEnableAllowEveryOne, and the quirk it
    rests on: the probe resource "hardcode" has no ACLs, so the default allows even though a
    DENY covers every other ACL'd topic."""
    acls = Acls(allow_everyone=True)
    assert acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb1", LITERAL, U1, HOST1, A.READ, DENY))
    assert acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "hard", PREFIXED, "User:*", "*", A.READ, DENY))
    assert not acls.any_of(A.READ, TOPIC)
    acls.add(acl(TOPIC, "sb2", LITERAL, U1, HOST1, A.READ, ALLOW))
    assert acls.any_of(A.READ, TOPIC)
    # Any wildcard ACL applies to "hardcode" too, so the default no longer decides there.
    acls = Acls(allow_everyone=True)
    acls.add(acl(TOPIC, "*", LITERAL, "User:other", "*", A.READ, ALLOW))
    assert not acls.any_of(A.READ, TOPIC)
    assert acls.any_of(A.READ, GROUP)


def test_by_type_ignores_implied_operations_past_the_probe() -> None:
    # Kafka's loop compares operations exactly (or ALL): ALLOW READ on a literal topic lets
    # authorize() describe it, but not authorizeByResourceType(DESCRIBE).
    acls = Acls()
    acls.add(acl(TOPIC, "t", LITERAL, U1, "*", A.READ, ALLOW))
    assert acls.auth.authorize(U1, HOST1, A.DESCRIBE, TOPIC, "t")
    assert not acls.any_of(A.DESCRIBE, TOPIC)
    # ...while on the wildcard the probe resource catches it.
    acls.add(acl(TOPIC, "*", LITERAL, U1, "*", A.READ, ALLOW))
    assert acls.any_of(A.DESCRIBE, TOPIC)


def test_idempotent_init_producer_id_decision() -> None:
    """The KafkaApis rule the handlers will apply (AuthorizerIntegrationTest's
    shouldIdempotentProducerFailInInitProducerId): IDEMPOTENT_WRITE on the cluster, or
    WRITE on at least one topic."""
    def may_init(auth: Authorizer) -> bool:
        return (auth.authorize(U1, HOST1, A.IDEMPOTENT_WRITE, CLUSTER, CLUSTER_NAME)
                or auth.authorize_by_resource_type(U1, HOST1, A.WRITE, TOPIC))

    acls = Acls()
    assert not may_init(acls.auth)
    acls.add(acl(TOPIC, "t", PREFIXED, U1, "*", A.WRITE, ALLOW))
    assert may_init(acls.auth)
    acls.add(acl(TOPIC, "*", LITERAL, U1, "*", A.WRITE, DENY))
    assert not may_init(acls.auth)
    acls.add(acl(CLUSTER, CLUSTER_NAME, LITERAL, U1, "*", A.IDEMPOTENT_WRITE, ALLOW))
    assert may_init(acls.auth)


# -- properties --------------------------------------------------------------------------------

NAMES = ["a", "ab", "abc", "b", "ba", "*"]
PRINCIPALS = ["User:alice", "User:bob", "Group:ops", "User:*", "Group:*"]
ASKERS = ["User:alice", "User:bob", "Group:ops", "User:root"]
HOSTS = ["10.0.0.1", "10.0.0.2", "*"]
OPS = [A.ALL, A.READ, A.WRITE, A.DESCRIBE, A.ALTER, A.ALTER_CONFIGS, A.DESCRIBE_CONFIGS,
       A.CREATE]
ASKED_OPS = [op for op in OPS if op is not A.ALL]
TYPES = [TOPIC, GROUP]

bindings = st.builds(
    acl, st.sampled_from(TYPES), st.sampled_from(NAMES), st.sampled_from([LITERAL, PREFIXED]),
    st.sampled_from(PRINCIPALS), st.sampled_from(HOSTS), st.sampled_from(OPS),
    st.sampled_from([ALLOW, DENY]))


def applies(pattern: ResourcePattern, resource_type: ResourceType, name: str) -> bool:
    if pattern.resource_type != resource_type:
        return False
    if pattern.pattern_type is PREFIXED:
        return name.startswith(pattern.name)
    return pattern.name in (name, "*")


def reference_authorize(acls: list[AclBinding], super_users: frozenset[str],
                        allow_everyone: bool, principal: str, host: str, op: AclOperation,
                        resource_type: ResourceType, name: str) -> bool:
    """The rules as the module docstring states them, over every ACL."""
    if principal in super_users:
        return True
    applying = [b for b in acls if applies(b.pattern, resource_type, name)]
    if not applying:
        return allow_everyone
    implied = {A.DESCRIBE: {A.READ, A.WRITE, A.DELETE, A.ALTER},
               A.DESCRIBE_CONFIGS: {A.ALTER_CONFIGS}}.get(op, set())
    allowed = False
    for b in applying:
        e = b.entry
        if e.principal not in (principal, "User:*") or e.host not in (host, "*"):
            continue
        if e.permission is DENY and e.operation in (op, A.ALL):
            return False
        if e.permission is ALLOW and (e.operation in (op, A.ALL) or e.operation in implied):
            allowed = True
    return allowed


@settings(max_examples=400, deadline=None)
@given(st.lists(bindings, max_size=25), st.sets(st.sampled_from(ASKERS), max_size=1),
       st.booleans(), st.data())
def test_authorize_agrees_with_a_scan_of_every_acl(
        acls: list[AclBinding], super_users: set[str], allow_everyone: bool,
        data: st.DataObject) -> None:
    full = index(*acls)
    # Take some out again, so the index is also checked after removals.
    keep = data.draw(st.lists(st.booleans(), min_size=len(acls), max_size=len(acls)))
    items = list(full.items())
    removed = [acl_id for (acl_id, _), kept in zip(items, keep, strict=True) if not kept]
    kept = [b for (_, b), kept in zip(items, keep, strict=True) if kept]
    auth = Authorizer(full.updated(removed=removed), frozenset(super_users), allow_everyone)
    for principal, host, op, resource_type, name in itertools.product(
            ASKERS, HOSTS[:2], ASKED_OPS, TYPES, NAMES + ["abcd", "c", ""]):
        assert auth.authorize(principal, host, op, resource_type, name) == reference_authorize(
            kept, frozenset(super_users), allow_everyone, principal, host, op, resource_type,
            name), (principal, host, op, resource_type, name)


# Names that witness "some resource is authorized": every ACL name, each prefix extended
# by a character no generated name has (so only that prefix's and the wildcard's ACLs
# apply to it), and the probe name Kafka's authorizeByResourceType tries first.
WITNESSES = NAMES + [n + "z" for n in NAMES] + ["zz", "hardcode"]


@settings(max_examples=400, deadline=None)
@given(st.lists(bindings, max_size=25), st.booleans())
def test_authorize_by_resource_type_means_some_resource_is_authorized(
        acls: list[AclBinding], allow_everyone: bool) -> None:
    auth = Authorizer(index(*acls), frozenset(), allow_everyone)
    for principal, host, op, resource_type in itertools.product(
            ASKERS, HOSTS[:2], ASKED_OPS, TYPES):
        some = auth.authorize_by_resource_type(principal, host, op, resource_type)
        witnessed = any(auth.authorize(principal, host, op, resource_type, name)
                        for name in WITNESSES)
        # A yes is always backed by an authorized resource.
        if some:
            assert witnessed, (principal, host, op, resource_type)
        # A no is exact when nothing implies the operation (implied operations count in
        # authorize but not in Kafka's by-type scan) and the default does not allow.
        if op not in (A.DESCRIBE, A.DESCRIBE_CONFIGS) and not allow_everyone:
            assert some == witnessed, (principal, host, op, resource_type)

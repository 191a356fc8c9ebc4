"""CreateAcls and DeleteAcls on the controller, as Kafka's AclControlManager does them."""

from __future__ import annotations

import random

from odradek.controller.metadata import MetadataImage
from odradek.controller.metadata.acls import AclFilter, StandardAcl
from odradek.controller.metadata.requests import CreateAclResult, DeleteAclsResult
from odradek.controller.quorum.acls import create_acls, delete_acls
from odradek.controller.service import convert
from tests.unit.controller.quorum.mdtest_helpers import applied

TOPIC, GROUP = 2, 3
ANY, MATCH, LITERAL, PREFIXED = 1, 2, 3, 4
READ, WRITE = 3, 4
DENY, ALLOW = 2, 3
OK = CreateAclResult(0)


def acl(name: str = "orders", principal: str = "User:alice", pattern: int = LITERAL,
        op: int = READ, rtype: int = TOPIC) -> StandardAcl:
    return StandardAcl(rtype, name, pattern, principal, "*", op, ALLOW)


def every(rtype: int = ANY, name: str | None = None, pattern: int = ANY,
          principal: str | None = None) -> AclFilter:
    return AclFilter(rtype, name, pattern, principal, None, ANY, ANY)


def test_create_gives_each_new_acl_an_id_and_skips_copies() -> None:
    rng = random.Random(1)
    image, results = applied(MetadataImage.EMPTY, create_acls(
        MetadataImage.EMPTY, [acl(), acl("pay-", pattern=PREFIXED), acl()], rng))
    assert results == [OK, OK, OK]
    assert sorted(image.acls.values(), key=str) == sorted([acl(), acl("pay-", pattern=PREFIXED)],
                                                          key=str)
    # An ACL that exists succeeds again, without a second copy.
    result = create_acls(image, [acl(), acl(op=WRITE)], rng)
    assert result.response == [OK, OK] and len(result.records) == 1
    image, _ = applied(image, result)
    assert len(image.acls) == 3 and len(set(image.acls)) == 3


def test_create_refuses_what_no_acl_may_be() -> None:
    bad = [StandardAcl(1, "t", LITERAL, "User:a", "*", READ, ALLOW),  # ANY resource type
           StandardAcl(TOPIC, "t", MATCH, "User:a", "*", READ, ALLOW),
           StandardAcl(TOPIC, "t", LITERAL, "User:a", "*", 1, ALLOW),  # ANY operation
           StandardAcl(TOPIC, "t", LITERAL, "User:a", "*", READ, 1),
           StandardAcl(TOPIC, "", LITERAL, "User:a", "*", READ, ALLOW),
           StandardAcl(TOPIC, "t", LITERAL, "alice", "*", READ, ALLOW)]
    result = create_acls(MetadataImage.EMPTY, [*bad, acl()], random.Random(1))
    assert [r.error_code for r in result.response] == [42] * len(bad) + [0]
    assert len(result.records) == 1


def test_delete_removes_what_each_filter_matches_once() -> None:
    rng = random.Random(2)
    acls = [acl(), acl("ord", pattern=PREFIXED), acl("*"), acl("g", rtype=GROUP),
            acl(principal="User:bob")]
    image, _ = applied(MetadataImage.EMPTY, create_acls(MetadataImage.EMPTY, acls, rng))
    result = delete_acls(image, [
        AclFilter(TOPIC, "orders", MATCH, "User:alice", None, ANY, ANY),
        AclFilter(TOPIC, "orders", LITERAL, None, None, READ, ALLOW),
        AclFilter(TOPIC, "nothing", LITERAL, None, None, ANY, ANY)])
    matched = [set(r.matching) for r in result.response]
    assert matched == [{acl(), acl("ord", pattern=PREFIXED), acl("*")},
                       {acl(), acl(principal="User:bob")}, set()]
    # acl() matched twice, removed once: four removals in one batch.
    assert len(result.records) == 4
    image, _ = applied(image, result)
    assert list(image.acls.values()) == [acl("g", rtype=GROUP)]
    assert delete_acls(image, [every(GROUP)]).response == [
        DeleteAclsResult(0, None, (acl("g", rtype=GROUP),))]


def test_grpc_conversions_round_trip() -> None:
    a = acl("pay-", pattern=PREFIXED)
    assert convert.acl_from_pb(convert.acl_to_pb(a)) == a
    for f in (every(), AclFilter(TOPIC, "x", MATCH, "User:a", "1.2.3.4", READ, DENY)):
        assert convert.acl_filter_from_pb(convert.acl_filter_to_pb(f)) == f
    r = DeleteAclsResult(0, None, (a, acl()))
    assert convert.delete_acls_result_from_pb(convert.delete_acls_result_to_pb(r)) == r
    c = CreateAclResult(42, "bad")
    assert convert.create_acl_result_from_pb(convert.create_acl_result_to_pb(c)) == c

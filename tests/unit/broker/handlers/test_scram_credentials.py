"""DescribeUserScramCredentials and AlterUserScramCredentials through the real codec, with a
fake node: the image's credentials, and a controller that records what it is asked."""

from __future__ import annotations

import asyncio
from typing import Any

from kio.schema.errors import ErrorCode

from odradek.broker.handlers import scram_credentials
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.security.authorization import Authorization
from odradek.broker.security.authorizer import AclIndex
from odradek.controller.metadata import MetadataDelta, MetadataImage
from odradek.controller.metadata.records import user_scram_credential_record
from odradek.controller.metadata.requests import (
    AlterScramCredentialResult,
    ControllerUnavailable,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)

SERVED = {s.api_key: (s.min_version, s.max_version) for s in scram_credentials.APIS}


class Controller:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[list[ScramCredentialDeletion], list[ScramCredentialUpsertion]]] = []
        self.fail = fail

    async def alter_user_scram_credentials(self, deletions: Any, upsertions: Any
                                           ) -> list[AlterScramCredentialResult]:
        self.calls.append((list(deletions), list(upsertions)))
        if self.fail:
            raise ControllerUnavailable("AlterUserScramCredentials", 1.0, [])
        return [AlterScramCredentialResult(d.user, ErrorCode.resource_not_found, "gone")
                for d in deletions] + [AlterScramCredentialResult(u.user, 0) for u in upsertions]


class Node:
    def __init__(self, image: MetadataImage, controller: Controller | None = None,
                 authorizer: bool = False) -> None:
        self.image = image
        self.controller = controller or Controller()
        # With the authorizer on, only User:admin may describe or alter credentials.
        self.authorization = Authorization(authorizer, frozenset({"User:admin"}), False,
                                           lambda: AclIndex.EMPTY)


def image_with(*creds: tuple[str, int, int]) -> MetadataImage:
    delta = MetadataDelta(MetadataImage.EMPTY)
    for i, (user, mechanism, iterations) in enumerate(creds):
        delta.replay(user_scram_credential_record(user, mechanism, b"s", b"k", b"v", iterations),
                     i)
    return delta.apply()


def call(node: Node, api_key: int, data: dict[str, Any],
         principal: str = "User:ANONYMOUS") -> Any:
    frame = codec.encode_request(codec.build_request(api_key, 0, data), 5, "t")
    req = codec.decode_request(frame[4:], SERVED).body
    handler = {s.api_key: s.handler for s in scram_credentials.APIS}[api_key]
    ctx = RequestContext(api_key, 0, 5, "t", "h", 1, principal=principal)
    payload = asyncio.run(handler(node, ctx, req))  # type: ignore[arg-type]
    out = bytes(codec.encode_response(api_key, 0, 5, payload))
    return codec.decode_response(out[4:], api_key, 0)[1]


def describe(node: Node, users: list[str] | None) -> dict[str, tuple[int, Any]]:
    response = call(node, 50, {"users": None if users is None else [{"name": u} for u in users]})
    assert response.error_code == ErrorCode.none
    return {r.user: (int(r.error_code), r.error_message if r.error_code else
                     [(int(c.mechanism), int(c.iterations)) for c in r.credential_infos])
            for r in response.results}


def test_describe_all_users_with_null_or_empty() -> None:
    node = Node(image_with(("bob", 2, 8192), ("alice", 1, 4096), ("bob", 1, 5000)))
    expected = {"alice": (0, [(1, 4096)]), "bob": (0, [(1, 5000), (2, 8192)])}
    assert describe(node, None) == expected
    assert describe(node, []) == expected
    assert describe(Node(MetadataImage.EMPTY), None) == {}


def test_describe_named_users_missing_and_duplicate() -> None:
    node = Node(image_with(("alice", 1, 4096), ("bob", 1, 4096)))
    got = describe(node, ["alice", "carol", "bob", "bob"])
    assert got == {
        "alice": (0, [(1, 4096)]),
        "carol": (ErrorCode.resource_not_found,
                  "Attempt to describe a user credential that does not exist: carol"),
        "bob": (ErrorCode.duplicate_resource,
                "Cannot describe SCRAM credentials for the same user twice in a single "
                "request: bob"),
    }


def test_alter_forwards_to_the_controller_and_answers_its_results() -> None:
    node = Node(MetadataImage.EMPTY)
    response = call(node, 51, {
        "deletions": [{"name": "alice", "mechanism": 1}],
        "upsertions": [{"name": "bob", "mechanism": 2, "iterations": 8192, "salt": b"salt",
                        "salted_password": b"sp"}]})
    assert [(r.user, int(r.error_code), r.error_message) for r in response.results] == [
        ("alice", ErrorCode.resource_not_found, "gone"), ("bob", 0, None)]
    assert node.controller.calls == [([ScramCredentialDeletion("alice", 1)],
                                      [ScramCredentialUpsertion("bob", 2, 8192, b"salt", b"sp")])]


def test_alter_without_a_controller_answers_a_retriable_error_per_user() -> None:
    node = Node(MetadataImage.EMPTY, Controller(fail=True))
    response = call(node, 51, {
        "deletions": [{"name": "alice", "mechanism": 1}],
        "upsertions": [{"name": "alice", "mechanism": 2, "iterations": 4096, "salt": b"s",
                        "salted_password": b"p"}, {"name": "bob", "mechanism": 1,
                                                   "iterations": 4096, "salt": b"s",
                                                   "salted_password": b"p"}]})
    assert [(r.user, int(r.error_code)) for r in response.results] == [
        ("alice", ErrorCode.request_timed_out), ("bob", ErrorCode.request_timed_out)]


def test_only_principals_allowed_on_the_cluster_describe_or_alter_credentials() -> None:
    node = Node(image_with(("alice", 1, 4096)), authorizer=True)
    denied = call(node, 50, {"users": None}, principal="User:alice")
    assert int(denied.error_code) == 31 and denied.results == ()
    altered = call(node, 51, {"deletions": [{"name": "alice", "mechanism": 1}],
                              "upsertions": []}, principal="User:alice")
    assert [(r.user, int(r.error_code)) for r in altered.results] == [("alice", 31)]
    assert int(call(node, 50, {"users": None}, principal="User:admin").error_code) == 0

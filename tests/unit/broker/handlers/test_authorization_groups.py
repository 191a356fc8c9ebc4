"""The group APIs under the authorizer (Kafka's KafkaApis), against a real group
coordinator: READ on the group for membership and commits, DESCRIBE to fetch offsets and
describe or list groups, DELETE to delete groups or offsets, and the topic checks of
OffsetCommit, OffsetFetch, OffsetDelete and TxnOffsetCommit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode as E

from odradek.broker import acl_operations
from odradek.broker.group.handlers import APIS
from odradek.broker.group.offsets import OffsetCommitEntry
from odradek.broker.kafka import codec
from odradek.broker.security.acl import PatternType
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata import MetadataImage
from tests.unit.broker.group.group_harness import Harness, topic_id, topics_image
from tests.unit.broker.group.test_group_handlers import join_data
from tests.unit.broker.handlers.acl_fixtures import OFF, A, R, acl, authorization, context

JOIN, SYNC, HEARTBEAT, LEAVE = 11, 14, 12, 13
COMMIT, FETCH, LIST, DESCRIBE, DELETE, OFFSET_DELETE, TXN_COMMIT = 8, 9, 16, 15, 42, 47, 28
SPECS = {spec.api_key: spec for spec in APIS}


@dataclass
class Node:
    groups: Any
    authorization: Authorization
    txn_verifier: Any = None
    image: MetadataImage = field(default_factory=topics_image)


def run(test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        await test(await Harness().load_all())

    asyncio.run(main())


async def call(h: Harness, auth: Authorization, api_key: int, version: int,
               data: dict[str, Any], principal: str = "User:alice") -> Any:
    request = codec.build_request(api_key, version, data)
    task = asyncio.ensure_future(SPECS[api_key].handler(
        Node(h.coord, auth), context(api_key, version, principal), request))
    await asyncio.sleep(0)
    body = await asyncio.wait_for(task, 1)
    frame = codec.encode_response(api_key, version, 9, body)
    return codec.decode_response(frame[4:], api_key, version)[1]


def test_membership_needs_read_on_the_group() -> None:
    async def test(h: Harness) -> None:
        auth = authorization([acl("User:alice", A.READ, R.GROUP, "g",
                                  pattern=PatternType.PREFIXED)])
        refused = await call(h, auth, JOIN, 9, join_data(), "User:bob")
        assert (refused.error_code, refused.generation_id, refused.member_id,
                refused.protocol_name) == (E.group_authorization_failed, -1, "", None)
        # Allowed: the coordinator answers (a first join is asked to come back with its id).
        joined = await call(h, auth, JOIN, 9, join_data())
        assert joined.error_code is E.member_id_required
        member = {"group_id": "g", "generation_id": 1, "member_id": joined.member_id}
        resp = await call(h, auth, SYNC, 5, {**member, "protocol_type": "consumer",
                                             "protocol_name": "range", "assignments": []},
                          "User:bob")
        assert (resp.error_code, resp.assignment) == (E.group_authorization_failed, b"")
        resp = await call(h, auth, HEARTBEAT, 4, member, "User:bob")
        assert resp.error_code is E.group_authorization_failed
        resp = await call(h, auth, HEARTBEAT, 4, member)
        assert resp.error_code is not E.group_authorization_failed
        resp = await call(h, auth, LEAVE, 5, {"group_id": "g", "members": [
            {"member_id": joined.member_id}]}, "User:bob")
        assert (resp.error_code, resp.members) == (E.group_authorization_failed, ())
        resp = await call(h, auth, LEAVE, 0, {"group_id": "g", "member_id": "m"}, "User:bob")
        assert resp.error_code is E.group_authorization_failed

    run(test)


def commit_data(group: str, topics: dict[str, int]) -> dict[str, Any]:
    return {"group_id": group, "generation_id_or_member_epoch": -1, "member_id": "",
            "group_instance_id": None, "retention_time": -1,
            "topics": [{"name": t, "partitions": [
                {"partition_index": 0, "committed_offset": o, "committed_leader_epoch": -1,
                 "committed_metadata": ""}]} for t, o in topics.items()]}


def committed(h: Harness, group: str) -> dict[str, int]:
    _, entries = h.coord.offsets.fetch_offsets(group, None)
    return {tp[0]: o.offset for tp, o in entries if o is not None}


def test_offset_commit_needs_read_on_the_group_and_each_topic() -> None:
    async def test(h: Harness) -> None:
        auth = authorization([acl("User:alice", A.READ, R.GROUP, "g"),
                              acl("User:alice", A.READ, R.TOPIC, "t")])
        resp = await call(h, auth, COMMIT, 8, commit_data("g", {"t": 5, "u": 6}))
        assert [(t.name, t.partitions[0].error_code) for t in resp.topics] == [
            ("t", E.none), ("u", E.topic_authorization_failed)]
        assert committed(h, "g") == {"t": 5}
        resp = await call(h, auth, COMMIT, 8, commit_data("other", {"t": 1}))
        assert resp.topics[0].partitions[0].error_code is E.group_authorization_failed
        assert committed(h, "other") == {}
        # Only refused topics: the coordinator is not asked.
        resp = await call(h, auth, COMMIT, 8, commit_data("g", {"u": 9}))
        assert resp.topics[0].partitions[0].error_code is E.topic_authorization_failed

    run(test)


def test_offset_fetch_needs_describe_on_the_group_and_the_topics() -> None:
    async def test(h: Harness) -> None:
        await h.coord.offsets.commit_offsets("g", {("t", 0): OffsetCommitEntry(5),
                                                   ("u", 0): OffsetCommitEntry(6)})
        auth = authorization([acl("User:alice", A.DESCRIBE, R.GROUP, "g"),
                              acl("User:alice", A.READ, R.TOPIC, "t")])
        asked = [{"name": t, "partition_indexes": [0]} for t in ("t", "u")]
        resp = await call(h, auth, FETCH, 8, {"groups": [
            {"group_id": "g", "topics": asked}, {"group_id": "g", "topics": None},
            {"group_id": "h", "topics": None}], "require_stable": False})
        named, every, other = resp.groups
        assert [(t.name, t.partitions[0].committed_offset, t.partitions[0].error_code)
                for t in named.topics] == [("t", 5, E.none),
                                           ("u", -1, E.topic_authorization_failed)]
        assert [t.name for t in every.topics] == ["t"]  # u's offsets are not told
        assert (other.error_code, other.topics) == (E.group_authorization_failed, ())
        resp = await call(h, auth, FETCH, 5, {"group_id": "h", "topics": asked})
        assert (resp.error_code, resp.topics) == (E.group_authorization_failed, ())
        resp = await call(h, auth, FETCH, 1, {"group_id": "h", "topics": asked})
        assert {p.error_code for t in resp.topics for p in t.partitions} == {
            E.group_authorization_failed}
        resp = await call(h, OFF, FETCH, 5, {"group_id": "g", "topics": None})
        assert [t.name for t in resp.topics] == ["t", "u"]

    run(test)


def test_v10_topic_ids_are_authorized_as_their_names() -> None:
    """OffsetCommit/OffsetFetch v10 (topics by id) check the same ACLs on the topics the
    ids name. As in Kafka's KafkaApis, an id the metadata does not know is answered
    UNKNOWN_TOPIC_ID before any topic ACL is looked at, and a known id the principal may
    not use is answered TOPIC_AUTHORIZATION_FAILED by its id, never with its name; a
    refused group refuses every topic, known or not."""
    async def test(h: Harness) -> None:
        unknown = uuid.uuid4()
        auth = authorization([acl("User:alice", A.READ, R.GROUP, "g"),
                              acl("User:alice", A.READ, R.TOPIC, "t")])
        data = {"group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "",
                "topics": [{"topic_id": tid, "partitions": [
                    {"partition_index": 0, "committed_offset": o,
                     "committed_metadata": ""}]}
                    for tid, o in ((topic_id("t"), 5), (topic_id("u"), 6), (unknown, 7))]}
        resp = await call(h, auth, COMMIT, 10, data)
        assert [(t.topic_id, t.partitions[0].error_code) for t in resp.topics] == [
            (topic_id("t"), E.none), (topic_id("u"), E.topic_authorization_failed),
            (unknown, E.unknown_topic_id)]
        assert committed(h, "g") == {"t": 5}
        # The group refused: every topic is, the unknown id too.
        resp = await call(h, auth, COMMIT, 10, data, "User:bob")
        assert {t.partitions[0].error_code for t in resp.topics} == {
            E.group_authorization_failed}
        # No topic ACL at all: known ids are refused, the unknown one is still unknown.
        bob = authorization([acl("User:bob", A.READ, R.GROUP, "g")])
        resp = await call(h, bob, COMMIT, 10, data, "User:bob")
        assert [(t.topic_id, t.partitions[0].error_code) for t in resp.topics] == [
            (topic_id("t"), E.topic_authorization_failed),
            (topic_id("u"), E.topic_authorization_failed), (unknown, E.unknown_topic_id)]
        assert committed(h, "g") == {"t": 5}

        await h.coord.offsets.commit_offsets("g", {("u", 0): OffsetCommitEntry(6)})
        auth = authorization([acl("User:alice", A.DESCRIBE, R.GROUP, "g"),
                              acl("User:alice", A.DESCRIBE, R.TOPIC, "t")])
        asked = [{"topic_id": tid, "partition_indexes": [0]}
                 for tid in (topic_id("t"), topic_id("u"), unknown)]
        resp = await call(h, auth, FETCH, 10, {"groups": [
            {"group_id": "g", "topics": asked}, {"group_id": "g", "topics": None},
            {"group_id": "h", "topics": asked}]})
        named, every, other = resp.groups
        assert [(t.topic_id, t.partitions[0].committed_offset, t.partitions[0].error_code)
                for t in named.topics] == [
            (topic_id("t"), 5, E.none), (topic_id("u"), -1, E.topic_authorization_failed),
            (unknown, -1, E.unknown_topic_id)]
        assert [t.topic_id for t in every.topics] == [topic_id("t")]  # u's are not told
        assert (other.error_code, other.topics) == (E.group_authorization_failed, ())

    run(test)


def test_describe_list_and_delete_groups() -> None:
    async def test(h: Harness) -> None:
        await h.stable_group("g", 1)
        await h.stable_group("h", 1)
        auth = authorization([acl("User:alice", A.READ, R.GROUP, "g"),
                              acl("User:alice", A.DELETE, R.GROUP, "h"),
                              acl("User:ops", A.DESCRIBE, R.CLUSTER)])
        resp = await call(h, auth, DESCRIBE, 5, {"groups": ["g", "x"],
                                                 "include_authorized_operations": True})
        g, x = resp.groups
        assert (g.error_code, g.group_state) == (E.none, "Stable")
        assert g.authorized_operations == acl_operations.bits(frozenset({A.READ, A.DESCRIBE}))
        assert (x.error_code, x.group_state, x.authorized_operations) == (
            E.group_authorization_failed, "", acl_operations.OMITTED)
        listed = await call(h, auth, LIST, 4, {"states_filter": []})
        assert [gr.group_id for gr in listed.groups] == ["g", "h"]  # DELETE implies DESCRIBE
        listed = await call(h, auth, LIST, 4, {"states_filter": []}, "User:bob")
        assert listed.groups == ()
        listed = await call(h, auth, LIST, 4, {"states_filter": []}, "User:ops")
        assert sorted(gr.group_id for gr in listed.groups) == ["g", "h"]
        resp = await call(h, auth, DELETE, 2, {"groups_names": ["g", "h", "g"]})
        assert [(r.group_id, r.error_code) for r in resp.results] == [
            ("g", E.group_authorization_failed), ("h", E.non_empty_group)]

    run(test)


def test_offset_delete_needs_delete_on_the_group_and_read_on_the_topics() -> None:
    async def test(h: Harness) -> None:
        await h.coord.offsets.commit_offsets("g", {("t", 0): OffsetCommitEntry(5),
                                                   ("u", 0): OffsetCommitEntry(6)})
        data = {"group_id": "g", "topics": [{"name": t, "partitions": [{"partition_index": 0}]}
                                            for t in ("t", "u")]}
        auth = authorization([acl("User:alice", A.DELETE, R.GROUP, "g"),
                              acl("User:alice", A.READ, R.TOPIC, "t")])
        resp = await call(h, auth, OFFSET_DELETE, 0, data, "User:bob")
        assert (resp.error_code, resp.topics) == (E.group_authorization_failed, ())
        resp = await call(h, auth, OFFSET_DELETE, 0, data)
        assert resp.error_code is E.none
        assert [(t.name, t.partitions[0].error_code) for t in resp.topics] == [
            ("t", E.none), ("u", E.topic_authorization_failed)]
        await h.settle()
        assert committed(h, "g") == {"u": 6}

    run(test)


def txn_commit_data(topics: list[str]) -> dict[str, Any]:
    return {"transactional_id": "tx", "group_id": "g", "producer_id": 4000,
            "producer_epoch": 3, "generation_id": -1, "member_id": "",
            "group_instance_id": None,
            "topics": [{"name": t, "partitions": [
                {"partition_index": 0, "committed_offset": 7, "committed_leader_epoch": -1,
                 "committed_metadata": ""}]} for t in topics]}


def test_txn_offset_commit_needs_the_id_the_group_and_the_topics() -> None:
    async def test(h: Harness) -> None:
        group_and_topic = [acl("User:alice", A.READ, R.GROUP, "g"),
                           acl("User:alice", A.READ, R.TOPIC, "t")]
        txn = acl("User:alice", A.WRITE, R.TRANSACTIONAL_ID, "tx")
        data = txn_commit_data(["t", "u"])

        async def errors(acls: list[Any]) -> list[tuple[str, E]]:
            resp = await call(h, authorization(acls), TXN_COMMIT, 3, data)
            return [(t.name, t.partitions[0].error_code) for t in resp.topics]

        assert await errors(group_and_topic) == [
            ("t", E.transactional_id_authorization_failed),
            ("u", E.transactional_id_authorization_failed)]
        assert await errors([txn, acl("User:alice", A.READ, R.TOPIC, "t")]) == [
            ("t", E.group_authorization_failed), ("u", E.group_authorization_failed)]
        assert await errors([txn, *group_and_topic]) == [
            ("t", E.none), ("u", E.topic_authorization_failed)]
        assert h.coord.offsets.unstable_partitions("g") == {("t", 0)}

    run(test)

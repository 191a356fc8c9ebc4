"""The Kafka API handlers, driven with real kio requests of every served version."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from kio.schema.errors import ErrorCode as E

from odradek.broker.group.handlers import APIS
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.controller.metadata import MetadataImage
from tests.unit.broker.group.group_harness import (
    TOPICS,
    Harness,
    subscription,
    topic_id,
    topics_image,
)
from tests.unit.broker.handlers.acl_fixtures import OFF

JOIN, SYNC, HEARTBEAT, LEAVE = 11, 14, 12, 13
COMMIT, FETCH, LIST, DESCRIBE, DELETE, OFFSET_DELETE = 8, 9, 16, 15, 42, 47
TXN_COMMIT = 28
CG_HEARTBEAT, CG_DESCRIBE = 68, 69
SPECS = {spec.api_key: spec for spec in APIS}


@dataclass
class FakeNode:
    groups: Any
    authorization: Any = OFF
    # The harness's topics, as the node's metadata knows them (OffsetCommit/OffsetFetch
    # v10 resolve topic ids in it).
    image: MetadataImage = field(default_factory=topics_image)


async def call(
    h: Harness, api_key: int, version: int, data: dict[str, Any], *, advance_ms: int = 0,
    image: MetadataImage | None = None,
) -> Any:
    """Build the request, run the handler (moving the clock if it has to wait), and check
    the response survives the wire (encode + decode) before returning the decoded body.
    ``image``: the node's metadata, when not the harness's topics."""
    request = codec.build_request(api_key, version, data)
    ctx = RequestContext(api_key, version, 7, "test-client", "127.0.0.1", 1)
    node = FakeNode(h.coord) if image is None else FakeNode(h.coord, image=image)
    task = asyncio.ensure_future(SPECS[api_key].handler(node, ctx, request))
    await asyncio.sleep(0)
    if advance_ms:
        await h.advance(advance_ms)
    body = await asyncio.wait_for(task, 1)
    frame = codec.encode_response(api_key, version, 7, body)
    correlation_id, decoded = codec.decode_response(frame[4:], api_key, version)
    assert correlation_id == 7
    return decoded


def join_data(member_id: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "group_id": "g",
        "session_timeout": 10_000,
        "rebalance_timeout": 30_000,
        "member_id": member_id,
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": subscription("t")}],
        **extra,
    }


def test_served_versions() -> None:
    served = {s.api_key: (s.min_version, s.max_version) for s in APIS}
    assert served == {
        JOIN: (0, 9),
        SYNC: (0, 5),
        HEARTBEAT: (0, 4),
        LEAVE: (0, 5),
        COMMIT: (2, 10),
        FETCH: (1, 10),
        LIST: (0, 5),
        DESCRIBE: (0, 6),
        DELETE: (0, 2),
        OFFSET_DELETE: (0, 0),
        TXN_COMMIT: (0, 5),
        CG_HEARTBEAT: (0, 1),
        CG_DESCRIBE: (0, 1),
    }
    for key, (lo, hi) in served.items():
        kio_lo, kio_hi = codec.kio_versions(key) or (0, -1)
        assert kio_lo <= lo and hi <= kio_hi


async def test_consumer_group_lifecycle_through_handlers(harness: Harness) -> None:
    h = await harness.load_all()
    first = await call(h, JOIN, 9, join_data())
    assert first.error_code is E.member_id_required
    member = first.member_id
    assert member.startswith("test-client-")
    joined = await call(h, JOIN, 9, join_data(member), advance_ms=3_000)
    assert joined.error_code is E.none
    assert (joined.generation_id, joined.leader, joined.protocol_name) == (1, member, "range")
    assert joined.protocol_type == "consumer"
    assert [m.member_id for m in joined.members] == [member]

    synced = await call(
        h,
        SYNC,
        5,
        {
            "group_id": "g",
            "generation_id": 1,
            "member_id": member,
            "protocol_type": "consumer",
            "protocol_name": "range",
            "assignments": [{"member_id": member, "assignment": b"mine"}],
        },
    )
    assert synced.error_code is E.none and synced.assignment == b"mine"
    assert synced.protocol_name == "range"

    hb = await call(h, HEARTBEAT, 4, {"group_id": "g", "generation_id": 1, "member_id": member})
    assert hb.error_code is E.none

    commit = await call(
        h,
        COMMIT,
        9,
        {
            "group_id": "g",
            "generation_id_or_member_epoch": 1,
            "member_id": member,
            "topics": [
                {
                    "name": "t",
                    "partitions": [
                        {"partition_index": 0, "committed_offset": 11, "committed_metadata": "x"},
                        {"partition_index": 9, "committed_offset": 1, "committed_metadata": None},
                    ],
                }
            ],
        },
    )
    codes = {p.partition_index: p.error_code for p in commit.topics[0].partitions}
    assert codes == {0: E.none, 9: E.unknown_topic_or_partition}

    fetched = await call(
        h,
        FETCH,
        9,
        {
            "groups": [
                {"group_id": "g", "topics": [{"name": "t", "partition_indexes": [0, 1]}]},
                {"group_id": "g", "topics": None},
                {"group_id": "", "topics": None},
            ],
            "require_stable": True,
        },
    )
    one, everything, anonymous = fetched.groups
    assert [
        (p.partition_index, p.committed_offset, p.metadata) for p in one.topics[0].partitions
    ] == [
        (0, 11, "x"),
        (1, -1, ""),
    ]
    assert [(t.name, [p.committed_offset for p in t.partitions]) for t in everything.topics] == [
        ("t", [11])
    ]
    assert anonymous.error_code is E.none and anonymous.topics == ()

    listed = await call(h, LIST, 5, {"states_filter": ["Stable"], "types_filter": []})
    assert [(g.group_id, g.group_state, g.group_type) for g in listed.groups] == [
        ("g", "Stable", "classic")
    ]
    described = await call(
        h, DESCRIBE, 5, {"groups": ["g", "nope"], "include_authorized_operations": True}
    )
    g, nope = described.groups
    assert (g.group_state, g.protocol_type, g.protocol_data) == ("Stable", "consumer", "range")
    (m,) = g.members
    assert (m.member_id, m.client_id, m.client_host) == (member, "test-client", "/127.0.0.1")
    assert m.member_assignment == b"mine" and m.member_metadata == subscription("t")
    assert g.authorized_operations == 328
    assert (nope.error_code, nope.group_state) == (E.none, "Dead")

    left = await call(h, LEAVE, 5, {"group_id": "g", "members": [{"member_id": member}]})
    assert left.error_code is E.none
    assert [(x.member_id, x.error_code) for x in left.members] == [(member, E.none)]
    await h.settle()

    deleted_offsets = await call(
        h,
        OFFSET_DELETE,
        0,
        {"group_id": "g", "topics": [{"name": "t", "partitions": [{"partition_index": 0}]}]},
    )
    assert deleted_offsets.error_code is E.none
    assert deleted_offsets.topics[0].partitions[0].error_code is E.none

    deleted = await call(h, DELETE, 2, {"groups_names": ["g", "g2"]})
    assert {(r.group_id, r.error_code) for r in deleted.results} == {
        ("g", E.none),
        ("g2", E.group_id_not_found),
    }
    described = await call(h, DESCRIBE, 6, {"groups": ["g"]})
    (gone,) = described.groups
    assert gone.error_code is E.group_id_not_found and gone.error_message


@pytest.mark.parametrize("version", range(0, 10))
async def test_join_sync_heartbeat_every_version(version: int) -> None:
    h = await Harness().load_all()
    member = ""
    if version >= 4:
        first = await call(h, JOIN, version, join_data())
        assert first.error_code is E.member_id_required
        member = first.member_id
    joined = await call(h, JOIN, version, join_data(member), advance_ms=3_000)
    assert joined.error_code is E.none and joined.generation_id == 1
    member = joined.member_id
    sync_version = min(version, 5)
    synced = await call(
        h,
        SYNC,
        sync_version,
        {
            "group_id": "g",
            "generation_id": 1,
            "member_id": member,
            "protocol_type": "consumer",
            "protocol_name": "range",
            "assignments": [{"member_id": member, "assignment": b"a"}],
        },
    )
    assert synced.error_code is E.none and synced.assignment == b"a"
    hb = await call(
        h, HEARTBEAT, min(version, 4), {"group_id": "g", "generation_id": 1, "member_id": member}
    )
    assert hb.error_code is E.none
    # Errors carry a null protocol name from v7 and an empty one before.
    bad = await call(h, JOIN, version, join_data("stranger"))
    assert bad.error_code is E.unknown_member_id
    assert bad.protocol_name == (None if version >= 7 else "")


async def test_sync_v5_requires_protocol_type_and_name(harness: Harness) -> None:
    h = await harness.load_all()
    resp = await call(
        h, SYNC, 5, {"group_id": "g", "generation_id": 1, "member_id": "m", "assignments": []}
    )
    assert resp.error_code is E.inconsistent_group_protocol


@pytest.mark.parametrize("version", range(0, 6))
async def test_leave_every_version(version: int) -> None:
    h = await Harness().load_all()
    (r,) = await h.stable_group("g", 1)
    if version < 3:
        resp = await call(h, LEAVE, version, {"group_id": "g", "member_id": "nobody"})
        assert resp.error_code is E.unknown_member_id
        resp = await call(h, LEAVE, version, {"group_id": "g", "member_id": r.member_id})
        assert resp.error_code is E.none
    else:
        resp = await call(
            h,
            LEAVE,
            version,
            {"group_id": "g", "members": [{"member_id": r.member_id}, {"member_id": "nobody"}]},
        )
        assert resp.error_code is E.none
        assert [m.error_code for m in resp.members] == [E.none, E.unknown_member_id]
    await h.settle()
    assert h.coord.admin.group_state("g") == "Empty"


def topic_ref(name: str, version: int) -> dict[str, Any]:
    """How a request of ``version`` names topic ``name``: by id from v10 (KIP-848)."""
    return {"topic_id": topic_id(name)} if version >= 10 else {"name": name}


@pytest.mark.parametrize("version", range(2, 11))
async def test_commit_and_fetch_every_version(version: int) -> None:
    h = await Harness().load_all()
    partition: dict[str, Any] = {
        "partition_index": 1,
        "committed_offset": 100 + version,
        "committed_leader_epoch": 4,
        "committed_metadata": "meta",
    }
    resp = await call(
        h,
        COMMIT,
        version,
        {
            "group_id": "standalone",
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "topics": [{**topic_ref("t", version), "partitions": [partition]}],
        },
    )
    if version >= 10:
        assert resp.topics[0].topic_id == topic_id("t")
    else:
        assert resp.topics[0].name == "t"
    assert resp.topics[0].partitions[0].error_code is E.none
    fetch_version = version if version != 2 else 1
    if fetch_version >= 8:
        data: dict[str, Any] = {
            "groups": [
                {"group_id": "standalone",
                 "topics": [{**topic_ref("t", fetch_version), "partition_indexes": [1]}]}
            ]
        }
        topic = (await call(h, FETCH, fetch_version, data)).groups[0].topics[0]
    else:
        data = {"group_id": "standalone", "topics": [{"name": "t", "partition_indexes": [1]}]}
        topic = (await call(h, FETCH, fetch_version, data)).topics[0]
    if fetch_version >= 10:
        assert topic.topic_id == topic_id("t")
    else:
        assert topic.name == "t"
    got = topic.partitions[0]
    assert got.committed_offset == 100 + version and got.metadata == "meta"
    if fetch_version >= 5:
        assert got.committed_leader_epoch == (4 if version >= 6 else -1)


async def test_v10_names_topics_by_id_and_keeps_offsets_by_name(harness: Harness) -> None:
    """A commit by id is the commit of the topic's name: fetched by id or by name, the
    offsets are the same, and a fetch of every offset names the topics by id at v10."""
    h = await harness.load_all()
    unknown = uuid.uuid4()
    resp = await call(h, COMMIT, 10, {
        "group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "",
        "topics": [
            {"topic_id": topic_id("t"), "partitions": [
                {"partition_index": 0, "committed_offset": 7, "committed_metadata": "a"},
                {"partition_index": 2, "committed_offset": 9, "committed_metadata": None},
                {"partition_index": 5, "committed_offset": 1, "committed_metadata": None}]},
            {"topic_id": unknown, "partitions": [
                {"partition_index": 0, "committed_offset": 3, "committed_metadata": None}]},
            {"topic_id": None, "partitions": [
                {"partition_index": 0, "committed_offset": 3, "committed_metadata": None}]},
            {"topic_id": topic_id("u"), "partitions": [
                {"partition_index": 1, "committed_offset": 4, "committed_metadata": None}]},
        ]})
    assert [(t.topic_id, [(p.partition_index, p.error_code) for p in t.partitions])
            for t in resp.topics] == [
        (topic_id("t"), [(0, E.none), (2, E.none), (5, E.unknown_topic_or_partition)]),
        (unknown, [(0, E.unknown_topic_id)]),
        (None, [(0, E.unknown_topic_id)]),
        (topic_id("u"), [(1, E.none)]),
    ]
    # Stored by name, as a by-name commit would have stored them.
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 7, ("t", 2): 9, ("u", 1): 4}

    def offsets(topic: Any) -> list[tuple[int, int, str | None, E]]:
        return [(p.partition_index, p.committed_offset, p.metadata, p.error_code)
                for p in topic.partitions]

    by_id = await call(h, FETCH, 10, {"groups": [
        {"group_id": "g", "topics": [
            {"topic_id": topic_id("t"), "partition_indexes": [0, 1, 2]},
            {"topic_id": unknown, "partition_indexes": [0, 1]},
            {"topic_id": topic_id("u"), "partition_indexes": [1]}]},
        {"group_id": "g", "topics": None}]})
    asked, everything = by_id.groups
    assert asked.error_code is E.none
    assert [(t.topic_id, offsets(t)) for t in asked.topics] == [
        (topic_id("t"), [(0, 7, "a", E.none), (1, -1, "", E.none), (2, 9, "", E.none)]),
        (topic_id("u"), [(1, 4, "", E.none)]),
        (unknown, [(0, -1, "", E.unknown_topic_id), (1, -1, "", E.unknown_topic_id)]),
    ]
    assert [(t.topic_id, offsets(t)) for t in everything.topics] == [
        (topic_id("t"), [(0, 7, "a", E.none), (2, 9, "", E.none)]),
        (topic_id("u"), [(1, 4, "", E.none)]),
    ]
    by_name = await call(h, FETCH, 9, {"groups": [{"group_id": "g", "topics": [
        {"name": "t", "partition_indexes": [0, 1, 2]}, {"name": "u", "partition_indexes": [1]}]}]})
    assert [(t.name, offsets(t)) for t in by_name.groups[0].topics] == [
        ("t", [(0, 7, "a", E.none), (1, -1, "", E.none), (2, 9, "", E.none)]),
        ("u", [(1, 4, "", E.none)]),
    ]


async def test_v10_old_id_of_a_deleted_and_recreated_topic(harness: Harness) -> None:
    """Once a topic is deleted its id names nothing: commits and fetches by it are answered
    UNKNOWN_TOPIC_ID, also after the topic is created again under its name (a new id); a
    v10 fetch of every offset leaves out a topic the metadata does not have, which a
    by-name fetch still lists."""
    h = await harness.load_all()
    old, new = topic_id("v"), topic_id("v", 1)

    async def commit(tid: uuid.UUID, offset: int, image: MetadataImage) -> E:
        resp = await call(h, COMMIT, 10, {
            "group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "",
            "topics": [{"topic_id": tid, "partitions": [
                {"partition_index": 0, "committed_offset": offset,
                 "committed_metadata": None}]}]}, image=image)
        (topic,) = resp.topics
        assert topic.topic_id == tid
        return topic.partitions[0].error_code

    async def fetch(tid: uuid.UUID, image: MetadataImage) -> tuple[int, E]:
        resp = await call(h, FETCH, 10, {"groups": [{"group_id": "g", "topics": [
            {"topic_id": tid, "partition_indexes": [0]}]}]}, image=image)
        (topic,) = resp.groups[0].topics
        assert topic.topic_id == tid
        return topic.partitions[0].committed_offset, topic.partitions[0].error_code

    before = topics_image()
    assert await commit(old, 5, before) is E.none
    assert await fetch(old, before) == (5, E.none)

    deleted = topics_image({n: c for n, c in TOPICS.items() if n != "v"})
    assert await commit(old, 6, deleted) is E.unknown_topic_id
    assert await fetch(old, deleted) == (-1, E.unknown_topic_id)
    every = await call(h, FETCH, 10, {"groups": [{"group_id": "g", "topics": None}]},
                       image=deleted)
    assert every.groups[0].topics == ()
    # The offsets are still stored (Kafka would have deleted them with the topic; see
    # docs/compatibility.md): a by-name fetch lists them, a v10 one cannot name them.
    every = await call(h, FETCH, 9, {"groups": [{"group_id": "g", "topics": None}]},
                       image=deleted)
    assert [t.name for t in every.groups[0].topics] == ["v"]

    recreated = topics_image(TOPICS, ids={"v": new})
    assert await commit(old, 7, recreated) is E.unknown_topic_id
    assert await fetch(old, recreated) == (-1, E.unknown_topic_id)
    assert await commit(new, 8, recreated) is E.none
    assert await fetch(new, recreated) == (8, E.none)
    assert h.coord.offsets.committed_offsets("g") == {("v", 0): 8}


@pytest.mark.parametrize("version", range(1, 11))
async def test_fetch_errors_per_version(version: int) -> None:
    h = await Harness().load_all()
    h.coord.unload_partition(h.coord.partition_for("g"))
    topics = [{**topic_ref("t", version), "partition_indexes": [0, 1]}]
    if version >= 8:
        resp = await call(h, FETCH, version, {"groups": [{"group_id": "g", "topics": topics}]})
        assert resp.groups[0].error_code is E.not_coordinator
    else:
        resp = await call(h, FETCH, version, {"group_id": "g", "topics": topics})
        if version < 2:
            # v1 has no top-level error: it is repeated on every requested partition.
            assert [p.error_code for p in resp.topics[0].partitions] == [E.not_coordinator] * 2
        else:
            assert resp.error_code is E.not_coordinator and resp.topics == ()


async def test_commit_retention_time_of_v2_to_v4() -> None:
    h = await Harness(offsets_retention_check_interval_ms=1_000).load_all()
    await call(
        h,
        COMMIT,
        2,
        {
            "group_id": "g",
            "retention_time": 2_000,
            "topics": [
                {"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 5}]}
            ],
        },
    )
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 5}
    await h.advance(2_000)
    assert h.coord.offsets.committed_offsets("g") == {}


@pytest.mark.parametrize("version", range(0, 6))
async def test_list_groups_every_version(version: int) -> None:
    h = await Harness().load_all()
    await h.stable_group("g", 1)
    resp = await call(h, LIST, version, {"states_filter": ["empty"]} if version >= 4 else {})
    assert resp.error_code is E.none
    expected = [] if version >= 4 else ["g"]
    assert [g.group_id for g in resp.groups] == expected
    if version < 4:
        assert resp.groups[0].protocol_type == "consumer"


@pytest.mark.parametrize("version", range(0, 7))
async def test_describe_every_version(version: int) -> None:
    h = await Harness().load_all()
    await h.stable_group("g", 1, instance="static-1")
    resp = await call(h, DESCRIBE, version, {"groups": ["g", "missing", ""]})
    g, missing, empty_id = resp.groups
    assert g.group_state == "Stable" and len(g.members) == 1
    if version >= 4:
        assert g.members[0].group_instance_id == "static-1"
    if version >= 3:
        assert g.authorized_operations == -(2**31)  # not asked for
    expected_missing = E.group_id_not_found if version >= 6 else E.none
    assert missing.error_code is expected_missing and missing.group_state == "Dead"
    assert empty_id.group_id == ""


@pytest.mark.parametrize("version", range(0, 3))
async def test_delete_groups_every_version(version: int) -> None:
    h = await Harness().load_all()
    await h.coord.offsets.commit_offsets("idle", {})
    resp = await call(h, DELETE, version, {"groups_names": ["nope"]})
    assert [(r.group_id, r.error_code) for r in resp.results] == [("nope", E.group_id_not_found)]


async def test_offset_delete_group_error(harness: Harness) -> None:
    h = await harness.load_all()
    resp = await call(
        h,
        OFFSET_DELETE,
        0,
        {"group_id": "nope", "topics": [{"name": "t", "partitions": [{"partition_index": 0}]}]},
    )
    assert resp.error_code is E.group_id_not_found and resp.topics == ()


def _cg_harness() -> Harness:
    from odradek.broker.group.consumer_group import TopicMetadata

    def topics(names: Any) -> dict[str, TopicMetadata]:
        return {n: TopicMetadata(topic_id(n), n, TOPICS[n]) for n in names if n in TOPICS}

    return Harness(topic_metadata=topics)


@pytest.mark.parametrize("version", [0, 1])
async def test_consumer_group_heartbeat_and_describe_on_the_wire(version: int) -> None:
    h = await _cg_harness().load_all()
    joined = await call(h, CG_HEARTBEAT, version, {
        "group_id": "cg", "member_id": "m1", "member_epoch": 0, "rebalance_timeout": 30_000,
        "subscribed_topic_names": ["t"], "topic_partitions": []})
    assert joined.error_code is E.none and joined.member_epoch == 1
    assert joined.member_id == "m1" and joined.heartbeat_interval.total_seconds() == 5
    [tps] = joined.assignment.topic_partitions
    assert (tps.topic_id, sorted(tps.partitions)) == (topic_id("t"), [0, 1, 2])
    # An unchanged heartbeat gets no assignment.
    again = await call(h, CG_HEARTBEAT, version, {
        "group_id": "cg", "member_id": "m1", "member_epoch": 1, "topic_partitions": None})
    assert again.error_code is E.none and again.assignment is None
    fenced = await call(h, CG_HEARTBEAT, version, {
        "group_id": "cg", "member_id": "m1", "member_epoch": 9, "topic_partitions": None})
    assert fenced.error_code is E.fenced_member_epoch and "greater member epoch" in \
        fenced.error_message
    described = await call(h, CG_DESCRIBE, version, {
        "group_ids": ["cg", "nope"], "include_authorized_operations": False})
    cg, nope = described.groups
    assert (cg.error_code, cg.group_state, cg.group_epoch, cg.assignor_name) == (
        E.none, "Stable", 1, "uniform")
    [member] = cg.members
    assert member.member_id == "m1" and member.subscribed_topic_names == ("t",)
    assert [p.topic_name for p in member.assignment.topic_partitions] == ["t"]
    assert nope.error_code is E.group_id_not_found
    listed = await call(h, LIST, 5, {"states_filter": [], "types_filter": ["consumer"]})
    assert [(g.group_id, g.group_type, g.protocol_type, g.group_state)
            for g in listed.groups] == [("cg", "consumer", "consumer", "Stable")]
    classic = await call(h, LIST, 5, {"states_filter": [], "types_filter": ["classic"]})
    assert classic.groups == ()
    # DescribeGroups describes classic groups only, as Kafka's.
    d = await call(h, DESCRIBE, 6, {"groups": ["cg"], "include_authorized_operations": False})
    assert (d.groups[0].error_code, d.groups[0].group_state) == (E.group_id_not_found, "Dead")

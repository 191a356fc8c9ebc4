"""Fetch, ListOffsets, OffsetForLeaderEpoch and DeleteRecords under the authorizer (Kafka's
KafkaApis): consumers need READ (Fetch), DESCRIBE (ListOffsets, OffsetForLeaderEpoch) or
DELETE (DeleteRecords) on each topic, checked before the topic's existence; a follower's
Fetch needs CLUSTER_ACTION, which also stands in for DESCRIBE in OffsetForLeaderEpoch."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode as E

from odradek.broker.handlers import fetch
from odradek.broker.kafka import codec
from odradek.broker.security.acl import PatternType
from odradek.broker.security.authorization import Authorization
from odradek.storage.records import Record, encode_batch
from tests.unit.broker.handlers.acl_fixtures import OFF, A, R, acl, authorization, context
from tests.unit.broker.handlers.test_authorization_produce import Counting, Exploding
from tests.unit.broker.handlers.test_fetch_sessions_wire import Leader, partition, topic_id

TOPICS = ("a", "b")


def node(tmp_path: Path, auth: Authorization) -> Leader:
    parts = {}
    for t in TOPICS:
        p = partition(tmp_path / t, t, 0, 1, replicas=(1, 2), leader=1)
        p.append(encode_batch([Record(0, value=b"x")]), acks_all=False)
        p.follower_fetched(2, 1, live=True)  # replicated: below the high watermark
        assert p.log.high_watermark == 1
        parts[(t, 0)] = p
    n = Leader(parts)
    n.authorization = auth  # type: ignore[assignment]
    return n


def roundtrip(api_key: int, version: int, data: dict[str, Any]) -> Any:
    body = codec.build_request(api_key, version, data)
    return codec.decode_request(codec.encode_request(body, 3, "c")[4:],
                                {api_key: (0, 18)}).body


def answer(api_key: int, version: int, payload: Any) -> Any:
    out = codec.encode_response(api_key, version, 3, payload)
    return codec.decode_response(bytes(out[4:]), api_key, version)[1]


def fetch_as(n: Leader, topics: list[str | uuid.UUID], principal: str = "User:alice", *,
             replica_id: int = -1, version: int = 12) -> dict[Any, tuple[E, bytes]]:
    part = {"partition": 0, "current_leader_epoch": -1, "fetch_offset": 0,
            "last_fetched_epoch": -1, "log_start_offset": -1, "partition_max_bytes": 1 << 20}
    req = roundtrip(1, version, {
        "replica_id": replica_id, "replica_state": {"replica_id": replica_id,
                                                    "replica_epoch": -1},
        "max_wait": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
        "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [],
        "topics": [{"topic_id" if isinstance(t, uuid.UUID) else "topic": t,
                    "partitions": [part]} for t in topics]})
    resp = answer(1, version, asyncio.run(fetch.handle_fetch(
        n, context(1, version, principal), req)))  # type: ignore[arg-type]
    key = "topic_id" if version >= 13 else "topic"
    return {getattr(t, key): (t.partitions[0].error_code, bytes(t.partitions[0].records or b""))
            for t in resp.responses}


def test_without_an_authorizer_consumers_and_followers_read(tmp_path: Path) -> None:
    n = node(tmp_path, Exploding())
    got = fetch_as(n, ["a", "ghost"])
    assert got["a"][0] == E.none and got["a"][1]
    assert got["ghost"][0] == E.unknown_topic_or_partition
    assert fetch_as(n, ["a"], replica_id=2)["a"][0] == E.none


def test_consumers_need_read_on_each_topic_before_its_existence(tmp_path: Path) -> None:
    n = node(tmp_path, authorization([
        acl("User:alice", A.READ, R.TOPIC, "a"),
        acl("User:bob", A.READ, R.TOPIC, "", pattern=PatternType.PREFIXED)]))
    got = fetch_as(n, ["a", "b", "ghost"])
    assert got["a"][0] == E.none and got["a"][1]
    assert got["b"] == (E.topic_authorization_failed, b"")
    assert got["ghost"] == (E.topic_authorization_failed, b"")
    # WRITE does not allow reading; a PREFIXED "" matches every topic.
    assert {t: e for t, (e, _) in fetch_as(n, ["a", "b"], "User:bob").items()} == {
        "a": E.none, "b": E.none}


def test_unknown_topic_ids_are_told_before_authorization(tmp_path: Path) -> None:
    n = node(tmp_path, authorization([]))
    got = fetch_as(n, [topic_id("a"), uuid.uuid4()], version=13)
    assert got[topic_id("a")][0] == E.topic_authorization_failed
    assert [e for tid, (e, _) in got.items() if tid != topic_id("a")] == [E.unknown_topic_id]


def test_followers_need_cluster_action(tmp_path: Path) -> None:
    n = node(tmp_path, authorization([acl("User:alice", A.READ, R.TOPIC, "a"),
                                      acl("User:broker", A.CLUSTER_ACTION, R.CLUSTER)]))
    # READ on the topic is not enough to fetch as a replica: every partition is refused,
    # and the leader learns nothing from it (no follower position moves).
    assert fetch_as(n, ["a", "ghost"], replica_id=2) == {
        "a": (E.topic_authorization_failed, b""), "ghost": (E.topic_authorization_failed, b"")}
    assert n.follower_offsets == {}
    got = fetch_as(n, ["a", "ghost"], "User:broker", replica_id=2)
    assert got["a"][0] == E.none and got["ghost"][0] == E.unknown_topic_or_partition
    assert n.follower_offsets == {("a", 0): 0}


def test_read_is_decided_once_per_topic(tmp_path: Path) -> None:
    counting = Counting(authorization([acl("User:alice", A.READ, R.TOPIC, "a")]))
    n = node(tmp_path, counting)
    fetch_as(n, ["a", "a", "b"])
    assert counting.calls == 2


def list_offsets_as(n: Leader, principal: str) -> dict[str, E]:
    req = roundtrip(2, 7, {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": t, "partitions": [{"partition_index": 0, "current_leader_epoch": -1,
                                    "timestamp": -1}]} for t in ("a", "b", "ghost")]})
    resp = answer(2, 7, asyncio.run(fetch.handle_list_offsets(
        n, context(2, 7, principal), req)))  # type: ignore[arg-type]
    return {t.name: t.partitions[0].error_code for t in resp.topics}


def test_list_offsets_needs_describe(tmp_path: Path) -> None:
    n = node(tmp_path, authorization([acl("User:alice", A.READ, R.TOPIC, "a"),  # implies it
                                      acl("User:alice", A.DESCRIBE, R.TOPIC, "ghost")]))
    assert list_offsets_as(n, "User:alice") == {
        "a": E.none, "b": E.topic_authorization_failed, "ghost": E.unknown_topic_or_partition}
    assert set(list_offsets_as(n, "User:eve").values()) == {E.topic_authorization_failed}


def epochs_as(n: Leader, principal: str) -> dict[str, E]:
    req = roundtrip(23, 4, {"replica_id": -1, "topics": [
        {"topic": t, "partitions": [{"partition": 0, "current_leader_epoch": -1,
                                     "leader_epoch": 0}]} for t in ("a", "b")]})
    resp = answer(23, 4, asyncio.run(fetch.handle_offset_for_leader_epoch(
        n, context(23, 4, principal), req)))  # type: ignore[arg-type]
    return {t.topic: t.partitions[0].error_code for t in resp.topics}


def test_offset_for_leader_epoch_needs_cluster_action_or_describe(tmp_path: Path) -> None:
    n = node(tmp_path, authorization([acl("User:alice", A.DESCRIBE, R.TOPIC, "a"),
                                      acl("User:broker", A.CLUSTER_ACTION, R.CLUSTER)]))
    assert epochs_as(n, "User:alice") == {"a": E.none, "b": E.topic_authorization_failed}
    assert epochs_as(n, "User:broker") == {"a": E.none, "b": E.none}


def delete_records_as(n: Leader, principal: str) -> dict[str, E]:
    req = roundtrip(21, 2, {"timeout": 1000, "topics": [
        {"name": t, "partitions": [{"partition_index": 0, "offset": 1}]}
        for t in ("a", "b", "ghost")]})
    resp = answer(21, 2, asyncio.run(fetch.handle_delete_records(
        n, context(21, 2, principal), req)))  # type: ignore[arg-type]
    return {t.name: t.partitions[0].error_code for t in resp.topics}


@pytest.mark.parametrize("off", [False, True])
def test_delete_records_needs_delete(tmp_path: Path, off: bool) -> None:
    n = node(tmp_path, OFF if off else authorization(
        [acl("User:alice", A.DELETE, R.TOPIC, "a"), acl("User:alice", A.READ, R.TOPIC, "b")]))
    got = delete_records_as(n, "User:alice")
    assert got["a"] == E.none
    if off:
        assert got["b"] == E.none and got["ghost"] == E.unknown_topic_or_partition
    else:
        assert got["b"] == got["ghost"] == E.topic_authorization_failed
        assert n.parts[("b", 0)].log.log_start_offset == 0

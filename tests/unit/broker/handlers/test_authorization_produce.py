"""Produce under the authorizer (Kafka's handleProduceRequest): WRITE on each topic,
checked before the topic's existence; WRITE on the transactional id for transactional
records, refusing the whole request; nothing more for idempotent records (KIP-679)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode as E

from odradek.broker.acl_operations import AclOperation
from odradek.broker.handlers import produce
from odradek.broker.handlers.api import CloseConnection
from odradek.broker.kafka import codec
from odradek.broker.security.acl import PatternType
from odradek.broker.security.authorization import Authorization
from odradek.broker.security.authorizer import Authorizer
from odradek.storage.records import Record, encode_batch
from tests.unit.broker.handlers.acl_fixtures import (
    OFF,
    A,
    R,
    acl,
    authorization,
    context,
    deny,
)
from tests.unit.broker.handlers.test_fetch_sessions_wire import Leader, partition

VERSION = 11


class Verifier:
    """The transaction coordinator confirming every partition."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def verify(self, transactional_id: str, producer_id: int, producer_epoch: int,
                     partitions: Iterable[tuple[str, int]], **_: object
                     ) -> dict[tuple[str, int], E]:
        self.asked.append(transactional_id)
        return dict.fromkeys(partitions, E.none)


def node(tmp_path: Path, auth: Authorization, topics: Iterable[str] = ("a", "b", "apple")
         ) -> Leader:
    parts = {(t, 0): partition(tmp_path / t, t, 0, 1, replicas=(1,), leader=1) for t in topics}
    n = Leader(parts)
    n.authorization = auth  # type: ignore[assignment]
    n.txn_verifier = Verifier()  # type: ignore[attr-defined]
    return n


def request(topics: Iterable[str], *, acks: int = -1, transactional_id: str | None = None,
            batch: bytes | None = None) -> Any:
    batch = batch or encode_batch([Record(0, value=b"v")])
    body = codec.build_request(0, VERSION, {
        "transactional_id": transactional_id, "acks": acks, "timeout": 1000,
        "topic_data": [{"name": t, "partition_data": [{"index": 0, "records": batch}]}
                       for t in topics]})
    frame = codec.encode_request(body, 5, "p")
    return codec.decode_request(frame[4:], {0: (3, 12)}).body


def produce_as(n: Leader, req: Any, principal: str = "User:alice") -> dict[str, E] | None:
    payload = asyncio.run(produce.handle_produce(n, context(0, VERSION, principal), req))  # type: ignore[arg-type]
    if payload is None:
        return None
    out = codec.encode_response(0, VERSION, 5, payload)
    resp = codec.decode_response(bytes(out[4:]), 0, VERSION)[1]
    return {t.name: t.partition_responses[0].error_code for t in resp.responses}


def log_end(n: Leader, topic: str) -> int:
    return int(n.parts[(topic, 0)].log.log_end_offset)


def test_without_an_authorizer_everything_is_written(tmp_path: Path) -> None:
    n = node(tmp_path, OFF)
    assert produce_as(n, request(["a", "b", "ghost"])) == {
        "a": E.none, "b": E.none, "ghost": E.unknown_topic_or_partition}


def test_write_on_each_topic_is_checked_before_its_existence(tmp_path: Path) -> None:
    n = node(tmp_path, authorization([acl("User:alice", A.WRITE, R.TOPIC, "a")]))
    answers = produce_as(n, request(["a", "b", "ghost"]))
    # "ghost" does not exist, but alice may not learn that: refused like "b".
    assert answers == {"a": E.none, "b": E.topic_authorization_failed,
                       "ghost": E.topic_authorization_failed}
    assert (log_end(n, "a"), log_end(n, "b")) == (1, 0)
    # Another principal has no ACL at all.
    assert produce_as(n, request(["a"]), "User:bob") == {"a": E.topic_authorization_failed}


def test_prefixed_wildcard_deny_and_super_users(tmp_path: Path) -> None:
    auth = authorization([
        acl("User:alice", A.WRITE, R.TOPIC, "ap", pattern=PatternType.PREFIXED),
        acl("User:*", A.WRITE, R.TOPIC, "b"),
        acl("User:*", A.ALL, R.TOPIC, "a"),
        deny("User:alice", A.WRITE, R.TOPIC, "a"),
    ], super_users=["User:admin"])
    n = node(tmp_path, auth)
    assert produce_as(n, request(["apple", "b", "a"])) == {
        "apple": E.none, "b": E.none, "a": E.topic_authorization_failed}  # DENY wins
    assert produce_as(n, request(["apple", "b", "a"]), "User:carol") == {
        "apple": E.topic_authorization_failed, "b": E.none, "a": E.none}
    assert produce_as(n, request(["apple", "b", "a"]), "User:admin") == {
        "apple": E.none, "b": E.none, "a": E.none}


def test_transactional_records_need_write_on_the_transactional_id(tmp_path: Path) -> None:
    txn_batch = encode_batch([Record(0, value=b"t")], producer_id=7, producer_epoch=0,
                             base_sequence=0, is_transactional=True)
    topic_only = authorization([acl("User:alice", A.WRITE, R.TOPIC, "a")])
    n = node(tmp_path, topic_only)
    # The whole request is refused, even its partitions of topics alice may write to.
    assert produce_as(n, request(["a", "b"], transactional_id="tx", batch=txn_batch)) == {
        "a": E.transactional_id_authorization_failed,
        "b": E.transactional_id_authorization_failed}
    assert log_end(n, "a") == 0 and n.txn_verifier.asked == []  # type: ignore[attr-defined]
    # acks=0: no answer, but the connection is closed so that the producer notices (as
    # Kafka's KafkaApis does for an acks=0 produce with any error).
    with pytest.raises(CloseConnection, match="TRANSACTIONAL_ID_AUTHORIZATION_FAILED"):
        produce_as(n, request(["a"], acks=0, transactional_id="tx", batch=txn_batch))
    with pytest.raises(CloseConnection, match="b-0: TOPIC_AUTHORIZATION_FAILED"):
        produce_as(n, request(["b"], acks=0))
    # Transactional records without a transactional id are refused the same way.
    assert produce_as(n, request(["a"], batch=txn_batch)) == {
        "a": E.transactional_id_authorization_failed}
    with_txn = authorization([acl("User:alice", A.WRITE, R.TOPIC, "a"),
                              acl("User:alice", A.WRITE, R.TRANSACTIONAL_ID, "tx")])
    n = node(tmp_path / "2", with_txn)
    assert produce_as(n, request(["a", "b"], transactional_id="tx", batch=txn_batch)) == {
        "a": E.none, "b": E.topic_authorization_failed}
    assert log_end(n, "a") == 1
    # Only the partition written was verified with the coordinator.
    assert n.txn_verifier.asked == ["tx"]  # type: ignore[attr-defined]


def test_idempotent_records_need_only_write_on_the_topic(tmp_path: Path) -> None:
    batch = encode_batch([Record(0, value=b"i")], producer_id=9, producer_epoch=0,
                         base_sequence=0)
    n = node(tmp_path, authorization([acl("User:alice", A.WRITE, R.TOPIC, "a")]))
    assert produce_as(n, request(["a"], batch=batch)) == {"a": E.none}


class Exploding(Authorization):
    """Disabled; consulting its authorizer would fail the test."""

    def __init__(self) -> None:
        super().__init__(False, frozenset(), False, lambda: OFF.authorizer.acls)

    @property
    def authorizer(self) -> Authorizer:
        raise AssertionError("the authorizer was consulted while disabled")


class Counting(Authorization):
    def __init__(self, inner: Authorization) -> None:
        super().__init__(True, frozenset(), False, lambda: inner.authorizer.acls)
        self.inner = inner
        self.calls = 0

    @property
    def authorizer(self) -> Authorizer:
        self.calls += 1
        return self.inner.authorizer


def test_checks_cost_once_per_topic_not_per_partition(tmp_path: Path) -> None:
    n = node(tmp_path, Exploding(), topics=["a"])
    assert produce_as(n, request(["a"])) == {"a": E.none}
    parts = {("a", i): partition(tmp_path / f"a{i}", "a", i, 1, replicas=(1,), leader=1)
             for i in range(20)}
    many = Leader(parts)
    counting = Counting(authorization([acl("User:alice", AclOperation.WRITE, R.TOPIC, "a")]))
    many.authorization = counting  # type: ignore[assignment]
    body = codec.build_request(0, VERSION, {
        "transactional_id": None, "acks": 1, "timeout": 1000,
        "topic_data": [{"name": "a", "partition_data": [
            {"index": i, "records": encode_batch([Record(0, value=b"v")])}
            for i in range(20)]}]})
    payload = asyncio.run(produce.handle_produce(many, context(0, VERSION), body))  # type: ignore[arg-type]
    assert payload is not None
    assert {p.error_code for t in payload.responses for p in t.partition_responses} == {E.none}
    assert counting.calls == 1

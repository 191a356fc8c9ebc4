"""A follower fetcher and a leader's Fetch handler back to back through the real codec
(no sockets): the fetcher opens a fetch session, its idle requests stop growing with the
partitions it follows, records still replicate, and the handler long-polls an incremental
fetch on every partition of the session. The follower speaks the highest Fetch version the
leader serves: v12 with topic names, v13+ with topic ids."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.fetch_sessions import FetchSessionCache
from odradek.broker.handlers import fetch
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.metrics import NodeMetrics
from odradek.broker.partition import Partition, wait_for_any
from odradek.broker.replication import LeaderFetcher
from odradek.broker.replication_quota import ReplicationQuotas
from odradek.controller.metadata import PartitionRegistration
from odradek.controller.metadata.image import (
    BrokerRegistration,
    Listener,
    MetadataImage,
    TopicImage,
)
from odradek.storage.records import Record, encode_batch
from tests.unit.broker.handlers.acl_fixtures import OFF

# Fetch versions a leader may serve: names up to v12, topic ids from v13, replica_state
# from v15, node_endpoints from v16.
SERVED = (12, 13, 15, 16, 18)
FOLLOWER_EPOCH = 41  # broker 2's registration epoch


def topic_id(topic: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_OID, topic)


def partition(path: Path, topic: str, index: int, node_id: int, *,
              replicas: tuple[int, ...] = (1, 2), leader: int = 1, leader_epoch: int = 0,
              tid: uuid.UUID | None = None) -> Partition:
    p = Partition(topic, index, storage.PartitionLog.open(path, storage.LogConfig()), node_id)
    p.assign(PartitionRegistration(replicas=replicas, isr=replicas, leader=leader,
                                   leader_epoch=leader_epoch, partition_epoch=0),
             tid or topic_id(topic))
    return p


def image_of(parts: dict[tuple[str, int], Partition]) -> MetadataImage:
    """The metadata of ``parts`` (their topics, ids and leaders), brokers 1-3 alive."""
    topics: dict[str, dict[int, PartitionRegistration]] = {}
    ids: dict[str, uuid.UUID] = {}
    for (topic, index), p in parts.items():
        topics.setdefault(topic, {})[index] = PartitionRegistration(
            replicas=p.replicas, isr=p.isr, leader=p.leader_id, leader_epoch=p.leader_epoch,
            partition_epoch=0)
        assert p.topic_id is not None
        ids[topic] = p.topic_id
    images = {name: TopicImage(name, ids[name], ps) for name, ps in topics.items()}
    brokers = {b: BrokerRegistration(b, "x", (Listener("PLAINTEXT", f"host{b}", 9090 + b),),
                                     None, False, FOLLOWER_EPOCH if b == 2 else 7)
               for b in (1, 2, 3)}
    return MetadataImage(1, brokers, images, {t.topic_id: t for t in images.values()}, {}, 0)


class Leader:
    """Node 1: what handle_fetch uses of a node, over real partitions."""

    def __init__(self, parts: dict[tuple[str, int], Partition]) -> None:
        self.parts = parts
        self.config = {"fetch.max.bytes": 50 << 20}
        self.image = image_of(parts)
        self.replicas = SimpleNamespace(get=parts.get, wait_for_data=wait_for_any)
        self.replication = SimpleNamespace(on_follower_fetch=self._fetched)
        self.metrics = NodeMetrics(1)
        self.stopping = False
        self.fetch_sessions = FetchSessionCache(1000, 120_000)
        self.authorization = OFF
        self.replication_quotas = ReplicationQuotas(1)
        self.follower_offsets: dict[tuple[str, int], int] = {}
        self.follower_epochs: set[int] = set()

    def _fetched(self, p: Partition, replica_id: int, offset: int, replica_epoch: int) -> None:
        self.follower_offsets[(p.topic, p.index)] = offset
        self.follower_epochs.add(replica_epoch)
        p.follower_fetched(replica_id, offset, live=True)


class Loopback:
    """The fetcher's connection to a leader serving Fetch v4 to ``max_version``: each
    request is encoded, decoded and handled by the leader's handle_fetch, and the answer
    goes back through the codec."""

    def __init__(self, leader: Leader, max_version: int = 18) -> None:
        self.leader = leader
        self.max_version = max_version
        self.last_request_bytes = 0
        self.sent: list[tuple[int, Any]] = []  # (frame size, decoded request)
        self.versions: list[int] = []
        self.connections = 1  # one connection, never broken

    async def api_versions(self) -> dict[int, tuple[int, int]]:
        return {1: (4, self.max_version), 18: (0, 4)}

    async def request(self, api_key: int, version: int, data: dict[str, Any],
                      timeout: float) -> Any:
        frame = codec.encode_request(codec.build_request(api_key, version, data), 7, "f")
        self.last_request_bytes = len(frame)
        req = codec.decode_request(frame[4:], {1: (4, self.max_version)}).body
        self.sent.append((len(frame), req))
        self.versions.append(version)
        resp = await fetch.handle_fetch(self.leader, RequestContext(1, version, 7, "f", "h", 1),  # type: ignore[arg-type]
                                        req)
        out = codec.encode_response(api_key, version, 7, resp)
        return codec.decode_response(bytes(out[4:]), api_key, version)[1]


def setup(tmp_path: Path, n: int, version: int = 18
          ) -> tuple[dict[tuple[str, int], Partition], LeaderFetcher, Loopback]:
    leaders = {(f"topic-{i % 7}", i): partition(tmp_path / f"l{i}", f"topic-{i % 7}", i, 1)
               for i in range(n)}
    followers = {tp: partition(tmp_path / f"f{i}", tp[0], i, 2)
                 for i, tp in enumerate(leaders)}
    node = SimpleNamespace(node_id=2, broker_epoch=FOLLOWER_EPOCH, metrics=NodeMetrics(2),
                           replication_quotas=ReplicationQuotas(2),
                           config={"replica.fetch.max.bytes": 1 << 20,
                                   "replica.fetch.wait.max.ms": 30,
                                   "replica.fetch.response.max.bytes": 10 << 20})
    fetcher = LeaderFetcher(node, leader_id=1)  # type: ignore[arg-type]
    fetcher.partitions = followers
    return leaders, fetcher, Loopback(Leader(leaders), version)


def names(req: Any, version: int) -> list[tuple[Any, int, int]]:
    """(topic name or id, partition, fetch offset) of each partition a request names."""
    return sorted(((t.topic_id if version >= 13 else t.topic), p.partition, p.fetch_offset)
                  for t in req.topics for p in t.partitions)


def idle_request_sizes(tmp_path: Path, n: int, version: int) -> list[int]:
    leaders, fetcher, conn = setup(tmp_path, n, version)

    async def run() -> None:
        for _ in range(4):
            await fetcher._fetch_once(conn)  # type: ignore[arg-type]

    asyncio.run(run())
    return [size for size, _ in conn.sent]


@pytest.mark.parametrize("version", [12, 18])
def test_idle_follower_requests_do_not_grow_with_its_partitions(tmp_path: Path,
                                                                 version: int) -> None:
    small = idle_request_sizes(tmp_path / "small", 10, version)
    large = idle_request_sizes(tmp_path / "large", 150, version)
    # The first request is full: it names every partition.
    assert large[0] > small[0] + 140 * 20
    # After it, an idle follower sends the same few bytes whatever it follows.
    assert small[1:] == large[1:] and max(large[1:]) < 100, (small, large)


@pytest.mark.parametrize("version", SERVED)
def test_records_replicate_through_the_session(tmp_path: Path, version: int) -> None:
    leaders, fetcher, conn = setup(tmp_path, 20, version)
    followers = fetcher.partitions

    async def run() -> None:
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        assert fetcher.session.session_id != 0
        for tp in [("topic-3", 3), ("topic-4", 11)]:
            leaders[tp].append(encode_batch([Record(0, value=b"v")]), acks_all=False)
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]

    asyncio.run(run())
    assert followers[("topic-3", 3)].log.log_end_offset == 1
    assert followers[("topic-4", 11)].log.log_end_offset == 1
    assert conn.versions == [version] * 3  # the highest the leader serves
    [full, with_data, after] = [req for _, req in conn.sent]
    assert with_data.session_epoch == 1 and with_data.topics == ()
    # The request after the records names only the two partitions that moved (by topic id
    # from v13)...
    key = topic_id if version >= 13 else str
    assert names(after, version) == sorted([(key("topic-3"), 3, 1), (key("topic-4"), 11, 1)])
    # ...and the leader saw every follower's position, named or not (ISR upkeep).
    assert conn.leader.follower_offsets[("topic-3", 3)] == 1
    assert len(conn.leader.follower_offsets) == 20
    # The follower names itself: replica_id up to v14, replica_state with its broker epoch
    # from v15 (KIP-903), which reaches the ISR upkeep.
    if version >= 15:
        assert (full.replica_state.replica_id, full.replica_state.replica_epoch) \
            == (2, FOLLOWER_EPOCH)
        assert conn.leader.follower_epochs == {FOLLOWER_EPOCH}
    else:
        assert full.replica_id == 2 and conn.leader.follower_epochs == {-1}


def test_a_lost_session_starts_over_with_a_full_fetch(tmp_path: Path) -> None:
    leaders, fetcher, conn = setup(tmp_path, 5)

    async def run() -> None:
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        conn.leader.fetch_sessions.remove(fetcher.session.session_id)  # e.g. evicted
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]

    asyncio.run(run())
    reqs = [req for _, req in conn.sent]
    assert [(r.session_epoch, sum(len(t.partitions) for t in r.topics)) for r in reqs] \
        == [(0, 5), (1, 0), (0, 5)]
    assert reqs[2].session_id == 0
    assert len(conn.leader.fetch_sessions) == 1


def consumer_fetch(session_id: int, epoch: int, topics: list[dict[str, Any]],
                   max_wait_ms: int = 0, version: int = 12,
                   forgotten: list[dict[str, Any]] | None = None) -> Any:
    """A consumer's Fetch request, through the codec and back as the broker decodes it."""
    body = codec.build_request(1, version, {
        "replica_id": -1, "max_wait": max_wait_ms, "min_bytes": 1, "max_bytes": 1 << 20,
        "isolation_level": 0, "session_id": session_id, "session_epoch": epoch,
        "topics": topics, "forgotten_topics_data": forgotten or []})
    frame = codec.encode_request(body, 3, "c")
    return codec.decode_request(frame[4:], {1: (4, 18)}).body


def test_an_incremental_fetch_long_polls_on_all_of_its_session(tmp_path: Path) -> None:
    # A consumer's session of three partitions, led alone (ISR {1}: appends are readable).
    leaders = {}
    for i in range(3):
        p = partition(tmp_path / str(i), "t", i, 1)
        p.assign(PartitionRegistration(replicas=(1,), isr=(1,), leader=1, leader_epoch=0,
                                       partition_epoch=1), topic_id("t"))
        leaders[("t", i)] = p
    leader = Leader(leaders)
    ctx = RequestContext(1, 12, 1, "c", "h", 1)

    async def run() -> tuple[float, Any]:
        full = await fetch.handle_fetch(leader, ctx, consumer_fetch(  # type: ignore[arg-type]
            0, 0, [{"topic": "t", "partitions": [
                {"partition": i, "current_leader_epoch": -1, "fetch_offset": 0,
                 "last_fetched_epoch": -1, "log_start_offset": -1,
                 "partition_max_bytes": 1 << 20} for i in range(3)]}]))
        assert full.session_id != 0 and len(full.responses[0].partitions) == 3
        start = time.monotonic()
        # The incremental fetch names no partition: it waits on all three.
        task = asyncio.ensure_future(fetch.handle_fetch(
            leader, ctx, consumer_fetch(full.session_id, 1, [], 5000)))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert not task.done()  # nothing to say: parked
        leaders[("t", 2)].append(encode_batch([Record(0, value=b"v")]), acks_all=False)
        resp = await task
        return time.monotonic() - start, resp

    took, resp = asyncio.run(run())
    assert took < 2
    assert resp.error_code == ErrorCode.none
    assert [(t.topic, [p.partition_index for p in t.partitions]) for t in resp.responses] \
        == [("t", [2])]
    assert resp.responses[0].partitions[0].records


def test_bad_session_ids_and_epochs_are_protocol_errors(tmp_path: Path) -> None:
    leaders, fetcher, conn = setup(tmp_path, 1)

    def ask(session_id: int, epoch: int) -> Any:
        req = consumer_fetch(session_id, epoch, [])
        return asyncio.run(fetch.handle_fetch(conn.leader, RequestContext(1, 12, 1, "c", "h", 1),  # type: ignore[arg-type]
                                              req))

    for sid, epoch, code in ((5, 1, ErrorCode.fetch_session_id_not_found),
                             (0, 9, ErrorCode.fetch_session_id_not_found),
                             (-1, -7, ErrorCode.fetch_session_id_not_found),
                             (2**31 - 1, 2**31 - 1, ErrorCode.fetch_session_id_not_found)):
        resp = ask(sid, epoch)
        assert (resp.error_code, resp.session_id, resp.responses) == (code, 0, ())
    asyncio.run(fetcher._fetch_once(conn))  # type: ignore[arg-type]
    resp = ask(fetcher.session.session_id, 3)
    assert resp.error_code == ErrorCode.invalid_fetch_session_epoch


# --- topic ids (Fetch v13+) -------------------------------------------------------------

def ask(leader: Leader, version: int, req: Any, listener: str = "PLAINTEXT") -> Any:
    """``req`` handled by the leader; the answer as a client decodes it."""
    ctx = RequestContext(1, version, 3, "c", "h", 1, listener)
    resp = asyncio.run(fetch.handle_fetch(leader, ctx, req))  # type: ignore[arg-type]
    out = codec.encode_response(1, version, 3, resp)
    return codec.decode_response(bytes(out[4:]), 1, version)[1]


def part(index: int, offset: int = 0, leader_epoch: int = -1) -> dict[str, Any]:
    return {"partition": index, "current_leader_epoch": leader_epoch, "fetch_offset": offset,
            "last_fetched_epoch": -1, "log_start_offset": -1, "partition_max_bytes": 1 << 20}


def answers(resp: Any, version: int) -> list[tuple[Any, int, ErrorCode]]:
    return [((t.topic_id if version >= 13 else t.topic), p.partition_index, p.error_code)
            for t in resp.responses for p in t.partitions]


def single_leader(tmp_path: Path, *topics: str) -> tuple[dict[tuple[str, int], Partition],
                                                         Leader]:
    parts = {(t, 0): partition(tmp_path / t, t, 0, 1, replicas=(1,)) for t in topics}
    for p in parts.values():
        p.append(encode_batch([Record(0, value=b"v")]), acks_all=False)
    return parts, Leader(parts)


@pytest.mark.parametrize("version", [13, 14, 15, 16, 17, 18])
def test_consumers_name_topics_by_id_and_unknown_ids_are_answered_so(tmp_path: Path,
                                                                     version: int) -> None:
    parts, leader = single_leader(tmp_path, "a", "b")
    stranger = uuid.uuid4()
    resp = ask(leader, version, consumer_fetch(0, 0, [
        {"topic_id": topic_id("a"), "partitions": [part(0)]},
        {"topic_id": stranger, "partitions": [part(0), part(1)]},
        {"topic_id": None, "partitions": [part(0)]},
        {"topic_id": topic_id("b"), "partitions": [part(0, offset=1)]}], version=version))
    sid = resp.session_id
    assert resp.error_code == ErrorCode.none and sid != 0
    assert answers(resp, version) == [
        (topic_id("a"), 0, ErrorCode.none), (stranger, 0, ErrorCode.unknown_topic_id),
        (stranger, 1, ErrorCode.unknown_topic_id), (None, 0, ErrorCode.unknown_topic_id),
        (topic_id("b"), 0, ErrorCode.none)]
    a, unknown = resp.responses[0].partitions[0], resp.responses[1].partitions[0]
    assert a.records and a.high_watermark == 1
    assert unknown.high_watermark == -1 and not unknown.records
    # The session holds the unknown ids: they are answered again (errors always are)...
    resp = ask(leader, version, consumer_fetch(
        sid, 1, [{"topic_id": topic_id("a"), "partitions": [part(0, offset=1)]}],
        version=version))
    assert answers(resp, version) == [(stranger, 0, ErrorCode.unknown_topic_id),
                                      (stranger, 1, ErrorCode.unknown_topic_id),
                                      (None, 0, ErrorCode.unknown_topic_id)]
    # ...and once this broker's metadata has a topic under that id, it is read like the
    # others (partition 1 of it does not exist).
    parts[("s", 0)] = partition(tmp_path / "s", "s", 0, 1, replicas=(1,), tid=stranger)
    parts[("s", 0)].append(encode_batch([Record(0, value=b"s")]), acks_all=False)
    leader.image = image_of(parts)
    resp = ask(leader, version, consumer_fetch(sid, 2, [], version=version))
    assert answers(resp, version) == [(stranger, 0, ErrorCode.none),
                                      (stranger, 1, ErrorCode.unknown_topic_or_partition),
                                      (None, 0, ErrorCode.unknown_topic_id)]
    assert resp.responses[0].partitions[0].records


def test_a_session_keeps_its_kind_across_versions(tmp_path: Path) -> None:
    """FETCH_SESSION_TOPIC_ID_ERROR, as Kafka gives it: a session opened at v13+ continued
    at v12 (a client downgrading mid-session), or the reverse."""
    parts, leader = single_leader(tmp_path, "a")
    by_id = ask(leader, 13, consumer_fetch(0, 0, [{"topic_id": topic_id("a"),
                                                     "partitions": [part(0)]}], version=13))
    by_name = ask(leader, 12, consumer_fetch(0, 0, [{"topic": "a", "partitions": [part(0)]}]))
    for sid, version in ((by_id.session_id, 12), (by_name.session_id, 16)):
        resp = ask(leader, version, consumer_fetch(sid, 1, [], version=version))
        assert (resp.error_code, resp.session_id, resp.responses) \
            == (ErrorCode.fetch_session_topic_id_error, 0, ())
    # Neither session lost its place.
    assert ask(leader, 18, consumer_fetch(by_id.session_id, 1, [], version=18)).error_code \
        == ErrorCode.none
    assert ask(leader, 12, consumer_fetch(by_name.session_id, 1, [])).error_code \
        == ErrorCode.none


def test_a_topic_recreated_under_its_name_while_a_session_reads_it(tmp_path: Path) -> None:
    """Kafka's behaviour: the session's old id stays bound to the name, so once the topic
    exists again (another id) the old partition is answered INCONSISTENT_TOPIC_ID (while it
    is gone, UNKNOWN_TOPIC_OR_PARTITION); the consumer, learning the new id from Metadata,
    forgets the old id and adds the new one in one incremental request."""
    parts, leader = single_leader(tmp_path, "t", "other")
    old = topic_id("t")
    full = ask(leader, 16, consumer_fetch(0, 0, [
        {"topic_id": old, "partitions": [part(0, offset=1)]},
        {"topic_id": topic_id("other"), "partitions": [part(0, offset=1)]}], version=16))
    sid = full.session_id
    assert sid != 0 and all(e == ErrorCode.none for *_, e in answers(full, 16))
    # Deleted: gone from the metadata, then the replica manager drops the replica, which
    # tells the session (its log may still be on its way out here).
    remaining = {tp: p for tp, p in parts.items() if tp[0] != "t"}
    leader.image = image_of(remaining)
    parts[("t", 0)].close()
    resp = ask(leader, 16, consumer_fetch(sid, 1, [], version=16))
    assert answers(resp, 16) == [(old, 0, ErrorCode.unknown_topic_or_partition)]
    # Created again under the same name: a new id, a new empty log.
    new = uuid.uuid4()
    recreated = partition(tmp_path / "t-again", "t", 0, 1, replicas=(1,), tid=new)
    leader.parts[("t", 0)] = recreated
    leader.image = image_of(leader.parts)
    resp = ask(leader, 16, consumer_fetch(sid, 2, [], version=16))
    assert answers(resp, 16) == [(old, 0, ErrorCode.inconsistent_topic_id)]
    # The consumer replaces the old id by the new one (position reset to 0).
    resp = ask(leader, 16, consumer_fetch(sid, 3, [{"topic_id": new, "partitions": [part(0)]}],
                                          version=16,
                                          forgotten=[{"topic_id": old, "partitions": [0]}]))
    assert resp.session_id == sid
    assert answers(resp, 16) == [(new, 0, ErrorCode.none)]
    assert set(leader.fetch_sessions.sessions[sid].partitions) == {(topic_id("other"), 0),
                                                                  (new, 0)}
    recreated.append(encode_batch([Record(0, value=b"new")]), acks_all=False)
    resp = ask(leader, 16, consumer_fetch(sid, 4, [], version=16))
    [(tid, index, err)] = answers(resp, 16)
    assert (tid, index, err) == (new, 0, ErrorCode.none)
    assert resp.responses[0].partitions[0].records


def test_a_topic_id_that_is_not_the_logs_is_inconsistent(tmp_path: Path) -> None:
    """The metadata names the topic by an id its log here does not have (the replica is
    being replaced): INCONSISTENT_TOPIC_ID, not the other topic's records."""
    parts, leader = single_leader(tmp_path, "t")
    elsewhere = uuid.uuid4()
    parts[("t", 0)].topic_id = elsewhere
    resp = ask(leader, 13, consumer_fetch(0, -1, [{"topic_id": topic_id("t"),
                                                    "partitions": [part(0)]}], version=13))
    assert answers(resp, 13) == [(topic_id("t"), 0, ErrorCode.inconsistent_topic_id)]
    assert not resp.responses[0].partitions[0].records


@pytest.mark.parametrize("version", [12, 15, 16, 18])
def test_not_leader_answers_carry_the_leader_from_v16(tmp_path: Path, version: int) -> None:
    """KIP-951 as Kafka's brokers answer it: from v16, NOT_LEADER_OR_FOLLOWER and
    FENCED_LEADER_EPOCH partitions name the current leader and epoch, and node_endpoints
    holds its address on the listener the request came in on; nothing before v16."""
    led = partition(tmp_path / "led", "led", 0, 1, replicas=(1, 2), leader=1, leader_epoch=4)
    followed = partition(tmp_path / "followed", "followed", 0, 1, replicas=(1, 3), leader=3,
                         leader_epoch=6)
    leader = Leader({("led", 0): led, ("followed", 0): followed})

    def topic(name: str, leader_epoch: int) -> dict[str, Any]:
        key = {"topic_id": topic_id(name)} if version >= 13 else {"topic": name}
        return {**key, "partitions": [part(0, leader_epoch=leader_epoch)]}

    resp = ask(leader, version, consumer_fetch(0, -1, [topic("followed", 6), topic("led", 3)],
                                               version=version))
    fetched = {t.topic_id if version >= 13 else t.topic: t.partitions[0]
               for t in resp.responses}
    key = topic_id if version >= 13 else str
    on_follower, fenced = fetched[key("followed")], fetched[key("led")]
    assert on_follower.error_code == ErrorCode.not_leader_or_follower
    assert fenced.error_code == ErrorCode.fenced_leader_epoch
    if version >= 16:
        assert (on_follower.current_leader.leader_id,
                on_follower.current_leader.leader_epoch) == (3, 6)
        assert (fenced.current_leader.leader_id, fenced.current_leader.leader_epoch) == (1, 4)
        assert [(n.node_id, n.host, n.port) for n in resp.node_endpoints] \
            == [(1, "host1", 9091), (3, "host3", 9093)]
    else:
        assert on_follower.current_leader.leader_id == -1
        assert not getattr(resp, "node_endpoints", ())


def test_the_follower_speaks_what_its_leader_serves(tmp_path: Path) -> None:
    """A leader that serves up to v12 is fetched from by name; restarted serving v18 (a
    rolling upgrade), the follower starts a new session with topic ids."""
    leaders, fetcher, conn = setup(tmp_path, 5, version=12)

    async def run() -> None:
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        conn.max_version = 18
        conn.leader.fetch_sessions = FetchSessionCache(1000, 120_000)  # a new process
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]

    asyncio.run(run())
    reqs = [req for _, req in conn.sent]
    assert conn.versions == [12, 12, 18, 18]
    assert [(r.session_id != 0, r.session_epoch, sum(len(t.partitions) for t in r.topics))
            for r in reqs] == [(False, 0, 5), (True, 1, 0), (False, 0, 5), (True, 1, 0)]
    assert {t.topic_id for t in reqs[2].topics} == {topic_id(f"topic-{i}") for i in range(5)}


def test_the_follower_forgets_a_recreated_topics_old_id(tmp_path: Path) -> None:
    leaders, fetcher, conn = setup(tmp_path, 3)
    new = uuid.uuid4()

    async def run() -> None:
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        # topic-1 deleted and created again: new replicas on both brokers, a new id.
        leaders[("topic-1", 1)] = partition(tmp_path / "l1-new", "topic-1", 1, 1, tid=new)
        conn.leader.image = image_of(leaders)
        fetcher.partitions = {**fetcher.partitions, ("topic-1", 1): partition(
            tmp_path / "f1-new", "topic-1", 1, 2, tid=new)}
        leaders[("topic-1", 1)].append(encode_batch([Record(0, value=b"v")]), acks_all=False)
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]

    asyncio.run(run())
    _, replace, after = [req for _, req in conn.sent]
    assert names(replace, 18) == [(new, 1, 0)]
    assert [(t.topic_id, t.partitions) for t in replace.forgotten_topics_data] \
        == [(topic_id("topic-1"), (1,))]
    assert names(after, 18) == [(new, 1, 1)]  # it replicated the new topic's record
    assert fetcher.partitions[("topic-1", 1)].log.log_end_offset == 1
    session = conn.leader.fetch_sessions.sessions[fetcher.session.session_id]
    assert set(session.partitions) == {(topic_id("topic-0"), 0), (new, 1),
                                       (topic_id("topic-2"), 2)}


def test_an_idle_session_reads_only_what_changed(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An incremental fetch does not read a partition it does not name while nothing
    happened to it since an answer left the fetcher caught up; one that still has data to
    give, or was appended to, or whose log start moved, is read."""
    parts, leader = single_leader(tmp_path, "a", "b", "c")
    reads: list[str] = []
    real = fetch._read_partition

    def counting(node: Any, topic: str, *args: Any) -> Any:
        reads.append(topic)
        return real(node, topic, *args)

    monkeypatch.setattr(fetch, "_read_partition", counting)
    # Every partition holds one record (offset 0): a full fetch from offset 1 is caught up,
    # except "c", read from 0 with room for nothing: it still has data to give.
    small = part(0, offset=0)
    small["partition_max_bytes"] = 0
    full = ask(leader, 12, consumer_fetch(0, 0, [
        {"topic": "a", "partitions": [part(0, offset=1)]},
        {"topic": "b", "partitions": [part(0, offset=1)]},
        {"topic": "c", "partitions": [small]}]))
    sid = full.session_id
    assert sid and sorted(reads) == ["a", "b", "c"]
    reads.clear()
    ask(leader, 12, consumer_fetch(sid, 1, []))
    assert reads == ["c"]  # a and b unchanged and caught up: not read
    # An append to "b": read, and its record answered.
    parts[("b", 0)].append(encode_batch([Record(0, value=b"w")]), acks_all=False)
    reads.clear()
    resp = ask(leader, 12, consumer_fetch(sid, 2, []))
    assert "b" in reads and "a" not in reads
    assert ("b", 0, ErrorCode.none) in answers(resp, 12)
    # DeleteRecords moves "a"'s log start: read and told.
    parts[("a", 0)].delete_records(1)
    reads.clear()
    resp = ask(leader, 12, consumer_fetch(sid, 3, []))
    assert "a" in reads
    assert [p.log_start_offset for t in resp.responses if t.topic == "a"
            for p in t.partitions] == [1]
    # A deletion: the metadata loses the topic, then the replica manager drops the replica,
    # which tells the session; answered at once.
    leader.image = image_of({tp: p for tp, p in parts.items() if tp[0] != "a"})
    parts[("a", 0)].close()
    resp = ask(leader, 12, consumer_fetch(sid, 4, []))
    assert ("a", 0, ErrorCode.unknown_topic_or_partition) in answers(resp, 12)


def test_an_idle_follower_is_held_caught_up_by_its_sessions_requests(
        tmp_path: Path) -> None:
    """An idle follower's session reads none of its partitions, yet each of its requests
    keeps the follower caught up (its place in the ISR depends on it): when the leader
    appends, the follower was last caught up at its latest request."""
    leaders, fetcher, conn = setup(tmp_path, 6)

    async def run() -> None:
        for _ in range(3):
            await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        conn.leader.follower_offsets.clear()
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]

    asyncio.run(run())
    assert conn.leader.follower_offsets == {}  # no partition read
    [session] = conn.leader.fetch_sessions.sessions.values()
    p = leaders[("topic-0", 0)]
    progress = p.state.followers[2]
    assert progress.held is session.clock and session.clock.at > progress.caught_up_at
    last_request = session.clock.at
    p.append(encode_batch([Record(0, value=b"v")]), acks_all=False)
    assert progress.held is None and progress.caught_up_at == last_request
    # The next request reads the partition again, and only it.
    asyncio.run(fetcher._fetch_once(conn))  # type: ignore[arg-type]
    assert conn.leader.follower_offsets == {("topic-0", 0): 0}


def lead_new_partition_and_write(tmp_path: Path, leader: Leader) -> Partition:
    """The leader's node becomes leader of "new"-0 (the follower has not heard of it yet),
    and a producer writes to it with acks=all: the write waits for the follower."""
    new = partition(tmp_path / "new", "new", 0, 1)
    new.on_unfetched_followers = leader.fetch_sessions.nudge
    leader.parts[("new", 0)] = new
    leader.image = image_of(leader.parts)
    new.append(encode_batch([Record(0, value=b"v")]), acks_all=True)
    return new


def test_a_write_waiting_for_a_follower_answers_its_parked_fetch(tmp_path: Path) -> None:
    """A new leader's write waits for a follower whose fetcher does not have the partition
    yet (it adds partitions between requests): the follower's parked fetch is answered at
    once, not after replica.fetch.wait.max.ms, so its next request can name it."""
    leaders, fetcher, conn = setup(tmp_path, 3)
    follower_new = partition(tmp_path / "new-f", "new", 0, 2)

    async def run() -> None:
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]  # the session opens
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]  # and settles
        fetcher.node.config["replica.fetch.wait.max.ms"] = 5000  # type: ignore[index]
        parked = asyncio.create_task(fetcher._fetch_once(conn))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert not parked.done()
        new = lead_new_partition_and_write(tmp_path, conn.leader)
        await asyncio.wait_for(parked, 2)  # answered well before its 5 s wait
        # The follower learns of the partition; its next request names it and the write's
        # high watermark moves.
        fetcher.set_partitions({**fetcher.partitions, ("new", 0): follower_new})
        await asyncio.wait_for(fetcher._fetch_once(conn), 2)  # type: ignore[arg-type]
        assert follower_new.log.log_end_offset == 1
        # Its next fetch, at the log end, moves the write's high watermark (and parks).
        last = asyncio.create_task(fetcher._fetch_once(conn))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert new.log.high_watermark == 1
        last.cancel()

    asyncio.run(run())


def test_a_write_waiting_for_a_follower_answers_its_parked_first_full_fetch(
        tmp_path: Path) -> None:
    """The same when the follower's fetcher to this leader is new (created for another
    partition that moved here in the same leadership change): its first request is a full
    fetch, whose session exists only once it is answered, so there is no session to nudge;
    it is woken all the same."""
    _, fetcher, conn = setup(tmp_path, 3)

    async def run() -> None:
        fetcher.node.config["replica.fetch.wait.max.ms"] = 5000  # type: ignore[index]
        parked = asyncio.create_task(fetcher._fetch_once(conn))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert not parked.done()  # all caught up (empty logs): the full fetch parks
        lead_new_partition_and_write(tmp_path, conn.leader)
        await asyncio.wait_for(parked, 2)  # answered well before its 5 s wait
        [(_, first)] = conn.sent
        assert first.session_epoch == 0  # it was the full fetch that opens a session

    asyncio.run(run())


def test_a_leader_behind_on_metadata_is_asked_again_soon_then_less_often(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower that applied a new leadership before its new leader did (the leader
    answers UNKNOWN_LEADER_EPOCH) asks again within milliseconds, backing off while it
    lasts; after a good answer the next disagreement starts short again. A full back-off
    there made a controlled shutdown's writes wait half a second for this follower."""
    from odradek.broker import replication

    leaders, fetcher, conn = setup(tmp_path, 2)

    def lead(parts: list[Partition], epoch: int, leader: int = 1) -> None:
        for p in parts:
            p.assign(PartitionRegistration(replicas=(1, 2), isr=(1, 2), leader=leader,
                                           leader_epoch=epoch, partition_epoch=epoch),
                     topic_id(p.topic))

    lead(list(fetcher.partitions.values()), 1)  # the follower is at epoch 1, its leader at 0
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(replication.asyncio, "sleep", sleep)

    async def run() -> None:
        for _ in range(8):
            await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        assert slept == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]
        lead(list(leaders.values()), 1)  # the leader catches up with the metadata
        for p in leaders.values():
            p.append(encode_batch([Record(0, value=b"x")]), acks_all=False)
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        assert all(p.log.log_end_offset == 1 for p in fetcher.partitions.values())
        assert len(slept) == 8
        lead(list(leaders.values()), 2)  # now the follower is behind: FENCED_LEADER_EPOCH
        await fetcher._fetch_once(conn)  # type: ignore[arg-type]
        assert slept[8:] == [0.01]

    asyncio.run(run())

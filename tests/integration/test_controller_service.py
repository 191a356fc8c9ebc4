"""The Controller gRPC service over a real grpc.aio server on 127.0.0.1, driven through
ControllerClient, BrokerLifecycle and MetadataFollower.

In-process (no node processes): a QuorumController on a LocalMetadataLog behind the servicer,
with short session timeouts so expiry takes well under a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.lifecycle import BrokerLifecycle, MetadataFollower
from odradek.controller.client import ControllerClient
from odradek.controller.metadata import MetadataImage, MetadataLoader
from odradek.controller.metadata.requests import (
    AlterConfigOp,
    AlterConfigsResource,
    AlterPartitionItem,
    ControllerError,
    ControllerUnavailable,
    CreatePartitionsSpec,
    CreateTopicSpec,
    DeleteTopicSpec,
    IncrementalAlterConfigsResource,
)
from odradek.controller.quorum import LocalMetadataLog, QuorumController
from odradek.controller.rpc import controller_pb2 as pb
from odradek.controller.rpc import controller_pb2_grpc as pb_grpc
from odradek.controller.service import (
    LEADER_ADDRESS_KEY,
    LEADER_ID_KEY,
    NO_LEADER,
    ControllerService,
    ManualQuorumInfo,
    QuorumInfo,
    StaticLeader,
)

TOPIC = 2
SESSION_MS = 1000  # long enough that a busy shared machine does not expire live brokers
HEARTBEAT_MS = 100
LISTENERS = [("PLAINTEXT", "127.0.0.1", 9092)]


def asynctest(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout=30))

    return wrapper


@dataclass
class Served:
    controller: QuorumController
    service: ControllerService
    quorum: QuorumInfo
    address: str
    server: grpc.aio.Server
    readable: CompactedLog  # what the service can read of the log


class CompactedLog:
    """The log as after compaction below `start`: reads there fail like the Raft log's."""

    def __init__(self, log: LocalMetadataLog, start: int) -> None:
        self.log, self.start = log, start

    def read_from(self, offset: int) -> Iterator[tuple[int, bytes]]:
        if offset < self.start:
            raise LookupError(f"offset {offset} is compacted")
        return self.log.read_from(offset)


@contextlib.asynccontextmanager
async def serve(
    directory: Path,
    quorum: QuorumInfo | None = None,
    *,
    controller: QuorumController | None = None,
    metadata_log: LocalMetadataLog | None = None,
    session_timeout_ms: int = SESSION_MS,
    disconnect_grace_ms: int = 300,
) -> AsyncIterator[Served]:
    own_log = metadata_log is None
    if metadata_log is None:
        metadata_log = LocalMetadataLog(directory)
    if controller is None:
        controller = QuorumController(metadata_log, rng=random.Random(7))
        await controller.load()
    quorum = quorum or StaticLeader(1)
    readable = CompactedLog(metadata_log, 0)
    service = ControllerService(
        controller, quorum, readable,
        session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=HEARTBEAT_MS,
        stream_keepalive_s=0.5, disconnect_grace_ms=disconnect_grace_ms)
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await service.start()
    await server.start()
    try:
        yield Served(controller, service, quorum, f"127.0.0.1:{port}", server, readable)
    finally:
        await service.close()
        await server.stop(None)
        if own_log:
            metadata_log.close()


def client_for(voters: dict[int, str], **kwargs: Any) -> ControllerClient:
    kwargs.setdefault("backoff_s", (0.02, 0.1))
    return ControllerClient(voters, **kwargs)


async def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def broker(client: ControllerClient, broker_id: int, **kwargs: Any) -> AsyncIterator[
    tuple[BrokerLifecycle, MetadataFollower]
]:
    """A broker-only node's controller side: its own loader fed by a MetadataFollower."""
    follower = MetadataFollower(client, MetadataLoader())
    await follower.start()
    lifecycle = BrokerLifecycle(
        client, broker_id, kwargs.pop("incarnation_id", str(uuid.uuid4())), LISTENERS, None,
        metadata_offset=lambda: follower.loader.image.offset,
        heartbeat_interval_ms=HEARTBEAT_MS, registration_retry_ms=50, **kwargs)
    try:
        yield lifecycle, follower
    finally:
        await lifecycle.stop()
        await follower.stop()


async def unfenced_broker(client: ControllerClient, broker_id: int = 1) -> int:
    """Register a broker and unfence it with one caught-up heartbeat; its epoch."""
    reg = await client.register_broker(broker_id, str(uuid.uuid4()), LISTENERS)
    assert reg.error_code == ErrorCode.none, reg
    hb = await client.heartbeat(broker_id, reg.broker_epoch, reg.broker_epoch)
    assert not hb.is_fenced, hb
    return reg.broker_epoch


def leaders(image: MetadataImage, topic: str) -> dict[int, int]:
    return {p: reg.leader for p, reg in image.topics[topic].partitions.items()}


# ----- sessions -----


@asynctest
async def test_brokers_unfence_when_caught_up_and_are_fenced_when_heartbeats_stop(
    tmp_path: Path,
) -> None:
    # Stopping a broker in-process also closes its liveness stream, which would fence it at
    # once (test_a_stopped_broker_is_fenced_when_its_liveness_stream_closes): without the
    # grace, only the session timeout fences, which is what this test is about.
    async with serve(tmp_path, disconnect_grace_ms=0) as s:
        client = client_for({1: s.address})
        async with broker(client, 1) as (b1, _), broker(client, 2) as (b2, f2):
            # Brokers register fenced (each checked at once: under load, the first may
            # already be unfenced while the second registers).
            await b1.start()
            assert b1.is_fenced
            await b2.start()
            assert b2.is_fenced
            await b1.wait_unfenced(5)
            await b2.wait_unfenced(5)
            assert f2.loader.image.offset >= b2.broker_epoch  # caught up before unfencing
            assert s.controller.image.unfenced_broker_ids() == [1, 2]

            [created] = await client.create_topics(
                [CreateTopicSpec("t", num_partitions=4, replication_factor=2)])
            assert created.error_code == ErrorCode.none
            before = leaders(s.controller.image, "t")
            assert set(before.values()) == {1, 2}

            stopped = time.monotonic()
            await b2.stop()  # heartbeats stop; broker 1 keeps going
            await eventually(lambda: 2 not in s.controller.image.unfenced_broker_ids(),
                             what="broker 2 fenced")
            elapsed = time.monotonic() - stopped
            assert elapsed >= SESSION_MS / 1000 * 0.8, elapsed  # not before its session ends
            image = s.controller.image
            assert image.unfenced_broker_ids() == [1]
            assert set(leaders(image, "t").values()) == {1}
            for reg in image.topics["t"].partitions.values():
                assert reg.isr == (1,)
            await asyncio.sleep(SESSION_MS / 1000 * 1.5)
            assert not b1.is_fenced and s.controller.image.is_unfenced(1)  # still alive
        await client.close()


@asynctest
async def test_a_stopped_broker_is_fenced_when_its_liveness_stream_closes(
        tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        client = client_for({1: s.address})
        async with broker(client, 1) as (b1, _), broker(client, 2) as (b2, _):
            await b1.start()
            await b2.start()
            await b1.wait_unfenced(5)
            await b2.wait_unfenced(5)
            stopped = time.monotonic()
            await b2.stop()  # its streams close, as a dead process's would
            while s.controller.image.is_unfenced(2):
                await asyncio.sleep(0.02)
            # Within the 300 ms grace (plus the fencing itself), not the session timeout.
            assert time.monotonic() - stopped < SESSION_MS / 1000 * 0.5
            assert s.controller.image.is_unfenced(1)


@asynctest
async def test_restarted_broker_waits_for_its_old_session_to_expire(tmp_path: Path) -> None:
    # Without crash detection: a process that died is only known dead at its session's end.
    async with serve(tmp_path, disconnect_grace_ms=0) as s:
        client = client_for({1: s.address})
        async with broker(client, 1) as (old, _):
            await old.start()
            await old.wait_unfenced(5)
        # The old process died without a controlled shutdown: its session is still live.
        async with broker(client, 1) as (new, _):
            started = time.monotonic()
            await new.start()  # DUPLICATE_BROKER_REGISTRATION until the old session expires
            assert time.monotonic() - started >= SESSION_MS / 1000 * 0.5
            assert new.broker_epoch > old.broker_epoch
            await new.wait_unfenced(5)
            assert s.controller.image.brokers[1].incarnation_id == new.incarnation_id
        await client.close()


@asynctest
async def test_controlled_shutdown_moves_leaders_then_lets_the_broker_stop(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path, session_timeout_ms=5000) as s:
        client = client_for({1: s.address})
        async with broker(client, 1) as (b1, _), broker(client, 2) as (b2, _):
            await b1.start()
            await b2.start()
            await b1.wait_unfenced(5)
            await b2.wait_unfenced(5)
            await client.create_topics([
                CreateTopicSpec("t", num_partitions=4, replication_factor=2),
                CreateTopicSpec("solo", assignments={0: [2]}),
            ])
            assert 2 in leaders(s.controller.image, "t").values()

            assert await b2.controlled_shutdown(5)
            image = s.controller.image
            # Kafka's controlled shutdown: out of use, still listed for clients.
            assert not image.is_usable(2) and image.is_unfenced(2)
            assert image.brokers[2].in_controlled_shutdown
            assert set(leaders(image, "t").values()) == {1}
            # Its only replica left: no leader, but it stays the ISR's last member.
            assert image.partition("solo", 0).leader == NO_LEADER
            assert image.partition("solo", 0).isr == (2,)
            # The process stops (its liveness stream closes): fenced at once, well before
            # the 5 s session could have expired.
            await b2.stop()
            for _ in range(100):
                if not s.controller.image.is_unfenced(2):
                    break
                await asyncio.sleep(0.01)
            assert not s.controller.image.is_unfenced(2)
        await client.close()


# ----- operations -----


async def _register_and_unfence(client: ControllerClient, direct: QuorumController) -> None:
    """The same broker records at the same offsets on both sides: through the service (the
    heartbeat unfences) and directly."""
    for broker_id in (1, 2, 3):
        incarnation = str(uuid.UUID(int=broker_id))
        remote = await client.register_broker(broker_id, incarnation, LISTENERS, f"r{broker_id}")
        local = await direct.register_broker(broker_id, incarnation, LISTENERS, f"r{broker_id}")
        assert remote == local
    for broker_id in (1, 2, 3):
        epoch = direct.image.brokers[broker_id].epoch
        hb = await client.heartbeat(broker_id, epoch, metadata_offset=epoch)
        assert hb.error_code == ErrorCode.none and not hb.is_fenced and hb.is_caught_up
        assert (await direct.unfence_broker(broker_id, epoch)).error_code == ErrorCode.none


async def _same(
    remote: Awaitable[Any], local: Awaitable[Any]
) -> Any:
    r, loc = await remote, await local
    assert r == loc
    return r


@asynctest
async def test_operations_answer_exactly_what_the_controller_answers(tmp_path: Path) -> None:
    direct_log = LocalMetadataLog(tmp_path / "direct")
    direct = QuorumController(direct_log, rng=random.Random(7))
    async with serve(tmp_path / "served", session_timeout_ms=60_000) as s:
        client = client_for({1: s.address})
        await _register_and_unfence(client, direct)

        specs = [
            CreateTopicSpec("a", num_partitions=3, replication_factor=2,
                            configs={"retention.ms": "1000", "cleanup.policy": "compact"}),
            CreateTopicSpec("b", assignments={0: [1, 2], 1: [2, 3]}),
            CreateTopicSpec("bad name!"),  # INVALID_TOPIC_EXCEPTION
            CreateTopicSpec("rf", replication_factor=9),  # INVALID_REPLICATION_FACTOR
            CreateTopicSpec("np", num_partitions=0),  # INVALID_PARTITIONS
            CreateTopicSpec("cfg", configs={"retention.ms": "soon"}),  # INVALID_CONFIG
            CreateTopicSpec("null", configs={"retention.ms": None}),
            CreateTopicSpec("mixed", num_partitions=2, assignments={0: [1]}),
        ]
        results = await _same(client.create_topics(specs), direct.create_topics(specs))
        codes = [r.error_code for r in results]
        assert codes[:2] == [ErrorCode.none, ErrorCode.none]
        assert all(c != ErrorCode.none for c in codes[2:]), codes
        assert all(isinstance(c, ErrorCode) for c in codes)
        assert results[0].topic_id is not None and results[0].configs

        again = [CreateTopicSpec("a"), CreateTopicSpec("v", num_partitions=2)]
        results = await _same(client.create_topics(again, validate_only=True),
                              direct.create_topics(again, validate_only=True))
        assert results[0].error_code == ErrorCode.topic_already_exists
        assert "v" not in s.controller.image.topics

        parts = [CreatePartitionsSpec("a", 5), CreatePartitionsSpec("b", 3, [[3, 1]]),
                 CreatePartitionsSpec("a", 2), CreatePartitionsSpec("zz", 4),
                 CreatePartitionsSpec("b", 4, [])]
        await _same(client.create_partitions(parts[2:], validate_only=True),
                    direct.create_partitions(parts[2:], validate_only=True))
        await _same(client.create_partitions(parts), direct.create_partitions(parts))

        alters = [AlterConfigsResource(TOPIC, "a", {"retention.ms": "5", "x.unknown": "1"}),
                  AlterConfigsResource(TOPIC, "b", {"retention.ms": "7"}),
                  AlterConfigsResource(TOPIC, "nope", {})]
        await _same(client.alter_configs(alters), direct.alter_configs(alters))
        incr = [IncrementalAlterConfigsResource(TOPIC, "b", [
                    AlterConfigOp("retention.ms", 1), AlterConfigOp("cleanup.policy", 0, "delete")]),
                IncrementalAlterConfigsResource(TOPIC, "a", [AlterConfigOp("retention.ms", 7)])]
        await _same(client.incremental_alter_configs(incr, validate_only=True),
                    direct.incremental_alter_configs(incr, validate_only=True))
        await _same(client.incremental_alter_configs(incr), direct.incremental_alter_configs(incr))

        await _same(client.allocate_producer_ids(1, direct.image.brokers[1].epoch),
                    direct.allocate_producer_ids(1, direct.image.brokers[1].epoch))
        await _same(client.allocate_producer_ids(2), direct.allocate_producer_ids(2))
        await _same(client.allocate_producer_ids(1, 12345), direct.allocate_producer_ids(1, 12345))

        topic_b = direct.image.topics["b"]
        p0 = topic_b.partitions[0]
        leader, epoch = p0.leader, direct.image.brokers[p0.leader].epoch
        shrink = [AlterPartitionItem(topic_b.topic_id, 0, p0.leader_epoch, p0.partition_epoch,
                                     [leader]),
                  AlterPartitionItem(topic_b.topic_id, 9, 0, 0, [leader]),
                  AlterPartitionItem(uuid.UUID(int=99), 0, 0, 0, [leader])]
        result = await _same(client.alter_partition(leader, epoch, shrink),
                             direct.alter_partition(leader, epoch, shrink))
        assert result.partitions[0].registration is not None
        assert result.partitions[0].registration.isr == (leader,)
        await _same(client.alter_partition(leader, epoch + 1000, shrink[:1]),
                    direct.alter_partition(leader, epoch + 1000, shrink[:1]))

        deletes = [DeleteTopicSpec(name="a"), DeleteTopicSpec(topic_id=topic_b.topic_id),
                   DeleteTopicSpec(name="gone"), DeleteTopicSpec(topic_id=uuid.UUID(int=5))]
        await _same(client.delete_topics(deletes), direct.delete_topics(deletes))

        # Identical operations at identical offsets: identical images.
        assert s.controller.image == direct.image

        # And a broker-only node following the log from 0 ends up with that image too.
        loader = MetadataLoader()
        follower = MetadataFollower(client, loader)
        await follower.start()
        await follower.wait_for_offset(s.controller.image.offset, 5)
        assert loader.image == s.controller.image
        # Live records follow as they commit.
        await client.create_topics([CreateTopicSpec("live")])
        await follower.wait_for_offset(s.controller.image.offset, 5)
        assert loader.image == s.controller.image and "live" in loader.image.topics
        await follower.stop()
        await client.close()
    direct_log.close()


@asynctest
async def test_fetch_metadata_batches_end_on_operation_boundaries(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        client = client_for({1: s.address})
        await unfenced_broker(client)
        [t] = await client.create_topics([CreateTopicSpec("t", num_partitions=3)])
        assert t.error_code == ErrorCode.none
        stream = client.fetch_metadata(0)
        first = await anext(stream)
        assert [o for o, _ in first.records] == list(range(s.controller.image.offset + 1))
        [u] = await client.create_topics([CreateTopicSpec("u", num_partitions=2)])
        assert u.error_code == ErrorCode.none
        second = await anext(stream)
        # TopicRecord + 2 PartitionRecords: one operation, one batch.
        assert len(second.records) == 3 and second.records[0][0] == first.last_offset + 1
        await stream.aclose()
        await client.close()


# ----- finding the leader -----


@asynctest
async def test_client_follows_a_redirect_to_the_active_controller(tmp_path: Path) -> None:
    async with serve(tmp_path / "1") as leader:
        follower_quorum = ManualQuorumInfo(is_leader=False, leader_id=1,
                                           leader_address=leader.address)
        async with serve(tmp_path / "2", follower_quorum) as other:
            # The raw answer of a non-leader: FAILED_PRECONDITION plus where to go.
            async with grpc.aio.insecure_channel(other.address) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await pb_grpc.ControllerStub(channel).CreateTopics(pb.CreateTopicsRequest())
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert err.value.details() == (
                f"not the active controller; leader is 1 at {leader.address}")
            md = dict(err.value.trailing_metadata() or ())
            assert md[LEADER_ID_KEY] == "1" and md[LEADER_ADDRESS_KEY] == leader.address

            # The client only knows the non-leader, and still gets there.
            client = client_for({2: other.address})
            await unfenced_broker(client)
            assert client.leader_id == 1
            [result] = await client.create_topics([CreateTopicSpec("t")])
            assert result.error_code == ErrorCode.none
            assert client.leader_id == 1
            assert "t" in leader.controller.image.topics
            assert "t" not in other.controller.image.topics
            await client.close()

            # No leader known anywhere: a bounded wait, then an error naming what was tried.
            follower_quorum.set(is_leader=False)
            client = client_for({2: other.address}, request_timeout_s=0.5)
            with pytest.raises(ControllerUnavailable) as unavailable:
                await client.create_topics([CreateTopicSpec("u")])
            text = str(unavailable.value)
            assert f"2@{other.address}" in text and "no leader is known" in text
            await client.close()


@asynctest
async def test_metadata_stream_survives_a_leader_change(tmp_path: Path) -> None:
    # Two controller nodes sharing one controller and log stand in for a Raft pair: only
    # which one is active changes, as after an election.
    metadata_log = LocalMetadataLog(tmp_path)
    controller = QuorumController(metadata_log, rng=random.Random(1))
    q1 = ManualQuorumInfo(is_leader=True, leader_id=1, term=1)
    q2 = ManualQuorumInfo(is_leader=False, leader_id=1, term=1)
    async with serve(tmp_path, q1, controller=controller, metadata_log=metadata_log) as n1, \
            serve(tmp_path, q2, controller=controller, metadata_log=metadata_log) as n2:
        q1.set(is_leader=True, leader_id=1, leader_address=n1.address, term=1)
        q2.set(is_leader=False, leader_id=1, leader_address=n1.address, term=1)
        client = client_for({1: n1.address, 2: n2.address})
        await unfenced_broker(client)
        [result] = await client.create_topics([CreateTopicSpec("before")])
        assert result.error_code == ErrorCode.none
        loader = MetadataLoader()
        follower = MetadataFollower(client, loader)
        await follower.start()
        await follower.wait_for_offset(controller.image.offset, 5)

        channel = grpc.aio.insecure_channel(n1.address)
        raw = pb_grpc.ControllerStub(channel).FetchMetadata(pb.FetchMetadataRequest())
        assert (await raw.read()).batch_end

        # Node 1 loses the election to node 2: its streams end with the redirect.
        q1.set(is_leader=False, leader_id=2, leader_address=n2.address, term=2)
        q2.set(is_leader=True, leader_id=2, leader_address=n2.address, term=2)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                assert not (await raw.read()).entries
        assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert dict(ended.value.trailing_metadata() or ())[LEADER_ID_KEY] == "2"
        await channel.close()

        [result] = await client.create_topics([CreateTopicSpec("after")])
        assert result.error_code == ErrorCode.none and client.leader_id == 2
        await follower.wait_for_offset(controller.image.offset, 5)
        assert loader.image == controller.image

        # Node 2 dies and node 1 takes over: the stream finds it by trying the voters.
        await n2.server.stop(None)
        q1.set(is_leader=True, leader_id=1, leader_address=n1.address, term=3)
        [result] = await client.create_topics([CreateTopicSpec("later")])
        assert result.error_code == ErrorCode.none and client.leader_id == 1
        await follower.wait_for_offset(controller.image.offset, 5)
        assert loader.image == controller.image and "later" in loader.image.topics
        assert follower.failure is None
        await follower.stop()
        await client.close()
    metadata_log.close()


@asynctest
async def test_new_leader_gives_every_unfenced_broker_a_fresh_session(tmp_path: Path) -> None:
    quorum = ManualQuorumInfo(is_leader=True, leader_id=1, term=1)
    async with serve(tmp_path, quorum) as s:
        client = client_for({1: s.address})
        reg = await client.register_broker(1, str(uuid.uuid4()), LISTENERS)
        hb = await client.heartbeat(1, reg.broker_epoch, s.controller.image.offset)
        assert not hb.is_fenced
        # Leadership moves away and comes back before the session would have expired on the
        # old timer; the broker is silent all along.
        await asyncio.sleep(SESSION_MS / 1000 * 0.6)
        quorum.set(is_leader=False, leader_id=2, leader_address="127.0.0.1:1", term=2)
        quorum.set(is_leader=True, leader_id=1, term=3)
        await asyncio.sleep(SESSION_MS / 1000 * 0.6)  # past the old deadline
        assert s.controller.image.is_unfenced(1)
        await eventually(lambda: not s.controller.image.is_unfenced(1), what="fenced at last")
        await client.close()


@asynctest
async def test_brokers_behind_a_compacted_log_get_a_snapshot(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        client = client_for({1: s.address})
        await unfenced_broker(client)
        await client.create_topics([CreateTopicSpec("a", 2), CreateTopicSpec("b", 1)])
        stale = MetadataLoader()
        early = MetadataFollower(client, stale)
        await early.start()
        await early.wait_for_offset(s.controller.image.offset, 5)
        await early.stop()
        await client.delete_topics([DeleteTopicSpec(name="a")])
        await client.create_topics([CreateTopicSpec("c", 3)])
        s.readable.start = s.controller.image.offset  # compacted past both brokers
        assert stale.image.offset + 1 < s.readable.start

        fresh = MetadataLoader()
        late = MetadataFollower(client, fresh)
        await late.start()
        deltas: list[Any] = []
        stale.register(lambda delta, image: deltas.append(delta))
        again = MetadataFollower(client, stale)
        await again.start()
        for follower in (late, again):
            await follower.wait_for_offset(s.controller.image.offset, 5)
            assert follower.loader.image == s.controller.image
        assert any(d.removed_topics() for d in deltas)  # the stale broker learnt "a" is gone
        await client.create_topics([CreateTopicSpec("d")])  # and the log follows
        for follower in (late, again):
            await follower.wait_for_offset(s.controller.image.offset, 5)
            assert follower.loader.image == s.controller.image
            await follower.stop()
        await client.close()


def _dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@asynctest
async def test_client_skips_dead_voters_and_raises_request_errors_at_once(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path) as s:
        client = client_for({1: _dead_address(), 2: s.address, 3: _dead_address()})
        for broker_id in range(3):  # whichever voter it starts with
            client._leader = None
            await unfenced_broker(client, broker_id)
            assert client.leader_id == 2

        started = time.monotonic()
        with pytest.raises(ControllerError) as err:
            await client._call("DeleteTopics", pb.DeleteTopicsRequest(
                topics=[pb.TopicRef(topic_id=b"short")]))
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT.name
        assert "16 bytes" in str(err.value) and time.monotonic() - started < 1
        await client.close()

    client = client_for({1: _dead_address()}, request_timeout_s=0.3)
    with pytest.raises(ControllerUnavailable, match=r"within 0\.3s .*1@127\.0\.0\.1:\d+: UNAVAILABLE"):
        await client.create_topics([CreateTopicSpec("x")])
    await client.close()

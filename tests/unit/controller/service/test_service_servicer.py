"""ControllerService called directly (no network): statuses, sessions wired to operations,
snapshots on FetchMetadata. The gRPC transport itself is covered by
tests/integration/test_controller_service.py."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataImage, decode_record
from odradek.controller.metadata.diff import replay
from odradek.controller.metadata.requests import CreateTopicSpec, NotControllerError
from odradek.controller.quorum import LocalMetadataLog, QuorumController
from odradek.controller.rpc import controller_pb2 as pb
from odradek.controller.service import (
    LEADER_ADDRESS_KEY,
    LEADER_ID_KEY,
    ControllerService,
    ManualQuorumInfo,
)
from odradek.controller.service.listener_probe import refuses_connections

SESSION_MS = 1000  # the expiry check runs every 100 ms of real time


class Aborted(Exception):
    pass


class Context:
    """The part of grpc.aio.ServicerContext the service uses."""

    code: grpc.StatusCode | None = None
    details: str = ""
    metadata: dict[str, str] = {}

    async def abort(self, code: grpc.StatusCode, details: str = "",
                    trailing_metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.code, self.details, self.metadata = code, details, dict(trailing_metadata)
        raise Aborted(f"{code.name}: {details}")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class CompactedLog:
    """The log after compaction up to `start - 1`: reads below it fail as the Raft log's."""

    def __init__(self, log: LocalMetadataLog, start: int) -> None:
        self.log, self.start = log, start

    def read_from(self, offset: int) -> Iterator[tuple[int, bytes]]:
        if offset < self.start:
            raise LookupError(f"offset {offset} was compacted")
        return self.log.read_from(offset)


class Node:
    def __init__(self, tmp_path: Path, quorum: ManualQuorumInfo | None = None,
                 compacted_below: int = 0, **kwargs: Any) -> None:
        self.log = LocalMetadataLog(tmp_path)
        self.controller = QuorumController(self.log, rng=random.Random(3))
        self.quorum = quorum or ManualQuorumInfo(is_leader=True, leader_id=1, term=1)
        self.clock = Clock()
        self.service = ControllerService(
            self.controller, self.quorum, CompactedLog(self.log, compacted_below),
            session_timeout_ms=SESSION_MS, heartbeat_interval_ms=100, clock=self.clock,
            stream_keepalive_s=0.05, **kwargs)

    async def register(self, broker_id: int) -> int:
        response = await self.service.RegisterBroker(pb.RegisterBrokerRequest(
            broker_id=broker_id, incarnation_id=str(uuid.uuid4()),
            listeners=[{"name": "PLAINTEXT", "host": "h", "port": 9092}]), Context())
        assert response.error_code == 0
        assert (response.heartbeat_interval_ms, response.session_timeout_ms) == (100, SESSION_MS)
        return response.broker_epoch

    async def heartbeat(self, broker_id: int, epoch: int, offset: int | None = None,
                        **kwargs: bool) -> pb.BrokerHeartbeatResponse:
        return await self.service.BrokerHeartbeat(pb.BrokerHeartbeatRequest(
            broker_id=broker_id, broker_epoch=epoch,
            metadata_offset=self.controller.image.offset if offset is None else offset,
            **kwargs), Context())

    @property
    def image(self) -> MetadataImage:
        return self.controller.image


async def started(tmp_path: Path, **kwargs: Any) -> Node:
    node = Node(tmp_path, **kwargs)
    await node.service.start()
    return node


# ----- refusals -----


async def test_a_follower_refuses_with_the_leader_in_trailing_metadata(tmp_path: Path) -> None:
    quorum = ManualQuorumInfo(is_leader=False, leader_id=3, leader_address="10.0.0.3:9093")
    node = await started(tmp_path, quorum=quorum)
    for call, request in [
        (node.service.CreateTopics, pb.CreateTopicsRequest()),
        (node.service.RegisterBroker, pb.RegisterBrokerRequest()),
        (node.service.BrokerHeartbeat, pb.BrokerHeartbeatRequest()),
        (node.service.AlterPartition, pb.AlterPartitionRequest()),
        (node.service.AllocateProducerIds, pb.AllocateProducerIdsRequest()),
    ]:
        ctx = Context()
        with pytest.raises(Aborted):
            await call(request, ctx)
        assert ctx.code == grpc.StatusCode.FAILED_PRECONDITION
        assert ctx.details == "not the active controller; leader is 3 at 10.0.0.3:9093"
        assert ctx.metadata == {LEADER_ID_KEY: "3", LEADER_ADDRESS_KEY: "10.0.0.3:9093"}

    quorum.set(is_leader=False)  # election in progress
    ctx = Context()
    with pytest.raises(Aborted):
        await node.service.CreateTopics(pb.CreateTopicsRequest(), ctx)
    assert ctx.code == grpc.StatusCode.UNAVAILABLE and ctx.metadata == {}
    assert "no leader is known" in ctx.details

    ctx = Context()
    with pytest.raises(Aborted):
        async for _ in node.service.FetchMetadata(pb.FetchMetadataRequest(), ctx):
            pass
    assert ctx.code == grpc.StatusCode.UNAVAILABLE
    await node.service.close()


async def test_losing_leadership_during_an_operation_redirects(tmp_path: Path) -> None:
    node = await started(tmp_path)
    epoch = await node.register(1)
    error = NotControllerError("lost it")
    error.leader_id = 2  # type: ignore[attr-defined]
    error.leader_address = "h2:1"  # type: ignore[attr-defined]

    async def refuse(records: Sequence[bytes]) -> int:
        # Leadership was lost between the service's check and the append.
        raise error

    node.log.append = refuse  # type: ignore[method-assign]
    ctx = Context()
    with pytest.raises(Aborted):
        await node.service.BrokerHeartbeat(pb.BrokerHeartbeatRequest(
            broker_id=1, broker_epoch=epoch, metadata_offset=epoch), ctx)
    assert ctx.code == grpc.StatusCode.FAILED_PRECONDITION
    assert ctx.metadata == {LEADER_ID_KEY: "2", LEADER_ADDRESS_KEY: "h2:1"}

    error = NotControllerError("no hint")
    ctx = Context()
    with pytest.raises(Aborted):
        await node.service.BrokerHeartbeat(pb.BrokerHeartbeatRequest(
            broker_id=1, broker_epoch=epoch, metadata_offset=epoch), ctx)
    # We still believe we lead, the log says no: the leader is unknown for now.
    assert ctx.code == grpc.StatusCode.UNAVAILABLE
    await node.service.close()


async def test_malformed_requests_are_invalid_argument(tmp_path: Path) -> None:
    node = await started(tmp_path)
    ctx = Context()
    with pytest.raises(Aborted):
        await node.service.DeleteTopics(
            pb.DeleteTopicsRequest(topics=[pb.TopicRef(topic_id=b"short")]), ctx)
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "16 bytes" in ctx.details and "DeleteTopics" in ctx.details
    await node.service.close()


async def test_unexpected_failures_are_internal_with_a_message(tmp_path: Path) -> None:
    node = await started(tmp_path)

    async def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    node.controller.create_topics = boom  # type: ignore[method-assign]
    ctx = Context()
    with pytest.raises(Aborted):
        await node.service.CreateTopics(pb.CreateTopicsRequest(), ctx)
    assert ctx.code == grpc.StatusCode.INTERNAL and "disk on fire" in ctx.details
    await node.service.close()


def test_heartbeat_interval_must_fit_in_the_session(tmp_path: Path) -> None:
    log = LocalMetadataLog(tmp_path)
    with pytest.raises(ValueError, match="heartbeat interval"):
        ControllerService(QuorumController(log), ManualQuorumInfo(is_leader=True), log,
                          session_timeout_ms=1000, heartbeat_interval_ms=1000)


# ----- sessions through the service -----


async def test_heartbeat_errors_are_kafka_codes_not_grpc_errors(tmp_path: Path) -> None:
    node = await started(tmp_path)
    hb = await node.heartbeat(7, 0)
    assert hb.error_code == ErrorCode.broker_id_not_registered and hb.is_fenced
    epoch = await node.register(7)
    hb = await node.heartbeat(7, epoch + 1)
    assert hb.error_code == ErrorCode.stale_broker_epoch
    await node.service.close()


async def test_unfence_then_fence_on_expiry(tmp_path: Path) -> None:
    node = await started(tmp_path)
    epoch = await node.register(1)
    hb = await node.heartbeat(1, epoch, offset=epoch - 1)
    assert hb.is_fenced and not hb.is_caught_up
    hb = await node.heartbeat(1, epoch)
    assert not hb.is_fenced and hb.is_caught_up and node.image.is_unfenced(1)

    node.clock.now += SESSION_MS / 1000 - 0.001
    await asyncio.sleep(0.25)  # two expiry checks
    assert node.image.is_unfenced(1)
    node.clock.now += 0.002
    for _ in range(50):
        if not node.image.is_unfenced(1):
            break
        await asyncio.sleep(0.02)
    assert not node.image.is_unfenced(1)
    # It comes back with its next heartbeat.
    hb = await node.heartbeat(1, epoch)
    assert not hb.is_fenced
    await node.service.close()


async def test_leader_change_restarts_every_session(tmp_path: Path) -> None:
    node = await started(tmp_path)
    epoch = await node.register(1)
    await node.heartbeat(1, epoch)
    node.clock.now += SESSION_MS / 1000 * 0.9
    node.quorum.set(is_leader=False, leader_id=2, leader_address="h2:1")
    assert 1 not in node.service.sessions
    node.quorum.set(is_leader=True, leader_id=1)
    node.clock.now += SESSION_MS / 1000 * 0.9  # past the old deadline, not the new one
    await asyncio.sleep(0.25)
    assert node.image.is_unfenced(1)
    node.clock.now += SESSION_MS / 1000 * 0.2
    for _ in range(50):
        if not node.image.is_unfenced(1):
            break
        await asyncio.sleep(0.02)
    assert not node.image.is_unfenced(1)
    await node.service.close()


async def test_controlled_shutdown(tmp_path: Path) -> None:
    node = await started(tmp_path)
    epochs = {b: await node.register(b) for b in (1, 2)}
    for b, epoch in epochs.items():
        await node.heartbeat(b, epoch)
    [t] = await node.controller.create_topics([CreateTopicSpec("t", 4, 2)])
    assert t.error_code == 0
    stream = node.service.BrokerLiveness(
        pb.BrokerLivenessRequest(broker_id=2, broker_epoch=epochs[2]), Context())
    reader = asyncio.create_task(anext(stream))
    await asyncio.sleep(0.05)
    hb = await node.heartbeat(2, epochs[2], want_shutdown=True)
    # Kafka's controlled shutdown: leaderships and ISR places moved, no new ones, but still
    # unfenced (clients keep it in their broker lists while they move to the new leaders).
    assert not hb.is_fenced and hb.should_shutdown
    assert {p.leader for p in node.image.topics["t"].partitions.values()} == {1}
    assert all(p.isr == (1,) for p in node.image.topics["t"].partitions.values())
    broker = node.image.brokers[2]
    assert broker.in_controlled_shutdown and not broker.fenced
    assert 2 not in node.image.usable_ids and node.image.is_unfenced(2)
    # It may keep heartbeating; it stays shut down even without asking again.
    hb = await node.heartbeat(2, epochs[2])
    assert hb.should_shutdown and node.image.brokers[2].in_controlled_shutdown
    hb = await node.heartbeat(1, epochs[1])
    assert not hb.is_fenced and not hb.should_shutdown
    # Its process stops: its liveness stream ends, and it is fenced after the disconnect
    # grace (still listed meanwhile, for clients moving to the new leaders).
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await reader
    await stream.aclose()
    await asyncio.sleep(0.1)
    assert not node.image.brokers[2].fenced
    node.clock.now += node.service.sessions.disconnect_grace
    for _ in range(50):
        if node.image.brokers[2].fenced:
            break
        await asyncio.sleep(0.02)
    assert node.image.brokers[2].fenced
    assert node.service.sessions.fenced_by_reason == {}  # a shutdown, not a failure
    await node.service.close()


async def test_a_broker_whose_listener_refuses_loses_its_leaderships_at_once(
        tmp_path: Path) -> None:
    probed: list[tuple[str, int, float]] = []
    refuse = False

    async def probe(host: str, port: int, timeout: float) -> bool:
        probed.append((host, port, timeout))
        return refuse

    node = await started(tmp_path, probe_listener="PLAINTEXT", probe=probe)
    epochs = {b: await node.register(b) for b in (1, 2, 3)}
    for b, epoch in epochs.items():
        await node.heartbeat(b, epoch)
    [t] = await node.controller.create_topics([CreateTopicSpec("t", 6, 3)])
    assert t.error_code == 0
    grace = node.service.sessions.disconnect_grace

    def led_by(broker_id: int) -> int:
        return sum(p.leader == broker_id for p in node.image.topics["t"].partitions.values())

    async def stream_ends(broker_id: int) -> None:
        stream = node.service.BrokerLiveness(
            pb.BrokerLivenessRequest(broker_id=broker_id, broker_epoch=epochs[broker_id]),
            Context())
        reader = asyncio.create_task(anext(stream))
        await asyncio.sleep(0.05)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await reader
        await stream.aclose()
        await asyncio.sleep(0.1)

    # A listener that answers (or cannot be reached) proves nothing: the grace holds. It is
    # asked again a few times within the grace (a dying process closes its listener a
    # moment after its other sockets, perhaps).
    assert led_by(2) and led_by(1)
    await stream_ends(2)
    await asyncio.sleep(grace)
    assert len(probed) >= 3 and all(p[:2] == ("h", 9092) and p[2] <= 0.1 for p in probed)
    assert node.image.is_usable(2) and led_by(2)
    asked = len(probed)
    # A refused connection means the process is gone: its leaderships move with no time
    # passing, and it stays listed (unfenced, in controlled shutdown) until its session
    # timeout, as Kafka lists a dead broker.
    refuse = True
    await stream_ends(1)
    assert len(probed) == asked + 1
    partitions = node.image.topics["t"].partitions.values()
    assert led_by(1) == 0 and all(1 not in p.isr for p in partitions)
    assert node.image.is_unfenced(1) and node.image.brokers[1].in_controlled_shutdown
    node.clock.now += grace
    for _ in range(50):
        if not node.image.is_unfenced(2):
            break
        await asyncio.sleep(0.02)
    assert not node.image.is_unfenced(2) and node.image.is_unfenced(1)
    # A new process of broker 1 registers at once: the old registration is fenced first.
    epochs[1] = await node.register(1)
    assert node.image.brokers[1].epoch == epochs[1] and node.image.brokers[1].fenced
    assert not node.image.brokers[1].in_controlled_shutdown
    assert node.service.sessions.fenced_by_reason == {"process_gone": 2}
    # A new active controller probes the brokers of the nodes it lost (in a combined node,
    # the old active controller's own broker) instead of giving them two heartbeats.
    await node.heartbeat(3, epochs[3])
    node.quorum.set(is_leader=False, leader_id=2, leader_address="h2:1")
    node.quorum.lost = frozenset({3})
    node.quorum.set(is_leader=True, leader_id=1)
    await asyncio.sleep(0.1)
    assert len(probed) == asked + 2 and node.image.brokers[3].in_controlled_shutdown
    await node.service.close()


async def test_the_listener_probe_counts_only_a_refusal() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    assert not await refuses_connections("127.0.0.1", port, 1.0)
    server.close()
    await server.wait_closed()
    assert await refuses_connections("127.0.0.1", port, 1.0)


# ----- metadata stream -----


async def _read_batch(stream: Any) -> tuple[bool, list[tuple[int, bytes]]]:
    entries: list[tuple[int, bytes]] = []
    while True:
        message = await anext(stream)
        entries.extend((e.offset, e.record) for e in message.entries)
        if message.batch_end:
            return message.snapshot, entries


async def test_fetch_below_the_log_start_sends_a_snapshot_first(tmp_path: Path) -> None:
    node = await started(tmp_path, compacted_below=4)
    epoch = await node.register(1)
    await node.heartbeat(1, epoch)
    await node.controller.create_topics([CreateTopicSpec("a", 3), CreateTopicSpec("b", 1)])
    assert node.image.offset > 4

    stream = node.service.FetchMetadata(pb.FetchMetadataRequest(from_offset=2), Context())
    snapshot, entries = await _read_batch(stream)
    assert snapshot and entries[-1][0] == node.image.offset
    assert replay((o, decode_record(r)) for o, r in entries) == node.image

    await node.controller.create_topics([CreateTopicSpec("c", 2)])
    snapshot, entries = await _read_batch(stream)
    assert not snapshot and len(entries) == 3  # the new topic and its two partitions
    await stream.aclose()

    # From an offset the log still holds: records, no snapshot.
    stream = node.service.FetchMetadata(pb.FetchMetadataRequest(from_offset=4), Context())
    snapshot, entries = await _read_batch(stream)
    assert not snapshot and entries[0][0] == 4 and entries[-1][0] == node.image.offset
    await stream.aclose()
    await node.service.close()


async def test_a_snapshot_that_cannot_be_built_is_out_of_range(tmp_path: Path) -> None:
    def no_snapshot() -> tuple[int, list[tuple[int, bytes]]]:
        return 5, []

    node = await started(tmp_path, compacted_below=10**6, snapshot_records=no_snapshot)
    await node.register(1)
    ctx = Context()
    with pytest.raises(Aborted):
        async for _ in node.service.FetchMetadata(pb.FetchMetadataRequest(), ctx):
            pass
    assert ctx.code == grpc.StatusCode.OUT_OF_RANGE and "malformed" in ctx.details
    await node.service.close()


async def test_idle_streams_send_keepalives_and_end_when_leadership_moves(
    tmp_path: Path,
) -> None:
    node = await started(tmp_path)
    await node.register(1)
    ctx = Context()
    stream = node.service.FetchMetadata(pb.FetchMetadataRequest(), ctx)
    assert (await anext(stream)).batch_end
    keepalive = await asyncio.wait_for(anext(stream), 1)
    assert not keepalive.entries and not keepalive.batch_end
    node.quorum.set(is_leader=False, leader_id=2, leader_address="h2:1")
    with pytest.raises(Aborted):
        await asyncio.wait_for(anext(stream), 1)
    assert ctx.code == grpc.StatusCode.FAILED_PRECONDITION
    assert ctx.metadata[LEADER_ID_KEY] == "2"
    await node.service.close()


async def test_liveness_keepalives_keep_coming_while_metadata_changes_all_the_time(
    tmp_path: Path,
) -> None:
    # A bulk creation commits records faster than the keep-alive interval; the keep-alives
    # must still come by the clock, or the broker takes its stream for silent, drops it,
    # and is fenced as if its process had died.
    node = await started(tmp_path)
    epoch = await node.register(1)
    await node.heartbeat(1, epoch)
    stream = node.service.BrokerLiveness(
        pb.BrokerLivenessRequest(broker_id=1, broker_epoch=epoch), Context())
    received = 0

    async def read() -> None:
        nonlocal received
        async for _ in stream:
            received += 1

    reader = asyncio.create_task(read())
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.5  # ten keep-alive intervals
    while loop.time() < end:
        node.service._on_metadata(None, node.image)  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
    assert received >= 5
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await node.service.close()

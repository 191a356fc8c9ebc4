"""Outgoing Raft messages: one ordered queue, one task and one gRPC channel per peer.

Each peer has its own sender task, so a slow or dead peer only ever delays its own messages.
A sender keeps at most one ``Send`` in flight and puts everything queued meanwhile into the
next call, which keeps messages in order and amortises round trips under load. A failed call
drops its batch (Raft retransmits what matters: heartbeats, probes and appends are resent from
the leader's progress state) and backs off exponentially with jitter. When a queue is full the
oldest message is dropped: the newer ones carry fresher terms and commit indexes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from odradek.controller.grpc_security import PLAINTEXT, GrpcSecurity
from odradek.controller.raft import InstallSnapshotRequest, Message
from odradek.controller.raft_runtime.wire import batch_to_pb
from odradek.controller.rpc import raft_pb2_grpc

log = logging.getLogger("odradek.raft.transport")

# Snapshots travel as one message; the receiving server must accept them (see
# SERVER_OPTIONS). 64 MiB holds the image of some hundreds of thousands of partitions, and
# bounds what one message can make a controller buffer. Reconnect quickly: grpc's default reconnect backoff grows to two minutes,
# which would keep a restarted controller out of the quorum for that long.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Raft handles loss and retries itself; a transparent retry would only add latency.
    ("grpc.enable_retries", 0),
)
# Options for the grpc.aio server the node creates and hands to add_to_server().
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Explicit bounds for what a peer, or anyone who reaches the port, may make the server
    # hold: streams per connection (a node needs a handful) and request headers.
    ("grpc.max_concurrent_streams", 256),
    ("grpc.max_metadata_size", 16 * 1024),
    # Without this, a second process could bind the same port and steal half the traffic.
    ("grpc.so_reuseport", 0),
)


class Transport(Protocol):
    """What the driver needs to get messages out; must never block or raise on send."""

    def send(self, messages: Sequence[Message]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class PeerStats:
    address: str
    sent: int = 0
    dropped: int = 0
    failed_calls: int = 0
    queued: int = 0
    last_error: str | None = None


class _Peer:
    def __init__(self, owner: GrpcTransport, peer_id: int, address: str) -> None:
        self.owner = owner
        self.peer_id = peer_id
        self.address = address
        self.queue: deque[Message] = deque()
        self.wakeup = asyncio.Event()
        self.stats = PeerStats(address)
        self.channel: grpc.aio.Channel | None = None
        self.task: asyncio.Task[None] | None = None
        self.watch: asyncio.Task[None] | None = None
        self.lost = False  # connected once, and not now
        self._drop_logged = False

    def enqueue(self, m: Message) -> None:
        if len(self.queue) >= self.owner.queue_size:
            self.queue.popleft()
            self.stats.dropped += 1
            if not self._drop_logged:
                # Once per episode: a dead peer would otherwise log at the heartbeat rate.
                self._drop_logged = True
                log.warning("node %d: queue to node %d (%s) is full (%d messages); dropping "
                            "the oldest until it drains", self.owner.node_id, self.peer_id,
                            self.address, self.owner.queue_size)
        self.queue.append(m)
        self.wakeup.set()

    def start(self) -> None:
        self.channel = self.owner.security.channel(self.address, options=CHANNEL_OPTIONS)
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"raft-send-{self.owner.node_id}-to-{self.peer_id}")
        self.watch = asyncio.get_running_loop().create_task(
            self._watch(), name=f"raft-watch-{self.owner.node_id}-to-{self.peer_id}")
        if self.queue:
            self.wakeup.set()

    async def _watch(self) -> None:
        """Tell the owner when an established connection to the peer is lost: the kernel
        closes a dead process's sockets at once, long before an election timeout."""
        assert self.channel is not None
        ready = grpc.ChannelConnectivity.READY
        state = self.channel.get_state(try_to_connect=False)
        while True:
            await self.channel.wait_for_state_change(state)
            new = self.channel.get_state(try_to_connect=False)
            if new is ready:
                self.lost = False
            elif state is ready:
                self.lost = True
            if state is ready and new is not ready and self.owner.on_peer_lost is not None:
                try:
                    self.owner.on_peer_lost(self.peer_id)
                except Exception:
                    log.exception("node %d: handling the loss of node %d failed",
                                  self.owner.node_id, self.peer_id)
            state = new

    def _next_batch(self) -> list[Message]:
        batch: list[Message] = []
        while self.queue and len(batch) < self.owner.max_batch:
            if isinstance(self.queue[0], InstallSnapshotRequest) and batch:
                break  # a snapshot may be large: it travels alone
            batch.append(self.queue.popleft())
            if isinstance(batch[-1], InstallSnapshotRequest):
                break
        return batch

    async def _run(self) -> None:
        assert self.channel is not None
        stub = raft_pb2_grpc.RaftServiceStub(self.channel)
        backoff = self.owner.backoff_s
        failing = False
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                batch = self._next_batch()
                if not self.queue:
                    self._drop_logged = False
                request = batch_to_pb(batch, self.owner.cluster_id)
                try:
                    await stub.Send(request, timeout=self.owner.rpc_timeout_s)
                except grpc.aio.AioRpcError as exc:
                    self.stats.failed_calls += 1
                    self.stats.dropped += len(batch)
                    self.stats.last_error = f"{exc.code().name}: {exc.details()}"
                    level = logging.DEBUG if failing else logging.WARNING
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE,
                                          grpc.StatusCode.DEADLINE_EXCEEDED):
                        # Not a connectivity problem: a configuration or version mismatch
                        # that will not fix itself; keep it visible.
                        level = logging.ERROR
                    log.log(level, "node %d: sending %d Raft message(s) to node %d (%s) "
                            "failed: %s; dropped them, retrying in %.2fs", self.owner.node_id,
                            len(batch), self.peer_id, self.address, self.stats.last_error,
                            backoff)
                    failing = True
                    await asyncio.sleep(backoff * (0.5 + self.owner.rng.random()))
                    backoff = min(backoff * 2, self.owner.backoff_max_s)
                    continue
                self.stats.sent += len(batch)
                if failing:
                    log.info("node %d: node %d (%s) is reachable again", self.owner.node_id,
                             self.peer_id, self.address)
                    failing = False
                backoff = self.owner.backoff_s

    async def close(self) -> None:
        for task in (self.task, self.watch):
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self.channel is not None:
            await self.channel.close(grace=None)


class GrpcTransport:
    def __init__(
        self,
        node_id: int,
        peers: Mapping[int, str],
        *,
        cluster_id: str = "",
        queue_size: int = 4096,
        max_batch: int = 256,
        rpc_timeout_s: float = 5.0,
        backoff_s: float = 0.05,
        backoff_max_s: float = 2.0,
        rng: random.Random | None = None,
        security: GrpcSecurity = PLAINTEXT,
    ) -> None:
        self.node_id = node_id
        self.security = security
        self.cluster_id = cluster_id
        self.queue_size = queue_size
        self.max_batch = max_batch
        self.rpc_timeout_s = rpc_timeout_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.rng = rng or random.Random()
        self._peers: dict[int, _Peer] = {p: _Peer(self, p, a) for p, a in peers.items()}
        # Called with a peer's id when an established connection to it is lost.
        self.on_peer_lost: Callable[[int], None] | None = None
        self._started = False
        self._unknown_logged: set[int] = set()

    def send(self, messages: Sequence[Message]) -> None:
        for m in messages:
            peer = self._peers.get(m.dst)
            if peer is None:
                # The core only addresses configured members; log once per id so a membership
                # mismatch is visible rather than silent.
                if m.dst not in self._unknown_logged:
                    self._unknown_logged.add(m.dst)
                    log.error("node %d: no address for node %d; its Raft messages are dropped. "
                              "List it in controller.quorum.voters (or the observers)",
                              self.node_id, m.dst)
                continue
            peer.enqueue(m)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for peer in self._peers.values():
            peer.start()

    async def close(self) -> None:
        self._started = False
        peers = list(self._peers.values())
        await asyncio.gather(*(p.close() for p in peers))

    async def set_peers(self, peers: Mapping[int, str]) -> None:
        """Add, remove or re-address peers (observers joining or leaving)."""
        for peer_id in list(self._peers):
            if peers.get(peer_id) != self._peers[peer_id].address:
                await self._peers.pop(peer_id).close()
        for peer_id, address in peers.items():
            if peer_id not in self._peers:
                peer = self._peers[peer_id] = _Peer(self, peer_id, address)
                if self._started:
                    peer.start()

    def lost_peers(self) -> frozenset[int]:
        """Peers whose connection was established and is not now (a dead process's)."""
        return frozenset(p for p, peer in self._peers.items() if peer.lost)

    def channel(self, peer_id: int) -> grpc.aio.Channel | None:
        """The channel to a peer, for other calls (DescribeQuorum forwarding)."""
        peer = self._peers.get(peer_id)
        return peer.channel if peer is not None else None

    def stats(self) -> dict[int, PeerStats]:
        for peer in self._peers.values():
            peer.stats.queued = len(peer.queue)
        return {p: peer.stats for p, peer in self._peers.items()}

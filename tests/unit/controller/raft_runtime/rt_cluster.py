"""In-process controller clusters for the raft_runtime unit tests.

Every node is a real RaftMetadataLog (real FileLogStore, real driver) with a QuorumController,
all on one event loop; messages go through a loopback network that serializes them to
protobuf bytes and back (so the wire code is exercised too) and can cut nodes off.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from odradek.controller.metadata import MetadataImage, MetadataLoader
from odradek.controller.quorum import QuorumController
from odradek.controller.raft import Message
from odradek.controller.raft_runtime import RaftMetadataLog, RaftSettings
from odradek.controller.raft_runtime.wire import batch_from_pb, batch_to_pb
from odradek.controller.rpc import raft_pb2 as pb


class LoopbackNetwork:
    def __init__(self) -> None:
        self.nodes: dict[int, RaftMetadataLog] = {}
        self.isolated: set[int] = set()
        # Messages for which this returns True are lost.
        self.drop: Callable[[Message], bool] | None = None
        self.delivered = 0

    def transport(self, node_id: int) -> LoopbackTransport:
        return LoopbackTransport(self, node_id)

    def deliver(self, wire: bytes) -> None:
        messages = batch_from_pb(pb.RaftMessageBatch.FromString(wire))
        m = messages[0]
        if m.src in self.isolated or m.dst in self.isolated:
            return
        if self.drop is not None and self.drop(m):
            return
        target = self.nodes.get(m.dst)
        if target is not None and target.driver.running:
            self.delivered += 1
            target.driver.step(messages)


class LoopbackTransport:
    def __init__(self, net: LoopbackNetwork, node_id: int) -> None:
        self.net = net
        self.node_id = node_id

    def send(self, messages: Sequence[Message]) -> None:
        loop = asyncio.get_running_loop()
        for m in messages:
            loop.call_soon(self.net.deliver, batch_to_pb([m]).SerializeToString())

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class Node:
    def __init__(self, mlog: RaftMetadataLog, controller: QuorumController) -> None:
        self.log = mlog
        self.controller = controller

    @property
    def image(self) -> MetadataImage:
        return self.controller.image


class Cluster:
    def __init__(self, base: Path, voters: int = 3, observers: Sequence[int] = (),
                 tick_ms: int = 10, **settings: object) -> None:
        self.base = base
        self.net = LoopbackNetwork()
        self.voters = {i: f"127.0.0.1:{1000 + i}" for i in range(1, voters + 1)}
        self.observers = {i: f"127.0.0.1:{1000 + i}" for i in observers}
        self.tick_ms = tick_ms
        self.extra = settings
        self.nodes: dict[int, Node] = {}

    def settings(self, node_id: int) -> RaftSettings:
        return RaftSettings(node_id=node_id, voters=self.voters, observers=self.observers,
                            data_dir=self.base / f"raft-{node_id}", tick_ms=self.tick_ms,
                            **self.extra)  # type: ignore[arg-type]

    async def start(self, *ids: int) -> None:
        for node_id in ids or [*self.voters, *self.observers]:
            loader = MetadataLoader()
            mlog = RaftMetadataLog(self.settings(node_id), loader,
                                   transport=self.net.transport(node_id),
                                   rng=random.Random(node_id))
            controller = QuorumController(mlog, loader=loader, rng=random.Random(node_id))
            self.nodes[node_id] = Node(mlog, controller)
            self.net.nodes[node_id] = mlog
            await mlog.start()

    async def stop(self, *ids: int, graceful: bool = True) -> None:
        """Stop the given nodes (all: without leadership handovers, the quorum goes away)."""
        for node_id in ids or list(self.nodes):
            node = self.nodes.pop(node_id)
            if not graceful:
                self.net.isolated.add(node_id)  # like a crash: nothing more leaves it
            await node.log.stop(handover=graceful and bool(ids))
            self.net.isolated.discard(node_id)
            self.net.nodes.pop(node_id, None)

    async def leader(self, timeout: float = 5.0, exclude: Sequence[int] = ()) -> Node:
        found: list[Node] = []

        def ready() -> bool:
            found[:] = [n for i, n in self.nodes.items() if n.log.is_leader and i not in exclude]
            return bool(found)

        await wait_for(ready, timeout, "no leader elected")
        return found[0]

    async def converged(self, timeout: float = 5.0) -> MetadataImage:
        """Wait until every running node has the same image; return it."""
        def same() -> bool:
            images = [n.image for n in self.nodes.values()]
            return all(i == images[0] for i in images)

        await wait_for(same, timeout, "images did not converge: " + ", ".join(
            f"{i}@{n.image.offset}" for i, n in self.nodes.items()))
        return next(iter(self.nodes.values())).image


async def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        await asyncio.sleep(0.005)


async def retry(op: Callable[[], Awaitable[object]], timeout: float = 5.0) -> object:
    """Run a controller operation, retrying while no controller can take it."""
    from odradek.controller.metadata.requests import NotControllerError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return await op()
        except NotControllerError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


def broker_listener(broker_id: int) -> list[tuple[str, str, int]]:
    return [("PLAINTEXT", "127.0.0.1", 9000 + broker_id)]


def incarnation(n: int) -> str:
    return str(uuid.UUID(int=n + 1))

"""A real single node, in this process, on one event loop kept for a whole fuzzing run.

The fuzzer hands every decoded request to the node's own handler table, so the handlers run
against real partition logs, a real group coordinator and a real local metadata log.

The node's state must stay bounded over a million inputs: a fuzzer creates topics, appends
records and leaves long polls waiting, and the data dir is on /dev/shm, in memory. So the
node is recycled (stopped, its data dir deleted, a fresh one started) every
``recycle_every`` dispatched requests, or once it holds ``max_topics`` topics or
``max_partitions`` partitions, or ``max_running`` handlers still wait; and one request may
add at most ``MAX_NEW_PARTITIONS`` partitions (Kafka's bound, 10,000, lets one input spend
seconds creating logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from odradek.broker.cli.node import build_node
from odradek.broker.config import parse_config
from odradek.broker.node import Node

_SHM = Path("/dev/shm")
MAX_NEW_PARTITIONS = 16


def scratch_root() -> str | None:
    # A node fsyncs its metadata log and partition logs: on tmpfs that costs nothing.
    return str(_SHM) if _SHM.is_dir() else None


class NodeHost:
    def __init__(self, recycle_every: int = 5_000, max_topics: int = 16,
                 max_partitions: int = 64, max_running: int = 256,
                 scratch: Path | None = None) -> None:
        """``scratch``: where the data dirs go (default: a new directory on /dev/shm)."""
        self.loop = asyncio.new_event_loop()
        self.recycle_every = recycle_every
        self.max_topics = max_topics
        self.max_partitions = max_partitions
        self.max_running = max_running
        self._root = Path(tempfile.mkdtemp(prefix="odradek-fuzz-",
                                           dir=scratch if scratch else scratch_root()))
        self._generation = 0
        self._dispatched = 0
        self.recycled = 0
        self.node: Node = self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    async def _start(self, data_dir: Path | None = None) -> Node:
        if data_dir is None:
            self._generation += 1
            data_dir = self._root / f"node-{self._generation}"
        config = parse_config({
            "node.id": 1,
            "data.dir": str(data_dir),
            # Bound but never connected to: requests come straight from the fuzzer.
            "listeners": "PLAINTEXT://127.0.0.1:0",
            "group.initial.rebalance.delay.ms": 0,
            "group.min.session.timeout.ms": 10,
            "offsets.topic.num.partitions": 2,
            "offsets.topic.replication.factor": 1,
        }, env={})
        node = build_node(config)
        # Kafka lets one request add 10,000 partitions, and creating that many logs takes
        # seconds: a fuzzer that finds the number would spend its time there.
        node.controller.settings = dataclasses.replace(
            node.controller.settings, max_partitions_per_request=MAX_NEW_PARTITIONS)
        await node.start()
        return node

    def after_dispatch(self, running: int) -> bool:
        """Count one dispatched request; recycle the node when its state has grown or
        ``running`` handlers (long polls) pile up. True when it was recycled."""
        self._dispatched += 1
        image = self.node.image
        if (self._dispatched % self.recycle_every == 0 or running > self.max_running
                or len(image.topics) > self.max_topics
                or sum(len(t.partitions) for t in image.topics.values())
                > self.max_partitions):
            self.recycle()
            return True
        return False

    def recycle(self) -> None:
        old = self.node
        self.run(self._stop(old))
        # The restart check: a node started again on what the fuzzer's requests left on
        # disk must recover its logs and reload its groups (an exception here, or one the
        # node logs, is a finding of the input that triggered the recycle).
        again = self.run(self._start(old.data_dir))
        self.run(self._groups_loaded(again))
        self.run(self._stop(again))
        shutil.rmtree(old.data_dir, ignore_errors=True)
        self.node = self.run(self._start())
        self.recycled += 1

    @staticmethod
    async def _groups_loaded(node: Node) -> None:
        # The node loads each __consumer_offsets partition it leads in a task of its own.
        for _ in range(1000):
            await asyncio.sleep(0)
            if not node.groups.loading_partitions():
                return

    async def _stop(self, node: Node) -> None:
        await node.stop()
        # Whatever the node left running (a long-poll its handler did not finish, a
        # coordinator timer) belongs to the node that is gone.
        current = asyncio.current_task()
        leftovers = [t for t in asyncio.all_tasks() if t is not current]
        for t in leftovers:
            t.cancel()
        for t in leftovers:
            with contextlib.suppress(BaseException):
                await t

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self._stop(self.node))
        self.loop.close()
        shutil.rmtree(self._root, ignore_errors=True)


def quiet_node_logs() -> None:
    """The node logs every refused request and rebalance, and a fuzzer sends millions:
    only errors get through (the target looks at those that carry an exception)."""
    for name in ("odradek", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)

"""A controller-only node for trying the Raft runtime by hand and for integration tests.

    python -m odradek.controller.raft_runtime.devnode --id 1 \\
        --voters 1@127.0.0.1:7001,2@127.0.0.1:7002,3@127.0.0.1:7003 --dir /tmp/c1

It runs a RaftMetadataLog and a QuorumController on one grpc.aio server (the address given
for --id) and takes commands as JSON lines on stdin, answering one JSON line each on stdout
(logs go to stderr)::

    {"id": 1, "op": "status"}
    {"id": 2, "op": "register_broker", "broker_id": 1}         registers and unfences it
    {"id": 3, "op": "create_topic", "name": "t", "partitions": 3, "replication_factor": 3}
    {"id": 4, "op": "snapshot"}                                 snapshot + compact now
    {"id": 5, "op": "describe"}                                 DescribeQuorum, this node's view
    {"id": 6, "op": "stop"}                                     graceful stop (hands over)

Answers are ``{"id": .., "ok": true, ...}`` or ``{"id": .., "ok": false, "error": ..,
"message": .., "leader_id": ..}``; ``error`` is "not_controller" when another node leads.
The node also stops on SIGTERM or when stdin closes, and exits with status 3 if Raft fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from odradek.controller.metadata import MetadataImage, MetadataLoader
from odradek.controller.metadata.requests import CreateTopicSpec, NotControllerError
from odradek.controller.quorum import QuorumController
from odradek.controller.raft_runtime.metadata_log import RaftMetadataLog
from odradek.controller.raft_runtime.settings import RaftSettings, parse_quorum
from odradek.controller.raft_runtime.transport import SERVER_OPTIONS

log = logging.getLogger("odradek.devnode")


def image_summary(image: MetadataImage) -> dict[str, Any]:
    """A canonical, JSON-able form of an image: equal images give equal summaries."""
    return {
        "offset": image.offset,
        "brokers": {str(b.id): [b.epoch, b.fenced, b.incarnation_id]
                    for b in sorted(image.brokers.values(), key=lambda b: b.id)},
        "topics": {
            t.name: [str(t.topic_id), {str(p): [list(r.replicas), list(r.isr), r.leader,
                                                r.leader_epoch, r.partition_epoch]
                                       for p, r in sorted(t.partitions.items())}]
            for t in sorted(image.topics.values(), key=lambda t: t.name)
        },
        "configs": {f"{rtype}:{name}": dict(sorted(cfg.items()))
                    for (rtype, name), cfg in sorted(image.configs.items())},
        "next_producer_id": image.next_producer_id,
    }


class DevNode:
    def __init__(self, args: argparse.Namespace) -> None:
        self.settings = RaftSettings(
            node_id=args.id, voters=parse_quorum(args.voters),
            observers=parse_quorum(args.observers or ""), data_dir=Path(args.dir),
            cluster_id=args.cluster_id, tick_ms=args.tick_ms, election_tick=args.election_tick,
            snapshot_interval_records=args.snapshot_every)
        self.loader = MetadataLoader()
        self.mlog = RaftMetadataLog(self.settings, self.loader)
        self.controller = QuorumController(self.mlog, loader=self.loader, rng=random.Random())
        self.server = grpc.aio.server(options=SERVER_OPTIONS)
        self.mlog.add_to_server(self.server)
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        address = self.mlog.address_of(self.settings.node_id)
        assert address is not None
        if self.server.add_insecure_port(address) == 0:
            log.error("node %d: cannot listen on %s", self.settings.node_id, address)
            return 2
        await self.server.start()
        await self.mlog.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        emit({"event": "started", "node_id": self.settings.node_id, "pid": os.getpid()})
        reader = asyncio.create_task(self._read_commands())
        failed = asyncio.create_task(self.mlog.wait_stopped())
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait([reader, failed, stop], return_when=asyncio.FIRST_COMPLETED)
        code = 3 if self.mlog.driver.failure is not None else 0
        reader.cancel()
        await self.mlog.stop()
        await self.server.stop(1.0)
        return code

    async def _read_commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        tasks: set[asyncio.Task[None]] = set()
        while line := await reader.readline():
            if not line.strip():
                continue
            task = asyncio.create_task(self._handle(line))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        self.stopping.set()  # stdin closed: whoever drove us is gone

    async def _handle(self, line: bytes) -> None:
        request_id = None
        try:
            cmd = json.loads(line)
            request_id = cmd.get("id")
            answer = await self._command(cmd)
            answer.setdefault("ok", True)
        except NotControllerError as exc:
            answer = {"ok": False, "error": "not_controller", "message": str(exc),
                      "leader_id": getattr(exc, "leader_id", -1)}
        except Exception as exc:  # answer the caller rather than dying on a bad command
            log.exception("command %r failed", line)
            answer = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        answer["id"] = request_id
        emit(answer)

    async def _command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        mlog, ctl = self.mlog, self.controller
        if op == "status":
            status = mlog.driver.status()
            return {"node_id": mlog.node_id, "is_leader": mlog.is_leader,
                    "leader_id": mlog.leader_id, "term": mlog.term,
                    "committed_offset": mlog.committed_offset,
                    "commit_index": status.commit, "last_index": status.last_index,
                    "snapshot_index": mlog.snapshot_index,
                    "snapshots_installed": mlog.snapshots_installed,
                    "image": image_summary(ctl.image)}
        if op == "register_broker":
            b = int(cmd["broker_id"])
            reg = await ctl.register_broker(b, str(uuid.uuid4()),
                                            [("PLAINTEXT", "127.0.0.1", 9000 + b)])
            if reg.error_code != 0:
                return {"ok": False, "error": "register", "message": reg.error_message}
            res = await ctl.unfence_broker(b, reg.broker_epoch)
            return {"error_code": int(res.error_code), "broker_epoch": reg.broker_epoch}
        if op == "create_topic":
            spec = CreateTopicSpec(str(cmd["name"]), int(cmd.get("partitions", 1)),
                                   int(cmd.get("replication_factor", 1)))
            result = (await ctl.create_topics([spec]))[0]
            return {"error_code": int(result.error_code), "message": result.error_message,
                    "committed_offset": mlog.committed_offset}
        if op == "snapshot":
            return {"snapshot_index": await mlog.snapshot()}
        if op == "describe":
            return {"quorum": MessageToDict(mlog.describe(), preserving_proto_field_name=True)}
        if op == "stop":
            self.stopping.set()
            return {}
        return {"ok": False, "error": "unknown_op", "message": f"unknown op {op!r}"}


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--voters", required=True, help="id@host:port,...")
    parser.add_argument("--observers", default="", help="id@host:port,...")
    parser.add_argument("--dir", required=True, help="this node's Raft data directory")
    parser.add_argument("--cluster-id", default="")
    parser.add_argument("--tick-ms", type=int, default=100)
    parser.add_argument("--election-tick", type=int, default=10)
    parser.add_argument("--snapshot-every", type=int, default=10_000)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [node {args.id}] %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio also works
        code = asyncio.run(_run(args))
    else:
        code = uvloop.run(_run(args))
    sys.exit(code)


async def _run(args: argparse.Namespace) -> int:
    return await DevNode(args).run()


if __name__ == "__main__":
    main()

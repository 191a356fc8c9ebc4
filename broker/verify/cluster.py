"""Odradek nodes inside the namespaces of a ``netns.Network``.

Each node binds its Kafka, controller (gRPC) and metrics listeners on its own 198.18.x.y
address, so a cut between two namespaces cuts replication, Raft and heartbeats between
those nodes, while this process (the client, in the root namespace) connects directly.
Every namespace has its own port space, so the ports are fixed and never collide.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from odradek import storage
from odradek.broker.local_cluster import LocalCluster, NodeProcess
from odradek.broker.verify.netns import Network

KAFKA_PORT = 9092
CONTROLLER_PORT = 9093
METRICS_PORT = 9100


class NamespacedNode(NodeProcess):
    """A NodeProcess that runs in node ``node_id``'s namespace of ``net``."""

    def __init__(self, net: Network, base: Path, node_id: int,
                 overrides: dict[str, Any] | None = None) -> None:
        self.net = net
        host = net.address(node_id)
        super().__init__(base, node_id=node_id, host=host, kafka_port=KAFKA_PORT, overrides={
            "controller.listener": f"{host}:{CONTROLLER_PORT}",
            "metrics.listener": f"{host}:{METRICS_PORT}",
            **(overrides or {})})
        self.metrics_port = METRICS_PORT

    @property
    def netns(self) -> str:
        return self.net.ns(self.node_id)

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{METRICS_PORT}/metrics"

    def _spawn(self, argv: list[str], log: IO[bytes], env: dict[str, str]
               ) -> subprocess.Popen[bytes]:
        # `ip netns exec` execs, so the pid is the node's own and kill() reaches it.
        proc: subprocess.Popen[bytes] = self.net.popen(
            self.node_id, argv, stdout=log, stderr=log, env=env, start_new_session=True)
        return proc


class NamespacedCluster(LocalCluster):
    """``net.n`` combined broker+controller nodes, node ``i`` in namespace ``i``."""

    def __init__(self, net: Network, base: Path, overrides: dict[str, Any] | None = None
                 ) -> None:
        voters = ",".join(f"{i}@{net.address(i)}:{CONTROLLER_PORT}" for i in net.nodes)
        common = {"controller.quorum.voters": voters, "process.roles": "broker,controller",
                  "default.replication.factor": min(3, net.n),
                  "offsets.topic.replication.factor": min(3, net.n), **(overrides or {})}
        self.net = net
        self.nodes: list[NodeProcess] = [NamespacedNode(net, base, i, common)
                                         for i in net.nodes]
        self.controllers: list[NodeProcess] = []

    def controller_address(self, node_id: int) -> str:
        return f"{self.net.address(node_id)}:{CONTROLLER_PORT}"


@dataclass(frozen=True)
class StoredRecord:
    offset: int
    leader_epoch: int
    key: bytes | None
    value: bytes | None


def stored_records(node: NodeProcess, topic: str, partition: int, scratch: Path
                   ) -> tuple[list[StoredRecord], int]:
    """Every record in a stopped node's copy of ``topic-partition`` up to its log end (not
    only up to the high watermark), and the log end offset. The partition directory is
    copied to ``scratch`` first: opening a log may recover and rewrite it."""
    src = node.data_dir / "logs" / f"{topic}-{partition}"
    dst = scratch / f"node-{node.node_id}-{topic}-{partition}"
    shutil.copytree(src, dst)
    log = storage.PartitionLog.open(dst, storage.LogConfig())
    try:
        out: list[StoredRecord] = []
        offset = log.log_start_offset
        while offset < log.log_end_offset:
            chunk = log.read(offset, 1 << 20)
            if not chunk.records:
                break
            for header, records in storage.decode_batches(chunk.records):
                out += [StoredRecord(r.offset, header.partition_leader_epoch, r.key, r.value)
                        for r in records]
            offset = chunk.next_offset
        return out, log.log_end_offset
    finally:
        log.close()

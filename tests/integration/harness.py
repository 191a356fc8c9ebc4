"""Start and stop real Odradek node processes for integration tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]


_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a node to bind later.

    Ports come from below the kernel's ephemeral range: a port from bind(0) is in that
    range, and between our check and the node's bind any outgoing connection on the
    machine may take it (seen in CI as "address already in use").
    """
    low = max(1024, _ephemeral_range()[0])
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(15000, low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             interval: float = 0.2) -> T:
    """The first truthy result of `predicate`, polled every `interval` seconds; exceptions
    count as "not yet" (a cluster may be mid-failover, a node starting or stopping)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last!r}")


def wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass
class NodeProcess:
    """One node process (combined mode) with its own data dir and ephemeral ports."""

    base: Path
    node_id: int = 1
    host: str = "127.0.0.1"
    kafka_port: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if not self.kafka_port:
            self.kafka_port = free_port()
        self.metrics_port = free_port()
        self.config_path = self.base / f"node-{self.node_id}.yaml"
        self.log_path = self.base / f"node-{self.node_id}.log"
        cfg = {
            "node.id": self.node_id,
            "data.dir": str(self.base / f"node-{self.node_id}"),
            "listeners": f"PLAINTEXT://{self.host}:{self.kafka_port}",
            "metrics.listener": f"127.0.0.1:{self.metrics_port}",
            "group.initial.rebalance.delay.ms": 0,
            "group.min.session.timeout.ms": 500,
            "offsets.topic.num.partitions": 5,
        }
        cfg.update(self.overrides)
        self.config_path.write_text(yaml.safe_dump(cfg))

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    def _spawn(self, argv: list[str], log: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start the node's process; subclasses run it elsewhere (a network namespace)."""
        return subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=REPO)

    def start(self, timeout: float = 30.0) -> NodeProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO)
        start_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        marker = f"odradek node {self.node_id} ready".encode()
        with open(self.log_path, "ab") as log:
            self.proc = self._spawn(
                [sys.executable, "-m", "odradek.broker.cli.main", "node", "--config",
                 str(self.config_path)], log, env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.logs()}")
            if marker in self.log_path.read_bytes()[start_at:]:
                return self
            time.sleep(0.05)
        raise TimeoutError(f"node {self.node_id} not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return self.proc.returncode if self.proc else 0

    def restart(self) -> NodeProcess:
        self.kill()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """N combined-mode nodes forming one Raft controller quorum on 127.0.0.1."""

    def __init__(self, base: Path, n: int = 3, overrides: dict[str, Any] | None = None,
                 dedicated_controllers: int = 0) -> None:
        """``n`` broker nodes; combined broker+controller unless ``dedicated_controllers``
        controller-only nodes (ids 101, 102, ...) form the quorum instead."""
        controller_ids = ([101 + i for i in range(dedicated_controllers)]
                          if dedicated_controllers else [i + 1 for i in range(n)])
        cports = {i: free_port() for i in controller_ids}
        voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in cports.items())
        common = {"controller.quorum.voters": voters,
                  "default.replication.factor": min(3, n),
                  "offsets.topic.replication.factor": min(3, n), **(overrides or {})}
        roles = "broker" if dedicated_controllers else "broker,controller"
        self.nodes = [NodeProcess(base, node_id=i + 1, overrides={
            **common, "process.roles": roles,
            "controller.listener": f"127.0.0.1:{cports.get(i + 1, 0) or free_port()}"})
            for i in range(n)]
        self.controllers = [NodeProcess(base, node_id=i, overrides={
            **common, "process.roles": "controller",
            "controller.listener": f"127.0.0.1:{cports[i]}"})
            for i in controller_ids if dedicated_controllers]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def start(self) -> Cluster:
        import threading

        errors: list[BaseException] = []

        def run(node: NodeProcess) -> None:
            try:
                node.start(timeout=60)
            except BaseException as e:  # reported below
                errors.append(e)

        # Nodes wait for a controller quorum, so they must start together.
        threads = [threading.Thread(target=run, args=(n,))
                   for n in self.controllers + self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.kill_all()
            raise errors[0]
        return self

    def node(self, node_id: int) -> NodeProcess:
        return self.nodes[node_id - 1]

    def kill_all(self) -> None:
        for n in self.nodes + self.controllers:
            n.kill()

    def logs(self) -> str:
        return "\n".join(f"--- node {n.node_id} ---\n{n.logs()}"
                         for n in self.nodes + self.controllers)

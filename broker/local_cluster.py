"""Real node processes on this machine: configure, start, wait until serving, and break.

What runs local clusters uses this one module: the fault-injection harness (``odradek
verify``), the test suite, and users' own tests. A node here is an ordinary ``odradek node``
process with its own data directory and ports; killing it is a real SIGKILL, pausing it a
real SIGSTOP.

Nodes that a process started are killed when that process exits normally (atexit), so an
interrupted test run leaves nothing behind; ``odradek node --parent-pid`` makes a node stop
by itself if its starter dies without cleaning up (SIGKILL).
"""

from __future__ import annotations

import atexit
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import yaml

# `python -m <this package>.cli.node` runs `odradek node` of the installation this module is
# from, without loading the rest of the CLI.
_NODE_MODULE = f"{__package__}.cli.node"
_READY_LINE = "odradek node {} ready"

_ports_lock = threading.Lock()
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now, for a node to bind later.

    Ports come from below the kernel's ephemeral range: a port from bind(0) is in that
    range, and between this check and the node's bind any outgoing connection on the
    machine may take it. Ports handed out are remembered, so two calls in one process never
    give the same port; parallel test processes (pytest-xdist) draw at random from about
    17,000 ports, and a collision makes the node fail to bind, which start() reports.
    """
    low = max(1024, _ephemeral_range()[0])
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(15000, low)
        with _ports_lock:
            if port in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def accepts(address: str, timeout: float = 0.2) -> bool:
    """Does something accept TCP connections at ``host:port`` now? (A broker's Kafka port
    accepts once the broker has joined the cluster.)"""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


_live: weakref.WeakSet[NodeProcess] = weakref.WeakSet()


@atexit.register
def kill_started_nodes() -> None:
    """SIGKILL every node this process started and has not stopped: what runs at exit, and
    what a signal handler of the starter (odradek.testing's, on SIGTERM) calls before it
    dies."""
    for node in list(_live):
        node.kill()


@dataclass(eq=False)
class NodeProcess:
    """One node: its configuration file, data directory, log file and process.

    ``overrides`` are node configuration keys (docs/configuration.md) on top of a small
    single-node default; ports left at 0 are chosen with free_port().
    """

    base: Path
    node_id: int = 1
    host: str = "127.0.0.1"
    kafka_port: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if not self.kafka_port:
            self.kafka_port = free_port()
        self.metrics_port = free_port()
        self.config_path = self.base / f"node-{self.node_id}.yaml"
        self.log_path = self.base / f"node-{self.node_id}.log"
        self.data_dir = self.base / f"node-{self.node_id}"
        cfg = {
            "node.id": self.node_id,
            "data.dir": str(self.data_dir),
            "listeners": f"PLAINTEXT://{self.host}:{self.kafka_port}",
            "metrics.listener": f"127.0.0.1:{self.metrics_port}",
            "group.initial.rebalance.delay.ms": 0,
            "group.min.session.timeout.ms": 500,
            "offsets.topic.num.partitions": 5,
            "transaction.state.log.num.partitions": 5,
        }
        cfg.update(self.overrides)
        self.config_path.write_text(yaml.safe_dump(cfg))

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", _NODE_MODULE, "node", "--config", str(self.config_path),
                "--parent-pid", str(os.getpid())]

    def _spawn(self, argv: list[str], log: IO[bytes], env: dict[str, str]
               ) -> subprocess.Popen[bytes]:
        """Start the node's process; subclasses run it elsewhere (a network namespace)."""
        return subprocess.Popen(argv, stdout=log, stderr=log, env=env,
                                start_new_session=True)

    def start(self, timeout: float = 30.0) -> NodeProcess:
        """Start the process and wait until it serves (its Kafka listeners accept only once
        it has joined the cluster)."""
        env = dict(os.environ)
        start_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        marker = _READY_LINE.format(self.node_id).encode()
        with open(self.log_path, "ab") as log:
            self.proc = self._spawn(self.argv(), log, env)
        _live.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.node_id} exited with {self.proc.returncode}:\n"
                                   f"{self.logs()}")
            with open(self.log_path, "rb") as f:
                f.seek(start_at)
                if marker in f.read():
                    return self
            time.sleep(0.02)
        raise TimeoutError(f"node {self.node_id} not ready after {timeout}s:\n{self.logs()}")

    def logs(self, tail: int = 8000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)  # a paused process dies as well
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.paused = False
        _live.discard(self)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: a clean shutdown (leaderships handed over, logs flushed)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
            finally:
                _live.discard(self)
        return self.proc.returncode if self.proc else 0

    def pause(self) -> None:
        """SIGSTOP: the process hangs (as in a long GC pause or a stuck disk) but keeps
        its connections; the cluster fences it when its session expires."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def restart(self, timeout: float = 30.0) -> NodeProcess:
        """Crash and start again with the same data."""
        self.kill()
        return self.start(timeout)


class LocalCluster:
    """N nodes forming one controller quorum on this machine.

    Combined broker+controller nodes (ids 1..n) by default; with ``dedicated_controllers``,
    that many controller-only nodes (ids 101, 102, ...) form the quorum and the n nodes are
    brokers only. ``overrides`` apply to every node."""

    node_class: type[NodeProcess] = NodeProcess

    def __init__(self, base: Path, n: int = 3, overrides: dict[str, Any] | None = None,
                 dedicated_controllers: int = 0, host: str = "127.0.0.1") -> None:
        controller_ids = ([101 + i for i in range(dedicated_controllers)]
                          if dedicated_controllers else [i + 1 for i in range(n)])
        cports = {i: free_port() for i in controller_ids}
        voters = ",".join(f"{i}@{host}:{p}" for i, p in cports.items())
        common = {"controller.quorum.voters": voters,
                  "default.replication.factor": min(3, n),
                  "offsets.topic.replication.factor": min(3, n), **(overrides or {})}
        roles = "broker" if dedicated_controllers else "broker,controller"
        self._base, self._host, self._common = base, host, common
        self.nodes = [self.node_class(base, node_id=i + 1, host=host, overrides={
            **common, "process.roles": roles,
            "controller.listener": f"{host}:{cports.get(i + 1) or free_port()}"})
            for i in range(n)]
        self.controllers = [self.node_class(base, node_id=i, host=host, overrides={
            **common, "process.roles": "controller",
            "controller.listener": f"{host}:{cports[i]}"})
            for i in controller_ids if dedicated_controllers]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def all_nodes(self) -> list[NodeProcess]:
        return self.controllers + self.nodes

    def start(self, timeout: float = 60.0) -> LocalCluster:
        """Start every node at once (nodes wait for a controller quorum, so they must start
        together) and wait until all serve."""
        in_parallel(lambda n: n.start(timeout), self.all_nodes(), on_error=self.kill_all)
        return self

    def add_broker(self, node_id: int | None = None) -> NodeProcess:
        """A new broker-only node joining this cluster's quorum (not started): how a cluster
        grows before partitions are reassigned onto the new broker."""
        if node_id is None:
            node_id = max(n.node_id for n in self.nodes) + 1
        if any(n.node_id == node_id for n in self.all_nodes()):
            raise ValueError(f"node id {node_id} is already in this cluster")
        node = self.node_class(self._base, node_id=node_id, host=self._host, overrides={
            **self._common, "process.roles": "broker",
            "controller.listener": f"{self._host}:{free_port()}"})
        self.nodes.append(node)
        return node

    def node(self, node_id: int) -> NodeProcess:
        for n in self.all_nodes():
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id} in this cluster")

    def kill_all(self) -> None:
        for n in self.all_nodes():
            n.kill()

    def stop_all(self, timeout: float = 30.0) -> None:
        """Clean shutdown, brokers first (each hands its leaderships to the ones left)."""
        for n in reversed(self.nodes):
            n.stop(timeout)
        for n in self.controllers:
            n.stop(timeout)

    def logs(self) -> str:
        return "\n".join(f"--- node {n.node_id} ---\n{n.logs()}" for n in self.all_nodes())


_N = TypeVar("_N")


def in_parallel(fn: Callable[[_N], object], nodes: Iterable[_N],
                on_error: Callable[[], None]) -> None:
    """``fn`` on every node at once, in threads (a node's start waits for its peers);
    if any fails, ``on_error()`` and its exception is raised."""
    errors: list[BaseException] = []

    def run(node: _N) -> None:
        try:
            fn(node)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        on_error()
        raise errors[0]

"""Shared pieces of the benchmarks: machine limits measured in the same run, process
memory, the controller quorum's view, and the table/JSON report.

Benchmarks are not pass/fail. Every figure is printed beside a limit measured (or
configured) in the same run, so it means something on a noisy shared machine.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.harness import wait_for  # noqa: F401 - used by the bench suites

# Load generators are separate processes. "spawn" rather than fork: the parent may hold
# librdkafka threads and locks (admin clients) that a forked child would inherit mid-use.
SPAWN = mp.get_context("spawn")


def raw_disk_write_mb_s(directory: Path, total_mb: int = 512) -> float:
    """Sequential 1 MiB writes then fsync, like a log append path without any framing."""
    path = directory / "disk-probe.bin"
    block = os.urandom(1 << 20)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(total_mb):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    path.unlink()
    return total_mb / elapsed


def fsyncs_per_s(directory: Path, seconds: float = 2.0) -> float:
    """Small appends each followed by fsync: the ceiling for anything that must reach the
    disk one step at a time (creating a partition writes and syncs several small files)."""
    path = directory / "fsync-probe.bin"
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    n = 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            os.write(fd, block)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
        path.unlink()
    return n / (time.perf_counter() - start)


def rss_mb(pid: int) -> float:
    """Resident set size of a process from /proc/<pid>/status, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@functools.cache
def _config_defaults() -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", "config", "defaults"],
                         check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))


def config_defaults() -> dict[str, Any]:
    """Every node configuration key's default, as the installed odradek says."""
    return dict(_config_defaults())


def config_default(key: str) -> Any:
    """Default of a node configuration key, as the installed odradek says."""
    return _config_defaults()[key]


@dataclass
class QuorumView:
    leader_id: int
    term: int
    commit_index: int  # Raft entries (an entry may batch many metadata records)
    committed_record_offset: int  # metadata records applied by the answering node
    answered_by: int


def describe_quorum(addresses: Sequence[str], timeout: float = 1.0,
                    local_only: bool = True) -> list[QuorumView]:
    """Each reachable controller's own view of the quorum (leader -1/0: none known)."""
    import grpc

    from odradek.controller.rpc import raft_pb2, raft_pb2_grpc

    out = []
    for addr in addresses:
        with grpc.insecure_channel(addr) as ch:
            try:
                r = raft_pb2_grpc.RaftServiceStub(ch).DescribeQuorum(
                    raft_pb2.DescribeQuorumRequest(local_only=local_only), timeout=timeout)
            except grpc.RpcError:
                continue
        out.append(QuorumView(r.leader_id, r.term, r.commit_index, r.committed_record_offset,
                              r.answered_by))
    return out


def quorum_views(nodes: Sequence[Any], timeout: float = 1.0,
                 local_only: bool = True) -> list[QuorumView]:
    """The quorum as the live ones of ``nodes`` (controllers) describe it. Odradek nodes
    answer over gRPC, each with its own view (``local_only``) or the leader's; Kafka nodes
    (tests.bench.kafka_peer) answer DescribeQuorum on their controller listener, and only
    the active controller does."""
    from tests.bench.kafka_peer import KafkaNode

    live = [n for n in nodes if n.alive()]
    if any(isinstance(n, KafkaNode) for n in live):
        return [v for n in live if (v := n.quorum_view(timeout)) is not None]
    return describe_quorum([n.overrides["controller.listener"] for n in live], timeout,
                           local_only)


def unfenced_brokers(bootstrap: str, timeout: float = 10.0) -> set[int]:
    """Ids of the registered, unfenced brokers as one of ``bootstrap`` sees them.

    DescribeCluster rather than an all-topics Metadata request: cheaper with 10,000
    partitions (librdkafka's list_topics() over 10,000 RF=3 partitions takes about 0.6 s).
    Through kafka-python: librdkafka's describe_cluster aborted the process
    (rd_kafka_admin_response_parse: assertion `rko_result`) twice right after a large
    creation, and a poll loop should not be able to take the benchmark down."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap,
                             request_timeout_ms=int(timeout * 1000))
    try:
        return {b["broker_id"] for b in admin.describe_cluster()["brokers"]
                if not b.get("is_fenced")}
    finally:
        admin.close()




@dataclass
class Report:
    """Rows for the common table and figures for the one JSON line."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Where a suite running in its own process keeps its results, rewritten on every
    # change so that what was measured survives the process crashing.
    sink: Path | None = None
    # A suite run against a peer (--peer kafka): its figures are keyed "kafka_<figure>"
    # and its sections name the peer.
    figure_prefix: str = ""
    section_suffix: str = ""

    def section(self, title: str) -> None:
        self.row(f"[{title}{self.section_suffix}]", "")

    def row(self, name: str, value: str) -> None:
        self.rows.append((name, value))
        self._save()

    def figure(self, key: str, value: Any) -> None:
        if isinstance(value, float):
            value = round(value, 3)
        self.figures[self.figure_prefix + key] = value
        self._save()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self._save()

    def _save(self) -> None:
        if self.sink is not None:
            tmp = self.sink.with_suffix(".tmp")
            tmp.write_text(json.dumps({"rows": self.rows, "figures": self.figures,
                                       "notes": self.notes}))
            tmp.replace(self.sink)

    def merge_file(self, path: Path) -> bool:
        """Add the results a suite process left in ``path``; False if it left none."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        self.rows.extend((str(a), str(b)) for a, b in data["rows"])
        self.figures.update(data["figures"])
        self.notes.extend(data["notes"])
        return True

    def print_table(self) -> None:
        width = max((len(name) for name, value in self.rows if value), default=0)
        for name, value in self.rows:
            print(f"{name:<{width}}  {value}" if value else name)
        for text in self.notes:
            print(f"note: {text}")


class Interrupted(BaseException):
    """SIGTERM/SIGHUP/SIGINT while benchmarking: unwind so every finally block cleans up."""


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP/SIGINT into an exception so node processes and temp dirs are
    removed even when `make bench` is stopped from outside."""
    def raise_(signum: int, frame: Any) -> None:
        raise Interrupted(f"signal {signum}")

    old = {s: signal.signal(s, raise_) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def bench_dir(parent: Path, name: str) -> Iterator[Path]:
    """A temp dir on the same filesystem as the disk probe, removed even on failure.
    BENCH_KEEP_DIRS=1 keeps it (with the node logs) for a post-mortem."""
    path = Path(tempfile.mkdtemp(prefix=f"odradek-bench-{name}-", dir=parent))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP_DIRS"):
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def stop_node(node: Any) -> None:
    """SIGTERM a node we started; SIGKILL it if it does not exit in time."""
    try:
        node.stop(timeout=30)
    except Exception:
        node.kill()


def stop_processes(procs: Sequence[Any]) -> None:
    """End load-generator processes we started (by their own handles)."""
    for p in procs:
        if p.pid is not None:
            p.join(2)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        if p.pid is not None:
            p.join(5)
        if p.is_alive():
            p.kill()
            p.join(5)


@dataclass(frozen=True)
class Compared:
    """A figure of a suite shown beside the same figure measured on the peer (--peer)."""

    key: str
    label: str
    unit: str
    digits: int = 1
    how: str = "value"  # "median": of a list of trials; "sum": over a dict of nodes
    ratio: bool = True  # False for settings and counts, where a ratio says nothing
    # A figure that must be the same in both runs for a ratio to mean something (the rate
    # a latency was measured at: the suite halves it while a cluster cannot keep up).
    same: str = ""

    def value(self, figures: dict[str, Any], prefix: str = "") -> float | None:
        v = figures.get(prefix + self.key)
        if self.how == "median":
            trials = [x for x in v or () if isinstance(x, int | float)]
            return median(trials) if trials else None
        if self.how == "sum":
            return float(sum(v.values())) if isinstance(v, dict) and v else None
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return float(v)

    def text(self, v: float | None) -> str:
        return "-" if v is None else f"{v:,.{self.digits}f} {self.unit}".rstrip()


def compare_rows(report: Report, title: str, specs: Sequence[Compared],
                 figures: dict[str, Any], peer: str = "kafka") -> dict[str, float]:
    """Rows ``odradek X | kafka Y (X/Y x)`` for the figures both runs measured; returns
    the ratios (odradek / peer) by figure key."""
    prefix = f"{peer}_"
    rows = []
    ratios: dict[str, float] = {}
    for spec in specs:
        ours, theirs = spec.value(figures), spec.value(figures, prefix)
        if ours is None and theirs is None:
            continue
        text = f"odradek {spec.text(ours)} | {peer} {spec.text(theirs)}"
        if spec.same and figures.get(spec.same) != figures.get(prefix + spec.same):
            text += f" (no ratio: {spec.same} differs)"
        elif spec.ratio and ours is not None and theirs:
            ratios[spec.key] = round(ours / theirs, 3)
            text += f" ({ours / theirs:.2f}x)"
        rows.append((spec.label, text))
    report.section(title)
    for label, text in rows or [("no figure measured on both", "-")]:
        report.row(label, text)
    return ratios


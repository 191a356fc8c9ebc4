"""Faults for a verification run, and the seeded schedule that injects them.

Every fault has a ``start`` and a ``stop`` and records a ``Fault`` event (history.py)
at each, after the fault is in force (start) or fully undone (stop: a killed node counts as
down until it reports ready again).

Kinds:

=================  =====================================================================
kill               SIGKILL a node; restart it when the fault ends
pause              SIGSTOP a node; SIGCONT when the fault ends
controller-kill    SIGKILL the active controller (the Raft leader); restart it at the end
crash-unflushed    SIGKILL a node, then cut each of its partition logs' active segment at a
                   random byte position at or after the last fsynced one (the recovery-point
                   checkpoint), as a power cut that drops unflushed page cache would; restart
isolate            cut a node from the other nodes, both ways; clients still reach it
split              minority/majority partition; the client stays with the majority, so the
                   minority is unreachable for it too
oneway             one-way cuts: a node's packets to the others (or theirs to it) are dropped
loss               nftables drops a random share (10-40 %) of a node's packets
delay              tc netem delay on a node's packets (only where the kernel has sch_netem)
=================  =====================================================================

Process faults work on any cluster of ``NodeProcess``es; network faults need the nodes in
the namespaces of a ``netns.Network``.

The schedule is a pure function of the seed and the options: the same command line injects
the same kinds, on the same node numbers, at the same offsets, for the same durations (what
a fault then hits at run time, e.g. which node is the active controller, depends on the run).
At most one fault is active at a time, and each hits one node (a minority), so a majority
and ``min.insync.replicas=2`` of RF=3 can always remain: a correct cluster shows no
anomalies under it.
"""

from __future__ import annotations

import contextlib
import random
import signal
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odradek.broker.local_cluster import NodeProcess
from odradek.broker.verify.history import Event, Fault
from odradek.storage import checkpoint

PROCESS_KINDS = ("kill", "pause", "controller-kill", "crash-unflushed")
NETWORK_KINDS = ("isolate", "split", "oneway", "loss", "delay")
ALL_KINDS = PROCESS_KINDS + NETWORK_KINDS

RECOVERY_POINT_CHECKPOINT = "recovery-point-checkpoint"
CLEAN_SHUTDOWN_FILE = "clean-shutdown"
_BATCH_HEAD = struct.Struct(">qi")  # base offset, batch length (bytes after this field)


SETTLE_TIMEOUT = 30.0  # longest wait for replicas to catch up before the next fault


class FaultError(RuntimeError):
    """A fault could not be applied or undone (e.g. a node did not come back)."""


# --- the schedule -----------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One fault of the schedule: ``at`` seconds after the workload started."""

    at: float
    kind: str
    duration: float
    target: int
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()) if k != "seed")
        whom = "the active controller" if self.kind == "controller-kill" \
            else f"node {self.target}"
        return (f"t+{self.at:.1f}s {self.kind} {whom} for {self.duration:.1f}s"
                + (f" ({extra})" if extra else ""))


def plan(seed: int, kinds: Sequence[str], nodes: Sequence[int], *, duration: float,
         interval: float = 15.0, fault_min: float = 3.0, fault_max: float = 10.0,
         warmup: float | None = None) -> list[Planned]:
    """The faults of a run of ``duration`` seconds: one every ``interval`` seconds from
    ``warmup`` on, each lasting ``fault_min``..``fault_max`` seconds but ending at least
    ``interval / 3`` before the next starts (time for the cluster to heal in between).
    Kinds are dealt from a shuffled deck of ``kinds``, so every kind comes up once before
    any comes up twice. Faults that would not end by ``duration`` are left out."""
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(ALL_KINDS)}")
    if not kinds:
        return []
    if fault_min <= 0 or fault_max < fault_min:
        raise ValueError(f"fault duration range {fault_min}..{fault_max} is empty")
    rng = random.Random(seed)
    warmup = min(interval, 8.0) if warmup is None else warmup
    longest = max(min(fault_max, interval * 2 / 3), min(fault_min, interval * 2 / 3), 0.5)
    out: list[Planned] = []
    deck: list[str] = []
    at = warmup
    while True:
        if not deck:
            deck = list(dict.fromkeys(kinds))
            rng.shuffle(deck)
        kind = deck.pop()
        length = round(rng.uniform(min(fault_min, longest), longest), 1)
        target = rng.choice(list(nodes))
        params: dict[str, Any] = {}
        if kind == "loss":
            params["percent"] = rng.choice([10, 20, 30, 40])
        elif kind == "oneway":
            params["direction"] = rng.choice(["out", "in"])
        elif kind == "delay":
            params["delay_ms"] = rng.choice([50, 100, 200, 400])
            params["jitter_ms"] = params["delay_ms"] // 4
        elif kind == "crash-unflushed":
            params["seed"] = rng.randrange(2**32)
        elif kind == "split":
            params["minority"] = sorted(rng.sample(list(nodes), (len(nodes) - 1) // 2))
            target = params["minority"][0]
        if at + length > duration:
            break
        out.append(Planned(round(at, 1), kind, length, target, params))
        at += interval
    return out


# --- what faults act on -----------------------------------------------------------------


@dataclass
class Target:
    """The cluster under test as faults see it.

    ``nodes`` maps node ids to their processes; ``net`` is the namespaced network, or None
    when nodes run as plain processes (then only process faults apply). ``record`` takes
    history events; ``clock`` gives the run's time."""

    nodes: dict[int, NodeProcess]
    record: Callable[[Event], None]
    clock: Callable[[], float]
    net: Any = None  # netns.Network | None
    unflushed: str = "random"  # crash-unflushed: "random" position, or "all" unflushed lost
    log: Callable[[str], None] = print
    # Waits up to the given seconds for every replica to be back in sync; None when it is,
    # else what is still wrong. The injector asks before each fault, so a fault never hits
    # while the previous one's node is still catching up (one node out at a time).
    settled: Callable[[float], str | None] | None = None

    def fault_event(self, kind: str, phase: str, targets: list[int], detail: str = "") -> None:
        self.record(Fault(self.clock(), kind, phase, targets, detail))
        self.log(f"[{self.clock():7.1f}s] fault {kind} {phase} on {targets}"
                 + (f": {detail}" if detail else ""))

    def controller_leader(self, timeout: float = 20.0) -> int:
        """The active controller: the leader reported at the highest term by any voter."""
        deadline = time.monotonic() + timeout
        while True:
            leader = quorum_leader(self.nodes.values())
            if leader:
                return leader
            if time.monotonic() > deadline:
                raise FaultError(f"no controller quorum leader found within {timeout}s")
            time.sleep(0.2)


def quorum_leader(nodes: Any, timeout: float = 2.0) -> int:
    """Ask every node's controller endpoint (gRPC DescribeQuorum); 0 if none knows."""
    import grpc

    from odradek.controller.rpc import raft_pb2, raft_pb2_grpc

    best = (-1, 0)
    for node in nodes:
        address = node.overrides.get("controller.listener")
        if not address or not node.alive():
            continue
        with grpc.insecure_channel(address) as ch:
            try:
                r = raft_pb2_grpc.RaftServiceStub(ch).DescribeQuorum(
                    raft_pb2.DescribeQuorumRequest(), timeout=timeout)
            except grpc.RpcError:
                continue
        if r.leader_id > 0 and r.term > best[0]:
            best = (r.term, int(r.leader_id))
    return best[1]


# --- the faults -------------------------------------------------------------------------


class FaultAction:
    """One fault being applied: ``start()`` puts it in force, ``stop()`` undoes it."""

    kind = ""
    needs_network = False

    def __init__(self, target: Target, planned: Planned) -> None:
        self.target = target
        self.planned = planned
        self.targets: list[int] = [planned.target]
        self.detail = ""
        self.active = False

    def start(self) -> None:
        if self.needs_network and self.target.net is None:
            raise FaultError(f"{self.kind} needs nodes in network namespaces (--netns)")
        self.apply()
        self.active = True
        self.target.fault_event(self.kind, "start", self.targets, self.detail)

    def stop(self) -> None:
        if not self.active:
            return
        self.active = False
        try:
            end_detail = self.undo()
        finally:
            self.target.fault_event(self.kind, "end", self.targets, end_detail or "")

    def apply(self) -> None:
        raise NotImplementedError

    def undo(self) -> str | None:
        raise NotImplementedError

    def node(self, node_id: int) -> NodeProcess:
        return self.target.nodes[node_id]


def restart(node: NodeProcess, attempts: int = 2) -> float:
    """Start a stopped node again; seconds until it reported ready."""
    t0 = time.monotonic()
    last: BaseException | None = None
    for _ in range(attempts):
        try:
            node.start(timeout=60)
            return time.monotonic() - t0
        except (RuntimeError, TimeoutError) as e:
            last = e
            node.kill()
    raise FaultError(f"node {node.node_id} did not come back after the fault: {last}")


class Kill(FaultAction):
    kind = "kill"

    def apply(self) -> None:
        self.node(self.targets[0]).kill()
        self.detail = "SIGKILL"

    def undo(self) -> str:
        return f"restarted, ready after {restart(self.node(self.targets[0])):.1f}s"


class ControllerKill(Kill):
    kind = "controller-kill"

    def apply(self) -> None:
        leader = self.target.controller_leader()
        self.targets = [leader]
        self.node(leader).kill()
        self.detail = f"SIGKILL the active controller (Raft leader) node {leader}"


class Pause(FaultAction):
    kind = "pause"

    def apply(self) -> None:
        proc = self.node(self.targets[0]).proc
        if proc is None or proc.poll() is not None:
            raise FaultError(f"node {self.targets[0]} is not running")
        proc.send_signal(signal.SIGSTOP)
        self.detail = "SIGSTOP"

    def undo(self) -> str:
        proc = self.node(self.targets[0]).proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
        return "SIGCONT"


class CrashUnflushed(FaultAction):
    kind = "crash-unflushed"

    def apply(self) -> None:
        node = self.node(self.targets[0])
        node.kill()
        rng = random.Random(self.planned.params.get("seed", 0))
        cuts = drop_unflushed(node.base / f"node-{node.node_id}" / "logs", rng,
                              mode=self.target.unflushed)
        lost = {name: n for name, n in cuts.items() if n}
        self.detail = (f"SIGKILL, then dropped unflushed bytes ({self.target.unflushed}) of "
                       f"{len(lost)}/{len(cuts)} partition logs: "
                       + (", ".join(f"{k} -{v}B" for k, v in sorted(lost.items())) or "none"))

    def undo(self) -> str:
        return f"restarted, ready after {restart(self.node(self.targets[0])):.1f}s"


def drop_unflushed(logs_dir: Path, rng: random.Random, *, mode: str = "random"
                   ) -> dict[str, int]:
    """Cut every partition log under ``logs_dir`` (of a stopped node) after its durable
    prefix: at a batch boundary chosen at random between the recovery point (everything
    below it was fsynced, storage/log.py) and the end of the active segment, or exactly at
    the recovery point with ``mode="all"``. Returns the bytes cut per partition directory.

    Segments below the active one were fsynced when they rolled, so only the active segment
    is cut. A log that closed cleanly since (marker present) was fully flushed and is left
    alone. The cut position is a batch boundary or, half the time in random mode, inside a
    batch (a torn write that recovery must detect by CRC)."""
    if mode not in ("random", "all"):
        raise ValueError(f"unflushed mode {mode!r}: random or all")
    out: dict[str, int] = {}
    if not logs_dir.is_dir():
        return out
    for part in sorted(p for p in logs_dir.iterdir() if p.is_dir()):
        if (part / CLEAN_SHUTDOWN_FILE).exists():
            out[part.name] = 0
            continue
        segments = sorted(part.glob("*.log"))
        if not segments:
            continue
        active = segments[-1]
        base = int(active.name.split(".")[0])
        try:
            recovery_point = checkpoint.read_offset(part / RECOVERY_POINT_CHECKPOINT) or 0
        except Exception:  # noqa: BLE001 - a corrupt checkpoint: trust nothing but segments
            recovery_point = base
        data = active.read_bytes()
        boundaries = _batch_boundaries(data)  # (base offset, position) of each batch start
        durable = len(data)
        for offset, pos in boundaries:
            if offset >= recovery_point:
                durable = pos
                break
        if mode == "all":
            cut = durable
        else:
            choices = [pos for _, pos in boundaries if pos >= durable] + [len(data)]
            cut = rng.choice(choices)
            if cut < len(data) and rng.random() < 0.5:
                cut += rng.randrange(1, _BATCH_HEAD.size + 1)  # torn inside a batch
            cut = min(cut, len(data))
        if cut < len(data):
            with active.open("r+b") as f:
                f.truncate(cut)
        out[part.name] = len(data) - cut
    return out


def _batch_boundaries(data: bytes) -> list[tuple[int, int]]:
    out = []
    pos = 0
    while pos + _BATCH_HEAD.size <= len(data):
        offset, length = _BATCH_HEAD.unpack_from(data, pos)
        if length <= 0:
            break
        out.append((offset, pos))
        pos += _BATCH_HEAD.size + length
    return out


class Cut(FaultAction):
    """A fault made of nftables cuts between namespaces: undone by healing them all."""

    needs_network = True

    def undo(self) -> str:
        self.target.net.heal()
        return "healed"


class Isolate(Cut):
    kind = "isolate"

    def apply(self) -> None:
        self.target.net.isolate(self.targets[0], keep_client=True)
        self.detail = "cut from the other nodes both ways; clients still reach it"


class Split(Cut):
    kind = "split"

    def apply(self) -> None:
        from odradek.broker.verify.netns import CLIENT

        net = self.target.net
        minority = list(self.planned.params.get("minority") or [self.planned.target])
        majority = [n for n in net.nodes if n not in minority]
        self.targets = minority
        net.partition(minority, [*majority, CLIENT])
        self.detail = f"minority {minority} | majority {majority} + clients"


class OneWay(Cut):
    kind = "oneway"

    def apply(self) -> None:
        net = self.target.net
        node = self.targets[0]
        others = [n for n in net.nodes if n != node]
        if self.planned.params.get("direction", "out") == "out":
            net.cut([(node, o) for o in others])
            self.detail = f"drop packets from node {node} to {others}"
        else:
            net.cut([(o, node) for o in others])
            self.detail = f"drop packets from {others} to node {node}"


class Loss(FaultAction):
    kind = "loss"
    needs_network = True

    def apply(self) -> None:
        pct = float(self.planned.params.get("percent", 20))
        self.target.net.loss(self.targets[0], pct)
        self.detail = f"drop {pct:g}% of packets to and from the node (nftables)"

    def undo(self) -> str:
        self.target.net.loss(self.targets[0], 0)
        return "healed"


class Delay(FaultAction):
    kind = "delay"
    needs_network = True

    def apply(self) -> None:
        delay = float(self.planned.params.get("delay_ms", 100))
        jitter = float(self.planned.params.get("jitter_ms", 0))
        self.target.net.netem(self.targets[0], delay_ms=delay, jitter_ms=jitter)
        self.detail = f"tc netem delay {delay:g}ms ±{jitter:g}ms on the node's packets"

    def undo(self) -> str:
        self.target.net.netem(self.targets[0])
        return "healed"


ACTIONS: dict[str, type[FaultAction]] = {cls.kind: cls for cls in (
    Kill, ControllerKill, Pause, CrashUnflushed, Isolate, Split, OneWay, Loss, Delay)}


def unavailable_kinds(netns: bool) -> dict[str, str]:
    """Fault kinds this environment cannot inject, with the reason."""
    out: dict[str, str] = {}
    if not netns:
        for kind in NETWORK_KINDS:
            out[kind] = "needs nodes in network namespaces (--netns, root, nft, ip)"
        return out
    from odradek.broker.verify.netns import netem_unavailable_reason

    reason = netem_unavailable_reason()
    if reason:
        out["delay"] = reason
    return out


# --- the injector ------------------------------------------------------------------------


class Injector:
    """Runs a schedule in a thread: each planned fault at its time, for its duration.

    ``stop()`` ends the active fault at once and injects no more. Errors (a node that does
    not come back) are kept in ``errors`` and end the schedule: the run cannot claim to
    have tested what it planned."""

    def __init__(self, target: Target, schedule: Sequence[Planned],
                 start_time: float | None = None) -> None:
        self.target = target
        self.schedule = list(schedule)
        self.start_time = target.clock() if start_time is None else start_time
        self.applied: list[FaultAction] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._active: FaultAction | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)

    def start(self) -> Injector:
        self._thread.start()
        return self

    def _sleep_until(self, t: float) -> bool:
        """False if stopped first."""
        delay = t - self.target.clock()
        return not (delay > 0 and self._stop.wait(delay)) and not self._stop.is_set()

    def _run(self) -> None:
        for planned in self.schedule:
            if not self._sleep_until(self.start_time + planned.at):
                return
            if self.target.settled is not None:
                waited = self.target.clock()
                problem = self.target.settled(SETTLE_TIMEOUT)
                waited = self.target.clock() - waited
                if problem:
                    self.target.log(f"not settled after {waited:.0f}s ({problem}); "
                                    f"injecting {planned.kind} anyway")
                elif waited > 2:
                    self.target.log(f"waited {waited:.1f}s for replicas to catch up before "
                                    f"{planned.kind}")
                if self._stop.is_set():
                    return
            action = ACTIONS[planned.kind](self.target, planned)
            with self._lock:
                if self._stop.is_set():
                    return
                self._active = action
            try:
                action.start()
                self.applied.append(action)
                self._sleep_until(self.target.clock() + planned.duration)
            except Exception as e:  # noqa: BLE001 - kept and reported; the run goes on
                self.errors.append(f"{planned.describe()}: {type(e).__name__}: {e}")
                self.target.log(f"fault error: {self.errors[-1]}")
            finally:
                with self._lock:
                    self._end(action)
                    self._active = None
            if self.errors:
                return

    def _end(self, action: FaultAction) -> None:
        try:
            action.stop()
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"ending {action.planned.describe()}: {type(e).__name__}: {e}")
            self.target.log(f"fault error: {self.errors[-1]}")

    def stop(self, timeout: float = 120.0) -> None:
        """No more faults; the active one (if any) is ended before this returns."""
        self._stop.set()
        self._thread.join(timeout)
        with self._lock:
            if self._active is not None:
                self._end(self._active)
                self._active = None

    def heal_all(self) -> None:
        """Undo anything that might be left: cuts, paused or dead nodes."""
        self.stop()
        if self.target.net is not None:
            with contextlib.suppress(Exception):
                self.target.net.heal()
        for node in self.target.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.send_signal(signal.SIGCONT)
            elif node.proc is not None:
                try:
                    restart(node)
                except FaultError as e:
                    self.errors.append(str(e))

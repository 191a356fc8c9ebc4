"""One verification run: a cluster of real node processes, the workload, seeded faults, the
final read, the checker and the report. ``odradek verify`` (broker/cli/verify.py) and
tests/chaos/test_verify.py drive it.

A run directory holds::

    history.jsonl    every event (history.py), RunInfo first
    run.json         options, schedule, workload counters, errors, timings
    report.md/.json  the checker's verdict, the fault timeline, the repro command
    timeline.png     throughput and latency over time, fault windows marked
    cluster/         node configs, logs and data

Modes: by default the nodes run in network namespaces when this machine allows it (root,
``ip``, ``nft``), so network faults apply; otherwise as plain processes on 127.0.0.1 with
process faults only. With ``bootstrap`` set, the run uses an existing cluster and injects
nothing: the faults are the operator's (e.g. ``docker compose kill``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from odradek.broker import fault_injection
from odradek.broker.local_cluster import LocalCluster
from odradek.broker.verify import history, stalls
from odradek.broker.verify.checker import CheckResult, check
from odradek.broker.verify.clients import WorkloadConfig
from odradek.broker.verify.faults import (
    ALL_KINDS,
    NETWORK_KINDS,
    Injector,
    Planned,
    Target,
    plan,
    unavailable_kinds,
)
from odradek.broker.verify.final_read import final_read
from odradek.broker.verify.report import write_report
from odradek.broker.verify.topic_admin import create_topic, end_offsets, wait_healthy
from odradek.broker.verify.transactions import NODE_OVERRIDES as TXN_NODE_OVERRIDES
from odradek.broker.verify.transactions import TxnWorkload, txn_final_read
from odradek.broker.verify.txn_checker import check_txn
from odradek.broker.verify.workload import Workload

# Failure detection a few times faster than the defaults, so a fault of a few seconds
# moves leadership and ISR membership within it.
NODE_OVERRIDES: dict[str, Any] = {
    "broker.session.timeout.ms": 2000,
    "broker.heartbeat.interval.ms": 250,
    "replica.lag.time.max.ms": 2000,
    "controller.quorum.election.timeout.ms": 1000,
    "leader.imbalance.check.interval.seconds": 10,
}


class SetupError(RuntimeError):
    """The run could not be set up (bad options, no cluster): exit status 2."""


@dataclass
class Options:
    duration: float = 600.0
    interval: float = 15.0
    seed: int | None = None
    nodes: int = 3
    faults: list[str] | None = None  # None: every kind this environment supports
    netns: bool | None = None  # None: namespaces when available
    replication_factor: int = 3
    min_insync: int = 2
    acks: str = "all"
    partitions: int = 6
    recovery_window: float = 30.0
    out: Path | None = None
    bootstrap: str | None = None
    rate: float = 150.0
    fault_min: float = 3.0
    fault_max: float = 10.0
    unflushed: str = "random"
    topic: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    workload: str = "plain"  # "plain" (workload.py) or "txn" (transactions.py)
    # Negative control of the txn workload: its readers read read_uncommitted while the
    # history says read_committed (transactions.py).
    txn_misread: bool = False
    # Broker-side negative control of the txn workload: the nodes serve READ_COMMITTED
    # reads past the last stable offset (broker/fault_injection.py).
    txn_past_lso: bool = False


@dataclass
class Outcome:
    """What a run produced. ``errors`` are problems that kept the run from testing what it
    planned or the cluster from recovering (a node that did not come back, a cluster that
    never healed, an incomplete final read); ``ok`` needs no anomalies and no errors."""

    run_dir: Path
    result: CheckResult
    errors: list[str]
    report: Path | None
    stats: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.result.ok) and not self.errors


def repro_command(o: Options, seed: int, kinds: list[str], netns: bool) -> str:
    """The command line that runs the same schedule again."""
    argv = ["odradek", "verify", "--seed", str(seed), "--duration", f"{o.duration:g}"]
    if o.bootstrap:
        argv += ["--bootstrap", o.bootstrap]
    else:
        argv += ["--interval", f"{o.interval:g}", "--nodes", str(o.nodes),
                 "--faults", ",".join(kinds) if kinds else "none",
                 "--netns" if netns else "--no-netns",
                 "--fault-duration", f"{o.fault_min:g}-{o.fault_max:g}",
                 "--unflushed", o.unflushed]
    argv += ["--replication-factor", str(o.replication_factor), "--min-insync",
             str(o.min_insync), "--acks", o.acks, "--partitions", str(o.partitions),
             "--rate", f"{o.rate:g}", "--recovery-window", f"{o.recovery_window:g}"]
    if o.workload != "plain":
        argv += ["--workload", o.workload]
    if o.txn_misread:
        argv += ["--txn-misread"]
    if o.txn_past_lso:
        argv += ["--txn-past-lso"]
    return shlex.join(argv)


def _netns_available() -> str | None:
    """None when namespaced clusters can run here, else why not."""
    from odradek.broker.verify.netns import NetnsUnavailable, check_environment

    try:
        check_environment()
    except NetnsUnavailable as e:
        return str(e)
    return None


# Client libraries the run needs beyond Odradek's own dependencies: the `verify` extra.
EXTRA_MODULES = {"confluent_kafka": "confluent-kafka", "matplotlib": "matplotlib"}


def missing_libraries() -> list[str]:
    """The packages of the ``verify`` extra that are not installed."""
    return [package for module, package in EXTRA_MODULES.items()
            if importlib.util.find_spec(module) is None]


def validate(o: Options) -> None:
    missing = missing_libraries()
    if missing:
        raise SetupError(f"{', '.join(missing)} not installed; odradek verify needs them: "
                         "pip install 'odradek[verify]'")
    if o.duration <= 0 or o.interval <= 0:
        raise SetupError("--duration and --interval must be positive")
    if o.acks not in ("all", "1", "-1"):
        raise SetupError(f"--acks {o.acks}: all or 1")
    if o.acks == "-1":
        o.acks = "all"
    if o.bootstrap is None and not 1 <= o.replication_factor <= o.nodes:
        raise SetupError(f"--replication-factor {o.replication_factor} needs 1..{o.nodes} "
                         f"(--nodes {o.nodes})")
    if o.min_insync < 1 or o.min_insync > o.replication_factor:
        raise SetupError(f"--min-insync {o.min_insync} must be within 1..--replication-factor")
    if o.partitions < 1:
        raise SetupError("--partitions must be at least 1")
    if o.workload not in ("plain", "txn"):
        raise SetupError(f"--workload {o.workload}: plain or txn")
    if o.txn_misread and o.workload != "txn":
        raise SetupError("--txn-misread is a negative control of --workload txn")
    if o.txn_past_lso and (o.workload != "txn" or o.bootstrap):
        raise SetupError("--txn-past-lso is a negative control of --workload txn on the "
                         "cluster verify starts (not with --bootstrap)")
    if o.workload == "txn" and o.acks != "all":
        raise SetupError("--workload txn needs --acks all (transactions are idempotent)")
    if o.unflushed not in ("random", "all"):
        raise SetupError(f"--unflushed {o.unflushed}: random or all")
    bad = [k for k in o.faults or [] if k not in ALL_KINDS]
    if bad:
        raise SetupError(f"unknown fault kinds {bad}; known: {', '.join(ALL_KINDS)}")


def run(o: Options, log: Callable[[str], None] = print) -> Outcome:
    """One whole run; raises SetupError if it cannot start (nothing to check then)."""
    validate(o)
    seed = o.seed if o.seed is not None else random.randrange(1, 2**31)
    external = o.bootstrap is not None
    netns = False
    unavailable: dict[str, str] = {}
    if not external:
        reason = _netns_available()
        if o.netns and reason:
            raise SetupError(f"--netns: {reason}")
        netns = o.netns is not False and reason is None
        unavailable = unavailable_kinds(netns)
        if not netns and o.netns is None:
            log(f"network namespaces unavailable ({reason}); process faults only")
    requested = list(ALL_KINDS) if o.faults is None else list(dict.fromkeys(o.faults))
    kinds = [] if external else [k for k in requested if k not in unavailable]
    if o.faults is not None and not external:
        dropped = [k for k in requested if k in unavailable]
        for k in dropped:
            log(f"fault kind {k} unavailable here, left out: {unavailable[k]}")
        if dropped and not kinds:
            raise SetupError("none of the requested fault kinds can run here: "
                             + "; ".join(f"{k}: {unavailable[k]}" for k in dropped))
    if not netns and any(k in NETWORK_KINDS for k in kinds):  # pragma: no cover - guarded
        raise SetupError("network faults need --netns")
    nodes = list(range(1, o.nodes + 1))
    schedule = plan(seed, kinds, nodes, duration=o.duration, interval=o.interval,
                    fault_min=o.fault_min, fault_max=o.fault_max)

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = (o.out or Path("odradek-verify") / f"{stamp}-seed{seed}").resolve()
    if (run_dir / "history.jsonl").exists() or (run_dir / "cluster").exists():
        raise SetupError(f"{run_dir} holds an earlier run; choose another --out or remove it")
    run_dir.mkdir(parents=True, exist_ok=True)
    command = repro_command(o, seed, kinds, netns)
    topic = o.topic or f"verify-{seed}-{stamp.replace('-', '')}"
    t0 = time.monotonic()

    def clock() -> float:
        return round(time.monotonic() - t0, 4)

    config = {
        "mode": "external" if external else "netns" if netns else "processes",
        "nodes": 0 if external else o.nodes, "topic": topic, "partitions": o.partitions,
        "replication_factor": o.replication_factor, "min_insync_replicas": o.min_insync,
        "acks": o.acks, "workload": o.workload, "txn_misread": o.txn_misread,
        "txn_past_lso": o.txn_past_lso,
        "duration": o.duration, "interval": o.interval, "rate": o.rate,
        "faults": kinds, "unavailable_faults": unavailable, "unflushed": o.unflushed,
        "fault_duration": [o.fault_min, o.fault_max], "recovery_window": o.recovery_window,
        "node_overrides": _node_overrides(o),
        "schedule": [p.describe() for p in schedule],
    }
    log(f"odradek verify: seed {seed}, run directory {run_dir}")
    log(f"reproduce with: {command}")
    for p in schedule:
        log(f"  planned: {p.describe()}")

    path = run_dir / "history.jsonl"
    recorder = history.Recorder(path)
    recorder(history.RunInfo(0.0, seed, command, config))
    errors: list[str] = []
    timings: dict[str, float] = {}
    workload: Workload | TxnWorkload | None = None
    injector: Injector | None = None
    with contextlib.ExitStack() as stack:
        stack.callback(recorder.close)
        stack.enter_context(_client_logs(run_dir / "clients.log"))
        if external:
            bootstrap = o.bootstrap or ""
            target = None
        else:
            cluster = _start_cluster(stack, run_dir / "cluster", o, netns, log)
            bootstrap = cluster.bootstrap
            target = Target({n.node_id: n for n in cluster.nodes}, recorder, clock,
                            net=getattr(cluster, "net", None), unflushed=o.unflushed, log=log,
                            settled=lambda timeout: wait_healthy(
                                bootstrap, topic, o.partitions, timeout, log=_quiet))
            timings["cluster up"] = clock()
        try:
            create_topic(bootstrap, topic, o.partitions, o.replication_factor, o.min_insync)
        except Exception as e:
            raise SetupError(f"cannot create topic {topic} on {bootstrap}: {e}") from e
        problem = wait_healthy(bootstrap, topic, o.partitions, 60, log)
        if problem:
            raise SetupError(f"topic {topic} never became healthy: {problem}")
        timings["topic ready"] = clock()

        cfg = WorkloadConfig(bootstrap=bootstrap, topic=topic, partitions=o.partitions,
                             acks=o.acks, rate=o.rate, group=f"verify-{seed}",
                             reader_group=f"verify-{seed}-readers",
                             client_debug=os.environ.get("CHAOS_CLIENT_DEBUG", ""))
        workload = (TxnWorkload(cfg, recorder, clock, log, seed=seed, misread=o.txn_misread)
                    if o.workload == "txn" else Workload(cfg, recorder, clock, log))
        stack.callback(workload.abandon)  # runs before the cluster goes, if still running
        workload.start()
        started = clock()
        if target is not None:
            injector = Injector(target, schedule, start_time=started).start()
        try:
            end = time.monotonic() + o.duration
            next_note = time.monotonic() + 30
            while time.monotonic() < end:
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
                stalls.check(workload.readers, run_dir, clock(), log)
                if time.monotonic() >= next_note:
                    next_note += 30
                    log(f"[{clock():7.1f}s] " + _progress(workload))
        finally:
            if injector is not None:
                injector.heal_all()
                errors += injector.errors
            timings["faults over"] = clock()
            workload.stop_producers(drain_timeout=20)
            timings["producers stopped"] = clock()
        problem = wait_healthy(bootstrap, topic, o.partitions, 90, log)
        if problem and not external:
            errors.append(f"after healing: {problem}")
        timings["healthy"] = clock()
        if isinstance(workload, TxnWorkload):
            errors += _txn_finish(workload, bootstrap, topic, o, recorder, clock, cfg, log)
            timings["final read"] = clock()
            events = history.read(path)
            return _finish(run_dir, events, o, seed, command, errors, timings, workload,
                           injector, schedule, log)
        try:
            ends = end_offsets(bootstrap, topic, o.partitions, cfg.reader_group)
            if not workload.catch_up(ends, 20):
                log("readers did not reach the high watermarks within 20s")
        except Exception as e:  # noqa: BLE001 - the final read decides
            log(f"could not read the high watermarks: {e}")
        workload.stop_readers()
        timings["readers stopped"] = clock()
        errors += final_read(bootstrap, topic, o.partitions, recorder, clock,
                             cfg.reader_group)
        timings["final read"] = clock()

    events = history.read(path)
    return _finish(run_dir, events, o, seed, command, errors, timings, workload, injector,
                   schedule, log)


@contextlib.contextmanager
def _client_logs(path: Path) -> Iterator[None]:
    """Client libraries' log lines go to a file of the run, not the terminal."""
    import logging

    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    saved = []
    for name in ("odradek.verify.clients", "kafka"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level))
        logger.addHandler(handler)
        logger.propagate = False
        debug = name != "kafka" and os.environ.get("CHAOS_CLIENT_DEBUG")
        logger.setLevel(logging.DEBUG if debug else logging.INFO if name != "kafka"
                        else logging.WARNING)
    try:
        yield
    finally:
        for logger, propagate, level in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)
        handler.close()


def _start_cluster(stack: contextlib.ExitStack, base: Path, o: Options, netns: bool,
                   log: Callable[[str], None]) -> LocalCluster:
    overrides = _node_overrides(o)
    if o.txn_past_lso:
        # Every node process started during the run (restarts too) inherits it.
        previous = os.environ.get(fault_injection.ENV)
        os.environ[fault_injection.ENV] = fault_injection.READ_COMMITTED_PAST_LSO
        stack.callback(_restore_env, fault_injection.ENV, previous)
    try:
        cluster: LocalCluster
        if netns:
            from odradek.broker.verify.cluster import NamespacedCluster
            from odradek.broker.verify.netns import Network

            net = stack.enter_context(Network(o.nodes))
            cluster = NamespacedCluster(net, base, overrides)
        else:
            cluster = LocalCluster(base, o.nodes, overrides)
        # Registered before start: a node that started must be killed even if another failed.
        stack.callback(_stop_cluster, cluster)
        cluster.start()
    except Exception as e:
        raise SetupError(f"cannot start a {o.nodes}-node cluster: {e}") from e
    log(f"cluster up: {cluster.bootstrap} ({'namespaces' if netns else 'plain processes'}), "
        f"node logs in {base}")
    return cluster


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _node_overrides(o: Options) -> dict[str, Any]:
    txn = TXN_NODE_OVERRIDES if o.workload == "txn" else {}
    return {**NODE_OVERRIDES, **txn, **o.overrides}


def _txn_finish(workload: TxnWorkload, bootstrap: str, topic: str, o: Options,
                recorder: history.Recorder, clock: Callable[[], float], cfg: WorkloadConfig,
                log: Callable[[str], None]) -> list[str]:
    """The transactional run's end: the final read first (it waits for the last stable
    offsets to reach the high watermarks), then the readers catch up with what it read (a
    high watermark may lie past the last record, on a marker, which readers never poll)."""
    problems, ends = txn_final_read(bootstrap, topic, o.partitions, recorder, clock,
                                    cfg.reader_group, misread=o.txn_misread)
    if not workload.catch_up(ends, 30):
        log("readers did not reach the final read's last records within 30s")
    workload.stop_readers()
    return problems


def _stop_cluster(cluster: LocalCluster) -> None:
    cluster.kill_all()  # a paused node is resumed first, so it dies as well


def _quiet(_: str) -> None:
    pass


def _progress(workload: Workload | TxnWorkload) -> str:
    s = workload.summary()
    acks = sum(p["acked"] for p in s["producers"].values())
    sent = sum(p["sent"] for p in s["producers"].values())
    polled = sum(r["polled"] for r in s["readers"].values())
    return f"sent {sent}, acked {acks}, polled {polled}"


def _finish(run_dir: Path, events: list[history.Event], o: Options, seed: int, command: str,
            errors: list[str], timings: dict[str, float],
            workload: Workload | TxnWorkload | None,
            injector: Injector | None, schedule: list[Planned],
            log: Callable[[str], None]) -> Outcome:
    result = (check_txn(events) if o.workload == "txn"
              else check(events, recovery_window=o.recovery_window))
    applied = [{"kind": a.kind, "targets": a.targets, "planned": a.planned.describe(),
                "detail": a.detail} for a in (injector.applied if injector else [])]
    stats = {
        "seed": seed, "command": command, "options": _jsonable(asdict(o)),
        "schedule": [p.describe() for p in schedule], "applied": applied,
        "errors": errors, "timings": timings,
        "workload": workload.summary() if workload else {},
        "anomalies": result.counts(),
    }
    (run_dir / "run.json").write_text(json.dumps(stats, indent=2, default=str) + "\n")
    report: Path | None = None
    try:
        report = write_report(run_dir, events, result,
                              title="odradek verify")
    except Exception as e:  # noqa: BLE001 - the verdict stands without the report
        errors.append(f"writing the report failed: {type(e).__name__}: {e}")
        traceback.print_exc(file=sys.stderr)
    if report is not None and errors:
        with report.open("a") as f:
            f.write("\n## Run errors\n\nThe run could not do everything it planned, or the "
                    "cluster did not recover:\n\n" + "".join(f"- {e}\n" for e in errors))
    _print_summary(run_dir, result, errors, stats, report, log)
    return Outcome(run_dir, result, errors, report, stats)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def _print_summary(run_dir: Path, result: CheckResult, errors: list[str], stats: dict[str, Any],
                   report: Path | None, log: Callable[[str], None]) -> None:
    w = stats["workload"]
    log("")
    log(f"seed {stats['seed']}: {len(stats['applied'])} faults applied "
        f"({', '.join(sorted({a['kind'] for a in stats['applied']})) or 'none'})")
    for name, p in w.get("producers", {}).items():
        log(f"  {name:8} sent {p['sent']:6}  acked {p['acked']:6}  failed {p['failed']:5} "
            f"(definite {p['definite']})")
    for name, r in w.get("readers", {}).items():
        log(f"  {name:8} polled {r['polled']:6}  restarts {r['restarts']}")
    log(result.summary())
    for e in errors:
        log(f"ERROR: {e}")
    log(f"report: {report or run_dir}")
    log(f"reproduce with: {stats['command']}")

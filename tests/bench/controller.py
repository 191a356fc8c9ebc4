"""Controller benchmarks on a three-node cluster: topic creation rate, controller
failover with a large metadata image, and controller memory.

Issue targets: creation over 5,000 partitions/s, failover under 1 s. Limits measured or
configured in the same run: the disk's fsync rate (creating a partition syncs several small
files on every replica) and the Raft election timeout (no follower can even start an
election before it expires, so failover cannot beat it).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.common import (
    Compared,
    Report,
    bench_dir,
    config_default,
    cpu_seconds,
    median,
    quorum_views,
    rss_mb,
    unfenced_brokers,
    wait_for,
)
from tests.bench.kafka_peer import KafkaCluster, KafkaPeer, create_topic_at
from tests.helpers import metric_sum
from tests.integration.harness import Cluster, scrape

TOPIC_ALREADY_EXISTS = 36


@dataclass
class ControllerArgs:
    topics: int = 1000
    partitions: int = 10
    replication_factor: int = 1
    batch: int = 50
    single_topics: int = 100
    single_seconds: float = 30.0
    create_deadline: float = 150.0
    failover_trials: int = 2
    failover_limit: float = 30.0
    rf3_topics: int = 200  # RF=3 creation on a fresh cluster; 0 skips it
    rf3_deadline: float = 45.0
    settle_limit: float = 60.0
    layout: str = "combined"  # or "dedicated": 3 brokers + 3 controller-only nodes


@dataclass
class CreateOutcome:
    created: int = 0
    partitions: int = 0
    elapsed: float = 0.0
    requests: int = 0
    retried_topics: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def _quorum_members(c: Any) -> list[Any]:
    return c.controllers or c.nodes


def _leader(c: Any) -> tuple[int, int]:
    """(leader id, term) once a live controller knows a leader."""
    def known() -> tuple[int, int] | None:
        for v in quorum_views(_quorum_members(c), local_only=False):
            if v.leader_id > 0:
                return v.leader_id, v.term
        return None

    return wait_for(known, 60, "an active controller")


def _by_id(c: Any, node_id: int) -> Any:
    return next(n for n in c.nodes + c.controllers if n.node_id == node_id)


def _live_bootstrap(c: Any) -> str:
    return ",".join(n.bootstrap for n in c.nodes if n.alive())


def _error(e: Exception) -> tuple[int | None, str]:
    """(Kafka error code, name) of a failed admin future; KafkaException wraps a
    KafkaError, anything else (a timeout in the client) is named by its type."""
    err = e.args[0] if e.args else None
    if hasattr(err, "code") and hasattr(err, "name"):
        return err.code(), err.name()
    return None, type(e).__name__


def create_topics(bootstrap: str, names: list[str], partitions: int, rf: int, batch: int,
                  deadline_s: float) -> CreateOutcome:
    """Create ``names`` in requests of ``batch`` topics, one request at a time, as a client
    would: topics whose request failed (no controller, too few unfenced brokers, a dropped
    connection) are sent again. "Already exists" on a topic already sent counts as created:
    an earlier attempt committed it even though its answer was lost."""
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap)
    out = CreateOutcome()
    pending = list(names)
    attempted: set[str] = set()
    start = time.perf_counter()
    while pending and time.perf_counter() - start < deadline_s:
        chunk, pending = pending[:batch], pending[batch:]
        t0 = time.perf_counter()
        futures = admin.create_topics([NewTopic(n, partitions, rf) for n in chunk],
                                      request_timeout=60, operation_timeout=60)
        out.requests += 1
        retry = []
        for name, fut in futures.items():
            try:
                fut.result()
                out.created += 1
            except Exception as e:
                code, label = _error(e)
                if code == TOPIC_ALREADY_EXISTS and name in attempted:
                    out.created += 1
                    continue
                out.errors[label] += 1
                retry.append(name)
        out.latencies.append(time.perf_counter() - t0)
        attempted.update(chunk)
        if retry:
            out.retried_topics += len(retry)
            pending = retry + pending
            time.sleep(0.2)  # let the cluster recover (an election, an unfencing)
    out.elapsed = time.perf_counter() - start
    out.failed = pending
    out.partitions = out.created * partitions
    return out


def validate_only_rate(bootstrap: str, topics: int, partitions: int, rf: int) -> float:
    """CreateTopics with validate_only: placement and checks on the controller, nothing
    committed and nothing for brokers to do. Separates controller cost from the rest."""
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap)
    t0 = time.perf_counter()
    futures = admin.create_topics(
        [NewTopic(f"validate-{i}", partitions, rf) for i in range(topics)],
        validate_only=True, request_timeout=60, operation_timeout=60)
    for f in futures.values():
        f.result()
    return topics * partitions / (time.perf_counter() - t0)


def _settle(c: Any, expected_brokers: int, timeout: float = 120) -> float:
    """Wait until a controller leads and every broker is registered and unfenced (brokers
    fenced by missed heartbeats during a heavy creation come back by themselves)."""
    t0 = time.perf_counter()
    _leader(c)

    def all_brokers() -> bool:
        return len(unfenced_brokers(_live_bootstrap(c))) >= expected_brokers

    wait_for(all_brokers, timeout, f"{expected_brokers} unfenced brokers", interval=0.5)
    return time.perf_counter() - t0


def _try_settle(c: Any, timeout: float) -> float | None:
    """_settle, but a cluster that does not settle is a result to report, not a crash."""
    try:
        return _settle(c, 3, timeout)
    except AssertionError:  # wait_for's timeout
        return None


def _metadata_records(c: Any) -> int:
    """Offset of the last metadata record applied, as the active controller reports it."""
    views = quorum_views(_quorum_members(c), local_only=False, timeout=5)
    return max((v.committed_record_offset for v in views), default=-1)


def _cpu_percent(nodes: list[Any], seconds: float) -> dict[int, float]:
    before = {n.node_id: cpu_seconds(n.proc.pid) for n in nodes if n.alive() and n.proc}
    time.sleep(seconds)
    return {n.node_id: (cpu_seconds(n.proc.pid) - before[n.node_id]) / seconds * 100
            for n in nodes if n.node_id in before and n.alive() and n.proc}


@dataclass
class FailoverResult:
    killed: int
    elected_s: float | None
    write_s: float | None
    new_leader: int | None
    restart_s: float | None = None


def failover_trial(c: Any, trial: int, limit_s: float = 60.0) -> FailoverResult:
    """SIGKILL the active controller; time until a survivor names a new leader, and until
    a CreateTopics sent through a surviving broker is acknowledged (a committed record).

    On Kafka the CreateTopics go straight to the surviving brokers in turn (they forward
    them to the active controller): librdkafka's admin client sends them to the broker its
    metadata names as controller, which Kafka picks at random among live brokers and can
    be the one just killed; the client then waited out its request timeout, three times
    in a row, without looking again."""
    from confluent_kafka.admin import NewTopic

    for attempt in range(5):
        old, old_term = _leader(c)
        live_brokers = ",".join(n.bootstrap for n in c.nodes if n.node_id != old and n.alive())
        admin = _admin(live_brokers)
        # Connected, and the quorum committing, right before the kill.
        warm = f"failover-warm-{trial}-{attempt}"
        admin.create_topics([NewTopic(warm, 1, 1)], request_timeout=30)[warm].result()
        if _leader(c) == (old, old_term):
            break
    victim = _by_id(c, old)
    survivors = [n for n in _quorum_members(c) if n.node_id != old]
    direct = ([n.bootstrap for n in c.nodes if n.node_id != old and n.alive()]
              if isinstance(c, KafkaCluster) else [])
    elected: list[float] = []
    new_leader: list[int] = []
    done = threading.Event()

    def watch_election(t0: float) -> None:
        while not done.is_set() and time.perf_counter() - t0 < limit_s:
            for v in quorum_views(survivors, timeout=0.3):
                if v.leader_id > 0 and v.leader_id != old and v.term > old_term:
                    elected.append(time.perf_counter() - t0)
                    new_leader.append(v.leader_id)
                    return
            time.sleep(0.005)

    t0 = time.perf_counter()
    victim.kill()
    watcher = threading.Thread(target=watch_election, args=(t0,), daemon=True)
    watcher.start()
    write_s = None
    k = 0
    try:
        while time.perf_counter() - t0 < limit_s:
            name = f"failover-probe-{trial}-{k}"
            k += 1
            if direct:
                try:
                    committed = create_topic_at(direct[k % len(direct)], name, 1, 1, 15) == 0
                except (OSError, EOFError, ValueError):
                    committed = False
                if not committed:
                    time.sleep(0.01)
                    continue
                write_s = time.perf_counter() - t0
                break
            fut = admin.create_topics([NewTopic(name, 1, 1)], request_timeout=15,
                                      operation_timeout=15)[name]
            try:
                fut.result()
            except Exception:
                time.sleep(0.01)
                continue
            write_s = time.perf_counter() - t0
            break
    finally:
        watcher.join(limit_s)
        done.set()
    return FailoverResult(old, elected[0] if elected else None, write_s,
                          new_leader[0] if new_leader else None)


def _creation_rows(report: Report, label: str, out: CreateOutcome, fsync_rate: float,
                   deadline: float) -> float:
    rate = out.partitions / out.elapsed if out.elapsed else 0.0
    report.row(label, f"{rate:.0f} partitions/s ({out.partitions} in {out.elapsed:.1f} s; "
                      f"target 5000/s; {rate / fsync_rate:.3f} partitions per disk fsync)")
    errors = ", ".join(f"{k} x{v}" for k, v in out.errors.most_common()) or "none"
    lat = out.latencies
    report.row("  requests, request p50 / max",
               f"{out.requests}, {median(lat) * 1000:.0f} ms / {max(lat) * 1000:.0f} ms"
               if lat else "none")
    report.row("  topics re-sent / errors", f"{out.retried_topics} / {errors}")
    if out.failed:
        report.row("  NOT CREATED before the deadline",
                   f"{len(out.failed)} topics ({deadline:.0f} s deadline)")
    return rate


def _rss_rows(report: Report, c: Any, layout: str, leader: int, idle: dict[int, float],
              loaded: dict[int, float], cpu: dict[int, float], partitions: int) -> None:
    ctrl_ids = {n.node_id for n in _quorum_members(c)}
    for nid in sorted(idle):
        role = ("active controller" if nid == leader else
                "controller" if nid in ctrl_ids else "broker")
        if layout == "combined":
            role += " + broker"
        report.row(f"RSS node {nid} ({role})",
                   f"idle {idle[nid]:.0f} MiB -> {loaded.get(nid, 0):.0f} MiB with "
                   f"{partitions} partitions (+{loaded.get(nid, 0) - idle[nid]:.0f}); "
                   f"CPU while idle {cpu.get(nid, 0):.0f}%")


def compared(tag: str) -> tuple[Compared, ...]:
    """Figures shown beside the same figures measured on the peer (--peer kafka)."""
    return tuple(Compared(f"{tag}_{key}", label, unit, digits, how, ratio)
                 for key, label, unit, digits, how, ratio in (
        ("validate_only_partitions_per_s", "CreateTopics validate_only", "partitions/s", 0,
         "value", True),
        ("create_single_partitions_per_s", "create, 1 topic/request", "partitions/s", 0,
         "value", True),
        ("create_partitions_per_s", "create the image, batched requests", "partitions/s", 0,
         "value", True),
        ("create_partitions", "  partitions created", "", 0, "value", False),
        ("settle_seconds", "  every broker unfenced again after", "s", 1, "value", True),
        ("metadata_records", "  metadata records committed", "", 0, "value", False),
        ("rss_idle_mib", "RSS of all nodes, idle", "MiB", 0, "sum", True),
        ("rss_loaded_mib", "RSS of all nodes with the image", "MiB", 0, "sum", True),
        ("idle_cpu_percent", "CPU of all nodes while idle with the image", "%", 0, "sum",
         True),
        ("failover_elected_ms", "controller kill -9: new leader elected, median", "ms", 0,
         "median", True),
        ("failover_first_write_ms", "controller kill -9: first committed CreateTopics, "
         "median", "ms", 0, "median", True),
        ("election_timeout_ms", "  election timeout (configured)", "ms", 0, "value", False),
        ("create_rf3_partitions_per_s", "fresh cluster: create RF=3, batched requests",
         "partitions/s", 0, "value", True),
        ("rf3_idle_cpu_percent", "  CPU of all nodes while idle with them", "%", 0, "sum",
         True),
    ))


def run(args: ControllerArgs, workdir: Path, report: Report, fsync_rate: float,
        peer: KafkaPeer | None = None) -> None:
    """Odradek nodes, or with ``peer`` Kafka nodes with the same settings and layout."""
    layout = args.layout
    tag = "controller" if layout == "combined" else "controller_dedicated"
    label = ("3 combined broker+controller nodes" if layout == "combined"
             else "3 brokers + 3 controller-only nodes")
    rf = args.replication_factor
    report.section(f"controller: {label}, image of {args.topics} topics x {args.partitions} "
                   f"partitions, RF={rf}")
    report.row("disk fsync rate (4 KiB write + fsync)", f"{fsync_rate:.0f} /s")
    report.figure("fsync_per_s", fsync_rate)
    election_ms = (config_default("controller.quorum.election.timeout.ms") if peer is None
                   else peer.setting(3, "controller.quorum.election.timeout.ms"))
    report.figure(f"{tag}_election_timeout_ms", election_ms)
    # A Kafka follower starts an election only after the leader has been silent for
    # controller.quorum.fetch.timeout.ms; Odradek has no such separate timeout.
    fetch_timeout = ""
    if peer is not None:
        fetch_ms = peer.settings(3).get("controller.quorum.fetch.timeout.ms")
        fetch_timeout = (f"; quorum fetch timeout {fetch_ms} ms" if fetch_ms else
                         "; quorum fetch timeout 2000 ms (Kafka's default)")
        report.note("Kafka controller failover: the CreateTopics probes go to the surviving "
                     "brokers directly (librdkafka's admin client waits on the broker "
                     "Kafka's metadata names as controller, a random live one that can be "
                     "the node just killed)")
    dedicated = 3 if layout == "dedicated" else 0
    with bench_dir(workdir, tag) as base:
        c: Any = (Cluster(base, 3, dedicated_controllers=dedicated) if peer is None
                  else peer.cluster(base, 3, dedicated_controllers=dedicated))
        try:
            c.start()
            _settle(c, 3)
            time.sleep(2)
            idle_rss = {n.node_id: rss_mb(n.proc.pid) for n in c.nodes + c.controllers}
            report.figure(f"{tag}_rss_idle_mib",
                          {str(k): round(v, 1) for k, v in idle_rss.items()})

            # Controller checks alone: nothing committed, nothing for brokers to do.
            vo = validate_only_rate(c.bootstrap, 100, args.partitions, rf)
            report.row("CreateTopics validate_only, 100 topics (controller checks only)",
                       f"{vo:.0f} partitions/s")
            report.figure(f"{tag}_validate_only_partitions_per_s", vo)

            # One topic per request on the still small image: the per-request cost.
            single = create_topics(c.bootstrap, [f"single-{i:04d}" for i in
                                                 range(args.single_topics)],
                                   args.partitions, rf, 1, args.single_seconds)
            r = _creation_rows(report, f"create {single.created} topics x{args.partitions}, "
                                       "1 topic/request", single, fsync_rate,
                               args.single_seconds)
            report.figure(f"{tag}_create_single_partitions_per_s", r)

            # The image, in batched requests.
            batched = create_topics(c.bootstrap, [f"bench-{i:05d}" for i in range(args.topics)],
                                    args.partitions, rf, args.batch, args.create_deadline)
            r = _creation_rows(report, f"create {args.topics} topics x{args.partitions}, "
                                       f"{args.batch} topics/request", batched, fsync_rate,
                               args.create_deadline)
            report.figure(f"{tag}_create_partitions_per_s", r)
            report.figure(f"{tag}_create_partitions", batched.partitions)
            report.figure(f"{tag}_create_seconds", batched.elapsed)
            report.figure(f"{tag}_create_topics_resent", batched.retried_topics)
            report.figure(f"{tag}_create_not_created", len(batched.failed))
            settle_s = _try_settle(c, args.settle_limit)
            report.row("  every broker unfenced again after",
                       f"{settle_s:.1f} s" if settle_s is not None else
                       f"NOT within {args.settle_limit:.0f} s (brokers keep being fenced)")
            report.figure(f"{tag}_settle_seconds", settle_s)
            records = _metadata_records(c)
            report.row("  metadata records committed so far",
                       f"{records + 1} for {batched.created + single.created} topics, "
                       f"{batched.partitions + single.partitions} partitions (fencing a "
                       "broker adds a leader change per partition it leads"
                       + (")" if peer is None else "; Kafka's count includes a NoOpRecord "
                          "every metadata.max.idle.interval.ms)"))
            report.figure(f"{tag}_metadata_records", records + 1)

            image = batched.partitions + single.partitions
            _until_replicas_settle(c, rf * image, peer is None)
            loaded_rss = {n.node_id: rss_mb(n.proc.pid) for n in c.nodes + c.controllers}
            leader, _ = _leader(c)
            cpu = _cpu_percent(c.nodes + c.controllers, 10.0)
            _rss_rows(report, c, layout, leader, idle_rss, loaded_rss, cpu, image)
            report.figure(f"{tag}_image_partitions", image)
            report.figure(f"{tag}_active_controller", leader)
            report.figure(f"{tag}_rss_loaded_mib",
                          {str(k): round(v, 1) for k, v in loaded_rss.items()})
            report.figure(f"{tag}_idle_cpu_percent", {str(k): round(v) for k, v in cpu.items()})

            trials: list[FailoverResult] = []
            for i in range(args.failover_trials):
                t = failover_trial(c, i, args.failover_limit)
                trials.append(t)
                elected = f"{t.elected_s * 1000:.0f} ms" if t.elected_s is not None else "none"
                write = (f"{t.write_s * 1000:.0f} ms" if t.write_s is not None
                         else f"none in {args.failover_limit:.0f} s")
                report.row(f"controller failover: kill -9 node {t.killed}, {image} partitions",
                           f"node {t.new_leader} elected after {elected}, first committed "
                           f"write (CreateTopics) after {write} (target < 1000 ms; "
                           f"election timeout {election_ms}-{2 * election_ms} ms"
                           f"{fetch_timeout})")
                report.figure(f"{tag}_failover_elected_ms",
                              [round(x.elected_s * 1000) if x.elected_s is not None else None
                               for x in trials])
                report.figure(f"{tag}_failover_first_write_ms",
                              [round(x.write_s * 1000) if x.write_s is not None else None
                               for x in trials])
                if i + 1 < args.failover_trials:
                    t_restart = time.perf_counter()
                    _by_id(c, t.killed).start(timeout=180)
                    back = _try_settle(c, args.settle_limit)
                    report.row(f"  node {t.killed} restarted and unfenced after",
                               f"{time.perf_counter() - t_restart:.1f} s" if back is not None
                               else f"NOT within {args.settle_limit:.0f} s of its restart")
        except BaseException:
            print(f"controller benchmark ({layout}) failed; node logs:\n{c.logs()}",
                  file=sys.stderr)
            raise
        finally:
            c.kill_all()
    if args.rf3_topics > 0 and rf != 3:
        _rf3_creation(args, workdir, report, fsync_rate, tag, peer)


def _until_replicas_settle(c: Any, replicas: int, odradek: bool,
                           timeout_s: float = 120.0) -> None:
    """Until the brokers host all ``replicas`` and a moment has passed for their followers
    to catch up (brokers create the logs after the controller's answers): idle means idle.
    Kafka exports no such figure here; it gets the same fixed pause after its creation."""
    deadline = time.monotonic() + timeout_s
    while odradek:
        hosted = sum(metric_sum(scrape(node), "odradek_partitions_hosted") or 0
                     for node in c.nodes)
        if hosted >= replicas:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the brokers host {hosted:.0f} of {replicas} replicas after "
                               f"{timeout_s:.0f} s")
        time.sleep(0.5)
    time.sleep(5.0)


def _rf3_creation(args: ControllerArgs, workdir: Path, report: Report, fsync_rate: float,
                  tag: str, peer: KafkaPeer | None = None) -> None:
    """Creation with RF=3 on a fresh cluster: every broker creates every partition's log,
    and followers start fetching; the idle CPU is measured once they have settled."""
    report.section(f"fresh cluster: {args.rf3_topics} topics x {args.partitions}, RF=3")
    with bench_dir(workdir, f"{tag}-rf3") as base:
        dedicated = 3 if args.layout == "dedicated" else 0
        c: Any = (Cluster(base, 3, dedicated_controllers=dedicated) if peer is None
                  else peer.cluster(base, 3, dedicated_controllers=dedicated))
        try:
            c.start()
            _settle(c, 3)
            out = create_topics(c.bootstrap, [f"rf3-{i:05d}" for i in range(args.rf3_topics)],
                                args.partitions, 3, args.batch, args.rf3_deadline)
            r = _creation_rows(report, f"create {args.rf3_topics} topics x{args.partitions} "
                                       f"RF=3, {args.batch} topics/request", out, fsync_rate,
                               args.rf3_deadline)
            report.figure(f"{tag}_create_rf3_partitions_per_s", r)
            report.figure(f"{tag}_create_rf3_partitions", out.partitions)
            _until_replicas_settle(c, 3 * out.partitions, peer is None)
            cpu = _cpu_percent(c.nodes + c.controllers, 10.0)
            report.row(f"  CPU while idle with {out.partitions} RF=3 partitions",
                       ", ".join(f"node {k} {v:.0f}%" for k, v in sorted(cpu.items())))
            report.figure(f"{tag}_rf3_idle_cpu_percent",
                          {str(k): round(v) for k, v in cpu.items()})
        except BaseException:
            print(f"RF=3 creation benchmark failed; node logs:\n{c.logs()}", file=sys.stderr)
            raise
        finally:
            c.kill_all()

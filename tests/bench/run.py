"""Run the benchmarks: `python -m tests.bench.run [--suite all|single,controller,...]`.

Not pass/fail. Prints one table and one JSON line. Every figure stands beside a limit
measured in the same run (raw disk write bandwidth, the disk's fsync rate) or configured
(election and session timeouts), so it means something on a noisy shared machine.

Suites:
  single       one node: produce/consume throughput and produce latency (acks=1)
  controller   3 combined nodes: creation rate (RF=1 image of 10,000 partitions, and
               a smaller RF=3 run on a fresh cluster), controller failover with that
               image, controller memory
  controller-dedicated
               the same with 3 brokers + 3 controller-only nodes: the controller's own
               memory, and failover without a broker dying with it
  replication  3 combined nodes: RF=3 acks=all ingress, end-to-end latency, leader
               failover (SIGKILL and controlled shutdown)
  transactions 3 combined nodes, RF=3 acks=all: a transactional producer committing every
               100 ms beside an idempotent one (MB/s, the ratio), commit_transaction
               latency, read_committed end-to-end latency
  startup      test clusters (odradek.testing): 1 and 3 nodes until a client's first
               acks=all write is acknowledged, and a 20-test pytest suite sharing one
  compaction   the log cleaner: MB/s of dirty log cleaned (a log built on disk, cleaned
               as a worker does), and produce latency p50/p99 on a compacted topic with
               the cleaner off and on (fresh 1- then 3-node cluster each). Not in 'all': the
               default suites already share out its budget; use --suite compaction
  security     one node with PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL listeners:
               produce/consume MB/s over TLS beside plaintext (ratio, node CPU), produce
               latency p50/p99 of an authenticated client alone and during a storm of
               10,000 failed SASL PLAIN logins, then during the same storm held back by a
               per-address connection_creation_rate (KIP-612), and client quotas (producer_byte_rate)
               when the node serves AlterClientQuotas. Not in 'all' either: --suite security

--peer kafka runs single, controller, controller-dedicated, replication and transactions again against
Apache Kafka 4.x in KRaft mode (same layout and settings, jars from Maven Central cached in
.ci/cache/kafka-broker-<version>), right after Odradek's run of each, and shows every figure
beside Kafka's with the ratio odradek / kafka.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench import (
    compaction,
    controller,
    replication,
    security,
    single_broker,
    startup,
    transactions,
)
from tests.bench.common import (
    Compared,
    Interrupted,
    Report,
    bench_dir,
    cleanup_on_signals,
    compare_rows,
    fsyncs_per_s,
    raw_disk_write_mb_s,
)
from tests.bench.kafka_peer import (
    DEFAULT_HEAP,
    KAFKA_VERSION,
    KafkaPeer,
    fetch_jars,
    java_binary,
    parse_overrides,
)

# Kept importable from here, where it used to live.
__all__ = ["main", "raw_disk_write_mb_s"]

SUITES = ("startup", "single", "controller", "controller-dedicated", "replication",
          "transactions", "compaction", "security")
# compaction and security (about 2 and 3 minutes) are left out of 'all': the other suites'
# limits already share out the whole 12-minute default budget, so adding them would cut
# the others short.
DEFAULT = tuple(s for s in SUITES if s not in ("compaction", "security"))
PEERS = ("kafka",)
# Suites that cannot run against a peer, and why.
NO_PEER = {
    "startup": "it starts odradek.testing's own test clusters",
    "compaction": "its cleaner half builds and cleans logs with Odradek's storage code "
                  "in-process",
    "security": "its figures are ratios within one node's run (TLS / plaintext, storm / "
                "alone, achieved / quota); a Kafka run of it would need JAAS and key store "
                "setup of its own and is not written",
}
# The whole run's budget by default, in seconds; with a peer every suite runs twice.
# 12 minutes for the suites before transactions, plus the 2 its limit gives it.
BUDGET_S = 840
PEER_BUDGET_S = 2 * BUDGET_S


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="all",
                    help=f"comma-separated suites from {', '.join(SUITES)}; "
                         f"'all' = {','.join(DEFAULT)}")
    ap.add_argument("--budget", type=float, default=None,
                    help=f"seconds for the whole run (default {BUDGET_S}, {PEER_BUDGET_S} "
                         "with --peer); a suite that would overrun its share is stopped and "
                         "reports what it measured so far")
    ap.add_argument("--seconds", type=float, default=15,
                    help="length of each throughput run")
    ap.add_argument("--producers", type=int, default=2,
                    help="producer processes for the single-broker run")
    ap.add_argument("--partitions", type=int, default=4,
                    help="partitions of the single-broker topic")
    g = ap.add_argument_group("controller")
    g.add_argument("--topics", type=int, default=1000)
    g.add_argument("--topic-partitions", type=int, default=10)
    g.add_argument("--create-rf", type=int, default=1,
                   help="replication factor of the image (RF=3 at 10,000 partitions does "
                        "not settle on 2 shared cores today)")
    g.add_argument("--rf3-topics", type=int, default=200,
                   help="topics created with RF=3 on a fresh cluster (0 skips)")
    g.add_argument("--create-batch", type=int, default=50, help="topics per CreateTopics")
    g.add_argument("--single-topics", type=int, default=100,
                   help="topics created one per request (bounded by --single-seconds)")
    g.add_argument("--single-seconds", type=float, default=30)
    g.add_argument("--create-deadline", type=float, default=150,
                   help="give up creating the image after this many seconds")
    g.add_argument("--controller-failovers", type=int, default=2)
    g = ap.add_argument_group("replication")
    g.add_argument("--repl-producers", type=int, default=3)
    g.add_argument("--repl-partitions", type=int, default=6)
    g.add_argument("--latency-mb-s", type=float, default=10.0)
    g.add_argument("--latency-seconds", type=float, default=10.0)
    g.add_argument("--latency-linger-ms", type=float, default=5.0,
                   help="producer linger.ms of the latency run (5 = librdkafka's default)")
    g.add_argument("--latency-short-linger-ms", type=float, default=1.0,
                   help="one more run at the sustained rate with this linger; < 0 skips it")
    g.add_argument("--leader-failovers", type=int, default=3,
                   help="trials of each of SIGKILL and SIGTERM")
    g = ap.add_argument_group("transactions")
    g.add_argument("--txn-partitions", type=int, default=6,
                   help="partitions of each topic (RF=3); --seconds per throughput phase")
    g.add_argument("--txn-rounds", type=int, default=2,
                   help="idempotent and transactional runs alternate this many times, "
                        "--seconds in all for each (idem, txn, txn, idem, ...)")
    g.add_argument("--txn-warmup", type=float, default=10.0,
                   help="seconds of untimed transactional producing before them")
    g.add_argument("--commit-ms", type=float, default=100.0,
                   help="the transactional producer commits this often")
    g.add_argument("--txn-e2e-mb-s", type=float, default=10.0,
                   help="rate of the read_committed end-to-end latency run")
    g.add_argument("--txn-e2e-seconds", type=float, default=10.0)
    g = ap.add_argument_group("startup")
    g.add_argument("--startup-trials", type=int, default=5,
                   help="cluster starts of each size (the median is reported)")
    g = ap.add_argument_group("compaction")
    g.add_argument("--clean-log-mb", type=int, default=384,
                   help="size of the log cleaned in isolation")
    g.add_argument("--clean-segment-mb", type=int, default=64,
                   help="its segment.bytes, in MiB")
    g.add_argument("--clean-keys", type=int, default=100_000,
                   help="distinct keys of that log (1 KiB values)")
    g.add_argument("--compaction-rate", type=int, default=3000,
                   help="records/s (1 KiB, keyed, acks=all) of the produce latency runs")
    g.add_argument("--compaction-seconds", type=float, default=20,
                   help="measured window of each latency run (after a 5 s warm-up)")
    g.add_argument("--compaction-nodes", default="1,3",
                   help="cluster sizes of the latency runs, comma-separated (RF = nodes)")
    g = ap.add_argument_group("security")
    g.add_argument("--sec-seconds", type=float, default=8,
                   help="length of each produce throughput run over a listener")
    g.add_argument("--sec-listeners", default="PLAINTEXT,SSL,SASL_SSL",
                   help="listeners of the throughput runs, in this order, comma-separated "
                        "(the others are given as ratios to PLAINTEXT)")
    g.add_argument("--auth-latency-seconds", type=float, default=12,
                   help="each produce latency window: alone, during the storm, alone again")
    g.add_argument("--storm-attempts", type=int, default=10_000,
                   help="failed SASL PLAIN logins the storm makes (at least)")
    g.add_argument("--storm-connections", type=int, default=150,
                   help="storm connections in flight at once (each failure is delayed by "
                        "connection.failed.authentication.delay.ms)")
    g.add_argument("--storm-procs", type=int, default=2, help="processes making the storm")
    g.add_argument("--storm-ip-quota", type=int, default=20,
                   help="connection_creation_rate per address for a second storm (KIP-612's "
                        "defence); 0: no second storm")
    g.add_argument("--storm-listener-rate", type=int, default=20,
                   help="max.connection.creation.rate of a second SASL_PLAINTEXT listener for a "
                        "third storm, the producer there connected before it; 0: none")
    g.add_argument("--quota-mb-s", type=float, default=2.0,
                   help="producer_byte_rate of client id 'limited', in MB/s")
    g.add_argument("--quota-seconds", type=float, default=30,
                   help="the limited producer's run (its rate is taken over whole periods "
                        "of the quota's sawtooth, about 13 s each)")
    g.add_argument("--free-seconds", type=float, default=6,
                   help="the free producer's runs: alone, beside the limited one, alone "
                        "again (the first second is not counted)")
    g = ap.add_argument_group("peer")
    g.add_argument("--peer", choices=PEERS,
                   help="also run each suite that can against Apache Kafka (KRaft, same "
                        "layout and settings) right after Odradek, and show the ratios")
    g.add_argument("--kafka-version", default=KAFKA_VERSION,
                   help="Kafka release (4.x) whose broker jars are fetched from Maven Central")
    g.add_argument("--kafka-heap", default=DEFAULT_HEAP,
                   help="-Xmx/-Xms of each Kafka process (kafka-server-start.sh's default)")
    g.add_argument("--kafka-config", action="append", default=[], metavar="KEY=VALUE",
                   help="a server property for every Kafka node over the mirrored settings "
                        "(repeatable)")
    g = ap.add_argument_group("internal: one suite in its own process")
    g.add_argument("--child", help=argparse.SUPPRESS)
    g.add_argument("--child-out", help=argparse.SUPPRESS)
    g.add_argument("--workdir", help=argparse.SUPPRESS)
    g.add_argument("--disk-mb-s", type=float, default=0.0, help=argparse.SUPPRESS)
    g.add_argument("--fsync-per-s", type=float, default=0.0, help=argparse.SUPPRESS)
    g.add_argument("--child-peer", choices=PEERS, help=argparse.SUPPRESS)
    g.add_argument("--kafka-lib", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.budget is None:
        args.budget = PEER_BUDGET_S if args.peer else BUDGET_S
    try:
        args.kafka_overrides = parse_overrides(args.kafka_config)
    except ValueError as e:
        ap.error(str(e))
    names = DEFAULT if args.suite == "all" else tuple(
        s.strip() for s in args.suite.split(",") if s.strip())
    unknown = [s for s in names if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite {unknown[0]!r}; choose from {', '.join(SUITES)} or all")
    args.suites = names
    return args


@dataclass(frozen=True)
class Step:
    """One suite run in its own process: against Odradek, or against the peer."""

    suite: str
    peer: str | None = None

    @property
    def label(self) -> str:
        return self.suite if self.peer is None else f"{self.suite} on {self.peer}"

    @property
    def key(self) -> str:
        """Its name in result files and figure keys."""
        base = self.suite.replace("-", "_")
        return base if self.peer is None else f"{self.peer}_{base}"


def plan(suites: Sequence[str], peer: str | None) -> list[Step]:
    """Each suite, and right after it its run against the peer where it can have one."""
    steps = []
    for name in suites:
        steps.append(Step(name))
        if peer and name not in NO_PEER:
            steps.append(Step(name, peer))
    return steps


def compared(name: str) -> tuple[Compared, ...]:
    """The figures of a suite shown beside the peer's."""
    if name == "single":
        return single_broker.COMPARED
    if name == "replication":
        return replication.COMPARED
    if name == "transactions":
        return transactions.COMPARED
    if name.startswith("controller"):
        return controller.compared(name.replace("-", "_"))
    return ()


def kafka_peer(args: argparse.Namespace) -> KafkaPeer:
    return KafkaPeer(Path(args.kafka_lib), args.kafka_version, args.kafka_heap,
                     args.kafka_overrides)


def run_suite(name: str, args: argparse.Namespace, workdir: Path, report: Report,
              disk: float, fsync_rate: float, peer: KafkaPeer | None = None) -> None:
    if peer is not None and name in NO_PEER:
        raise ValueError(f"{name} cannot run against a peer: {NO_PEER[name]}")
    if name == "single":
        single_broker.run(single_broker.SingleBrokerArgs(
            args.seconds, args.producers, args.partitions), workdir, report, disk, peer)
    elif name.startswith("controller"):
        controller.run(controller.ControllerArgs(
            topics=args.topics, partitions=args.topic_partitions,
            replication_factor=args.create_rf, batch=args.create_batch,
            single_topics=args.single_topics, single_seconds=args.single_seconds,
            create_deadline=args.create_deadline, failover_trials=args.controller_failovers,
            rf3_topics=args.rf3_topics,
            layout="dedicated" if name == "controller-dedicated" else "combined"),
            workdir, report, fsync_rate, peer)
    elif name == "startup":
        startup.run(startup.StartupArgs(trials=args.startup_trials), workdir, report)
    elif name == "replication":
        replication.run(replication.ReplicationArgs(
            seconds=args.seconds, producers=args.repl_producers,
            partitions=args.repl_partitions, latency_mb_s=args.latency_mb_s,
            latency_seconds=args.latency_seconds, latency_linger_ms=args.latency_linger_ms,
            latency_short_linger_ms=args.latency_short_linger_ms,
            failover_trials=args.leader_failovers), workdir, report, disk, peer)
    elif name == "transactions":
        transactions.run(transactions.TransactionsArgs(
            seconds=args.seconds, rounds=args.txn_rounds, warmup=args.txn_warmup,
            partitions=args.txn_partitions,
            commit_ms=args.commit_ms,
            e2e_mb_s=args.txn_e2e_mb_s, e2e_seconds=args.txn_e2e_seconds),
            workdir, report, disk, peer)
    elif name == "compaction":
        compaction.run(compaction.CompactionArgs(
            log_mb=args.clean_log_mb, segment_mb=args.clean_segment_mb, keys=args.clean_keys,
            rate=args.compaction_rate, seconds=args.compaction_seconds,
            nodes=tuple(int(n) for n in args.compaction_nodes.split(",") if n.strip())),
            workdir, report, disk)
    elif name == "security":
        security.run(security.SecurityArgs(
            seconds=args.sec_seconds, producers=args.producers, partitions=args.partitions,
            tls_listeners=tuple(s.strip() for s in args.sec_listeners.split(",") if s.strip()),
            latency_seconds=args.auth_latency_seconds, storm_attempts=args.storm_attempts,
            storm_connections=args.storm_connections, storm_procs=args.storm_procs,
            storm_ip_quota=args.storm_ip_quota,
            storm_listener_rate=args.storm_listener_rate,
            quota_mb_s=args.quota_mb_s, quota_seconds=args.quota_seconds,
            free_seconds=args.free_seconds), workdir, report)


# Upper bound on each suite's process, so a wedged cluster cannot hold `make bench` forever,
# and the time each one needs at least (kept back for it from the suites before it).
SUITE_LIMIT_S = {"startup": 150, "single": 180, "controller": 420, "controller-dedicated": 360,
                 "replication": 360, "transactions": 180, "compaction": 330, "security": 300}
SUITE_RESERVE_S = {"startup": 60, "single": 60, "controller": 120, "controller-dedicated": 100,
                   "replication": 150, "transactions": 90, "compaction": 150, "security": 180}


def run_child(step: Step, args: argparse.Namespace, workdir: Path, disk: float,
              fsync_rate: float, out: Path) -> int:
    """Inside the suite's own process: run it, results go to ``out`` as they come."""
    # A client library aborting (SIGABRT) still shows where in the suite it happened.
    faulthandler.enable(all_threads=True)
    peer = kafka_peer(args) if step.peer == "kafka" else None
    report = (Report(sink=out) if peer is None else
              Report(sink=out, figure_prefix=f"{step.peer}_", section_suffix=f" on {peer.name}"))
    with cleanup_on_signals():
        try:
            run_suite(step.suite, args, workdir, report, disk, fsync_rate, peer)
        except Exception as e:
            traceback.print_exc()
            report.row(f"[{step.label}] FAILED", f"{type(e).__name__}: {str(e)[:300]}")
            return 1
    return 0


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """End the suite process and everything it started (nodes, load generators): they
    share the process group we created for it, whose id is the suite process's pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # lets the suite clean up after itself
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def child_argv(step: Step, argv: list[str], workdir: Path, disk: float, fsync_rate: float,
               out: Path, kafka_lib: Path | None = None) -> list[str]:
    """The command line of the process that runs ``step``."""
    cmd = [sys.executable, "-m", "tests.bench.run", *argv, "--child", step.suite,
           "--child-out", str(out), "--workdir", str(workdir), "--disk-mb-s", str(disk),
           "--fsync-per-s", str(fsync_rate)]
    if step.peer is not None:
        assert kafka_lib is not None, "a peer step needs the peer's jars"
        cmd += ["--child-peer", step.peer, "--kafka-lib", str(kafka_lib)]
    return cmd


def run_isolated(step: Step, argv: list[str], workdir: Path, disk: float, fsync_rate: float,
                 report: Report, limit: float, kafka_lib: Path | None = None) -> bool:
    """Run one suite in its own process group. A client library aborting (librdkafka has
    asserted under this product's error paths) or a wedged cluster then costs one suite,
    and no node process outlives the run (Kafka's JVMs stay in that group too)."""
    name = step.label
    out = workdir / f"{step.key}.json"
    cmd = child_argv(step, argv, workdir, disk, fsync_rate, out, kafka_lib)
    proc = subprocess.Popen(cmd, start_new_session=True)
    code: int | None = None
    try:
        code = proc.wait(limit)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _end_group(proc)
        merged = report.merge_file(out)  # even when interrupted: what it measured so far
    if code == 0:
        return True
    if code is None:
        report.row(f"[{name}] STOPPED", f"still running after its {limit:.0f} s limit "
                   "(results so far above)")
    elif code < 0:
        report.row(f"[{name}] CRASHED", f"killed by {signal.Signals(-code).name}"
                   + ("" if merged else "; no results"))
    elif not merged:
        report.row(f"[{name}] FAILED", f"exit code {code}; no results")
    return False


def prepare_peer(args: argparse.Namespace, report: Report) -> Path | None:
    """The peer's jars (fetched once, before any suite: the download is no suite's
    time), or None with the reason reported: the Odradek suites still run."""
    try:
        java_binary()
        lib = fetch_jars(args.kafka_version)
    except Exception as e:  # noqa: BLE001 - reported; the peer's runs are skipped
        report.row(f"[{args.peer}] NOT RUN", f"{type(e).__name__}: {str(e)[:300]}")
        return None
    report.row(f"{args.peer} peer", f"apache kafka {args.kafka_version} (KRaft), jars in {lib}, "
                                    f"heap {args.kafka_heap} per process")
    return lib


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    if args.child:
        return run_child(Step(args.child, args.child_peer), args, Path(args.workdir),
                         args.disk_mb_s, args.fsync_per_s, Path(args.child_out))
    report = Report()
    failed: list[str] = []
    interrupted = False
    started = time.perf_counter()
    with cleanup_on_signals(), bench_dir(Path.cwd(), "run") as workdir:
        disk = raw_disk_write_mb_s(workdir)
        fsync_rate = fsyncs_per_s(workdir) if any(
            s.startswith("controller") for s in args.suites) else 0.0
        report.row("raw disk write (1 MiB blocks + fsync)", f"{disk:.1f} MB/s")
        report.figure("disk_write_mb_s", round(disk, 1))
        steps = plan(args.suites, args.peer)
        kafka_lib = prepare_peer(args, report) if args.peer else None
        ratios: dict[str, float] = {}
        for i, step in enumerate(steps):
            name = step.suite
            if step.peer is not None and kafka_lib is None:
                continue  # the peer could not be prepared (reported above)
            t0 = time.perf_counter()
            left = args.budget - (t0 - started) - sum(
                SUITE_RESERVE_S.get(s.suite, 60) for s in steps[i + 1:]
                if s.peer is None or kafka_lib is not None)
            limit = max(SUITE_RESERVE_S.get(name, 60), min(SUITE_LIMIT_S.get(name, 600), left))
            try:
                if not run_isolated(step, raw, workdir, disk, fsync_rate, report, limit,
                                    kafka_lib):
                    failed.append(step.label)
            except Interrupted:
                failed.append(step.label)
                report.row(f"[{step.label}] INTERRUPTED", "stopped by a signal; results so far")
                interrupted = True
                break
            report.figure(f"{step.key}_suite_seconds", round(time.perf_counter() - t0, 1))
            if args.peer and step.peer is None and name in NO_PEER:
                report.row(f"[{name}] not run against {args.peer}", NO_PEER[name])
            if step.peer is not None:
                ratios.update(compare_rows(
                    report, f"{name}: odradek vs {step.peer} {args.kafka_version}, same run "
                            "(ratio = odradek / kafka)", compared(name), report.figures,
                    step.peer))
                report.figure("kafka_ratio", ratios)
        if not interrupted:
            # Measured again at the end: how far the machine's bandwidth moved meanwhile.
            end_disk = raw_disk_write_mb_s(workdir)
            report.row("raw disk write again at the end", f"{end_disk:.1f} MB/s")
            report.figure("disk_write_end_mb_s", round(end_disk, 1))
    report.figure("suites_failed", failed)
    report.figure("total_seconds", round(time.perf_counter() - started, 1))
    report.print_table()
    print(json.dumps(report.figures))
    sys.stdout.flush()
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

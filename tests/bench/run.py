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
  startup      test clusters (odradek.testing): 1 and 3 nodes until a client's first
               acks=all write is acknowledged, and a 20-test pytest suite sharing one
  compaction   the log cleaner: MB/s of dirty log cleaned (a log built on disk, cleaned
               as a worker does), and produce latency p50/p99 on a compacted topic with
               the cleaner off and on (fresh 1- then 3-node cluster each). Not in 'all': the
               default suites already share out its budget; use --suite compaction
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
from pathlib import Path

from tests.bench import compaction, controller, replication, single_broker, startup
from tests.bench.common import (
    Interrupted,
    Report,
    bench_dir,
    cleanup_on_signals,
    fsyncs_per_s,
    raw_disk_write_mb_s,
)

# Kept importable from here, where it used to live.
__all__ = ["main", "raw_disk_write_mb_s"]

SUITES = ("startup", "single", "controller", "controller-dedicated", "replication",
          "compaction")
# compaction (about 2 minutes) is left out of 'all': the other suites' limits already share
# out the whole 12-minute default budget, so adding it would cut the others short.
DEFAULT = SUITES[:-1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="all",
                    help=f"comma-separated suites from {', '.join(SUITES)}; "
                         f"'all' = {','.join(DEFAULT)}")
    ap.add_argument("--budget", type=float, default=720,
                    help="seconds for the whole run; a suite that would overrun its share "
                         "is stopped and reports what it measured so far")
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
    g = ap.add_argument_group("internal: one suite in its own process")
    g.add_argument("--child", help=argparse.SUPPRESS)
    g.add_argument("--child-out", help=argparse.SUPPRESS)
    g.add_argument("--workdir", help=argparse.SUPPRESS)
    g.add_argument("--disk-mb-s", type=float, default=0.0, help=argparse.SUPPRESS)
    g.add_argument("--fsync-per-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = DEFAULT if args.suite == "all" else tuple(
        s.strip() for s in args.suite.split(",") if s.strip())
    unknown = [s for s in names if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite {unknown[0]!r}; choose from {', '.join(SUITES)} or all")
    args.suites = names
    return args


def run_suite(name: str, args: argparse.Namespace, workdir: Path, report: Report,
              disk: float, fsync_rate: float) -> None:
    if name == "single":
        single_broker.run(single_broker.SingleBrokerArgs(
            args.seconds, args.producers, args.partitions), workdir, report, disk)
    elif name.startswith("controller"):
        controller.run(controller.ControllerArgs(
            topics=args.topics, partitions=args.topic_partitions,
            replication_factor=args.create_rf, batch=args.create_batch,
            single_topics=args.single_topics, single_seconds=args.single_seconds,
            create_deadline=args.create_deadline, failover_trials=args.controller_failovers,
            rf3_topics=args.rf3_topics,
            layout="dedicated" if name == "controller-dedicated" else "combined"),
            workdir, report, fsync_rate)
    elif name == "startup":
        startup.run(startup.StartupArgs(trials=args.startup_trials), workdir, report)
    elif name == "replication":
        replication.run(replication.ReplicationArgs(
            seconds=args.seconds, producers=args.repl_producers,
            partitions=args.repl_partitions, latency_mb_s=args.latency_mb_s,
            latency_seconds=args.latency_seconds, latency_linger_ms=args.latency_linger_ms,
            latency_short_linger_ms=args.latency_short_linger_ms,
            failover_trials=args.leader_failovers), workdir, report, disk)
    elif name == "compaction":
        compaction.run(compaction.CompactionArgs(
            log_mb=args.clean_log_mb, segment_mb=args.clean_segment_mb, keys=args.clean_keys,
            rate=args.compaction_rate, seconds=args.compaction_seconds,
            nodes=tuple(int(n) for n in args.compaction_nodes.split(",") if n.strip())),
            workdir, report, disk)


# Upper bound on each suite's process, so a wedged cluster cannot hold `make bench` forever,
# and the time each one needs at least (kept back for it from the suites before it).
SUITE_LIMIT_S = {"startup": 150, "single": 180, "controller": 420, "controller-dedicated": 360,
                 "replication": 360, "compaction": 330}
SUITE_RESERVE_S = {"startup": 60, "single": 60, "controller": 120, "controller-dedicated": 100,
                   "replication": 150, "compaction": 150}


def run_child(name: str, args: argparse.Namespace, workdir: Path, disk: float,
              fsync_rate: float, out: Path) -> int:
    """Inside the suite's own process: run it, results go to ``out`` as they come."""
    # A client library aborting (SIGABRT) still shows where in the suite it happened.
    faulthandler.enable(all_threads=True)
    report = Report(sink=out)
    with cleanup_on_signals():
        try:
            run_suite(name, args, workdir, report, disk, fsync_rate)
        except Exception as e:
            traceback.print_exc()
            report.row(f"[{name}] FAILED", f"{type(e).__name__}: {str(e)[:300]}")
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


def run_isolated(name: str, argv: list[str], workdir: Path, disk: float, fsync_rate: float,
                 report: Report, limit: float) -> bool:
    """Run one suite in its own process group. A client library aborting (librdkafka has
    asserted under this product's error paths) or a wedged cluster then costs one suite,
    and no node process outlives the run."""
    out = workdir / f"{name}.json"
    cmd = [sys.executable, "-m", "tests.bench.run", *argv, "--child", name,
           "--child-out", str(out), "--workdir", str(workdir), "--disk-mb-s", str(disk),
           "--fsync-per-s", str(fsync_rate)]
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


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    if args.child:
        return run_child(args.child, args, Path(args.workdir), args.disk_mb_s,
                         args.fsync_per_s, Path(args.child_out))
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
        for i, name in enumerate(args.suites):
            t0 = time.perf_counter()
            left = args.budget - (t0 - started) - sum(
                SUITE_RESERVE_S.get(n, 60) for n in args.suites[i + 1:])
            limit = max(SUITE_RESERVE_S.get(name, 60), min(SUITE_LIMIT_S.get(name, 600), left))
            try:
                if not run_isolated(name, raw, workdir, disk, fsync_rate, report, limit):
                    failed.append(name)
            except Interrupted:
                failed.append(name)
                report.row(f"[{name}] INTERRUPTED", "stopped by a signal; results so far")
                interrupted = True
                break
            report.figure(f"{name.replace('-', '_')}_suite_seconds",
                          round(time.perf_counter() - t0, 1))
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

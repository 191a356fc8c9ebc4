"""``odradek verify``: start a cluster of real nodes, inject faults from a seed while
independent clients produce and consume, then check the history for lost, duplicated,
reordered or phantom records and write a report.

The harness is odradek.broker.verify (runner.py drives a run); this module only parses
options and hands over, importing it when the command runs, so other commands never load
it. Its client libraries come with the ``verify`` extra: ``pip install 'odradek[verify]'``.
Exit status: 0 no anomalies, 1 anomalies (or the cluster did not recover), 2 the run could
not be set up.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

KINDS = ("kill", "pause", "controller-kill", "crash-unflushed", "isolate", "split", "oneway",
         "loss", "delay")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify", help="fault-injection run with a correctness check",
        description="Run a cluster of real node processes, inject faults on a seeded schedule "
        "while confluent-kafka and kafka-python clients produce and consume, heal, read every "
        "partition back, and check that no acknowledged record was lost, duplicated or "
        "moved. Writes a report (report.md, timeline.png) and prints the command that "
        "reproduces the run. Needs the verify extra: pip install 'odradek[verify]'.")
    p.add_argument("--duration", type=float, default=600.0,
                   help="seconds of workload under faults (default 600)")
    p.add_argument("--interval", type=float, default=15.0,
                   help="seconds between fault starts (default 15)")
    p.add_argument("--seed", type=int, default=None,
                   help="schedule seed (default: random, printed)")
    p.add_argument("--nodes", type=int, default=3, help="combined broker+controller nodes")
    p.add_argument("--faults", default=None, metavar="KIND[,KIND...]",
                   help=f"fault kinds, from {', '.join(KINDS)}; 'none' for no faults "
                   "(default: every kind this machine supports)")
    p.add_argument("--netns", dest="netns", action="store_true", default=None,
                   help="nodes in network namespaces (root, ip, nft); default when available")
    p.add_argument("--no-netns", dest="netns", action="store_false",
                   help="plain processes on 127.0.0.1: process faults only")
    p.add_argument("--replication-factor", type=int, default=3)
    p.add_argument("--min-insync", type=int, default=2, help="min.insync.replicas of the topic")
    p.add_argument("--acks", choices=("all", "1"), default="all")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--rate", type=float, default=150.0,
                   help="messages per second over all producers (default 150)")
    p.add_argument("--fault-duration", default="3-10", metavar="MIN-MAX",
                   help="seconds a fault lasts, drawn from this range (default 3-10)")
    p.add_argument("--unflushed", choices=("random", "all"), default="random",
                   help="crash-unflushed drops the unflushed tail from a random position "
                   "(default) or all of it")
    p.add_argument("--recovery-window", type=float, default=30.0,
                   help="seconds after faults within which acknowledged records must be "
                   "readable (default 30)")
    p.add_argument("--out", type=Path, default=None,
                   help="run directory (default ./odradek-verify/<time>-seed<seed>)")
    p.add_argument("--workload", choices=("plain", "txn"), default="plain",
                   help="plain: idempotent and plain producers (default); txn: transactional "
                   "producers with read_committed readers (docs/reliability.md)")
    p.add_argument("--txn-misread", action="store_true",
                   help="negative control of --workload txn: readers read read_uncommitted "
                   "while the checker is told read_committed; must find aborted reads")
    p.add_argument("--txn-past-lso", action="store_true",
                   help="negative control of --workload txn in the broker: the nodes serve "
                   "read_committed reads past the last stable offset (fault injection); "
                   "must find uncommitted and aborted reads")
    p.add_argument("--bootstrap", default=None,
                   help="check an existing cluster instead (no faults injected: yours, e.g. "
                   "docker compose kill); the topic is created if absent")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from odradek.broker.verify import runner

    try:
        lo, _, hi = args.fault_duration.partition("-")
        fault_min, fault_max = float(lo), float(hi or lo)
    except ValueError:
        print(f"odradek verify: --fault-duration {args.fault_duration!r}: use MIN-MAX seconds, "
              "e.g. 3-10", file=sys.stderr)
        return 2
    faults = None
    if args.faults is not None:
        faults = [] if args.faults.strip() == "none" else [
            k.strip() for k in args.faults.split(",") if k.strip()]
    options = runner.Options(
        duration=args.duration, interval=args.interval, seed=args.seed, nodes=args.nodes,
        faults=faults, netns=args.netns, replication_factor=args.replication_factor,
        min_insync=args.min_insync, acks=args.acks, partitions=args.partitions,
        recovery_window=args.recovery_window, out=args.out, bootstrap=args.bootstrap,
        rate=args.rate, fault_min=fault_min, fault_max=fault_max, unflushed=args.unflushed,
        workload=args.workload, txn_misread=args.txn_misread,
        txn_past_lso=args.txn_past_lso)
    # SIGTERM unwinds like Ctrl-C, so the nodes, the namespaces and the clients are cleaned up.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = runner.run(options)
    except runner.SetupError as e:
        print(f"odradek verify: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("odradek verify: interrupted; nodes and namespaces removed", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if outcome.ok else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt

"""Start-up benchmarks: how long a test cluster (odradek.testing, the pytest plugin's
cluster) takes until a client can produce, and the wall time of a 20-test suite sharing one.

"Ready" is measured as a user's test sees it: from ``OdradekCluster(...).start()`` being
called to the first acks=all write acknowledged (confluent-kafka, auto-created topic).
The floor beside it, measured in the same run: starting Python and importing the node's
modules, which every node process pays before it can do anything.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import Report

EXAMPLES = Path(__file__).resolve().parents[1] / "plugin" / "examples"
SUITE = "test_shared_cluster.py"


@dataclass
class StartupArgs:
    trials: int = 5


def import_floor_s(trials: int = 3) -> float:
    """Median wall time of a Python process importing what a node imports before it can do
    anything (as ``python -m odradek.broker.cli.node`` does: without hypothesis)."""
    took = []
    for _ in range(trials):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sys; sys.modules['hypothesis'] = None; "
                        "import odradek.broker.cli.node, odradek.broker.node, "
                        "odradek.broker.cli.metadata_plane, uvloop"], check=True)
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def ready_s(nodes: int, workdir: Path) -> tuple[float, float]:
    """(seconds until every node's Kafka port accepts, seconds until the first acks=all
    write is acknowledged), both from the call to start()."""
    from confluent_kafka import Producer

    from odradek.testing import OdradekCluster

    t0 = time.perf_counter()
    cluster = OdradekCluster(nodes=nodes, data_dir=workdir)
    try:
        cluster.start()
        started = time.perf_counter() - t0
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                             "linger.ms": 0, "log_level": 0})
        errors: list[object] = []
        producer.produce("startup", b"x", on_delivery=lambda err, msg: errors.append(err))
        producer.flush(30)
        acked = time.perf_counter() - t0
        if errors != [None]:
            raise RuntimeError(f"first write not acknowledged: {errors}")
        return started, acked
    finally:
        cluster._local.kill_all()  # noqa: SLF001 - as fast as possible; data is scratch


def suite_s(workdir: Path) -> tuple[float, int]:
    """Wall time of pytest running the 20-test example suite (one shared 1-node cluster),
    from the command to its exit; and the number of tests passed."""
    project = workdir / "suite"
    project.mkdir()
    shutil.copy(EXAMPLES / SUITE, project / SUITE)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-W", "ignore::DeprecationWarning", SUITE],
                          cwd=project, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the example suite failed:\n{proc.stdout[-3000:]}")
    passed = int(proc.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    return took, passed


def run(args: StartupArgs, workdir: Path, report: Report) -> None:
    report.section("startup: test clusters (odradek.testing)")
    floor = import_floor_s()
    report.row("python + node imports (floor, per node process)", f"{floor:.2f} s")
    report.figure("startup_import_floor_s", floor)
    for nodes, target in ((1, 1.0), (3, 3.0)):
        opened, acked = [], []
        for i in range(args.trials):
            o, a = ready_s(nodes, workdir / f"n{nodes}-{i}")
            opened.append(o)
            acked.append(a)
        med = statistics.median(acked)
        report.row(f"{nodes} node(s): ports open, median of {args.trials}",
                   f"{statistics.median(opened):.2f} s")
        report.row(f"{nodes} node(s): first acks=all write acknowledged, median "
                   f"(worst) of {args.trials}",
                   f"{med:.2f} s ({max(acked):.2f} s); target < {target:.0f} s")
        report.figure(f"startup_{nodes}_node_ready_s", med)
        report.figure(f"startup_{nodes}_node_ready_worst_s", max(acked))
    took, passed = suite_s(workdir)
    report.row(f"pytest: {passed}-test suite sharing one cluster (wall, start to exit)",
               f"{took:.2f} s")
    report.figure("startup_20_test_suite_s", took)

"""docs/quickstart.md's "Produce and consume" step and the README's admin commands run top
to bottom on a fresh cluster, as written (issue 17: the quickstart's client snippet
auto-created `orders` with one partition, so the next command, `topics create orders
--partitions 6`, failed with "already exists")."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, Cluster

pytestmark = pytest.mark.integration

QUICKSTART = REPO / "docs" / "quickstart.md"
README = REPO / "README.md"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # As `odradek cluster up` configures its nodes: three replicas by default, one partition.
    c = Cluster(tmp_path / "quickstart", 3, overrides={
        "group.initial.rebalance.delay.ms": 3000}).start()
    yield c
    c.kill_all()


def _blocks(section: str, doc: Path = QUICKSTART) -> list[tuple[str, str]]:
    text = doc.read_text()
    start = text.index(section)
    end = text.index("\n## ", start + 1)
    return re.findall(r"```(sh|python)\n(.*?)```", text[start:end], re.S)


def _shell_line(line: str, bootstrap: str) -> str:
    """A documented command line, run against the test's cluster: this interpreter's CLI,
    with --bootstrap on every odradek command of the pipeline."""
    line = line.split("  #", 1)[0].strip()
    cli = f"{shlex.quote(sys.executable)} -m odradek.broker.cli.main"
    out = []
    for segment in line.split("|"):
        if ".venv/bin/odradek" in segment:
            segment = segment.replace(".venv/bin/odradek", cli)
            command, redirect, target = segment.partition(">")
            segment = f"{command.rstrip()} --bootstrap {bootstrap} {redirect}{target}"
        out.append(segment)
    return "|".join(out)


def test_produce_and_consume_step_runs_as_written(cluster: Cluster) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = cluster.nodes[0].bootstrap
    blocks = _blocks("## 2. Produce and consume")
    for kind, body in blocks:
        if kind == "python":
            code = body.replace("localhost:9092", first)
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                  text=True, env=env, timeout=120)
            assert proc.returncode == 0, proc.stderr
            assert len(proc.stdout.splitlines()) == 10, proc.stdout
            continue
        for line in body.strip().splitlines():
            proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                                   _shell_line(line, cluster.bootstrap)],
                                  capture_output=True, text=True, env=env, timeout=120,
                                  cwd=REPO)
            assert proc.returncode == 0, (line, proc.stderr)
    desc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", "topics",
                           "describe", "orders", "--json", "--bootstrap", cluster.bootstrap],
                          capture_output=True, text=True, env=env, timeout=60)
    assert desc.stdout.count('"partition":') == 6, desc.stdout


def test_readme_admin_commands_run_as_written(cluster: Cluster) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    blocks = _blocks("## Admin commands", README)
    assert blocks and all(kind == "sh" for kind, _ in blocks)
    controller = cluster.nodes[0].overrides["controller.listener"]
    for _, body in blocks:
        for line in body.strip().splitlines():
            line = line.replace("127.0.0.1:9192", controller)
            proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                                   _shell_line(line, cluster.bootstrap)],
                                  capture_output=True, text=True, env=env, timeout=120,
                                  cwd=REPO)
            assert proc.returncode == 0, (line, proc.stderr)

"""The pytest plugin as a user gets it: Odradek installed from its wheel with the
``testing`` extra in a virtual environment of its own, the example suites of docs/testing.md
(examples/) run by that environment's pytest, with each client library, under pytest-xdist,
and interrupted by SIGINT, SIGTERM and SIGKILL without leaving a node behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.plugin.userenv import REPO, user_venv

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parent / "examples"
DOCS = REPO / "docs" / "testing.md"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return user_venv(tmp_path_factory.mktemp("wheel"))


def _project(tmp_path: Path, *files: str, extra: dict[str, str] | None = None) -> Path:
    """A user's project directory (outside this repository, so none of its configuration
    applies) holding the named example files and any extra ones."""
    project = tmp_path / "project"
    project.mkdir(parents=True)
    for name in files:
        (project / name).write_text((EXAMPLES / name).read_text())
    for name, text in (extra or {}).items():
        (project / name).write_text(text)
    return project


def _env(venv: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "XDG_CACHE_HOME")}
    return {**keep, "PATH": f"{venv / 'bin'}:/usr/bin:/bin", **extra}


def _pytest(venv: Path, project: Path, *args: str, timeout: float = 300,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-W", "ignore::DeprecationWarning", *args],
        cwd=project, env=_env(venv, **env), capture_output=True, text=True, timeout=timeout)


def _outcome(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return {k: int(n) for n, k in re.findall(r"(\d+) (\w+)", summary)}


def test_docs_show_the_example_files() -> None:
    """docs/testing.md shows each example file whole, so the documented code is the code
    these tests run."""
    docs = DOCS.read_text()
    for path in sorted(EXAMPLES.glob("*.py")):
        marker = f"<!-- example: tests/plugin/examples/{path.name} -->"
        assert marker in docs, f"docs/testing.md does not show {path.name}"
        block = docs.split(marker, 1)[1].split("```python\n", 1)[1].split("\n```", 1)[0]
        assert block + "\n" == path.read_text(), f"docs/testing.md's {path.name} is stale"


def test_examples_pass_with_every_client(venv: Path, tmp_path: Path) -> None:
    files = sorted(p.name for p in EXAMPLES.glob("test_*.py"))
    proc = _pytest(venv, _project(tmp_path, *files), "-rfEs")
    outcome = _outcome(proc)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert outcome.get("passed", 0) >= 26 and not outcome.get("skipped"), proc.stdout[-3000:]


WORKER_PROBE = '''
import os
from pathlib import Path

import pytest


@pytest.mark.parametrize("n", range(6))
def test_probe(odradek_bootstrap, odradek_topic, n):
    line = f"{os.environ.get('PYTEST_XDIST_WORKER')} {odradek_bootstrap} {odradek_topic}\\n"
    with open(os.environ["PROBE_FILE"], "a") as f:
        f.write(line)
'''


def test_one_cluster_per_xdist_worker(venv: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.txt"
    project = _project(tmp_path, "test_shared_cluster.py",
                       extra={"test_probe.py": WORKER_PROBE})
    proc = _pytest(venv, project, "-n", "2", PROBE_FILE=str(probe))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert _outcome(proc).get("passed") == 26, proc.stdout[-3000:]
    rows = [line.split() for line in probe.read_text().splitlines()]
    clusters = {worker: {boot for w, boot, _ in rows if w == worker} for worker, _, _ in rows}
    assert set(clusters) <= {"gw0", "gw1"} and all(len(b) == 1 for b in clusters.values())
    if len(clusters) == 2:  # xdist may hand all six probes to one worker
        assert clusters["gw0"] != clusters["gw1"]
    assert len({topic for _, _, topic in rows}) == len(rows)


INERT = '''
import sys


def test_plugin_loaded_but_idle(request):
    assert request.config.pluginmanager.hasplugin("odradek")
    assert "odradek.testing.cluster" not in sys.modules
    assert "odradek.broker.local_cluster" not in sys.modules
'''


def test_plugin_starts_nothing_unless_asked(venv: Path, tmp_path: Path) -> None:
    proc = _pytest(venv, _project(tmp_path, extra={"test_inert.py": INERT}))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    help_text = _pytest(venv, tmp_path, "--help").stdout
    assert "--odradek-nodes" in help_text and "--odradek-config" in help_text


OPTIONS = '''
import pytest
from kafka import KafkaProducer


def test_config_option_reaches_the_nodes(odradek_cluster, odradek_bootstrap, odradek_topic):
    producer = KafkaProducer(bootstrap_servers=odradek_bootstrap)
    producer.send(odradek_topic, b"x").get(timeout=30)  # auto-created: num.partitions
    producer.close()
    assert len(odradek_cluster.partitions(odradek_topic)) == 3


@pytest.mark.odradek_cluster(nodes=2, config={"num.partitions": 2})
def test_marker_overrides_the_options(odradek_cluster, odradek_topic):
    assert len(odradek_cluster.nodes) == 2
    odradek_cluster.produce(odradek_topic, ["x"])
    assert len(odradek_cluster.partitions(odradek_topic)) == 2
'''

BAD_MARKER = '''
import pytest


@pytest.mark.odradek_cluster(3)
def test_bad(odradek_cluster):
    pass
'''


def test_options_markers_and_data_dir(venv: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    project = _project(tmp_path, extra={"test_options.py": OPTIONS})
    proc = _pytest(venv, project, "--odradek-config", "num.partitions=3",
                   "--odradek-data-dir", str(data))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    # One cluster per spec, each in a fresh subdirectory of the data dir, logs kept.
    logs = sorted(p.relative_to(data).parts[0][:11] for p in data.glob("*/node-*.log"))
    assert logs == ["cluster-1n-", "cluster-2n-", "cluster-2n-"], logs

    bad = _pytest(venv, _project(tmp_path / "bad", extra={"test_bad.py": BAD_MARKER}))
    assert bad.returncode != 0
    assert "odradek_cluster takes keyword arguments" in bad.stdout + bad.stderr, bad.stdout


HOLD = '''
import os
import time
from pathlib import Path


def test_hold(odradek_cluster):
    pids = " ".join(str(n.pid) for n in odradek_cluster.nodes)
    Path(os.environ["PIDS_FILE"]).write_text(pids)
    time.sleep(600)
'''


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has exited; only its parent's wait() is missing


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_interrupted_run_leaves_no_node(venv: Path, tmp_path: Path, sig: int) -> None:
    pids_file = tmp_path / "pids"
    project = _project(tmp_path, extra={"test_hold.py": HOLD})
    proc = subprocess.Popen(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--odradek-nodes", "2"],
        cwd=project, env=_env(venv, PIDS_FILE=str(pids_file)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while not pids_file.exists() or not pids_file.read_text():
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the cluster did not start"
            time.sleep(0.05)
        pids = [int(p) for p in pids_file.read_text().split()]
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
        proc.send_signal(sig)
        proc.wait(30)
        # SIGINT and SIGTERM: pytest kills the nodes before it exits. SIGKILL: nothing runs
        # in pytest; each node sees its parent gone (it checks every second) and stops.
        limit = time.monotonic() + (10 if sig == signal.SIGKILL else 1)
        while not all(_gone(p) for p in pids) and time.monotonic() < limit:
            time.sleep(0.1)
        assert all(_gone(p) for p in pids), f"nodes still running after {sig!r}: {pids}"
    finally:
        if proc.poll() is None:
            proc.kill()
        if pids_file.exists():
            for pid in pids_file.read_text().split():
                if not _gone(int(pid)):
                    os.kill(int(pid), signal.SIGKILL)

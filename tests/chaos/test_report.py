"""The run report: files, contents, the timeline image, and the re-render command."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from odradek.broker.verify import checker, history
from odradek.broker.verify.history import Fault, RunInfo
from odradek.broker.verify.report import REPORT_JSON, TIMELINE_PNG, write_report
from tests.chaos.test_checker import REPO, plant_duplicate, plant_lost, synthetic_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def events() -> list[history.Event]:
    clean = synthetic_history(21, faults=4)
    return plant_duplicate(plant_lost(clean, random.Random(1)), random.Random(2))


def test_report_files_and_contents(events: list[history.Event], tmp_path: Path) -> None:
    result = checker.check(events)
    assert result.counts()[checker.LOST] == 1 and result.counts()[checker.DUPLICATE] == 1
    md_path = write_report(tmp_path, events, result, title="planted run")
    assert md_path == tmp_path / "report.md"
    md = md_path.read_text()
    info = next(e for e in events if isinstance(e, RunInfo))
    assert f"Seed: `{info.seed}`" in md
    assert info.command in md
    assert "**Verdict: FAIL**" in md and "# planted run: FAIL" in md
    assert '"partitions": 4' in md  # the config
    starts = [e for e in events if isinstance(e, Fault) and e.phase == "start"]
    assert len(starts) == 4
    for f in starts:
        row = next(line for line in md.splitlines() if line.startswith("| ")
                   and f"| {f.t:.3f} |" in line)
        assert f.kind in row and f.detail in row
        assert ",".join(f"n{t}" for t in f.targets) in row
    for kind, n in result.counts().items():
        assert f"| {kind} | {n} |" in md
    assert result.anomalies[checker.LOST][0].message in md  # the examples
    assert "| all |" in md and "| no fault |" in md and "p99 ms" in md

    doc = json.loads((tmp_path / REPORT_JSON).read_text())
    assert doc["seed"] == info.seed and doc["command"] == info.command
    assert doc["counts"] == result.counts() and doc["ok"] is False
    assert len(doc["timeline"]) == 4
    assert {w["kind"] for w in doc["timeline"]} == {f.kind for f in starts}
    assert doc["stats"]["acks"] == result.stats["acks"]
    overall = doc["phases"][0]
    assert overall["phase"] == "all" and overall["acks"] == result.stats["acks"]
    assert 0 < overall["latency"]["p50_ms"] <= overall["latency"]["p99_ms"] \
        <= overall["latency"]["max_ms"]

    width, height = png_size(tmp_path / TIMELINE_PNG)
    assert 800 <= width <= 4000 and 400 <= height <= 3000, (width, height)
    assert (tmp_path / TIMELINE_PNG).stat().st_size > 20_000  # something was drawn


def test_a_clean_run_without_faults_or_runinfo_still_renders(tmp_path: Path) -> None:
    events = [e for e in synthetic_history(3, faults=0) if not isinstance(e, RunInfo)]
    result = checker.check(events)
    assert result.ok
    md = write_report(tmp_path / "out", events, result).read_text()
    assert "**Verdict: PASS**" in md and "No faults were injected." in md
    assert "unknown" in md  # no RunInfo: no seed or command to show
    assert png_size(tmp_path / "out" / TIMELINE_PNG)[0] > 0


def test_rerender_from_a_saved_history(events: list[history.Event], tmp_path: Path) -> None:
    saved = tmp_path / "history.jsonl"
    history.write(saved, events)
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "odradek.broker.verify.report", str(saved), str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr  # the history has anomalies
    assert "FAIL" in r.stdout and (out / "report.md").exists()
    assert png_size(out / TIMELINE_PNG)[0] > 0
    assert json.loads((out / REPORT_JSON).read_text())["counts"][checker.LOST] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    r = subprocess.run([sys.executable, "-m", "odradek.broker.verify.report", str(bad), str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "bad.jsonl:1" in r.stderr

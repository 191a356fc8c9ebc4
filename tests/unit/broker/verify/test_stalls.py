"""Finding a reader stuck inside its client library (broker/verify/stalls.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from odradek.broker.verify import stalls


@dataclass
class FakeReader:
    name: str
    last_beat: float
    stall_reported: bool = False


def test_a_reader_stuck_for_the_limit_is_reported_once_with_stacks(tmp_path: Path) -> None:
    readers = [FakeReader("ckrc", 100.0), FakeReader("kprc", 129.0)]
    lines: list[str] = []
    dumps: list[int] = []

    def dump(pid: int) -> str:
        dumps.append(pid)
        return "Thread 1: rd_kafka_consumer_poll"

    assert stalls.check(readers, tmp_path, 410.0, lines.append, now=129.9, dump=dump) == []
    assert stalls.check(readers, tmp_path, 411.0, lines.append, now=130.0, dump=dump) == [
        "ckrc"]
    assert len(dumps) == 1 and "ckrc" in lines[0] and "stall-411s.txt" in lines[0]
    text = (tmp_path / "stall-411s.txt").read_text()
    assert "ckrc" in text and "rd_kafka_consumer_poll" in text and "kprc" not in text
    # Still stuck: not reported again; back and stuck again later: reported again.
    assert stalls.check(readers, tmp_path, 440.0, lines.append, now=170.0, dump=dump) == [
        "kprc"]
    readers[0].last_beat, readers[0].stall_reported = 171.0, False  # what beat() does
    assert stalls.check(readers, tmp_path, 480.0, lines.append, now=201.0, dump=dump) == [
        "ckrc"]
    assert len(dumps) == 3


@pytest.mark.skipif(not (shutil.which("py-spy") or shutil.which("gdb")),
                    reason="neither py-spy nor gdb installed")
def test_native_stacks_of_a_live_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import time
        time.sleep(0.5)
        text = stalls.native_stacks(child.pid)
    finally:
        child.kill()
        child.wait()
    assert "sleep" in text, text

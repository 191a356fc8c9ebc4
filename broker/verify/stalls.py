"""Readers stuck inside a client library: found while the run goes on, and their native
stacks written to the run directory.

A reader thread comes back from ``poll`` at least every half second (its timeout), so one
that has not come back for ``STALL_SECONDS`` is blocked inside the library. That happened
once to a librdkafka read_committed reader in a 10-minute transactional run (see "What the
runs found" in docs/reliability.md), and without a stack nobody could tell where: now the
first such stall of a reader is logged and the stacks of every thread of this process,
native frames included, are saved (py-spy when installed, else gdb; neither: only the log
line). The check is the runner's, once a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

STALL_SECONDS = 30.0


class Beating(Protocol):
    name: str
    last_beat: float
    stall_reported: bool


def native_stacks(pid: int, timeout: float = 60.0) -> str:
    """Every thread's stack of process ``pid``, native frames included, or why not."""
    if shutil.which("py-spy"):
        argv = ["py-spy", "dump", "--native", "--pid", str(pid)]
    elif shutil.which("gdb"):
        argv = ["gdb", "-batch", "-nx", "-p", str(pid), "-ex", "thread apply all bt"]
    else:
        return "neither py-spy nor gdb is installed: no stacks"
    try:
        # The process is this one: the tool stops it while it reads, this thread waits.
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{argv[0]} failed: {e}"
    return f"$ {' '.join(argv)}  (exit {done.returncode})\n{done.stdout}\n{done.stderr}"


def check(readers: Iterable[Beating], run_dir: Path, run_time: float,
          log: Callable[[str], None], *, now: float | None = None,
          dump: Callable[[int], str] = native_stacks) -> list[str]:
    """Report each reader newly stuck for ``STALL_SECONDS``; returns their names."""
    now = time.monotonic() if now is None else now
    stuck = [r for r in readers
             if not r.stall_reported and now - r.last_beat >= STALL_SECONDS]
    if not stuck:
        return []
    path = run_dir / f"stall-{run_time:.0f}s.txt"
    for r in stuck:
        r.stall_reported = True
    names = ", ".join(r.name for r in stuck)
    path.write_text(f"readers inside poll() for {STALL_SECONDS:.0f} s or more at "
                    f"t={run_time:.1f}s: {names}\n\n{dump(os.getpid())}")
    log(f"[{run_time:7.1f}s] reader {names} has been inside poll() for "
        f"{STALL_SECONDS:.0f}s: stacks in {path}")
    return [r.name for r in stuck]

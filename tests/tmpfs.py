"""A small tmpfs for disk-full tests (needs root: skipped by hand without it, fails in CI)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.requirements import require


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(mountpoint)], capture_output=True, text=True)
    if proc.returncode != 0:
        require(False, f"cannot mount a {size} tmpfs (needs root): {proc.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)

"""A user's environment for the plugin's tests: Odradek installed from its wheel, with the
``testing`` extra and the client libraries docs/testing.md shows, in a virtual environment
of its own (nothing from this checkout or its dev venv on the path).

Creating it downloads and installs a few dozen packages, so it is cached per dependency set
(under ``$XDG_CACHE_HOME/odradek``, default ~/.cache/odradek); the wheel itself is built from
the current sources and reinstalled on every run. ``python -m tests.plugin.userenv`` prepares
it ahead of a test run and prints its path.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("broker", "controller", "storage")
# What the examples import, beside odradek[testing]; versions as in the dev environment's
# lower bounds. pytest-xdist: one example run uses -n 2.
CLIENTS = ("kafka-python>=3.0,<4", "confluent-kafka>=2.3", "aiokafka>=0.11",
           "faststream[kafka]>=0.5", "pytest-xdist>=3.5")


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "odradek"


def build_wheel(out: Path) -> Path:
    """The wheel of the current sources, built from a copy (setuptools writes build/ and
    *.egg-info next to the sources)."""
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = out / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(src)], check=True, capture_output=True)
    (wheel,) = dist.glob("odradek-*.whl")
    return wheel


def _key() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {"deps": project["dependencies"],
            "testing": project["optional-dependencies"]["testing"],
            "clients": CLIENTS, "python": sys.version_info[:2]}
    return hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:12]


def user_venv(work: Path) -> Path:
    """A virtual environment with this checkout's wheel installed (and ``[testing]`` plus
    the clients); returns its directory."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"plugin-venv-{_key()}"
    wheel = build_wheel(work)
    with open(root / "plugin-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once: one builds, one waits
        python = venv / "bin" / "python"
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            _pip(python, "install", "-q", "--upgrade", "pip")
            _pip(python, "install", "-q", f"{wheel}[testing]", *CLIENTS)
            (venv / ".complete").write_text(str(wheel.name))
        else:
            _pip(python, "install", "-q", "--no-deps", "--force-reinstall", str(wheel))
    return venv


def _pip(python: Path, *args: str) -> None:
    proc = subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(user_venv(Path(tmp)))

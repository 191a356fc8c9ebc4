"""Odradek installs as one import package, ``odradek``: the repository's folders broker/,
controller/ and storage/ are mapped to odradek.broker, odradek.controller and
odradek.storage (pyproject.toml), so generic names like ``storage`` never land in a user's
environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
FOLDERS = ("broker", "controller", "storage")
# Installed under a name of its own: users' tests import odradek.testing (the pytest plugin).
MAPPED = {"broker/testing": "odradek.testing"}


def _package_name(folder: Path) -> str:
    rel = str(folder.relative_to(REPO))
    for path, name in MAPPED.items():
        if rel == path or rel.startswith(path + "/"):
            return name + rel[len(path):].replace("/", ".")
    return "odradek." + rel.replace("/", ".")


def test_every_package_folder_is_listed() -> None:
    """pyproject lists packages explicitly (setuptools cannot discover under a prefix)."""
    found = sorted(_package_name(p.parent)
                   for folder in FOLDERS for p in (REPO / folder).rglob("__init__.py"))
    assert sorted(PYPROJECT["tool"]["setuptools"]["packages"]) == found
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {
        **{f"odradek.{f}": f for f in FOLDERS}, **{n: p for p, n in MAPPED.items()}}


def test_pytest_plugin_entry_point() -> None:
    """``pip install 'odradek[testing]'`` makes pytest load the plugin (docs/testing.md)."""
    assert PYPROJECT["project"]["entry-points"]["pytest11"] == {
        "odradek": "odradek.testing.plugin"}
    assert any(r.startswith("pytest") for r in
               PYPROJECT["project"]["optional-dependencies"]["testing"])


def test_wheel_adds_only_odradek(tmp_path: Path) -> None:
    """Build the wheel, install it into a fresh virtual environment, and see what it adds:
    ``odradek`` and its dist-info, nothing else; the installed CLI and node code import from
    the wheel, not from this checkout."""
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(src)], check=True, capture_output=True)
    (wheel,) = dist.glob("odradek-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"odradek"}, tops
    # broker/testing/ is packaged once, as odradek.testing, not also as odradek.broker.testing.
    assert "odradek/testing/plugin.py" in names, names
    assert not [n for n in names if n.startswith("odradek/broker/testing/")]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    before = set(p.name for p in site.iterdir())
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    added = {p.name for p in site.iterdir()} - before
    assert {a for a in added if not a.endswith(".dist-info")} == {"odradek"}, added
    # Dependencies come from this test's environment (appended after the venv's own site).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run(
        [python, "-c", "import odradek.broker.node, odradek.controller.raft, odradek.storage;"
         " print(odradek.broker.node.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path)
    assert probe.stdout.startswith(str(site)), probe.stdout
    cli = subprocess.run([venv / "bin" / "odradek", "--help"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert cli.returncode == 0 and "cluster" in cli.stdout, cli.stderr

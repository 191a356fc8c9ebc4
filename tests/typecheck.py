"""Type-check the product with mypy under its installed names (``make test`` runs this).

The repository keeps broker/, controller/ and storage/ at its top; installed, they are
odradek.broker, odradek.controller and odradek.storage (pyproject.toml's package-dir). mypy
cannot follow setuptools' editable import hook, so this builds the installed layout out of
symbolic links in a scratch directory and checks the packages there, with the settings in
pyproject.toml's [tool.mypy].
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("broker", "controller", "storage")
# Installed under its own name (odradek.testing) though it lives in broker/testing/.
MAPPED = {"testing": "broker/testing"}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="odradek-typecheck-") as tmp:
        root = Path(tmp) / "odradek"
        root.mkdir()
        mapped = {str(REPO / path) for path in MAPPED.values()}
        for name in PACKAGES:
            # A folder that is installed under another name is left out of its parent:
            # mypy refuses a file found under two module names.
            if any(m.startswith(str(REPO / name) + "/") for m in mapped):
                (root / name).mkdir()
                for child in (REPO / name).iterdir():
                    if str(child) not in mapped:
                        (root / name / child.name).symlink_to(child)
            else:
                (root / name).symlink_to(REPO / name)
        for name, path in MAPPED.items():
            (root / name).symlink_to(REPO / path)
        args = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                "--cache-dir", str(REPO / ".mypy_cache")]
        for name in (*PACKAGES, *MAPPED):
            args += ["-p", f"odradek.{name}"]
        proc = subprocess.run(args, cwd=tmp, env={"MYPYPATH": tmp, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True)
        # Report paths as the repository's, not the scratch directory's.
        out = proc.stdout.replace("odradek/", "")
        sys.stdout.write(out)
        sys.stderr.write(proc.stderr)
        return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

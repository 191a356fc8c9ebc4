"""``odradek verify`` as a command: the harness and its client libraries load only when it
runs, its fault kinds are the harness's, and a missing ``verify`` extra is reported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from odradek.broker.cli import verify as verify_command
from odradek.broker.cli.main import main as odradek
from odradek.broker.verify import faults, runner


def test_other_commands_never_load_the_harness_or_its_libraries() -> None:
    probe = ("import sys\n"
             "from odradek.broker.cli.main import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('odradek.broker.verify', 'confluent_kafka', 'matplotlib')\n"
             "         if m in sys.modules]\n"
             "print('loaded:' + ','.join(heavy))\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=60, check=True)
    assert r.stdout.splitlines()[-1] == "loaded:", r.stdout


def test_fault_kinds_match_the_harness() -> None:
    assert verify_command.KINDS == faults.ALL_KINDS


def test_a_missing_extra_is_a_setup_error(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(runner.EXTRA_MODULES, "odradek_no_such_module", "no-such-package")
    assert odradek(["verify", "--duration", "1", "--no-netns"]) == 2
    err = capsys.readouterr().err
    assert "no-such-package not installed" in err and "pip install 'odradek[verify]'" in err

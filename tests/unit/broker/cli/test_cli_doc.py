"""docs/cli.md names every option of every command (the doc must match the CLI)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from odradek.broker.cli.main import build_parser

DOC = (Path(__file__).resolve().parents[4] / "docs" / "cli.md").read_text()


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*path, name))
    return found


def test_every_option_of_the_admin_commands_is_documented() -> None:
    missing = []
    for path, parser in _commands(build_parser()):
        if path[:1] not in (("topics",), ("produce",), ("consume",), ("groups",),
                            ("transactions",), ("cluster",), ("node",), ("healthcheck",), ("console",),
                            ("users",), ("acls",), ("quotas",), ("quorum",)):
            continue
        for action in parser._actions:
            for opt in action.option_strings:
                if (opt.startswith("--") and opt != "--help"
                        and not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", DOC)):
                    missing.append(f"odradek {' '.join(path)} {opt}")
    assert not missing, "docs/cli.md does not mention:\n" + "\n".join(missing)

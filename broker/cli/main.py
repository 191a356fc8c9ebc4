"""``odradek`` command line: run nodes and local clusters."""

from __future__ import annotations

import argparse
import sys

from odradek.broker.cli import (
    acls,
    cluster,
    console,
    consume,
    groups,
    healthcheck,
    node,
    produce,
    quorum,
    quotas,
    status,
    topics,
    transactions,
    users,
    verify,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odradek", description="Odradek: a Kafka-compatible event streaming cluster.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    node.add_parser(sub)
    cluster.add_parser(sub)
    status.add_parser(_subparsers_of(sub.choices["cluster"]))
    topics.add_parser(sub)
    produce.add_parser(sub)
    consume.add_parser(sub)
    groups.add_parser(sub)
    transactions.add_parser(sub)
    users.add_parser(sub)
    acls.add_parser(sub)
    quotas.add_parser(sub)
    quorum.add_parser(sub)
    verify.add_parser(sub)
    healthcheck.add_parser(sub)
    console.add_parser(sub)
    cfg = sub.add_parser("config", help="configuration reference")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    docs = cfg_sub.add_parser("docs", help="print docs/configuration.md (generated)")
    docs.set_defaults(func=_config_docs)
    defaults = cfg_sub.add_parser("defaults", help="every key's default, as JSON")
    defaults.set_defaults(func=_config_defaults)
    check = cfg_sub.add_parser("check", help="validate a node configuration file")
    check.add_argument("file")
    check.set_defaults(func=_config_check)
    return parser


def _subparsers_of(
        parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"{parser.prog} has no subcommands")


def _config_docs(args: argparse.Namespace) -> int:
    from odradek.broker.config import config_docs

    sys.stdout.write(config_docs())
    return 0


def _config_defaults(args: argparse.Namespace) -> int:
    import json

    from odradek.broker.config import KEYS

    print(json.dumps({k.name: k.default for k in KEYS}, indent=2, default=str))
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from odradek.broker.config import ConfigError, load_config

    try:
        load_config(Path(args.file))
    except ConfigError as e:
        print(f"odradek: invalid configuration: {e}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

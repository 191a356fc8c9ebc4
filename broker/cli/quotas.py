"""``odradek quotas set|delete|list``: client quotas in the cluster metadata (KIP-546), what
``kafka-configs.sh --entity-type users|clients|ips --alter --add-config producer_byte_rate=...``
and ``--describe`` do for them.

An entity is a user, a client id, or both (``--user alice --client-id app``), or an address
(``--ip 10.0.0.7``, for connection_creation_rate, KIP-612); ``<default>`` names the default
entity of its type, as in Kafka's tools.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from odradek.broker.cli.common import (
    CliError,
    common_options,
    guard,
    parse_kv,
    print_json,
    server_error,
    table,
)
from odradek.broker.cli.raw_requests import RETRIABLE_CODES, request

DESCRIBE, ALTER = 48, 49
KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage",
        "controller_mutation_rate")
IP_KEYS = ("connection_creation_rate",)
DEFAULT = "<default>"
# DescribeClientQuotas match types.
EXACT, DEFAULT_MATCH, ANY = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Quota:
    user: str | None
    client_id: str | None
    ip: str | None
    values: dict[str, float]


def _named(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [(kind, name) for kind, name in (("user", args.user), ("client-id", args.client_id),
                                            ("ip", args.ip)) if name is not None]


def _entity(args: argparse.Namespace) -> list[dict[str, Any]]:
    entity = [{"entity_type": kind, "entity_name": None if name == DEFAULT else name}
              for kind, name in _named(args)]
    if not entity:
        raise CliError("name the entity: --user NAME and/or --client-id ID, or --ip ADDRESS "
                       "(<default> for the default one)")
    return entity


def _keys(args: argparse.Namespace) -> tuple[str, ...]:
    return IP_KEYS if args.ip is not None else KEYS


def _alter(args: argparse.Namespace, ops: list[dict[str, Any]]) -> None:
    def retriable(response: Any) -> bool:
        return any(e.error_code in RETRIABLE_CODES for e in response.entries)

    response = request(args, ALTER, 1, {"validate_only": False, "entries": [
        {"entity": _entity(args), "ops": ops}]}, retriable)
    for e in response.entries:
        if e.error_code:
            raise server_error("cannot change the quota", e.error_code, e.error_message)


@guard
def quotas_set(args: argparse.Namespace) -> int:
    values = parse_kv(args.config, "--config")
    ops = []
    keys = _keys(args)
    for key, text in values.items():
        if key not in keys:
            raise CliError(f"--config: {key} is not a quota of this entity (one of "
                           f"{', '.join(keys)})")
        try:
            ops.append({"key": key, "value": float(text), "remove": False})
        except ValueError:
            raise CliError(f"--config: {key}={text!r} is not a number") from None
    if not ops:
        raise CliError("give at least one --config KEY=VALUE")
    _alter(args, ops)
    if args.json:
        print_json({"set": values})
    else:
        print(f"quota of {_shown(args)} set: "
              + ", ".join(f"{k}={v}" for k, v in values.items()))
    return 0


@guard
def quotas_delete(args: argparse.Namespace) -> int:
    keys = args.key or list(_keys(args))
    _alter(args, [{"key": k, "value": 0.0, "remove": True} for k in keys])
    if args.json:
        print_json({"deleted": keys})
    else:
        print(f"quota(s) {', '.join(keys)} of {_shown(args)} removed")
    return 0


def _shown(args: argparse.Namespace) -> str:
    shown = {"user": "user", "client-id": "client id", "ip": "address"}
    return " and ".join(f"{shown[kind]} {name}" for kind, name in _named(args))


@guard
def quotas_list(args: argparse.Namespace) -> int:
    components = []
    for kind, name in _named(args):
        if name == DEFAULT:
            components.append({"entity_type": kind, "match_type": DEFAULT_MATCH, "match": None})
        elif name is not None:
            components.append({"entity_type": kind, "match_type": EXACT, "match": name})
    response = request(args, DESCRIBE, 1, {"strict": False, "components": components})
    if response.error_code:
        raise server_error("cannot list quotas", response.error_code, response.error_message)
    quotas = []
    for entry in response.entries:
        names = {e.entity_type: DEFAULT if e.entity_name is None else e.entity_name
                 for e in entry.entity}
        quotas.append(Quota(names.get("user"), names.get("client-id"), names.get("ip"),
                            {v.key: v.value for v in entry.values}))
    quotas.sort(key=lambda q: (q.user or "", q.client_id or "", q.ip or ""))
    if args.json:
        print_json(quotas)
    else:
        table(["USER", "CLIENT-ID", "IP", "QUOTAS"],
              [[q.user or "", q.client_id or "", q.ip or "",
                ", ".join(f"{k}={v:g}" for k, v in sorted(q.values.items()))] for q in quotas])
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``quotas`` and its actions."""
    common = common_options()
    quotas = sub.add_parser("quotas", help="client quotas (byte rates, request and "
                                           "partition-mutation rates)")
    qsub = quotas.add_subparsers(dest="quotas_command", required=True, metavar="ACTION")

    def entity_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--user", help="the user (principal name), or <default>")
        p.add_argument("--client-id", help="the client id, or <default>")
        p.add_argument("--ip", help="an IP address (connection_creation_rate), or <default>")

    p = qsub.add_parser("set", parents=[common], help="set quotas of a user and/or client id")
    entity_options(p)
    p.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help=f"a quota; repeatable; keys: {', '.join(KEYS)} (user, client id); "
                        f"{', '.join(IP_KEYS)} (ip)")
    p.set_defaults(func=quotas_set)
    p = qsub.add_parser("delete", parents=[common], help="remove quotas of an entity")
    entity_options(p)
    p.add_argument("--key", action="append", choices=KEYS + IP_KEYS,
                   help="only this quota; repeatable (default: all of them)")
    p.set_defaults(func=quotas_delete)
    p = qsub.add_parser("list", parents=[common],
                        help="quotas, of every entity or those matching --user/--client-id")
    entity_options(p)
    p.set_defaults(func=quotas_list)

"""``odradek users add|delete|list``: SCRAM users in the cluster metadata (KIP-554), what
``kafka-configs.sh --entity-type users --alter --add-config 'SCRAM-SHA-256=[...]'`` and
``kafka-configs.sh --describe`` do for them.

The password never leaves this process: ``add`` salts it with fresh random bytes and hashes
it (SaltedPassword, RFC 5802) here, and sends that, as Kafka's admin client does; brokers
then check SASL/SCRAM logins against keys the controller derived from it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass
from typing import Any

from odradek.broker.cli.common import (
    CliError,
    common_options,
    guard,
    print_json,
    server_error,
    table,
)
from odradek.broker.cli.raw_requests import RETRIABLE_CODES, request
from odradek.controller.metadata.scram import (
    MAX_ITERATIONS,
    MECHANISM_CODES,
    MECHANISM_NAMES,
    MIN_ITERATIONS,
    salted_password,
)

DESCRIBE, ALTER = 50, 51
RESOURCE_NOT_FOUND = 91
# A fresh salt per credential, as long as SHA-256's output: two users with one password
# still get unrelated keys.
SALT_BYTES = 32


@dataclass(frozen=True, slots=True)
class Credential:
    user: str
    mechanism: str
    iterations: int


def describe(args: argparse.Namespace, users: list[str] | None) -> list[Credential]:
    """The credentials of ``users`` (None: every user); a named user without any is an
    error."""
    response = request(args, DESCRIBE, 0, {
        "users": None if users is None else [{"name": u} for u in users]})
    if response.error_code:
        raise server_error("cannot list SCRAM users", response.error_code,
                           response.error_message)
    out: list[Credential] = []
    for r in response.results:
        if r.error_code:
            raise server_error(f"user {r.user!r}", r.error_code, r.error_message)
        out.extend(Credential(r.user, MECHANISM_NAMES.get(int(c.mechanism), str(c.mechanism)),
                              int(c.iterations)) for c in r.credential_infos)
    return sorted(out, key=lambda c: (c.user, c.mechanism))


def alter(args: argparse.Namespace, deletions: list[dict[str, Any]],
          upsertions: list[dict[str, Any]], *, missing_ok: bool = False) -> None:
    def retriable(response: Any) -> bool:
        return any(r.error_code in RETRIABLE_CODES for r in response.results)

    response = request(args, ALTER, 0, {"deletions": deletions, "upsertions": upsertions},
                       retriable)
    for r in response.results:
        if r.error_code and not (missing_ok and r.error_code == RESOURCE_NOT_FOUND):
            raise server_error(f"user {r.user!r}", r.error_code, r.error_message)


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != first:
            raise CliError("the two passwords differ")
        return first
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise CliError("no password: give --password, or one line on standard input")
    return line


@guard
def users_add(args: argparse.Namespace) -> int:
    if not MIN_ITERATIONS <= args.iterations <= MAX_ITERATIONS:
        raise CliError(f"--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    password = _password(args)
    salt = os.urandom(SALT_BYTES)
    alter(args, [], [{"name": args.user, "mechanism": MECHANISM_CODES[args.mechanism],
                      "iterations": args.iterations, "salt": salt,
                      "salted_password": salted_password(args.mechanism, password, salt,
                                                         args.iterations)}])
    result = Credential(args.user, args.mechanism, args.iterations)
    if args.json:
        print_json({"added": result})
    else:
        print(f"{args.mechanism} credential of user {args.user!r} set "
              f"({args.iterations} iterations)")
    return 0


@guard
def users_delete(args: argparse.Namespace) -> int:
    if args.mechanism is not None:
        mechanisms = [args.mechanism]
    else:
        mechanisms = [c.mechanism for c in describe(args, [args.user])]
    # One request per mechanism: Kafka refuses a user named twice in one request. A
    # credential listed by a broker whose image lags may be gone already: that is no error
    # when every credential was asked for.
    for mechanism in mechanisms:
        alter(args, [{"name": args.user, "mechanism": MECHANISM_CODES[mechanism]}], [],
              missing_ok=args.mechanism is None)
    if args.json:
        print_json({"user": args.user, "deleted": mechanisms})
    else:
        print(f"deleted the {', '.join(mechanisms)} credential(s) of user {args.user!r}")
    return 0


@guard
def users_list(args: argparse.Namespace) -> int:
    credentials = describe(args, args.user or None)
    if args.json:
        print_json(credentials)
    else:
        table(["USER", "MECHANISM", "ITERATIONS"],
              [[c.user, c.mechanism, c.iterations] for c in credentials])
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``users`` and its actions."""
    common = common_options()
    users = sub.add_parser("users", help="SCRAM users (SASL/SCRAM-SHA-256 and -512 logins)")
    usub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    mechanisms = sorted(MECHANISM_CODES)
    p = usub.add_parser("add", parents=[common],
                        help="set a user's SCRAM credential (create or change the password)")
    p.add_argument("--user", required=True)
    p.add_argument("--password",
                   help="the password (default: asked for on a terminal, else one line of "
                        "standard input; a password on the command line shows in `ps`)")
    p.add_argument("--mechanism", choices=mechanisms, default="SCRAM-SHA-256",
                   help="SASL mechanism the credential is for (default SCRAM-SHA-256)")
    p.add_argument("--iterations", type=int, default=MIN_ITERATIONS,
                   help=f"PBKDF2 iterations, {MIN_ITERATIONS}-{MAX_ITERATIONS} "
                        f"(default {MIN_ITERATIONS})")
    p.set_defaults(func=users_add)
    p = usub.add_parser("delete", parents=[common], help="delete a user's SCRAM credential(s)")
    p.add_argument("--user", required=True)
    p.add_argument("--mechanism", choices=mechanisms,
                   help="only this mechanism's credential (default: every one the user has)")
    p.set_defaults(func=users_delete)
    p = usub.add_parser("list", parents=[common],
                        help="users with SCRAM credentials, their mechanisms and iterations")
    p.add_argument("--user", action="append", metavar="USER",
                   help="only this user; repeatable (default: every user)")
    p.set_defaults(func=users_list)

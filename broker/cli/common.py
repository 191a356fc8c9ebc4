"""What the admin commands (``odradek topics|produce|consume|groups|cluster status``) share.

They speak the Kafka protocol (through kafka-python), so they work against any Kafka cluster.
Human-readable tables by default, ``--json`` for machine-readable output; errors print one line
to stderr and exit non-zero. Here: the ``--bootstrap``/``--json`` options, the one-line error
guard, the reachability check, the progress line, the admin client, and table/JSON output.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

Command = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """An error worth one clear line on stderr."""


def common_options() -> argparse.ArgumentParser:
    """The options every admin command takes (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--bootstrap", default="127.0.0.1:9092",
                   help="Kafka bootstrap servers, host:port[,host:port] (default 127.0.0.1:9092)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    return p


def guard(func: Command) -> Command:
    """Turn any failure of the command into one line on stderr and a non-zero exit."""
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CliError as e:
            print(f"odradek: error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except Exception as e:  # noqa: BLE001 - any client failure becomes one line
            msg = str(e) or type(e).__name__
            print(f"odradek: error: {type(e).__name__}: {msg}", file=sys.stderr)
            return 1
    return run


def parse_kv(items: list[str] | None, what: str) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; ``what`` names the option in the error."""
    out: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise CliError(f"{what} must look like key=value, got {item!r}")
        out[k] = v
    return out


def servers(args: argparse.Namespace) -> list[str]:
    return [s.strip() for s in args.bootstrap.split(",") if s.strip()]


def check_reachable(args: argparse.Namespace, timeout: float = 3.0) -> None:
    """Fail in seconds, with a hint, when no bootstrap server accepts a connection (the
    Kafka client would retry for its whole bootstrap timeout first)."""
    errors = []
    for server in servers(args):
        host, sep, port = server.rpartition(":")
        if not sep or not port.isdigit():
            raise CliError(f"--bootstrap: {server!r} is not host:port")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except OSError as e:
            errors.append(f"{server}: {e.strerror or e}")
    raise CliError(f"cannot reach any bootstrap server ({'; '.join(errors)}); is the cluster "
                   "running? `odradek cluster up` starts a local one")


class Progress:
    """One self-overwriting status line on stderr for long work (a terminal only, unless
    --progress asks for it), at most a few updates a second."""

    def __init__(self, args: argparse.Namespace, what: str) -> None:
        self.enabled = bool(getattr(args, "progress", False)) or sys.stderr.isatty()
        self.what = what
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, count: int, extra: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.2):
            return
        self.last = now
        rate = count / max(now - self.started, 1e-9)
        sys.stderr.write(f"\r{self.what} {count} record(s) ({rate:,.0f}/s){extra}\033[K")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def admin_client(args: argparse.Namespace) -> KafkaAdminClient:
    """A kafka-python admin client on ``--bootstrap`` (the caller closes it)."""
    from kafka.admin import KafkaAdminClient

    check_reachable(args)
    try:
        return KafkaAdminClient(bootstrap_servers=servers(args), client_id="odradek-cli",
                                request_timeout_ms=15000)
    except Exception as e:
        raise CliError(f"cannot connect to {args.bootstrap}: {e}") from e


def _plain(o: object) -> object:
    # Our views are dataclasses; anything else a client library hands back (a topic id's
    # UUID, say) is shown as its string.
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    return str(o)


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=_plain))


def table(headers: list[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def error_name(code: int) -> str:
    """The Kafka error's class name for an error code, e.g. ``UnknownTopicOrPartitionError``."""
    from kafka.errors import for_code

    return str(for_code(code).__name__)

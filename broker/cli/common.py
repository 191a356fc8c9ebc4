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
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

Command = Callable[[argparse.Namespace], int]
T = TypeVar("T")

# How long a command keeps retrying errors the server calls retriable (a coordinator still
# loading, a leader being elected) before it gives up with the last one.
RETRY_TIMEOUT_S = 15.0


class CliError(Exception):
    """An error worth one clear line on stderr."""


class RetriableError(CliError):
    """A server error worth asking again for (``retry`` does, within its timeout)."""


# What to do about the server errors users meet most; the server's own message says what.
_HINTS = {
    "TopicAlreadyExistsError": "`odradek topics describe` shows it, `odradek topics alter` "
                               "changes it",
    "InvalidTopicError": "topic names use ASCII letters, digits, '.', '_' and '-' (at most "
                         "249 characters)",
    "InvalidPartitionsError": "a topic has at least one partition, and its count can only "
                              "grow",
    "InvalidReplicationFactorError": "give at most as many replicas as there are live brokers "
                                     "(`odradek cluster status`), or leave "
                                     "--replication-factor out for the cluster's default",
    "InvalidConfigurationError": "`odradek config docs` lists the topic configs and their "
                                 "values",
    "InvalidRequestError": "check the command's options (`--help`)",
    "UnknownTopicOrPartitionError": "`odradek topics list` shows the topics",
    "PolicyViolationError": "the cluster's policy refused it",
    "GroupIdNotFoundError": "`odradek groups list` shows the groups",
    "NonEmptyGroupError": "stop the group's consumers first",
    "TopicAuthorizationFailedError": "the principal lacks the ACL for it",
    "ClusterAuthorizationFailedError": "the principal lacks the ACL for it",
}


def server_error(what: str, code: int, message: str | None = None) -> CliError:
    """One line for a Kafka error code a server answered: what failed, the error's name and
    the server's message, and what to do. A retriable error is a RetriableError."""
    from kafka.errors import for_code

    cls = for_code(code)
    name = cls.__name__
    text = f"{what}: {name.removesuffix('Error')}"
    detail = message or (getattr(cls, "description", "") or "")
    if detail:
        text += f": {detail.rstrip('.')}"
    hint = _HINTS.get(name)
    if hint:
        text += f"; {hint}"
    return (RetriableError if getattr(cls, "retriable", False) else CliError)(text)


def check_code(what: str, code: int | None, message: str | None = None) -> None:
    if code:
        raise server_error(what, code, message)


_ERROR_MESSAGE = re.compile(r"""error_message=(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")""")
_ERROR_CODE = re.compile(r"\[Error (-?\d+)\]")


def describe_exception(e: BaseException) -> str:
    """A client library's exception as one line: kafka-python's errors carry the whole
    request and response in their text; keep the error's name and the server's message."""
    from kafka.errors import KafkaError

    text = str(e) or type(e).__name__
    if isinstance(e, KafkaError):
        code = getattr(e, "errno", None)
        m = _ERROR_MESSAGE.search(text)
        message = (m.group(1) or m.group(2)) if m else None
        if code is not None and (message or len(text) > 200):
            return str(server_error("the server refused the request", int(code), message))
        if len(text) > 300:
            return f"{type(e).__name__}: {getattr(e, 'description', '') or text[:200]}"
    name = type(e).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def error_code_in(text: str | None) -> int | None:
    """The Kafka error code in a kafka-python error string (``[Error 15] ...``)."""
    m = _ERROR_CODE.search(text or "")
    return int(m.group(1)) if m else None


def check_result_string(what: str, result: object) -> None:
    """kafka-python answers some calls per resource with ``'OK'`` or an error string
    (``[Error 40] InvalidConfigurationError: ...``): raise the error as one line."""
    if result is None or result == "OK" or getattr(result, "errno", None) == 0:
        return
    text = result if isinstance(result, str) else str(result)
    code = error_code_in(text)
    if code is None:
        raise CliError(f"{what}: {text}")
    _, _, message = text.partition(": ")
    raise server_error(what, code, message or None)


def retry(func: Callable[[], T], timeout: float = RETRY_TIMEOUT_S) -> T:
    """``func()``, asked again while it fails with a retriable error (a RetriableError or
    a retriable Kafka error), until ``timeout``; then the last error is raised."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            return func()
        except (RetriableError, KafkaError) as e:
            if not (isinstance(e, RetriableError) or getattr(e, "retriable", False)):
                raise
            if time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def common_options() -> argparse.ArgumentParser:
    """The options every admin command takes (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--bootstrap", default="127.0.0.1:9092",
                   help="Kafka bootstrap servers, host:port[,host:port] (default 127.0.0.1:9092)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    p.add_argument("--command-config", metavar="FILE",
                   help="Kafka client properties for a secured cluster (security.protocol, "
                        "sasl.mechanism, sasl.jaas.config, ssl.truststore.location, "
                        "ssl.keystore.location; PEM), as Kafka's tools take them")
    return p


def security_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """kafka-python's connection settings for --command-config (none without it)."""
    from odradek.broker.cli import client_config

    config = client_config.of(args)
    return config.kafka_python() if config.protocol != "PLAINTEXT" else {}


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
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as Unix tools do. Python would
            # complain again when it flushes stdout at exit, so stdout goes nowhere now.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except Exception as e:  # noqa: BLE001 - any client failure becomes one line
            print(f"odradek: error: {describe_exception(e)}", file=sys.stderr)
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


def console_properties(props: dict[str, str], flags: set[str], texts: set[str],
                       text: Callable[[str, str], str]) -> dict[str, object]:
    """``--property KEY=VALUE`` as kafka-console-producer/-consumer take them: ``flags``
    are true or false, ``texts`` go through ``text(key, value)``, other keys are refused.
    The keys come back as field names (``print.key`` -> ``print_key``)."""
    unknown = sorted(set(props) - flags - texts)
    if unknown:
        raise CliError(f"--property: unknown {', '.join(unknown)}; known: "
                       f"{', '.join(sorted(flags | texts))}")
    values: dict[str, object] = {}
    for k, v in props.items():
        if k in flags:
            if v.lower() not in ("true", "false"):
                raise CliError(f"--property {k}: true or false, got {v!r}")
            values[k.replace(".", "_")] = v.lower() == "true"
        else:
            values[k.replace(".", "_")] = text(k, v)
    return values


def parse_time(text: str, what: str) -> int:
    """A point in time as milliseconds since the epoch: a number of milliseconds, or an
    ISO 8601 date and time (``2026-12-06T10:00:00``, ``...Z``, ``...+01:00``; without a
    zone the machine's local time, as Kafka's tools read it)."""
    import datetime

    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00")
                                               if text.endswith("Z") else text)
    except ValueError:
        raise CliError(f"{what}: {text!r} is neither milliseconds since the epoch nor an ISO "
                       "date and time such as 2026-12-06T10:00:00") from None
    return int(when.timestamp() * 1000)


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
                                request_timeout_ms=15000, **security_kwargs(args))
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

"""``odradek consume``: records to stdout, one per line (the value, or JSON with --json)."""

from __future__ import annotations

import argparse
import json
import sys

from odradek.broker.cli.common import (
    CliError,
    Progress,
    admin_client,
    check_reachable,
    common_options,
    guard,
    servers,
)
from odradek.broker.cli.topics import describe_topics


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", errors="replace")


@guard
def consume(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer, TopicPartition

    if (args.partition is None) != (args.offset is None):
        raise CliError("--partition and --offset go together")
    check_reachable(args)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=servers(args), group_id=args.group, client_id="odradek-cli",
            auto_offset_reset="earliest" if args.from_beginning else "latest",
            enable_auto_commit=False, consumer_timeout_ms=args.timeout_ms)
    except Exception as e:
        raise CliError(f"cannot connect to {args.bootstrap}: {e}") from e
    count = 0
    # Progress goes to stderr, so only when the records themselves are not on that terminal.
    progress = Progress(args, "consumed")
    progress.enabled = progress.enabled and not sys.stdout.isatty()
    try:
        if args.partition is not None:
            tp = TopicPartition(args.topic, args.partition)
            consumer.assign([tp])
            consumer.seek(tp, args.offset)
        else:
            admin = admin_client(args)
            try:
                describe_topics(admin, [args.topic])
            finally:
                admin.close()
            consumer.subscribe([args.topic])
        for msg in consumer:
            count += 1
            if args.json:
                print(json.dumps({"topic": msg.topic, "partition": msg.partition,
                                  "offset": msg.offset, "timestamp": msg.timestamp,
                                  "key": _text(msg.key), "value": _text(msg.value),
                                  "headers": {k: _text(v) for k, v in msg.headers or []}}),
                      flush=True)
            else:
                print(_text(msg.value), flush=True)
            progress.update(count)
            if args.max_messages is not None and count >= args.max_messages:
                break
        progress.update(count, force=True)
        if args.group and count:
            consumer.commit()
    finally:
        progress.done()
        consumer.close(autocommit=False)
    if not args.json:
        print(f"consumed {count} record(s)", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``consume``."""
    p = sub.add_parser("consume", parents=[common_options()], help="print records to stdout")
    p.add_argument("topic")
    p.add_argument("--group", help="consumer group (commits offsets when given)")
    p.add_argument("--from-beginning", action="store_true",
                   help="start at the earliest offset when there is no committed offset")
    p.add_argument("--partition", type=int, help="read one partition (with --offset)")
    p.add_argument("--offset", type=int, help="start offset (with --partition)")
    p.add_argument("--max-messages", type=int)
    p.add_argument("--timeout-ms", type=int, default=10000,
                   help="stop after this long without a record (default 10000)")
    p.add_argument("--progress", action="store_true",
                   help="show progress on stderr even when it is not a terminal")
    p.set_defaults(func=consume)

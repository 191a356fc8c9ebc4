"""``odradek produce``: stdin lines as records, one record per line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from odradek.broker.cli.common import (
    CliError,
    Progress,
    check_reachable,
    common_options,
    guard,
    parse_kv,
    print_json,
    servers,
)


@dataclass(frozen=True, slots=True)
class ProducedRecord:
    """Where an acknowledged record landed."""

    partition: int
    offset: int


@guard
def produce(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    headers = [(k, v.encode()) for k, v in parse_kv(args.header, "--header").items()]
    key = args.key.encode() if args.key is not None else None
    check_reachable(args)
    try:
        producer = KafkaProducer(bootstrap_servers=servers(args), acks=args.acks
                                 if args.acks == "all" else int(args.acks),
                                 client_id="odradek-cli")
    except Exception as e:
        raise CliError(f"cannot connect to {args.bootstrap}: {e}") from e
    results: list[ProducedRecord] = []
    progress = Progress(args, "produced")
    acked = 0

    def on_ack(_md: Any) -> None:
        nonlocal acked
        acked += 1

    try:
        futures = []
        for line in sys.stdin:
            value = line.rstrip("\n").encode()
            futures.append(producer.send(args.topic, value=value, key=key,
                                         headers=headers or None,
                                         partition=args.partition).add_callback(on_ack))
            progress.update(len(futures), f", {acked} acknowledged")
        producer.flush()
        for f in futures:
            md = f.get(timeout=30)
            results.append(ProducedRecord(md.partition, md.offset))
        progress.update(len(futures), f", {len(results)} acknowledged", force=True)
    finally:
        progress.done()
        producer.close()
    if args.json:
        print_json({"topic": args.topic, "produced": len(results), "records": results})
    else:
        print(f"produced {len(results)} record(s) to {args.topic}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``produce``."""
    p = sub.add_parser("produce", parents=[common_options()],
                       help="produce stdin lines as records")
    p.add_argument("topic")
    p.add_argument("--key", help="key for every record")
    p.add_argument("--header", action="append", metavar="KEY=VALUE", help="repeatable")
    p.add_argument("--partition", type=int, help="target partition (default: partitioner)")
    p.add_argument("--acks", default="all", choices=["0", "1", "all"])
    p.add_argument("--progress", action="store_true",
                   help="show progress on stderr even when it is not a terminal")
    p.set_defaults(func=produce)

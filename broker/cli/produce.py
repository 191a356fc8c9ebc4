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
    console_properties,
    guard,
    parse_kv,
    print_json,
    security_kwargs,
    servers,
)


@dataclass(frozen=True, slots=True)
class ProducedRecord:
    """Where an acknowledged record landed."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How a stdin line becomes a record: kafka-console-producer's reader properties.
    With parse.headers a line is ``h1:v1,h2:v2<TAB>key<TAB>value`` (headers, then the key
    with parse.key, then the value)."""

    parse_key: bool = False
    key_separator: str = "\t"
    parse_headers: bool = False
    headers_delimiter: str = "\t"
    headers_separator: str = ","
    headers_key_separator: str = ":"
    null_marker: str | None = None

    @staticmethod
    def of(props: dict[str, str]) -> LineFormat:
        def text(k: str, v: str) -> str:
            v = v.replace("\\t", "\t").replace("\\n", "\n")
            if not v and k != "null.marker":
                raise CliError(f"--property {k}: the separator cannot be empty")
            return v

        values = console_properties(
            props, {"parse.key", "parse.headers"},
            {"key.separator", "headers.delimiter", "headers.separator",
             "headers.key.separator", "null.marker"}, text)
        return LineFormat(**values)  # type: ignore[arg-type]

    def record(self, line: str, number: int
               ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
        """(key, value, headers) of one line; a CliError names the line when it lacks a
        separator it should have."""
        headers: list[tuple[str, bytes | None]] = []
        key: bytes | None = None
        rest = line
        if self.parse_headers:
            head, sep, rest = rest.partition(self.headers_delimiter)
            if not sep:
                raise CliError(f"line {number}: no headers delimiter "
                               f"{self.headers_delimiter!r} (parse.headers=true)")
            for item in head.split(self.headers_separator) if head else []:
                k, sep, v = item.partition(self.headers_key_separator)
                if not sep:
                    raise CliError(f"line {number}: header {item!r} has no "
                                   f"{self.headers_key_separator!r} between key and value")
                headers.append((k, self._bytes(v)))
        if self.parse_key:
            k, sep, rest = rest.partition(self.key_separator)
            if not sep:
                raise CliError(f"line {number}: no key separator {self.key_separator!r} "
                               "(parse.key=true)")
            key = self._bytes(k)
        return key, self._bytes(rest), headers

    def _bytes(self, text: str) -> bytes | None:
        return None if self.null_marker is not None and text == self.null_marker else (
            text.encode())


@guard
def produce(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    fixed_headers = [(k, v.encode()) for k, v in parse_kv(args.header, "--header").items()]
    fixed_key = args.key.encode() if args.key is not None else None
    fmt = LineFormat.of(parse_kv(args.property, "--property"))
    if fmt.parse_key and fixed_key is not None:
        raise CliError("--key and parse.key=true: give the key one way")
    check_reachable(args)
    try:
        producer = KafkaProducer(bootstrap_servers=servers(args), acks=args.acks
                                 if args.acks == "all" else int(args.acks),
                                 client_id="odradek-cli", **security_kwargs(args))
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
        for number, line in enumerate(sys.stdin, 1):
            key, value, headers = fmt.record(line.rstrip("\n"), number)
            headers = fixed_headers + headers
            futures.append(producer.send(args.topic, value=value,
                                         key=fixed_key if fixed_key is not None else key,
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
    p.add_argument("--property", action="append", metavar="KEY=VALUE",
                   help="line format, as kafka-console-producer's: parse.key=true with "
                        "key.separator (default tab), parse.headers=true with "
                        "headers.delimiter (default tab), headers.separator (default ,), "
                        "headers.key.separator (default :); null.marker (repeatable)")
    p.add_argument("--progress", action="store_true",
                   help="show progress on stderr even when it is not a terminal")
    p.set_defaults(func=produce)

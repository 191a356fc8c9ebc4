"""``odradek consume``: records to stdout, one per line (the value, or JSON with --json)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from odradek.broker.cli.common import (
    CliError,
    Progress,
    admin_client,
    check_reachable,
    common_options,
    console_properties,
    guard,
    parse_kv,
    parse_time,
    security_kwargs,
    servers,
)
from odradek.broker.cli.topics import describe_topics

# How long a group member may take to get its partitions before the command gives up (a
# rebalance waits for every member of the group; --timeout-ms counts only after it).
ASSIGNMENT_TIMEOUT_S = 60.0


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class Format:
    """What a record's line shows: kafka-console-consumer's formatter properties."""

    print_key: bool = False
    print_value: bool = True
    print_timestamp: bool = False
    print_partition: bool = False
    print_offset: bool = False
    print_headers: bool = False
    key_separator: str = "\t"
    headers_separator: str = ","
    headers_key_separator: str = ":"
    null_literal: str = "null"

    @staticmethod
    def of(props: dict[str, str]) -> Format:
        values = console_properties(
            props, {"print.key", "print.value", "print.timestamp", "print.partition",
                    "print.offset", "print.headers"},
            {"key.separator", "headers.separator", "headers.key.separator", "null.literal"},
            lambda _k, v: _unescape(v))
        return Format(**values)  # type: ignore[arg-type]

    def line(self, msg: Any) -> str:
        fields = []
        if self.print_timestamp:
            kind = "CreateTime" if getattr(msg, "timestamp_type", 0) == 0 else "LogAppendTime"
            fields.append(f"{kind}:{msg.timestamp}")
        if self.print_partition:
            fields.append(f"Partition:{msg.partition}")
        if self.print_offset:
            fields.append(f"Offset:{msg.offset}")
        if self.print_headers:
            headers = [f"{k}{self.headers_key_separator}{_text(v) or self.null_literal}"
                       for k, v in msg.headers or []]
            fields.append(self.headers_separator.join(headers) if headers else "NO_HEADERS")
        if self.print_key:
            fields.append(self._or_null(msg.key))
        if self.print_value:
            fields.append(self._or_null(msg.value))
        return self.key_separator.join(fields)

    def _or_null(self, b: bytes | None) -> str:
        return self.null_literal if b is None else b.decode("utf-8", errors="replace")


def _unescape(v: str) -> str:
    """Separators given on a command line: ``\\t``, ``\\n`` and ``\\\\`` as Kafka's tools
    read them."""
    return v.replace("\\t", "\t").replace("\\n", "\n").replace("\\\\", "\\")


def _json_line(msg: Any) -> str:
    return json.dumps({"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                       "timestamp": msg.timestamp, "key": _text(msg.key),
                       "value": _text(msg.value),
                       "headers": {k: _text(v) for k, v in msg.headers or []}})


def _seek_all(consumer: Any, tps: list[Any], args: argparse.Namespace,
              start_ms: int | None) -> None:
    """Position freshly assigned partitions where the options say."""
    if start_ms is not None:
        found = consumer.offsets_for_times({tp: start_ms for tp in tps})
        for tp in tps:
            at = found.get(tp)
            if at is None:  # nothing at or after that time: wait for new records
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, at.offset)
    elif args.offset is not None:
        for tp in tps:
            consumer.seek(tp, args.offset)


@guard
def consume(args: argparse.Namespace) -> int:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    if args.offset is not None and args.partition is None:
        raise CliError("--offset needs --partition")
    starts = [o for o, on in (("--from-beginning", args.from_beginning),
                              ("--offset", args.offset is not None),
                              ("--from-timestamp", args.from_timestamp is not None)) if on]
    if len(starts) > 1:
        raise CliError(f"{' and '.join(starts)}: give one starting point")
    start_ms = (parse_time(args.from_timestamp, "--from-timestamp")
                if args.from_timestamp is not None else None)
    fmt = Format.of(parse_kv(args.property, "--property"))
    check_reachable(args)
    admin = admin_client(args)
    try:
        partitions = sorted(p["partition_index"]
                            for p in describe_topics(admin, [args.topic])[0]["partitions"])
    finally:
        admin.close()
    if args.partition is not None and args.partition not in partitions:
        raise CliError(f"topic {args.topic!r} has no partition {args.partition} (it has "
                       f"{len(partitions)})")
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=servers(args), group_id=args.group, client_id="odradek-cli",
            auto_offset_reset="earliest" if args.from_beginning else "latest",
            enable_auto_commit=False, **security_kwargs(args))
    except Exception as e:
        raise CliError(f"cannot connect to {args.bootstrap}: {e}") from e

    # Partitions the group just assigned, to position by --from-timestamp after the poll
    # that assigned them (the client allows no requests inside its rebalance callback).
    to_seek: set[Any] = set()
    # Whether the group has given this member its share (which may be no partition at all,
    # when the group has more members than the topic has partitions).
    joined = False

    class Seek(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            to_seek.difference_update(revoked)

        def on_partitions_assigned(self, assigned: Any) -> None:
            nonlocal joined
            joined = True
            if start_ms is not None:
                to_seek.update(assigned)

    count = 0
    # Where to commit: past the last record written out, per partition.
    written: dict[Any, int] = {}
    # Progress goes to stderr, so only when the records themselves are not on that terminal.
    progress = Progress(args, "consumed")
    progress.enabled = progress.enabled and not sys.stdout.isatty()
    # SIGTERM ends a follow as Ctrl-C does: offsets committed, a clean exit.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    broken_pipe: BrokenPipeError | None = None
    try:
        if args.group is not None and args.partition is None:
            consumer.subscribe([args.topic], listener=Seek())
            # The topic's metadata before the group is joined: a member that joins before
            # its client knows the partitions of what it subscribed to rejoins once it
            # learns them, and kafka-python 3.0 can lose that second SyncGroup's answer when
            # a poll times out meanwhile (the member then never gets its partitions nor
            # heartbeats again).
            consumer.partitions_for_topic(args.topic)
        else:
            # No group (or one partition): read the partitions directly, no rebalance.
            tps = [TopicPartition(args.topic, p) for p in
                   ([args.partition] if args.partition is not None else partitions)]
            consumer.assign(tps)
            if start_ms is None and args.offset is None:
                if args.from_beginning:
                    consumer.seek_to_beginning(*tps)
                elif args.group is None:
                    consumer.seek_to_end(*tps)
            _seek_all(consumer, tps, args, start_ms)
        started = time.monotonic()
        # --timeout-ms is idle time once the consumer has its partitions (as in
        # kafka-console-consumer): a group's join does not eat it.
        idle_since: float | None = None
        done = False
        while not done:
            batch = consumer.poll(timeout_ms=200)
            if to_seek:
                seek = sorted(to_seek & consumer.assignment())
                to_seek.clear()
                _seek_all(consumer, seek, args, start_ms)
                # Read from where they were before the seek: fetched again from there.
                batch = {tp: msgs for tp, msgs in batch.items() if tp not in seek}
            now = time.monotonic()
            if not (joined or consumer.assignment()):
                if not args.follow and now - started > ASSIGNMENT_TIMEOUT_S:
                    raise CliError(f"no partitions assigned after {ASSIGNMENT_TIMEOUT_S:.0f}s"
                                   f" (is group {args.group!r} rebalancing?)")
                continue
            if idle_since is None:
                idle_since = now
            if not batch:
                if not args.follow and (now - idle_since) * 1000 >= args.timeout_ms:
                    break
                continue
            idle_since = now
            for msgs in batch.values():
                for msg in msgs:
                    try:
                        print(_json_line(msg) if args.json else fmt.line(msg), flush=True)
                    except BrokenPipeError as e:  # the reader is gone (`| head`)
                        broken_pipe = e
                        done = True
                        break
                    count += 1
                    written[TopicPartition(msg.topic, msg.partition)] = msg.offset + 1
                    progress.update(count)
                    if args.max_messages is not None and count >= args.max_messages:
                        done = True
                        break
                if done:
                    break
    except KeyboardInterrupt:
        pass  # Ctrl-C (or SIGTERM) ends the command cleanly: commit what was written
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.update(count, force=True)
        progress.done()
        try:
            if args.group and written:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1)
                                 for tp, o in written.items()})
        finally:
            consumer.close(autocommit=False)
    if broken_pipe is not None:
        raise broken_pipe
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
    p.add_argument("--from-timestamp", metavar="TIME",
                   help="start at the first record at or after TIME (milliseconds since the "
                        "epoch, or an ISO date and time such as 2026-12-06T10:00:00Z)")
    p.add_argument("--partition", type=int, help="read only this partition")
    p.add_argument("--offset", type=int, help="start offset (with --partition)")
    p.add_argument("--max-messages", type=int)
    p.add_argument("--timeout-ms", type=int, default=10000,
                   help="stop after this long without a record, counted once the partitions "
                        "are assigned (default 10000)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep reading new records until Ctrl-C (no --timeout-ms)")
    p.add_argument("--property", action="append", metavar="KEY=VALUE",
                   help="output format, as kafka-console-consumer's: print.key, "
                        "print.timestamp, print.partition, print.offset, print.headers, "
                        "print.value (true/false), key.separator (default tab), "
                        "headers.separator, headers.key.separator, null.literal (repeatable)")
    p.add_argument("--progress", action="store_true",
                   help="show progress on stderr even when it is not a terminal")
    p.set_defaults(func=consume)

"""``odradek groups list|describe|delete|reset-offsets``: consumer groups, their committed
offsets and lag."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from odradek.broker.cli.common import (
    CliError,
    RetriableError,
    admin_client,
    common_options,
    error_code_in,
    guard,
    parse_time,
    print_json,
    retry,
    server_error,
    table,
)
from odradek.broker.cli.topics import describe_topics

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient


@dataclass(frozen=True, slots=True)
class GroupListing:
    group: str
    state: str | None
    protocol_type: str | None


@dataclass(frozen=True, slots=True)
class MemberView:
    member_id: str | None
    client_id: str | None
    host: str | None


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int
    # None when the partition's log end could not be read.
    log_end: int | None
    lag: int | None


@dataclass(frozen=True, slots=True)
class GroupView:
    group: str
    state: str | None
    members: list[MemberView]
    partitions: list[PartitionLag]
    total_lag: int


@dataclass(frozen=True, slots=True)
class ResetOffset:
    topic: str
    partition: int
    # The group's committed offset before the reset (None: nothing committed there).
    current: int | None
    # The offset the reset commits (with --execute) or would commit (a dry run).
    new: int


# kafka-python's TopicPartition and OffsetAndMetadata are untyped: Any below.

def _group_offsets(admin: KafkaAdminClient, group: str) -> dict[Any, Any]:
    return retry(lambda: dict(admin.list_group_offsets({group: None}).get(group) or {}))


def _describe_group(admin: KafkaAdminClient, group: str) -> dict[str, Any]:
    """The group's description. Errors the server calls retriable (its coordinator still
    loading, or not there yet on a fresh cluster) are asked again within the retry
    timeout, so the answer is the same on the first call as on later ones."""

    def ask() -> dict[str, Any]:
        info = admin.describe_groups([group]).get(group)
        if info is None:
            raise CliError(f"group {group!r} does not exist")
        error = info.get("error")
        code = error_code_in(error) if error else None
        if code == 69 or (not error and info.get("group_state") == "Dead"):  # GroupIdNotFound
            raise CliError(f"group {group!r} does not exist; `odradek groups list` shows "
                           "the groups")
        if error:
            if code is None:
                raise CliError(f"group {group!r}: {error}")
            # A retriable one (the coordinator not there or still loading) is asked again.
            raise server_error(f"group {group!r}", code, str(error).partition(": ")[2] or None)
        return dict(info)

    return retry(ask)


def _describe_consumer_group(args: argparse.Namespace, group: str) -> dict[str, Any] | None:
    """A group of the consumer group protocol (KIP-848), which DescribeGroups does not
    describe, as ConsumerGroupDescribe at its coordinator tells it (kafka-python has no
    call for it); None if it is not one."""
    from odradek.broker.cli import client_config, raw_requests
    from odradek.broker.kafka.client import ConnectionClosed, KafkaConnection

    found = raw_requests.request(args, 10, 4, {"key_type": 0, "coordinator_keys": [group]})
    [coordinator] = found.coordinators
    if coordinator.error_code.value:
        raise server_error(f"group {group!r}", coordinator.error_code.value,
                           coordinator.error_message)

    def ask() -> Any:
        address = f"{coordinator.host}:{coordinator.port}"
        try:
            conn = KafkaConnection.to(address, timeout=30.0,
                                      security=client_config.of(args).security())
        except OSError as e:
            raise RetriableError(f"cannot reach the coordinator of {group!r} at {address} "
                                 f"({e})") from e
        try:
            return conn.request(69, 0, {"group_ids": [group],
                                        "include_authorized_operations": False})
        except (ConnectionClosed, OSError) as e:
            raise RetriableError(f"the coordinator of {group!r} at {address} did not "
                                 f"answer ({e})") from e
        finally:
            conn.close()

    [described] = retry(ask).groups
    code = described.error_code.value
    if code == 69:  # GROUP_ID_NOT_FOUND: not a consumer group either
        return None
    if code:
        raise server_error(f"group {group!r}", code, described.error_message)
    return {"group_state": described.group_state,
            "members": [{"member_id": m.member_id, "client_id": m.client_id,
                         "client_host": m.client_host} for m in described.members]}


def _log_ends(admin: KafkaAdminClient, tps: list[Any]) -> dict[Any, int]:
    from kafka.admin import OffsetSpec

    if not tps:
        return {}
    got = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
    return {tp: v.offset for tp, v in got.items()}


@guard
def groups_list(args: argparse.Namespace) -> int:
    admin = admin_client(args)
    try:
        groups = sorted(admin.list_groups(), key=lambda g: g["group_id"])
    finally:
        admin.close()
    listing = [GroupListing(g["group_id"], g.get("group_state"), g.get("protocol_type"))
               for g in groups]
    if args.json:
        print_json(listing)
    else:
        table(["GROUP", "STATE", "PROTOCOL"],
              [[g.group, g.state or "", g.protocol_type or ""] for g in listing])
    return 0


@guard
def groups_describe(args: argparse.Namespace) -> int:
    admin = admin_client(args)
    try:
        try:
            info = _describe_group(admin, args.group)
        except CliError:
            # DescribeGroups describes classic groups only, as Kafka's does.
            consumer = _describe_consumer_group(args, args.group)
            if consumer is None:
                raise
            info = consumer
        offsets = _group_offsets(admin, args.group)
        tps = sorted(offsets, key=lambda tp: (tp.topic, tp.partition))
        ends = _log_ends(admin, tps)
    finally:
        admin.close()
    parts = []
    for tp in tps:
        committed = offsets[tp].offset
        end = ends.get(tp)
        lag = None if end is None or committed < 0 else max(0, end - committed)
        parts.append(PartitionLag(tp.topic, tp.partition, committed, end, lag))
    members = [MemberView(m.get("member_id"), m.get("client_id"), m.get("client_host"))
               for m in info.get("members") or []]
    view = GroupView(args.group, info.get("group_state"), members, parts,
                     sum(p.lag or 0 for p in parts))
    if args.json:
        print_json(view)
        return 0
    print(f"Group: {args.group}  State: {view.state}  Members: {len(members)}  "
          f"TotalLag: {view.total_lag}")
    table(["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"],
          [[p.topic, p.partition, p.committed, p.log_end, p.lag] for p in parts])
    return 0


@guard
def groups_delete(args: argparse.Namespace) -> int:
    admin = admin_client(args)
    try:
        result = admin.delete_groups([args.group])
    finally:
        admin.close()
    pairs = result.items() if isinstance(result, dict) else result
    for gid, err in pairs:
        if err is None or err == "OK" or getattr(err, "errno", None) == 0:
            continue
        reason = err if isinstance(err, str) else type(err).__name__
        raise CliError(f"cannot delete group {gid!r}: {reason}")
    if args.json:
        print_json({"group": args.group, "deleted": True})
    else:
        print(f"deleted group {args.group}")
    return 0


def _group_state_of(args: argparse.Namespace, admin: KafkaAdminClient,
                    group: str) -> tuple[str | None, int]:
    """The group's state and member count; (None, 0) for a group that does not exist yet
    (offsets can be set for it before its first consumer starts)."""
    try:
        info = _describe_group(admin, group)
    except RetriableError:
        raise
    except CliError as e:
        if "does not exist" not in str(e):
            raise
        consumer = _describe_consumer_group(args, group)  # a KIP-848 group?
        if consumer is None:
            return None, 0
        info = consumer
    return info.get("group_state"), len(info.get("members") or [])


def _offsets_of(admin: KafkaAdminClient, tps: list[Any], spec: Any) -> dict[Any, int]:
    """ListOffsets for ``tps`` (an OffsetSpec or a timestamp): offset per partition; a
    timestamp after the last record gives the log end, as kafka-consumer-groups does."""
    from kafka.admin import OffsetSpec

    got = admin.list_partition_offsets({tp: spec for tp in tps})
    missing = [tp for tp in tps if got.get(tp) is None or got[tp].offset < 0]
    if missing:
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in missing})
        got.update(ends)
    return {tp: got[tp].offset for tp in tps}


@guard
def groups_reset_offsets(args: argparse.Namespace) -> int:
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec
    from kafka.structs import OffsetAndMetadata

    start_ms = (parse_time(args.to_datetime, "--to-datetime")
                if args.to_datetime is not None else None)
    admin = admin_client(args)
    try:
        state, members = _group_state_of(args, admin, args.group)
        if members or state not in ("Empty", "Dead", None, ""):
            # As kafka-consumer-groups: a live member would overwrite the reset with its
            # next commit, and the coordinator refuses commits from outside the group.
            raise CliError(f"group {args.group!r} is {state} with {members} member(s): "
                           "offsets can be reset only while the group is inactive; stop its "
                           "consumers first")
        current = _group_offsets(admin, args.group)
        if args.topic:
            t = describe_topics(admin, [args.topic])[0]
            tps = [TopicPartition(args.topic, p["partition_index"]) for p in t["partitions"]]
        else:
            tps = list(current)
        if not tps:
            raise CliError(f"group {args.group!r} has no committed offsets; give --topic")
        earliest = _offsets_of(admin, tps, OffsetSpec.EARLIEST)
        latest = _offsets_of(admin, tps, OffsetSpec.LATEST)
        target: dict[Any, int]
        if args.to_earliest:
            target = earliest
        elif args.to_latest:
            target = latest
        elif start_ms is not None:
            target = _offsets_of(admin, tps, start_ms)
        elif args.shift_by is not None:
            missing = [tp for tp in tps if tp not in current or current[tp].offset < 0]
            if missing:
                names = ", ".join(f"{tp.topic}-{tp.partition}" for tp in missing)
                raise CliError(f"--shift-by: group {args.group!r} has no committed offset "
                               f"for {names}; reset those with another option first")
            target = {tp: current[tp].offset + args.shift_by for tp in tps}
        else:
            target = {tp: int(args.to_offset) for tp in tps}
        # Clamped to what each partition holds, as kafka-consumer-groups does.
        target = {tp: max(earliest[tp], min(latest[tp], o)) for tp, o in target.items()}
        if args.execute:
            result = admin.alter_group_offsets(
                args.group, {tp: OffsetAndMetadata(o, "", -1) for tp, o in target.items()})
            for tp, err in (result or {}).items():
                code = getattr(err, "errno", 0) or 0
                if code:
                    raise server_error(f"cannot commit {tp.topic}-{tp.partition} for group "
                                       f"{args.group!r}", code)
    finally:
        admin.close()
    rows = sorted((ResetOffset(tp.topic, tp.partition,
                               current[tp].offset if tp in current else None, target[tp])
                   for tp in tps), key=lambda r: (r.topic, r.partition))
    if args.json:
        print_json({"group": args.group, "executed": bool(args.execute), "partitions": rows})
    else:
        table(["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
              [[r.topic, r.partition, "-" if r.current is None else r.current, r.new]
               for r in rows])
        if not args.execute:
            print("dry run: nothing changed; add --execute to commit these offsets",
                  file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``groups`` and its actions."""
    common = common_options()
    groups = sub.add_parser("groups", help="list, describe, delete and reset consumer groups")
    gsub = groups.add_subparsers(dest="groups_command", required=True, metavar="ACTION")
    p = gsub.add_parser("list", parents=[common], help="list consumer groups")
    p.set_defaults(func=groups_list)
    p = gsub.add_parser("describe", parents=[common],
                        help="state, members, committed offsets, log end and lag")
    p.add_argument("group")
    p.set_defaults(func=groups_describe)
    p = gsub.add_parser("delete", parents=[common], help="delete an inactive group")
    p.add_argument("group")
    p.set_defaults(func=groups_delete)
    p = gsub.add_parser("reset-offsets", parents=[common],
                        help="reset the committed offsets of an inactive group (a dry run "
                             "unless --execute)")
    p.add_argument("group")
    p.add_argument("--topic", help="topic to reset (default: every topic the group committed)")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="each partition's first offset")
    to.add_argument("--to-latest", action="store_true", help="each partition's log end")
    to.add_argument("--to-offset", type=int, metavar="N", help="offset N in every partition")
    to.add_argument("--to-datetime", metavar="TIME",
                    help="the first record at or after TIME (ISO date and time such as "
                         "2026-12-06T10:00:00, local time unless it names a zone, or "
                         "milliseconds since the epoch)")
    to.add_argument("--shift-by", type=int, metavar="N",
                    help="move each committed offset by N (negative: back)")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--dry-run", action="store_true",
                     help="show the new offsets only (the default)")
    run.add_argument("--execute", action="store_true", help="commit the new offsets")
    p.set_defaults(func=groups_reset_offsets)

"""``odradek groups list|describe|delete|reset-offsets``: consumer groups, their committed
offsets and lag."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from odradek.broker.cli.common import (
    CliError,
    admin_client,
    common_options,
    guard,
    print_json,
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
    # The group's committed offset after the reset (None: nothing committed there).
    committed: int | None


# kafka-python's TopicPartition and OffsetAndMetadata are untyped: Any below.

def _group_offsets(admin: KafkaAdminClient, group: str) -> dict[Any, Any]:
    return dict(admin.list_group_offsets({group: None}).get(group) or {})


def _describe_group(admin: KafkaAdminClient, group: str) -> dict[str, Any]:
    info = admin.describe_groups([group]).get(group)
    if info is None or info.get("error"):
        raise CliError(f"group {group!r}: {info.get('error') if info else 'not found'}")
    if info.get("group_state") == "Dead":
        raise CliError(f"group {group!r} does not exist")
    return dict(info)


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
        info = _describe_group(admin, args.group)
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


@guard
def groups_reset_offsets(args: argparse.Namespace) -> int:
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    admin = admin_client(args)
    try:
        info = _describe_group(admin, args.group)
        if info.get("group_state") not in ("Empty", None, ""):
            raise CliError(f"group {args.group!r} is {info.get('group_state')}; stop its "
                           "consumers before resetting offsets")
        if args.topic:
            t = describe_topics(admin, [args.topic])[0]
            tps = [TopicPartition(args.topic, p["partition_index"]) for p in t["partitions"]]
        else:
            tps = list(_group_offsets(admin, args.group))
        if not tps:
            raise CliError(f"group {args.group!r} has no committed offsets; give --topic")
        # An OffsetSpec (kafka-python's, untyped) or an offset.
        spec: Any
        if args.to_earliest:
            spec = OffsetSpec.EARLIEST
        elif args.to_latest:
            spec = OffsetSpec.LATEST
        else:
            spec = int(args.to_offset)
        admin.reset_group_offsets(args.group, {tp: spec for tp in tps})
        after = _group_offsets(admin, args.group)
    finally:
        admin.close()
    rows = sorted((ResetOffset(tp.topic, tp.partition,
                               after[tp].offset if tp in after else None) for tp in tps),
                  key=lambda r: (r.topic, r.partition))
    if args.json:
        print_json({"group": args.group, "partitions": rows})
    else:
        table(["TOPIC", "PARTITION", "NEW-OFFSET"],
              [[r.topic, r.partition, r.committed] for r in rows])
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
                        help="reset the committed offsets of an inactive group")
    p.add_argument("group")
    p.add_argument("--topic", help="topic to reset (default: every topic the group committed)")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true")
    to.add_argument("--to-latest", action="store_true")
    to.add_argument("--to-offset", type=int, metavar="N")
    p.set_defaults(func=groups_reset_offsets)

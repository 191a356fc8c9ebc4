"""``odradek topics create|list|describe|alter|delete``, and the topic views other commands
use (``describe_topics``, ``PartitionView``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odradek.broker.cli.common import (
    CliError,
    admin_client,
    check_code,
    check_result_string,
    common_options,
    guard,
    parse_kv,
    print_json,
    retry,
    server_error,
    table,
)
from odradek.broker.console.targets import (
    DEFAULT_CLUSTER_FILE,
    MetricsTarget,
    from_cluster_file,
    partition_gauges,
)

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient


@dataclass(frozen=True, slots=True)
class PartitionView:
    partition: int
    leader: int | None
    replicas: list[int]
    isr: list[int]
    offline_replicas: list[int]

    @staticmethod
    def of(p: dict[str, Any]) -> PartitionView:
        """From a partition of kafka-python's ``describe_topics``."""
        return PartitionView(p["partition_index"], p["leader_id"], list(p["replica_nodes"]),
                             list(p["isr_nodes"]), list(p.get("offline_replicas") or []))


@dataclass(frozen=True, slots=True)
class CleanerView:
    """The log cleaner's progress on a compacted partition, as its leader reports it."""

    partition: int
    node: int | None
    cleaned_offset: int
    dirty_ratio: float


@dataclass(frozen=True, slots=True)
class MoveView:
    """A partition being reassigned (ListPartitionReassignments): its replicas are the
    target followed by the ones being removed."""

    partition: int
    adding: list[int]
    removing: list[int]


@dataclass(frozen=True, slots=True)
class TopicView:
    topic: str
    # Whatever the client library gives (a UUID); shown as its string.
    topic_id: object
    internal: bool
    partitions: list[PartitionView]
    configs: dict[str, object]
    # Compacted topics, when the nodes' metrics could be read (--metrics or cluster.json).
    cleaner: list[CleanerView] | None = None
    moving: list[MoveView] = field(default_factory=list)


CLEANER_GAUGES = {"odradek_log_cleaner_cleaned_offset", "odradek_log_cleaner_dirty_ratio"}


def cleaner_progress(targets: list[MetricsTarget], topic: str,
                     leaders: dict[int, int | None]) -> list[CleanerView] | None:
    """Each partition's cleaner progress from its leader's /metrics (from any replica's when
    the targets carry no node ids); None when no node could be read."""
    by_node: dict[int | None, dict[tuple[str, int], float]] = {}
    for target in targets:
        try:
            by_node[target.node_id] = partition_gauges(target, CLEANER_GAUGES, topic)
        except (OSError, ValueError):
            continue
    if not by_node:
        return None
    out = []
    for partition, leader in sorted(leaders.items()):
        sources = [leader] if leader in by_node else list(by_node)
        for node in sources:
            gauges = by_node[node]
            if ("odradek_log_cleaner_cleaned_offset", partition) in gauges:
                out.append(CleanerView(
                    partition, node,
                    int(gauges[("odradek_log_cleaner_cleaned_offset", partition)]),
                    gauges.get(("odradek_log_cleaner_dirty_ratio", partition), 0.0)))
                break
    return out


def describe_topics(admin: KafkaAdminClient, topics: list[str] | None) -> list[dict[str, Any]]:
    """kafka-python's topic descriptions; a CliError for a topic that does not exist."""
    def ask() -> list[dict[str, Any]]:
        result = admin.describe_topics(topics)
        for t in result:
            if t.get("error_code"):
                if t["error_code"] == 3:
                    raise CliError(f"topic {t['name']!r} does not exist")
                raise server_error(f"topic {t['name']!r}", t["error_code"])
        return list(result)

    return retry(ask)


@guard
def topics_create(args: argparse.Namespace) -> int:
    from kafka.admin import NewTopic

    configs = parse_kv(args.config, "--config")
    # -1 (an option left out) leaves the choice to the cluster: its num.partitions and
    # default.replication.factor, as Kafka's CreateTopics allows since 2.4 (KIP-464).
    spec = NewTopic(args.topic, -1 if args.partitions is None else args.partitions,
                    -1 if args.replication_factor is None else args.replication_factor,
                    topic_configs=configs)
    admin = admin_client(args)
    try:
        result = admin.create_topics([spec], raise_errors=False)
    finally:
        admin.close()
    created = (result.get("topics") or [{}])[0]
    check_code(f"cannot create topic {args.topic!r}", created.get("error_code"),
               created.get("error_message"))
    # The server says what it chose (CreateTopics v5+); else what was asked for.
    partitions = created.get("num_partitions", -1)
    rf = created.get("replication_factor", -1)
    partitions = partitions if partitions and partitions > 0 else spec.num_partitions
    rf = rf if rf and rf > 0 else spec.replication_factor
    if args.json:
        print_json({"topic": args.topic, "partitions": partitions,
                    "replication_factor": rf, "configs": configs, "created": True})
    else:  # (-1: a server too old to say what it chose)
        shown_partitions = "the cluster's default" if partitions < 0 else partitions
        shown_rf = "the cluster's default" if rf < 0 else rf
        print(f"created topic {args.topic} ({shown_partitions} partitions, "
              f"replication factor {shown_rf})")
    return 0


@guard
def topics_list(args: argparse.Namespace) -> int:
    admin = admin_client(args)
    try:
        names = sorted(t for t in admin.list_topics()
                       if args.internal or not t.startswith("__"))
    finally:
        admin.close()
    if args.json:
        print_json(names)
    else:
        for n in names:
            print(n)
    return 0


@guard
def topics_describe(args: argparse.Namespace) -> int:
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = admin_client(args)
    try:
        t = describe_topics(admin, [args.topic])[0]
        cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic)])
        moves = admin.list_partition_reassignments(
            {args.topic: [p["partition_index"] for p in t["partitions"]]})
    finally:
        admin.close()
    moving = sorted((MoveView(tp.partition, m["adding_replicas"], m["removing_replicas"])
                     for tp, m in moves.items()), key=lambda m: m.partition)
    configs: dict[str, object] = {
        k: (v.get("value") if isinstance(v, dict) else v)
        for k, v in (cfg.get("topic", {}).get(args.topic) or {}).items()}
    parts = sorted((PartitionView.of(p) for p in t["partitions"]), key=lambda p: p.partition)
    cleaner = None
    if "compact" in str(configs.get("cleanup.policy", "")):
        targets = [MetricsTarget.parse(m) for m in args.metrics]
        if not targets:
            try:
                targets = from_cluster_file(args.cluster_file)[1]
            except (OSError, ValueError, KeyError):
                targets = []
        cleaner = cleaner_progress(targets, args.topic, {p.partition: p.leader for p in parts})
    view = TopicView(t["name"], t.get("topic_id"), t["is_internal"], parts, configs, cleaner,
                     moving)
    if args.json:
        print_json(view)
        return 0
    removing = {m.partition: m.removing for m in moving}
    rf = len([r for r in parts[0].replicas if r not in removing.get(0, [])]) if parts else 0
    print(f"Topic: {view.topic}  Partitions: {len(parts)}  ReplicationFactor: {rf}  "
          f"TopicId: {view.topic_id}")
    if configs:
        print("Configs: " + ", ".join(f"{k}={v}" for k, v in sorted(configs.items())))
    table(["PARTITION", "LEADER", "REPLICAS", "ISR"],
          [[p.partition, p.leader, ",".join(map(str, p.replicas)), ",".join(map(str, p.isr))]
           for p in parts])
    if moving:
        print("Being reassigned (replicas: the target, then the ones being removed):")
        table(["PARTITION", "ADDING", "REMOVING"],
              [[m.partition, ",".join(map(str, m.adding)) or "-",
                ",".join(map(str, m.removing)) or "-"] for m in moving])
    if cleaner:
        print("Log cleaner (from each leader's metrics):")
        table(["PARTITION", "NODE", "CLEANED TO OFFSET", "DIRTY"],
              [[c.partition, c.node if c.node is not None else "-", c.cleaned_offset,
                f"{c.dirty_ratio:.0%}"] for c in cleaner])
    elif cleaner is None and "compact" in str(configs.get("cleanup.policy", "")):
        print("Log cleaner: give --metrics ID=HOST:PORT (or run in the directory of "
              "`odradek cluster up`) to see how far each partition is cleaned")
    return 0


@guard
def topics_alter(args: argparse.Namespace) -> int:
    from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, NewPartitions

    configs = parse_kv(args.config, "--config")
    deleted = list(dict.fromkeys(args.delete_config or []))
    if args.partitions is None and not configs and not deleted:
        raise CliError("nothing to alter: give --partitions N, --config key=value and/or "
                       "--delete-config key")
    both = sorted(set(configs) & set(deleted))
    if both:
        raise CliError(f"{', '.join(both)}: given to both --config and --delete-config")
    admin = admin_client(args)
    try:
        describe_topics(admin, [args.topic])
        if args.partitions is not None:
            result = admin.create_partitions({args.topic: NewPartitions(args.partitions)},
                                             raise_errors=False)
            for r in getattr(result, "results", None) or []:
                check_code(f"cannot change the partitions of {args.topic!r}", r.error_code,
                           r.error_message)
        if configs or deleted:
            # IncrementalAlterConfigs: only the keys named change (AlterConfigs would reset
            # every other dynamic config of the topic).
            ops: dict[str, Any] = {k: (AlterConfigOp.SET, v) for k, v in configs.items()}
            ops.update({k: (AlterConfigOp.DELETE, None) for k in deleted})
            answer = admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, args.topic, configs=ops)],
                incremental=True, raise_on_unknown=False)
            for result in (answer.get("topic") or {}).values():
                check_result_string(f"cannot change the configs of {args.topic!r}", result)
    finally:
        admin.close()
    if args.json:
        print_json({"topic": args.topic, "partitions": args.partitions, "configs": configs,
                    "deleted_configs": deleted, "altered": True})
    else:
        print(f"altered topic {args.topic}")
    return 0


@guard
def topics_delete(args: argparse.Namespace) -> int:
    admin = admin_client(args)
    try:
        describe_topics(admin, [args.topic])
        admin.delete_topics([args.topic])
    finally:
        admin.close()
    if args.json:
        print_json({"topic": args.topic, "deleted": True})
    else:
        print(f"deleted topic {args.topic}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``topics`` and its actions."""
    common = common_options()
    topics = sub.add_parser("topics", help="create, list, describe, alter and delete topics")
    tsub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    p = tsub.add_parser("create", parents=[common], help="create a topic")
    p.add_argument("topic")
    p.add_argument("--partitions", type=int,
                   help="partition count (default: the cluster's num.partitions)")
    p.add_argument("--replication-factor", type=int,
                   help="replicas per partition (default: the cluster's "
                        "default.replication.factor)")
    p.add_argument("--config", action="append", metavar="KEY=VALUE", help="repeatable")
    p.set_defaults(func=topics_create)
    p = tsub.add_parser("list", parents=[common], help="list topics")
    p.add_argument("--internal", action="store_true", help="include internal topics")
    p.set_defaults(func=topics_list)
    p = tsub.add_parser("describe", parents=[common],
                        help="partitions, leaders, ISR, configs, the log cleaner's progress")
    p.add_argument("topic")
    p.add_argument("--metrics", action="append", default=[], metavar="[NODE_ID=]HOST:PORT",
                   help="a node's metrics address (repeatable), read for the log cleaner's "
                        "progress on compacted topics; default: the nodes in --cluster-file")
    p.add_argument("--cluster-file", type=Path, default=DEFAULT_CLUSTER_FILE,
                   help="cluster.json of `odradek cluster up` (default: %(default)s)")
    p.set_defaults(func=topics_describe)
    p = tsub.add_parser("alter", parents=[common], help="add partitions or change configs")
    p.add_argument("topic")
    p.add_argument("--partitions", type=int, help="new (larger) partition count")
    p.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="set a topic config (repeatable)")
    p.add_argument("--delete-config", action="append", metavar="KEY",
                   help="remove a topic config, back to the cluster default (repeatable)")
    p.set_defaults(func=topics_alter)
    p = tsub.add_parser("delete", parents=[common], help="delete a topic")
    p.add_argument("topic")
    p.set_defaults(func=topics_delete)

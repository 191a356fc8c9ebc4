"""``odradek topics create|list|describe|alter|delete``, and the topic views other commands
use (``describe_topics``, ``PartitionView``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from odradek.broker.cli.common import (
    CliError,
    admin_client,
    common_options,
    error_name,
    guard,
    parse_kv,
    print_json,
    table,
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
class TopicView:
    topic: str
    # Whatever the client library gives (a UUID); shown as its string.
    topic_id: object
    internal: bool
    partitions: list[PartitionView]
    configs: dict[str, object]


def describe_topics(admin: KafkaAdminClient, topics: list[str] | None) -> list[dict[str, Any]]:
    """kafka-python's topic descriptions; a CliError for a topic that does not exist."""
    result = admin.describe_topics(topics)
    for t in result:
        if t.get("error_code"):
            if t["error_code"] == 3:
                raise CliError(f"topic {t['name']!r} does not exist")
            raise CliError(f"topic {t['name']!r}: {error_name(t['error_code'])}")
    return list(result)


@guard
def topics_create(args: argparse.Namespace) -> int:
    from kafka.admin import NewTopic

    configs = parse_kv(args.config, "--config")
    admin = admin_client(args)
    try:
        admin.create_topics([NewTopic(args.topic, args.partitions, args.replication_factor,
                                      topic_configs=configs)])
    finally:
        admin.close()
    if args.json:
        print_json({"topic": args.topic, "partitions": args.partitions,
                    "replication_factor": args.replication_factor, "configs": configs,
                    "created": True})
    else:
        print(f"created topic {args.topic} ({args.partitions} partitions, "
              f"replication factor {args.replication_factor})")
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
    finally:
        admin.close()
    configs: dict[str, object] = {
        k: (v.get("value") if isinstance(v, dict) else v)
        for k, v in (cfg.get("topic", {}).get(args.topic) or {}).items()}
    parts = sorted((PartitionView.of(p) for p in t["partitions"]), key=lambda p: p.partition)
    view = TopicView(t["name"], t.get("topic_id"), t["is_internal"], parts, configs)
    if args.json:
        print_json(view)
        return 0
    rf = len(parts[0].replicas) if parts else 0
    print(f"Topic: {view.topic}  Partitions: {len(parts)}  ReplicationFactor: {rf}  "
          f"TopicId: {view.topic_id}")
    if configs:
        print("Configs: " + ", ".join(f"{k}={v}" for k, v in sorted(configs.items())))
    table(["PARTITION", "LEADER", "REPLICAS", "ISR"],
          [[p.partition, p.leader, ",".join(map(str, p.replicas)), ",".join(map(str, p.isr))]
           for p in parts])
    return 0


@guard
def topics_alter(args: argparse.Namespace) -> int:
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

    configs = parse_kv(args.config, "--config")
    if args.partitions is None and not configs:
        raise CliError("nothing to alter: give --partitions N and/or --config key=value")
    admin = admin_client(args)
    try:
        describe_topics(admin, [args.topic])
        if args.partitions is not None:
            admin.create_partitions({args.topic: NewPartitions(args.partitions)})
        if configs:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic,
                                                configs=configs)])
    finally:
        admin.close()
    if args.json:
        print_json({"topic": args.topic, "partitions": args.partitions, "configs": configs,
                    "altered": True})
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
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--replication-factor", type=int, default=1)
    p.add_argument("--config", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=topics_create)
    p = tsub.add_parser("list", parents=[common], help="list topics")
    p.add_argument("--internal", action="store_true", help="include internal topics")
    p.set_defaults(func=topics_list)
    p = tsub.add_parser("describe", parents=[common], help="partitions, leaders, ISR, configs")
    p.add_argument("topic")
    p.set_defaults(func=topics_describe)
    p = tsub.add_parser("alter", parents=[common], help="add partitions or change configs")
    p.add_argument("topic")
    p.add_argument("--partitions", type=int, help="new (larger) partition count")
    p.add_argument("--config", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=topics_alter)
    p = tsub.add_parser("delete", parents=[common], help="delete a topic")
    p.add_argument("topic")
    p.set_defaults(func=topics_delete)

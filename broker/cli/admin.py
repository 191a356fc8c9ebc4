"""Admin commands: ``odradek topics|produce|consume|groups|cluster status``.

They speak the Kafka protocol (through kafka-python), so they work against any Kafka cluster.
Human-readable tables by default, ``--json`` for machine-readable output; errors print one line
to stderr and exit non-zero.
"""

from __future__ import annotations

import argparse
import functools
import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any


class CliError(Exception):
    """An error worth one clear line on stderr."""


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--bootstrap", default="127.0.0.1:9092",
                   help="Kafka bootstrap servers, host:port[,host:port] (default 127.0.0.1:9092)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    return p


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
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


def _kv(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise CliError(f"{what} must look like key=value, got {item!r}")
        out[k] = v
    return out


def _servers(args: argparse.Namespace) -> list[str]:
    return [s.strip() for s in args.bootstrap.split(",") if s.strip()]


def _check_reachable(args: argparse.Namespace, timeout: float = 3.0) -> None:
    """Fail in seconds, with a hint, when no bootstrap server accepts a connection (the
    Kafka client would retry for its whole bootstrap timeout first)."""
    errors = []
    for server in _servers(args):
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


class _Progress:
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


def _admin(args: argparse.Namespace) -> Any:
    from kafka.admin import KafkaAdminClient

    _check_reachable(args)
    try:
        return KafkaAdminClient(bootstrap_servers=_servers(args), client_id="odradek-cli",
                                request_timeout_ms=15000)
    except Exception as e:
        raise CliError(f"cannot connect to {args.bootstrap}: {e}") from e


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _error_name(code: int) -> str:
    from kafka.errors import for_code

    return str(for_code(code).__name__)


# ---------------------------------------------------------------------------------- topics

def _describe_topics(admin: Any, topics: list[str] | None) -> list[dict[str, Any]]:
    result = admin.describe_topics(topics)
    for t in result:
        if t.get("error_code"):
            if t["error_code"] == 3:
                raise CliError(f"topic {t['name']!r} does not exist")
            raise CliError(f"topic {t['name']!r}: {_error_name(t['error_code'])}")
    return list(result)


def _partition_view(p: dict[str, Any]) -> dict[str, Any]:
    return {"partition": p["partition_index"], "leader": p["leader_id"],
            "replicas": list(p["replica_nodes"]), "isr": list(p["isr_nodes"]),
            "offline_replicas": list(p.get("offline_replicas") or [])}


@_guard
def topics_create(args: argparse.Namespace) -> int:
    from kafka.admin import NewTopic

    configs = _kv(args.config, "--config")
    admin = _admin(args)
    try:
        admin.create_topics([NewTopic(args.topic, args.partitions, args.replication_factor,
                                      topic_configs=configs)])
    finally:
        admin.close()
    if args.json:
        _print_json({"topic": args.topic, "partitions": args.partitions,
                     "replication_factor": args.replication_factor, "configs": configs,
                     "created": True})
    else:
        print(f"created topic {args.topic} ({args.partitions} partitions, "
              f"replication factor {args.replication_factor})")
    return 0


@_guard
def topics_list(args: argparse.Namespace) -> int:
    admin = _admin(args)
    try:
        names = sorted(t for t in admin.list_topics()
                       if args.internal or not t.startswith("__"))
    finally:
        admin.close()
    if args.json:
        _print_json(names)
    else:
        for n in names:
            print(n)
    return 0


@_guard
def topics_describe(args: argparse.Namespace) -> int:
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = _admin(args)
    try:
        t = _describe_topics(admin, [args.topic])[0]
        cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic)])
    finally:
        admin.close()
    configs = {k: (v.get("value") if isinstance(v, dict) else v)
               for k, v in (cfg.get("topic", {}).get(args.topic) or {}).items()}
    parts = sorted((_partition_view(p) for p in t["partitions"]),
                   key=lambda p: p["partition"])
    view = {"topic": t["name"], "topic_id": t.get("topic_id"), "internal": t["is_internal"],
            "partitions": parts, "configs": configs}
    if args.json:
        _print_json(view)
        return 0
    rf = len(parts[0]["replicas"]) if parts else 0
    print(f"Topic: {t['name']}  Partitions: {len(parts)}  ReplicationFactor: {rf}  "
          f"TopicId: {t.get('topic_id')}")
    if configs:
        print("Configs: " + ", ".join(f"{k}={v}" for k, v in sorted(configs.items())))
    _table(["PARTITION", "LEADER", "REPLICAS", "ISR"],
           [[p["partition"], p["leader"], ",".join(map(str, p["replicas"])),
             ",".join(map(str, p["isr"]))] for p in parts])
    return 0


@_guard
def topics_alter(args: argparse.Namespace) -> int:
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

    configs = _kv(args.config, "--config")
    if args.partitions is None and not configs:
        raise CliError("nothing to alter: give --partitions N and/or --config key=value")
    admin = _admin(args)
    try:
        _describe_topics(admin, [args.topic])
        if args.partitions is not None:
            admin.create_partitions({args.topic: NewPartitions(args.partitions)})
        if configs:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic,
                                                configs=configs)])
    finally:
        admin.close()
    if args.json:
        _print_json({"topic": args.topic, "partitions": args.partitions, "configs": configs,
                     "altered": True})
    else:
        print(f"altered topic {args.topic}")
    return 0


@_guard
def topics_delete(args: argparse.Namespace) -> int:
    admin = _admin(args)
    try:
        _describe_topics(admin, [args.topic])
        admin.delete_topics([args.topic])
    finally:
        admin.close()
    if args.json:
        _print_json({"topic": args.topic, "deleted": True})
    else:
        print(f"deleted topic {args.topic}")
    return 0


# ------------------------------------------------------------------------ produce / consume

@_guard
def produce(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    headers = [(k, v.encode()) for k, v in _kv(args.header, "--header").items()]
    key = args.key.encode() if args.key is not None else None
    _check_reachable(args)
    try:
        producer = KafkaProducer(bootstrap_servers=_servers(args), acks=args.acks
                                 if args.acks == "all" else int(args.acks),
                                 client_id="odradek-cli")
    except Exception as e:
        raise CliError(f"cannot connect to {args.bootstrap}: {e}") from e
    results = []
    progress = _Progress(args, "produced")
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
            results.append({"partition": md.partition, "offset": md.offset})
        progress.update(len(futures), f", {len(results)} acknowledged", force=True)
    finally:
        progress.done()
        producer.close()
    if args.json:
        _print_json({"topic": args.topic, "produced": len(results), "records": results})
    else:
        print(f"produced {len(results)} record(s) to {args.topic}", file=sys.stderr)
    return 0


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", errors="replace")


@_guard
def consume(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer, TopicPartition

    if (args.partition is None) != (args.offset is None):
        raise CliError("--partition and --offset go together")
    _check_reachable(args)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=_servers(args), group_id=args.group, client_id="odradek-cli",
            auto_offset_reset="earliest" if args.from_beginning else "latest",
            enable_auto_commit=False, consumer_timeout_ms=args.timeout_ms)
    except Exception as e:
        raise CliError(f"cannot connect to {args.bootstrap}: {e}") from e
    count = 0
    # Progress goes to stderr, so only when the records themselves are not on that terminal.
    progress = _Progress(args, "consumed")
    progress.enabled = progress.enabled and not sys.stdout.isatty()
    try:
        if args.partition is not None:
            tp = TopicPartition(args.topic, args.partition)
            consumer.assign([tp])
            consumer.seek(tp, args.offset)
        else:
            admin = _admin(args)
            try:
                _describe_topics(admin, [args.topic])
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


# ---------------------------------------------------------------------------------- groups

def _group_offsets(admin: Any, group: str) -> dict[Any, Any]:
    return dict(admin.list_group_offsets({group: None}).get(group) or {})


def _describe_group(admin: Any, group: str) -> dict[str, Any]:
    info = admin.describe_groups([group]).get(group)
    if info is None or info.get("error"):
        raise CliError(f"group {group!r}: {info.get('error') if info else 'not found'}")
    if info.get("group_state") == "Dead":
        raise CliError(f"group {group!r} does not exist")
    return dict(info)


def _log_ends(admin: Any, tps: list[Any]) -> dict[Any, int]:
    from kafka.admin import OffsetSpec

    if not tps:
        return {}
    got = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
    return {tp: v.offset for tp, v in got.items()}


@_guard
def groups_list(args: argparse.Namespace) -> int:
    admin = _admin(args)
    try:
        groups = sorted(admin.list_groups(), key=lambda g: g["group_id"])
    finally:
        admin.close()
    if args.json:
        _print_json([{"group": g["group_id"], "state": g.get("group_state"),
                      "protocol_type": g.get("protocol_type")} for g in groups])
    else:
        _table(["GROUP", "STATE", "PROTOCOL"],
               [[g["group_id"], g.get("group_state") or "", g.get("protocol_type") or ""]
                for g in groups])
    return 0


@_guard
def groups_describe(args: argparse.Namespace) -> int:
    admin = _admin(args)
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
        parts.append({"topic": tp.topic, "partition": tp.partition, "committed": committed,
                      "log_end": end, "lag": lag})
    members = [{"member_id": m.get("member_id"), "client_id": m.get("client_id"),
                "host": m.get("client_host")} for m in info.get("members") or []]
    view = {"group": args.group, "state": info.get("group_state"), "members": members,
            "partitions": parts,
            "total_lag": sum(p["lag"] or 0 for p in parts)}
    if args.json:
        _print_json(view)
        return 0
    print(f"Group: {args.group}  State: {view['state']}  Members: {len(members)}  "
          f"TotalLag: {view['total_lag']}")
    _table(["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"],
           [[p["topic"], p["partition"], p["committed"], p["log_end"], p["lag"]]
            for p in parts])
    return 0


@_guard
def groups_delete(args: argparse.Namespace) -> int:
    admin = _admin(args)
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
        _print_json({"group": args.group, "deleted": True})
    else:
        print(f"deleted group {args.group}")
    return 0


@_guard
def groups_reset_offsets(args: argparse.Namespace) -> int:
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    admin = _admin(args)
    try:
        info = _describe_group(admin, args.group)
        if info.get("group_state") not in ("Empty", None, ""):
            raise CliError(f"group {args.group!r} is {info.get('group_state')}; stop its "
                           "consumers before resetting offsets")
        if args.topic:
            t = _describe_topics(admin, [args.topic])[0]
            tps = [TopicPartition(args.topic, p["partition_index"]) for p in t["partitions"]]
        else:
            tps = list(_group_offsets(admin, args.group))
        if not tps:
            raise CliError(f"group {args.group!r} has no committed offsets; give --topic")
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
    rows = sorted(({"topic": tp.topic, "partition": tp.partition,
                    "committed": after[tp].offset if tp in after else None} for tp in tps),
                  key=lambda r: (r["topic"], r["partition"]))
    if args.json:
        _print_json({"group": args.group, "partitions": rows})
    else:
        _table(["TOPIC", "PARTITION", "NEW-OFFSET"],
               [[r["topic"], r["partition"], r["committed"]] for r in rows])
    return 0


# ---------------------------------------------------------------------------- cluster status

def _quorum(address: str, timeout: float = 5.0) -> dict[str, Any]:
    import grpc

    from odradek.controller.rpc import raft_pb2, raft_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = raft_pb2_grpc.RaftServiceStub(channel)
        r = stub.DescribeQuorum(raft_pb2.DescribeQuorumRequest(), timeout=timeout)
    return {"leader_id": r.leader_id, "leader_address": r.leader_address, "term": r.term,
            "high_watermark": r.high_watermark, "answered_by": r.answered_by,
            "voters": [{"node_id": v.node_id, "address": v.address,
                        "log_end_offset": v.log_end_offset,
                        "last_contact_ms_ago": v.last_contact_ms_ago} for v in r.voters],
            "observers": [{"node_id": o.node_id, "address": o.address} for o in r.observers]}


@_guard
def cluster_status(args: argparse.Namespace) -> int:
    admin = _admin(args)
    try:
        cluster = admin.describe_cluster()
        topics = admin.describe_topics(None)
    finally:
        admin.close()
    brokers = sorted(({"id": b["broker_id"], "host": b["host"], "port": b["port"],
                       "rack": b.get("rack"), "fenced": bool(b.get("is_fenced")),
                       "alive": not b.get("is_fenced")} for b in cluster["brokers"]),
                     key=lambda b: b["id"])
    under, offline = [], []
    for t in topics:
        for p in t.get("partitions") or []:
            ref = {"topic": t["name"], **_partition_view(p)}
            if p["leader_id"] is None or p["leader_id"] < 0:
                offline.append(ref)
            elif len(p["isr_nodes"]) < len(p["replica_nodes"]):
                under.append(ref)
    view: dict[str, Any] = {"cluster_id": cluster.get("cluster_id"),
                            "controller_id": cluster.get("controller_id"), "brokers": brokers,
                            "under_replicated_partitions": under,
                            "offline_partitions": offline}
    if args.controller:
        quorum: dict[str, Any] | None = None
        errors = []
        for addr in args.controller:
            try:
                quorum = _quorum(addr)
                break
            except Exception as e:  # noqa: BLE001 - try the next controller
                details = e.details() if hasattr(e, "details") else str(e)
                errors.append(f"{addr}: {details}")
        view["quorum"] = quorum if quorum is not None else {"error": "; ".join(errors)}
    if args.json:
        _print_json(view)
        return 0
    print(f"Cluster: {view['cluster_id']}  Controller: {view['controller_id']}")
    _table(["BROKER", "ADDRESS", "RACK", "STATUS"],
           [[b["id"], f"{b['host']}:{b['port']}", b["rack"] or "",
             "fenced" if b["fenced"] else "alive"] for b in brokers])
    print(f"Under-replicated partitions: {len(under)}")
    for p in under:
        print(f"  {p['topic']}-{p['partition']} replicas={p['replicas']} isr={p['isr']}")
    print(f"Offline partitions: {len(offline)}")
    for p in offline:
        print(f"  {p['topic']}-{p['partition']} replicas={p['replicas']}")
    if "quorum" in view:
        q = view["quorum"]
        if "error" in q:
            print(f"Controller quorum: unreachable ({q['error']})")
        else:
            print(f"Controller quorum: leader {q['leader_id']} ({q['leader_address']}) "
                  f"term {q['term']} high-watermark {q['high_watermark']}")
            _table(["VOTER", "ADDRESS", "LOG-END", "LAST-CONTACT-MS"],
                   [[v["node_id"], v["address"], v["log_end_offset"],
                     v["last_contact_ms_ago"]] for v in q["voters"]])
    return 0


# -------------------------------------------------------------------------------- parsers

def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``topics``, ``produce``, ``consume`` and ``groups``."""
    common = _common()

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

    p = sub.add_parser("produce", parents=[common], help="produce stdin lines as records")
    p.add_argument("topic")
    p.add_argument("--key", help="key for every record")
    p.add_argument("--header", action="append", metavar="KEY=VALUE", help="repeatable")
    p.add_argument("--partition", type=int, help="target partition (default: partitioner)")
    p.add_argument("--acks", default="all", choices=["0", "1", "all"])
    p.add_argument("--progress", action="store_true",
                   help="show progress on stderr even when it is not a terminal")
    p.set_defaults(func=produce)

    p = sub.add_parser("consume", parents=[common], help="print records to stdout")
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


def add_cluster_status(cluster_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``cluster status`` on the existing ``cluster`` action group."""
    p = cluster_sub.add_parser("status", parents=[_common()],
                               help="brokers, fenced brokers, under-replicated/offline "
                                    "partitions, controller quorum")
    p.add_argument("--controller", action="append", metavar="HOST:PORT",
                   help="controller gRPC address for the quorum section (repeatable)")
    p.set_defaults(func=cluster_status)


def find_subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"{parser.prog} has no subcommands")



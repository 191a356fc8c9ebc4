"""``odradek cluster status``: brokers (alive or fenced), under-replicated and offline
partitions, and with ``--controller`` the controller quorum."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from odradek.broker.cli.common import (
    admin_client,
    common_options,
    guard,
    print_json,
    retry,
    table,
)
from odradek.broker.cli.topics import PartitionView


@dataclass(frozen=True, slots=True)
class BrokerView:
    id: int
    host: str
    port: int
    rack: str | None
    fenced: bool
    alive: bool


@dataclass(frozen=True, slots=True)
class TopicPartitionView(PartitionView):
    """A partition named with its topic, as the status lists them."""

    topic: str


@dataclass(frozen=True, slots=True)
class VoterView:
    node_id: int
    address: str
    log_end_offset: int
    last_contact_ms_ago: int


@dataclass(frozen=True, slots=True)
class ObserverView:
    node_id: int
    address: str


@dataclass(frozen=True, slots=True)
class QuorumView:
    leader_id: int
    leader_address: str
    term: int
    high_watermark: int
    answered_by: int
    voters: list[VoterView]
    observers: list[ObserverView]


@dataclass(frozen=True, slots=True)
class QuorumUnreachable:
    """No controller given with --controller answered; why, per controller."""

    error: str


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    cluster_id: str | None
    controller_id: int | None
    brokers: list[BrokerView]
    under_replicated_partitions: list[TopicPartitionView]
    offline_partitions: list[TopicPartitionView]
    # Only asked for with --controller; without it the JSON has no "quorum" at all.
    quorum: QuorumView | QuorumUnreachable | None = None

    def to_json(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        if self.quorum is None:
            del out["quorum"]
        return out


def _quorum(address: str, timeout: float = 5.0) -> QuorumView:
    import grpc

    from odradek.controller.rpc import raft_pb2, raft_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = raft_pb2_grpc.RaftServiceStub(channel)
        r = stub.DescribeQuorum(raft_pb2.DescribeQuorumRequest(), timeout=timeout)
    return QuorumView(r.leader_id, r.leader_address, r.term, r.high_watermark, r.answered_by,
                      [VoterView(v.node_id, v.address, v.log_end_offset, v.last_contact_ms_ago)
                       for v in r.voters],
                      [ObserverView(o.node_id, o.address) for o in r.observers])


def _ask_quorum(controllers: list[str]) -> QuorumView | QuorumUnreachable:
    """The quorum as the first controller that answers describes it."""
    errors = []
    for addr in controllers:
        try:
            return _quorum(addr)
        except Exception as e:  # noqa: BLE001 - try the next controller
            details = e.details() if hasattr(e, "details") else str(e)
            errors.append(f"{addr}: {details}")
    return QuorumUnreachable("; ".join(errors))


def _partition_lines(parts: list[TopicPartitionView], internal: set[str],
                     include_internal: bool, *, with_isr: bool) -> list[str]:
    """One line per partition; an internal topic's (__consumer_offsets has 50) summed up in
    one line unless asked for."""
    lines = []
    folded: dict[str, int] = {}
    for p in sorted(parts, key=lambda p: (p.topic, p.partition)):
        if p.topic in internal and not include_internal:
            folded[p.topic] = folded.get(p.topic, 0) + 1
            continue
        lines.append(f"  {p.topic}-{p.partition} replicas={p.replicas}"
                     + (f" isr={p.isr}" if with_isr else ""))
    for topic, n in sorted(folded.items()):
        lines.append(f"  {topic}: {n} partition(s) (internal; --include-internal lists them)")
    return lines


@guard
def cluster_status(args: argparse.Namespace) -> int:
    admin = admin_client(args)
    try:
        # A dead broker stays listed (leading nothing) until its session timeout, as in
        # Kafka: a request kafka-python sends it fails to connect, and the next goes to
        # another broker.
        cluster = retry(admin.describe_cluster)
        topics = retry(lambda: admin.describe_topics(None))
    finally:
        admin.close()
    brokers = sorted((BrokerView(b["broker_id"], b["host"], b["port"], b.get("rack"),
                                 bool(b.get("is_fenced")), not b.get("is_fenced"))
                      for b in cluster["brokers"]),
                     key=lambda b: b.id)
    under: list[TopicPartitionView] = []
    offline: list[TopicPartitionView] = []
    internal = {t["name"] for t in topics if t.get("is_internal") or t["name"].startswith("__")}
    for t in topics:
        for p in t.get("partitions") or []:
            v = PartitionView.of(p)
            ref = TopicPartitionView(v.partition, v.leader, v.replicas, v.isr,
                                     v.offline_replicas, t["name"])
            if p["leader_id"] is None or p["leader_id"] < 0:
                offline.append(ref)
            elif len(p["isr_nodes"]) < len(p["replica_nodes"]):
                under.append(ref)
    status = ClusterStatus(cluster.get("cluster_id"), cluster.get("controller_id"), brokers,
                           under, offline,
                           _ask_quorum(args.controller) if args.controller else None)
    if args.json:
        print_json(status.to_json())
        return 0
    print(f"Cluster: {status.cluster_id}  Controller: {status.controller_id}")
    table(["BROKER", "ADDRESS", "RACK", "STATUS"],
          [[b.id, f"{b.host}:{b.port}", b.rack or "", "fenced" if b.fenced else "alive"]
           for b in brokers])
    print(f"Under-replicated partitions: {len(under)}")
    for line in _partition_lines(under, internal, args.include_internal, with_isr=True):
        print(line)
    print(f"Offline partitions: {len(offline)}")
    for line in _partition_lines(offline, internal, args.include_internal, with_isr=False):
        print(line)
    q = status.quorum
    if isinstance(q, QuorumUnreachable):
        print(f"Controller quorum: unreachable ({q.error})")
    elif q is not None:
        print(f"Controller quorum: leader {q.leader_id} ({q.leader_address}) "
              f"term {q.term} high-watermark {q.high_watermark}")
        table(["VOTER", "ADDRESS", "LOG-END", "LAST-CONTACT-MS"],
              [[v.node_id, v.address, v.log_end_offset, v.last_contact_ms_ago]
               for v in q.voters])
    return 0


def add_parser(cluster_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``status`` on the existing ``cluster`` action group."""
    p = cluster_sub.add_parser("status", parents=[common_options()],
                               help="brokers, fenced brokers, under-replicated/offline "
                                    "partitions, controller quorum")
    p.add_argument("--controller", action="append", metavar="HOST:PORT",
                   help="controller gRPC address for the quorum section (repeatable)")
    p.add_argument("--include-internal", action="store_true",
                   help="list the partitions of internal topics (__consumer_offsets) one by "
                        "one instead of one line per topic")
    p.set_defaults(func=cluster_status)

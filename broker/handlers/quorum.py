"""DescribeQuorum over the Kafka protocol (KIP-595, KIP-853): the metadata quorum of the
``__cluster_metadata`` topic's one partition, as its leader sees it. What
``kafka-metadata-quorum.sh --bootstrap-server ... describe --status/--replication`` and
the admin clients' describeMetadataQuorum ask a broker; as Kafka's brokers forward it to the
controller, this broker asks the quorum's leader (MetadataPlane.describe_quorum).

It needs DESCRIBE on the CLUSTER, as Kafka's controller checks; without it the answer is
CLUSTER_AUTHORIZATION_FAILED and nothing about the quorum.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, cluster_allowed, message
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata.requests import (
    ControllerCallFailed,
    QuorumDescription,
    QuorumReplica,
)
from odradek.storage.meta_properties import decode_uuid

METADATA_TOPIC = "__cluster_metadata"
NO_DIRECTORY = uuid.UUID(int=0)


def directory_uuid(directory_id: str) -> uuid.UUID:
    """A directory id (Kafka's Uuid text, "" unknown) as the wire's Uuid (zero: unknown)."""
    return uuid.UUID(bytes=decode_uuid(directory_id)) if directory_id else NO_DIRECTORY


class QuorumNode(Protocol):
    """What DescribeQuorum uses of the node: the quorum's description."""

    async def describe_quorum(self) -> QuorumDescription: ...

    @property
    def authorization(self) -> Authorization: ...


def _replica(r: QuorumReplica, leader_log_end: int, now_ms: int) -> dict[str, Any]:
    fetched = now_ms - r.last_contact_ms_ago if r.last_contact_ms_ago >= 0 else -1
    # Kafka's "last caught up": when the replica last had everything the leader had. Known
    # here only for a replica that has it now (as of its last contact).
    caught_up = fetched if fetched >= 0 and r.log_end_offset >= leader_log_end else -1
    return {"replica_id": r.node_id, "replica_directory_id": directory_uuid(r.directory_id),
            "log_end_offset": r.log_end_offset, "last_fetch_timestamp": fetched,
            "last_caught_up_timestamp": caught_up}


def _partition_error(index: int, code: ErrorCode, message: str) -> dict[str, Any]:
    return {"partition_index": index, "error_code": code, "error_message": message,
            "leader_id": -1, "leader_epoch": -1, "high_watermark": -1,
            "current_voters": [], "observers": []}


async def handle_describe_quorum(node: QuorumNode, ctx: RequestContext, req: Any) -> Payload:
    if not cluster_allowed(node.authorization, ctx, AclOperation.DESCRIBE):
        code = ErrorCode.cluster_authorization_failed
        return ctx.respond({"error_code": code, "error_message": message(code),
                            "topics": [], "nodes": []})
    asked = [(t.topic_name, p.partition_index) for t in req.topics for p in t.partitions]
    if asked != [(METADATA_TOPIC, 0)]:
        # Kafka's raft client describes its one partition only.
        return ctx.respond({
            "error_code": ErrorCode.none, "error_message": None, "nodes": [],
            "topics": [{"topic_name": name, "partitions": [_partition_error(
                index, ErrorCode.unknown_topic_or_partition,
                f"only {METADATA_TOPIC}-0 has a quorum")]} for name, index in asked]})
    try:
        q = await node.describe_quorum()
    except ControllerCallFailed as e:
        # Retriable: no leader known or reachable (an election, a partition).
        return ctx.respond({
            "error_code": ErrorCode.none, "error_message": None, "nodes": [],
            "topics": [{"topic_name": METADATA_TOPIC, "partitions": [_partition_error(
                0, ErrorCode.not_leader_or_follower, str(e))]}]})
    now_ms = int(time.time() * 1000)
    leader_end = next((v.log_end_offset for v in q.voters if v.node_id == q.leader_id), -1)
    partition = {
        "partition_index": 0, "error_code": ErrorCode.none, "error_message": None,
        "leader_id": q.leader_id, "leader_epoch": q.leader_epoch,
        "high_watermark": q.high_watermark,
        "current_voters": [_replica(v, leader_end, now_ms) for v in q.voters],
        "observers": [_replica(o, leader_end, now_ms) for o in q.observers],
    }
    nodes = [{"node_id": node_id, "listeners": [{"name": "CONTROLLER", "host": host,
                                                   "port": port}]}
             for node_id, (host, port) in sorted(q.voter_endpoints.items())]
    return ctx.respond({"error_code": ErrorCode.none, "error_message": None,
                        "topics": [{"topic_name": METADATA_TOPIC, "partitions": [partition]}],
                        "nodes": nodes})


APIS: tuple[ApiSpec[QuorumNode], ...] = (
    ApiSpec(55, 0, 2, handle_describe_quorum),
)

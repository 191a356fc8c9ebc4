"""AlterPartitionReassignments (45) and ListPartitionReassignments (46): moving partitions
between brokers (KIP-455, Kafka's ``kafka-reassign-partitions.sh``).

The active controller runs the reassignment (controller/quorum/reassignment.py); brokers
follow the replica sets in the metadata: a broker that gains a replica starts following the
leader, the leader adds it to the ISR once it has caught up, which completes the move, and a
broker that lost a replica deletes it. The list is answered from this broker's image.

As Kafka's (ControllerApis): Alter needs ALTER on the CLUSTER, List DESCRIBE on the
CLUSTER; a refusal is the top-level CLUSTER_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.admin import controller_failure
from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, cluster_allowed
from odradek.broker.handlers.authz import message as denial
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata import MetadataImage
from odradek.controller.metadata.requests import (
    ControllerApi,
    ControllerCallFailed,
    ReassignmentRequest,
    ReassignmentResult,
)


class ReassignmentNode(Protocol):
    @property
    def image(self) -> MetadataImage: ...

    @property
    def controller(self) -> ControllerApi: ...

    @property
    def authorization(self) -> Authorization: ...


async def handle_alter_partition_reassignments(node: ReassignmentNode, ctx: RequestContext,
                                               req: Any) -> Payload:
    allow_rf_change = bool(getattr(req, "allow_replication_factor_change", True))
    asked = [ReassignmentRequest(str(t.name), int(p.partition_index),
                                 None if p.replicas is None else tuple(int(b) for b in p.replicas))
             for t in req.topics for p in t.partitions]

    def answer(code: int, message: str | None, results: list[ReassignmentResult]) -> Payload:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for r in results:
            by_topic.setdefault(r.topic, []).append({
                "partition_index": r.partition, "error_code": ErrorCode(r.error_code),
                "error_message": r.error_message})
        return ctx.respond({
            "throttle_time": 0, "allow_replication_factor_change": allow_rf_change,
            "error_code": code, "error_message": message,
            "responses": [{"name": name, "partitions": parts}
                          for name, parts in by_topic.items()]})

    if not cluster_allowed(node.authorization, ctx, AclOperation.ALTER):
        code = ErrorCode.cluster_authorization_failed
        return answer(code, denial(code), [])
    try:
        results = await node.controller.alter_partition_reassignments(
            asked, allow_replication_factor_change=allow_rf_change)
    except ControllerCallFailed as e:
        code, message = controller_failure(e)
        return answer(ErrorCode.none, None,
                      [ReassignmentResult(r.topic, r.partition, code, message) for r in asked])
    return answer(ErrorCode.none, None, results)


async def handle_list_partition_reassignments(node: ReassignmentNode, ctx: RequestContext,
                                              req: Any) -> Payload:
    if not cluster_allowed(node.authorization, ctx, AclOperation.DESCRIBE):
        code = ErrorCode.cluster_authorization_failed
        return ctx.respond({"throttle_time": 0, "error_code": code,
                            "error_message": denial(code), "topics": []})
    image = node.image
    if req.topics is None:
        wanted = [(t.name, sorted(t.partitions)) for t in
                  sorted(image.topics.values(), key=lambda t: t.name)]
    else:
        wanted = [(str(t.name), [int(i) for i in t.partition_indexes]) for t in req.topics]
    topics = []
    for name, indexes in wanted:
        topic = image.topics.get(name)
        if topic is None:
            continue  # as Kafka: a partition that is not being reassigned is left out
        parts = []
        for index in dict.fromkeys(indexes):
            reg = topic.partitions.get(index)
            if reg is not None and reg.reassigning:
                parts.append({"partition_index": index, "replicas": list(reg.replicas),
                              "adding_replicas": list(reg.adding),
                              "removing_replicas": list(reg.removing)})
        if parts:
            topics.append({"name": name, "partitions": parts})
    return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.none,
                        "error_message": None, "topics": topics})


APIS: tuple[ApiSpec[ReassignmentNode], ...] = (
    ApiSpec(45, 0, 1, handle_alter_partition_reassignments),
    ApiSpec(46, 0, 0, handle_list_partition_reassignments),
)

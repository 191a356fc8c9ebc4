"""ApiVersions, Metadata, DescribeCluster, FindCoordinator and DescribeTopicPartitions.

Authorization is Kafka's. Metadata and DescribeTopicPartitions answer only the topics the
principal may DESCRIBE: a topic asked for by name without it is answered
TOPIC_AUTHORIZATION_FAILED (its existence undisclosed), and "every topic" silently leaves
it out; creating a topic on the fly needs CREATE on the CLUSTER or on the TOPIC. The
KIP-430 authorized-operations fields hold what the authorizer allows (every supported
operation without one); DescribeCluster's needs DESCRIBE on the CLUSTER, else it is 0.
FindCoordinator needs DESCRIBE on the GROUP or TRANSACTIONAL_ID it names.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker import acl_operations, features
from odradek.broker.config import NodeConfig
from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    cluster_allowed,
    message,
)
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata import MetadataImage, PartitionRegistration
from odradek.controller.metadata.names import topic_name_error

log = logging.getLogger("odradek.meta")

OFFSETS_TOPIC = "__consumer_offsets"
TRANSACTION_STATE_TOPIC = "__transaction_state"
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC})
# FindCoordinator key types.
GROUP_KEY = 0
TRANSACTION_KEY = 1


class MetaNode(Protocol):
    """What ApiVersions, Metadata, DescribeCluster and FindCoordinator use of the node."""

    @property
    def node_id(self) -> int: ...

    @property
    def cluster_id(self) -> str: ...

    @property
    def config(self) -> NodeConfig: ...

    @property
    def image(self) -> MetadataImage: ...

    @property
    def active_controller_id(self) -> int: ...

    @property
    def authorization(self) -> Authorization: ...

    def api_versions_list(self) -> list[dict[str, int]]: ...

    async def auto_create_topics(self, names: list[str]) -> None: ...

    async def coordinator_endpoint(self, key: str, key_type: int, listener_name: str
                                   ) -> tuple[int, str, int] | None:
        """The coordinator of a group (GROUP_KEY) or transactional id (TRANSACTION_KEY):
        the leader of its internal topic's partition, created on first use."""
        ...


def controller_id_for_clients(node: MetaNode) -> int:
    """Clients cannot reach KRaft controllers, so Kafka names a live broker instead. Here the
    active controller when it is a live broker too (combined nodes), else the lowest live
    broker: every broker gives the same answer, and `cluster status` shows the controller
    that is active (an answer that depended on which broker was asked changed from call to
    call)."""
    live = node.image.unfenced_broker_ids()
    active = node.active_controller_id
    if active in live:
        return active
    return min(live) if live else -1


async def handle_api_versions(node: MetaNode, ctx: RequestContext, req: Any) -> Payload:
    # Features (KIP-584) from v3; kio leaves them out of older versions' answers.
    return ctx.respond({"error_code": ErrorCode.none, "api_keys": node.api_versions_list(),
                        "throttle_time": 0, **features.api_versions_fields(node.image)})


def _partition_entry(node: MetaNode, index: int, reg: PartitionRegistration) -> dict[str, Any]:
    live = set(node.image.unfenced_broker_ids())
    leader = reg.leader
    err = ErrorCode.none if leader >= 0 and leader in live else ErrorCode.leader_not_available
    return {
        "error_code": err,
        "partition_index": index,
        "leader_id": leader if leader in live else -1,
        "leader_epoch": reg.leader_epoch,
        "replica_nodes": list(reg.replicas),
        "isr_nodes": list(reg.isr),
        "offline_replicas": [r for r in reg.replicas if r not in live],
    }


def topic_entry(node: MetaNode, name: str, *, operations: int = acl_operations.OMITTED
                ) -> dict[str, Any]:
    """Metadata's answer for one topic the principal may describe; ``operations``: its
    KIP-430 authorized operations (OMITTED when the client did not ask)."""
    t = node.image.topics.get(name)
    if t is None:
        return {"error_code": ErrorCode.unknown_topic_or_partition, "name": name,
                "topic_id": None, "partitions": [], "topic_authorized_operations": operations}
    return {
        "error_code": ErrorCode.none,
        "name": name,
        "topic_id": t.topic_id,
        "is_internal": name in INTERNAL_TOPICS,
        "partitions": [_partition_entry(node, i, reg) for i, reg in sorted(t.partitions.items())],
        "topic_authorized_operations": operations,
    }


def _unauthorized_topic(name: str | None, topic_id: uuid.UUID | None = None,
                        is_internal: bool = False) -> dict[str, Any]:
    """A topic the principal may not see (or create): no id unless asked for by id (ids
    are not secret, names are), no partitions."""
    return {"error_code": ErrorCode.topic_authorization_failed, "name": name,
            "topic_id": topic_id, "is_internal": is_internal, "partitions": []}


class _TopicAccess:
    """The DESCRIBE and CREATE decisions of one Metadata request, each asked once."""

    def __init__(self, node: MetaNode, ctx: RequestContext, asked_operations: bool) -> None:
        self.authorization = node.authorization
        self.enabled = self.authorization.enabled
        self.ctx = ctx
        self.asked_operations = asked_operations
        self._describe: dict[str, bool] = {}
        self._cluster_create: bool | None = None

    def describable(self, name: str) -> bool:
        if not self.enabled:
            return True
        allowed = self._describe.get(name)
        if allowed is None:
            allowed = self._describe[name] = self.authorization.allowed(
                self.ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, name)
        return allowed

    def creatable(self, name: str) -> bool:
        """CREATE on the CLUSTER, or else on the topic (Kafka's auto-creation check)."""
        if not self.enabled:
            return True
        if self._cluster_create is None:
            self._cluster_create = cluster_allowed(self.authorization, self.ctx,
                                                   AclOperation.CREATE)
        return self._cluster_create or self.authorization.allowed(
            self.ctx, AclOperation.CREATE, ResourceType.TOPIC, name)

    def operations(self, name: str) -> int:
        if not self.asked_operations:
            return acl_operations.OMITTED
        return self.authorization.operations(self.ctx, ResourceType.TOPIC, name,
                                             acl_operations.TOPIC)


def _cluster_operations(node: MetaNode, ctx: RequestContext, asked: bool) -> int:
    """KIP-430's cluster field: OMITTED unless asked; 0 without DESCRIBE on the cluster
    (Kafka's rule), else the cluster operations the principal may do."""
    if not asked:
        return acl_operations.OMITTED
    authorization = node.authorization
    if not cluster_allowed(authorization, ctx, AclOperation.DESCRIBE):
        return 0
    return authorization.operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME,
                                    acl_operations.CLUSTER)


async def handle_metadata(node: MetaNode, ctx: RequestContext, req: Any) -> Payload:
    image = node.image
    requested = req.topics
    # KIP-430 (v8+): the operations the client may perform, when it asks.
    access = _TopicAccess(node, ctx, bool(getattr(req, "include_topic_authorized_operations",
                                                  False)))
    cluster_ops = bool(getattr(req, "include_cluster_authorized_operations", False))
    if requested is None or (ctx.api_version == 0 and len(requested) == 0):
        # Every topic: those the principal may not describe are left out, unmentioned.
        names = sorted(image.topics)
        if access.enabled:
            allowed = access.authorization.allowed_names(ctx, AclOperation.DESCRIBE,
                                                         ResourceType.TOPIC, names)
            names = [n for n in names if n in allowed]
        requested_entries: list[dict[str, Any]] = [
            topic_entry(node, n, operations=access.operations(n)) for n in names]
    else:
        allow_auto = bool(getattr(req, "allow_auto_topic_creation", True)) \
            and bool(node.config["auto.create.topics.enable"])
        requested_entries = []
        to_create = []
        for rt in requested:
            name = rt.name
            if name is None and ctx.api_version < 12:
                # v10/v11 requests may carry a null name, but their responses cannot (and
                # Kafka serves topic ids only from v12): refuse it, as Kafka does.
                requested_entries.append({"error_code": ErrorCode.invalid_request,
                                          "name": "", "topic_id": None, "partitions": []})
                continue
            tid = getattr(rt, "topic_id", None)
            if name is None or (ctx.api_version >= 12 and tid is not None and tid.int != 0):
                # v12+: a topic named by its id is looked up by it, whatever the name says
                # (Kafka's KafkaApis; the Java consumer sends "" as the name, e.g. to learn
                # the names of the topics a regex subscription was assigned, KIP-848).
                t = image.topics_by_id.get(tid) if tid is not None else None
                if t is None:
                    requested_entries.append({"error_code": ErrorCode.unknown_topic_id,
                                              "name": None, "topic_id": tid, "partitions": []})
                elif not access.describable(t.name):
                    requested_entries.append(_unauthorized_topic(None, tid))
                else:
                    requested_entries.append(topic_entry(node, t.name,
                                                         operations=access.operations(t.name)))
                continue
            if not access.describable(name):
                # Before looking the name up: its existence is not this principal's business.
                requested_entries.append(_unauthorized_topic(name))
                continue
            if name in image.topics:
                requested_entries.append(topic_entry(node, name,
                                                     operations=access.operations(name)))
                continue
            if allow_auto and not access.creatable(name):
                requested_entries.append(_unauthorized_topic(name,
                                                             is_internal=name in INTERNAL_TOPICS))
                continue
            if topic_name_error(name) is not None:
                requested_entries.append({"error_code": ErrorCode.invalid_topic_exception,
                                          "name": name, "topic_id": None, "partitions": [],
                                          "topic_authorized_operations": access.operations(name)})
                continue
            if allow_auto:
                to_create.append(name)
            requested_entries.append({"name": name})
        if to_create:
            await node.auto_create_topics(to_create)
        for entry in requested_entries:
            if len(entry) == 1:  # placeholder for a topic we may just have created
                name = entry["name"]
                entry.update(topic_entry(node, name, operations=access.operations(name)))
                if name in to_create and entry["error_code"] != ErrorCode.none:
                    # Created but not yet visible here: Kafka's answer is "retry shortly".
                    entry["error_code"] = ErrorCode.leader_not_available
    return ctx.respond({
        "throttle_time": 0,
        "brokers": [{"node_id": e.broker_id, "host": e.host, "port": e.port, "rack": e.rack}
                    for e in image.endpoints(ctx.listener_name)],
        "cluster_id": node.cluster_id,
        "controller_id": controller_id_for_clients(node),
        "topics": requested_entries,
        "cluster_authorized_operations": _cluster_operations(node, ctx, cluster_ops),
    })


async def handle_describe_cluster(node: MetaNode, ctx: RequestContext, req: Any) -> Payload:
    include_fenced = bool(getattr(req, "include_fenced_brokers", False))
    endpoint_type = int(getattr(req, "endpoint_type", 1))
    if endpoint_type != 1:
        return ctx.respond({"error_code": ErrorCode.unsupported_endpoint_type,
                            "error_message": "only broker endpoints (type 1) are served",
                            "cluster_id": node.cluster_id, "brokers": []})
    brokers = [{"broker_id": e.broker_id, "host": e.host, "port": e.port, "rack": e.rack,
                "is_fenced": e.fenced}
               for e in node.image.endpoints(ctx.listener_name, include_fenced=include_fenced)]
    asked = bool(getattr(req, "include_cluster_authorized_operations", False))
    # As Kafka's brokers: anyone may describe the cluster; DESCRIBE on it only decides
    # whether the authorized operations are told (0 without it).
    return ctx.respond({"error_code": ErrorCode.none, "cluster_id": node.cluster_id,
                        "controller_id": controller_id_for_clients(node), "brokers": brokers,
                        "endpoint_type": 1, "throttle_time": 0,
                        "cluster_authorized_operations": _cluster_operations(node, ctx,
                                                                              asked)})


async def _coordinator(node: MetaNode, ctx: RequestContext, key: str, key_type: int
                       ) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "node_id": -1, "host": "", "port": -1,
                           "error_message": None}
    if key_type not in (GROUP_KEY, TRANSACTION_KEY):
        out["error_code"] = ErrorCode.invalid_request
        out["error_message"] = (f"unknown coordinator key type {key_type}: 0 (group) and 1 "
                                "(transaction) exist")
        return out
    what = "group" if key_type == GROUP_KEY else "transaction"
    # Kafka authorizes the key first, whatever it is: DESCRIBE on the group or id.
    resource_type, denied = ((ResourceType.GROUP, ErrorCode.group_authorization_failed)
                             if key_type == GROUP_KEY else
                             (ResourceType.TRANSACTIONAL_ID,
                              ErrorCode.transactional_id_authorization_failed))
    if not node.authorization.allowed(ctx, AclOperation.DESCRIBE, resource_type, key):
        out["error_code"] = denied
        out["error_message"] = message(denied)
        return out
    if not key:
        out["error_code"] = (ErrorCode.invalid_group_id if key_type == GROUP_KEY
                             else ErrorCode.invalid_request)
        out["error_message"] = f"{what} coordinator key must not be empty"
        return out
    found = await node.coordinator_endpoint(key, key_type, ctx.listener_name)
    if found is None:
        out["error_code"] = ErrorCode.coordinator_not_available
        out["error_message"] = f"the {what} coordinator is not available yet; retry"
        return out
    out["error_code"] = ErrorCode.none
    out["node_id"], out["host"], out["port"] = found
    return out


async def handle_find_coordinator(node: MetaNode, ctx: RequestContext, req: Any) -> Payload:
    if ctx.api_version >= 4:
        coordinators = [await _coordinator(node, ctx, k, req.key_type)
                        for k in req.coordinator_keys]
        return ctx.respond({"throttle_time": 0, "coordinators": coordinators})
    one = await _coordinator(node, ctx, req.key, getattr(req, "key_type", 0))
    one.pop("key")
    one["throttle_time"] = 0
    return ctx.respond(one)


# Kafka's cap on partitions per DescribeTopicPartitions answer
# (max.request.partition.size.limit); a client may ask for fewer.
DESCRIBE_PARTITIONS_LIMIT = 2000


async def handle_describe_topic_partitions(node: MetaNode, ctx: RequestContext, req: Any
                                           ) -> Payload:
    """KIP-966: topics with their partitions, ELR included, a page at a time. Topics go in
    name order and partitions in index order from the cursor; the answer stops at the
    partition limit and names where the next page starts."""
    image = node.image
    cursor = req.cursor
    asked = [t.name for t in req.topics]
    if cursor is not None and asked and cursor.topic_name not in asked:
        # Kafka refuses the request, answering each topic asked for with the error.
        return ctx.respond({"throttle_time": 0, "next_cursor": None, "topics": [
            {"error_code": ErrorCode.invalid_request, "name": name,
             "topic_id": uuid.UUID(int=0), "is_internal": False, "partitions": [],
             "topic_authorized_operations": acl_operations.OMITTED} for name in asked]})
    fetch_all = not asked
    names = sorted(set(asked)) if asked else sorted(image.topics)
    if cursor is not None:
        names = [n for n in names if n >= cursor.topic_name]
    limit = max(1, min(int(req.response_partition_limit), DESCRIBE_PARTITIONS_LIMIT))
    authorization = node.authorization
    check = authorization.enabled
    topics: list[dict[str, Any]] = []
    # Kafka's handler answers the topics asked for that the principal may not describe
    # after the others, undisclosed (no id); "every topic" leaves them out. As Kafka's, the
    # names are authorized as the page is filled, so none past the page's end are.
    unauthorized: list[dict[str, Any]] = []
    next_cursor = None
    left = limit
    for name in names:
        if check and not authorization.allowed(ctx, AclOperation.DESCRIBE,
                                               ResourceType.TOPIC, name):
            if not fetch_all:
                unauthorized.append({"error_code": ErrorCode.topic_authorization_failed,
                                     "name": name, "topic_id": uuid.UUID(int=0),
                                     "is_internal": False, "partitions": [],
                                     "topic_authorized_operations": acl_operations.OMITTED})
            continue
        t = image.topics.get(name)
        if t is None:
            topics.append({"error_code": ErrorCode.unknown_topic_or_partition, "name": name,
                           "topic_id": uuid.UUID(int=0), "is_internal": False,
                           "partitions": [], "topic_authorized_operations": authorization.operations(
                               ctx, ResourceType.TOPIC, name, acl_operations.TOPIC)})
            continue
        first = cursor.partition_index if cursor is not None and name == cursor.topic_name \
            else 0
        indexes = [i for i in sorted(t.partitions) if i >= first]
        if not indexes and first > 0:
            continue
        if left <= 0:
            next_cursor = {"topic_name": name, "partition_index": indexes[0] if indexes else 0}
            break
        page, rest = indexes[:left], indexes[left:]
        left -= len(page)
        # Metadata's partition entry, with the ELR; Kafka keeps the ELR members last known
        # before the ELR emptied, to pick an unclean leader from; the image does not.
        parts = [{**_partition_entry(node, i, t.partitions[i]),
                  "eligible_leader_replicas": list(t.partitions[i].elr),
                  "last_known_elr": []} for i in page]
        topics.append({"error_code": ErrorCode.none, "name": name, "topic_id": t.topic_id,
                       "is_internal": name in INTERNAL_TOPICS, "partitions": parts,
                       "topic_authorized_operations": authorization.operations(
                           ctx, ResourceType.TOPIC, name, acl_operations.TOPIC)})
        if rest:
            next_cursor = {"topic_name": name, "partition_index": rest[0]}
            break
    return ctx.respond({"throttle_time": 0, "topics": topics + unauthorized,
                        "next_cursor": next_cursor})


APIS: tuple[ApiSpec[MetaNode], ...] = (
    ApiSpec(18, 0, 4, handle_api_versions),
    ApiSpec(3, 0, 12, handle_metadata),
    ApiSpec(60, 0, 2, handle_describe_cluster),
    ApiSpec(10, 0, 6, handle_find_coordinator),
    ApiSpec(75, 0, 0, handle_describe_topic_partitions),
)

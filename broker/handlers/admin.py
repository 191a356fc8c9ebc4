"""Admin APIs: topics, partitions and configs. Every change goes through the controller.

Authorization is Kafka's (its KRaft ControllerApis and ConfigHelper): CreateTopics needs
CREATE on the CLUSTER or on each TOPIC, and answers a created topic's configs only with
DESCRIBE_CONFIGS on it; DeleteTopics DELETE on the CLUSTER or on each TOPIC (a topic the
principal may not DESCRIBE is refused before its existence is looked at); CreatePartitions
ALTER on the TOPIC; DescribeConfigs DESCRIBE_CONFIGS and AlterConfigs and
IncrementalAlterConfigs ALTER_CONFIGS, on the TOPIC for topics and on the CLUSTER for
brokers; ElectLeaders ALTER on the CLUSTER. Refused items never reach the controller.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any, Protocol, TypeVar

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.config import SENSITIVE_KEYS, NodeConfig
from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, ResourceType, cluster_allowed
from odradek.broker.handlers.authz import message as denial
from odradek.broker.security.authorization import Authorization
from odradek.broker.security.quotas import (
    ControllerMutationQuotaManager,
    is_strict_mutation_quota,
)
from odradek.broker.security.throttling import quota_user
from odradek.broker.topic_configs import (
    BROKER_TOPIC_DEFAULTS,
    DYNAMIC_DEFAULT_BROKER_CONFIG,
    TOPIC_CONFIG,
)
from odradek.controller.metadata import BROKER_RESOURCE, TOPIC_RESOURCE, MetadataImage
from odradek.controller.metadata.broker_configs import DYNAMIC_BROKER_KEYS_BY_NAME
from odradek.controller.metadata.requests import (
    AlterConfigOp,
    AlterConfigsResource,
    AlterConfigsResult,
    ControllerApi,
    ControllerCallFailed,
    CreatePartitionsSpec,
    CreateTopicSpec,
    DeleteTopicResult,
    DeleteTopicSpec,
    ElectionType,
    ElectLeadersResult,
    IncrementalAlterConfigsResource,
    NotControllerError,
)

# Topic key -> the broker key whose value is its default (Kafka's topic config synonyms).
_BROKER_KEY_OF_TOPIC_KEY = {t: b for b, t in BROKER_TOPIC_DEFAULTS.items()}

# (name, value, Kafka config source, documentation, Kafka config type) of one config key.
ConfigRow = tuple[str, str, int, str, int]


class AdminNode(Protocol):
    """What the topic, partition and config APIs use of the node."""

    @property
    def node_id(self) -> int: ...

    @property
    def image(self) -> MetadataImage: ...

    @property
    def controller(self) -> ControllerApi: ...

    @property
    def authorization(self) -> Authorization: ...

    @property
    def mutation_quotas(self) -> ControllerMutationQuotaManager: ...

    @property
    def config(self) -> NodeConfig: ...

    def describe_topic_configs(self, topic: str) -> list[ConfigRow]: ...

    def describe_broker_configs(self) -> list[ConfigRow]: ...

    def describe_cluster_default_configs(self) -> list[ConfigRow]: ...

    def broker_config_synonyms(self, name: str) -> list[tuple[str, str, int]]: ...


def controller_failure(e: Exception) -> tuple[ErrorCode, str]:
    """The per-item error a client retries on, instead of a dropped connection."""
    code = (ErrorCode.not_controller if isinstance(e, NotControllerError)
            else ErrorCode.request_timed_out)
    return code, f"the controller quorum did not complete the request: {e}"


def _config_entries(node: AdminNode, topic: str, keys: Collection[str] | None = None
                    ) -> list[dict[str, Any]]:
    return [{"name": name, "value": value, "read_only": False, "config_source": source,
             "is_sensitive": False}
            for name, value, source, _doc, _type in node.describe_topic_configs(topic)
            if keys is None or name in keys]


def _unique_names(names: Sequence[str]) -> set[str]:
    """Names a request gives once: the others are the controller's to refuse as
    duplicates, whatever the principal may do (Kafka leaves them out of authorization)."""
    return {name for name, n in Counter(names).items() if n == 1}


async def handle_create_topics(node: AdminNode, ctx: RequestContext, req: Any) -> Payload:
    authorization = node.authorization
    refused: set[str] = set()  # no CREATE: answered here
    hidden: set[str] = set()  # created, but no DESCRIBE_CONFIGS: configs not answered
    if authorization.enabled:
        unique = _unique_names([t.name for t in req.topics])
        if not cluster_allowed(authorization, ctx, AclOperation.CREATE):
            refused = unique - authorization.allowed_names(ctx, AclOperation.CREATE,
                                                           ResourceType.TOPIC, unique)
        hidden = unique - authorization.allowed_names(ctx, AclOperation.DESCRIBE_CONFIGS,
                                                      ResourceType.TOPIC, unique)
    quota_refused, throttle = set[str](), 0
    if not req.validate_only:
        quota_refused, throttle = _charge_mutations(node, ctx, [
            (t.name, _created_partitions(node, t)) for t in req.topics
            if t.name not in refused])
    asked = [t for t in req.topics if t.name not in refused | quota_refused]
    specs = []
    for t in asked:
        specs.append(CreateTopicSpec(
            name=t.name, num_partitions=t.num_partitions,
            replication_factor=t.replication_factor,
            assignments={a.partition_index: tuple(a.broker_ids) for a in t.assignments},
            configs={c.name: c.value for c in t.configs}))
    try:
        results = (await node.controller.create_topics(specs, validate_only=req.validate_only)
                   if specs else [])
    except ControllerCallFailed as e:
        code, message = controller_failure(e)
        return ctx.respond({"throttle_time": throttle, "topics": [
            _refused_topic(t.name) if t.name in refused else
            {"name": t.name, **_QUOTA_REFUSAL, "configs": None} if t.name in quota_refused
            else {"name": t.name, "error_code": code, "error_message": message,
                  "configs": None}
            for t in req.topics]})
    answers = iter(results)
    out = []
    for t in req.topics:
        if t.name in refused:
            out.append(_refused_topic(t.name))
            continue
        if t.name in quota_refused:
            out.append({"name": t.name, **_QUOTA_REFUSAL, "configs": None})
            continue
        r = next(answers)
        entry: dict[str, Any] = {"name": r.name, "topic_id": r.topic_id,
                                 "error_code": r.error_code, "error_message": r.error_message,
                                 "num_partitions": r.num_partitions,
                                 "replication_factor": r.replication_factor, "configs": None}
        if r.error_code == ErrorCode.none:
            if r.name in hidden:
                # Kafka's controller: created, but its settings are not told to a principal
                # that may not describe its configs.
                entry.update(num_partitions=-1, replication_factor=-1, configs=[],
                             topic_config_error_code=ErrorCode.topic_authorization_failed)
            elif req.validate_only:
                entry["configs"] = [{"name": k, "value": v, "config_source": 1}
                                    for k, v in r.configs.items()]
            else:
                entry["configs"] = _config_entries(node, r.name)
        out.append(entry)
    return ctx.respond({"throttle_time": throttle, "topics": out})


K = TypeVar("K")  # what identifies a topic in a request: its name, or its index

# Kafka's THROTTLING_QUOTA_EXCEEDED answer for a topic refused by controller_mutation_rate.
_QUOTA_REFUSAL = {"error_code": ErrorCode.throttling_quota_exceeded,
                  "error_message": "The throttling quota has been exceeded."}


def _charge_mutations(node: AdminNode, ctx: RequestContext, topics: Sequence[tuple[K, int]]
                      ) -> tuple[set[K], int]:
    """Charge each topic's partition mutations to the client's controller_mutation_rate
    quota (KIP-599), in order: the topics a strict quota refuses (CreateTopics v6+,
    DeleteTopics v5+, CreatePartitions v3+), and the response's throttle time. Charged
    before the controller validates them, unlike Kafka, so an invalid topic costs too."""
    now = time.monotonic()
    quota = node.mutation_quotas.new_quota(
        quota_user(ctx.principal), ctx.client_id or "",
        is_strict_mutation_quota(ctx.api_key, ctx.api_version), now)
    refused = {key for key, partitions in topics if not quota.record(partitions, now)}
    return refused, quota.throttle_time_ms(now)


def _created_partitions(node: AdminNode, t: Any) -> int:
    if t.num_partitions > 0:
        return int(t.num_partitions)
    if t.assignments:
        return len(t.assignments)
    return int(node.config["num.partitions"])


def _refused_topic(name: str) -> dict[str, Any]:
    # Kafka's ControllerApis message.
    return {"name": name, "topic_id": None, "error_code": ErrorCode.topic_authorization_failed,
            "error_message": "Authorization failed.", "configs": None}


async def handle_delete_topics(node: AdminNode, ctx: RequestContext, req: Any) -> Payload:
    if ctx.api_version >= 6:
        specs = [DeleteTopicSpec(name=t.name, topic_id=t.topic_id) for t in req.topics]
    else:
        specs = [DeleteTopicSpec(name=n) for n in req.topic_names]
    refused = _refused_deletions(node, ctx, specs) if node.authorization.enabled else {}
    image = node.image
    topics = [(i, image.topics_by_id.get(sp.topic_id) if sp.topic_id is not None
               else image.topics.get(sp.name or "")) for i, sp in enumerate(specs)
              if i not in refused]
    quota_refused, throttle = _charge_mutations(node, ctx, [
        (i, len(t.partitions)) for i, t in topics if t is not None])
    for i in quota_refused:
        refused[i] = DeleteTopicResult(specs[i].name, specs[i].topic_id,
                                       ErrorCode.throttling_quota_exceeded,
                                       str(_QUOTA_REFUSAL["error_message"]))
    forwarded = [sp for i, sp in enumerate(specs) if i not in refused]
    try:
        results = await node.controller.delete_topics(forwarded) if forwarded else []
    except ControllerCallFailed as e:
        code, message = controller_failure(e)
        failed = [DeleteTopicResult(sp.name, sp.topic_id, code, message) for sp in forwarded]
        results = failed
    answers = iter(results)
    return ctx.respond({"throttle_time": throttle, "responses": [
        {"name": r.name, "topic_id": r.topic_id, "error_code": r.error_code,
         "error_message": r.error_message}
        for r in (refused[i] if i in refused else next(answers) for i in range(len(specs)))]})


def _refused_deletions(node: AdminNode, ctx: RequestContext, specs: Sequence[DeleteTopicSpec]
                       ) -> dict[int, DeleteTopicResult]:
    """The deletions the principal may not make, by index, answered as Kafka's controller
    does: DELETE on the CLUSTER allows all; otherwise a topic needs DELETE on it, and one
    named without DESCRIBE on it is refused before its existence is looked at. Invalid or
    unknown specs go on to the controller, which says what is wrong with them."""
    authorization = node.authorization
    if cluster_allowed(authorization, ctx, AclOperation.DELETE):
        return {}
    image = node.image
    names: list[str | None] = []
    for sp in specs:
        if sp.name is not None and sp.topic_id is None:
            names.append(sp.name)
        elif sp.name is None and sp.topic_id is not None:
            t = image.topics_by_id.get(sp.topic_id)
            names.append(None if t is None else t.name)
        else:
            names.append(None)
    known = {n for n in names if n is not None}
    describable = authorization.allowed_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC,
                                              known)
    deletable = authorization.allowed_names(ctx, AclOperation.DELETE, ResourceType.TOPIC,
                                            known)
    refused: dict[int, DeleteTopicResult] = {}
    code = ErrorCode.topic_authorization_failed
    for i, (sp, name) in enumerate(zip(specs, names, strict=True)):
        if name is None or name in deletable:
            continue
        if sp.topic_id is not None:
            # Named by id (ids are not secret): the name only if it may be described.
            refused[i] = DeleteTopicResult(name if name in describable else None, sp.topic_id,
                                           code, denial(code))
        elif name not in describable or name in image.topics:
            refused[i] = DeleteTopicResult(name, None, code, denial(code))
        # else: describable and absent, the controller answers UNKNOWN_TOPIC_OR_PARTITION
    return refused


async def handle_create_partitions(node: AdminNode, ctx: RequestContext, req: Any) -> Payload:
    authorization = node.authorization
    refused: set[str] = set()
    if authorization.enabled:
        unique = _unique_names([t.name for t in req.topics])
        refused = unique - authorization.allowed_names(ctx, AclOperation.ALTER,
                                                       ResourceType.TOPIC, unique)
    quota_refused, throttle = set[str](), 0
    if not req.validate_only:
        current = node.image.topics
        quota_refused, throttle = _charge_mutations(node, ctx, [
            (t.name, max(0, t.count - len(current[t.name].partitions))) for t in req.topics
            if t.name not in refused and t.name in current])
    refused_all = refused | quota_refused
    specs = [CreatePartitionsSpec(
        name=t.name, count=t.count,
        assignments=None if t.assignments is None else [tuple(a.broker_ids)
                                                        for a in t.assignments])
        for t in req.topics if t.name not in refused_all]
    denied = {"error_code": ErrorCode.topic_authorization_failed,
              "error_message": denial(ErrorCode.topic_authorization_failed)}
    try:
        results = (await node.controller.create_partitions(specs,
                                                           validate_only=req.validate_only)
                   if specs else [])
    except ControllerCallFailed as e:
        code, message = controller_failure(e)
        return ctx.respond({"throttle_time": throttle, "results": [
            {"name": t.name, **denied} if t.name in refused else
            {"name": t.name, **_QUOTA_REFUSAL} if t.name in quota_refused else
            {"name": t.name, "error_code": code, "error_message": message}
            for t in req.topics]})
    answers = iter(results)
    out = []
    for t in req.topics:
        if t.name in refused:
            out.append({"name": t.name, **denied})
        elif t.name in quota_refused:
            out.append({"name": t.name, **_QUOTA_REFUSAL})
        else:
            r = next(answers)
            out.append({"name": r.name, "error_code": r.error_code,
                        "error_message": r.error_message})
    return ctx.respond({"throttle_time": throttle, "results": out})


def _describe_one(node: AdminNode, res: Any, include_docs: bool, include_synonyms: bool
                  ) -> dict[str, Any]:
    out: dict[str, Any] = {"resource_type": res.resource_type,
                           "resource_name": res.resource_name, "error_code": ErrorCode.none,
                           "error_message": None, "configs": []}
    keys = None if res.configuration_keys is None else set(res.configuration_keys)
    if res.resource_type == TOPIC_RESOURCE:
        if res.resource_name not in node.image.topics:
            out["error_code"] = ErrorCode.unknown_topic_or_partition
            out["error_message"] = f"topic {res.resource_name!r} does not exist"
            return out
        rows = node.describe_topic_configs(res.resource_name)
        read_only: Collection[str] = ()
    elif res.resource_type == BROKER_RESOURCE:
        if res.resource_name not in ("", str(node.node_id)):
            out["error_code"] = ErrorCode.invalid_request
            out["error_message"] = (f"this is broker {node.node_id}; ask broker "
                                    f"{res.resource_name} for its own configuration")
            return out
        if res.resource_name == "":
            # Kafka lists only the cluster-wide dynamic values for the default resource.
            rows = node.describe_cluster_default_configs()
        else:
            rows = node.describe_broker_configs()
        read_only = {name for name, *_ in rows if name not in DYNAMIC_BROKER_KEYS_BY_NAME}
    else:
        out["error_code"] = ErrorCode.invalid_request
        out["error_message"] = (f"resource type {res.resource_type} is not supported "
                                "(2 = topic, 4 = broker)")
        return out
    out["configs"] = [
        {"name": name, "value": None if name in SENSITIVE_KEYS else value,
         "read_only": name in read_only, "config_source": source,
         "is_sensitive": name in SENSITIVE_KEYS, "config_type": ctype,
         "synonyms": ([] if not include_synonyms else
                      [{**syn, "value": None} if name in SENSITIVE_KEYS else syn
                       for syn in _synonyms(node, res, name, value, source)]),
         "documentation": doc if include_docs else None}
        for name, value, source, doc, ctype in rows if keys is None or name in keys]
    return out


def _synonyms(node: AdminNode, res: Any, name: str, value: str, source: int
              ) -> list[dict[str, Any]]:
    """Kafka's synonyms, highest precedence first: a topic key's own override, then the
    levels of the broker key that sets its default (``retention.ms`` -> ``log.retention.ms``);
    a broker key's levels; for the cluster default resource only the cluster-wide value
    (what Kafka 4.1 answers there)."""
    if res.resource_type == TOPIC_RESOURCE:
        own = ([{"name": name, "value": value, "source": TOPIC_CONFIG}]
               if source == TOPIC_CONFIG else [])
        broker_key = _BROKER_KEY_OF_TOPIC_KEY.get(name)
        return own + ([] if broker_key is None else [
            {"name": n, "value": v, "source": s}
            for n, v, s in node.broker_config_synonyms(broker_key)])
    return [{"name": n, "value": v, "source": s}
            for n, v, s in node.broker_config_synonyms(name)
            if res.resource_name != "" or s == DYNAMIC_DEFAULT_BROKER_CONFIG]


# Config resource types other than topics (2) and brokers (4) that Kafka authorizes.
_BROKER_LOGGER, _CLIENT_METRICS, _GROUP_CONFIG = 8, 16, 32


def _config_denial(node: AdminNode, ctx: RequestContext, operation: AclOperation,
                   resource_type: int, name: str, *, broker_logger: bool = True
                   ) -> ErrorCode | None:
    """The error refusing ``operation`` (DESCRIBE_CONFIGS, ALTER_CONFIGS) on a config
    resource, as Kafka: topics on the TOPIC, brokers (and their loggers, client metrics)
    on the CLUSTER, groups on the GROUP. None when allowed, or for a type Kafka does not
    authorize (the resource is refused for what it is further on)."""
    authorization = node.authorization
    if resource_type == TOPIC_RESOURCE:
        target, resource, code = (ResourceType.TOPIC, name,
                                  ErrorCode.topic_authorization_failed)
    elif resource_type in (BROKER_RESOURCE, _CLIENT_METRICS) or (
            broker_logger and resource_type == _BROKER_LOGGER):
        return None if cluster_allowed(authorization, ctx, operation) \
            else ErrorCode.cluster_authorization_failed
    elif resource_type == _GROUP_CONFIG:
        target, resource, code = (ResourceType.GROUP, name,
                                  ErrorCode.group_authorization_failed)
    else:
        return None
    return None if authorization.allowed(ctx, operation, target, resource) else code


async def handle_describe_configs(node: AdminNode, ctx: RequestContext, req: Any) -> Payload:
    include_docs = bool(getattr(req, "include_documentation", False))
    include_synonyms = bool(getattr(req, "include_synonyms", False))
    results = []
    for r in req.resources:
        denied = _config_denial(node, ctx, AclOperation.DESCRIBE_CONFIGS, r.resource_type,
                                r.resource_name)
        if denied is not None:
            results.append({"resource_type": r.resource_type,
                            "resource_name": r.resource_name, "error_code": denied,
                            "error_message": denial(denied), "configs": []})
        else:
            results.append(_describe_one(node, r, include_docs, include_synonyms))
    return ctx.respond({"throttle_time": 0, "results": results})


def _failed_alter(resources: Sequence[AlterConfigsResource | IncrementalAlterConfigsResource],
                  e: Exception) -> list[dict[str, Any]]:
    code, message = controller_failure(e)
    return [{"error_code": code, "error_message": message, "resource_type": r.resource_type,
             "resource_name": r.resource_name} for r in resources]


def _alter_response(results: Sequence[AlterConfigsResult]) -> list[dict[str, Any]]:
    return [{"error_code": r.error_code, "error_message": r.error_message,
             "resource_type": r.resource_type, "resource_name": r.resource_name}
            for r in results]


def _other_broker(node: AdminNode, resource: AlterConfigsResource | IncrementalAlterConfigsResource
                  ) -> AlterConfigsResult | None:
    """As in Kafka, a broker takes per-broker config changes for itself only (clients send
    them to the broker they name); other names go on to the controller's checks."""
    name = resource.resource_name
    if resource.resource_type != BROKER_RESOURCE or not name.isdigit() or \
            int(name) == node.node_id:
        return None
    return AlterConfigsResult(resource.resource_type, name, ErrorCode.invalid_request,
                              f"Unexpected broker id, expected {node.node_id}, but received "
                              f"{name}: send per-broker config changes to that broker.")


async def _alter(node: AdminNode, ctx: RequestContext, req: Any,
                 resources: Sequence[Any], incremental: bool) -> Payload:
    refused = {i: r for i, r in ((i, _other_broker(node, res)) for i, res in enumerate(resources))
               if r is not None}
    if node.authorization.enabled:
        for i, res in enumerate(resources):
            if i in refused:
                continue
            # Legacy AlterConfigs has no broker loggers (Kafka refuses them as invalid).
            denied = _config_denial(node, ctx, AclOperation.ALTER_CONFIGS, res.resource_type,
                                    res.resource_name, broker_logger=incremental)
            if denied is not None:
                refused[i] = AlterConfigsResult(res.resource_type, res.resource_name, denied,
                                                denial(denied))
    forwarded = [res for i, res in enumerate(resources) if i not in refused]
    try:
        if not forwarded:
            answers: list[AlterConfigsResult] = []
        elif incremental:
            answers = await node.controller.incremental_alter_configs(
                forwarded, validate_only=req.validate_only)
        else:
            answers = await node.controller.alter_configs(forwarded,
                                                          validate_only=req.validate_only)
    except ControllerCallFailed as e:
        return ctx.respond({"throttle_time": 0, "responses": _failed_alter(resources, e)})
    it = iter(answers)
    results = [refused[i] if i in refused else next(it) for i in range(len(resources))]
    return ctx.respond({"throttle_time": 0, "responses": _alter_response(results)})


async def handle_alter_configs(node: AdminNode, ctx: RequestContext, req: Any) -> Payload:
    resources = [AlterConfigsResource(r.resource_type, r.resource_name,
                                      {c.name: c.value for c in r.configs})
                 for r in req.resources]
    return await _alter(node, ctx, req, resources, incremental=False)


async def handle_incremental_alter_configs(node: AdminNode, ctx: RequestContext, req: Any) -> Payload:
    resources = [IncrementalAlterConfigsResource(
        r.resource_type, r.resource_name,
        [AlterConfigOp(c.name, c.config_operation, c.value) for c in r.configs])
        for r in req.resources]
    return await _alter(node, ctx, req, resources, incremental=True)


async def handle_elect_leaders(node: AdminNode, ctx: RequestContext, req: Any) -> Payload:
    """Preferred or unclean leader elections (kafka-leader-election.sh); v0 is preferred
    only. A null partition list asks for every partition."""
    asked = None if req.topic_partitions is None else [
        (t.topic, int(p)) for t in req.topic_partitions for p in t.partitions]
    raw_type = int(getattr(req, "election_type", ElectionType.PREFERRED))
    if raw_type not in tuple(ElectionType):
        # Kafka cannot parse such a request: INVALID_REQUEST, for each partition named too.
        message = f"unknown election type {raw_type}: 0 is preferred, 1 unclean"
        return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.invalid_request,
                            "replica_election_results": _election_results(
                                [ElectLeadersResult(t, p, ErrorCode.invalid_request, message)
                                 for t, p in asked or ()])})
    if not cluster_allowed(node.authorization, ctx, AclOperation.ALTER):
        # Kafka's error response: the request's error, on each partition named too.
        code = ErrorCode.cluster_authorization_failed
        return ctx.respond({"throttle_time": 0, "error_code": code,
                            "replica_election_results": _election_results(
                                [ElectLeadersResult(t, p, code, denial(code))
                                 for t, p in asked or ()])})
    election = ElectionType(raw_type)
    try:
        results = await node.controller.elect_leaders(election, asked)
    except ControllerCallFailed as e:
        code, message = controller_failure(e)
        if asked is None:
            return ctx.respond({"throttle_time": 0, "error_code": code,
                                "replica_election_results": []})
        results = [ElectLeadersResult(t, p, code, message) for t, p in asked]
    return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.none,
                        "replica_election_results": _election_results(results)})


def _election_results(results: Sequence[ElectLeadersResult]) -> list[dict[str, Any]]:
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_topic.setdefault(r.topic, []).append({
            "partition_id": r.partition, "error_code": ErrorCode(r.error_code),
            "error_message": r.error_message})
    return [{"topic": topic, "partition_result": parts} for topic, parts in by_topic.items()]


APIS: tuple[ApiSpec[AdminNode], ...] = (
    ApiSpec(19, 2, 7, handle_create_topics),
    ApiSpec(20, 1, 6, handle_delete_topics),
    ApiSpec(37, 0, 3, handle_create_partitions),
    ApiSpec(32, 1, 4, handle_describe_configs),
    ApiSpec(33, 0, 2, handle_alter_configs),
    ApiSpec(44, 0, 1, handle_incremental_alter_configs),
    ApiSpec(43, 0, 2, handle_elect_leaders),
)

"""Kafka API handlers for the group coordinator (classic protocol and offsets).

Each handler turns one kio request of any served version into a coordinator call and
builds the response with ``ctx.respond`` (which drops fields older versions lack). The
per-version differences live here: v0 JoinGroup has no rebalance timeout, JoinGroup v4+
requires a known member id, LeaveGroup v3+ batches members, OffsetCommit v2-v4 carry a
retention time, OffsetFetch v8+ asks for several groups, DescribeGroups v6 reports
missing groups as GROUP_ID_NOT_FOUND, TxnOffsetCommit v3+ names the member and its
generation (KIP-447), and so on.

OffsetCommit v10 and OffsetFetch v10 (KIP-848) name topics by id, in requests and answers,
for groups of either protocol. The ids are resolved through the node's metadata image, as
Fetch v13+ does; the offsets stay keyed by topic name (``__consumer_offsets`` records are
Kafka's, by name). An id the image does not know (never created, deleted, or the old id of
a topic created again under its name) is answered UNKNOWN_TOPIC_ID, before the topic's
authorization is looked at, as Kafka's KafkaApis does: ids are not secret, names are, and
the answer never names the topic. A v10 fetch of every offset leaves out topics the image
no longer has, which no id can name.

Authorization is Kafka's (KafkaApis): the membership APIs (JoinGroup, SyncGroup, Heartbeat,
LeaveGroup) and OffsetCommit need READ on the GROUP; OffsetCommit also READ on each TOPIC;
OffsetFetch DESCRIBE on the GROUP and on each TOPIC (offsets of other topics are left out
of an all-partitions fetch); DescribeGroups DESCRIBE on each GROUP; ListGroups lists every
group with DESCRIBE on the CLUSTER, else those it may DESCRIBE; DeleteGroups DELETE on each
GROUP; OffsetDelete DELETE on the GROUP and READ on each TOPIC; TxnOffsetCommit WRITE on
the TRANSACTIONAL_ID, READ on the GROUP and on each TOPIC. Refused topics never reach the
coordinator.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker import acl_operations
from odradek.broker.group.consumer_membership import Heartbeat
from odradek.broker.group.coordinator import GroupCoordinator
from odradek.broker.group.group import CommittedOffset, TopicPartition
from odradek.broker.group.membership import LeavingMember
from odradek.broker.group.offsets import OffsetCommitEntry
from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, ResourceType, cluster_allowed, message
from odradek.broker.handlers.meta import OFFSETS_TOPIC
from odradek.broker.kafka.codec import ms
from odradek.broker.security.authorization import Authorization
from odradek.broker.txn_verification import TxnVerifier
from odradek.controller.metadata import MetadataImage

# From these versions topics are named by id, not by name (KIP-848).
OFFSET_COMMIT_TOPIC_IDS_VERSION = 10
OFFSET_FETCH_TOPIC_IDS_VERSION = 10


class GroupNode(Protocol):
    """What the group handlers use of the node: its group coordinator, the transaction
    verifier TxnOffsetCommit v5 adds the offsets partition to a transaction with, and the
    metadata image OffsetCommit/OffsetFetch v10 resolve topic ids in."""

    @property
    def groups(self) -> GroupCoordinator: ...

    @property
    def txn_verifier(self) -> TxnVerifier: ...

    @property
    def authorization(self) -> Authorization: ...

    @property
    def image(self) -> MetadataImage: ...


def _may(node: GroupNode, ctx: RequestContext, operation: AclOperation, group_id: str) -> bool:
    """May the principal do ``operation`` to the group?"""
    return node.authorization.allowed(ctx, operation, ResourceType.GROUP, group_id)


def _denied_topics(node: GroupNode, ctx: RequestContext, operation: AclOperation,
                   names: set[str]) -> set[str]:
    """Of ``names``, the topics the principal may not do ``operation`` to."""
    authorization = node.authorization
    if not authorization.enabled:
        return set()
    return names - authorization.allowed_names(ctx, operation, ResourceType.TOPIC, names)


def _client_host(ctx: RequestContext) -> str:
    # Kafka reports hosts as Java's InetAddress.toString(), e.g. "/127.0.0.1"; tools
    # (kafka-consumer-groups) show it verbatim, so match it.
    host = ctx.client_host or ""
    return host if host.startswith("/") else "/" + host


def _group_instance_id(req: Any) -> str | None:
    return getattr(req, "group_instance_id", None)


async def handle_join_group(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    v = ctx.api_version
    if not _may(node, ctx, AclOperation.READ, req.group_id):
        # Kafka's JoinGroup error response.
        return ctx.respond({"error_code": ErrorCode.group_authorization_failed,
                            "generation_id": -1, "protocol_type": None,
                            "protocol_name": None if v >= 7 else "", "leader": "",
                            "member_id": "", "members": []})
    session = ms(req.session_timeout)
    # v0 has no rebalance timeout; Kafka uses the session timeout for it.
    rebalance = session if v == 0 else ms(req.rebalance_timeout)
    instance = _group_instance_id(req)
    fut = node.groups.membership.join_group(
        req.group_id,
        req.member_id,
        group_instance_id=instance,
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx),
        session_timeout_ms=session,
        rebalance_timeout_ms=rebalance,
        protocol_type=req.protocol_type,
        protocols=[(p.name, p.metadata) for p in req.protocols],
        # KIP-394: from v4, a dynamic member first gets its id, then joins with it.
        require_known_member_id=v >= 4 and instance is None,
        supports_skip_assignment=v >= 9,
        reason=getattr(req, "reason", None),
    )
    r = await fut
    protocol_name = r.protocol_name
    if v < 7 and protocol_name is None:
        protocol_name = ""  # not nullable before v7
    return ctx.respond(
        {
            "error_code": r.error,
            "generation_id": r.generation_id,
            "protocol_type": r.protocol_type,
            "protocol_name": protocol_name,
            "leader": r.leader_id,
            "skip_assignment": r.skip_assignment,
            "member_id": r.member_id,
            "members": [
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "metadata": m.metadata,
                }
                for m in r.members
            ],
        }
    )


async def handle_sync_group(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    protocol_type = getattr(req, "protocol_type", None)
    protocol_name = getattr(req, "protocol_name", None)
    if ctx.api_version >= 5 and (protocol_type is None or protocol_name is None):
        # v5+ clients must echo the protocol they got from JoinGroup.
        return ctx.respond({"error_code": ErrorCode.inconsistent_group_protocol})
    if not _may(node, ctx, AclOperation.READ, req.group_id):
        return ctx.respond({"error_code": ErrorCode.group_authorization_failed,
                            "protocol_type": None, "protocol_name": None, "assignment": b""})
    assignments: dict[str, bytes] = {}
    for a in req.assignments:
        assignments[a.member_id] = a.assignment
    fut = node.groups.membership.sync_group(
        req.group_id,
        req.generation_id,
        req.member_id,
        group_instance_id=_group_instance_id(req),
        protocol_type=protocol_type,
        protocol_name=protocol_name,
        assignments=assignments,
    )
    r = await fut
    return ctx.respond(
        {
            "error_code": r.error,
            "protocol_type": r.protocol_type,
            "protocol_name": r.protocol_name,
            "assignment": r.assignment,
        }
    )


async def handle_heartbeat(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    if not _may(node, ctx, AclOperation.READ, req.group_id):
        return ctx.respond({"error_code": ErrorCode.group_authorization_failed})
    err = node.groups.membership.heartbeat(
        req.group_id, req.generation_id, req.member_id, _group_instance_id(req)
    )
    return ctx.respond({"error_code": err})


async def handle_leave_group(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    if not _may(node, ctx, AclOperation.READ, req.group_id):
        return ctx.respond({"error_code": ErrorCode.group_authorization_failed, "members": []})
    if ctx.api_version < 3:
        leaving = [LeavingMember(req.member_id)]
    else:
        leaving = [
            LeavingMember(m.member_id, m.group_instance_id, getattr(m, "reason", None))
            for m in req.members
        ]
    top, errors = node.groups.membership.leave_group(req.group_id, leaving)
    if ctx.api_version < 3:
        # Single-member versions report the member's error at the top level.
        if top is ErrorCode.none:
            top = next((e for e in errors if e is not ErrorCode.none), ErrorCode.none)
        return ctx.respond({"error_code": top})
    return ctx.respond(
        {
            "error_code": top,
            "members": [
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "error_code": e,
                }
                for m, e in zip(leaving, errors, strict=False)
            ],
        }
    )


@dataclass(frozen=True, slots=True)
class AskedTopic:
    """One topic of an offsets request: its name, None when it was asked for by an id the
    metadata image does not know; the id it was asked for by (None before the versions
    that name topics by id); and what the request asks of it (OffsetCommit's partitions,
    OffsetFetch's partition indexes)."""

    name: str | None
    topic_id: uuid.UUID | None
    asked: Sequence[Any]


def _asked_topics(node: GroupNode, topics: Sequence[Any], by_id: bool,
                 asked: str) -> list[AskedTopic]:
    """The request's ``topics`` with their names: read from the request, or (``by_id``)
    resolved from their ids; ``asked`` is the field holding what each topic asks for."""
    if not by_id:
        return [AskedTopic(t.name, None, getattr(t, asked)) for t in topics]
    image = node.image
    return [AskedTopic(image.topic_name(t.topic_id), t.topic_id, getattr(t, asked))
            for t in topics]


def _offsets_to_commit(topics: Sequence[AskedTopic], denied: set[str]
                       ) -> tuple[dict[TopicPartition, OffsetCommitEntry],
                                  dict[TopicPartition, ErrorCode]]:
    """The request's offsets of the known topics not ``denied``, and
    TOPIC_AUTHORIZATION_FAILED for the partitions of those that are."""
    offsets: dict[TopicPartition, OffsetCommitEntry] = {}
    refused: dict[TopicPartition, ErrorCode] = {}
    for t in topics:
        if t.name is None:
            continue  # answered UNKNOWN_TOPIC_ID (_commit_answer)
        for p in t.asked:
            tp = (t.name, p.partition_index)
            if t.name in denied:
                refused[tp] = ErrorCode.topic_authorization_failed
                continue
            offsets[tp] = OffsetCommitEntry(
                p.committed_offset,
                getattr(p, "committed_leader_epoch", -1),
                p.committed_metadata,
            )
    return offsets, refused


async def handle_offset_commit(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    topics = _asked_topics(node, req.topics, ctx.api_version >= OFFSET_COMMIT_TOPIC_IDS_VERSION,
                          "partitions")
    if not _may(node, ctx, AclOperation.READ, req.group_id):
        return ctx.respond({"topics": _commit_answer(
            topics, {}, every=ErrorCode.group_authorization_failed)})
    denied = _denied_topics(node, ctx, AclOperation.READ,
                            {t.name for t in topics if t.name is not None})
    offsets, refused = _offsets_to_commit(topics, denied)
    if not offsets:
        return ctx.respond({"topics": _commit_answer(topics, refused)})
    retention = getattr(req, "retention_time", None)
    result = await node.groups.offsets.commit_offsets(
        req.group_id,
        offsets,
        generation_id=req.generation_id_or_member_epoch,
        member_id=req.member_id,
        group_instance_id=_group_instance_id(req),
        retention_ms=-1 if retention is None else ms(retention),
        api_version=ctx.api_version,
    )
    return ctx.respond({"topics": _commit_answer(topics, {**result, **refused})})


def _commit_answer(topics: Sequence[AskedTopic], result: Mapping[TopicPartition, ErrorCode],
                   every: ErrorCode | None = None) -> list[dict[str, Any]]:
    """OffsetCommit's and TxnOffsetCommit's answer: each partition asked, with ``every``
    when the whole request was refused, else its ``result``, or UNKNOWN_TOPIC_ID for a
    topic asked for by an id the metadata does not know. Topics are answered as they were
    asked: by name, or by id (the builder keeps the field the version has)."""

    def code(t: AskedTopic, index: int) -> ErrorCode:
        if every is not None:
            return every
        if t.name is None:
            return ErrorCode.unknown_topic_id
        return result[(t.name, index)]

    return [{"name": t.name or "", "topic_id": t.topic_id, "partitions": [
        {"partition_index": p.partition_index, "error_code": code(t, p.partition_index)}
        for p in t.asked]} for t in topics]


# From v5 (transactions v2, KIP-890 part 2) the client sends no AddOffsetsToTxn: the group
# coordinator adds the group's __consumer_offsets partition to the transaction itself.
TXN_OFFSET_COMMIT_ADDS_VERSION = 5
# The transaction coordinator's "not now" answers, as TxnOffsetCommit clients retry them.
_TXN_RETRY_LATER = frozenset({
    ErrorCode.concurrent_transactions, ErrorCode.coordinator_not_available,
    ErrorCode.not_coordinator, ErrorCode.coordinator_load_in_progress,
    ErrorCode.network_exception, ErrorCode.request_timed_out})


async def _add_offsets_partition(node: GroupNode, req: Any) -> ErrorCode:
    tp = (OFFSETS_TOPIC, node.groups.partition_for(req.group_id))
    got = await node.txn_verifier.ask(str(req.transactional_id), int(req.producer_id),
                                      int(req.producer_epoch), [tp], add=True)
    code = got[tp]
    return ErrorCode.coordinator_load_in_progress if code in _TXN_RETRY_LATER else code


async def handle_txn_offset_commit(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    # Kafka's order: the transactional id (which implies the producer id), the group, then
    # each topic; all before the offsets partition joins the transaction (v5).
    topics = _asked_topics(node, req.topics, False, "partitions")
    if not node.authorization.allowed(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID,
                                      str(req.transactional_id)):
        return ctx.respond({"topics": _commit_answer(
            topics, {}, every=ErrorCode.transactional_id_authorization_failed)})
    if not _may(node, ctx, AclOperation.READ, req.group_id):
        return ctx.respond({"topics": _commit_answer(
            topics, {}, every=ErrorCode.group_authorization_failed)})
    denied = _denied_topics(node, ctx, AclOperation.READ, {t.name for t in req.topics})
    offsets, refused = _offsets_to_commit(topics, denied)
    if refused and not offsets:
        return ctx.respond({"topics": _commit_answer(topics, refused)})
    if ctx.api_version >= TXN_OFFSET_COMMIT_ADDS_VERSION:
        added = await _add_offsets_partition(node, req)
        if added != ErrorCode.none:
            return ctx.respond({"topics": _commit_answer(
                topics, {**dict.fromkeys(offsets, added), **refused})})
    # Before v3 (KIP-447) the request names no member: generation -1 and no member id.
    result = await node.groups.offsets.commit_transactional_offsets(
        req.group_id,
        offsets,
        producer_id=req.producer_id,
        producer_epoch=req.producer_epoch,
        generation_id=getattr(req, "generation_id", -1),
        member_id=getattr(req, "member_id", ""),
        group_instance_id=_group_instance_id(req),
    )
    return ctx.respond({"topics": _commit_answer(topics, {**result, **refused})})


def _offset_answer(index: int, o: CommittedOffset | None, error: ErrorCode) -> dict[str, Any]:
    """One partition of an OffsetFetch answer: its offset, or none (-1) with ``error``."""
    return {
        "partition_index": index,
        "committed_offset": -1 if o is None else o.offset,
        "committed_leader_epoch": -1 if o is None else o.leader_epoch,
        "metadata": "" if o is None else o.metadata,
        "error_code": error,
    }


def _fetched_topics(
    entries: list[tuple[TopicPartition, CommittedOffset | None]],
    partition_error: ErrorCode = ErrorCode.none,
    unstable: set[TopicPartition] | frozenset[TopicPartition] = frozenset(),
    topic_ids: Mapping[str, uuid.UUID] | None = None,
) -> list[dict[str, Any]]:
    """The topics of an OffsetFetch answer, named by name and, for the versions that name
    them by id, by their ``topic_ids``."""
    topics: dict[str, list[dict[str, Any]]] = {}
    for tp, o in entries:
        if tp in unstable:
            # Kafka answers no offset here: the client retries until the transaction ends.
            topics.setdefault(tp[0], []).append(
                _offset_answer(tp[1], None, ErrorCode.unstable_offset_commit))
        else:
            topics.setdefault(tp[0], []).append(_offset_answer(tp[1], o, partition_error))
    ids = topic_ids or {}
    return [{"name": name, "topic_id": ids.get(name), "partitions": parts}
            for name, parts in topics.items()]


def _requested(topics: Any) -> list[TopicPartition] | None:
    if topics is None:
        return None
    return [(t.name, p) for t in topics for p in t.partition_indexes]


def _fetch_group_offsets(node: GroupNode, ctx: RequestContext, group_id: str,
                         topics: list[AskedTopic] | None, require_stable: bool,
                         by_id: bool, member_id: str | None = None, member_epoch: int = -1,
                         ) -> tuple[ErrorCode, list[dict[str, Any]]]:
    """One group's OffsetFetch (authorized on the group already): its error, and its
    topics. Offsets of topics the principal may not DESCRIBE are not told: left out of an
    all-partitions fetch, answered TOPIC_AUTHORIZATION_FAILED when asked for. A topic asked
    for by an id the metadata does not know is answered UNKNOWN_TOPIC_ID."""
    offsets = node.groups.offsets
    requested: list[TopicPartition] | None = None
    refused: list[dict[str, Any]] = []
    if topics is not None:
        denied = _denied_topics(node, ctx, AclOperation.DESCRIBE,
                                {t.name for t in topics if t.name is not None})
        requested = []
        for t in topics:
            if t.name is not None and t.name not in denied:
                requested.extend((t.name, p) for p in t.asked)
                continue
            code = ErrorCode.unknown_topic_id if t.name is None \
                else ErrorCode.topic_authorization_failed
            refused.append({"name": t.name or "", "topic_id": t.topic_id,
                            "partitions": [_offset_answer(p, None, code) for p in t.asked]})
    err, entries = offsets.fetch_offsets(group_id, requested, member_id, member_epoch)
    if err is not ErrorCode.none:
        return err, []
    ids: dict[str, uuid.UUID] = {}
    if topics is None:
        hidden = _denied_topics(node, ctx, AclOperation.DESCRIBE, {tp[0] for tp, _ in entries})
        if hidden:
            entries = [(tp, o) for tp, o in entries if tp[0] not in hidden]
        if by_id:
            # Offsets of a topic the metadata no longer has (deleted): no id names them,
            # so they are left out, as Kafka does.
            known = node.image.topics
            entries = [(tp, o) for tp, o in entries if tp[0] in known]
            ids = {tp[0]: known[tp[0]].topic_id for tp, _ in entries}
    elif by_id:
        ids = {t.name: t.topic_id for t in topics
               if t.name is not None and t.topic_id is not None}
    unstable = offsets.unstable_partitions(group_id) if require_stable else set()
    return ErrorCode.none, _fetched_topics(entries, unstable=unstable, topic_ids=ids) + refused


async def handle_offset_fetch(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    # v7+: a consumer that reads committed data only (read_committed) asks for stable
    # offsets, and is told UNSTABLE_OFFSET_COMMIT where a transaction may still move one.
    require_stable = bool(getattr(req, "require_stable", False))
    by_id = ctx.api_version >= OFFSET_FETCH_TOPIC_IDS_VERSION

    def one(group_id: str, topics: Any, member_id: str | None = None,
            member_epoch: int = -1) -> tuple[ErrorCode, list[dict[str, Any]]]:
        if not _may(node, ctx, AclOperation.DESCRIBE, group_id):
            return ErrorCode.group_authorization_failed, []
        asked = None if topics is None else _asked_topics(node, topics, by_id,
                                                         "partition_indexes")
        return _fetch_group_offsets(node, ctx, group_id, asked, require_stable, by_id,
                                    member_id, member_epoch)

    if ctx.api_version >= 8:
        groups = []
        for g in req.groups:
            # v9+: a member of a consumer group (KIP-848) names itself and its epoch.
            err, fetched = one(g.group_id, g.topics, getattr(g, "member_id", None),
                               int(getattr(g, "member_epoch", -1)))
            groups.append({"group_id": g.group_id, "error_code": err, "topics": fetched})
        return ctx.respond({"groups": groups})
    err, fetched = one(req.group_id, req.topics)
    if err is ErrorCode.none:
        return ctx.respond({"topics": fetched, "error_code": err})
    if ctx.api_version < 2:
        # v1 has no top-level error: every requested partition carries it.
        missing: list[tuple[TopicPartition, CommittedOffset | None]] = [
            (tp, None) for tp in _requested(req.topics) or []
        ]
        return ctx.respond({"topics": _fetched_topics(missing, err)})
    return ctx.respond({"topics": [], "error_code": err})


async def handle_list_groups(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    coord = node.groups
    groups = coord.admin.list_groups(
        getattr(req, "states_filter", ()) or (), getattr(req, "types_filter", ()) or ()
    )
    authorization = node.authorization
    if authorization.enabled and not cluster_allowed(authorization, ctx, AclOperation.DESCRIBE):
        # Without DESCRIBE on the cluster, only the groups the principal may describe.
        allowed = authorization.allowed_names(ctx, AclOperation.DESCRIBE, ResourceType.GROUP,
                                              [g.group_id for g in groups])
        groups = [g for g in groups if g.group_id in allowed]
    return ctx.respond(
        {
            "error_code": coord.admin.list_groups_error(),
            "groups": [
                {
                    "group_id": g.group_id,
                    "protocol_type": g.protocol_type,
                    "group_state": g.state,
                    "group_type": g.group_type,
                }
                for g in groups
            ],
        }
    )


async def handle_describe_groups(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    coord = node.groups
    include_ops = bool(getattr(req, "include_authorized_operations", False))
    described = []
    authorization = node.authorization
    for group_id in req.groups:
        if not _may(node, ctx, AclOperation.DESCRIBE, group_id):
            code = ErrorCode.group_authorization_failed
            described.append({"group_id": group_id, "error_code": code,
                              "error_message": message(code), "group_state": "",
                              "protocol_type": "", "protocol_data": "", "members": [],
                              "authorized_operations": acl_operations.OMITTED})
            continue
        err, summary = coord.admin.describe_group(group_id)
        entry: dict[str, Any] = {"group_id": group_id, "error_code": err,
                                 "authorized_operations": acl_operations.OMITTED}
        if err is not ErrorCode.none:
            entry.update(group_state="", protocol_type="", protocol_data="", members=[])
        elif summary is None:
            entry.update(group_state="Dead", protocol_type="", protocol_data="", members=[])
            if ctx.api_version >= 6:
                # KIP-1043: v6 says plainly that the group does not exist.
                entry["error_code"] = ErrorCode.group_id_not_found
                entry["error_message"] = f"Group {group_id} not found."
        else:
            entry.update(
                group_state=summary.state,
                protocol_type=summary.protocol_type,
                protocol_data=summary.protocol,
                members=[
                    {
                        "member_id": m.member_id,
                        "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                        "member_metadata": m.metadata,
                        "member_assignment": m.assignment,
                    }
                    for m in summary.members
                ],
            )
        if include_ops and entry["error_code"] is ErrorCode.none:
            # KIP-430: what the principal may do to the group (Kafka tells it only of a
            # group described without error).
            entry["authorized_operations"] = authorization.operations(
                ctx, ResourceType.GROUP, group_id, acl_operations.GROUP)
        described.append(entry)
    return ctx.respond({"groups": described})


async def handle_delete_groups(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    names = list(dict.fromkeys(req.groups_names))
    allowed = node.authorization.allowed_names(ctx, AclOperation.DELETE, ResourceType.GROUP,
                                               names)
    deletable = [g for g in names if g in allowed]
    result = await node.groups.admin.delete_groups(deletable) if deletable else {}
    return ctx.respond({"results": [
        {"group_id": g, "error_code": result[g] if g in allowed
         else ErrorCode.group_authorization_failed} for g in names]})


async def handle_offset_delete(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    if not _may(node, ctx, AclOperation.DELETE, req.group_id):
        return ctx.respond({"error_code": ErrorCode.group_authorization_failed, "topics": []})
    denied = _denied_topics(node, ctx, AclOperation.READ, {t.name for t in req.topics})
    partitions = [(t.name, p.partition_index) for t in req.topics for p in t.partitions
                  if t.name not in denied]
    err, result = await node.groups.offsets.delete_offsets(req.group_id, partitions)
    if err is not ErrorCode.none:
        return ctx.respond({"error_code": err, "topics": []})
    topics: dict[str, list[dict[str, Any]]] = {}
    for (topic, partition), e in result.items():
        topics.setdefault(topic, []).append({"partition_index": partition, "error_code": e})
    for t in req.topics:
        if t.name in denied:
            topics.setdefault(t.name, []).extend(
                {"partition_index": p.partition_index,
                 "error_code": ErrorCode.topic_authorization_failed} for p in t.partitions)
    return ctx.respond(
        {
            "error_code": ErrorCode.none,
            "topics": [{"name": n, "partitions": parts} for n, parts in topics.items()],
        }
    )


# --- the consumer group protocol (KIP-848) ------------------------------------------------


def _partitions_of(topics: Sequence[Any] | None) -> dict[uuid.UUID, frozenset[int]] | None:
    if topics is None:
        return None
    out: dict[uuid.UUID, frozenset[int]] = {}
    for t in topics:
        if t.topic_id is not None:
            out[t.topic_id] = out.get(t.topic_id, frozenset()) | frozenset(t.partitions)
    return out


async def handle_consumer_group_heartbeat(node: GroupNode, ctx: RequestContext,
                                          req: Any) -> Payload:
    if not _may(node, ctx, AclOperation.READ, req.group_id):
        code = ErrorCode.group_authorization_failed
        return ctx.respond({"error_code": code, "error_message": message(code),
                            "member_id": None, "member_epoch": 0, "heartbeat_interval": 0,
                            "assignment": None})
    names = req.subscribed_topic_names
    r = await node.groups.consumer.heartbeat(Heartbeat(
        group_id=req.group_id,
        member_id=req.member_id,
        member_epoch=int(req.member_epoch),
        instance_id=req.instance_id,
        rack_id=req.rack_id,
        rebalance_timeout_ms=ms(req.rebalance_timeout),
        subscribed_topic_names=None if names is None else tuple(names),
        subscribed_topic_regex=getattr(req, "subscribed_topic_regex", None),
        server_assignor=req.server_assignor,
        owned=_partitions_of(req.topic_partitions),
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx),
        describable=lambda names: names - _denied_topics(node, ctx, AclOperation.DESCRIBE,
                                                         names),
    ), ctx.api_version)
    assignment = None
    if r.assignment is not None:
        assignment = {"topic_partitions": [
            {"topic_id": t, "partitions": sorted(ps)}
            for t, ps in sorted(r.assignment.items()) if ps]}
    return ctx.respond({
        "error_code": r.error,
        "error_message": r.message,
        "member_id": r.member_id,
        "member_epoch": r.member_epoch,
        "heartbeat_interval": r.heartbeat_interval_ms,
        "assignment": assignment,
    })


def _described_partitions(node: GroupNode, assignment: Mapping[uuid.UUID, frozenset[int]]
                          ) -> dict[str, Any]:
    image = node.image
    return {"topic_partitions": [
        {"topic_id": t, "topic_name": image.topic_name(t) or "", "partitions": sorted(ps)}
        for t, ps in sorted(assignment.items()) if ps]}


async def handle_consumer_group_describe(node: GroupNode, ctx: RequestContext,
                                         req: Any) -> Payload:
    include_ops = bool(req.include_authorized_operations)
    described = []
    for group_id in req.group_ids:
        entry: dict[str, Any] = {"group_id": group_id, "group_state": "", "group_epoch": 0,
                                 "assignment_epoch": 0, "assignor_name": "", "members": [],
                                 "authorized_operations": acl_operations.OMITTED}
        if not _may(node, ctx, AclOperation.DESCRIBE, group_id):
            code = ErrorCode.group_authorization_failed
            entry.update(error_code=code, error_message=message(code))
            described.append(entry)
            continue
        err, msg, view = node.groups.admin.describe_consumer_group(group_id)
        entry.update(error_code=err, error_message=msg)
        if view is not None:
            entry.update(
                group_state=view.state, group_epoch=view.group_epoch,
                assignment_epoch=view.assignment_epoch, assignor_name=view.assignor_name,
                members=[{
                    "member_id": m.member_id,
                    "instance_id": m.instance_id,
                    "rack_id": m.rack_id,
                    "member_epoch": m.member_epoch,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "subscribed_topic_names": list(m.subscribed_topic_names),
                    "subscribed_topic_regex": m.subscribed_topic_regex,
                    "assignment": _described_partitions(node, m.assigned),
                    "target_assignment": _described_partitions(node, target),
                    # v1: 1 = a member of the consumer protocol (0 would be classic).
                    "member_type": 1,
                } for m, target in view.members])
            if include_ops:
                entry["authorized_operations"] = node.authorization.operations(
                    ctx, ResourceType.GROUP, group_id, acl_operations.GROUP)
        described.append(entry)
    return ctx.respond({"groups": described})


APIS: tuple[ApiSpec[GroupNode], ...] = (
    ApiSpec(11, 0, 9, handle_join_group),
    ApiSpec(14, 0, 5, handle_sync_group),
    ApiSpec(12, 0, 4, handle_heartbeat),
    ApiSpec(13, 0, 5, handle_leave_group),
    # v10 (topics by id) is unstable in Kafka 4.1: off unless unstable.api.versions.enable.
    ApiSpec(8, 2, 10, handle_offset_commit, unstable_from=10),
    ApiSpec(9, 1, 10, handle_offset_fetch, unstable_from=10),
    # v5 (KIP-890 part 2) makes the coordinator add the group's partition to the
    # transaction itself, which needs the transaction coordinator; not served.
    ApiSpec(28, 0, 5, handle_txn_offset_commit),
    ApiSpec(16, 0, 5, handle_list_groups),
    ApiSpec(15, 0, 6, handle_describe_groups),
    ApiSpec(42, 0, 2, handle_delete_groups),
    ApiSpec(47, 0, 0, handle_offset_delete),
    # The consumer group protocol (KIP-848), at the versions Kafka 4.1 serves.
    ApiSpec(68, 0, 1, handle_consumer_group_heartbeat),
    ApiSpec(69, 0, 1, handle_consumer_group_describe),
)

"""Kafka API handlers for the group coordinator (classic protocol and offsets).

Each handler turns one kio request of any served version into a coordinator call and
builds the response with ``ctx.respond`` (which drops fields older versions lack). The
per-version differences live here: v0 JoinGroup has no rebalance timeout, JoinGroup v4+
requires a known member id, LeaveGroup v3+ batches members, OffsetCommit v2-v4 carry a
retention time, OffsetFetch v8+ asks for several groups, DescribeGroups v6 reports
missing groups as GROUP_ID_NOT_FOUND, TxnOffsetCommit v3+ names the member and its
generation (KIP-447), and so on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker import acl_operations
from odradek.broker.group.coordinator import GroupCoordinator
from odradek.broker.group.group import CommittedOffset, TopicPartition
from odradek.broker.group.membership import LeavingMember
from odradek.broker.group.offsets import OffsetCommitEntry
from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.meta import OFFSETS_TOPIC
from odradek.broker.kafka.codec import ms
from odradek.broker.txn_verification import TxnVerifier


class GroupNode(Protocol):
    """What the group handlers use of the node: its group coordinator, and the
    transaction verifier TxnOffsetCommit v5 adds the offsets partition to a transaction
    with."""

    @property
    def groups(self) -> GroupCoordinator: ...

    @property
    def txn_verifier(self) -> TxnVerifier: ...


def _client_host(ctx: RequestContext) -> str:
    # Kafka reports hosts as Java's InetAddress.toString(), e.g. "/127.0.0.1"; tools
    # (kafka-consumer-groups) show it verbatim, so match it.
    host = ctx.client_host or ""
    return host if host.startswith("/") else "/" + host


def _group_instance_id(req: Any) -> str | None:
    return getattr(req, "group_instance_id", None)


async def handle_join_group(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    v = ctx.api_version
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
    err = node.groups.membership.heartbeat(
        req.group_id, req.generation_id, req.member_id, _group_instance_id(req)
    )
    return ctx.respond({"error_code": err})


async def handle_leave_group(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
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


async def handle_offset_commit(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    offsets: dict[TopicPartition, OffsetCommitEntry] = {}
    for t in req.topics:
        for p in t.partitions:
            offsets[(t.name, p.partition_index)] = OffsetCommitEntry(
                p.committed_offset,
                getattr(p, "committed_leader_epoch", -1),
                p.committed_metadata,
            )
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
    return ctx.respond({"topics": _commit_answer(req, result)})


def _commit_answer(req: Any, result: Mapping[TopicPartition, ErrorCode]
                   ) -> list[dict[str, Any]]:
    """OffsetCommit's and TxnOffsetCommit's answer: each partition asked, with its error."""
    return [{"name": t.name, "partitions": [
        {"partition_index": p.partition_index, "error_code": result[(t.name, p.partition_index)]}
        for p in t.partitions]} for t in req.topics]


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
    if ctx.api_version >= TXN_OFFSET_COMMIT_ADDS_VERSION:
        added = await _add_offsets_partition(node, req)
        if added != ErrorCode.none:
            failed = {(t.name, p.partition_index): added for t in req.topics
                      for p in t.partitions}
            return ctx.respond({"topics": _commit_answer(req, failed)})
    offsets: dict[TopicPartition, OffsetCommitEntry] = {}
    for t in req.topics:
        for p in t.partitions:
            offsets[(t.name, p.partition_index)] = OffsetCommitEntry(
                p.committed_offset,
                getattr(p, "committed_leader_epoch", -1),
                p.committed_metadata,
            )
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
    return ctx.respond({"topics": _commit_answer(req, result)})


def _fetched_topics(
    entries: list[tuple[TopicPartition, CommittedOffset | None]],
    partition_error: ErrorCode = ErrorCode.none,
    unstable: set[TopicPartition] | frozenset[TopicPartition] = frozenset(),
) -> list[dict[str, Any]]:
    topics: dict[str, list[dict[str, Any]]] = {}
    for tp, o in entries:
        if tp in unstable:
            # Kafka answers no offset here: the client retries until the transaction ends.
            o = None
        topics.setdefault(tp[0], []).append(
            {
                "partition_index": tp[1],
                "committed_offset": -1 if o is None else o.offset,
                "committed_leader_epoch": -1 if o is None else o.leader_epoch,
                "metadata": "" if o is None else o.metadata,
                "error_code": ErrorCode.unstable_offset_commit if tp in unstable
                else partition_error,
            }
        )
    return [{"name": name, "partitions": parts} for name, parts in topics.items()]


def _requested(topics: Any) -> list[TopicPartition] | None:
    if topics is None:
        return None
    return [(t.name, p) for t in topics for p in t.partition_indexes]


async def handle_offset_fetch(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    coord = node.groups
    # v7+: a consumer that reads committed data only (read_committed) asks for stable
    # offsets, and is told UNSTABLE_OFFSET_COMMIT where a transaction may still move one.
    require_stable = bool(getattr(req, "require_stable", False))

    def unstable(group_id: str) -> set[TopicPartition]:
        return coord.offsets.unstable_partitions(group_id) if require_stable else set()

    if ctx.api_version >= 8:
        groups = []
        for g in req.groups:
            err, entries = coord.offsets.fetch_offsets(g.group_id, _requested(g.topics))
            groups.append(
                {
                    "group_id": g.group_id,
                    "error_code": err,
                    "topics": _fetched_topics(entries, unstable=unstable(g.group_id))
                    if err is ErrorCode.none
                    else [],
                }
            )
        return ctx.respond({"groups": groups})
    requested = _requested(req.topics)
    err, entries = coord.offsets.fetch_offsets(req.group_id, requested)
    if err is ErrorCode.none:
        return ctx.respond(
            {
                "topics": _fetched_topics(entries, unstable=unstable(req.group_id)),
                "error_code": err,
            }
        )
    if ctx.api_version < 2:
        # v1 has no top-level error: every requested partition carries it.
        missing: list[tuple[TopicPartition, CommittedOffset | None]] = [
            (tp, None) for tp in requested or []
        ]
        return ctx.respond({"topics": _fetched_topics(missing, err)})
    return ctx.respond({"topics": [], "error_code": err})


async def handle_list_groups(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    coord = node.groups
    groups = coord.admin.list_groups(
        getattr(req, "states_filter", ()) or (), getattr(req, "types_filter", ()) or ()
    )
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
    for group_id in req.groups:
        err, summary = coord.admin.describe_group(group_id)
        entry: dict[str, Any] = {
            "group_id": group_id,
            "error_code": err,
            "authorized_operations": acl_operations.authorized(acl_operations.GROUP,
                                                               include_ops),
        }
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
        described.append(entry)
    return ctx.respond({"groups": described})


async def handle_delete_groups(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    result = await node.groups.admin.delete_groups(req.groups_names)
    return ctx.respond({"results": [{"group_id": g, "error_code": e} for g, e in result.items()]})


async def handle_offset_delete(node: GroupNode, ctx: RequestContext, req: Any) -> Payload:
    partitions = [(t.name, p.partition_index) for t in req.topics for p in t.partitions]
    err, result = await node.groups.offsets.delete_offsets(req.group_id, partitions)
    if err is not ErrorCode.none:
        return ctx.respond({"error_code": err, "topics": []})
    topics: dict[str, list[dict[str, Any]]] = {}
    for (topic, partition), e in result.items():
        topics.setdefault(topic, []).append({"partition_index": partition, "error_code": e})
    return ctx.respond(
        {
            "error_code": ErrorCode.none,
            "topics": [{"name": n, "partitions": parts} for n, parts in topics.items()],
        }
    )


APIS: tuple[ApiSpec[GroupNode], ...] = (
    ApiSpec(11, 0, 9, handle_join_group),
    ApiSpec(14, 0, 5, handle_sync_group),
    ApiSpec(12, 0, 4, handle_heartbeat),
    ApiSpec(13, 0, 5, handle_leave_group),
    # v10 names topics by id (KIP-848's protocol); not served.
    ApiSpec(8, 2, 9, handle_offset_commit),
    ApiSpec(9, 1, 9, handle_offset_fetch),
    # v5 (KIP-890 part 2) makes the coordinator add the group's partition to the
    # transaction itself, which needs the transaction coordinator; not served.
    ApiSpec(28, 0, 5, handle_txn_offset_commit),
    ApiSpec(16, 0, 5, handle_list_groups),
    ApiSpec(15, 0, 6, handle_describe_groups),
    ApiSpec(42, 0, 2, handle_delete_groups),
    ApiSpec(47, 0, 0, handle_offset_delete),
)

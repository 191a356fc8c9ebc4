"""Fetch (long poll), ListOffsets, OffsetForLeaderEpoch and DeleteRecords.

Fetch v13 and later name topics by id (KIP-516): an id this broker's metadata does not know
is answered UNKNOWN_TOPIC_ID, and one whose topic's log here has another id (the topic was
deleted and created again under its name) INCONSISTENT_TOPIC_ID; answers name topics by id
too. From v15 a follower names itself in ``replica_state`` with its broker epoch (KIP-903),
and from v16 a partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH carries its
current leader, whose address is in ``node_endpoints`` (KIP-951). v17's replica directory id
and v18's follower high watermark are read and ignored, as Kafka's brokers do (only its
KRaft controllers use them).

Transactions (KIP-98): every partition answered carries its last stable offset (LSO). A
consumer fetching with isolation_level READ_COMMITTED (v4+) reads only below it and is told
the aborted transactions within what it read, whose records it drops; READ_UNCOMMITTED reads
up to the high watermark, and a follower up to the log end. ListOffsets (v2+) answers the
latest offset, and finds timestamps, below the same bound of its isolation level.

Replication throttles (KIP-73): a follower's fetch of a partition its topic names in
``leader.replication.throttled.replicas`` for this broker, from a follower that is not in
the ISR, gets no records while this broker's leader throttle is exceeded (Kafka's
ReplicaManager.shouldLeaderThrottle); the partition does not count towards min_bytes, and a
fetch parked with such a partition wakes when the throttle may let it through again. The
bytes answered for throttled partitions count against the throttle. Consumers' fetches are
never throttled here (their quotas are client quotas).

Authorization is Kafka's: a consumer's Fetch needs READ on each TOPIC, a follower's (a
replica id) CLUSTER_ACTION on the CLUSTER, else every partition is answered
TOPIC_AUTHORIZATION_FAILED; ListOffsets needs DESCRIBE on the TOPIC, OffsetForLeaderEpoch
CLUSTER_ACTION on the CLUSTER (followers) or DESCRIBE on the TOPIC (consumers, KIP-320),
DeleteRecords DELETE on the TOPIC. The topic is authorized before its existence is looked
at, so that a client cannot probe for topics it may not see.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker import fault_injection
from odradek.broker.config import NodeConfig
from odradek.broker.fetch_sessions import (
    FINAL_EPOCH,
    INVALID_SESSION_ID,
    ContextKind,
    FetchContext,
    FetchSessionCache,
    PartitionKey,
    new_context,
)
from odradek.broker.handlers.api import ApiSpec, RequestContext, fetch_replica
from odradek.broker.handlers.authz import AclOperation, ResourceType, cluster_allowed
from odradek.broker.handlers.errors import error_code_for
from odradek.broker.handlers.leader_hints import LeaderHints
from odradek.broker.kafka.codec import ms
from odradek.broker.loop_slice import LoopSlice
from odradek.broker.metrics import NodeMetrics
from odradek.broker.partition import Partition
from odradek.broker.partition_watch import PartitionWatch
from odradek.broker.replica_manager import ReplicaManager
from odradek.broker.replication import ReplicationManager
from odradek.broker.replication_quota import ReplicationQuotas, should_throttle
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata import MetadataImage
from odradek.storage import AbortedTxn, PartitionLog, ReadResult, SendableRead
from odradek.storage.errors import StorageError

EARLIEST, LATEST, MAX_TIMESTAMP = -2, -1, -3
READ_UNCOMMITTED, READ_COMMITTED = 0, 1  # isolation_level of Fetch v4+ and ListOffsets v2+
MESSAGES_KEY = "_messages_sent"
# Set in a partition's answer left without records by the leader's replication throttle.
THROTTLED_KEY = "_replication_throttled"
FETCH_TOPIC_IDS_VERSION = 13  # topics named by id (KIP-516)
FETCH_NODE_ENDPOINTS_VERSION = 16  # leader hints (KIP-951)
_LEADER_HINT_ERRORS = frozenset({ErrorCode.not_leader_or_follower,
                                 ErrorCode.fenced_leader_epoch})
# On a connection that can take them (RequestContext.zero_copy), a partition's records of
# at least this size are answered as a region of their segment file, sent by the kernel
# (broker/splice.py). Below it, copying costs less than what a region adds: a descriptor
# dup, a worker-thread turn and waiting for the transport's buffer to empty (about 50 us,
# the time to copy some hundreds of KiB three times, measured on the development machine
# as 64-256 KiB break-even).
REGION_MIN_BYTES = 128 * 1024


class FetchNode(Protocol):
    """What Fetch, ListOffsets, OffsetForLeaderEpoch and DeleteRecords use of the node."""

    @property
    def config(self) -> NodeConfig: ...

    @property
    def image(self) -> MetadataImage: ...

    @property
    def replicas(self) -> ReplicaManager: ...

    @property
    def replication(self) -> ReplicationManager: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def fetch_sessions(self) -> FetchSessionCache: ...

    @property
    def authorization(self) -> Authorization: ...

    @property
    def replication_quotas(self) -> ReplicationQuotas: ...


def leader_partition(node: FetchNode, topic: str, index: int, current_epoch: int = -1,
                     topic_id: uuid.UUID | None = None) -> tuple[Partition | None, ErrorCode]:
    """The partition if this node leads it at ``current_epoch`` (-1: any), else the error.
    ``topic_id``, when given, must be the id of the topic whose log this node holds."""
    p = node.replicas.get((topic, index))
    if p is not None and topic_id is not None and p.topic_id is not None \
            and p.topic_id != topic_id:
        return None, ErrorCode.inconsistent_topic_id
    if p is None or not p.is_leader:
        t = node.image.topics.get(topic)
        if t is None or index not in t.partitions:
            return None, ErrorCode.unknown_topic_or_partition
        return None, ErrorCode.not_leader_or_follower
    if current_epoch >= 0 and current_epoch != p.leader_epoch:
        if current_epoch > p.leader_epoch:
            return None, ErrorCode.unknown_leader_epoch
        return None, ErrorCode.fenced_leader_epoch
    if p.log.offline:
        return None, ErrorCode.kafka_storage_error
    return p, ErrorCode.none


def _error_entry(index: int, error: ErrorCode) -> dict[str, Any]:
    return {"partition_index": index, "error_code": error, "high_watermark": -1,
            "last_stable_offset": -1, "log_start_offset": -1, "records": b"",
            "aborted_transactions": None}


def _read_partition(node: FetchNode, topic: str, topic_id: uuid.UUID | None, fp: Any,
                    max_bytes: int, min_one: bool, replica_id: int, replica_epoch: int,
                    read_committed: bool = False, zero_copy: bool = False
                    ) -> tuple[dict[str, Any], int, Partition | None]:
    """One partition of a fetch: (response entry, bytes returned, partition or None).
    ``read_committed``: a consumer's READ_COMMITTED fetch (ignored for a follower's).
    ``zero_copy``: records of REGION_MIN_BYTES or more may be a FileRegion."""
    index = fp.partition
    t = node.image.topics.get(topic)
    if t is None or index not in t.partitions:
        # As Kafka's fetch path: a partition the metadata no longer has is unknown, even
        # while its log is still being removed here.
        return _error_entry(index, ErrorCode.unknown_topic_or_partition), 0, None
    # current_leader_epoch is in fetch partitions from v9 only (KIP-320).
    p, err = leader_partition(node, topic, index, getattr(fp, "current_leader_epoch", -1),
                              topic_id)
    if p is None:
        return _error_entry(index, err), 0, None
    out: dict[str, Any] = {"partition_index": index, "records": b"",
                           "aborted_transactions": None}
    plog = p.log
    out["high_watermark"] = plog.high_watermark
    out["last_stable_offset"] = (plog.high_watermark if fault_injection.read_committed_past_lso
                                 else plog.last_stable_offset)
    out["log_start_offset"] = plog.log_start_offset
    offset = fp.fetch_offset
    last_epoch = getattr(fp, "last_fetched_epoch", -1)
    if last_epoch >= 0:
        # KIP-320/595: tell a fetcher whose log diverged from ours where to truncate.
        epoch, end = plog.leader_epochs.end_offset_for(last_epoch)
        if epoch != last_epoch or end < offset:
            out["diverging_epoch"] = {"epoch": epoch, "end_offset": end}
            return out, 0, p
    if replica_id >= 0:
        node.replication.on_follower_fetch(p, replica_id, offset, replica_epoch)
    committed = read_committed and replica_id < 0
    if offset < plog.log_start_offset or offset > plog.log_end_offset:
        out["error_code"] = ErrorCode.offset_out_of_range
        return out, 0, p
    if committed:
        # As Kafka: a READ_COMMITTED answer always has the list, empty when nothing
        # aborted within what it returns (null is for READ_UNCOMMITTED).
        out["aborted_transactions"] = []
    end = _readable_end(p, replica_id, committed)
    if offset >= end:
        return out, 0, p
    if replica_id >= 0 and should_throttle(node.replication_quotas.leader, topic, index,
                                           replica_id in p.isr, time.monotonic()):
        # Answered empty, as Kafka does; the follower asks again from the same offset.
        out[THROTTLED_KEY] = True
        return out, 0, p
    result: ReadResult | SendableRead
    aborted: Iterable[AbortedTxn] | None = None
    try:
        if zero_copy and not fault_injection.read_committed_past_lso:
            # The same batches as the reads below (their bounds, their aborted list),
            # cut without reading the data.
            result = plog.read_sendable(offset, max_bytes, region_min_bytes=REGION_MIN_BYTES,
                                        max_offset=end, min_one_batch=min_one,
                                        committed=committed)
            aborted = result.aborted
        elif committed and fault_injection.read_committed_past_lso:
            result = plog.read(offset, max_bytes, max_offset=end, min_one_batch=min_one)
            aborted = plog.aborted_transactions(offset, result.next_offset)
        elif committed:
            result = plog.read_committed(offset, max_bytes, min_one_batch=min_one)
            aborted = result.aborted
        else:
            result = plog.read(offset, max_bytes, max_offset=end, min_one_batch=min_one)
    except StorageError as e:
        out["error_code"] = error_code_for(e)
        out["aborted_transactions"] = None
        return out, 0, p
    if committed:
        out["aborted_transactions"] = [
            {"producer_id": a.producer_id, "first_offset": a.first_offset}
            for a in aborted or ()]
    out["records"] = result.records
    # For odradek_messages_out_total: offsets past the fetch position (the first batch may
    # start before it). The response builder ignores keys the schema lacks.
    out[MESSAGES_KEY] = max(0, result.next_offset - offset)
    return out, len(result.records), p


def _readable_end(p: Partition, replica_id: int, read_committed: bool) -> int:
    """Where a fetcher's reading of ``p`` stops (exclusive): the log end for a follower,
    the last stable offset for a READ_COMMITTED consumer, the high watermark for others."""
    if replica_id >= 0:
        return p.log.log_end_offset
    if read_committed and not fault_injection.read_committed_past_lso:
        return p.log.last_stable_offset
    return p.log.high_watermark


def _caught_up(entry: dict[str, Any], fp: Any, p: Partition, replica_id: int,
               read_committed: bool = False) -> bool:
    """The answer leaves the fetcher with nothing more to read from ``p``: no error, no
    records, no divergence, and its position at the end it may read (``_readable_end``).
    A READ_COMMITTED consumer's end, the last stable offset, moves only with an append (a
    marker) or a high watermark move, both of which wake the partition's readers."""
    if entry.get("records") or entry.get("error_code", ErrorCode.none) != ErrorCode.none \
            or "diverging_epoch" in entry:
        return False
    return bool(fp.fetch_offset >= _readable_end(p, replica_id, read_committed))


def _fetch_context(node: FetchNode, req: Any, version: int, replica_id: int,
                   read_committed: bool) -> FetchContext:
    """The request's fetch session context (KIP-227). Fetch v4-6 predate sessions: their
    requests are sessionless. From v13 partitions are keyed by topic id."""
    forgotten_topics = getattr(req, "forgotten_topics_data", ())
    uses_ids = version >= FETCH_TOPIC_IDS_VERSION
    if uses_ids:
        image = node.image

        def resolve(tp: PartitionKey) -> str | None:
            return image.topic_name(tp[0])  # type: ignore[arg-type]  # keys are ids here

        fetch_data = [((t.topic_id, int(fp.partition)), fp) for t in req.topics
                      for fp in t.partitions]
        forgotten = [(t.topic_id, int(index)) for t in forgotten_topics
                     for index in t.partitions]
    else:
        fetch_data = [((t.topic, int(fp.partition)), fp) for t in req.topics
                      for fp in t.partitions]
        forgotten = [(t.topic, int(index)) for t in forgotten_topics for index in t.partitions]
    return new_context(node.fetch_sessions, int(time.monotonic() * 1000),
                       int(getattr(req, "session_id", INVALID_SESSION_ID)),
                       int(getattr(req, "session_epoch", FINAL_EPOCH)),
                       replica_id >= 0, fetch_data, forgotten,
                       uses_topic_ids=uses_ids, resolve=resolve if uses_ids else None,
                       replica_id=replica_id, read_committed=read_committed)


def _grouped(answers: list[tuple[PartitionKey, dict[str, Any]]], context: FetchContext
             ) -> list[dict[str, Any]]:
    """Partition answers as the response's topics, each topic once, in first-seen order
    (named by id from v13: two ids of one name are two topics)."""
    by_topic: dict[Any, dict[str, Any]] = {}
    for tp, entry in answers:
        topic = by_topic.get(tp[0])
        if topic is None:
            topic = by_topic[tp[0]] = {"topic": context.topic_name(tp), "topic_id": tp[0],
                                       "partitions": []}
        topic["partitions"].append(entry)
    return list(by_topic.values())


def _leader_hints(node: FetchNode, listener: str, topics: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Each partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH gets its
    current leader; the answer's node endpoints (KIP-951)."""
    hints = LeaderHints(node, listener)
    for t in topics:
        for entry in t["partitions"]:
            if entry.get("error_code", ErrorCode.none) in _LEADER_HINT_ERRORS:
                entry["current_leader"] = hints.current_leader(t["topic"],
                                                               entry["partition_index"])
    return hints.node_endpoints()


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _session_changed(watch: PartitionWatch[PartitionKey], timeout_s: float) -> None:
    """Until a partition ``watch`` watches changes, or ``timeout_s`` passes."""
    if watch.changed:
        return
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    changed = functools.partial(_settle, fut)
    watch.on_change = changed
    try:
        async with asyncio.timeout(timeout_s):
            await fut
    except TimeoutError:
        pass
    finally:
        if watch.on_change is changed:
            watch.on_change = None


def _may_read(authorization: Authorization, ctx: RequestContext, decided: dict[str, bool],
              topic: str) -> bool:
    """READ on ``topic``, asked of the authorizer once per request (``decided``)."""
    allowed = decided.get(topic)
    if allowed is None:
        allowed = decided[topic] = authorization.allowed(ctx, AclOperation.READ,
                                                         ResourceType.TOPIC, topic)
    return allowed


def _denied_topics(node: FetchNode, ctx: RequestContext, operation: AclOperation,
                   names: set[str]) -> set[str]:
    """Of ``names``, the topics the principal may not do ``operation`` to."""
    authorization = node.authorization
    if not authorization.enabled:
        return set()
    return names - authorization.allowed_names(ctx, operation, ResourceType.TOPIC, names)


def _count_throttled(node: FetchNode, context: FetchContext,
                     answers: list[tuple[PartitionKey, dict[str, Any]]], skipped: int) -> None:
    """A follower's answer: the bytes of its throttled partitions count against the leader
    throttle (in-sync followers' too, as Kafka's sizeOfThrottledPartitions), and the
    partitions it left without records are counted."""
    metrics = node.metrics
    if skipped:
        metrics.replication_throttled_skips.labels(role="leader").inc(skipped)
    quota = node.replication_quotas.leader
    if not quota.throttles_some_partition:
        return
    size = 0
    for tp, entry in answers:
        name = context.topic_name(tp)
        if entry["records"] and name is not None and quota.is_throttled(name, tp[1]):
            size += len(entry["records"])
    if size:
        quota.record(size, time.monotonic())
        metrics.replication_throttled_bytes.labels(role="leader").inc(size)


async def handle_fetch(node: FetchNode, ctx: RequestContext, req: Any) -> Payload:
    version = ctx.api_version
    replica_id, replica_epoch = fetch_replica(req, version)
    # A follower reads to the log end whatever it asks (Kafka's FetchIsolation.of).
    read_committed = replica_id < 0 and int(
        getattr(req, "isolation_level", READ_UNCOMMITTED)) == READ_COMMITTED
    context = _fetch_context(node, req, version, replica_id, read_committed)
    if context.kind is ContextKind.ERROR:
        return ctx.respond({"error_code": context.error, "session_id": INVALID_SESSION_ID,
                            "responses": []})
    # Authorization (Kafka's handleFetchRequest): a follower needs CLUSTER_ACTION, or all
    # its partitions are refused; a consumer needs READ on each topic, decided once per
    # topic per request (``readable``). Nothing to do without an authorizer.
    authorization = node.authorization
    refuse_all = False
    readable: dict[str, bool] | None = None
    if authorization.enabled:
        if replica_id >= 0:
            refuse_all = not cluster_allowed(authorization, ctx, AclOperation.CLUSTER_ACTION)
        else:
            readable = {}
    max_wait_s = max(0, ms(req.max_wait)) / 1000
    deadline = time.monotonic() + max_wait_s
    max_total = min(int(getattr(req, "max_bytes", 2**31 - 1)), node.config["fetch.max.bytes"])
    min_bytes = int(req.min_bytes)
    uses_ids = context.uses_topic_ids
    # Done when a follower's fetch parked without a session is nudged (made when one parks).
    nudged: asyncio.Future[None] | None = None

    while True:
        answers: list[tuple[PartitionKey, dict[str, Any]]] = []
        total, parts, urgent, throttled = 0, [], False, 0
        caught_up: dict[PartitionKey, tuple[Partition, int]] = {}
        loop_slice = LoopSlice()  # a session of thousands of partitions lets others run
        for tp, fp in context.partitions:
            if loop_slice.due():
                await loop_slice.pause()
            name = context.topic_name(tp)
            if refuse_all:
                entry, n, p = _error_entry(tp[1], ErrorCode.topic_authorization_failed), 0, None
            elif name is None:
                # An id this broker's metadata does not know (Kafka: UNKNOWN_TOPIC_ID).
                entry, n, p = _error_entry(tp[1], ErrorCode.unknown_topic_id), 0, None
            elif readable is not None and not _may_read(authorization, ctx, readable, name):
                entry, n, p = _error_entry(tp[1], ErrorCode.topic_authorization_failed), 0, None
            else:
                hosted = node.replicas.get((name, tp[1]))
                changes = -1
                if hosted is not None:
                    changes = hosted.changes
                    # Before the read: a change it makes (a follower's fetch moving the
                    # high watermark) must be read again.
                    context.read(tp, hosted)
                budget = max(0, min(fp.partition_max_bytes, max_total - total))
                entry, n, p = _read_partition(
                    node, name, tp[0] if uses_ids else None,  # type: ignore[arg-type]
                    fp, budget, total == 0, replica_id, replica_epoch, read_committed,
                    ctx.zero_copy)
                throttled += bool(entry.pop(THROTTLED_KEY, False))
                if p is not None and _caught_up(entry, fp, p, replica_id, read_committed) and (
                        replica_id < 0 or context.clock is None
                        or p.hold_follower(replica_id, context.clock)):
                    # Nothing more to read, until the partition changes (an ISR follower
                    # is held there: see ReplicaState.hold_follower; one that is not must
                    # be read again, so that it may join the ISR).
                    caught_up[tp] = (p, changes)
            total += n
            # Errors and diverging epochs answer at once, as Kafka's delayed fetch does.
            urgent = urgent or entry.get("error_code", ErrorCode.none) != ErrorCode.none \
                or "diverging_epoch" in entry
            if p is not None:
                parts.append(p)
            answers.append((tp, entry))
        remaining = deadline - time.monotonic()
        session = context.session if context.kind is ContextKind.INCREMENTAL else None
        if total >= min_bytes or urgent or remaining <= 0 \
                or (nudged is not None and nudged.done()) \
                or not (parts or (session is not None and len(session.watch))) \
                or (session is not None and session.nudged):
            break
        if throttled:
            # Nothing wakes a fetch when its throttle frees up: look again by then.
            remaining = min(remaining,
                            node.replication_quotas.leader.recheck_after(time.monotonic()))
        node.metrics.fetch_purgatory.inc()
        try:
            if session is not None:
                # An incremental fetch parks on its session: every partition of it it has
                # read tells it of its next change, and the others are read already.
                await _session_changed(session.watch, remaining)
            elif replica_id >= 0:
                # A follower's fetch without a session (a new fetcher's first, full one)
                # has no session to nudge: it is woken directly (FetchSessionCache.nudge).
                if nudged is None:
                    nudged = asyncio.get_running_loop().create_future()
                with node.fetch_sessions.parked_without_session(
                        replica_id, functools.partial(_settle, nudged)):
                    await node.replicas.wait_for_data(parts, remaining, nudged)
            else:
                await node.replicas.wait_for_data(parts, remaining)
        finally:
            node.metrics.fetch_purgatory.dec()
        if node.stopping:
            break
    if replica_id >= 0:
        _count_throttled(node, context, answers, throttled)
    session_id, answers = context.finish(node.fetch_sessions, int(time.monotonic() * 1000),
                                         answers, caught_up)
    topics_out = _grouped(answers, context)
    if replica_id < 0:
        for t in topics_out:
            n = sum(len(p["records"]) for p in t["partitions"])
            if n:
                node.metrics.bytes_out.labels(topic=t["topic"]).inc(n)
                node.metrics.messages_out.labels(topic=t["topic"]).inc(
                    sum(p.get(MESSAGES_KEY, 0) for p in t["partitions"]))
    node_endpoints = _leader_hints(node, ctx.listener_name, topics_out) \
        if version >= FETCH_NODE_ENDPOINTS_VERSION else []
    return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.none,
                        "session_id": session_id, "responses": topics_out,
                        "node_endpoints": node_endpoints})


async def handle_list_offsets(node: FetchNode, ctx: RequestContext, req: Any) -> Payload:
    # isolation_level is in requests from v2; v1's readers see up to the high watermark.
    read_committed = int(getattr(req, "isolation_level", READ_UNCOMMITTED)) == READ_COMMITTED
    denied = _denied_topics(node, ctx, AclOperation.DESCRIBE, {t.name for t in req.topics})
    topics_out = []
    for t in req.topics:
        parts_out = []
        for lp in t.partitions:
            out: dict[str, Any] = {"partition_index": lp.partition_index, "timestamp": -1,
                                   "offset": -1, "leader_epoch": -1}
            parts_out.append(out)
            if t.name in denied:
                out["error_code"] = ErrorCode.topic_authorization_failed
                continue
            p, err = leader_partition(node, t.name, lp.partition_index,
                                      getattr(lp, "current_leader_epoch", -1))
            if p is None:
                out["error_code"] = err
                continue
            out["leader_epoch"] = p.leader_epoch
            try:
                _list_offset(p.log, int(lp.timestamp), read_committed, out)
            except StorageError as e:
                out["error_code"] = error_code_for(e)
        topics_out.append({"name": t.name, "partitions": parts_out})
    return ctx.respond({"throttle_time": 0, "topics": topics_out})


def _list_offset(plog: PartitionLog, ts: int, read_committed: bool,
                 out: dict[str, Any]) -> None:
    """One partition of ListOffsets into ``out``. As Kafka's Partition.fetchOffsetForTimestamp:
    the latest offset is the last stable offset for READ_COMMITTED and the high watermark
    otherwise; a timestamp lookup (and MAX_TIMESTAMP) finds its record in the whole log and
    answers none (-1) when that record is at or past that bound, which consumers of the
    isolation level could not read yet."""
    fetchable = (plog.last_stable_offset
                 if read_committed and not fault_injection.read_committed_past_lso
                 else plog.high_watermark)
    if ts == LATEST:
        out["offset"] = fetchable
        return
    if ts == EARLIEST:
        out["offset"] = plog.log_start_offset
        return
    if ts < 0 and ts != MAX_TIMESTAMP:
        out["error_code"] = ErrorCode.invalid_request
        return
    found = plog.max_timestamp_offset() if ts == MAX_TIMESTAMP else plog.offset_for_timestamp(ts)
    if found is not None and found[0] < fetchable:
        out["offset"], out["timestamp"] = found


async def handle_offset_for_leader_epoch(node: FetchNode, ctx: RequestContext, req: Any) -> Payload:
    # Followers ask with CLUSTER_ACTION; consumers (KIP-320) need DESCRIBE on the topic.
    denied: set[str] = set()
    authorization = node.authorization
    if authorization.enabled and not cluster_allowed(authorization, ctx,
                                                     AclOperation.CLUSTER_ACTION):
        denied = _denied_topics(node, ctx, AclOperation.DESCRIBE, {t.topic for t in req.topics})
    topics_out = []
    for t in req.topics:
        parts_out = []
        for lp in t.partitions:
            out: dict[str, Any] = {"partition": lp.partition, "leader_epoch": -1,
                                   "end_offset": -1}
            parts_out.append(out)
            if t.topic in denied:
                out["error_code"] = ErrorCode.topic_authorization_failed
                continue
            p, err = leader_partition(node, t.topic, lp.partition, lp.current_leader_epoch)
            if p is None:
                out["error_code"] = err
                continue
            epoch, end = p.log.leader_epochs.end_offset_for(lp.leader_epoch)
            out["leader_epoch"], out["end_offset"] = epoch, end
        topics_out.append({"topic": t.topic, "partitions": parts_out})
    return ctx.respond({"throttle_time": 0, "topics": topics_out})


async def handle_delete_records(node: FetchNode, ctx: RequestContext, req: Any) -> Payload:
    denied = _denied_topics(node, ctx, AclOperation.DELETE, {t.name for t in req.topics})
    topics_out = []
    for t in req.topics:
        parts_out = []
        for dp in t.partitions:
            out: dict[str, Any] = {"partition_index": dp.partition_index, "low_watermark": -1}
            parts_out.append(out)
            if t.name in denied:
                out["error_code"] = ErrorCode.topic_authorization_failed
                continue
            p, err = leader_partition(node, t.name, dp.partition_index)
            if p is None:
                out["error_code"] = err
                continue
            target = p.log.high_watermark if dp.offset == -1 else int(dp.offset)
            if target < 0 or target > p.log.high_watermark:
                out["error_code"] = ErrorCode.offset_out_of_range
                continue
            try:
                out["low_watermark"] = p.delete_records(target)
            except StorageError as e:
                out["error_code"] = error_code_for(e)
        topics_out.append({"name": t.name, "partitions": parts_out})
    return ctx.respond({"throttle_time": 0, "topics": topics_out})


APIS: tuple[ApiSpec[FetchNode], ...] = (
    ApiSpec(1, 4, 18, handle_fetch),
    ApiSpec(2, 1, 7, handle_list_offsets),
    ApiSpec(23, 2, 4, handle_offset_for_leader_epoch),
    ApiSpec(21, 0, 2, handle_delete_records),
)

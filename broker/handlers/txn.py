"""InitProducerId and the transaction coordinator's APIs (AddPartitionsToTxn,
AddOffsetsToTxn, EndTxn), and WriteTxnMarkers, which coordinators send to partition leaders.

The coordinator (odradek.broker.txn) answers for the transactional ids whose
``__transaction_state`` partition this node leads; the others get NOT_COORDINATOR and the
client asks FindCoordinator again. Both the classic protocol and transactions v2 (KIP-890 part 2:
EndTxn v5 answers the epoch the producer goes on with; the partitions come from Produce v12
and TxnOffsetCommit v5) are served; Kafka 4 clients use v2 while the cluster finalizes
transaction.version 2 (broker/features.py; the level of the metadata log, 2 by default).

Authorization is Kafka's: a transactional id's APIs (InitProducerId with one,
AddPartitionsToTxn v0-v3, AddOffsetsToTxn, EndTxn) need WRITE on the TRANSACTIONAL_ID;
AddPartitionsToTxn also WRITE on each TOPIC (any partition refused fails the whole
transaction's request: the others are answered OPERATION_NOT_ATTEMPTED), and
AddOffsetsToTxn READ on the GROUP. An idempotent producer's InitProducerId needs
IDEMPOTENT_WRITE on the CLUSTER or WRITE on some topic (KIP-679). What brokers send each
other (AddPartitionsToTxn v4+, WriteTxnMarkers) needs CLUSTER_ACTION on the CLUSTER.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, ResourceType, cluster_allowed
from odradek.broker.handlers.meta import INTERNAL_TOPICS
from odradek.broker.kafka.codec import ms
from odradek.broker.security.authorization import Authorization
from odradek.broker.txn import AddPartitionsTxn, TransactionCoordinator
from odradek.broker.txn_markers import Marker, MarkerWriter
from odradek.controller.metadata import MetadataImage

log = logging.getLogger("odradek.txn")

# AddPartitionsToTxn v4+ is sent by brokers (KIP-890); clients use v0-v3.
BROKER_ADD_PARTITIONS_VERSION = 4
# KIP-360: an idempotent producer may bump its own epoch up to here.
_MAX_BUMPABLE_EPOCH = 32766


class TxnNode(Protocol):
    """What InitProducerId, the transaction APIs and WriteTxnMarkers use of the node."""

    @property
    def transactions(self) -> TransactionCoordinator: ...

    @property
    def marker_writer(self) -> MarkerWriter: ...

    @property
    def authorization(self) -> Authorization: ...

    @property
    def image(self) -> MetadataImage: ...

    async def next_producer_id(self) -> int: ...


def _may_write_txn(authorization: Authorization, ctx: RequestContext, transactional_id: str
                   ) -> bool:
    return authorization.allowed(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID,
                                 transactional_id)


def _may_write_idempotently(authorization: Authorization, ctx: RequestContext) -> bool:
    """KIP-679: IDEMPOTENT_WRITE on the cluster, or WRITE on at least one topic."""
    return cluster_allowed(authorization, ctx, AclOperation.IDEMPOTENT_WRITE) \
        or authorization.allowed_by_type(ctx, AclOperation.WRITE, ResourceType.TOPIC)


async def handle_init_producer_id(node: TxnNode, ctx: RequestContext, req: Any) -> Payload:
    current_id = int(getattr(req, "producer_id", -1))
    current_epoch = int(getattr(req, "producer_epoch", -1))
    authorization = node.authorization
    denied = None
    if req.transactional_id is not None:
        if not _may_write_txn(authorization, ctx, str(req.transactional_id)):
            denied = ErrorCode.transactional_id_authorization_failed
    elif not _may_write_idempotently(authorization, ctx):
        denied = ErrorCode.cluster_authorization_failed
    if denied is not None:
        return ctx.respond({"error_code": denied, "producer_id": -1, "producer_epoch": -1,
                            "throttle_time": 0})
    if req.transactional_id is not None:
        result = await node.transactions.init_producer_id(
            str(req.transactional_id), ms(req.transaction_timeout),
            producer_id=current_id, producer_epoch=current_epoch,
            api_version=ctx.api_version)
        return ctx.respond({"error_code": result.error, "producer_id": result.producer_id,
                            "producer_epoch": result.producer_epoch, "throttle_time": 0})
    if current_id >= 0 and 0 <= current_epoch < _MAX_BUMPABLE_EPOCH:
        # KIP-360: an idempotent producer may bump its own epoch to reset sequences.
        return ctx.respond({"error_code": ErrorCode.none, "producer_id": current_id,
                            "producer_epoch": current_epoch + 1, "throttle_time": 0})
    try:
        pid = await node.next_producer_id()
    except Exception as e:  # the controller is unreachable or refused
        log.warning("producer id allocation failed: %s", e)
        return ctx.respond({"error_code": ErrorCode.coordinator_not_available,
                            "producer_id": -1, "producer_epoch": -1, "throttle_time": 0})
    return ctx.respond({"error_code": ErrorCode.none, "producer_id": pid, "producer_epoch": 0,
                        "throttle_time": 0})


async def handle_add_partitions_to_txn(node: TxnNode, ctx: RequestContext, req: Any
                                       ) -> Payload:
    if ctx.api_version >= BROKER_ADD_PARTITIONS_VERSION:
        if not cluster_allowed(node.authorization, ctx, AclOperation.CLUSTER_ACTION):
            return ctx.respond({"throttle_time": 0,
                                "error_code": ErrorCode.cluster_authorization_failed,
                                "results_by_transaction": []})
        return await _add_partitions_for_brokers(node, ctx, req)
    wanted = [(str(t.name), int(i)) for t in req.v3_and_below_topics for i in t.partitions]
    txn_id = str(req.v3_and_below_transactional_id)
    refused = _refused_partitions(node, ctx, txn_id, wanted)
    if refused is not None:
        results = refused
    else:
        results = await node.transactions.add_partitions_to_txn(
            txn_id, int(req.v3_and_below_producer_id),
            int(req.v3_and_below_producer_epoch), wanted, api_version=ctx.api_version)
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for topic, index in wanted:
        by_topic[topic].append({"partition_index": index,
                                "partition_error_code": results.get((topic, index),
                                                                    ErrorCode.none)})
    return ctx.respond({"throttle_time": 0, "results_by_topic_v3_and_below": [
        {"name": name, "results_by_partition": parts} for name, parts in by_topic.items()]})


def _refused_partitions(node: TxnNode, ctx: RequestContext, txn_id: str,
                        wanted: list[tuple[str, int]]
                        ) -> dict[tuple[str, int], ErrorCode] | None:
    """A client's AddPartitionsToTxn as Kafka refuses it, or None to go on: without WRITE
    on the transactional id, every partition is refused; else partitions of topics it may
    not WRITE to, and those of internal topics (never added this way, whoever asks),
    fail the request: TOPIC_AUTHORIZATION_FAILED for them, UNKNOWN_TOPIC_OR_PARTITION for
    unknown ones, OPERATION_NOT_ATTEMPTED for the rest."""
    authorization = node.authorization
    if not _may_write_txn(authorization, ctx, txn_id):
        return dict.fromkeys(wanted, ErrorCode.transactional_id_authorization_failed)
    names = {topic for topic, _ in wanted}
    denied = names & INTERNAL_TOPICS
    if authorization.enabled:
        denied |= names - authorization.allowed_names(ctx, AclOperation.WRITE,
                                                      ResourceType.TOPIC, names - denied)
    if not denied:
        return None
    topics = node.image.topics

    def code(topic: str, index: int) -> ErrorCode:
        if topic in denied:
            return ErrorCode.topic_authorization_failed
        t = topics.get(topic)
        if t is None or index not in t.partitions:
            return ErrorCode.unknown_topic_or_partition
        return ErrorCode.operation_not_attempted

    return {(topic, index): code(topic, index) for topic, index in wanted}


async def _add_partitions_for_brokers(node: TxnNode, ctx: RequestContext, req: Any
                                      ) -> Payload:
    """v4+: what partition leaders send, several transactions at once, each verified
    (verify_only, KIP-890 part 1) or added (transactions v2's implicit add)."""
    txns = [AddPartitionsTxn(str(t.transactional_id), int(t.producer_id),
                             int(t.producer_epoch),
                             frozenset((str(tp.name), int(i)) for tp in t.topics
                                       for i in tp.partitions),
                             verify_only=bool(t.verify_only))
            for t in req.transactions]
    results = await node.transactions.add_partitions_batch(txns, api_version=ctx.api_version)
    out = []
    for txn_id, codes in results.items():
        by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (topic, index), code in codes.items():
            by_topic[topic].append({"partition_index": index, "partition_error_code": code})
        out.append({"transactional_id": txn_id, "topic_results": [
            {"name": name, "results_by_partition": parts} for name, parts in by_topic.items()]})
    return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.none,
                        "results_by_transaction": out})


async def handle_add_offsets_to_txn(node: TxnNode, ctx: RequestContext, req: Any) -> Payload:
    authorization = node.authorization
    if not _may_write_txn(authorization, ctx, str(req.transactional_id)):
        return ctx.respond({"throttle_time": 0,
                            "error_code": ErrorCode.transactional_id_authorization_failed})
    if not authorization.allowed(ctx, AclOperation.READ, ResourceType.GROUP, str(req.group_id)):
        return ctx.respond({"throttle_time": 0,
                            "error_code": ErrorCode.group_authorization_failed})
    code = await node.transactions.add_offsets_to_txn(
        str(req.transactional_id), int(req.producer_id), int(req.producer_epoch),
        str(req.group_id), api_version=ctx.api_version)
    return ctx.respond({"throttle_time": 0, "error_code": code})


async def handle_end_txn(node: TxnNode, ctx: RequestContext, req: Any) -> Payload:
    if not _may_write_txn(node.authorization, ctx, str(req.transactional_id)):
        return ctx.respond({"throttle_time": 0,
                            "error_code": ErrorCode.transactional_id_authorization_failed,
                            "producer_id": -1, "producer_epoch": -1})
    result = await node.transactions.end_txn(
        str(req.transactional_id), int(req.producer_id), int(req.producer_epoch),
        bool(req.committed), api_version=ctx.api_version)
    return ctx.respond({"throttle_time": 0, "error_code": result.error,
                        "producer_id": result.producer_id,
                        "producer_epoch": result.producer_epoch})


async def handle_write_txn_markers(node: TxnNode, ctx: RequestContext, req: Any) -> Payload:
    markers = [Marker(int(m.producer_id), int(m.producer_epoch), int(m.coordinator_epoch),
                      bool(m.transaction_result),
                      tuple((str(t.name), int(i)) for t in m.topics for i in t.partition_indexes))
               for m in req.markers]
    if not cluster_allowed(node.authorization, ctx, AclOperation.CLUSTER_ACTION):
        # Only brokers write markers: Kafka's error response refuses every partition.
        refused = ErrorCode.cluster_authorization_failed
        answers: list[dict[tuple[str, int], ErrorCode]] = [
            dict.fromkeys(m.partitions, refused) for m in markers]
        return ctx.respond({"markers": _markers_answer(markers, answers)})
    # The markers of different transactions are independent: written and replicated at once.
    answers = await asyncio.gather(*(node.marker_writer.write(m) for m in markers))
    return ctx.respond({"markers": _markers_answer(markers, answers)})


def _markers_answer(markers: list[Marker], answers: Sequence[Mapping[tuple[str, int], ErrorCode]]
                    ) -> list[dict[str, Any]]:
    markers_out = []
    for marker, codes in zip(markers, answers, strict=True):
        by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (topic, index), code in codes.items():
            by_topic[topic].append({"partition_index": index, "error_code": code})
        markers_out.append({"producer_id": marker.producer_id, "topics": [
            {"name": name, "partitions": parts} for name, parts in by_topic.items()]})
    return markers_out


APIS: tuple[ApiSpec[TxnNode], ...] = (
    ApiSpec(22, 0, 5, handle_init_producer_id),
    ApiSpec(24, 0, 5, handle_add_partitions_to_txn),
    ApiSpec(25, 0, 4, handle_add_offsets_to_txn),
    ApiSpec(26, 0, 5, handle_end_txn),
    ApiSpec(27, 1, 1, handle_write_txn_markers),
)

"""InitProducerId and the transaction coordinator's APIs (AddPartitionsToTxn,
AddOffsetsToTxn, EndTxn), and WriteTxnMarkers, which coordinators send to partition leaders.

The coordinator (odradek.broker.txn) answers for the transactional ids whose
``__transaction_state`` partition this node leads; the others get NOT_COORDINATOR and the
client asks FindCoordinator again. Both the classic protocol and transactions v2 (KIP-890 part 2:
EndTxn v5 answers the epoch the producer goes on with; the partitions come from Produce v12
and TxnOffsetCommit v5) are served, as the cluster finalizes transaction.version 2
(broker/features.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.kafka.codec import ms
from odradek.broker.txn import AddPartitionsTxn, TransactionCoordinator
from odradek.broker.txn_markers import Marker, MarkerWriter

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

    async def next_producer_id(self) -> int: ...


async def handle_init_producer_id(node: TxnNode, ctx: RequestContext, req: Any) -> Payload:
    current_id = int(getattr(req, "producer_id", -1))
    current_epoch = int(getattr(req, "producer_epoch", -1))
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
        return await _add_partitions_for_brokers(node, ctx, req)
    wanted = [(str(t.name), int(i)) for t in req.v3_and_below_topics for i in t.partitions]
    results = await node.transactions.add_partitions_to_txn(
        str(req.v3_and_below_transactional_id), int(req.v3_and_below_producer_id),
        int(req.v3_and_below_producer_epoch), wanted, api_version=ctx.api_version)
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for topic, index in wanted:
        by_topic[topic].append({"partition_index": index,
                                "partition_error_code": results.get((topic, index),
                                                                    ErrorCode.none)})
    return ctx.respond({"throttle_time": 0, "results_by_topic_v3_and_below": [
        {"name": name, "results_by_partition": parts} for name, parts in by_topic.items()]})


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
    code = await node.transactions.add_offsets_to_txn(
        str(req.transactional_id), int(req.producer_id), int(req.producer_epoch),
        str(req.group_id), api_version=ctx.api_version)
    return ctx.respond({"throttle_time": 0, "error_code": code})


async def handle_end_txn(node: TxnNode, ctx: RequestContext, req: Any) -> Payload:
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
    # The markers of different transactions are independent: written and replicated at once.
    answers = await asyncio.gather(*(node.marker_writer.write(m) for m in markers))
    markers_out = []
    for marker, codes in zip(markers, answers, strict=True):
        by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (topic, index), code in codes.items():
            by_topic[topic].append({"partition_index": index, "error_code": code})
        markers_out.append({"producer_id": marker.producer_id, "topics": [
            {"name": name, "partitions": parts} for name, parts in by_topic.items()]})
    return ctx.respond({"markers": markers_out})


APIS: tuple[ApiSpec[TxnNode], ...] = (
    ApiSpec(22, 0, 5, handle_init_producer_id),
    ApiSpec(24, 0, 5, handle_add_partitions_to_txn),
    ApiSpec(25, 0, 4, handle_add_offsets_to_txn),
    ApiSpec(26, 0, 5, handle_end_txn),
    ApiSpec(27, 1, 1, handle_write_txn_markers),
)

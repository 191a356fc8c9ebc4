"""Produce.

Authorization is Kafka's (KafkaApis.handleProduceRequest): a request carrying
transactional records needs WRITE on its TRANSACTIONAL_ID, else every partition is
answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED; each partition needs WRITE on its TOPIC,
checked before the topic's existence so that an unauthorized producer cannot probe for
topics. Idempotent records need nothing more: since Kafka 3.0 (KIP-679) a producer may
write idempotently wherever it may write, and InitProducerId checks IDEMPOTENT_WRITE.

From Produce v10 a partition answered NOT_LEADER_OR_FOLLOWER names its current leader and
the answer carries that leader's address (KIP-951): a producer whose leader moved (a
controlled shutdown, a failover) goes there at once instead of refreshing its metadata
first."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.api import ApiSpec, CloseConnection, RequestContext
from odradek.broker.handlers.authz import AclOperation, ResourceType
from odradek.broker.handlers.errors import error_code_for
from odradek.broker.handlers.leader_hints import LeaderHints
from odradek.broker.handlers.meta import INTERNAL_TOPICS
from odradek.broker.kafka.codec import ms
from odradek.broker.metrics import NodeMetrics
from odradek.broker.partition import NotEnoughReplicas, Partition
from odradek.broker.replica_manager import ReplicaManager
from odradek.broker.security.authorization import Authorization
from odradek.broker.txn_verification import TxnVerifier
from odradek.controller.metadata import MetadataImage
from odradek.storage.batch import (
    ATTRIBUTES_POS,
    MAGIC_POS,
    MAGIC_V2,
    TRANSACTIONAL_BIT,
    iter_batches,
)
from odradek.storage.errors import StorageError

log = logging.getLogger("odradek.produce")


class ProduceNode(Protocol):
    """What Produce uses of the node."""

    @property
    def image(self) -> MetadataImage: ...

    @property
    def replicas(self) -> ReplicaManager: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def txn_verifier(self) -> TxnVerifier: ...

    @property
    def authorization(self) -> Authorization: ...


PRODUCE_LEADER_HINTS_VERSION = 10
# Transactions v2 clients (KIP-890 part 2) send v12: their partitions are added by the
# leader's call to the coordinator, not by AddPartitionsToTxn.
PRODUCE_TXN_V2_VERSION = 12


@dataclass(frozen=True, slots=True)
class _Verification:
    """A transaction's first write to a partition, checked with its coordinator."""

    producer_id: int
    producer_epoch: int
    token: object
    error: ErrorCode

    def refusal(self, p: Partition) -> tuple[ErrorCode, str] | None:
        if self.error == ErrorCode.invalid_record:
            return self.error, "a transactional request carries the records of one producer"
        if self.error != ErrorCode.none:
            p.end_txn_verification(self.producer_id)
            return self.error, (f"the transaction coordinator did not confirm that the "
                                f"partition is in producer {self.producer_id}'s transaction "
                                f"({self.error.name})")
        if not p.txn_open(self.producer_id, self.producer_epoch) \
                and not p.txn_verification_holds(self.producer_id, self.token):
            # A marker of this producer was written while the coordinator was asked.
            return ErrorCode.invalid_txn_state, (
                f"producer {self.producer_id}'s transaction ended while this write was "
                "being verified")
        return None


async def _verify_transaction(node: ProduceNode, req: Any, version: int,
                              denied: frozenset[str] | set[str]
                              ) -> dict[tuple[str, int], _Verification]:
    """KIP-890: the partitions where this request would open the producer's transaction,
    each with what its coordinator said (broker/txn_verification.py). From v12
    (transactions v2) the coordinator adds them to the transaction. Topics in ``denied``
    (no WRITE) are not written, so not verified either."""
    if req.transactional_id is None:
        return {}
    tokens: dict[tuple[str, int], object] = {}
    mixed: dict[tuple[str, int], _Verification] = {}
    producer: tuple[int, int] | None = None
    for t in req.topic_data:
        if t.name in denied:
            continue
        for pd in t.partition_data:
            p = node.replicas.get((t.name, pd.index))
            if p is None or not p.is_leader or not pd.records or t.name in INTERNAL_TOPICS:
                continue
            try:
                header = next(iter_batches(pd.records, verify_crc=False), None)
            except StorageError:
                continue  # the append refuses it with the reason
            if header is None or not header.is_transactional or header.producer_id < 0 \
                    or p.txn_open(header.producer_id, header.producer_epoch):
                continue
            producer = producer or (header.producer_id, header.producer_epoch)
            if header.producer_id != producer[0]:  # Kafka refuses these as well
                mixed[(t.name, pd.index)] = _Verification(
                    header.producer_id, header.producer_epoch, None, ErrorCode.invalid_record)
                continue
            tokens[(t.name, pd.index)] = p.begin_txn_verification(header.producer_id)
    if producer is None:
        return {}
    codes = await node.txn_verifier.verify(
        str(req.transactional_id), producer[0], producer[1], tokens,
        add=version >= PRODUCE_TXN_V2_VERSION, knows_abortable=version >= 11)
    return mixed | {tp: _Verification(producer[0], producer[1], token, codes[tp])
                    for tp, token in tokens.items()}


def _has_transactional_records(req: Any) -> bool:
    """Is the first batch of some partition's records transactional? (Kafka's
    RequestUtils.hasTransactionalRecords: a request holds one producer's batches.)"""
    for t in req.topic_data:
        for pd in t.partition_data:
            records = pd.records
            if records and len(records) > ATTRIBUTES_POS + 1 and records[MAGIC_POS] == MAGIC_V2 \
                    and records[ATTRIBUTES_POS + 1] & TRANSACTIONAL_BIT:
                return True
    return False


def _refused(ctx: RequestContext, req: Any, code: ErrorCode) -> Payload:
    """Every partition of the request answered ``code`` (Kafka's getErrorResponse)."""
    return ctx.respond({"throttle_time": 0, "node_endpoints": [], "responses": [
        {"name": t.name, "partition_responses": [
            {"index": pd.index, "error_code": code, "base_offset": -1, "log_start_offset": -1}
            for pd in t.partition_data]} for t in req.topic_data]})


def _denied_topics(authorization: Authorization, ctx: RequestContext, req: Any
                   ) -> set[str] | None:
    """The topics this request may not write to, or None when the request may not write
    at all (its transactional records and no WRITE on the transactional id)."""
    if _has_transactional_records(req):
        txn_id = req.transactional_id
        if txn_id is None or not authorization.allowed(
                ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, str(txn_id)):
            return None
    names = {t.name for t in req.topic_data}
    return names - authorization.allowed_names(ctx, AclOperation.WRITE, ResourceType.TOPIC,
                                               names)


async def handle_produce(node: ProduceNode, ctx: RequestContext, req: Any) -> Payload | None:
    acks = int(req.acks)
    denied: frozenset[str] | set[str] = frozenset()
    authorization = node.authorization
    if authorization.enabled:
        found = _denied_topics(authorization, ctx, req)
        if found is None:
            if acks == 0:
                raise CloseConnection("acks=0 produce refused: "
                                      "TRANSACTIONAL_ID_AUTHORIZATION_FAILED")
            return _refused(ctx, req, ErrorCode.transactional_id_authorization_failed)
        denied = found
    hints = (LeaderHints(node, ctx.listener_name)
             if ctx.api_version >= PRODUCE_LEADER_HINTS_VERSION else None)
    topics_out = []
    waits: list[tuple[dict[str, Any], Partition, int]] = []
    verified = await _verify_transaction(node, req, ctx.api_version, denied)
    for t in req.topic_data:
        parts_out = []
        topic_denied = t.name in denied
        for pd in t.partition_data:
            out: dict[str, Any] = {"index": pd.index, "base_offset": -1, "log_start_offset": -1}
            parts_out.append(out)
            if topic_denied:
                # Before anything else about the partition: whether the topic exists is
                # not the business of a producer that may not write to it.
                out["error_code"] = ErrorCode.topic_authorization_failed
                continue
            if acks not in (-1, 0, 1):
                out["error_code"] = ErrorCode.invalid_required_acks
                continue
            if t.name in INTERNAL_TOPICS:
                # As in Kafka: only the broker writes __consumer_offsets. A client's records
                # there would be replayed as committed offsets and group state.
                out["error_code"] = ErrorCode.invalid_topic_exception
                out["error_message"] = f"Cannot append to internal topic {t.name}"
                continue
            p = node.replicas.get((t.name, pd.index))
            if p is None or not p.is_leader:
                known = node.image.topics.get(t.name)
                out["error_code"] = (
                    ErrorCode.unknown_topic_or_partition
                    if known is None or pd.index not in known.partitions
                    else ErrorCode.not_leader_or_follower
                )
                if hints is not None and out["error_code"] == ErrorCode.not_leader_or_follower:
                    out["current_leader"] = hints.current_leader(t.name, pd.index)
                continue
            if not pd.records:
                out["error_code"] = ErrorCode.corrupt_message
                out["error_message"] = "produce request carried no record batch"
                continue
            check = verified.get((t.name, pd.index))
            if check is not None:
                refusal = check.refusal(p)
                if refusal is not None:
                    out["error_code"], out["error_message"] = refusal
                    continue
            try:
                result = p.append(bytes(pd.records), acks_all=acks == -1)
            except NotEnoughReplicas as e:
                out["error_code"] = ErrorCode.not_enough_replicas
                out["error_message"] = str(e)
                continue
            except StorageError as e:
                out["error_code"] = error_code_for(e)
                out["error_message"] = str(e)
                if out["error_code"] == ErrorCode.kafka_storage_error:
                    log.error("partition %s-%d offline: %s", t.name, pd.index, e)
                continue
            if check is not None:
                p.end_txn_verification(check.producer_id)  # its transaction is open now
            out["base_offset"] = result.base_offset
            out["log_append_time"] = result.log_append_time_ms
            out["log_start_offset"] = result.log_start_offset
            if not result.duplicate:
                node.metrics.messages_in.labels(topic=t.name).inc(result.record_count)
                node.metrics.bytes_in.labels(topic=t.name).inc(len(pd.records))
            if acks == -1:
                waits.append((out, p, result.last_offset + 1))
        topics_out.append({"name": t.name, "partition_responses": parts_out})
    if ctx.appended is not None:
        ctx.appended()  # in the log, in request order: the connection may read on
    if waits:
        node.metrics.produce_purgatory.inc()
        try:
            timeout_s = max(0, ms(req.timeout)) / 1000
            codes = await asyncio.gather(*(p.wait_replicated(target, timeout_s)
                                           for _, p, target in waits))
        finally:
            node.metrics.produce_purgatory.dec()
        for (out, p, _), code in zip(waits, codes, strict=True):
            if code != ErrorCode.none:
                out["error_code"] = code
                if hints is not None and code == ErrorCode.not_leader_or_follower:
                    # Leadership moved while the write waited for its replicas.
                    out["current_leader"] = hints.current_leader(p.topic, p.index)
    if acks == 0:
        failed = [f"{t['name']}-{p['index']}: {ErrorCode(p['error_code']).name.upper()}"
                  for t in topics_out for p in t["partition_responses"]
                  if p.get("error_code", ErrorCode.none) != ErrorCode.none]
        if failed:
            raise CloseConnection(f"acks=0 produce failed for {', '.join(failed[:5])}"
                                  + (f" and {len(failed) - 5} more" if len(failed) > 5 else ""))
        return None
    return ctx.respond({"responses": topics_out, "throttle_time": 0,
                        "node_endpoints": hints.node_endpoints() if hints is not None else []})


APIS: tuple[ApiSpec[ProduceNode], ...] = (
    ApiSpec(0, 3, 12, handle_produce),
)

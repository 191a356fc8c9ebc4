"""The operator's view of transactions (KIP-664): DescribeTransactions and ListTransactions
(answered by the transaction coordinator for the ids it coordinates) and DescribeProducers
(answered from the producer state of the partition logs this broker holds).

These are what ``kafka-transactions.sh`` and ``odradek transactions`` use to find hanging
transactions: a partition whose open transaction holds back its last stable offset while
its coordinator no longer knows it.

Authorization is Kafka's: DescribeTransactions needs DESCRIBE on each TRANSACTIONAL_ID and
tells only the partitions of topics the principal may DESCRIBE; ListTransactions lists
only the ids it may DESCRIBE; DescribeProducers needs READ on the TOPIC, checked before
the topic's existence.
"""

from __future__ import annotations

from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, ResourceType, message
from odradek.broker.partition import Partition
from odradek.broker.replica_manager import ReplicaManager
from odradek.broker.security.authorization import Authorization
from odradek.broker.txn.coordinator import TransactionCoordinator
from odradek.broker.txn.views import TransactionDescription
from odradek.controller.metadata import MetadataImage


class TxnAdminNode(Protocol):
    """What the transaction admin APIs use of the node: the transaction coordinator, the
    hosted partitions, and the metadata (to tell an unknown partition from one hosted
    elsewhere)."""

    @property
    def transactions(self) -> TransactionCoordinator: ...

    @property
    def replicas(self) -> ReplicaManager: ...

    @property
    def image(self) -> MetadataImage: ...

    @property
    def authorization(self) -> Authorization: ...


def _description(d: TransactionDescription, hidden: set[str]) -> dict[str, Any]:
    return {
        "error_code": d.error,
        "transactional_id": d.transactional_id,
        "transaction_state": d.state,
        "transaction_timeout": d.transaction_timeout_ms,
        "transaction_start_time": d.transaction_start_time_ms,
        "producer_id": d.producer_id,
        "producer_epoch": d.producer_epoch,
        "topics": [{"topic": t, "partitions": list(ps)} for t, ps in d.topics.items()
                   if t not in hidden],
    }


def _unauthorized_description(transactional_id: str) -> dict[str, Any]:
    # Kafka's answer: the error, the id, and the other fields at their defaults.
    return {"error_code": ErrorCode.transactional_id_authorization_failed,
            "transactional_id": transactional_id, "transaction_state": "",
            "transaction_timeout": 0, "transaction_start_time": 0, "producer_id": 0,
            "producer_epoch": 0, "topics": []}


async def handle_describe_transactions(node: TxnAdminNode, ctx: RequestContext, req: Any
                                       ) -> Payload:
    """Each id is answered by its coordinator: ids of ``__transaction_state`` partitions
    this node does not lead get NOT_COORDINATOR (clients find the coordinator first)."""
    authorization = node.authorization
    ids = list(req.transactional_ids)
    allowed = authorization.allowed_names(ctx, AclOperation.DESCRIBE,
                                          ResourceType.TRANSACTIONAL_ID, ids)
    described = iter(node.transactions.describe_transactions([i for i in ids if i in allowed]))
    states = []
    for txn_id in ids:
        if txn_id not in allowed:
            states.append(_unauthorized_description(txn_id))
            continue
        d = next(described)
        # Only the partitions of topics the principal may describe (Kafka's filter).
        hidden = set()
        if authorization.enabled:
            hidden = set(d.topics) - authorization.allowed_names(
                ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, d.topics)
        states.append(_description(d, hidden))
    return ctx.respond({"throttle_time": 0, "transaction_states": states})


async def handle_list_transactions(node: TxnAdminNode, ctx: RequestContext, req: Any
                                   ) -> Payload:
    """The transactions this node coordinates; clients ask every broker and merge. v1 adds
    the duration filter (KIP-994), v2 the transactional id pattern (KIP-1152)."""
    result = node.transactions.list_transactions(
        state_filters=list(req.state_filters),
        producer_id_filters=[int(p) for p in req.producer_id_filters],
        duration_filter_ms=int(getattr(req, "duration_filter", -1)),
        transactional_id_pattern=getattr(req, "transactional_id_pattern", None),
    )
    # Only the ids the principal may describe (Kafka's filter).
    listed = list(result.transactions)
    authorization = node.authorization
    if authorization.enabled:
        allowed = authorization.allowed_names(ctx, AclOperation.DESCRIBE,
                                              ResourceType.TRANSACTIONAL_ID,
                                              [t.transactional_id for t in listed])
        listed = [t for t in listed if t.transactional_id in allowed]
    return ctx.respond({
        "throttle_time": 0,
        "error_code": result.error,
        "unknown_state_filters": list(result.unknown_state_filters),
        "transaction_states": [
            {"transactional_id": t.transactional_id, "producer_id": t.producer_id,
             "transaction_state": t.state}
            for t in listed],
    })


def _hosted_partition(node: TxnAdminNode, topic: str, index: int
                      ) -> tuple[Partition | None, ErrorCode, str | None]:
    """The local replica of a partition, leader or follower, as Kafka answers
    DescribeProducers from any replica's log (``kafka-transactions.sh describe-producers
    --broker-id`` asks a chosen one); else the error and what to do about it."""
    p = node.replicas.get((topic, index))
    if p is None:
        t = node.image.topics.get(topic)
        if t is None or index not in t.partitions:
            return None, ErrorCode.unknown_topic_or_partition, None
        return None, ErrorCode.not_leader_or_follower, (
            f"this broker holds no replica of {topic}-{index}; ask its leader")
    if p.log.offline:
        return None, ErrorCode.kafka_storage_error, (
            f"the log of {topic}-{index} on this broker is offline after a disk error")
    return p, ErrorCode.none, None


def _producers(node: TxnAdminNode, topic: str, index: int) -> dict[str, Any]:
    p, error, message = _hosted_partition(node, topic, index)
    if p is None:
        return {"partition_index": index, "error_code": error, "error_message": message,
                "active_producers": []}
    producers = sorted(p.log.producer_state.producers.values(), key=lambda e: e.producer_id)
    return {"partition_index": index, "error_code": ErrorCode.none, "error_message": None,
            "active_producers": [
                {"producer_id": e.producer_id,
                 "producer_epoch": e.epoch,
                 "last_sequence": e.last_seq,
                 "last_timestamp": e.last_timestamp,
                 "coordinator_epoch": e.coordinator_epoch,
                 "current_txn_start_offset": (-1 if e.current_txn_first_offset is None
                                              else e.current_txn_first_offset)}
                for e in producers]}


def _refused_producers(index: int) -> dict[str, Any]:
    code = ErrorCode.topic_authorization_failed
    return {"partition_index": index, "error_code": code, "error_message": message(code),
            "active_producers": []}


async def handle_describe_producers(node: TxnAdminNode, ctx: RequestContext, req: Any
                                    ) -> Payload:
    names = {t.name for t in req.topics}
    readable = node.authorization.allowed_names(ctx, AclOperation.READ, ResourceType.TOPIC,
                                                names)
    return ctx.respond({"throttle_time": 0, "topics": [
        {"name": t.name,
         "partitions": [_producers(node, t.name, int(i)) if t.name in readable
                        else _refused_producers(int(i)) for i in t.partition_indexes]}
        for t in req.topics]})


APIS: tuple[ApiSpec[TxnAdminNode], ...] = (
    ApiSpec(61, 0, 0, handle_describe_producers),
    ApiSpec(65, 0, 0, handle_describe_transactions),
    ApiSpec(66, 0, 2, handle_list_transactions),
)

"""Transaction markers: what the coordinator asks the broker to write, and what the answers mean.

Once a transaction's PrepareCommit/PrepareAbort record is durable the coordinator has every
partition of the transaction write a COMMIT or ABORT control record (WriteTxnMarkers to
the partitions' leaders) and, when all have answered, writes CompleteCommit/CompleteAbort.
The broker implements :class:`MarkerSender`: it groups the partitions by leader, sends the
requests and answers per partition. The rules for the answers are Kafka's
(TransactionMarkerRequestCompletionHandler), see :func:`classify`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from kio.schema.errors import ErrorCode

from odradek.broker.txn.metadata import TopicPartition


@dataclass(frozen=True, slots=True)
class MarkerRequest:
    """Markers for one transaction: one WritableTxnMarker of WriteTxnMarkers per leader."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    commit: bool
    partitions: frozenset[TopicPartition]
    # WriteTxnMarkers v2's TransactionVersion: the client's transaction version (0-2).
    transaction_version: int


class MarkerSender(Protocol):
    async def send_markers(self, request: MarkerRequest) -> Mapping[TopicPartition, ErrorCode]:
        """Write the markers and answer per partition.

        A partition missing from the answer, or an exception (the leader's connection was
        lost, no leader is known yet), counts as a retriable failure: the coordinator sends
        again after a backoff. Partitions of deleted topics never reach the sender (the
        coordinator drops them first, as Kafka does)."""
        ...


class MarkerOutcome(Enum):
    DONE = "done"  # written, or the partition cannot hold markers: nothing left to do
    RETRY = "retry"  # send again (possibly to a new leader)
    ABANDON = "abandon"  # a newer producer or coordinator epoch exists: stop sending


_DONE = {ErrorCode.none, ErrorCode.unsupported_for_message_format, ErrorCode.unsupported_version}
_ABANDON = {ErrorCode.invalid_producer_epoch, ErrorCode.transaction_coordinator_fenced}
RETRIABLE = frozenset(
    {
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.not_leader_or_follower,
        ErrorCode.not_enough_replicas,
        ErrorCode.not_enough_replicas_after_append,
        ErrorCode.request_timed_out,
        ErrorCode.kafka_storage_error,
    }
)


def classify(code: ErrorCode) -> MarkerOutcome:
    """What a partition's answer means. Kafka treats any other error as fatal (a bug);
    here it is retried, and logged as an error by the caller."""
    if code in _DONE:
        return MarkerOutcome.DONE
    if code in _ABANDON:
        return MarkerOutcome.ABANDON
    return MarkerOutcome.RETRY

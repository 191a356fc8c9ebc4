"""The coordinator's view of ``__transaction_state``, and how append failures reach clients.

The broker implements :class:`TxnLog` on its partition logs; tests and the simulation use
:class:`InMemoryTxnLog`. An append raises on failure; an exception carrying an
``error_code`` attribute (a Kafka error code) is translated the way Kafka's
TransactionStateManager translates produce errors on this topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from kio.schema.errors import ErrorCode

from odradek.broker.group.log import append_error_code

Record = tuple[bytes, bytes | None]

TRANSACTION_STATE_TOPIC = "__transaction_state"


class TxnLog(Protocol):
    num_partitions: int

    async def append(self, partition: int, records: list[Record], *, leader_epoch: int) -> None:
        """Durably append (acks=all, replicated) or raise. A None value is a tombstone.

        ``leader_epoch`` is the coordinator epoch the records were decided under: the
        implementation must refuse the append (NOT_LEADER_OR_FOLLOWER) unless this node
        still leads the partition at that epoch, so a coordinator that lost the partition
        and got it back cannot interleave stale records with the new leader's."""
        ...

    def read(self, partition: int) -> Iterable[Record]:
        """Every record of the partition, in log order (keys never None)."""
        ...


class LogAppendError(Exception):
    """An append failure with a Kafka error code (what a real partition would report)."""

    def __init__(self, error_code: ErrorCode, message: str = "") -> None:
        super().__init__(message or error_code.name)
        self.error_code = error_code


class InMemoryTxnLog:
    """A TxnLog in a dict, with a leader epoch per partition and knobs to make appends
    fail or wait."""

    def __init__(self, num_partitions: int = 50) -> None:
        self.num_partitions = num_partitions
        self.partitions: dict[int, list[Record]] = {}
        self.leader_epochs: dict[int, int] = {}
        self.fail_with: BaseException | None = None
        self.fail_once = True
        # When set, appends wait for it: lets tests observe state while a write is in flight.
        self.gate: asyncio.Event | None = None
        self.appends = 0

    def elect(self, partition: int, leader_epoch: int) -> None:
        """A new leader (this or another coordinator) at ``leader_epoch``."""
        self.leader_epochs[partition] = leader_epoch

    async def append(self, partition: int, records: list[Record], *, leader_epoch: int) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            exc = self.fail_with
            if self.fail_once:
                self.fail_with = None
            raise exc
        current = self.leader_epochs.get(partition)
        if current is not None and current != leader_epoch:
            raise LogAppendError(
                ErrorCode.not_leader_or_follower,
                f"partition {partition} is led at epoch {current}, not {leader_epoch}",
            )
        self.appends += 1
        self.partitions.setdefault(partition, []).extend(records)

    def read(self, partition: int) -> Iterable[Record]:
        return list(self.partitions.get(partition, []))


_UNAVAILABLE = {
    ErrorCode.unknown_topic_or_partition,
    ErrorCode.not_enough_replicas,
    ErrorCode.not_enough_replicas_after_append,
    ErrorCode.request_timed_out,
}
_MOVED = {ErrorCode.not_leader_or_follower, ErrorCode.kafka_storage_error}
_TOO_LARGE = {ErrorCode.message_too_large, ErrorCode.record_list_too_large}


def txn_write_error(exc: BaseException) -> ErrorCode:
    """Kafka's mapping of a failed ``__transaction_state`` append to the client's error:
    a timeout or missing replicas become COORDINATOR_NOT_AVAILABLE (retry), a lost
    leadership NOT_COORDINATOR (find the coordinator again)."""
    code = append_error_code(exc)
    if code in _UNAVAILABLE:
        return ErrorCode.coordinator_not_available
    if code in _MOVED:
        return ErrorCode.not_coordinator
    if code in _TOO_LARGE:
        return ErrorCode.unknown_server_error
    return code

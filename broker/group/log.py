"""The coordinator's view of ``__consumer_offsets``, and how append failures reach clients.

The broker implements :class:`GroupLog` on its partition logs; tests and the simulation
use :class:`InMemoryGroupLog`. An append raises on failure; an exception carrying an
``error_code`` attribute (a Kafka error code, as the broker's ``GroupLogError`` does)
is translated the way Kafka translates produce errors on its internal topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from kio.schema.errors import ErrorCode

Record = tuple[bytes, bytes | None]

NO_PRODUCER_ID = -1


@dataclass(frozen=True, slots=True)
class TxnProducer:
    """The transactional producer a TxnOffsetCommit writes for: its records form one
    transactional batch of this producer id and epoch (the log fences older epochs)."""

    producer_id: int
    producer_epoch: int


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A record read back from the log, with what replay needs of its batch: a record of a
    transactional batch only counts once its producer's COMMIT marker follows."""

    offset: int
    key: bytes
    value: bytes | None
    producer_id: int = NO_PRODUCER_ID
    transactional: bool = False


@dataclass(frozen=True, slots=True)
class LogMarker:
    """A transaction marker (control batch): the producer's open transaction ends here."""

    offset: int
    producer_id: int
    commit: bool


LogEntry = LogRecord | LogMarker


class GroupLog(Protocol):
    num_partitions: int

    async def append(
        self, partition: int, records: list[Record], producer: TxnProducer | None = None
    ) -> int:
        """Durably append (replicated per acks=all) or raise; returns the log offset of the
        first record (the rest follow it). A None value is a tombstone. With ``producer``
        the records are one transactional batch of that producer."""
        ...

    def read(self, partition: int) -> Iterable[LogEntry]:
        """Every record and transaction marker of the partition, in log order."""
        ...


class InMemoryGroupLog:
    """A GroupLog in a dict, with knobs to make appends fail or wait. Offsets are list
    positions; tests add markers with ``append_marker`` (the broker writes real ones)."""

    def __init__(self, num_partitions: int = 50) -> None:
        self.num_partitions = num_partitions
        self.partitions: dict[int, list[LogEntry]] = {}
        self.fail_with: BaseException | None = None
        self.fail_once = True
        # When set, appends wait for it: lets tests observe state while a write is in flight.
        self.gate: asyncio.Event | None = None
        self.appends = 0

    async def append(
        self, partition: int, records: list[Record], producer: TxnProducer | None = None
    ) -> int:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            exc = self.fail_with
            if self.fail_once:
                self.fail_with = None
            raise exc
        self.appends += 1
        entries = self.partitions.setdefault(partition, [])
        first = len(entries)
        pid = producer.producer_id if producer is not None else NO_PRODUCER_ID
        for key, value in records:
            entries.append(LogRecord(len(entries), key, value, pid, producer is not None))
        return first

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Add a plain record as if an earlier coordinator had written it."""
        entries = self.partitions.setdefault(partition, [])
        entries.append(LogRecord(len(entries), key, value))

    def append_marker(self, partition: int, producer_id: int, commit: bool) -> None:
        """What the broker's WriteTxnMarkers does to a __consumer_offsets partition."""
        entries = self.partitions.setdefault(partition, [])
        entries.append(LogMarker(len(entries), producer_id, commit))

    def records(self, partition: int) -> list[Record]:
        """The (key, value) of every record, markers left out."""
        return [
            (e.key, e.value) for e in self.partitions.get(partition, [])
            if isinstance(e, LogRecord)
        ]

    def read(self, partition: int) -> Iterable[LogEntry]:
        return list(self.partitions.get(partition, []))


class LogAppendError(Exception):
    """An append failure with a Kafka error code (what a real partition would report)."""

    def __init__(self, error_code: ErrorCode, message: str = "") -> None:
        super().__init__(message or error_code.name)
        self.error_code = error_code


def append_error_code(exc: BaseException) -> ErrorCode:
    """The produce-level error an append exception stands for."""
    code = getattr(exc, "error_code", None)
    if code is not None:
        try:
            return code if isinstance(code, ErrorCode) else ErrorCode(int(code))
        except ValueError:
            return ErrorCode.unknown_server_error
    if isinstance(exc, TimeoutError):
        return ErrorCode.request_timed_out
    if isinstance(exc, OSError):
        return ErrorCode.kafka_storage_error
    return ErrorCode.unknown_server_error


_MOVED = {ErrorCode.not_leader_or_follower, ErrorCode.kafka_storage_error}
_UNAVAILABLE = {
    ErrorCode.unknown_topic_or_partition,
    ErrorCode.not_enough_replicas,
    ErrorCode.not_enough_replicas_after_append,
}
_TOO_LARGE = {
    ErrorCode.message_too_large,
    ErrorCode.record_list_too_large,
    ErrorCode.invalid_fetch_size,
}


def offset_commit_error(exc: BaseException) -> ErrorCode:
    """Kafka's mapping for a failed offset commit write. Clients retry the
    coordinator errors after rediscovering the coordinator."""
    code = append_error_code(exc)
    if code in _UNAVAILABLE or code is ErrorCode.request_timed_out:
        return ErrorCode.coordinator_not_available
    if code in _MOVED:
        return ErrorCode.not_coordinator
    if code in _TOO_LARGE:
        return ErrorCode.invalid_commit_offset_size
    return code


def group_write_error(exc: BaseException) -> ErrorCode:
    """Kafka's mapping for a failed group metadata write (SyncGroup, static rejoin).
    A timeout becomes REBALANCE_IN_PROGRESS so members simply rejoin."""
    code = append_error_code(exc)
    if code in _UNAVAILABLE:
        return ErrorCode.coordinator_not_available
    if code in _MOVED:
        return ErrorCode.not_coordinator
    if code is ErrorCode.request_timed_out:
        return ErrorCode.rebalance_in_progress
    if code in _TOO_LARGE:
        return ErrorCode.unknown_server_error
    return code


def admin_write_error(exc: BaseException) -> ErrorCode:
    """Mapping for DeleteGroups/OffsetDelete writes (what Kafka's newer coordinator does)."""
    code = append_error_code(exc)
    if code in _UNAVAILABLE or code is ErrorCode.request_timed_out:
        return ErrorCode.coordinator_not_available
    if code in _MOVED:
        return ErrorCode.not_coordinator
    if code in _TOO_LARGE:
        return ErrorCode.unknown_server_error
    return code

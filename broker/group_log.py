"""The group coordinator's durable state, kept in the ``__consumer_offsets`` topic.

Implements the coordinator's ``GroupLog`` protocol on the broker's own partitions, so
committed offsets are written, replicated and recovered like any other record.

Writes are coordinator appends (``AppendOrigin.COORDINATOR``), as in Kafka: a
TxnOffsetCommit's batch carries its producer id and epoch with the transactional flag and
base sequence 0, like Kafka's GroupMetadataManager writes it; storage checks only that the
epoch is not older than the producer's last one (a fenced producer gets
INVALID_PRODUCER_EPOCH), not sequence numbers. Reads hand the coordinator each record with
its batch's producer id and transactional flag, and each transaction marker, so replay
can hold transactional offsets until their marker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol

from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.group.log import LogEntry, LogMarker, LogRecord, TxnProducer
from odradek.broker.partition import NotEnoughReplicas, Partition
from odradek.storage.batch import read_batch_header
from odradek.storage.records import Record, decode_records, encode_batch, parse_marker


class GroupLogError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = code


class PartitionLookup(Protocol):
    """What the group log uses of the replica manager: the partitions this node hosts."""

    def get(self, tp: tuple[str, int]) -> Partition | None: ...


_APPEND_TIMEOUT_MS = 5000


class PartitionGroupLog:
    def __init__(self, replicas: PartitionLookup, topic: str, num_partitions: int) -> None:
        self.replicas = replicas
        self.topic = topic
        self.num_partitions = num_partitions

    def _leader(self, partition: int) -> Partition:
        p = self.replicas.get((self.topic, partition))
        if p is None or not p.is_leader:
            raise GroupLogError(ErrorCode.not_coordinator,
                                f"{self.topic}-{partition} is not led by this node")
        return p

    async def append(self, partition: int, records: list[tuple[bytes, bytes | None]],
                     producer: TxnProducer | None = None) -> int:
        if not records:
            raise ValueError("an append to the group log needs at least one record")
        p = self._leader(partition)
        now = int(time.time() * 1000)
        recs = [Record(offset_delta=i, key=k, value=v) for i, (k, v) in enumerate(records)]
        if producer is None:
            batch = encode_batch(recs, timestamp_ms=now)
        else:
            batch = encode_batch(recs, timestamp_ms=now, producer_id=producer.producer_id,
                                 producer_epoch=producer.producer_epoch, base_sequence=0,
                                 is_transactional=True)
        try:
            # Committed offsets are acks=all writes: refused while the ISR is below min ISR.
            result = p.append(batch, acks_all=True, origin=storage.AppendOrigin.COORDINATOR)
        except NotEnoughReplicas as e:
            raise GroupLogError(ErrorCode.not_enough_replicas,
                                f"cannot write to {self.topic}-{partition}: {e}") from e
        except storage.StorageError as e:
            # The storage error's own code (INVALID_PRODUCER_EPOCH for a fenced producer,
            # MESSAGE_TOO_LARGE, KAFKA_STORAGE_ERROR ...): group/log.py maps it per API.
            raise GroupLogError(_code(e.error_code),
                                f"cannot write to {self.topic}-{partition}: {e}") from e
        code = await p.wait_replicated(result.last_offset + 1, _APPEND_TIMEOUT_MS / 1000)
        if code != ErrorCode.none:
            # Kafka maps these to NOT_COORDINATOR/COORDINATOR_NOT_AVAILABLE for the client.
            raise GroupLogError(ErrorCode.coordinator_not_available,
                                f"offsets write to {self.topic}-{partition} was not "
                                f"replicated: {code.name}")
        return result.base_offset

    def read(self, partition: int) -> Iterator[LogEntry]:
        plog = self._leader(partition).log
        offset = plog.log_start_offset
        for result in plog.scan():
            yield from _entries(result.records, offset)
            offset = result.next_offset


def _entries(buf: bytes | memoryview, start: int) -> Iterator[LogEntry]:
    """The records (from offset ``start`` on) and markers of the batches in ``buf``."""
    pos = 0
    while pos < len(buf):
        header = read_batch_header(buf, pos)
        if header.is_control:
            try:
                marker = parse_marker(header, buf, pos)
            except storage.InvalidRecordError:
                marker = None  # a control record that is no transaction marker: Kafka skips it
            # A marker emptied by the cleaner closes nothing any more.
            if marker is not None and header.base_offset >= start:
                yield LogMarker(header.base_offset, header.producer_id, marker.commit)
        else:
            for r in decode_records(header, buf, pos):
                if r.offset >= start and r.key is not None:
                    yield LogRecord(r.offset, r.key, r.value, header.producer_id,
                                    header.is_transactional)
        pos += header.total_size


def _code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.unknown_server_error

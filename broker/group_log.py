"""The group coordinator's durable state, kept in the ``__consumer_offsets`` topic.

Implements the coordinator's ``GroupLog`` protocol on the broker's own partitions, so
committed offsets are written, replicated and recovered like any other record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from kio.schema.errors import ErrorCode

from odradek.broker.partition import Partition
from odradek.broker.replica_manager import ReplicaManager
from odradek.storage.records import Record, decode_batches, encode_batch


class GroupLogError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = code


_APPEND_TIMEOUT_MS = 5000
_READ_CHUNK = 1 << 20


class PartitionGroupLog:
    def __init__(self, replicas: ReplicaManager, topic: str, num_partitions: int) -> None:
        self.replicas = replicas
        self.topic = topic
        self.num_partitions = num_partitions

    def _leader(self, partition: int) -> Partition:
        p = self.replicas.get((self.topic, partition))
        if p is None or not p.is_leader:
            raise GroupLogError(ErrorCode.not_coordinator,
                                f"{self.topic}-{partition} is not led by this node")
        return p

    async def append(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        if not records:
            return
        p = self._leader(partition)
        now = int(time.time() * 1000)
        batch = encode_batch([Record(offset_delta=i, key=k, value=v)
                              for i, (k, v) in enumerate(records)], timestamp_ms=now)
        try:
            # Committed offsets are acks=all writes: refused while the ISR is below min ISR.
            result = p.append(batch, acks_all=True)
        except Exception as e:
            raise GroupLogError(ErrorCode.coordinator_not_available,
                                f"cannot write to {self.topic}-{partition}: {e}") from e
        code = await p.wait_replicated(result.last_offset + 1, _APPEND_TIMEOUT_MS / 1000)
        if code != ErrorCode.none:
            # Kafka maps these to NOT_COORDINATOR/COORDINATOR_NOT_AVAILABLE for the client.
            raise GroupLogError(ErrorCode.coordinator_not_available,
                                f"offsets write to {self.topic}-{partition} was not "
                                f"replicated: {code.name}")

    def read(self, partition: int) -> Iterator[tuple[bytes, bytes | None]]:
        p = self._leader(partition)
        plog = p.log
        offset = plog.log_start_offset
        end = plog.log_end_offset
        while offset < end:
            result = plog.read(offset, _READ_CHUNK, max_offset=end, min_one_batch=True)
            if not result.records:
                break
            for header, recs in decode_batches(result.records):
                if header.is_control:
                    continue
                for r in recs:
                    if r.offset >= offset and r.key is not None:
                        yield r.key, r.value
            offset = result.next_offset

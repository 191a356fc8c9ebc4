"""The transaction coordinator's durable state, kept in the ``__transaction_state`` topic.

Implements the coordinator's ``TxnLog`` protocol on the broker's own partitions: each
append is an acks=all write of this node as the partition's leader *at the coordinator
epoch the records were decided under*, so a coordinator that lost the partition (and maybe
got it back at a newer epoch) never interleaves stale records with the new leader's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.partition import NotEnoughReplicas, Partition
from odradek.broker.replica_manager import ReplicaManager
from odradek.broker.txn.log import LogAppendError
from odradek.storage.errors import StorageError
from odradek.storage.records import Record, decode_batches, encode_batch

# How long a write waits for its replicas (Kafka uses request.timeout.ms, 30 s): past it
# the client is told COORDINATOR_NOT_AVAILABLE and retries.
APPEND_TIMEOUT_MS = 30_000


class PartitionTxnLog:
    def __init__(self, replicas: ReplicaManager, topic: str, num_partitions: int,
                 append_timeout_ms: int = APPEND_TIMEOUT_MS) -> None:
        self.replicas = replicas
        self.topic = topic
        self.num_partitions = num_partitions
        self.append_timeout_ms = append_timeout_ms

    def _leader(self, partition: int, leader_epoch: int | None = None) -> Partition:
        p = self.replicas.get((self.topic, partition))
        if p is None or not p.is_leader:
            raise LogAppendError(ErrorCode.not_leader_or_follower,
                                 f"{self.topic}-{partition} is not led by this node")
        if leader_epoch is not None and p.leader_epoch != leader_epoch:
            raise LogAppendError(
                ErrorCode.not_leader_or_follower,
                f"{self.topic}-{partition} is led here at epoch {p.leader_epoch}, not at the "
                f"coordinator epoch {leader_epoch} the records were decided under")
        return p

    async def append(self, partition: int, records: list[tuple[bytes, bytes | None]], *,
                     leader_epoch: int) -> None:
        if not records:
            return
        p = self._leader(partition, leader_epoch)
        batch = encode_batch([Record(offset_delta=i, key=k, value=v)
                              for i, (k, v) in enumerate(records)],
                             timestamp_ms=int(time.time() * 1000))
        try:
            result = p.append(batch, acks_all=True, origin=storage.AppendOrigin.COORDINATOR)
        except NotEnoughReplicas as e:
            raise LogAppendError(ErrorCode.not_enough_replicas, str(e)) from e
        except StorageError as e:
            raise LogAppendError(ErrorCode(e.error_code), str(e)) from e
        code = await p.wait_replicated(result.last_offset + 1, self.append_timeout_ms / 1000)
        if code != ErrorCode.none:
            raise LogAppendError(code, f"write to {self.topic}-{partition} was not "
                                       f"replicated: {code.name}")

    def read(self, partition: int) -> Iterator[tuple[bytes, bytes | None]]:
        plog = self._leader(partition).log
        offset = plog.log_start_offset
        for result in plog.scan():
            for header, recs in decode_batches(result.records):
                if header.is_control:
                    continue
                for r in recs:
                    if r.offset >= offset and r.key is not None:
                        yield r.key, r.value
            offset = result.next_offset

"""Idempotent producer state of one partition (Kafka's ProducerStateManager, no transactions).

For every producer id we keep its epoch and the metadata of its last five batches, which
is what a producer with ``max.in.flight.requests.per.connection <= 5`` may retry. The
state is not persisted: the log rebuilds it on open by scanning batch headers.

Rules on the leader path (``AppendOrigin.CLIENT``):

* same epoch and the exact sequence range of a retained batch: a duplicate, answered
  with the original offsets and not written again;
* epoch older than the known one: InvalidProducerEpochError;
* a newer epoch must start at sequence 0: OutOfOrderSequenceError otherwise;
* an unknown producer may start at any sequence. Kafka >= 2.x (KIP-360) treats a
  producer whose state was removed by retention or DeleteRecords as new, and so do we;
* otherwise the first sequence must follow the last one (wrapping 2**31-1 -> 0).

Replicated and recovered batches update the state without checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from odradek.storage.batch import NO_SEQUENCE, BatchHeader
from odradek.storage.errors import InvalidProducerEpochError, OutOfOrderSequenceError

BATCHES_TO_RETAIN = 5
MAX_SEQUENCE = 0x7FFFFFFF


class AppendOrigin(Enum):
    CLIENT = "client"  # produce requests: full validation
    COORDINATOR = "coordinator"  # group/transaction coordinators writing internal records
    REPLICATION = "replication"  # follower copying the leader: no validation


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int
    batches: list[BatchMetadata] = field(default_factory=list)
    # Last offset this producer wrote (data or control): retention forgets the producer
    # once the log start offset passes it.
    last_offset: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    def find_duplicate(self, first_seq: int, last_seq: int) -> BatchMetadata | None:
        for b in self.batches:
            if b.first_seq == first_seq and b.last_seq == last_seq:
                return b
        return None

    def copy(self) -> ProducerEntry:
        return ProducerEntry(self.producer_id, self.epoch, list(self.batches), self.last_offset)

    def add(self, meta: BatchMetadata) -> None:
        self.batches.append(meta)
        if len(self.batches) > BATCHES_TO_RETAIN:
            del self.batches[0]
        self.last_offset = meta.last_offset


def in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == MAX_SEQUENCE)


# (header with offsets already assigned, max timestamp as it will be stored)
PendingBatch = tuple[BatchHeader, int, int]  # header, first offset, max timestamp


class ProducerStateManager:
    def __init__(self) -> None:
        self._producers: dict[int, ProducerEntry] = {}

    @property
    def producers(self) -> Mapping[int, ProducerEntry]:
        return MappingProxyType(self._producers)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._producers.get(producer_id)

    def prepare(
        self, batches: Iterable[PendingBatch], origin: AppendOrigin
    ) -> tuple[dict[int, ProducerEntry], BatchMetadata | None]:
        """Validate an append and compute the entries it would produce, without applying.

        Returns (updated entries, None), or ({}, original metadata) when a batch is a
        duplicate of one already written (the whole append is then answered with it,
        as Kafka does). Raises OutOfOrderSequenceError / InvalidProducerEpochError.
        """
        updates: dict[int, ProducerEntry] = {}
        check = origin is not AppendOrigin.REPLICATION
        for header, first_offset, max_ts in batches:
            pid = header.producer_id
            if pid < 0:
                continue
            entry = updates.get(pid)
            if entry is None:
                current = self._producers.get(pid)
                entry = current.copy() if current is not None else None
            epoch = header.producer_epoch
            last_offset = first_offset + header.last_offset_delta
            if header.is_control:
                if check and entry is not None and epoch < entry.epoch:
                    raise InvalidProducerEpochError(
                        f"transaction marker at offset {first_offset} for producer {pid} "
                        f"has epoch {epoch}, older than the current epoch {entry.epoch}"
                    )
                if entry is None or entry.epoch != epoch:
                    entry = ProducerEntry(pid, epoch)
                entry.last_offset = last_offset
                updates[pid] = entry
                continue
            first_seq = header.base_sequence
            last_seq = header.last_sequence
            if check and origin is AppendOrigin.CLIENT and entry is not None:
                if entry.epoch == epoch:
                    duplicate = entry.find_duplicate(first_seq, last_seq)
                    if duplicate is not None:
                        return {}, duplicate
                if epoch < entry.epoch:
                    raise InvalidProducerEpochError(
                        f"producer {pid} wrote with epoch {epoch}, older than the last seen "
                        f"epoch {entry.epoch}; the producer was fenced by a newer instance"
                    )
                if epoch != entry.epoch:
                    if first_seq != 0:
                        raise OutOfOrderSequenceError(
                            f"producer {pid} bumped its epoch {entry.epoch} -> {epoch} but "
                            f"started at sequence {first_seq}; a new epoch starts at 0"
                        )
                elif not in_sequence(entry.last_seq, first_seq):
                    raise OutOfOrderSequenceError(
                        f"producer {pid} epoch {epoch}: sequence {first_seq} does not follow "
                        f"the last written sequence {entry.last_seq} (expected "
                        f"{(entry.last_seq + 1) & MAX_SEQUENCE})"
                    )
            if entry is None or entry.epoch != epoch:
                entry = ProducerEntry(pid, epoch)
            entry.add(BatchMetadata(first_seq, last_seq, first_offset, last_offset, max_ts))
            updates[pid] = entry
        return updates, None

    def commit(self, updates: Mapping[int, ProducerEntry]) -> None:
        self._producers.update(updates)

    def update_from_log(self, headers: Iterable[BatchHeader]) -> None:
        """Apply batches already in the log (rebuild on open, follower appends)."""
        pending = ((h, h.base_offset, h.max_timestamp) for h in headers)
        updates, _ = self.prepare(pending, AppendOrigin.REPLICATION)
        self.commit(updates)

    def truncate_head(self, log_start_offset: int) -> None:
        """Forget producers whose every batch is now below the log start offset."""
        gone = [pid for pid, e in self._producers.items() if e.last_offset < log_start_offset]
        for pid in gone:
            del self._producers[pid]

    def clear(self) -> None:
        self._producers.clear()

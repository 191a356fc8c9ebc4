"""Producer state of one partition: idempotence and transactions (Kafka's
ProducerStateManager and ProducerAppendInfo, KIP-98).

For every producer id we keep its epoch, the metadata of its last five batches (what a
producer with ``max.in.flight.requests.per.connection <= 5`` may retry), the last
coordinator epoch that wrote a marker for it and the first offset of its open transaction.

Idempotence rules on the leader path (``AppendOrigin.CLIENT``):

* same epoch and the exact sequence range of a retained batch: a duplicate, answered
  with the original offsets and not written again;
* epoch older than the known one: InvalidProducerEpochError (also for COORDINATOR writes);
* a newer epoch must start at sequence 0: OutOfOrderSequenceError otherwise;
* an unknown producer may start at any sequence. Kafka >= 2.x (KIP-360) treats a
  producer whose state was removed by retention or DeleteRecords as new, and so do we;
* otherwise the first sequence must follow the last one (wrapping 2**31-1 -> 0).

Transactions: a transactional data batch (attribute bit 4) of a producer without an open
transaction opens one at its first offset. A marker (a control batch, see records.py) closes
it and yields a ``CompletedTxn``; a marker for a producer with nothing open completes nothing
(Kafka writes markers to every partition of a transaction, written to or not). On the leader
and coordinator paths a non-transactional batch from a producer with an open transaction is
InvalidTxnStateError, and a marker whose coordinator epoch is older than the last one seen for
its producer is TransactionCoordinatorFencedError. Replicated and recovered batches update the
state without checks: the leader made them.

The last stable offset (LSO) is what read_committed consumers may read up to. A transaction
holds it back from its first offset until its marker is below the high watermark: an open
transaction because its outcome is unknown, a completed one because its marker could still
be lost with the leader ("unreplicated" in Kafka's terms). The LSO written into an abort's
index entry is computed when the marker is applied, from open transactions only, as Kafka
does: the first offset of the oldest open transaction of another producer, else the marker's
offset + 1. Batches are applied one at a time in log order, so a leader append, a follower
append and a replay after a crash compute the same entries.

Retention forgets producers whose last write (data or marker) is below the log start offset,
except while their transaction is open (Kafka keeps those too: the LSO depends on them).

Validation and application are split: ``prepare`` checks an append against a scratch copy
and returns what it would change, ``commit`` applies it once the bytes are written. The
state is persisted in snapshots (storage/producer_snapshot.py) by the partition log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import NamedTuple

from odradek.storage.batch import NO_SEQUENCE, BatchHeader
from odradek.storage.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    TransactionCoordinatorFencedError,
)
from odradek.storage.records import EndTxnMarker

log = logging.getLogger("odradek.storage")

BATCHES_TO_RETAIN = 5
MAX_SEQUENCE = 0x7FFFFFFF
NO_COORDINATOR_EPOCH = -1


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
    # The coordinator epoch of the last marker written for this producer.
    coordinator_epoch: int = NO_COORDINATOR_EPOCH
    # First offset of the open transaction, None when there is none.
    current_txn_first_offset: int | None = None
    # Max timestamp of the last batch or marker.
    last_timestamp: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_data_offset(self) -> int:
        """Last offset of the last data batch retained, -1 if none."""
        return self.batches[-1].last_offset if self.batches else -1

    def find_duplicate(self, first_seq: int, last_seq: int) -> BatchMetadata | None:
        for b in self.batches:
            if b.first_seq == first_seq and b.last_seq == last_seq:
                return b
        return None

    def copy(self) -> ProducerEntry:
        return ProducerEntry(self.producer_id, self.epoch, list(self.batches), self.last_offset,
                             self.coordinator_epoch, self.current_txn_first_offset,
                             self.last_timestamp)

    def bump_epoch(self, epoch: int) -> None:
        """A new epoch forgets the batches of the old one (their sequences start over);
        the open transaction and coordinator epoch stay, as in Kafka."""
        if epoch != self.epoch:
            self.batches.clear()
            self.epoch = epoch

    def add(self, meta: BatchMetadata) -> None:
        self.batches.append(meta)
        if len(self.batches) > BATCHES_TO_RETAIN:
            del self.batches[0]
        self.last_offset = meta.last_offset
        self.last_timestamp = meta.timestamp


@dataclass(frozen=True, slots=True)
class CompletedTxn:
    producer_id: int
    first_offset: int
    last_offset: int  # the marker's offset
    is_aborted: bool


@dataclass(frozen=True, slots=True)
class TxnStarted:
    producer_id: int
    first_offset: int


class PendingBatch(NamedTuple):
    """A batch as it will be (or was) written: offsets assigned, max timestamp as stored,
    and for a control batch the marker it holds (None: empty or unreadable)."""

    header: BatchHeader
    first_offset: int
    max_timestamp: int
    marker: EndTxnMarker | None = None


@dataclass(slots=True)
class ProducerAppend:
    """What an append would change: the final entry of every producer it touches and the
    transactions it opens and closes, in log order. ``duplicate``: the append repeats a
    retained batch and must not be written (the rest is then empty)."""

    updates: dict[int, ProducerEntry] = field(default_factory=dict)
    events: list[TxnStarted | CompletedTxn] = field(default_factory=list)
    duplicate: BatchMetadata | None = None
    end_offset: int | None = None  # offset after the last batch, None if no batch


def in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == MAX_SEQUENCE)


class ProducerStateManager:
    def __init__(self) -> None:
        self._producers: dict[int, ProducerEntry] = {}
        # Open transactions: first offset -> producer id.
        self._ongoing: dict[int, int] = {}
        # Completed transactions whose marker is not yet below the high watermark.
        self._unreplicated: dict[int, CompletedTxn] = {}
        self._first_unstable: int | None = None
        # Offset after the last batch applied (Kafka's map end offset): a snapshot taken
        # now describes the log below it.
        self.map_end_offset = 0

    # --- reading -----------------------------------------------------------------------

    @property
    def producers(self) -> Mapping[int, ProducerEntry]:
        return MappingProxyType(self._producers)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._producers.get(producer_id)

    @property
    def ongoing_txns(self) -> Mapping[int, int]:
        """First offset -> producer id of every open transaction."""
        return MappingProxyType(self._ongoing)

    @property
    def unreplicated_txns(self) -> Mapping[int, CompletedTxn]:
        """First offset -> transaction, for completed ones whose marker is not yet below
        the high watermark."""
        return MappingProxyType(self._unreplicated)

    @property
    def first_unstable_offset(self) -> int | None:
        """First offset of the oldest transaction still open or not yet replicated."""
        return self._first_unstable

    def _recompute_first_unstable(self) -> None:
        first = min(self._ongoing, default=None)
        unreplicated = min(self._unreplicated, default=None)
        if first is None or (unreplicated is not None and unreplicated < first):
            first = unreplicated
        self._first_unstable = first

    # --- appending ---------------------------------------------------------------------

    def prepare(self, batches: Iterable[PendingBatch], origin: AppendOrigin) -> ProducerAppend:
        """Validate an append and compute what it would change, without applying it.

        Raises OutOfOrderSequenceError, InvalidProducerEpochError, InvalidTxnStateError,
        TransactionCoordinatorFencedError or InvalidRecordError (an unreadable marker from
        a coordinator), except for ``AppendOrigin.REPLICATION``, which never raises.
        """
        plan = ProducerAppend()
        updates = plan.updates
        check = origin is not AppendOrigin.REPLICATION
        for header, first_offset, max_ts, marker in batches:
            last_offset = first_offset + header.last_offset_delta
            plan.end_offset = last_offset + 1
            pid = header.producer_id
            if pid < 0:
                continue
            entry = updates.get(pid)
            if entry is None:
                current = self._producers.get(pid)
                entry = current.copy() if current is not None else None
            epoch = header.producer_epoch
            if header.is_control:
                updates[pid] = self._apply_marker(entry, header, first_offset, max_ts, marker,
                                                  check, plan)
                continue
            first_seq = header.base_sequence
            last_seq = header.last_sequence
            if check and entry is not None:
                if origin is AppendOrigin.CLIENT and entry.epoch == epoch:
                    duplicate = entry.find_duplicate(first_seq, last_seq)
                    if duplicate is not None:
                        return ProducerAppend(duplicate=duplicate)
                if epoch < entry.epoch:
                    raise InvalidProducerEpochError(
                        f"producer {pid} wrote with epoch {epoch}, older than the last seen "
                        f"epoch {entry.epoch}; the producer was fenced by a newer instance"
                    )
                if origin is AppendOrigin.CLIENT:
                    if epoch != entry.epoch:
                        if first_seq != 0:
                            raise OutOfOrderSequenceError(
                                f"producer {pid} bumped its epoch {entry.epoch} -> {epoch} "
                                f"but started at sequence {first_seq}; a new epoch starts at 0"
                            )
                    elif not in_sequence(entry.last_seq, first_seq):
                        raise OutOfOrderSequenceError(
                            f"producer {pid} epoch {epoch}: sequence {first_seq} does not "
                            f"follow the last written sequence {entry.last_seq} (expected "
                            f"{(entry.last_seq + 1) & MAX_SEQUENCE})"
                        )
                if entry.current_txn_first_offset is not None and not header.is_transactional:
                    raise InvalidTxnStateError(
                        f"producer {pid} has a transaction open since offset "
                        f"{entry.current_txn_first_offset} but wrote a non-transactional "
                        f"batch at offset {first_offset}; end the transaction first"
                    )
            if entry is None:
                entry = ProducerEntry(pid, epoch)
            else:
                entry.bump_epoch(epoch)
            entry.add(BatchMetadata(first_seq, last_seq, first_offset, last_offset, max_ts))
            if header.is_transactional and entry.current_txn_first_offset is None:
                entry.current_txn_first_offset = first_offset
                plan.events.append(TxnStarted(pid, first_offset))
            updates[pid] = entry
        return plan

    def _apply_marker(self, entry: ProducerEntry | None, header: BatchHeader, offset: int,
                      max_ts: int, marker: EndTxnMarker | None, check: bool,
                      plan: ProducerAppend) -> ProducerEntry:
        pid = header.producer_id
        epoch = header.producer_epoch
        if check:
            if marker is None:
                raise InvalidRecordError(
                    f"control batch at offset {offset} for producer {pid} holds no "
                    "transaction marker")
            if entry is not None and epoch < entry.epoch:
                raise InvalidProducerEpochError(
                    f"transaction marker at offset {offset} for producer {pid} "
                    f"has epoch {epoch}, older than the current epoch {entry.epoch}"
                )
            if entry is not None and entry.coordinator_epoch > marker.coordinator_epoch:
                raise TransactionCoordinatorFencedError(
                    f"transaction marker at offset {offset} for producer {pid} comes from "
                    f"coordinator epoch {marker.coordinator_epoch}, older than the epoch "
                    f"{entry.coordinator_epoch} already seen: a zombie coordinator"
                )
        if entry is None:
            entry = ProducerEntry(pid, epoch)
        else:
            entry.bump_epoch(epoch)
        entry.last_offset = offset + header.last_offset_delta
        entry.last_timestamp = max_ts
        if marker is None:
            # An emptied marker (the cleaner keeps one as its producer's last write) still
            # carries the epoch, which is what fences; it closes nothing.
            return entry
        if entry.current_txn_first_offset is not None:
            plan.events.append(CompletedTxn(pid, entry.current_txn_first_offset, offset,
                                            not marker.commit))
            entry.current_txn_first_offset = None
        entry.coordinator_epoch = marker.coordinator_epoch
        return entry

    def commit(self, plan: ProducerAppend) -> list[tuple[CompletedTxn, int]]:
        """Apply a prepared append; returns every completed transaction with the LSO it
        leaves (what an abort's index entry records)."""
        self._producers.update(plan.updates)
        completed: list[tuple[CompletedTxn, int]] = []
        for event in plan.events:
            if isinstance(event, TxnStarted):
                self._ongoing[event.first_offset] = event.producer_id
                continue
            lso = event.last_offset + 1
            for first, pid in sorted(self._ongoing.items()):
                if pid != event.producer_id:
                    lso = first
                    break
            self._ongoing.pop(event.first_offset, None)
            self._unreplicated[event.first_offset] = event
            completed.append((event, lso))
        if plan.events:
            self._recompute_first_unstable()
        if plan.end_offset is not None:
            self.map_end_offset = plan.end_offset
        return completed

    def apply(self, batches: Iterable[PendingBatch]) -> list[tuple[CompletedTxn, int]]:
        """Apply batches already in the log (follower appends, replay), without checks."""
        return self.commit(self.prepare(batches, AppendOrigin.REPLICATION))

    # --- offsets moving ----------------------------------------------------------------

    def on_high_watermark(self, high_watermark: int) -> None:
        """Completed transactions whose marker is now below the high watermark are stable."""
        if not self._unreplicated:
            return
        gone = [f for f, t in self._unreplicated.items() if t.last_offset < high_watermark]
        if gone:
            for first in gone:
                del self._unreplicated[first]
            self._recompute_first_unstable()

    def truncate_head(self, log_start_offset: int) -> bool:
        """Forget producers whose every write is now below the log start offset, unless
        their transaction is still open. Returns whether any producer was forgotten."""
        gone = [pid for pid, e in self._producers.items()
                if e.last_offset < log_start_offset and e.current_txn_first_offset is None]
        for pid in gone:
            del self._producers[pid]
        done = [f for f, t in self._unreplicated.items() if t.last_offset < log_start_offset]
        for first in done:
            del self._unreplicated[first]
        if done:
            self._recompute_first_unstable()
        self.map_end_offset = max(self.map_end_offset, log_start_offset)
        return bool(gone)

    def clear(self, map_end_offset: int = 0) -> None:
        self._producers.clear()
        self._ongoing.clear()
        self._unreplicated.clear()
        self._first_unstable = None
        self.map_end_offset = map_end_offset

    # --- snapshots -----------------------------------------------------------------------

    def load(self, producers: Iterable[ProducerEntry], unreplicated: Iterable[CompletedTxn],
             map_end_offset: int) -> None:
        """Replace the state with a snapshot's."""
        self.clear(map_end_offset)
        for entry in producers:
            self._producers[entry.producer_id] = entry
            if entry.current_txn_first_offset is not None:
                self._ongoing[entry.current_txn_first_offset] = entry.producer_id
        for txn in unreplicated:
            self._unreplicated[txn.first_offset] = txn
        self._recompute_first_unstable()

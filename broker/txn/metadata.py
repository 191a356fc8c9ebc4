"""A transactional id's state and its state machine (Kafka's TransactionMetadata).

Pure: no I/O, no asyncio, no clock (timestamps are passed in).

A change is two steps, as in Kafka. A ``prepare_*`` method checks the change against the
table of valid previous states, marks the metadata as having a pending transition (which
refuses any other change meanwhile) and returns a :class:`TxnTransit`, an immutable
snapshot of the state to become; the caller writes it to ``__transaction_state`` and, once
the record is durable, calls :meth:`TransactionMetadata.complete_transition`; if the write
failed it calls :meth:`TransactionMetadata.abort_transition` and nothing changed.

The one deliberate exception is an epoch fence (see :meth:`prepare_fenced_abort`): the
bumped epoch stays in memory even if its write fails, because the write may have landed
anyway and the fenced producer must not be allowed to continue at the old epoch (Kafka's
``hasFailedEpochFence``). That epoch is never handed to a client.

Epochs: a producer epoch is an int16; ``MAX_EPOCH - 1`` is the last one a client may
hold (``is_epoch_exhausted``), so the coordinator can always fence with one more bump.
Transactions v2 (KIP-890) bump the epoch at every EndTxn; when that would pass the last
usable epoch the transaction carries a ``next_producer_id`` that the producer continues
with, at epoch 0, once the transaction completes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import Enum

from odradek.broker.txn.records import TxnLogValue, TxnPartitions

log = logging.getLogger("odradek.txn")

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
MAX_EPOCH = 0x7FFF  # Short.MAX_VALUE

TopicPartition = tuple[str, int]

# Kafka's transaction.version feature levels: TV 2 is KIP-890 (epoch bump per transaction,
# implicit AddPartitionsToTxn from brokers); TV 1 only changes the log value format.
TV_0 = 0
TV_1 = 1
TV_2 = 2


def supports_epoch_bump(transaction_version: int) -> bool:
    return transaction_version >= TV_2


def is_epoch_exhausted(epoch: int) -> bool:
    return epoch >= MAX_EPOCH - 1


class TxnState(Enum):
    """Kafka's TransactionState: the id stored in the log and the name clients see."""

    EMPTY = (0, "Empty", True)
    ONGOING = (1, "Ongoing", False)
    PREPARE_COMMIT = (2, "PrepareCommit", False)
    PREPARE_ABORT = (3, "PrepareAbort", False)
    COMPLETE_COMMIT = (4, "CompleteCommit", True)
    COMPLETE_ABORT = (5, "CompleteAbort", True)
    DEAD = (6, "Dead", False)
    PREPARE_EPOCH_FENCE = (7, "PrepareEpochFence", False)

    def __init__(self, state_id: int, state_name: str, expiration_allowed: bool) -> None:
        self.state_id = state_id
        self.state_name = state_name
        self.expiration_allowed = expiration_allowed

    @classmethod
    def from_id(cls, state_id: int) -> TxnState:
        for s in cls:
            if s.state_id == state_id:
                return s
        raise ValueError(f"unknown transaction state id {state_id}")

    @classmethod
    def from_name(cls, name: str) -> TxnState | None:
        for s in cls:
            if s.state_name == name:
                return s
        return None


EMPTY = TxnState.EMPTY
ONGOING = TxnState.ONGOING
PREPARE_COMMIT = TxnState.PREPARE_COMMIT
PREPARE_ABORT = TxnState.PREPARE_ABORT
COMPLETE_COMMIT = TxnState.COMPLETE_COMMIT
COMPLETE_ABORT = TxnState.COMPLETE_ABORT
DEAD = TxnState.DEAD
PREPARE_EPOCH_FENCE = TxnState.PREPARE_EPOCH_FENCE

# The whole state machine: a transition to the key is valid from these states only.
# Transactions v2 let an abort start from Empty/Complete*: a client unsure of the state
# may always abort.
VALID_PREVIOUS_STATES: dict[TxnState, frozenset[TxnState]] = {
    EMPTY: frozenset({EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT}),
    ONGOING: frozenset({ONGOING, EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT}),
    PREPARE_COMMIT: frozenset({ONGOING}),
    PREPARE_ABORT: frozenset(
        {ONGOING, PREPARE_EPOCH_FENCE, EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT}
    ),
    COMPLETE_COMMIT: frozenset({PREPARE_COMMIT}),
    COMPLETE_ABORT: frozenset({PREPARE_ABORT}),
    DEAD: frozenset({EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT}),
    PREPARE_EPOCH_FENCE: frozenset({ONGOING}),
}


class IllegalTransition(Exception):
    """A transition the state machine does not allow: a coordinator bug, never a client's."""


class ProducerFenced(Exception):
    """The epoch a client presented belongs to a producer that has been fenced."""


@dataclass(frozen=True, slots=True)
class TxnTransit:
    """The state a transactional id is about to have; current once its record is durable."""

    producer_id: int
    prev_producer_id: int
    next_producer_id: int
    producer_epoch: int
    last_producer_epoch: int
    txn_timeout_ms: int
    state: TxnState
    partitions: frozenset[TopicPartition]
    txn_start_timestamp: int
    txn_last_update_timestamp: int
    client_transaction_version: int

    def to_log_value(self) -> TxnLogValue:
        """The record value for this state (Kafka's TransactionLog.valueToBytes)."""
        if self.state is EMPTY and self.partitions:
            raise IllegalTransition(f"an Empty transaction cannot hold partitions: {self}")
        parts: tuple[TxnPartitions, ...] | None = None
        if self.state is not EMPTY:
            by_topic: dict[str, list[int]] = {}
            for topic, partition in sorted(self.partitions):
                by_topic.setdefault(topic, []).append(partition)
            parts = tuple(TxnPartitions(t, tuple(ids)) for t, ids in by_topic.items())
        return TxnLogValue(
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            transaction_timeout_ms=self.txn_timeout_ms,
            transaction_status=self.state.state_id,
            partitions=parts,
            last_update_timestamp_ms=self.txn_last_update_timestamp,
            start_timestamp_ms=self.txn_start_timestamp,
            previous_producer_id=self.prev_producer_id,
            next_producer_id=self.next_producer_id,
            client_transaction_version=self.client_transaction_version,
        )


class TransactionMetadata:
    """What the coordinator knows of one transactional id (mutable, changed only through
    prepare/complete; see the module docstring)."""

    __slots__ = (
        "transactional_id",
        "producer_id",
        "prev_producer_id",
        "next_producer_id",
        "producer_epoch",
        "last_producer_epoch",
        "txn_timeout_ms",
        "state",
        "partitions",
        "txn_start_timestamp",
        "txn_last_update_timestamp",
        "client_transaction_version",
        "pending_state",
        "has_failed_epoch_fence",
    )

    def __init__(
        self,
        transactional_id: str,
        *,
        producer_id: int,
        prev_producer_id: int = NO_PRODUCER_ID,
        next_producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        last_producer_epoch: int = NO_PRODUCER_EPOCH,
        txn_timeout_ms: int,
        state: TxnState = EMPTY,
        partitions: frozenset[TopicPartition] = frozenset(),
        txn_start_timestamp: int = -1,
        txn_last_update_timestamp: int,
        client_transaction_version: int = TV_0,
    ) -> None:
        self.transactional_id = transactional_id
        self.producer_id = producer_id
        self.prev_producer_id = prev_producer_id
        self.next_producer_id = next_producer_id
        self.producer_epoch = producer_epoch
        self.last_producer_epoch = last_producer_epoch
        self.txn_timeout_ms = txn_timeout_ms
        self.state = state
        # Partitions whose markers are still to be written shrink one by one while the
        # transaction completes (remove_partition); hence a mutable set.
        self.partitions: set[TopicPartition] = set(partitions)
        self.txn_start_timestamp = txn_start_timestamp
        self.txn_last_update_timestamp = txn_last_update_timestamp
        self.client_transaction_version = client_transaction_version
        self.pending_state: TxnState | None = None
        self.has_failed_epoch_fence = False

    @classmethod
    def from_log_value(cls, transactional_id: str, value: TxnLogValue) -> TransactionMetadata:
        """The metadata a record stands for (Kafka's TransactionLog.read): the last epoch is
        not stored, and an Empty transaction holds no partitions whatever the record says."""
        state = TxnState.from_id(value.transaction_status)
        partitions: set[TopicPartition] = set()
        if state is not EMPTY:
            for entry in value.partitions or ():
                partitions.update((entry.topic, p) for p in entry.partition_ids)
        return cls(
            transactional_id,
            producer_id=value.producer_id,
            prev_producer_id=value.previous_producer_id,
            next_producer_id=value.next_producer_id,
            producer_epoch=value.producer_epoch,
            last_producer_epoch=NO_PRODUCER_EPOCH,
            txn_timeout_ms=value.transaction_timeout_ms,
            state=state,
            partitions=frozenset(partitions),
            txn_start_timestamp=value.start_timestamp_ms,
            txn_last_update_timestamp=value.last_update_timestamp_ms,
            client_transaction_version=value.client_transaction_version,
        )

    def __repr__(self) -> str:
        return (
            f"TransactionMetadata({self.transactional_id!r}, pid={self.producer_id}, "
            f"epoch={self.producer_epoch}, last_epoch={self.last_producer_epoch}, "
            f"prev_pid={self.prev_producer_id}, next_pid={self.next_producer_id}, "
            f"state={self.state.state_name}, pending={self.pending_state}, "
            f"partitions={sorted(self.partitions)}, tv={self.client_transaction_version})"
        )

    # --- views ---------------------------------------------------------------------------

    @property
    def pending_transition(self) -> bool:
        return self.pending_state is not None

    @property
    def is_producer_epoch_exhausted(self) -> bool:
        return is_epoch_exhausted(self.producer_epoch)

    @property
    def has_pending_transaction(self) -> bool:
        return self.state in (ONGOING, PREPARE_ABORT, PREPARE_COMMIT)

    def snapshot(self) -> TxnTransit:
        """The current state as a transit value (no pending transition is started)."""
        return TxnTransit(
            producer_id=self.producer_id,
            prev_producer_id=self.prev_producer_id,
            next_producer_id=self.next_producer_id,
            producer_epoch=self.producer_epoch,
            last_producer_epoch=self.last_producer_epoch,
            txn_timeout_ms=self.txn_timeout_ms,
            state=self.state,
            partitions=frozenset(self.partitions),
            txn_start_timestamp=self.txn_start_timestamp,
            txn_last_update_timestamp=self.txn_last_update_timestamp,
            client_transaction_version=self.client_transaction_version,
        )

    # --- the generic step ------------------------------------------------------------------

    def prepare_transition(self, state: TxnState, **changes: object) -> TxnTransit:
        """Start a transition to ``state`` with the given fields changed (the rest as now).

        Every ``prepare_*`` below goes through here; it refuses a second pending
        transition, an invalid producer id or epoch, and a move the table does not allow.
        ``prev_producer_id`` is always the producer id before the transition.
        """
        if self.pending_state is not None:
            raise IllegalTransition(
                f"{self.transactional_id}: preparing {state.state_name} while "
                f"{self.pending_state.state_name} is pending"
            )
        base = replace(self.snapshot(), state=state, prev_producer_id=self.producer_id)
        transit = replace(base, **changes)  # type: ignore[arg-type]
        if transit.prev_producer_id != self.producer_id:
            raise IllegalTransition("the previous producer id is always the current one")
        if transit.producer_id < 0:
            raise IllegalTransition(f"illegal new producer id {transit.producer_id}")
        # A new id's epoch is -1 until its first InitProducerId; it may die like that.
        if state is not DEAD and transit.producer_epoch < 0:
            raise IllegalTransition(f"illegal new producer epoch {transit.producer_epoch}")
        if self.state not in VALID_PREVIOUS_STATES[state]:
            raise IllegalTransition(
                f"{self.transactional_id}: {state.state_name} cannot follow "
                f"{self.state.state_name}"
            )
        self.pending_state = state
        return transit

    def abort_transition(self) -> None:
        """Forget the pending transition: its write failed and nothing changed."""
        self.pending_state = None

    # --- the transitions ------------------------------------------------------------------

    def prepare_fence_producer_epoch(self) -> TxnTransit:
        """Ongoing -> PrepareEpochFence: one more epoch, to fence the producer before its
        transaction is aborted. Not bumped again if the last fence's write failed (that
        epoch may be durable already and was never handed out)."""
        if self.producer_epoch == MAX_EPOCH:
            log.error(
                "fencing %s (producer %d) at epoch %d: this must not happen",
                self.transactional_id,
                self.producer_id,
                self.producer_epoch,
            )
        bump = not self.has_failed_epoch_fence and self.producer_epoch < MAX_EPOCH
        epoch = self.producer_epoch + 1 if bump else self.producer_epoch
        return self.prepare_transition(PREPARE_EPOCH_FENCE, producer_epoch=epoch)

    def prepare_fenced_abort(
        self,
        fence: TxnTransit,
        transaction_version: int,
        now_ms: int,
        next_producer_id: int = NO_PRODUCER_ID,
    ) -> TxnTransit:
        """PrepareEpochFence (pending) -> PrepareAbort at the fenced epoch.

        The fenced epoch becomes the in-memory epoch now (and stays so if the abort's write
        fails: ``has_failed_epoch_fence``), so the fenced producer is refused from here on.

        With transactions v2, a fence of an exhausted epoch (the producer holds
        Short.MAX_VALUE - 1: the fence and the abort's bump both end at Short.MAX_VALUE)
        must come with ``next_producer_id``: the abort completes to that producer id at
        epoch 0 (Kafka's TransactionCoordinator rotates the producer id on the fence path
        too). Otherwise the id would complete at Short.MAX_VALUE, an EndTxn retry at
        MAX - 1 would hand that epoch out, and the next fence could not go above it.
        """
        if self.pending_state is not PREPARE_EPOCH_FENCE or fence.state is not PREPARE_EPOCH_FENCE:
            raise IllegalTransition(f"{self.transactional_id}: no epoch fence is pending")
        self.pending_state = None
        self.producer_epoch = fence.producer_epoch
        self.last_producer_epoch = NO_PRODUCER_EPOCH
        return self.prepare_abort_or_commit(
            PREPARE_ABORT, transaction_version, next_producer_id, now_ms, no_partition_added=False
        )

    def prepare_increment_producer_epoch(
        self, txn_timeout_ms: int, expected_epoch: int | None, now_ms: int
    ) -> TxnTransit:
        """InitProducerId on an idle id -> Empty with the next epoch (KIP-360 rules for the
        epoch a recovering producer presents). Raises ProducerFenced.

        Kafka refuses any call on an exhausted epoch (UNKNOWN_SERVER_ERROR for the client);
        here only one that would bump: the retry of the bump that exhausted it gets that
        epoch back, and its next InitProducerId moves to a new producer id."""
        bumped = self.producer_epoch + 1
        if expected_epoch is None:
            # A new producer instance: next epoch, and no earlier one to recognize.
            epoch, last = bumped, NO_PRODUCER_EPOCH
        elif self.producer_epoch == NO_PRODUCER_EPOCH or expected_epoch == self.producer_epoch:
            # The current producer recovering from an error: bump, remember the old epoch.
            epoch, last = bumped, self.producer_epoch
        elif expected_epoch == self.last_producer_epoch:
            # A retry of a bump that succeeded but whose answer was lost.
            epoch, last = self.producer_epoch, self.last_producer_epoch
        else:
            raise ProducerFenced(
                f"{self.transactional_id}: epoch {expected_epoch} is neither the current "
                f"({self.producer_epoch}) nor the previous ({self.last_producer_epoch})"
            )
        if epoch == bumped and self.is_producer_epoch_exhausted:
            raise IllegalTransition(
                f"no epochs left for producer {self.producer_id} of {self.transactional_id}"
            )
        return self.prepare_transition(
            EMPTY,
            producer_epoch=epoch,
            last_producer_epoch=last,
            txn_timeout_ms=txn_timeout_ms,
            partitions=frozenset(),
            txn_start_timestamp=-1,
            txn_last_update_timestamp=now_ms,
        )

    def prepare_producer_id_rotation(
        self, new_producer_id: int, txn_timeout_ms: int, now_ms: int, record_last_epoch: bool
    ) -> TxnTransit:
        """InitProducerId when the epochs are exhausted -> Empty with a new producer id."""
        if self.has_pending_transaction:
            raise IllegalTransition("cannot rotate producer ids while a transaction is pending")
        return self.prepare_transition(
            EMPTY,
            producer_id=new_producer_id,
            producer_epoch=0,
            last_producer_epoch=self.producer_epoch if record_last_epoch else NO_PRODUCER_EPOCH,
            txn_timeout_ms=txn_timeout_ms,
            partitions=frozenset(),
            txn_start_timestamp=-1,
            txn_last_update_timestamp=now_ms,
        )

    def prepare_add_partitions(
        self, added: frozenset[TopicPartition], now_ms: int, transaction_version: int
    ) -> TxnTransit:
        """AddPartitionsToTxn / AddOffsetsToTxn -> Ongoing; a new transaction starts now if
        none was running."""
        idle = self.state in (EMPTY, COMPLETE_ABORT, COMPLETE_COMMIT)
        return self.prepare_transition(
            ONGOING,
            partitions=frozenset(self.partitions) | added,
            txn_start_timestamp=now_ms if idle else self.txn_start_timestamp,
            txn_last_update_timestamp=now_ms,
            client_transaction_version=transaction_version,
        )

    def prepare_abort_or_commit(
        self,
        state: TxnState,
        transaction_version: int,
        next_producer_id: int,
        now_ms: int,
        *,
        no_partition_added: bool,
    ) -> TxnTransit:
        """EndTxn -> PrepareCommit / PrepareAbort. Transactions v2 bump the epoch here (the
        markers carry the new epoch, fencing the producer's older batches)."""
        if state not in (PREPARE_COMMIT, PREPARE_ABORT):
            raise IllegalTransition(f"{state.state_name} is not a prepare state")
        if supports_epoch_bump(transaction_version):
            if self.producer_epoch == MAX_EPOCH and state is PREPARE_ABORT:
                # Already broken: let the abort through without overflowing.
                log.error(
                    "aborting %s (producer %d) at epoch %d: this must not happen",
                    self.transactional_id,
                    self.producer_id,
                    self.producer_epoch,
                )
                epoch = self.producer_epoch
            else:
                epoch = self.producer_epoch + 1
            last = self.producer_epoch
        else:
            epoch, last = self.producer_epoch, self.last_producer_epoch
        return self.prepare_transition(
            state,
            producer_epoch=epoch,
            last_producer_epoch=last,
            # A v2 abort with no partitions has no start time of its own.
            txn_start_timestamp=now_ms if no_partition_added else self.txn_start_timestamp,
            next_producer_id=next_producer_id,
            txn_last_update_timestamp=now_ms,
            client_transaction_version=transaction_version,
        )

    def prepare_complete(self, now_ms: int) -> TxnTransit:
        """PrepareCommit/PrepareAbort -> CompleteCommit/CompleteAbort, once every marker is
        written. A v2 transaction that ran out of epochs moves to its next producer id."""
        self.has_failed_epoch_fence = False  # the prepare record is durable
        state = COMPLETE_COMMIT if self.state is PREPARE_COMMIT else COMPLETE_ABORT
        if (
            supports_epoch_bump(self.client_transaction_version)
            and self.next_producer_id != NO_PRODUCER_ID
        ):
            pid, epoch = self.next_producer_id, 0
        else:
            pid, epoch = self.producer_id, self.producer_epoch
        return self.prepare_transition(
            state,
            producer_id=pid,
            producer_epoch=epoch,
            next_producer_id=NO_PRODUCER_ID,
            partitions=frozenset(),
            txn_last_update_timestamp=now_ms,
        )

    def prepare_dead(self) -> TxnTransit:
        """An idle id expired: Dead, removed once its tombstone is durable."""
        return self.prepare_transition(DEAD, partitions=frozenset())

    def remove_partition(self, tp: TopicPartition) -> None:
        """A marker for ``tp`` was written (or ``tp`` is gone): nothing left to do there."""
        if self.state not in (PREPARE_COMMIT, PREPARE_ABORT):
            raise IllegalTransition(
                f"{self.transactional_id}: removing {tp} in state {self.state.state_name}"
            )
        self.partitions.discard(tp)

    # --- completion -----------------------------------------------------------------------

    def complete_transition(self, transit: TxnTransit) -> None:
        """Make ``transit`` current: its record is durable. Checks that it is the pending
        transition and that it changes only what its kind of transition may change."""
        to = self.pending_state
        if to is None:
            raise IllegalTransition(f"{self.transactional_id}: no transition is pending")
        if to is not transit.state:
            self._fail(transit)
        if to is EMPTY:
            if (
                (self.producer_epoch != transit.producer_epoch and not self._valid_bump(transit))
                or transit.partitions
                or transit.txn_start_timestamp != -1
            ):
                self._fail(transit)
        elif to is ONGOING:
            if (
                not self._valid_epoch(transit)
                or not transit.partitions >= self.partitions
                or self.txn_timeout_ms != transit.txn_timeout_ms
            ):
                self._fail(transit)
        elif to in (PREPARE_COMMIT, PREPARE_ABORT):
            empty_abort = (
                to is PREPARE_ABORT
                and supports_epoch_bump(transit.client_transaction_version)
                and self.state in (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT)
            )
            if (
                not self._valid_epoch(transit)
                or self.partitions != transit.partitions
                or self.txn_timeout_ms != transit.txn_timeout_ms
                or not (self.txn_start_timestamp == transit.txn_start_timestamp or empty_abort)
            ):
                self._fail(transit)
        elif to in (COMPLETE_COMMIT, COMPLETE_ABORT):
            if (
                not self._valid_epoch(transit)
                or self.txn_timeout_ms != transit.txn_timeout_ms
                or transit.txn_start_timestamp == -1
            ):
                self._fail(transit)
        else:
            # PrepareEpochFence is never written (an abort replaces it) and Dead is removed
            # from the cache instead of becoming current.
            self._fail(transit)
        self.producer_id = transit.producer_id
        self.prev_producer_id = transit.prev_producer_id
        self.next_producer_id = transit.next_producer_id
        self.producer_epoch = transit.producer_epoch
        self.last_producer_epoch = transit.last_producer_epoch
        self.txn_timeout_ms = transit.txn_timeout_ms
        self.partitions = set(transit.partitions)
        self.txn_start_timestamp = transit.txn_start_timestamp
        self.txn_last_update_timestamp = transit.txn_last_update_timestamp
        self.client_transaction_version = transit.client_transaction_version
        self.pending_state = None
        self.state = to

    def _valid_epoch(self, transit: TxnTransit) -> bool:
        v2 = supports_epoch_bump(transit.client_transaction_version)
        completing = transit.state in (COMPLETE_COMMIT, COMPLETE_ABORT)
        if v2 and completing and transit.producer_epoch == 0:
            # Completing across an epoch overflow: a new producer id at epoch 0.
            return (
                transit.last_producer_epoch == self.last_producer_epoch
                and transit.prev_producer_id == self.producer_id
            )
        if v2 and transit.state in (PREPARE_COMMIT, PREPARE_ABORT):
            return (
                transit.last_producer_epoch == self.producer_epoch
                and transit.producer_id == self.producer_id
            )
        return (
            transit.producer_epoch == self.producer_epoch
            and transit.producer_id == self.producer_id
        )

    def _valid_bump(self, transit: TxnTransit) -> bool:
        return transit.producer_epoch == self.producer_epoch + 1 or (
            transit.producer_epoch == 0 and transit.producer_id != self.producer_id
        )

    def _fail(self, transit: TxnTransit) -> None:
        raise IllegalTransition(
            f"{self.transactional_id}: cannot complete the transition from {self!r} to {transit}"
        )

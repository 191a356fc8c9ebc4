"""The transaction coordinator: Kafka's transactions (KIP-98), producer epoch recovery
(KIP-360) and transactions v2 (KIP-890), kept durably in ``__transaction_state``.

Each transactional id belongs to one partition of ``__transaction_state`` (the same hash
as consumer groups); this node coordinates the ids of the partitions it leads. The broker
calls ``load_partition(p, leader_epoch)`` when it becomes leader of partition ``p`` and
``unload_partition(p)`` when it stops; requests for ids elsewhere get NOT_COORDINATOR, and
while a partition replays its records they get COORDINATOR_LOAD_IN_PROGRESS. The
partition's leader epoch is the coordinator epoch that markers carry.

What the broker provides (constructor):

* a :class:`~odradek.broker.txn.log.TxnLog` over ``__transaction_state`` (acks=all
  appends, fenced by leader epoch; reads for loading);
* a :class:`~odradek.broker.txn.markers.MarkerSender` (WriteTxnMarkers to partition leaders);
* a :class:`~odradek.broker.txn.producer_ids.ProducerIdSource` (new producer ids);
* ``partition_exists(topic, partition)`` (AddPartitionsToTxn refuses unknown partitions;
  markers skip partitions of deleted topics) and ``group_partition_for(group_id)`` (the
  ``__consumer_offsets`` partition AddOffsetsToTxn adds).

Request methods change state synchronously up to their first write and return when the
answer is known: InitProducerId, AddPartitionsToTxn and AddOffsetsToTxn once their record
is durable, EndTxn once PrepareCommit/PrepareAbort is durable (markers and the Complete*
record follow in a task the coordinator owns). Every write goes through
``TransactionMetadata``'s prepare/complete steps, so a failed write changes nothing.

Periodic work on the injectable clock: transactions past their timeout are aborted every
``abort_timed_out_transactions_interval_ms`` (the producer is fenced with an epoch bump
first), and ids idle in Empty/Complete* for ``transactional_id_expiration_ms`` are removed
with a tombstone every ``remove_expired_transactional_ids_interval_ms``.

Transaction versions: what a request may do follows its API version, as in Kafka
(AddPartitionsToTxn v4+ and EndTxn v5+ are transactions v2, AddOffsetsToTxn is always v0);
``transaction_version_level`` (the cluster's finalized ``transaction.version``) decides the
record format (value v1 from level 1) and how the coordinator's own aborts (timeouts,
fencing) are done (as v2 also when the transaction itself is a v2 one).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from odradek.broker.group.clock import Clock, LoopClock, TimerHandle
from odradek.broker.txn.log import TxnLog, txn_write_error
from odradek.broker.txn.markers import (
    RETRIABLE,
    MarkerOutcome,
    MarkerRequest,
    MarkerSender,
    classify,
)
from odradek.broker.txn.metadata import (
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    EMPTY,
    MAX_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    ONGOING,
    PREPARE_ABORT,
    PREPARE_COMMIT,
    TV_0,
    TV_2,
    ProducerFenced,
    TopicPartition,
    TransactionMetadata,
    TxnState,
    TxnTransit,
    is_epoch_exhausted,
    supports_epoch_bump,
)
from odradek.broker.txn.producer_ids import ProducerIdSource
from odradek.broker.txn.records import RecordFormatError, encode_key, encode_value
from odradek.broker.txn.registry import TxnRegistry
from odradek.broker.txn.views import (
    ListTransactionsResult,
    TransactionDescription,
    describe_transaction,
    list_transactions,
)

log = logging.getLogger("odradek.txn")

GROUP_METADATA_TOPIC = "__consumer_offsets"
# TransactionLogKey stores the id as a string with an int16 length.
MAX_TRANSACTIONAL_ID_BYTES = 0x7FFF

DEFAULT_TRANSACTION_MAX_TIMEOUT_MS = 900_000
DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS = 7 * 24 * 60 * 60 * 1000
DEFAULT_ABORT_TIMED_OUT_INTERVAL_MS = 10_000
DEFAULT_REMOVE_EXPIRED_INTERVAL_MS = 3_600_000

# Latest API versions this coordinator implements (InitProducerId v6 is KIP-939's
# two-phase commit, which it does not).
INIT_PRODUCER_ID_VERSION = 5
ADD_PARTITIONS_TO_TXN_VERSION = 5
ADD_OFFSETS_TO_TXN_VERSION = 4
END_TXN_VERSION = 5


def tv_for_add_partitions(api_version: int) -> int:
    """AddPartitionsToTxn v4+ comes from transactions v2 clients or from brokers."""
    return TV_2 if api_version > 3 else TV_0


def tv_for_end_txn(api_version: int) -> int:
    """EndTxn v5+ comes from transactions v2 clients (they expect the epoch bump)."""
    return TV_2 if api_version > 4 else TV_0


def legacy_fencing_error(code: ErrorCode, api_version: int, first_version: int) -> ErrorCode:
    """KIP-588: clients older than ``first_version`` do not know PRODUCER_FENCED and get
    INVALID_PRODUCER_EPOCH, which they handle the same way."""
    if code is ErrorCode.producer_fenced and api_version < first_version:
        return ErrorCode.invalid_producer_epoch
    return code


@dataclass(frozen=True, slots=True)
class InitProducerIdResult:
    error: ErrorCode
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


@dataclass(frozen=True, slots=True)
class EndTxnResult:
    """EndTxn's answer; v5 (transactions v2) answers carry the producer id and epoch the
    producer continues with (the bumped epoch, or a new id at epoch 0 after overflow)."""

    error: ErrorCode
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


@dataclass(frozen=True, slots=True)
class AddPartitionsTxn:
    """One transaction of an AddPartitionsToTxn v4+ request (brokers batch them)."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    partitions: frozenset[TopicPartition]
    verify_only: bool = False


class _NeedProducerId:
    """A transition needs a new producer id, to be fetched before trying again."""


_NEED_PID = _NeedProducerId()
_Step = TxnTransit | ErrorCode | _NeedProducerId


class TransactionCoordinator:
    def __init__(
        self,
        txn_log: TxnLog,
        marker_sender: MarkerSender,
        producer_ids: ProducerIdSource,
        *,
        partition_exists: Callable[[str, int], bool],
        group_partition_for: Callable[[str], int],
        transaction_max_timeout_ms: int = DEFAULT_TRANSACTION_MAX_TIMEOUT_MS,
        transactional_id_expiration_ms: int = DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS,
        abort_timed_out_transactions_interval_ms: int = DEFAULT_ABORT_TIMED_OUT_INTERVAL_MS,
        remove_expired_transactional_ids_interval_ms: int = DEFAULT_REMOVE_EXPIRED_INTERVAL_MS,
        transaction_version_level: int = TV_2,
        retry_backoff_ms: int = 100,
        concurrent_transaction_wait_ms: int = 1000,
        clock: Clock | None = None,
        node_id: int | None = None,
        load_batch_size: int = 1000,
    ) -> None:
        self._clock = clock or LoopClock()
        prefix = f"[node {node_id}] " if node_id is not None else ""
        self._registry = TxnRegistry(
            txn_log, self._clock, load_batch_size=load_batch_size, log_prefix=prefix
        )
        self._markers = marker_sender
        self._producer_ids = producer_ids
        self._partition_exists = partition_exists
        self._group_partition_for = group_partition_for
        self.transaction_max_timeout_ms = transaction_max_timeout_ms
        self.transactional_id_expiration_ms = transactional_id_expiration_ms
        self.abort_timed_out_transactions_interval_ms = abort_timed_out_transactions_interval_ms
        self.remove_expired_transactional_ids_interval_ms = (
            remove_expired_transactional_ids_interval_ms
        )
        # The cluster's finalized transaction.version; the broker may change it at runtime.
        self.transaction_version_level = transaction_version_level
        self.retry_backoff_ms = retry_backoff_ms
        # How long AddPartitionsToTxn/AddOffsetsToTxn wait for the previous transaction's
        # completion before answering CONCURRENT_TRANSACTIONS (see _add_partitions).
        self.concurrent_transaction_wait_ms = concurrent_transaction_wait_ms
        # Completions under way that such requests wait for, by transactional id.
        self._completions: dict[str, asyncio.Future[None]] = {}
        self._prefix = prefix
        self._abort_timer: TimerHandle | None = None
        # Totals since start (metrics): transactions completed here by result, and the
        # aborts this coordinator started because a transaction ran past its timeout.
        self.completed: Counter[str] = Counter()
        self.timeout_aborts = 0
        self._expiry_timer: TimerHandle | None = None

    # --- partitions and lifecycle --------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        return self._registry.num_partitions

    def partition_for(self, transactional_id: str) -> int:
        """The ``__transaction_state`` partition of an id (Kafka's hash, as for groups)."""
        return self._registry.partition_for(transactional_id)

    def owned_partitions(self) -> set[int]:
        return self._registry.owned_partitions()

    def loading_partitions(self) -> set[int]:
        return self._registry.loading_partitions()

    def coordinator_epoch(self, partition: int) -> int | None:
        return self._registry.coordinator_epoch(partition)

    async def load_partition(self, partition: int, coordinator_epoch: int) -> None:
        """Become coordinator for the ids of ``partition`` at ``coordinator_epoch`` (the
        partition's leader epoch): replay its records, then finish the transactions found
        in PrepareCommit/PrepareAbort (their markers are sent again). Idempotent; a newer
        epoch replaces an older load, an unload during the load abandons it."""
        self._start_timers()
        loaded = await self._registry.load(partition, coordinator_epoch)
        if loaded is None:
            return
        for md in loaded:
            if md.state in (PREPARE_COMMIT, PREPARE_ABORT):
                self._start_completion(md, coordinator_epoch)

    def unload_partition(self, partition: int, coordinator_epoch: int | None = None) -> None:
        """Stop coordinating the ids of ``partition`` (this node lost its leadership; with
        ``coordinator_epoch``, only if it was loaded at that epoch or an older one)."""
        self._registry.unload(partition, coordinator_epoch)

    async def close(self) -> None:
        for timer in (self._abort_timer, self._expiry_timer):
            if timer is not None:
                timer.cancel()
        self._abort_timer = self._expiry_timer = None
        await self._registry.close()

    async def settle(self) -> None:
        """Wait until every task the coordinator started is done or waiting on the clock."""
        await self._registry.settle()

    def transaction(self, transactional_id: str) -> TransactionMetadata | None:
        """The live metadata of an id this node coordinates (read-only: tests, tools)."""
        _, _, md = self._registry.get(transactional_id)
        return md

    # --- InitProducerId ------------------------------------------------------------------

    async def init_producer_id(
        self,
        transactional_id: str | None,
        transaction_timeout_ms: int,
        *,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        api_version: int = INIT_PRODUCER_ID_VERSION,
    ) -> InitProducerIdResult:
        """InitProducerId. Without a transactional id: a new producer id at epoch 0. With
        one: the id's producer id at its next epoch (a new id if the epochs ran out),
        answered once that is durable; an ongoing transaction is aborted first (the old
        producer fenced) and the client told CONCURRENT_TRANSACTIONS to retry. A producer
        id and epoch given by the client (KIP-360) must be the current ones, or the
        previous epoch of a bump whose answer was lost; others are PRODUCER_FENCED."""
        result = await self._init_producer_id(
            transactional_id, transaction_timeout_ms, producer_id, producer_epoch
        )
        code = legacy_fencing_error(result.error, api_version, 4)
        return result if code is result.error else InitProducerIdResult(code)

    async def _init_producer_id(
        self,
        transactional_id: str | None,
        timeout_ms: int,
        producer_id: int,
        producer_epoch: int,
    ) -> InitProducerIdResult:
        if transactional_id is None:
            pid = await self._new_producer_id()
            if isinstance(pid, ErrorCode):
                return InitProducerIdResult(pid)
            return InitProducerIdResult(ErrorCode.none, pid, 0)
        if not transactional_id or len(transactional_id.encode()) > MAX_TRANSACTIONAL_ID_BYTES:
            # (Flexible requests can carry longer strings than the record's key can hold.)
            return InitProducerIdResult(ErrorCode.invalid_request)
        if not 0 < timeout_ms <= self.transaction_max_timeout_ms:
            return InitProducerIdResult(ErrorCode.invalid_transaction_timeout)
        expected: tuple[int, int] | None = None
        if producer_id != NO_PRODUCER_ID or producer_epoch != NO_PRODUCER_EPOCH:
            if producer_id == NO_PRODUCER_ID or producer_epoch == NO_PRODUCER_EPOCH:
                return InitProducerIdResult(ErrorCode.invalid_request)
            expected = (producer_id, producer_epoch)

        spare: int | None = None
        created = False
        while True:
            err, coord_epoch, md = self._registry.get(transactional_id)
            if err is not None:
                return InitProducerIdResult(err)
            if md is None:
                if spare is None:
                    got = await self._new_producer_id()
                    if isinstance(got, ErrorCode):
                        return InitProducerIdResult(got)
                    spare = got
                    continue  # the world may have changed while we waited
                md = self._registry.put_if_absent(
                    TransactionMetadata(
                        transactional_id,
                        producer_id=spare,
                        txn_timeout_ms=timeout_ms,
                        txn_last_update_timestamp=self._clock.now_ms(),
                    )
                )
                created, spare = True, None
            step = self._prepare_init(md, timeout_ms, expected, spare)
            if isinstance(step, _NeedProducerId):
                got = await self._new_producer_id()
                if isinstance(got, ErrorCode):
                    return InitProducerIdResult(got)
                spare = got
                continue
            break
        if isinstance(step, ErrorCode):
            return InitProducerIdResult(step)
        if step.state is TxnState.PREPARE_EPOCH_FENCE:
            # Abort the zombie's transaction; this epoch is never handed out. The client
            # retries and then gets an epoch of its own (bumped once more).
            next_pid = NO_PRODUCER_ID
            if self._fence_needs_producer_id(md):
                assert spare is not None  # _prepare_init asked for one
                next_pid = spare
            abort = md.prepare_fenced_abort(
                step, self._fence_version(md), self._clock.now_ms(), next_pid
            )
            code, _ = await self._write_prepare(md, coord_epoch, abort, fence=True)
            return InitProducerIdResult(
                ErrorCode.concurrent_transactions if code is ErrorCode.none else code
            )
        code = await self._write(md, coord_epoch, step)
        if code is ErrorCode.none:
            log.info(
                "%sinitialized %s with producer id %d, epoch %d",
                self._prefix,
                transactional_id,
                step.producer_id,
                step.producer_epoch,
            )
            return InitProducerIdResult(ErrorCode.none, step.producer_id, step.producer_epoch)
        if created and md.state is EMPTY and md.producer_epoch == NO_PRODUCER_EPOCH:
            # A new id whose first record never made it: as if it had not been asked for.
            if not md.pending_transition:
                self._registry.remove(md, coord_epoch)
        return InitProducerIdResult(code)

    def _prepare_init(
        self,
        md: TransactionMetadata,
        timeout_ms: int,
        expected: tuple[int, int] | None,
        spare: int | None,
    ) -> _Step:
        if md.pending_transition:
            return ErrorCode.concurrent_transactions
        if expected is not None and not (
            # Fence unless: the id was just created (a producer recovering from
            # UNKNOWN_PRODUCER_ID gets the new producer id), the producer id is the current
            # one (its epoch is checked below), or it is the previous one at an exhausted
            # epoch (a retry of the bump that moved the id to a new producer id).
            md.producer_epoch == NO_PRODUCER_EPOCH
            or expected[0] == md.producer_id
            or (expected[0] == md.prev_producer_id and is_epoch_exhausted(expected[1]))
        ):
            return ErrorCode.producer_fenced
        if md.state in (PREPARE_ABORT, PREPARE_COMMIT):
            return ErrorCode.concurrent_transactions
        if md.state is ONGOING:
            if spare is None and self._fence_needs_producer_id(md):
                return _NEED_PID
            return md.prepare_fence_producer_epoch()
        if md.state not in (EMPTY, COMPLETE_ABORT, COMPLETE_COMMIT):
            raise AssertionError(f"{md!r} is in a state no coordinator leaves it in")
        now = self._clock.now_ms()
        exhausted = md.is_producer_epoch_exhausted
        if exhausted and (expected is None or expected[1] == md.producer_epoch):
            if spare is None:
                return _NEED_PID
            return md.prepare_producer_id_rotation(spare, timeout_ms, now, expected is not None)
        try:
            return md.prepare_increment_producer_epoch(
                timeout_ms, None if expected is None else expected[1], now
            )
        except ProducerFenced as e:
            log.info("%s%s", self._prefix, e)
            return ErrorCode.producer_fenced

    # --- AddPartitionsToTxn / AddOffsetsToTxn --------------------------------------------

    async def add_partitions_to_txn(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
        *,
        api_version: int = 3,
    ) -> dict[TopicPartition, ErrorCode]:
        """AddPartitionsToTxn for one transaction (a v0-v3 client request, or a v4+ entry
        with verify_only false): answered per partition, once the record is durable.
        Unknown partitions fail the request (UNKNOWN_TOPIC_OR_PARTITION for them,
        OPERATION_NOT_ATTEMPTED for the rest); authorization is the caller's."""
        parts = frozenset(partitions)
        if not parts:
            return {}  # nothing to add, nothing to answer
        missing = {tp for tp in parts if not self._partition_exists(*tp)}
        if missing:
            return {
                tp: ErrorCode.unknown_topic_or_partition
                if tp in missing
                else ErrorCode.operation_not_attempted
                for tp in parts
            }
        code = await self._add_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            parts,
            tv_for_add_partitions(api_version),
            # Not for v4+, which a partition leader sends for a transactions v2 producer's
            # write (KIP-890): the leader holds that write under a verification that the
            # previous transaction's markers, written during the wait, would void (the
            # write would then fail INVALID_TXN_STATE instead of being retried).
            wait_for_previous=api_version <= 3,
        )
        code = legacy_fencing_error(code, api_version, 2)
        return dict.fromkeys(parts, code)

    def verify_partitions_in_txn(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """AddPartitionsToTxn v4+ with verify_only (KIP-890 part 1, asked by partition
        leaders before a transactional produce): NONE for partitions already in the
        ongoing transaction, TRANSACTION_ABORTABLE for the others."""
        parts = frozenset(partitions)
        if not transactional_id:
            return dict.fromkeys(parts, ErrorCode.invalid_request)
        err, _, md = self._registry.get(transactional_id)
        if err is None:
            if md is None or md.producer_id != producer_id:
                err = ErrorCode.invalid_producer_id_mapping
            elif md.producer_epoch != producer_epoch:
                err = ErrorCode.producer_fenced
            elif md.state in (PREPARE_COMMIT, PREPARE_ABORT):
                err = ErrorCode.concurrent_transactions
        if err is not None:
            return dict.fromkeys(parts, err)
        assert md is not None
        # No pending-state check: partitions enter the set when their record is durable
        # and leave it when their marker is written.
        return {
            tp: ErrorCode.none if tp in md.partitions else ErrorCode.transaction_abortable
            for tp in parts
        }

    async def add_partitions_batch(
        self, transactions: Sequence[AddPartitionsTxn], *, api_version: int = 5
    ) -> dict[str, dict[TopicPartition, ErrorCode]]:
        """AddPartitionsToTxn v4+: several transactions, each verified or added."""

        async def one(t: AddPartitionsTxn) -> dict[TopicPartition, ErrorCode]:
            if not t.verify_only:
                return await self.add_partitions_to_txn(
                    t.transactional_id,
                    t.producer_id,
                    t.producer_epoch,
                    t.partitions,
                    api_version=api_version,
                )
            missing = {tp for tp in t.partitions if not self._partition_exists(*tp)}
            if missing:
                return {
                    tp: ErrorCode.unknown_topic_or_partition
                    if tp in missing
                    else ErrorCode.operation_not_attempted
                    for tp in t.partitions
                }
            return self.verify_partitions_in_txn(
                t.transactional_id, t.producer_id, t.producer_epoch, t.partitions
            )

        results = await asyncio.gather(*(one(t) for t in transactions))
        out: dict[str, dict[TopicPartition, ErrorCode]] = {}
        for t, r in zip(transactions, results, strict=True):
            out.setdefault(t.transactional_id, {}).update(r)
        return out

    async def add_offsets_to_txn(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        group_id: str,
        *,
        api_version: int = ADD_OFFSETS_TO_TXN_VERSION,
    ) -> ErrorCode:
        """AddOffsetsToTxn: the group's ``__consumer_offsets`` partition joins the
        transaction (its offsets commit or abort with it)."""
        tp = (GROUP_METADATA_TOPIC, self._group_partition_for(group_id))
        code = await self._add_partitions(
            transactional_id, producer_id, producer_epoch, frozenset({tp}), TV_0,
            wait_for_previous=True,
        )
        return legacy_fencing_error(code, api_version, 2)

    async def _add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: frozenset[TopicPartition],
        transaction_version: int,
        *,
        wait_for_previous: bool,
    ) -> ErrorCode:
        if not transactional_id:
            return ErrorCode.invalid_request
        deadline = self._clock.now_ms() + (
            self.concurrent_transaction_wait_ms if wait_for_previous else 0)
        while True:
            err, coord_epoch, md = self._registry.get(transactional_id)
            if err is not None:
                return err
            if md is None:
                return ErrorCode.invalid_producer_id_mapping
            if md.state not in (PREPARE_COMMIT, PREPARE_ABORT):
                break
            # The previous transaction's markers are being written. The producer's next
            # transaction begins with this request; answered CONCURRENT_TRANSACTIONS, it
            # would sit unsent for a retry backoff after every commit. Completion takes a
            # few milliseconds when the partitions' leaders are up, so wait for it, boundedly.
            if not await self._completion_of(transactional_id, deadline):
                return ErrorCode.concurrent_transactions
        if md.pending_transition:
            # Before the id checks: a v2 producer that already moved to its next producer
            # id (answered while the overflowing transaction completes) may still find the
            # completion's write pending, and must retry instead of failing.
            return ErrorCode.concurrent_transactions
        if md.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        if md.producer_epoch != producer_epoch:
            return ErrorCode.producer_fenced
        if md.state is ONGOING and partitions <= md.partitions:
            return ErrorCode.none  # nothing new: no write needed
        transit = md.prepare_add_partitions(partitions, self._clock.now_ms(), transaction_version)
        return await self._write(md, coord_epoch, transit)

    # --- EndTxn --------------------------------------------------------------------------

    async def end_txn(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        *,
        api_version: int = END_TXN_VERSION,
    ) -> EndTxnResult:
        """EndTxn: commit or abort. Answered once PrepareCommit/PrepareAbort is durable;
        the markers and the Complete* record follow. A retry of an EndTxn that completed
        answers NONE; a conflicting one INVALID_TXN_STATE."""
        tv = tv_for_end_txn(api_version)
        result = await self._end_txn(transactional_id, producer_id, producer_epoch, commit, tv)
        code = legacy_fencing_error(result.error, api_version, 2)
        if code is not result.error or not supports_epoch_bump(tv):
            return EndTxnResult(code)
        return result

    async def _end_txn(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        tv: int,
    ) -> EndTxnResult:
        if not transactional_id:
            return EndTxnResult(ErrorCode.invalid_request)
        spare: int | None = None
        while True:
            err, coord_epoch, md = self._registry.get(transactional_id)
            if err is not None:
                return EndTxnResult(err)
            if md is None:
                return EndTxnResult(ErrorCode.invalid_producer_id_mapping)
            if supports_epoch_bump(tv):
                step = self._prepare_end_v2(md, producer_id, producer_epoch, commit, tv, spare)
            else:
                step = self._prepare_end_v1(md, producer_id, producer_epoch, commit, tv)
            if isinstance(step, _NeedProducerId):
                got = await self._new_producer_id()
                if isinstance(got, ErrorCode):
                    return EndTxnResult(got)
                spare = got
                continue
            break
        if isinstance(step, EndTxnResult):
            return step
        if isinstance(step, ErrorCode):
            return EndTxnResult(step)
        code, complete = await self._write_prepare(md, coord_epoch, step, fence=False)
        if complete is None:
            return EndTxnResult(code)
        # The producer continues with what the transaction completes to (with v2: the
        # bumped epoch, or the next producer id at epoch 0).
        return EndTxnResult(ErrorCode.none, complete.producer_id, complete.producer_epoch)

    def _prepare_end_v1(
        self,
        md: TransactionMetadata,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        tv: int,
    ) -> TxnTransit | ErrorCode | EndTxnResult:
        if md.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        # A client never bumps its own epoch here: it must be the current one.
        if producer_epoch != md.producer_epoch:
            return ErrorCode.producer_fenced
        if md.pending_transition:
            return ErrorCode.concurrent_transactions
        state = md.state
        if state is ONGOING:
            target = PREPARE_COMMIT if commit else PREPARE_ABORT
            return md.prepare_abort_or_commit(
                target, tv, NO_PRODUCER_ID, self._clock.now_ms(), no_partition_added=False
            )
        if state is COMPLETE_COMMIT:
            return ErrorCode.none if commit else self._invalid_state(md, commit)
        if state is COMPLETE_ABORT:
            return self._invalid_state(md, commit) if commit else ErrorCode.none
        if state is PREPARE_COMMIT:
            return ErrorCode.concurrent_transactions if commit else self._invalid_state(md, commit)
        if state is PREPARE_ABORT:
            return self._invalid_state(md, commit) if commit else ErrorCode.concurrent_transactions
        return self._invalid_state(md, commit)

    def _prepare_end_v2(
        self,
        md: TransactionMetadata,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        tv: int,
        spare: int | None,
    ) -> TxnTransit | ErrorCode | EndTxnResult | _NeedProducerId:
        """Transactions v2. The epoch of the request tells a retry from a new request:

        ============== ============== ============== ============== ==============
        state          abort, retry   abort, current commit, retry  commit, current
        ============== ============== ============== ============== ==============
        Empty          FENCED         bump           FENCED         INVALID_STATE
        CompleteAbort  NONE           bump           INVALID_STATE  INVALID_STATE
        CompleteCommit INVALID_STATE  bump           NONE           INVALID_STATE
        ============== ============== ============== ============== ==============

        (retry = the epoch before the bump the completed EndTxn made, or the last epoch
        of the previous producer id after an overflow; current = the current epoch.)
        """
        retry_on_overflow = (
            md.prev_producer_id == producer_id
            and producer_epoch == MAX_EPOCH - 1
            and md.producer_epoch == 0
        )
        retry_on_bump = md.producer_epoch == producer_epoch + 1
        state = md.state
        if state in (PREPARE_COMMIT, PREPARE_ABORT):
            valid_epoch = retry_on_bump
        elif state in (COMPLETE_COMMIT, COMPLETE_ABORT):
            valid_epoch = retry_on_bump or retry_on_overflow or producer_epoch == md.producer_epoch
        else:
            valid_epoch = producer_epoch == md.producer_epoch
        is_retry = retry_on_bump or retry_on_overflow
        if md.producer_id != producer_id and not retry_on_overflow:
            return ErrorCode.invalid_producer_id_mapping
        if not valid_epoch:
            return ErrorCode.producer_fenced
        if md.pending_transition:
            return ErrorCode.concurrent_transactions

        def prepare(target: TxnState, no_partition_added: bool) -> TxnTransit | _NeedProducerId:
            next_pid = NO_PRODUCER_ID
            if md.is_producer_epoch_exhausted:
                # The bump would leave no epoch to fence with: the transaction completes
                # to a new producer id.
                if spare is None:
                    return _NEED_PID
                next_pid = spare
            return md.prepare_abort_or_commit(
                target, tv, next_pid, self._clock.now_ms(), no_partition_added=no_partition_added
            )

        current = EndTxnResult(ErrorCode.none, md.producer_id, md.producer_epoch)
        if state is ONGOING:
            return prepare(PREPARE_COMMIT if commit else PREPARE_ABORT, False)
        if state is COMPLETE_COMMIT:
            if commit:
                return current if is_retry else self._invalid_state(md, commit)
            return self._invalid_state(md, commit) if is_retry else prepare(PREPARE_ABORT, True)
        if state is COMPLETE_ABORT:
            if commit:
                return self._invalid_state(md, commit)
            return current if is_retry else prepare(PREPARE_ABORT, True)
        if state is PREPARE_COMMIT:
            return ErrorCode.concurrent_transactions if commit else self._invalid_state(md, commit)
        if state is PREPARE_ABORT:
            return self._invalid_state(md, commit) if commit else ErrorCode.concurrent_transactions
        if state is EMPTY and not commit:
            return prepare(PREPARE_ABORT, True)
        return self._invalid_state(md, commit)

    def _invalid_state(self, md: TransactionMetadata, commit: bool) -> ErrorCode:
        log.warning(
            "%s%s is %s, but received EndTxn(%s)",
            self._prefix,
            md.transactional_id,
            md.state.state_name,
            "commit" if commit else "abort",
        )
        return ErrorCode.invalid_txn_state

    # --- writes and completion -----------------------------------------------------------

    async def _write(
        self,
        md: TransactionMetadata,
        coordinator_epoch: int,
        transit: TxnTransit,
        *,
        keep_pending: bool = False,
    ) -> ErrorCode:
        """Write ``transit`` and make it current once durable. On failure the pending
        transition is dropped (nothing changed) unless ``keep_pending`` (the caller
        retries the same write)."""
        txn_id = md.transactional_id
        partition = self._registry.partition_for(txn_id)
        try:
            value = encode_value(transit.to_log_value(), self._value_version())
            record = (encode_key(txn_id), value)
        except RecordFormatError as e:
            log.error("%scannot write %s of %s: %s", self._prefix, transit.state.state_name,
                      txn_id, e)
            if not keep_pending:
                md.abort_transition()
            return ErrorCode.unknown_server_error
        exc = await self._registry.append(partition, [record], coordinator_epoch)
        current = self._registry.is_current(md, coordinator_epoch)
        if exc is None:
            if not current:
                # Loaded again or moved while we wrote: the new owner has the record.
                return self._registry.status(txn_id) or ErrorCode.not_coordinator
            md.complete_transition(transit)
            return ErrorCode.none
        code = txn_write_error(exc)
        if current and not keep_pending:
            md.abort_transition()
        log.info(
            "%swriting %s of %s failed: %s", self._prefix, transit.state.state_name, txn_id,
            code.name,
        )
        return code

    async def _write_prepare(
        self, md: TransactionMetadata, coordinator_epoch: int, transit: TxnTransit, *, fence: bool
    ) -> tuple[ErrorCode, TxnTransit | None]:
        """Write PrepareCommit/PrepareAbort; once durable, start completing. The error,
        and the Complete* transit the transaction is heading for if there was none."""
        code = await self._write(md, coordinator_epoch, transit)
        if code is not ErrorCode.none:
            if fence and self._registry.is_current(md, coordinator_epoch):
                # The fenced epoch may be durable: never fence with it again, never hand
                # it out (see TransactionMetadata.prepare_fence_producer_epoch).
                md.has_failed_epoch_fence = True
            return code, None
        return ErrorCode.none, self._start_completion(md, coordinator_epoch)

    def _start_completion(self, md: TransactionMetadata, coordinator_epoch: int) -> TxnTransit:
        complete = md.prepare_complete(self._clock.now_ms())
        self._registry.spawn(
            self._complete(md, coordinator_epoch, complete),
            self._registry.partition_for(md.transactional_id),
        )
        return complete

    async def _complete(
        self, md: TransactionMetadata, coordinator_epoch: int, complete: TxnTransit
    ) -> None:
        """Write the markers to every partition of the transaction, then the Complete*
        record. Retries until done or until this coordinator no longer owns the id."""
        try:
            if await self._send_markers(md, coordinator_epoch, complete):
                await self._write_completion(md, coordinator_epoch, complete)
        finally:
            waiter = self._completions.pop(md.transactional_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _completion_of(self, transactional_id: str, deadline_ms: int) -> bool:
        """Wait until the completion under way for ``transactional_id`` ends (done, or given
        up because the id moved) or the clock reaches ``deadline_ms``: whether it ended."""
        remaining = deadline_ms - self._clock.now_ms()
        if remaining <= 0:
            return False
        waiter = self._completions.get(transactional_id)
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._completions[transactional_id] = waiter
        expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def expire() -> None:
            if not expired.done():
                expired.set_result(None)

        timer = self._clock.call_later(remaining, expire)
        try:
            await asyncio.wait([waiter, expired], return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return waiter.done()

    async def _send_markers(
        self, md: TransactionMetadata, coordinator_epoch: int, complete: TxnTransit
    ) -> bool:
        txn_id = md.transactional_id
        commit = complete.state is COMPLETE_COMMIT
        while True:
            if not self._registry.is_current(md, coordinator_epoch):
                return False
            for tp in sorted(tp for tp in md.partitions if not self._partition_exists(*tp)):
                log.info("%sskipping the marker of %s for %s-%d: the partition is gone",
                         self._prefix, txn_id, *tp)
                md.remove_partition(tp)
            if not md.partitions:
                return True
            request = MarkerRequest(
                transactional_id=txn_id,
                producer_id=md.producer_id,
                producer_epoch=md.producer_epoch,
                coordinator_epoch=coordinator_epoch,
                commit=commit,
                partitions=frozenset(md.partitions),
                transaction_version=md.client_transaction_version,
            )
            answers: Mapping[TopicPartition, ErrorCode]
            try:
                answers = await self._markers.send_markers(request)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("%ssending the markers of %s failed: %r", self._prefix, txn_id, e)
                answers = {}
            if not self._registry.is_current(md, coordinator_epoch):
                return False
            abandon = False
            for tp in sorted(request.partitions):
                code = answers.get(tp, ErrorCode.request_timed_out)
                outcome = classify(code)
                if outcome is MarkerOutcome.DONE:
                    md.remove_partition(tp)
                elif outcome is MarkerOutcome.ABANDON:
                    abandon = True
                    log.info("%sthe marker of %s for %s-%d failed with %s: a newer epoch "
                             "exists, not sending more", self._prefix, txn_id, tp[0], tp[1],
                             code.name)
                elif code not in RETRIABLE:
                    log.error("%sunexpected %s writing the marker of %s for %s-%d; retrying",
                              self._prefix, code.name, txn_id, tp[0], tp[1])
            if abandon:
                return False
            if md.partitions:
                await self._registry.sleep(self.retry_backoff_ms)

    async def _write_completion(
        self, md: TransactionMetadata, coordinator_epoch: int, complete: TxnTransit
    ) -> None:
        while self._registry.is_current(md, coordinator_epoch):
            code = await self._write(md, coordinator_epoch, complete, keep_pending=True)
            if code is ErrorCode.none:
                log.debug("%scompleted %s: %s", self._prefix, md.transactional_id,
                          complete.state.state_name)
                self.completed["commit" if complete.state is COMPLETE_COMMIT else "abort"] += 1
                return
            if code in (ErrorCode.not_coordinator, ErrorCode.coordinator_load_in_progress):
                return
            await self._registry.sleep(self.retry_backoff_ms)

    def _value_version(self) -> int:
        return 1 if self.transaction_version_level >= 1 else 0

    async def _new_producer_id(self) -> int | ErrorCode:
        try:
            return await self._producer_ids.next_producer_id()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("%sno producer id: %r", self._prefix, e)
            code = getattr(e, "error_code", None)
            if code is not None:
                try:
                    return code if isinstance(code, ErrorCode) else ErrorCode(int(code))
                except ValueError:
                    pass
            return ErrorCode.coordinator_not_available

    # --- timeouts and expiration ---------------------------------------------------------

    def abort_timed_out_transactions(self) -> int:
        """Abort every transaction past its timeout (fencing its producer with an epoch
        bump first); returns how many aborts were started. Runs periodically."""
        now = self._clock.now_ms()
        started = 0
        for coord_epoch, md in self._registry.transactions():
            if md.pending_transition or md.state is not ONGOING:
                continue
            if md.txn_start_timestamp + md.txn_timeout_ms >= now:
                continue
            log.info(
                "%saborting %s (producer %d, epoch %d): it passed its timeout of %d ms",
                self._prefix,
                md.transactional_id,
                md.producer_id,
                md.producer_epoch,
                md.txn_timeout_ms,
            )
            if self._fence_needs_producer_id(md):
                # The abort completes to a new producer id: fetch one first.
                self._registry.spawn(
                    self._abort_timed_out_with_new_producer_id(
                        md, coord_epoch, md.producer_id, md.producer_epoch
                    ),
                    self._registry.partition_for(md.transactional_id),
                )
                started += 1
                continue
            fence = md.prepare_fence_producer_epoch()
            abort = md.prepare_fenced_abort(fence, self._fence_version(md), now)
            self._registry.spawn(
                self._write_prepare(md, coord_epoch, abort, fence=True),
                self._registry.partition_for(md.transactional_id),
            )
            started += 1
        self.timeout_aborts += started
        return started

    def _fence_needs_producer_id(self, md: TransactionMetadata) -> bool:
        """Whether fencing ``md``'s producer and aborting its transaction must move the id
        to a new producer id: with transactions v2 when its epoch is exhausted (Kafka's
        TransactionCoordinator.endTransaction rotates on the epoch-fence path too). The
        fence and the abort's bump would otherwise leave it at Short.MAX_VALUE, past the
        last epoch a client may hold, with no epoch left to fence the next producer."""
        return supports_epoch_bump(self._fence_version(md)) and md.is_producer_epoch_exhausted

    def _fence_version(self, md: TransactionMetadata) -> int:
        """The transaction version of an abort the coordinator starts itself: the cluster's,
        or the transaction's own if that is higher (a v2 client, whose EndTxn v5 was
        accepted, takes the epoch after the abort's for a retry of its own abort; a v0
        abort of its exhausted epoch would leave Short.MAX_VALUE for it to be handed)."""
        return max(self.transaction_version_level, md.client_transaction_version)

    async def _abort_timed_out_with_new_producer_id(
        self, md: TransactionMetadata, coordinator_epoch: int, producer_id: int, epoch: int
    ) -> None:
        """Abort a timed out transaction whose epochs are exhausted: its abort completes to
        a new producer id at epoch 0. Nothing happens if the transaction changed while the
        producer id was fetched, or if none can be had (the next run tries again)."""
        pid = await self._new_producer_id()
        if isinstance(pid, ErrorCode):
            log.info("%snot aborting %s now: no producer id (%s)", self._prefix,
                     md.transactional_id, pid.name)
            return
        now = self._clock.now_ms()
        if (
            not self._registry.is_current(md, coordinator_epoch)
            or md.pending_transition
            or md.state is not ONGOING
            or (md.producer_id, md.producer_epoch) != (producer_id, epoch)
            or md.txn_start_timestamp + md.txn_timeout_ms >= now
        ):
            return
        fence = md.prepare_fence_producer_epoch()
        abort = md.prepare_fenced_abort(fence, self._fence_version(md), now, pid)
        await self._write_prepare(md, coordinator_epoch, abort, fence=True)

    async def expire_transactional_ids(self) -> int:
        """Remove ids idle (Empty, CompleteCommit, CompleteAbort) for longer than
        ``transactional_id_expiration_ms``: a tombstone each, then the metadata goes.
        Returns how many were removed. Runs periodically."""
        now = self._clock.now_ms()
        cutoff = now - self.transactional_id_expiration_ms
        by_partition: dict[int, tuple[int, list[tuple[TransactionMetadata, TxnTransit]]]] = {}
        for coord_epoch, md in self._registry.transactions():
            if md.pending_transition or not md.state.expiration_allowed:
                continue
            if md.txn_last_update_timestamp > cutoff:
                continue
            partition = self._registry.partition_for(md.transactional_id)
            by_partition.setdefault(partition, (coord_epoch, []))[1].append(
                (md, md.prepare_dead())
            )
        removed = 0
        for partition, (coord_epoch, items) in by_partition.items():
            records: list[tuple[bytes, bytes | None]] = [
                (encode_key(md.transactional_id), None) for md, _ in items
            ]
            exc = await self._registry.append(partition, records, coord_epoch)
            for md, dead in items:
                if not self._registry.is_current(md, coord_epoch):
                    continue
                if (
                    exc is None
                    and md.pending_state is TxnState.DEAD
                    and md.producer_epoch == dead.producer_epoch
                ):
                    self._registry.remove(md, coord_epoch)
                    removed += 1
                else:
                    md.abort_transition()
        if removed:
            log.info("%sexpired %d transactional ids", self._prefix, removed)
        return removed

    def _start_timers(self) -> None:
        if not self._registry.active:
            return
        if self._abort_timer is None:
            self._abort_timer = self._clock.call_later(
                self.abort_timed_out_transactions_interval_ms, self._on_abort_timer
            )
        if self._expiry_timer is None:
            self._expiry_timer = self._clock.call_later(
                self.remove_expired_transactional_ids_interval_ms, self._on_expiry_timer
            )

    def _on_abort_timer(self) -> None:
        self._abort_timer = self._clock.call_later(
            self.abort_timed_out_transactions_interval_ms, self._on_abort_timer
        )
        if self._registry.active:
            self.abort_timed_out_transactions()

    def _on_expiry_timer(self) -> None:
        self._expiry_timer = self._clock.call_later(
            self.remove_expired_transactional_ids_interval_ms, self._on_expiry_timer
        )
        if self._registry.active:
            self._registry.spawn(self.expire_transactional_ids())

    # --- ListTransactions / DescribeTransactions -----------------------------------------

    def list_transactions(
        self,
        state_filters: Iterable[str] = (),
        producer_id_filters: Iterable[int] = (),
        duration_filter_ms: int = -1,
        transactional_id_pattern: str | None = None,
    ) -> ListTransactionsResult:
        return list_transactions(
            self._registry,
            self._clock.now_ms(),
            state_filters,
            producer_id_filters,
            duration_filter_ms,
            transactional_id_pattern,
        )

    def describe_transactions(
        self, transactional_ids: Iterable[str]
    ) -> list[TransactionDescription]:
        return [describe_transaction(self._registry, t) for t in transactional_ids]


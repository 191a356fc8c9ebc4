"""One partition this broker hosts: its log, its replication state, and who waits on them.

``Partition`` is the one owner of a partition's replication state. It applies the rules of
``ReplicaState`` (broker/replica_state.py: high watermark over the ISR, min ISR, follower
catch-up and lag) to its log and to the waiting requests:

* the high watermark is written here only, on the leader when the ISR's log ends move and
  on a follower from its leader's;
* acks=all writes wait here (``wait_replicated``) until the high watermark covers them, the
  ISR falls below min ISR, leadership moves, or time runs out;
* long-polling fetches wait here (``waiters``) until anything they could read changes, and
  readers of many partitions ask to be told of the next change (``notify_once``).

The replica manager creates partitions and hands them metadata; the fetch handler and the
follower fetchers report what followers and leaders said.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.partition_watch import ChangeListener, K
from odradek.broker.replica_state import AckState, Assignment, Change, FetchClock, ReplicaState
from odradek.controller.metadata import PartitionRegistration

_ACK_ERRORS = {
    AckState.DONE: ErrorCode.none,
    AckState.NOT_LEADER: ErrorCode.not_leader_or_follower,
    AckState.NOT_ENOUGH_REPLICAS: ErrorCode.not_enough_replicas_after_append,
}


class NotEnoughReplicas(Exception):
    """An acks=all write refused before it was appended: the ISR is below min ISR."""


@dataclass(slots=True)
class _AckWait:
    target: int
    done: asyncio.Future[AckState]


class Partition:
    def __init__(self, topic: str, index: int, log: storage.PartitionLog, node_id: int,
                 min_isr: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self.state = ReplicaState(node_id, min_isr=min_isr)
        self.topic_id: uuid.UUID | None = None
        self._clock = clock
        # Long-polling fetches: woken by any append, high watermark move or leadership change.
        self.waiters: set[asyncio.Future[None]] = set()
        # Counts those wake-ups: a reader that saw this value when it read the partition
        # knows whether anything happened since.
        self.changes = 0
        # Readers to tell, once, at the next wake-up (broker/partition_watch.py): fetch
        # sessions and follower fetchers that hold thousands of partitions and must not
        # visit them all to find the few that changed.
        self._listeners: dict[tuple[int, Hashable], ChangeListener[Any]] = {}
        self._acks: list[_AckWait] = []
        # Told which followers a write waits for although they have not fetched since this
        # leadership began (the fetch sessions nudge them: FetchSessionCache.nudge).
        self.on_unfetched_followers: Callable[[list[int]], None] | None = None
        # KIP-890 part 1: a transactional producer's first write of a transaction here is
        # verified with its transaction coordinator first. The token taken before asking
        # holds until a marker of that producer is written here or the leadership changes,
        # so a write verified before its transaction ended cannot open a new one after it
        # (Kafka's VerificationGuard). By producer id: (token, leader epoch).
        self._txn_verifications: dict[int, tuple[object, int]] = {}

    # --- what the metadata says ------------------------------------------------------

    @property
    def leader_id(self) -> int:
        return self.state.leader

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch

    @property
    def partition_epoch(self) -> int:
        return self.state.partition_epoch

    @property
    def replicas(self) -> tuple[int, ...]:
        return self.state.replicas

    @property
    def isr(self) -> tuple[int, ...]:
        return self.state.isr

    @property
    def is_leader(self) -> bool:
        return self.state.is_leader

    @property
    def under_min_isr(self) -> bool:
        return len(self.state.isr) < self.state.min_isr

    def set_min_isr(self, min_isr: int) -> None:
        self.state.min_isr = min_isr
        # A lower min ISR can move the high watermark (and with it the LSO): parked
        # fetches and sessions must hear of it as of any other move.
        if self.is_leader and self._advance_high_watermark():
            self.wake()
        self._settle_acks()

    def assign(self, reg: PartitionRegistration, topic_id: uuid.UUID | None) -> Change:
        """Apply the partition's registration from the metadata image."""
        self.topic_id = topic_id
        change = self.state.assign(Assignment(reg.leader, reg.leader_epoch, reg.partition_epoch,
                                              tuple(reg.replicas), tuple(reg.isr)),
                                   self._clock())
        if change.new_leader_epoch and not self.log.offline:
            # Batches written from now on carry the new epoch (OffsetForLeaderEpoch, KIP-101).
            latest = self.log.leader_epochs.latest_epoch
            if reg.leader_epoch > latest:
                self.log.leader_epochs.assign(reg.leader_epoch, self.log.log_end_offset)
        if self.is_leader:
            self._advance_high_watermark()
        self._settle_acks()
        self.wake()
        return change

    # --- leader: transaction verification (KIP-890 part 1) ------------------------------

    def begin_txn_verification(self, producer_id: int) -> object:
        """The token a write takes before asking the coordinator (shared by concurrent
        writes of the producer: the first to append opens the transaction for all)."""
        held = self._txn_verifications.get(producer_id)
        if held is None or held[1] != self.leader_epoch:
            held = (object(), self.leader_epoch)
            self._txn_verifications[producer_id] = held
        return held[0]

    def txn_verification_holds(self, producer_id: int, token: object) -> bool:
        held = self._txn_verifications.get(producer_id)
        return held is not None and held[0] is token and held[1] == self.leader_epoch

    def end_txn_verification(self, producer_id: int) -> None:
        """A marker of the producer was written (or its transaction opened): verifications
        begun before no longer hold."""
        self._txn_verifications.pop(producer_id, None)

    def txn_open(self, producer_id: int, producer_epoch: int) -> bool:
        """Whether the producer has a transaction open in this partition's log at that
        epoch. With transactions v2 every transaction has its own epoch: a write at a newer
        one starts the next transaction, even while the last one's marker has not reached
        this partition yet (it must then wait for it, not join the open one)."""
        entry = self.log.producer_state.entry(producer_id)
        return (entry is not None and entry.current_txn_first_offset is not None
                and entry.epoch == producer_epoch)

    # --- leader: appends and acks=all ------------------------------------------------

    def append(self, records: bytes, *, acks_all: bool,
               origin: storage.AppendOrigin = storage.AppendOrigin.CLIENT
               ) -> storage.AppendResult:
        """Append a client's (or a coordinator's: ``origin``) batches as leader. An acks=all
        write is refused first when it could not be acknowledged (NotEnoughReplicas)."""
        if acks_all and not self.state.may_append_acks_all():
            raise NotEnoughReplicas(f"ISR {list(self.isr)} is smaller than "
                                    f"min.insync.replicas={self.state.min_isr}")
        result = self.log.append(records, leader_epoch=self.leader_epoch, origin=origin)
        self.state.log_end_moved(self.log.log_end_offset)
        self._advance_high_watermark()
        self.wake()
        if self.on_unfetched_followers is not None:
            missing = self.state.unfetched_followers()
            if missing:
                self.on_unfetched_followers(missing)
        return result

    async def wait_replicated(self, target: int, timeout_s: float) -> ErrorCode:
        """acks=all: until the high watermark reaches ``target`` (the offset after the
        write). NONE, or why the write is not acknowledged."""
        state = self.state.ack_state(target, self.log.high_watermark)
        if state is not AckState.WAITING:
            return _ACK_ERRORS[state]
        wait = _AckWait(target, asyncio.get_running_loop().create_future())
        self._acks.append(wait)
        try:
            async with asyncio.timeout(timeout_s):
                return _ACK_ERRORS[await asyncio.shield(wait.done)]
        except TimeoutError:
            return ErrorCode.request_timed_out
        finally:
            if wait in self._acks:
                self._acks.remove(wait)

    def _settle_acks(self) -> None:
        if not self._acks:
            return
        hw = self.log.high_watermark
        waiting = []
        for wait in self._acks:
            state = self.state.ack_state(wait.target, hw)
            if state is AckState.WAITING:
                waiting.append(wait)
            elif not wait.done.done():
                wait.done.set_result(state)
        self._acks = waiting

    def _advance_high_watermark(self) -> bool:
        hw = self.state.high_watermark(self.log.log_end_offset)
        if hw is None or hw <= self.log.high_watermark:
            return False
        self.log.high_watermark = hw
        self._settle_acks()
        return True

    # --- leader: followers --------------------------------------------------------------

    @property
    def epoch_start(self) -> int:
        """First offset of the current leader epoch: a follower below it is not in sync."""
        entry = self.log.leader_epochs.latest_entry
        if entry is not None and entry.epoch == self.leader_epoch:
            return entry.start_offset
        return self.log.log_end_offset

    def follower_fetched(self, replica: int, offset: int, live: bool
                         ) -> tuple[int, ...] | None:
        """A follower fetching at ``offset`` has every record below it: the high watermark
        may move. Returns the ISR with the follower added when it has caught up."""
        self.state.follower_fetched(replica, offset, self._clock(), self.log.log_end_offset)
        if self._advance_high_watermark():
            self.wake()
        return self.state.isr_to_add(replica, self.log.high_watermark, self.epoch_start, live)

    def hold_follower(self, replica: int, clock: FetchClock) -> bool:
        """The follower, in the ISR and caught up as of this read, stays caught up as long
        as this log's end does not move: its caught-up time is then the time of its
        session's latest request (``clock``), and its session need not read this partition
        on each request to say so. False when it is not in that state."""
        return self.state.hold_follower(replica, self.log.log_end_offset, clock)

    def isr_without_laggards(self, max_lag_s: float) -> tuple[int, ...] | None:
        if self.state.drop_lagging_addition(self._clock(), max_lag_s,
                                            self.log.log_end_offset):
            self._advance_high_watermark()
            self.wake()
        return self.state.isr_without_laggards(self._clock(), max_lag_s,
                                               self.log.log_end_offset)

    def propose_isr(self, isr: tuple[int, ...]) -> None:
        """The leader asks the controller for ``isr``: until the answer is applied, the high
        watermark also waits for any replica it adds (ReplicaState.maximal_isr)."""
        self.state.propose_isr(isr)

    def proposal_refused(self, isr: tuple[int, ...]) -> None:
        self.state.proposal_refused(isr)
        if self._advance_high_watermark():
            self.wake()

    def delete_records(self, before_offset: int) -> int:
        """DeleteRecords: the new log start offset, told to the partition's readers."""
        start = self.log.delete_records(before_offset)
        self.wake()
        return start

    # --- follower ----------------------------------------------------------------------

    def follow_leader_high_watermark(self, leader_high_watermark: int) -> None:
        hw = self.state.follower_high_watermark(leader_high_watermark, self.log.log_end_offset)
        if hw > self.log.high_watermark:
            self.log.high_watermark = hw

    # --- waiting -----------------------------------------------------------------------

    def wake(self) -> None:
        self.changes += 1
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()
        if self._listeners:
            listeners, self._listeners = self._listeners, {}
            for (_, key), listener in listeners.items():
                listener.partition_changed(key)

    def notify_once(self, listener: ChangeListener[K], key: K) -> None:
        """Call ``listener.partition_changed(key)`` at the next wake-up (once)."""
        self._listeners[(id(listener), key)] = listener

    def forget(self, listener: ChangeListener[K], key: K) -> None:
        self._listeners.pop((id(listener), key), None)

    def close(self) -> None:
        """Leaving this broker: fail what waits on it."""
        for wait in self._acks:
            if not wait.done.done():
                wait.done.set_result(AckState.NOT_LEADER)
        self._acks = []
        self.wake()


async def wait_for_any(parts: Iterable[Partition], timeout_s: float,
                       fut: asyncio.Future[None] | None = None) -> None:
    """Until one of ``parts`` wakes its waiters (an append, a high watermark move, a
    leadership change), ``fut`` (if given) is done, or ``timeout_s`` passes."""
    if fut is None:
        fut = asyncio.get_running_loop().create_future()
    parts = list(parts)
    for p in parts:
        p.waiters.add(fut)
    try:
        async with asyncio.timeout(timeout_s):
            await fut
    except TimeoutError:
        pass
    finally:
        for p in parts:
            p.waiters.discard(fut)

"""The asyncio loop around the sans-I/O RaftNode.

One event loop owns the node. ``step`` (from the gRPC servicer), ticks and proposals only
change the node and wake the Ready loop, which follows the core's contract for every Ready:

1. persist snapshot, entries and hard state (blocking fsyncs, in a worker thread);
2. only then send its messages (they may acknowledge what was just persisted);
3. restore its snapshot into the state machine, apply its committed entries;
4. advance.

The next Ready is taken only after advancing. Steps and ticks that arrive while a Ready is
being persisted land in the node and come out in the next one.

Anything that leaves the node's durable state unknown (a failed fsync) or the state machine
diverged from the log (an entry that does not replay) stops the driver for good: continuing
could acknowledge entries that are not on disk or serve a wrong image. ``failure`` says why and
``wait_stopped()`` returns, so the node process can exit and be restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from odradek.controller.raft import (
    Entry,
    Message,
    NotLeaderError,
    RaftNode,
    Ready,
    Role,
    Snapshot,
    Status,
    VoterSet,
)

log = logging.getLogger("odradek.raft")

LeaderChangeCallback = Callable[[], None]


class Persister(Protocol):
    def persist(self, ready: Ready) -> None: ...


class MessageSink(Protocol):
    def send(self, messages: Sequence[Message]) -> None: ...


class DriverStoppedError(NotLeaderError):
    """The driver is stopped (or failed); nothing can be proposed through it."""


class LeadershipLostError(NotLeaderError):
    """The proposal's fate is unknown: leadership changed before it was applied. It may still
    be committed by the next leader; the state machine will apply it then."""


class RaftDriver:
    def __init__(
        self,
        node: RaftNode,
        store: Persister,
        transport: MessageSink,
        *,
        apply: Callable[[Entry], Any],
        restore: Callable[[Snapshot], Awaitable[None]],
        initial_snapshot: Snapshot | None = None,
        tick_ms: int = 100,
        clock: Callable[[], float] = time.monotonic,
        on_voters_changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.node = node
        self._store = store
        self._transport = transport
        self._apply = apply
        self._restore = restore
        self._initial_snapshot = initial_snapshot
        self._tick_s = tick_ms / 1000
        self._clock = clock
        self._wake = asyncio.Event()
        self._pending: dict[int, tuple[int, asyncio.Future[Any]]] = {}
        self._compactions: list[tuple[int, bytes, asyncio.Future[None]]] = []
        self._callbacks: list[LeaderChangeCallback] = []
        self._state_changed = asyncio.Event()
        self._announced: tuple[bool, int | None, int] = (False, None, node.term)
        # Term of the last entry applied: a leader whose own term's first entry (its NOOP)
        # is applied has applied everything committed before its term.
        self._applied_term = 0
        self.last_heard: dict[int, float] = {}
        self.failure: BaseException | None = None
        self._running = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Called before sending a Ready's messages whenever the voter set in the log changed
        # (appended, truncated or installed by a snapshot), so the transport knows a new
        # voter's address before the first message to it leaves.
        self._on_voters_changed = on_voters_changed
        self._voters_seen: tuple[bytes, bool] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._running and not self._stopping

    async def start(self) -> None:
        if self._running or self._stopped.is_set():
            raise RuntimeError("a RaftDriver can be started once")
        if self._initial_snapshot is not None:
            # The core starts with applied = snapshot index; the state machine must match.
            await self._restore(self._initial_snapshot)
            self._applied_term = self._initial_snapshot.meta.term
        self._running = True
        self._advance_initial_election()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._ready_loop(), name=f"raft-ready-{self.node.id}"),
            loop.create_task(self._ticker(), name=f"raft-tick-{self.node.id}"),
        ]
        self._wake.set()

    def _advance_initial_election(self) -> None:
        """A node that has just started knows no leader; without this it would sit out a whole
        randomized election timeout (1-2 s by default) before its first campaign, which is
        most of a cluster's start-up time. As etcd does on boot, fast-forward the election
        clock so the first campaign comes within one election timeout: all but one tick for
        several voters (the randomized part still separates their campaigns), and at once
        for a lone voter, which needs nobody's vote. A node that restarts into a quorum with
        a leader cannot disturb it: its PreVote is refused by voters that hear from the
        leader, and the leader's next heartbeat makes it a follower."""
        node = self.node
        if node.is_observer or node.lead is not None:
            return
        et = node.config.election_tick
        if node.config.voters == frozenset({node.id}):
            for _ in range(2 * et):
                if node.role is Role.LEADER:
                    break
                node.tick()
        else:
            for _ in range(et - 1):
                node.tick()

    async def stop(self, transfer_timeout_s: float = 0.0) -> None:
        """Stop; a leader first hands leadership to the most up-to-date voter (bounded wait),
        so the quorum does not sit out an election timeout."""
        if not self._running:
            return
        if (transfer_timeout_s > 0 and self.running and self.node.role is Role.LEADER
                and len(self.node.config.voters) > 1):
            await self._transfer_before_stop(transfer_timeout_s)
        self._stopping = True
        self._wake.set()
        ready_task, tick_task = self._tasks
        tick_task.cancel()
        # The Ready loop is not cancelled: it finishes the Ready in hand (a persist cannot be
        # interrupted halfway) and exits at the top of its loop.
        with contextlib.suppress(asyncio.CancelledError):
            await tick_task
        await ready_task
        self._finish(DriverStoppedError(None, f"node {self.node.id} is shutting down"))

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def _finish(self, reason: NotLeaderError) -> None:
        self._running = False
        self._fail_pending(reason)
        self._notify_state()
        self._stopped.set()

    async def _transfer_before_stop(self, timeout_s: float) -> None:
        # Only voters that answer from now on are up: one heard from a moment ago may have
        # stopped since (a cluster stopped one node at a time), and handing over to it
        # would only delay this stop; one not heard from lately may be up all the same
        # (this node was busy stopping its broker side). So wait a few heartbeats for the
        # answers, and stop waiting once every other voter has answered.
        asked_at = self._clock()
        peers = [v for v in self.node.config.voters if v != self.node.id]
        self.node.heartbeat_now()  # ask now, not at the next heartbeat tick
        self._wake.set()
        window = min(timeout_s / 2,
                     max(4 * self.node.config.heartbeat_tick * self._tick_s, 0.3))
        answered: list[int] = []
        while self.running and self.node.role is Role.LEADER:
            answered = [v for v in peers if self.last_heard.get(v, -1e9) > asked_at]
            if len(answered) == len(peers) or self._clock() - asked_at >= window:
                break
            await asyncio.sleep(self._tick_s / 4)
        if not (self.running and self.node.role is Role.LEADER):
            return
        if not answered:
            log.info("node %d: stopping as leader; no other voter answered within %.1fs, "
                     "none to hand leadership to", self.node.id, window)
            return
        progress = self.node.status().progress
        # The most up-to-date of them (it can take over without catching up first).
        target = min((-progress[v].match if v in progress else 0, v) for v in answered)[1]
        log.info("node %d: stopping as leader; handing leadership to node %d", self.node.id,
                 target)
        try:
            self.node.transfer_leadership(target)
        except NotLeaderError:
            return
        self._wake.set()
        deadline = self._clock() + timeout_s
        while self.node.role is Role.LEADER or self.node.lead in (None, self.node.id):
            remaining = deadline - self._clock()
            if remaining <= 0 or not self.running:
                log.warning("node %d: leadership transfer to node %d did not finish in %.1fs; "
                            "stopping anyway", self.node.id, target, timeout_s)
                return
            await self._wait_state_change(remaining)

    # ------------------------------------------------------------------ inputs

    def step(self, messages: Iterable[Message]) -> None:
        if not self.running:
            raise DriverStoppedError(None, f"Raft on node {self.node.id} is not running")
        now = self._clock()
        try:
            for m in messages:
                self.last_heard[m.src] = now
                self.node.step(m)
        finally:
            # Whatever was stepped before a refused message has effects to hand out.
            self._wake.set()

    async def propose(self, data: bytes) -> Any:
        """Append ``data`` as an entry; returns what the state machine's apply returned for it.

        Raises NotLeaderError (or a subclass) when this node cannot propose, or when
        leadership was lost before the entry was applied, and ProposalDropped when the
        uncommitted tail is full.
        """
        if not self.running:
            raise DriverStoppedError(None, f"Raft on node {self.node.id} is not running")
        index = self.node.propose(data)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[index] = (self.node.term, future)
        self._wake.set()
        return await future

    async def propose_voters(self, voters: VoterSet) -> Any:
        """Append a voter change (RaftNode.propose_voters); returns once it is committed and
        applied here. Raises NotLeaderError or MembershipChangeRefused."""
        if not self.running:
            raise DriverStoppedError(None, f"Raft on node {self.node.id} is not running")
        index = self.node.propose_voters(voters)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[index] = (self.node.term, future)
        self._wake.set()
        return await future

    def set_observers(self, observers: frozenset[int]) -> None:
        self.node.set_observers(observers)
        self._wake.set()

    async def compact(self, index: int, data: bytes) -> None:
        """Replace the log up to ``index`` by a snapshot of the state machine at ``index``."""
        if not self.running:
            raise DriverStoppedError(None, f"Raft on node {self.node.id} is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._compactions.append((index, data, future))
        self._wake.set()
        await future

    def transfer_leadership(self, target: int) -> None:
        self.node.transfer_leadership(target)
        self._wake.set()

    def peer_lost(self, peer_id: int) -> None:
        """The transport lost its connection to ``peer_id``: if that is our leader, stop
        waiting a whole election timeout for it (RaftNode.forget_leader)."""
        if self.node.forget_leader(peer_id):
            log.info("node %d: lost the connection to the leader, node %d; campaigning "
                     "unless it comes back", self.node.id, peer_id)
            self._wake.set()

    def on_leader_change(self, callback: LeaderChangeCallback) -> None:
        """``callback()`` runs on the event loop after any change of is_leader, leader_id or
        term."""
        self._callbacks.append(callback)

    # ------------------------------------------------------------------ state

    @property
    def term(self) -> int:
        return self.node.term

    @property
    def role(self) -> Role:
        return self.node.role

    @property
    def is_leader(self) -> bool:
        """Leader *and* caught up: everything committed before its term is applied."""
        return (self.running and self.node.role is Role.LEADER
                and self._applied_term == self.node.term)

    @property
    def leader_id(self) -> int | None:
        """The leader as others should see it; a leader still catching up reports None
        (it cannot serve yet, and sending clients to it would only bounce them)."""
        if not self.running:
            return None
        lead = self.node.lead
        if lead == self.node.id and not self.is_leader:
            return None
        return lead

    def status(self) -> Status:
        return self.node.status()

    async def wait_leader_ready(self, timeout_s: float) -> bool:
        """True once this node is a caught-up leader; False if it stops being leader first."""
        deadline = self._clock() + timeout_s
        while not self.is_leader:
            remaining = deadline - self._clock()
            if remaining <= 0 or not self.running or self.node.role is not Role.LEADER:
                return False
            await self._wait_state_change(remaining)
        return True

    async def _wait_state_change(self, timeout_s: float) -> None:
        event = self._state_changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()

    def _notify_state(self) -> None:
        # Waiters hold the old event; replacing it re-arms for the next change.
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        state = (self.is_leader, self.leader_id, self.node.term)
        if state == self._announced:
            return
        self._announced = state
        for callback in list(self._callbacks):
            try:
                callback()
            except Exception:
                log.exception("node %d: leader-change callback %r failed", self.node.id,
                              callback)

    # ------------------------------------------------------------------ loops

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self._tick_s
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                # Fell behind (a stalled loop): resume from now instead of firing a burst of
                # ticks, which would look like a long silence and start needless elections.
                next_at = loop.time()
                await asyncio.sleep(0)
            self.node.tick()
            self._wake.set()

    async def _ready_loop(self) -> None:
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                while not self._stopping:
                    self._run_compactions()
                    if not self.node.has_ready():
                        break
                    await self._handle_ready(self.node.ready())
                self._notify_state()
        except Exception as exc:
            self.failure = exc
            log.critical("node %d: Raft stopped: %s", self.node.id, exc, exc_info=exc)
            self._stopping = True
            for task in self._tasks[1:]:
                task.cancel()
            self._finish(DriverStoppedError(None, f"Raft on node {self.node.id} failed: {exc}"))

    async def _handle_ready(self, rd: Ready) -> None:
        if rd.snapshot_to_persist is not None or rd.entries_to_persist or rd.hard_state:
            await asyncio.to_thread(self._store.persist, rd)
        if self._on_voters_changed is not None:
            # Committing a change matters too: a removed voter is sent to until then.
            voters = (self.node.log.config_at(self.node.log.last_index),
                      self.node.voters_committed)
            if voters != self._voters_seen:
                self._voters_seen = voters
                await self._on_voters_changed()
        if rd.messages:
            self._transport.send(rd.messages)
        if rd.snapshot_to_apply is not None:
            await self._restore(rd.snapshot_to_apply)
            self._applied_term = rd.snapshot_to_apply.meta.term
            meta = rd.snapshot_to_apply.meta
            for index in [i for i in self._pending if i <= meta.index]:
                _, future = self._pending.pop(index)
                if not future.done():
                    future.set_exception(LeadershipLostError(
                        self.node.lead, "replaced by a snapshot before it was applied here; "
                        "its outcome is unknown"))
        for entry in rd.committed_entries:
            result = self._apply(entry)
            self._applied_term = entry.term
            pending = self._pending.pop(entry.index, None)
            if pending is not None and not pending[1].done():
                term, future = pending
                if term == entry.term:
                    future.set_result(result)
                else:
                    future.set_exception(LeadershipLostError(
                        self.node.lead, f"entry {entry.index} was overwritten by the leader of "
                        f"term {entry.term}; the proposal was not committed"))
        self.node.advance(rd)
        if self._pending and self.node.role is not Role.LEADER:
            self._fail_pending(LeadershipLostError(
                self.node.lead, f"node {self.node.id} lost leadership before the entry was "
                "committed; it may still be committed by the new leader"))

    def _run_compactions(self) -> None:
        compactions, self._compactions = self._compactions, []
        for index, data, future in compactions:
            try:
                self.node.compact(index, data)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(None)

    def _fail_pending(self, reason: NotLeaderError) -> None:
        pending, self._pending = self._pending, {}
        for _, future in pending.values():
            if not future.done():
                future.set_exception(reason)
        compactions, self._compactions = self._compactions, []
        for _, _, future in compactions:
            if not future.done():
                future.set_exception(reason)

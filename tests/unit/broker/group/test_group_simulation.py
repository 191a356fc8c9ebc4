"""Randomized runs: clients join, crash, restart and leave while the coordinator moves.

Each seed drives simulated consumers (dynamic and static) that follow the client side of
the protocol, through a chaotic phase (crashes, restarts, leaves, coordinator failover
to a new coordinator on the same log) and then a calm phase. Invariants are checked
after every step; at the end the surviving clients must all be in one Stable
generation with a distinct assignment each, and nothing may be left waiting forever.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from kio.schema.errors import ErrorCode as E

from odradek.broker.group.group import GroupState
from odradek.broker.group.member import JoinResult, SyncResult
from odradek.broker.group.membership import LeavingMember
from odradek.broker.group.offsets import OffsetCommitEntry
from tests.unit.broker.group.group_harness import Harness

GROUP = "sim"
SESSION = 6_000
REBALANCE = 8_000
STEP_MS = 500


class Client:
    def __init__(self, name: str, static: bool) -> None:
        self.name = name
        self.instance = name if static else None
        self.member_id = ""
        self.generation = -1
        self.assignment: bytes | None = None
        self.join: asyncio.Future[JoinResult] | None = None
        self.sync: asyncio.Future[SyncResult] | None = None
        self.alive = True
        self.futures: list[asyncio.Future[object]] = []

    def restart(self) -> None:
        """A new process: the member id is lost, the instance id (if any) is kept."""
        self.member_id, self.generation, self.assignment = "", -1, None
        self.join = self.sync = None
        self.alive = True

    def rejoin(self, h: Harness) -> None:
        self.assignment = None
        self.sync = None
        self.join = h.join(
            GROUP, self.member_id, instance=self.instance, session=SESSION, rebalance=REBALANCE
        )
        self.futures.append(self.join)  # type: ignore[arg-type]

    def step(self, h: Harness) -> None:
        if not self.alive:
            return
        if self.join is not None:
            if not self.join.done():
                return
            r, self.join = self.join.result(), None
            if r.error is E.none:
                self.member_id, self.generation = r.member_id, r.generation_id
                plan: dict[str, bytes] = {}
                if r.members and not r.skip_assignment:
                    plan = {
                        m.member_id: f"{m.member_id}@{r.generation_id}".encode() for m in r.members
                    }
                self.sync = h.sync(
                    GROUP, r.generation_id, r.member_id, plan, instance=self.instance
                )
                self.futures.append(self.sync)  # type: ignore[arg-type]
                return
            if r.error in (E.member_id_required,):
                self.member_id = r.member_id
            elif r.error in (E.unknown_member_id, E.fenced_instance_id):
                self.member_id = ""
            self.rejoin(h)
            return
        if self.sync is not None:
            if not self.sync.done():
                return
            s, self.sync = self.sync.result(), None
            if s.error is E.none:
                self.assignment = s.assignment
            else:
                if s.error in (E.unknown_member_id, E.fenced_instance_id):
                    self.member_id = ""
                self.rejoin(h)
            return
        if self.assignment is None:
            self.rejoin(h)
            return
        err = h.coord.membership.heartbeat(GROUP, self.generation, self.member_id, self.instance)
        if err is E.none:
            return
        if err in (E.unknown_member_id, E.fenced_instance_id):
            self.member_id = ""
        self.rejoin(h)


def check_invariants(h: Harness, last_generation: list[int]) -> None:
    group = h.coord.admin.group(GROUP)
    if group is None:
        return
    assert group.generation >= last_generation[0]
    last_generation[0] = group.generation
    if group.members:
        assert group.leader_id in group.members
    else:
        assert group.leader_id is None
    if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
        assert group.members, group.state
    if group.state is GroupState.EMPTY:
        assert not group.members
    for instance, member_id in group.static_members.items():
        assert group.members[member_id].group_instance_id == instance
    assert not (set(group.pending_members) & set(group.members))
    assert group.pending_sync <= set(group.members)


async def run(seed: int) -> None:
    rng = random.Random(seed)
    log_owner = Harness(min_session_timeout_ms=1_000, initial_rebalance_delay_ms=1_000)
    h = await log_owner.load_all()
    clients = [Client(f"c{i}", static=rng.random() < 0.4) for i in range(rng.randint(2, 5))]
    last_generation = [0]
    all_futures: list[asyncio.Future[object]] = []

    async def failover() -> Harness:
        # The partition moves: the old coordinator unloads, a fresh one loads the log.
        nonlocal last_generation
        for c in clients:
            all_futures.extend(c.futures)
        await h.coord.close()
        new = Harness(log=h.log, min_session_timeout_ms=1_000, initial_rebalance_delay_ms=1_000)
        new.clock.advance(h.clock.now_ms() - new.clock.now_ms())
        await new.load_all()
        last_generation = [0]
        return new

    for _ in range(120):
        roll = rng.random()
        c = rng.choice(clients)
        if roll < 0.05:
            c.alive = False  # crash: goes silent
        elif roll < 0.10:
            c.restart()
        elif roll < 0.13 and c.alive and c.member_id:
            h.coord.membership.leave_group(GROUP, [LeavingMember(c.member_id, c.instance)])
            c.restart()
        elif roll < 0.15:
            h = await failover()
        elif roll < 0.25 and c.alive and c.assignment is not None:
            await h.coord.offsets.commit_offsets(
                GROUP,
                {("t", 0): OffsetCommitEntry(rng.randint(0, 100))},
                generation_id=c.generation,
                member_id=c.member_id,
                group_instance_id=c.instance,
            )
        for client in clients:
            client.step(h)
        await h.advance(STEP_MS)
        check_invariants(h, last_generation)

    # Calm phase: the crashed come back, nobody misbehaves.
    for c in clients:
        if not c.alive:
            c.restart()
    for _ in range(160):
        for client in clients:
            client.step(h)
        await h.advance(STEP_MS)
        check_invariants(h, last_generation)

    group = h.coord.admin.group(GROUP)
    assert group is not None and group.state is GroupState.STABLE, seed
    assert sorted(group.members) == sorted(c.member_id for c in clients), seed
    assert {c.generation for c in clients} == {group.generation}, seed
    assignments = [c.assignment for c in clients]
    if not any(m.awaiting_join for m in group.members.values()):
        assert all(a for a in assignments), (seed, assignments)
        assert len(set(assignments)) == len(clients), seed

    for c in clients:
        all_futures.extend(c.futures)
    await h.coord.close()
    await asyncio.sleep(0)
    assert all(f.done() for f in all_futures), seed


@pytest.mark.parametrize("seed", range(40))
async def test_random_membership_converges(seed: int) -> None:
    await run(seed)

"""Deterministic simulation of a Raft controller quorum, in the spirit of TigerBeetle's VOPR.

One seed drives everything: tick phases and clock drift, message delay, loss, duplication and
reordering, partitions (symmetric and one-way), crashes (including in the middle of persisting
a Ready, keeping only a prefix of its writes), restarts, compaction, leadership transfers and
client proposals. Events run from a single priority queue in virtual time, so a seed replays
exactly. The named invariants (invariants.py) are checked after every event.

A run has a safety phase (faults on) and a heal phase (network repaired, every node up) that
must elect a leader and commit and apply a new entry on every node within a bounded time.

Disk model: a node's storage is durable exactly as far as the driver got through persisting
a Ready. A crash may happen before the writes finish (a random prefix of them survives),
after they are durable but before the messages leave, or after sending but before advance().
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from odradek.controller.raft import (
    Entry,
    HardState,
    MembershipChangeRefused,
    MemoryStorage,
    Message,
    NotLeaderError,
    ProposalDropped,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    Snapshot,
)
from tests.sim.invariants import InvariantChecker, InvariantViolation, LivenessViolation

TICK = 10  # virtual time units per Raft tick

_TICK, _DELIVER, _READY, _PROPOSE, _FAULT, _RESTART, _UNBLOCK, _PEER_LOST = range(8)
_KIND_NAMES = ["tick", "deliver", "ready", "propose", "fault", "restart", "unblock"]


@dataclass(frozen=True)
class Scenario:
    name: str
    voters: int = 3
    observers: int = 1
    safety_events: int = 3000
    election_tick: int = 10
    heartbeat_tick: int = 2
    pre_vote: bool = True
    check_quorum: bool = True
    # Small batches and windows so flow control and probing are exercised constantly.
    max_entries_per_msg: int = 4
    max_inflight_msgs: int = 4
    max_uncommitted_entries: int = 32
    max_delay: int = 12
    dup_rate: float = 0.03
    reorder_rate: float = 0.05
    faults: bool = True
    fault_gap: tuple[int, int] = (3 * TICK, 25 * TICK)
    crash_in_ready_rate: float = 0.003
    compact_every: int = 16  # applied entries between snapshots; 0 disables
    transfers: bool = True
    propose_gap: tuple[int, int] = (TICK // 2, 3 * TICK)
    heal_ticks: int = 300
    # Relative weights of FAULT_ACTIONS ("reconfig" is off unless a scenario asks for it).
    fault_weights: tuple[int, ...] = (2, 2, 2, 2, 1, 2, 1, 2, 0)
    # Voter changes (KIP-853): every node is replicated to, and a leader is asked now and then
    # to add a non-voter or remove a voter, keeping between 1 and max_voters voters.
    max_voters: int = 5
    # Swarm testing: each seed also draws its own knobs (batch sizes, fault mix, delays), so
    # different seeds stress different corners instead of all averaging the same mix.
    swarm: bool = True

    def swarmed(self, rng: random.Random) -> Scenario:
        # Zero weights draw nothing, so adding an action did not change existing seeds' runs.
        weights = tuple(w * rng.choice([0, 1, 1, 3]) if w else 0 for w in self.fault_weights)
        if not any(weights):
            weights = self.fault_weights
        transfer = FAULT_ACTIONS.index("transfer")
        if not self.transfers:
            weights = weights[:transfer] + (0,) + weights[transfer + 1 :]
        return replace(
            self,
            max_entries_per_msg=rng.choice([1, 2, 4, 64]),
            max_inflight_msgs=rng.choice([1, 4, 64]),
            max_delay=rng.choice([3, 12, 30]),
            reorder_rate=rng.choice([0.0, 0.05, 0.2]),
            dup_rate=rng.choice([0.0, self.dup_rate, 0.1]),
            crash_in_ready_rate=rng.choice([0.0, self.crash_in_ready_rate, 0.02]),
            propose_gap=(TICK // 2, rng.choice([TICK, 3 * TICK, 10 * TICK])),
            fault_weights=weights,
            swarm=False,
        )


FAULT_ACTIONS = (
    "crash",
    "crash_leader",
    "isolate",
    "split",
    "oneway",
    "lossy",
    "compact",
    "transfer",
    "reconfig",
)


class SimDisk:
    """Durable storage of one node; survives crashes, unlike everything else in SimNode."""

    def __init__(self) -> None:
        self.store = MemoryStorage()

    def writes(self, rd: Ready) -> list[Callable[[], None]]:
        store = self.store
        ops: list[Callable[[], None]] = []
        if rd.snapshot_to_persist is not None:
            snap = rd.snapshot_to_persist
            ops.append(lambda: store.save_snapshot(snap))
        for e in rd.entries_to_persist:
            ops.append(lambda e=e: store.append((e,)))
        if rd.hard_state is not None:
            hs = rd.hard_state

            def set_hs() -> None:
                store.hard_state = hs

            ops.append(set_hs)
        return ops

    @property
    def hard_state(self) -> HardState:
        return self.store.hard_state


class SimApp:
    """State machine: a digest chain over applied entries, snapshotted as the digest."""

    def __init__(self, snapshot: Snapshot | None) -> None:
        self.applied = 0
        self.digest = bytes(16)
        if snapshot is not None:
            self.restore(snapshot)

    def restore(self, snapshot: Snapshot) -> None:
        self.applied = snapshot.meta.index
        self.digest = snapshot.data

    def apply(self, e: Entry) -> None:
        if e.index != self.applied + 1:
            raise InvariantViolation(
                "StateMachineSafety", f"applied entry {e.index} after {self.applied}: gap"
            )
        h = hashlib.blake2b(self.digest, digest_size=16)
        h.update(b"%d/%d/%d/" % (e.index, e.term, e.kind))
        h.update(e.data)
        self.digest = h.digest()
        self.applied = e.index


class SimNode:
    def __init__(self, node_id: int, config: RaftConfig) -> None:
        self.id = node_id
        self.config = config
        self.disk = SimDisk()
        self.raft: RaftNode | None = None
        self.app: SimApp | None = None
        self.incarnation = 0
        self.ready_scheduled = False
        self.tick_interval = TICK


class Simulation:
    def __init__(self, seed: int, scenario: Scenario) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        if scenario.swarm:
            scenario = scenario.swarmed(self.rng)
        self.sc = scenario
        self.now = 0
        self.events_run = 0
        self._queue: list[tuple[int, int, int, Any, int]] = []
        self._seq = 0
        self.checker = InvariantChecker()
        self.stats: Counter[str] = Counter()
        self.recent: deque[tuple[int, str, object]] = deque(maxlen=40)
        self.fingerprint = 0
        self.blocked: set[tuple[int, int]] = set()
        self.drop_rate = 0.0
        self.dup_rate = scenario.dup_rate
        self.faults_enabled = scenario.faults
        self.phase = b"safety"
        self.proposed = 0
        self.heal_proposals: list[tuple[int, bytes]] = []
        self.heal_target: int | None = None
        # Hook for tests that plant a violation: called after every event.
        self.after_event: Callable[[Simulation], None] | None = None

        voters = frozenset(range(1, scenario.voters + 1))
        observers = frozenset(range(scenario.voters + 1, scenario.voters + scenario.observers + 1))
        self.voters = voters
        self.reconfig = self.sc.fault_weights[FAULT_ACTIONS.index("reconfig")] > 0
        self.nodes: dict[int, SimNode] = {}
        for nid in sorted(voters | observers):
            config = RaftConfig(
                node_id=nid,
                voters=voters,
                observers=observers,
                election_tick=scenario.election_tick,
                heartbeat_tick=scenario.heartbeat_tick,
                pre_vote=scenario.pre_vote,
                check_quorum=scenario.check_quorum,
                max_entries_per_msg=scenario.max_entries_per_msg,
                max_inflight_msgs=scenario.max_inflight_msgs,
                max_uncommitted_entries=scenario.max_uncommitted_entries,
            )
            self.nodes[nid] = SimNode(nid, config)
        for node in self.nodes.values():
            self._start(node)
        self._push(self.rng.randint(*scenario.propose_gap), _PROPOSE, None)
        if self.faults_enabled:
            self._push(self.rng.randint(*scenario.fault_gap), _FAULT, None)

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Safety phase, then heal and require liveness."""
        self.run_events(self.sc.safety_events)
        self.heal()
        self.await_liveness()

    def run_events(self, n: int) -> None:
        for _ in range(n):
            self.step_event()

    def step_event(self) -> None:
        t, _, kind, arg, inc = heapq.heappop(self._queue)
        self.now = t
        if kind == _DELIVER:
            self._on_deliver(arg)
        elif kind == _TICK:
            self._on_tick(arg, inc)
        elif kind == _READY:
            self._on_ready(arg, inc)
        elif kind == _PROPOSE:
            self._on_propose()
        elif kind == _FAULT:
            self._on_fault()
        elif kind == _RESTART:
            node = self.nodes[arg]
            if node.raft is None and node.incarnation == inc:
                self._start(node)
        elif kind == _UNBLOCK:
            self.blocked.discard(arg)
            self._note("unblock", arg)
        elif kind == _PEER_LOST:
            observer, lost = arg
            node = self.nodes[observer]
            if node.raft is not None and node.incarnation == inc \
                    and node.raft.forget_leader(lost):
                self._note("forget leader", f"{observer} forgets {lost}")
                self.stats["forgot leader"] += 1
                self._schedule_ready(node)
        self.events_run += 1
        self.fingerprint = hash((self.fingerprint, t, kind))
        self.checker.observe(self.nodes.values())
        if self.after_event is not None:
            self.after_event(self)

    def heal(self) -> None:
        self.faults_enabled = False
        self.blocked.clear()
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.phase = b"heal"
        for node in self.nodes.values():
            if node.raft is None:
                self._start(node)
        self._note("heal", "")

    def await_liveness(self) -> int:
        """Run until a post-heal entry is committed and applied everywhere; returns ticks."""
        return self.run_until(
            self._healed,
            self.sc.heal_ticks,
            "after healing, a new entry must be committed and applied on every node",
        )

    def _healed(self) -> bool:
        if self.heal_target is None:
            committed = self.checker.committed
            for index, data in self.heal_proposals:
                if index < len(committed):
                    e = committed[index]
                    if e is not None and e.data == data:
                        self.heal_target = index
                        break
            if self.heal_target is None:
                return False
        target = self.heal_target
        return all(n.app is not None and n.app.applied >= target for n in self.nodes.values())

    def leader(self) -> SimNode | None:
        """The live leader with the highest term, if any."""
        best = None
        for n in self.nodes.values():
            if n.raft is not None and n.raft.role is Role.LEADER:
                if best is None or n.raft.term > best.raft.term:  # type: ignore[union-attr]
                    best = n
        return best

    def crash(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.raft is not None:
            self._crash(node, "requested")

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.raft is None:
            self._start(node)

    def transfer(self, leader_id: int, target: int) -> None:
        node = self.nodes[leader_id]
        assert node.raft is not None
        node.raft.transfer_leadership(target)
        self._note("transfer", f"{leader_id}->{target}")
        self._schedule_ready(node)

    def run_until(self, done: Callable[[], bool], ticks: int, what: str) -> int:
        """Step events until ``done()``; LivenessViolation after ``ticks`` ticks."""
        start = self.now
        while not done():
            if self.now - start > ticks * TICK:
                raise LivenessViolation(f"{what}: not within {ticks} ticks; {self.summary()}")
            self.step_event()
        return (self.now - start) // TICK

    # ------------------------------------------------------------------ events

    def _push(self, at: int, kind: int, arg: Any, inc: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, arg, inc))

    def _note(self, what: str, detail: object) -> None:
        # Formatted only on failure: repr of every message would dominate the run time.
        self.recent.append((self.now, what, detail))

    def _start(self, node: SimNode) -> None:
        node.incarnation += 1
        view = node.disk.store.view()
        node.raft = RaftNode(node.config, view, random.Random(self.rng.getrandbits(64)))
        if self.reconfig:
            # Any node may become a voter or stop being one; all of them follow the log.
            node.raft.set_observers(frozenset(self.nodes))
        node.app = SimApp(view.snapshot)
        node.ready_scheduled = False
        # Clock drift: each incarnation ticks at its own slightly different rate.
        node.tick_interval = self.rng.randint(TICK - 2, TICK + 2)
        self.checker.on_restart(node.id, node.raft, node.disk.hard_state)
        self._push(self.now + self.rng.randint(1, TICK), _TICK, node.id, node.incarnation)
        self._schedule_ready(node)
        self.stats["starts"] += 1
        self._note("start", node.id)

    def _crash(self, node: SimNode, how: str) -> None:
        node.raft = None
        node.app = None
        node.incarnation += 1
        node.ready_scheduled = False
        self.stats["crashes"] += 1
        self.stats[f"crash {how}"] += 1
        self._note("crash", f"{node.id} {how}")
        # The runtime: the survivors' connections to a dead process close within a moment,
        # and they forget it if it led them (RaftNode.forget_leader).
        for other in self.nodes.values():
            if other is not node and other.raft is not None:
                self._push(self.now + self.rng.randint(0, 2 * TICK), _PEER_LOST,
                           (other.id, node.id), other.incarnation)
        if self.faults_enabled:
            delay = self.rng.randint(1, 8 * self.sc.election_tick) * TICK
            self._push(self.now + delay, _RESTART, node.id, node.incarnation)

    def _schedule_ready(self, node: SimNode) -> None:
        if not node.ready_scheduled:
            node.ready_scheduled = True
            # Disk latency: several steps may batch into one Ready.
            self._push(self.now + self.rng.randint(0, 2), _READY, node.id, node.incarnation)

    def _on_tick(self, nid: int, inc: int) -> None:
        node = self.nodes[nid]
        if node.raft is None or node.incarnation != inc:
            return
        node.raft.tick()
        self._schedule_ready(node)
        self._push(self.now + node.tick_interval, _TICK, nid, inc)

    def _on_deliver(self, m: Message) -> None:
        node = self.nodes[m.dst]
        if node.raft is None or (m.src, m.dst) in self.blocked:
            return
        self._note("deliver", m)
        self.stats[type(m).__name__] += 1
        node.raft.step(m)
        self._schedule_ready(node)

    def _send(self, m: Message) -> None:
        self.checker.on_send(m)
        if (m.src, m.dst) in self.blocked:
            return
        rng = self.rng
        if self.drop_rate and rng.random() < self.drop_rate:
            return
        copies = 2 if self.dup_rate and rng.random() < self.dup_rate else 1
        for _ in range(copies):
            if rng.random() < self.sc.reorder_rate:
                delay = rng.randint(self.sc.max_delay, 8 * TICK)
            else:
                delay = rng.randint(1, self.sc.max_delay)
            self._push(self.now + delay, _DELIVER, m)

    def _on_ready(self, nid: int, inc: int) -> None:
        node = self.nodes[nid]
        raft = node.raft
        if raft is None or node.incarnation != inc:
            return
        node.ready_scheduled = False
        if not raft.has_ready():
            return
        rd = raft.ready()
        writes = node.disk.writes(rd)
        if self.faults_enabled and self.rng.random() < self.sc.crash_in_ready_rate:
            stage = self.rng.randrange(3)
            if stage == 0:
                # Power loss before fsync returned: only some of the writes reached the disk.
                for w in writes[: self.rng.randint(0, len(writes))]:
                    w()
                self._crash(node, "mid-persist")
                return
            for w in writes:
                w()
            if stage == 2:
                for m in rd.messages:
                    self._send(m)
            self._crash(node, "after-persist" if stage == 1 else "after-send")
            return
        for w in writes:
            w()
        for m in rd.messages:
            self._send(m)
        app = node.app
        assert app is not None
        if rd.snapshot_to_apply is not None:
            app.restore(rd.snapshot_to_apply)
            self.checker.on_apply(nid, app.applied, app.digest)
            self.stats["snapshot_restores"] += 1
        for e in rd.committed_entries:
            app.apply(e)
            self.checker.on_apply(nid, e.index, app.digest)
        if rd.soft_state is not None and rd.soft_state.role is Role.LEADER:
            self.stats["leaders"] += 1
        raft.advance(rd)
        every = self.sc.compact_every
        if (
            every
            and app.applied - raft.log.snapshot_index >= every
            and app.applied <= raft.log.stable
        ):
            raft.compact(app.applied, app.digest)
            self.stats["compactions"] += 1
        if raft.has_ready():
            self._schedule_ready(node)

    def _on_propose(self) -> None:
        rng = self.rng
        self._push(self.now + rng.randint(*self.sc.propose_gap), _PROPOSE, None)
        leaders = [
            n for n in self.nodes.values() if n.raft is not None and n.raft.role is Role.LEADER
        ]
        if not leaders:
            return
        node = rng.choice(leaders)
        assert node.raft is not None
        for _ in range(rng.randint(1, 3)):
            self.proposed += 1
            data = b"%s:%d:%d" % (self.phase, self.seed, self.proposed)
            try:
                index = node.raft.propose(data)
            except (NotLeaderError, ProposalDropped):
                break
            if self.phase == b"heal":
                self.heal_proposals.append((index, data))
        self._schedule_ready(node)

    def _on_fault(self) -> None:
        if not self.faults_enabled:
            return
        rng = self.rng
        sc = self.sc
        self._push(self.now + rng.randint(*sc.fault_gap), _FAULT, None)
        ids = sorted(self.nodes)
        up = [n for n in self.nodes.values() if n.raft is not None]
        action = rng.choices(FAULT_ACTIONS, weights=sc.fault_weights)[0]
        self.stats[f"fault_{action}"] += 1
        heal_at = self.now + rng.randint(1, 6 * sc.election_tick) * TICK
        leaders = [n for n in up if n.raft is not None and n.raft.role is Role.LEADER]
        if action == "crash" and up:
            self._crash(rng.choice(up), "fault")
        elif action == "crash_leader" and leaders:
            # Leaders dying mid-replication is where commit-rule bugs (Figure 8) surface.
            self._crash(rng.choice(leaders), "leader fault")
        elif action == "isolate":
            victim = rng.choice(ids)
            self._block(
                {(victim, o) for o in ids if o != victim}
                | {(o, victim) for o in ids if o != victim},
                heal_at,
            )
            # Sometimes the cut is seen as lost connections on both sides (a live leader
            # forgotten; a cut-off follower forgetting a leader that is fine).
            if rng.random() < 0.5:
                for a, b in [(o, victim) for o in ids if o != victim] + \
                        [(victim, o) for o in ids if o != victim]:
                    node = self.nodes[a]
                    if node.raft is not None:
                        self._push(self.now + rng.randint(0, 2 * TICK), _PEER_LOST, (a, b),
                                   node.incarnation)
        elif action == "split":
            side = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
            self._block({(a, b) for a in ids for b in ids if (a in side) != (b in side)}, heal_at)
        elif action == "oneway":
            a, b = rng.sample(ids, 2)
            self._block({(a, b)}, heal_at)
        elif action == "lossy":
            self.drop_rate = rng.choice([0.0, 0.0, 0.02, 0.1, 0.3, 0.6])
            self._note("drop_rate", self.drop_rate)
        elif action == "compact" and up:
            node = rng.choice(up)
            raft, app = node.raft, node.app
            assert raft is not None and app is not None
            if app.applied > raft.log.snapshot_index and app.applied <= raft.log.stable:
                raft.compact(app.applied, app.digest)
                self.stats["compactions"] += 1
                self._schedule_ready(node)
        elif action == "transfer":
            if leaders:
                node = rng.choice(leaders)
                assert node.raft is not None
                target = rng.choice(sorted(node.raft.config.voters))
                node.raft.transfer_leadership(target)
                self._note("transfer", f"{node.id}->{target}")
                self._schedule_ready(node)

        elif action == "reconfig" and leaders:
            self._reconfig(rng.choice(leaders))

    def _reconfig(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None
        current = raft.voter_set
        spare = sorted(set(self.nodes) - current.ids)
        if len(current.ids) > 1 and (not spare or len(current.ids) >= self.sc.max_voters
                                     or self.rng.random() < 0.5):
            new = current.without_voter(self.rng.choice(sorted(current.ids)))
        else:
            added = self.rng.choice(spare)
            new = current.with_voter(added, f"sim-{added}")
        try:
            raft.propose_voters(new)
        except MembershipChangeRefused as exc:
            self.stats[f"reconfig refused: {exc.reason.value}"] += 1
            return
        except (NotLeaderError, ProposalDropped):
            return
        self.stats["reconfig"] += 1
        self._note("reconfig", f"{node.id}: {sorted(current.ids)} -> {sorted(new.ids)}")
        self._schedule_ready(node)

    def _block(self, links: set[tuple[int, int]], until: int) -> None:
        self._note("block", sorted(links))
        for link in sorted(links):
            self.blocked.add(link)
            self._push(until, _UNBLOCK, link)

    # ------------------------------------------------------------------ reporting

    def summary(self) -> str:
        parts = []
        for n in self.nodes.values():
            if n.raft is None:
                parts.append(f"{n.id}:down")
            else:
                r = n.raft
                applied = n.app.applied if n.app else -1
                parts.append(
                    f"{n.id}:{r.role.value} t{r.term} lead={r.lead} commit={r.log.committed} "
                    f"applied={applied} last={r.log.last_index} snap={r.log.snapshot_index}"
                )
        return f"t={self.now} events={self.events_run} [" + "; ".join(parts) + "]"

    def recent_events(self) -> str:
        return "\n".join(f"  t={t} {what} {detail}" for t, what, detail in self.recent)

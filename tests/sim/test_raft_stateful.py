"""Hypothesis stateful test of the Raft core: hypothesis itself is the scheduler.

Rules deliver, drop and duplicate in-flight messages in any order, tick nodes, propose, crash
(also halfway through persisting a Ready), restart, compact and transfer leadership; the
simulator's named invariants are checked after every rule. Hypothesis shrinks a failure to a
minimal schedule and prints it.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from odradek.controller.raft import (
    Message,
    NotLeaderError,
    ProposalDropped,
    RaftConfig,
    RaftNode,
    Role,
)
from tests.sim.invariants import InvariantChecker
from tests.sim.simulator import SimApp, SimNode

VOTERS = frozenset({1, 2, 3})
OBSERVERS = frozenset({4})
IDS = sorted(VOTERS | OBSERVERS)
node_ids = st.sampled_from(IDS)
picks = st.integers(min_value=0, max_value=1 << 16)


class RaftCluster(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.checker = InvariantChecker()
        self.net: list[Message] = []
        self.proposals = 0
        self.nodes: dict[int, SimNode] = {}
        for nid in IDS:
            config = RaftConfig(
                nid,
                VOTERS,
                OBSERVERS,
                # Short timeouts: hypothesis pays for every tick with a rule.
                election_tick=3,
                heartbeat_tick=1,
                max_entries_per_msg=2,
                max_inflight_msgs=2,
            )
            node = SimNode(nid, config)
            self.nodes[nid] = node
            self._start(node)

    def _start(self, node: SimNode) -> None:
        node.incarnation += 1
        view = node.disk.store.view()
        # Election jitter is part of the schedule hypothesis explores via tick counts.
        rng = random.Random(node.id * 1000 + node.incarnation)
        node.raft = RaftNode(node.config, view, rng)
        node.app = SimApp(view.snapshot)
        self.checker.on_restart(node.id, node.raft, node.disk.hard_state)

    def _live(self, nid: int) -> RaftNode | None:
        return self.nodes[nid].raft

    # ---------------------------------------------------------------- rules

    @rule(nid=node_ids, times=st.integers(1, 4))
    def tick(self, nid: int, times: int) -> None:
        raft = self._live(nid)
        if raft is not None:
            for _ in range(times):
                raft.tick()

    @rule(times=st.integers(1, 4))
    def tick_all(self, times: int) -> None:
        for _ in range(times):
            for nid in IDS:
                self.tick(nid, 1)

    @rule(nid=node_ids)
    def process_ready(self, nid: int) -> None:
        node = self.nodes[nid]
        raft = node.raft
        if raft is None or not raft.has_ready():
            return
        rd = raft.ready()
        for write in node.disk.writes(rd):
            write()
        for m in rd.messages:
            self.checker.on_send(m)
            self.net.append(m)
        app = node.app
        assert app is not None
        if rd.snapshot_to_apply is not None:
            app.restore(rd.snapshot_to_apply)
            self.checker.on_apply(nid, app.applied, app.digest)
        for e in rd.committed_entries:
            app.apply(e)
            self.checker.on_apply(nid, e.index, app.digest)
        raft.advance(rd)
        # Visible with --hypothesis-show-statistics: how deep the explored schedules get.
        if raft.role is Role.LEADER:
            event("a leader was elected")
        if rd.committed_entries and rd.committed_entries[-1].data:
            event("a proposal was committed")
        if rd.snapshot_to_apply is not None:
            event("a snapshot was installed")

    # No preconditions on the network rules: filtered-out rules make hypothesis give up.
    @rule(pick=picks)
    def deliver(self, pick: int) -> None:
        if self.net:
            m = self.net.pop(pick % len(self.net))
            raft = self._live(m.dst)
            if raft is not None:
                raft.step(m)

    @rule(pick=picks)
    def drop(self, pick: int) -> None:
        if self.net:
            self.net.pop(pick % len(self.net))

    @rule(pick=picks)
    def duplicate(self, pick: int) -> None:
        if self.net:
            self.net.append(self.net[pick % len(self.net)])

    @rule(rnd=st.randoms(use_true_random=False), steps=st.integers(1, 200))
    def settle(self, rnd: random.Random, steps: int) -> None:
        """Run the cluster for a while in an order hypothesis controls (and can shrink)."""
        for _ in range(steps):
            pending = [nid for nid in IDS if (r := self._live(nid)) is not None and r.has_ready()]
            if pending and (not self.net or rnd.random() < 0.5):
                self.process_ready(rnd.choice(pending))
            elif self.net:
                self.deliver(rnd.randrange(len(self.net)))
            else:
                return

    @rule(nid=node_ids)
    def propose(self, nid: int) -> None:
        raft = self._live(nid)
        if raft is None:
            return
        self.proposals += 1
        try:
            raft.propose(b"p%d" % self.proposals)
        except (NotLeaderError, ProposalDropped):
            pass

    @rule(nid=node_ids, keep=picks)
    def crash(self, nid: int, keep: int) -> None:
        node = self.nodes[nid]
        raft = node.raft
        if raft is None:
            return
        if raft.has_ready():
            # Power loss while persisting: only a prefix of the Ready's writes survives.
            writes = node.disk.writes(raft.ready())
            for write in writes[: keep % (len(writes) + 1)]:
                write()
        node.raft = None
        node.app = None

    @rule(nid=node_ids)
    def restart(self, nid: int) -> None:
        node = self.nodes[nid]
        if node.raft is None:
            self._start(node)

    @rule(nid=node_ids)
    def compact(self, nid: int) -> None:
        node = self.nodes[nid]
        raft, app = node.raft, node.app
        if raft is None or app is None:
            return
        if raft.log.snapshot_index < app.applied <= raft.log.stable:
            raft.compact(app.applied, app.digest)

    @rule(nid=node_ids, to=st.sampled_from(sorted(VOTERS)))
    def transfer(self, nid: int, to: int) -> None:
        raft = self._live(nid)
        if raft is not None and raft.role is Role.LEADER:
            raft.transfer_leadership(to)

    # ---------------------------------------------------------------- invariants

    @invariant()
    def safety(self) -> None:
        self.checker.observe(self.nodes.values())


RaftCluster.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
test_raft_cluster_stateful = RaftCluster.TestCase

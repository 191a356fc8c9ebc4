"""The invariant checker must be able to fail: plant violations and expect them caught."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest

from odradek.controller.raft import (
    Entry,
    EntryKind,
    HardState,
    RaftConfig,
    RaftNode,
    RaftStorageView,
    Role,
    Snapshot,
    SnapshotMeta,
    VoteResponse,
    VoterSet,
)
from odradek.controller.raft.log import RaftLog
from tests.sim.invariants import InvariantChecker, InvariantViolation
from tests.sim.simulator import Scenario, Simulation
from tests.sim.test_raft_sim import run_seed

CALM = Scenario("calm", voters=3, observers=1, faults=False, swarm=False, compact_every=0)


def _settled(seed: int = 1) -> Simulation:
    """A cluster with a leader and a few committed entries on every node."""
    sim = Simulation(seed, CALM)

    def ready() -> bool:
        return all(n.raft is not None and n.raft.log.committed >= 5 for n in sim.nodes.values())

    sim.run_until(ready, 200, "settle")
    return sim


def _follower(sim: Simulation) -> int:
    return next(
        n.id for n in sim.nodes.values() if n.raft is not None and n.raft.role is Role.FOLLOWER
    )


def test_catches_corrupted_committed_entry_in_sim_history() -> None:
    sim = _settled()
    victim = sim.nodes[_follower(sim)]
    log = victim.raft.log  # type: ignore[union-attr]
    i = log.committed - 1 - log.snapshot_index
    good = log.entries[i]
    log.entries[i] = replace(good, data=b"bit flip")
    with pytest.raises(InvariantViolation) as err:
        sim.step_event()
    assert err.value.name == "LogMatching"
    assert f"index {good.index}" in str(err.value)


def test_catches_corruption_planted_mid_run_by_hook() -> None:
    sim = Simulation(3, replace(CALM, compact_every=8))

    def corrupt(s: Simulation) -> None:
        if s.events_run == 800:
            node = s.nodes[_follower(s)]
            log = node.raft.log  # type: ignore[union-attr]
            if log.committed > log.snapshot_index:
                k = log.committed - log.snapshot_index - 1
                log.entries[k] = replace(log.entries[k], term=log.entries[k].term + 7)

    sim.after_event = corrupt
    with pytest.raises(InvariantViolation) as err:
        sim.run()
    assert err.value.name == "LogMatching"


def test_catches_two_leaders_in_one_term() -> None:
    sim = _settled()
    sim.nodes[_follower(sim)].raft.role = Role.LEADER  # type: ignore[union-attr]
    with pytest.raises(InvariantViolation) as err:
        sim.checker.observe(sim.nodes.values())
    assert err.value.name == "ElectionSafety"


def test_catches_state_machine_divergence() -> None:
    sim = _settled()
    app = sim.nodes[_follower(sim)].app
    assert app is not None
    app.digest = bytes(16)
    with pytest.raises(InvariantViolation) as err:
        sim.run_events(2000)
    assert err.value.name == "StateMachineSafety"


def test_catches_commit_and_term_regression() -> None:
    sim = _settled()
    raft = sim.nodes[_follower(sim)].raft
    assert raft is not None
    raft.log.committed -= 1
    with pytest.raises(InvariantViolation) as err:
        sim.checker.observe(sim.nodes.values())
    assert err.value.name == "CommitMonotonic"
    raft.log.committed += 1
    raft.term -= 1
    with pytest.raises(InvariantViolation) as err:
        sim.checker.observe(sim.nodes.values())
    assert err.value.name == "TermMonotonic"


@dataclass
class _Fake:
    id: int
    raft: RaftNode | None


def _node(node_id: int, entries: list[Entry], term: int, commit: int) -> RaftNode:
    config = RaftConfig(node_id, frozenset({1, 2, 3}))
    view = RaftStorageView(HardState(term, None, commit), tuple(entries))
    return RaftNode(config, view, random.Random(0))


def test_catches_leader_missing_a_committed_entry() -> None:
    e = [Entry(1, i, b"x%d" % i) for i in (1, 2, 3)]
    a = _Fake(1, _node(1, e, term=1, commit=3))
    checker = InvariantChecker()
    checker.observe([a])
    # Node 2 "wins" term 2 with only the first entry: impossible under Raft's vote rule.
    b = _Fake(2, _node(2, e[:1], term=2, commit=1))
    b.raft.role = Role.LEADER  # type: ignore[union-attr]
    with pytest.raises(InvariantViolation) as err:
        checker.observe([a, b])
    assert err.value.name == "LeaderCompleteness"


def test_catches_snapshot_disagreeing_with_history() -> None:
    e = [Entry(1, i) for i in (1, 2, 3)]
    checker = InvariantChecker()
    checker.observe([_Fake(1, _node(1, e, term=1, commit=3))])
    restored = _node(2, [], term=2, commit=0)
    restored.log = RaftLog(Snapshot(SnapshotMeta(3, 2)), [], 3)
    with pytest.raises(InvariantViolation) as err:
        checker.observe([_Fake(2, restored)])
    assert err.value.name == "LogMatching"
    assert "snapshot" in str(err.value)


def test_catches_double_vote() -> None:
    checker = InvariantChecker()
    checker.on_send(VoteResponse(1, 2, 5, granted=True))
    checker.on_send(VoteResponse(1, 2, 5, granted=True))  # a duplicate is fine
    with pytest.raises(InvariantViolation) as err:
        checker.on_send(VoteResponse(1, 3, 5, granted=True))
    assert err.value.name == "VoteSafety"


def test_buggy_core_fails_with_replay_command(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Drop the election restriction (section 5.4.1): stale candidates can win and overwrite
    # committed entries. The simulator must notice and say how to replay it.
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    scenario = Scenario("buggy", voters=3, observers=1, safety_events=3000)
    for seed in range(40):
        try:
            run_seed(request, seed, scenario, Simulation.run)
        except AssertionError as exc:
            msg = str(exc)
            assert "LeaderCompleteness" in msg or "LogMatching" in msg, msg
            assert f"ODRADEK_SIM_SEED={seed} " in msg
            return
    pytest.fail("40 seeds of a core without the election restriction found nothing")


def test_catches_two_voters_changed_at_once() -> None:
    def config(*ids: int) -> bytes:
        return VoterSet.of(set(ids)).encode()

    ok = [Entry(1, 1), Entry(1, 2, config(1, 2, 3, 4), EntryKind.CONFIG),
          Entry(1, 3, config(1, 2, 4), EntryKind.CONFIG)]
    InvariantChecker().observe([_Fake(1, _node(1, ok, term=1, commit=3))])
    bad = [*ok[:2], Entry(1, 3, config(1, 5), EntryKind.CONFIG)]
    with pytest.raises(InvariantViolation) as err:
        InvariantChecker().observe([_Fake(1, _node(1, bad, term=1, commit=3))])
    assert err.value.name == "SingleVoterChange"

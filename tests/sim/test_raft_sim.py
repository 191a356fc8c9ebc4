"""Seeded whole-cluster simulations of the Raft core.

Seeds: ODRADEK_SIM_SEED=<n> runs only seed n (every failure message prints the exact command);
ODRADEK_SIM_SEEDS=<count> runs that many seeds per test, starting at ODRADEK_SIM_SEED_BASE
(default 0), e.g. a soak: ``ODRADEK_SIM_SEEDS=5000 ODRADEK_SIM_SEED_BASE=100000``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import pytest

from odradek.controller.raft import Role
from tests.sim.simulator import TICK, Scenario, Simulation


def sim_seeds(default: int) -> list[int]:
    single = os.environ.get("ODRADEK_SIM_SEED")
    if single:
        return [int(single)]
    count = int(os.environ.get("ODRADEK_SIM_SEEDS", default))
    base = int(os.environ.get("ODRADEK_SIM_SEED_BASE", 0))
    return list(range(base, base + count))


def run_seed(
    request: pytest.FixtureRequest,
    seed: int,
    scenario: Scenario,
    body: Callable[[Simulation], None],
) -> Simulation:
    sim = Simulation(seed, scenario)
    try:
        body(sim)
    except AssertionError as exc:
        test = request.node.originalname
        raise AssertionError(
            f"{exc}\n"
            f"scenario={sim.sc}\n"
            f"state: {sim.summary()}\n"
            f"last events:\n{sim.recent_events()}\n"
            f"seed {seed} failed; replay exactly with:\n"
            f"  ODRADEK_SIM_SEED={seed} PYTHONPATH=. python -m pytest "
            f"tests/sim/test_raft_sim.py -k {test}"
        ) from exc
    return sim


THREE = Scenario("3 voters + observer", voters=3, observers=1, safety_events=6000)
FIVE = Scenario("5 voters + observer", voters=5, observers=1, safety_events=6000)
# Safety must not depend on the liveness optimizations.
PLAIN = Scenario(
    "3 voters, no PreVote/CheckQuorum",
    voters=3,
    observers=0,
    safety_events=4000,
    pre_vote=False,
    check_quorum=False,
)


@pytest.mark.parametrize("seed", sim_seeds(200), ids=lambda s: f"seed{s}")
def test_3_voters_safety_then_liveness(request: pytest.FixtureRequest, seed: int) -> None:
    run_seed(request, seed, THREE, Simulation.run)


@pytest.mark.parametrize("seed", sim_seeds(200), ids=lambda s: f"seed{s}")
def test_5_voters_safety_then_liveness(request: pytest.FixtureRequest, seed: int) -> None:
    run_seed(request, seed, FIVE, Simulation.run)


@pytest.mark.parametrize("seed", sim_seeds(20), ids=lambda s: f"seed{s}")
def test_without_prevote_and_checkquorum(request: pytest.FixtureRequest, seed: int) -> None:
    run_seed(request, seed, PLAIN, Simulation.run)


CALM = Scenario(
    "calm network",
    voters=3,
    observers=1,
    faults=False,
    swarm=False,
    reorder_rate=0.0,
    dup_rate=0.0,
    compact_every=10,
)


def _elect(sim: Simulation) -> int:
    sim.run_until(lambda: sim.leader() is not None, 10 * sim.sc.election_tick, "first election")
    leader = sim.leader()
    assert leader is not None
    return leader.id


@pytest.mark.parametrize("seed", sim_seeds(20), ids=lambda s: f"seed{s}")
def test_lagging_follower_and_observer_catch_up_from_snapshot(
    request: pytest.FixtureRequest, seed: int
) -> None:
    def body(sim: Simulation) -> None:
        leader = _elect(sim)
        lagging = [n for n in sorted(sim.nodes) if n != leader][-2:]  # a voter + the observer
        for n in lagging:
            sim.crash(n)
        behind = max(sim.nodes[lagging[0]].disk.store.view().hard_state.commit, 0)

        def compacted_past_them() -> bool:
            lead = sim.leader()
            return (
                lead is not None
                and lead.raft is not None
                and (lead.raft.log.snapshot_index > behind + 3 * CALM.compact_every)
            )

        sim.run_until(compacted_past_them, 400, "leader compacts beyond the crashed nodes")
        restores = sim.stats["snapshot_restores"]
        for n in lagging:
            sim.restart(n)

        def caught_up() -> bool:
            lead = sim.leader()
            if lead is None or lead.raft is None:
                return False
            target = lead.raft.log.snapshot_index
            return all(
                sim.nodes[n].app is not None and sim.nodes[n].app.applied >= target  # type: ignore[union-attr]
                for n in lagging
            )

        sim.run_until(caught_up, 100, "crashed nodes catch up")
        assert sim.stats["snapshot_restores"] >= restores + len(lagging), sim.stats

    run_seed(request, seed, CALM, body)


TRANSFER = Scenario(
    "leadership transfer",
    voters=5,
    observers=1,
    faults=False,
    swarm=False,
    reorder_rate=0.0,
    dup_rate=0.0,
)


@pytest.mark.parametrize("seed", sim_seeds(20), ids=lambda s: f"seed{s}")
def test_leadership_transfer(request: pytest.FixtureRequest, seed: int) -> None:
    def body(sim: Simulation) -> None:
        for _ in range(3):
            old = _elect(sim)
            # Let it replicate a little so the target has to catch up first sometimes.
            start = sim.now
            sim.run_until(lambda start=start: sim.now >= start + 5 * TICK, 10, "settle")
            lead = sim.nodes[old]
            if lead.raft is None or lead.raft.role is not Role.LEADER:
                continue
            target = sim.rng.choice([v for v in sorted(sim.voters) if v != old])
            sim.transfer(old, target)

            def moved(target: int = target) -> bool:
                t = sim.nodes[target].raft
                return t is not None and t.role is Role.LEADER

            # The core abandons a transfer after one election timeout; it must beat that.
            sim.run_until(moved, sim.sc.election_tick, f"transfer {old} -> {target}")

            def deposed(old: int = old) -> bool:
                r = sim.nodes[old].raft
                return r is not None and r.role is Role.FOLLOWER

            # It learns of the new term from the vote request or the new leader's heartbeat.
            sim.run_until(deposed, sim.sc.election_tick, f"old leader {old} steps down")
        sim.heal()
        sim.await_liveness()

    run_seed(request, seed, TRANSFER, body)


def test_same_seed_replays_exactly() -> None:
    def fingerprint(seed: int) -> tuple[object, ...]:
        sim = Simulation(seed, THREE)
        sim.run()
        return (sim.fingerprint, sim.now, sim.events_run, sim.summary(), sorted(sim.stats.items()))

    assert fingerprint(7) == fingerprint(7)
    assert fingerprint(7) != fingerprint(8)


def test_faults_actually_happen() -> None:
    """Guard against a simulator that quietly stopped injecting what it claims to."""
    total: Counter[str] = Counter()
    for seed in range(25):
        sim = Simulation(seed, THREE)
        sim.run()
        total.update(sim.stats)
    for what in (
        "crash fault",
        "crash leader fault",
        "crash mid-persist",
        "crash after-persist",
        "crash after-send",
        "snapshot_restores",
        "InstallSnapshotRequest",
        "TimeoutNow",
        "PreVoteRequest",
        "fault_split",
        "fault_oneway",
        "fault_lossy",
    ):
        assert total[what] > 0, (what, total)
    assert total["leaders"] > 100, total


# Voter changes (KIP-853) under every fault: nodes 1-3 start as voters, 4-5 as observers, and
# leaders keep adding and removing voters one at a time.
RECONFIG = Scenario(
    "voter changes under faults",
    voters=3,
    observers=2,
    safety_events=6000,
    fault_weights=(2, 2, 2, 2, 1, 2, 1, 2, 4),
)


@pytest.mark.parametrize("seed", sim_seeds(100), ids=lambda s: f"seed{s}")
def test_voter_changes_safety_then_liveness(request: pytest.FixtureRequest, seed: int) -> None:
    run_seed(request, seed, RECONFIG, Simulation.run)


def test_voter_changes_actually_happen() -> None:
    """The reconfig scenario commits changes, through crashes, and some are refused."""
    total: Counter[str] = Counter()
    sets: set[frozenset[int]] = set()
    for seed in range(15):
        sim = Simulation(seed, RECONFIG)
        sim.run()
        total.update(sim.stats)
        sets.update(n.raft.config.voters for n in sim.nodes.values() if n.raft is not None)
    assert total["reconfig"] > 10, total
    assert total["reconfig refused: not_caught_up"] > 0, total
    assert any(v - {1, 2, 3} for v in sets), sets  # some seeds end with a new node voting


RECONFIG_PLAIN = Scenario(
    "voter changes, no PreVote/CheckQuorum",
    voters=3,
    observers=2,
    safety_events=4000,
    pre_vote=False,
    check_quorum=False,
    fault_weights=(2, 2, 2, 2, 1, 2, 1, 2, 4),
)


@pytest.mark.parametrize("seed", sim_seeds(30), ids=lambda s: f"seed{s}")
def test_voter_changes_without_prevote_and_checkquorum(
    request: pytest.FixtureRequest, seed: int
) -> None:
    run_seed(request, seed, RECONFIG_PLAIN, Simulation.run)

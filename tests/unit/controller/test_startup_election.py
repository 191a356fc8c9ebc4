"""Start-up speed without weaker timeouts: a starting Raft node campaigns within one
election timeout (a lone voter at once), and a controller node's client stops waiting the
moment its own Raft names a new leader."""

from __future__ import annotations

import asyncio
import random
import time

from odradek.controller.client import ControllerClient
from odradek.controller.raft import RaftConfig, RaftNode, Role
from odradek.controller.raft.storage import RaftStorageView
from odradek.controller.raft_runtime.driver import RaftDriver


def _driver(node: RaftNode) -> RaftDriver:
    async def restore(snapshot: object) -> None:
        return None

    return RaftDriver(node, store=None, transport=None, apply=lambda e: None,  # type: ignore[arg-type]
                      restore=restore)


def test_a_lone_voter_leads_as_soon_as_it_starts() -> None:
    node = RaftNode(RaftConfig(1, frozenset({1})), RaftStorageView(), random.Random(0))
    _driver(node)._advance_initial_election()
    assert node.role is Role.LEADER


def test_several_voters_campaign_within_one_election_timeout() -> None:
    et = RaftConfig(1, frozenset({1, 2, 3})).election_tick
    for seed in range(50):
        node = RaftNode(RaftConfig(1, frozenset({1, 2, 3})), RaftStorageView(),
                        random.Random(seed))
        _driver(node)._advance_initial_election()
        assert node.role is Role.FOLLOWER  # the randomized part is left to run
        ticks = 0
        while node.role is Role.FOLLOWER:
            node.tick()
            ticks += 1
        assert 1 <= ticks <= et, (seed, ticks)


def test_a_node_that_knows_a_leader_is_left_alone() -> None:
    node = RaftNode(RaftConfig(1, frozenset({1, 2, 3})), RaftStorageView(), random.Random(0))
    node.lead = 2
    _driver(node)._advance_initial_election()
    assert node.election_elapsed == 0


def test_the_retry_pause_ends_when_the_local_raft_names_a_leader() -> None:
    hint = {"leader": -1}
    client = ControllerClient({1: "127.0.0.1:1", 2: "127.0.0.1:2"},
                              leader_hint=lambda: hint["leader"])

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, hint.update, {"leader": 2})
        t0 = time.monotonic()
        await client._wait_before_retry(5.0)
        woke = time.monotonic() - t0
        # The same leader again (it refused): the whole pause is waited.
        t0 = time.monotonic()
        await client._wait_before_retry(0.3)
        return woke, time.monotonic() - t0

    woke, full = asyncio.run(main())
    assert woke < 1.0 and full >= 0.29

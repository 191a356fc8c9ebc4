from __future__ import annotations

import random

import pytest

from odradek.controller.raft import (
    EntryKind,
    MemoryStorage,
    NotLeaderError,
    PreVoteRequest,
    RaftConfig,
    RaftNode,
    RaftStorageView,
    Role,
    VoteRequest,
    VoteResponse,
)
from tests.unit.controller.raft.raft_harness import Cluster, view


def test_single_voter_elects_itself_and_commits_only_after_persisting() -> None:
    node = RaftNode(RaftConfig(1, frozenset({1})), RaftStorageView(), random.Random(0))
    store = MemoryStorage()
    for _ in range(node.randomized_election_timeout):
        node.tick()
    assert node.role is Role.LEADER and node.term == 1
    rd = node.ready()
    # The no-op is handed out for persisting but is not committed until advance() says so.
    assert [e.kind for e in rd.entries_to_persist] == [EntryKind.NOOP]
    assert rd.committed_entries == () and rd.hard_state is not None
    assert rd.hard_state.commit == 0 and rd.hard_state.vote == 1
    store.persist(rd)
    node.advance(rd)
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [1]
    node.advance(rd)
    index = node.propose(b"x")
    rd = node.ready()
    assert [e.index for e in rd.entries_to_persist] == [index] and not rd.committed_entries


def test_three_voters_elect_one_leader_and_commit_its_noop() -> None:
    c = Cluster()
    c.campaign(2)
    assert c.leader() is c[2]
    assert {n.term for n in c.up()} == {1}
    assert all(n.lead == 2 for n in c.up())
    assert all(n.log.committed == 1 for n in c.up())
    assert all([e.kind for e in c.applied[i]] == [EntryKind.NOOP] for i in (1, 2, 3))


def test_election_timeout_is_randomized_in_range() -> None:
    seen = set()
    for seed in range(50):
        node = RaftNode(RaftConfig(1, frozenset({1, 2, 3})), RaftStorageView(), random.Random(seed))
        seen.add(node.randomized_election_timeout)
    assert seen <= set(range(10, 20)) and len(seen) > 3


def test_vote_is_in_the_same_ready_as_the_grant() -> None:
    c = Cluster()
    c.tick(1, c[1].randomized_election_timeout)
    c.process(1)
    c.deliver_one()  # pre-vote to 2
    c.process(2)
    c.deliver_one()  # pre-vote to 3
    c.process(3)
    while c.queue and not isinstance(c.queue[0], VoteRequest):
        c.deliver_one()
        c.process(1)
    c.deliver_one()  # vote request to node 2 or 3
    voter = next(i for i in (2, 3) if c[i].has_ready())
    rd = c[voter].ready()
    grants = [m for m in rd.messages if isinstance(m, VoteResponse) and m.granted]
    assert grants and rd.hard_state is not None
    assert rd.hard_state.vote == 1 and rd.hard_state.term == grants[0].term


def test_candidate_with_stale_log_cannot_win() -> None:
    views = {1: view(2, [1]), 2: view(2, [1, 2]), 3: view(2, [1, 2])}
    c = Cluster(views=views)
    c.campaign(1)
    assert c.leader() is None or c.leader() is not c[1]
    assert c[1].role is Role.FOLLOWER
    c.campaign(2)
    assert c.leader() is c[2]


def test_prevote_keeps_partitioned_node_from_bumping_terms() -> None:
    c = Cluster()
    c.campaign(1)
    c.isolate(3)
    for _ in range(100):
        c.tick(3)
        c.stabilize()
    assert c[3].term == 1 and c[3].role is Role.PRE_CANDIDATE
    c.heal()
    c.tick_all(3)
    # Rejoining does not depose the healthy leader.
    assert c.leader() is c[1] and c[1].term == 1 and c[3].lead == 1


def test_without_prevote_a_partitioned_node_disrupts_on_return() -> None:
    c = Cluster(pre_vote=False, check_quorum=False)
    c.campaign(1)
    c.isolate(3)
    for _ in range(60):
        c.tick(3)
        c.stabilize()
    assert c[3].term >= 3
    c.heal()
    c.tick_all(1)
    c.campaign(3)
    # Its higher term forces a new election: exactly what PreVote exists to prevent.
    assert c[1].term > 1


def test_check_quorum_steps_down_leader_cut_off_from_majority() -> None:
    c = Cluster()
    c.campaign(1)
    c.isolate(1)
    # Activity is sampled per election timeout: the first one still counts the votes it got.
    c.tick(1, c[1].config.election_tick)
    assert c[1].role is Role.LEADER
    c.tick(1, c[1].config.election_tick)
    assert c[1].role is Role.FOLLOWER
    with pytest.raises(NotLeaderError):
        c[1].propose(b"x")


def test_without_check_quorum_an_isolated_leader_stays_leader() -> None:
    c = Cluster(check_quorum=False)
    c.campaign(1)
    c.isolate(1)
    c.tick(1, 5 * c[1].config.election_tick)
    assert c[1].role is Role.LEADER


def test_followers_with_live_leader_ignore_higher_term_votes() -> None:
    c = Cluster()
    c.campaign(1)
    c[2].step(VoteRequest(3, 2, 5, last_log_index=10, last_log_term=5))
    c[2].step(PreVoteRequest(3, 2, 5, last_log_index=10, last_log_term=5))
    rd = c[2].ready()
    assert c[2].term == 1 and c[2].vote == 1 and c[2].lead == 1
    # The pre-vote is refused outright; the vote request is ignored.
    assert [type(m).__name__ for m in rd.messages] == ["PreVoteResponse"]
    assert not rd.messages[0].granted  # type: ignore[union-attr]


def test_lease_expires_after_election_timeout_without_leader() -> None:
    c = Cluster()
    c.campaign(1)
    c.crash(1)
    c.tick(2, c[2].config.election_tick)
    c[2].step(VoteRequest(3, 2, 2, last_log_index=1, last_log_term=1))
    assert c[2].term == 2 and c[2].vote == 3


def test_split_vote_resolves_by_randomized_timeouts() -> None:
    c = Cluster(voters=(1, 2, 3, 4, 5))
    for _ in range(200):
        c.tick_all(1)
        if c.leader() is not None:
            break
    leader = c.leader()
    assert leader is not None
    assert sum(n.role is Role.LEADER for n in c.up()) == 1


def test_restart_recovers_term_and_vote() -> None:
    c = Cluster()
    c.campaign(1)
    c.crash(2)
    node = c.start(2)
    assert node.term == 1 and node.vote == 1 and node.log.committed == 1
    assert node.role is Role.FOLLOWER and node.lead is None


def test_followers_that_lost_the_leaders_connection_elect_within_two_ticks() -> None:
    # The runtime sees a dead leader's connections close; forget_leader skips the wait for
    # a whole election timeout (10-19 ticks) without giving up pre-vote's protection.
    c = Cluster()
    c.campaign(1)
    c.crash(1)
    assert c[2].forget_leader(1) and c[3].forget_leader(1)
    assert c[2].lead is None
    assert not c[2].forget_leader(1)  # once
    # Node 2's timer fires within two ticks (timers of different processes are not in step:
    # node 3, out of the lease too, grants its pre-vote and vote meanwhile).
    for _ in range(2):
        c.tick(2)
        c.stabilize()
    leader = c.leader()
    assert leader is c[2] and leader.term == 2 and c[3].lead == 2


def test_one_follower_forgetting_a_live_leader_disrupts_nothing() -> None:
    c = Cluster()
    c.campaign(1)
    assert c[3].forget_leader(1)  # a connection glitch; node 2 still hears the leader
    for _ in range(3):
        c.tick(2)
        c.tick(3)
        c.stabilize()
    # Node 3's pre-vote is refused by node 2 (in the leader's lease); the leader's next
    # heartbeat gives node 3 its leader back.
    c.tick(1)
    c.stabilize()
    assert c.leader() is c[1] and {n.term for n in c.up()} == {1}
    assert c[3].lead == 1
    assert not c[1].forget_leader(1)  # a leader forgets nobody

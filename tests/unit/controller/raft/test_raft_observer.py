from __future__ import annotations

from odradek.controller.raft import (
    PreVoteRequest,
    ProgressState,
    Role,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from tests.unit.controller.raft.raft_harness import Cluster


def test_observer_follows_the_log_but_never_campaigns() -> None:
    c = Cluster(observers=(4,))
    c.campaign(1)
    c.propose(b"a")
    assert c[4].is_observer and c[4].lead == 1
    assert [e.data for e in c.applied[4]] == [b"", b"a"]
    c.crash(1)
    for _ in range(100):
        c.tick(4)
    c.stabilize()
    assert c[4].role is Role.FOLLOWER and c[4].term == 1
    assert not any(isinstance(m, PreVoteRequest | VoteRequest) and m.src == 4 for m in c.sent)
    c[4].step(TimeoutNow(1, 4, 1))
    assert c[4].role is Role.FOLLOWER


def test_observer_answers_votes_by_the_log_rules_alone() -> None:
    # Only a candidate whose latest voter set includes the node asks it (a node added as a
    # voter may not have that CONFIG entry yet); membership is not consulted (Raft thesis
    # 4.1), the election restriction and one vote per term are.
    c = Cluster(observers=(4,))
    c[4].step(VoteRequest(2, 4, 1, last_log_index=5, last_log_term=1))
    c[4].step(VoteRequest(3, 4, 1, last_log_index=5, last_log_term=1))
    msgs = c[4].ready().messages
    assert msgs == (VoteResponse(4, 2, 1, True), VoteResponse(4, 3, 1, False))
    assert c[4].vote == 2
    # It still never campaigns: that needs membership.
    assert c[4].role is Role.FOLLOWER


def test_observer_does_not_count_towards_quorum() -> None:
    c = Cluster(observers=(4,))
    c.campaign(1)
    c.crash(2)
    c.crash(3)
    c[1].propose(b"a")
    c.stabilize()
    assert c[4].log.last_index == 2  # replicated to the observer...
    assert c[1].log.committed == 1  # ...but one voter of three is no quorum
    # ...nor does it keep the leader alive under CheckQuorum.
    c.tick(1, 2 * c[1].config.election_tick)
    assert c[1].role is Role.FOLLOWER


def test_observers_can_be_added_at_runtime() -> None:
    c = Cluster()
    c.campaign(1)
    c.propose(b"a")
    c.add_observer(5)
    for i in (1, 2, 3):
        c[i].set_observers(frozenset({5}))
    c.tick_all(2)
    assert [e.data for e in c.applied[5]] == [b"", b"a"]
    assert c[1].status().progress[5].state is ProgressState.REPLICATE
    assert c[1].status().progress[5].is_observer

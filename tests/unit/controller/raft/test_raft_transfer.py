from __future__ import annotations

import pytest

from odradek.controller.raft import (
    AppendEntriesRequest,
    LeadershipTransferInProgress,
    NotLeaderError,
    Role,
    TimeoutNow,
    VoteRequest,
)
from tests.unit.controller.raft.raft_harness import Cluster


def test_transfer_to_up_to_date_follower() -> None:
    c = Cluster()
    c.campaign(1)
    c.propose(b"a")
    c[1].transfer_leadership(3)
    c.stabilize()
    assert c.leader() is c[3] and c[3].term == 2
    assert c[1].role is Role.FOLLOWER and c[1].lead == 3
    # The target skipped PreVote and its request overrode the voters' leader lease.
    assert any(isinstance(m, TimeoutNow) and m.dst == 3 for m in c.sent)
    assert any(isinstance(m, VoteRequest) and m.transfer for m in c.sent)
    c.propose(b"b")
    assert all(n.log.committed == 4 for n in c.up())


def test_transfer_to_lagging_follower_catches_it_up_first() -> None:
    c = Cluster()
    c.campaign(1)
    c.drop = lambda m: isinstance(m, AppendEntriesRequest) and m.dst == 2
    for k in range(5):
        c.propose(b"%d" % k)
    assert c[2].log.last_index < c[1].log.last_index
    c.drop = None
    c[1].transfer_leadership(2)
    with pytest.raises(LeadershipTransferInProgress) as err:
        c[1].propose(b"refused")
    assert err.value.leader_hint == 2
    c.stabilize()
    assert c.leader() is c[2]
    assert c.log_of(2)[:6] == c.log_of(1)[:6]


def test_transfer_to_unreachable_target_is_abandoned_after_election_timeout() -> None:
    c = Cluster()
    c.campaign(1)
    c.isolate(3)
    c[1].transfer_leadership(3)
    c.stabilize()
    assert c[1].status().lead_transferee == 3
    c.tick(1, c[1].config.election_tick)
    c.stabilize()
    assert c[1].role is Role.LEADER and c[1].status().lead_transferee is None
    c[1].propose(b"accepted again")


def test_transfer_requires_leader_and_voter_target() -> None:
    c = Cluster(observers=(4,))
    c.campaign(1)
    with pytest.raises(NotLeaderError):
        c[2].transfer_leadership(3)
    with pytest.raises(ValueError, match="not a voter"):
        c[1].transfer_leadership(4)
    c[1].transfer_leadership(1)  # already leader: nothing to do
    assert c[1].status().lead_transferee is None

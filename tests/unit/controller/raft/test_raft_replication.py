from __future__ import annotations

import pytest

from odradek.controller.raft import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    Entry,
    Heartbeat,
    Message,
    NotLeaderError,
    ProgressState,
    ProposalDropped,
    Role,
)
from tests.unit.controller.raft.raft_harness import Cluster, view

# Raft paper, Figure 7: the leader's log for term 8 and followers (a)-(f).
LEADER_LOG = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE7 = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIGURE7))
def test_figure7_followers_converge_with_few_rejections(case: str) -> None:
    views = {1: view(7, LEADER_LOG), 2: view(7, FIGURE7[case]), 3: view(7, LEADER_LOG)}
    c = Cluster(views=views)
    c.campaign(1)
    assert c.leader() is c[1] and c[1].term == 8
    assert c.log_of(2) == c.log_of(1)
    assert c.log_of(1)[-1] == (11, 8)
    rejections = [
        m for m in c.sent if isinstance(m, AppendEntriesResponse) and m.src == 2 and not m.success
    ]
    # The conflict hint skips whole terms: never one round trip per entry.
    assert len(rejections) <= 2, rejections
    assert all(n.log.committed == 11 for n in c.up())


def _figure8() -> Cluster:
    """Raft paper Figure 8 (c): S1 leads term 4 and re-replicates its term-2 entry at index 2."""
    views = {
        1: view(3, [1, 2], commit=1),
        2: view(3, [1, 2], commit=1),
        3: view(3, [1], commit=1),
        4: view(3, [1], commit=1),
        5: view(3, [1, 3], commit=1),
    }
    c = Cluster(voters=(1, 2, 3, 4, 5), views=views, max_entries_per_msg=1, check_quorum=False)

    def drop(m: Message) -> bool:
        # S4 and S5 hear nothing from the leader; S3 gets index 2 but never the term-4 entry.
        if isinstance(m, AppendEntriesRequest | Heartbeat) and m.src == 1 and m.dst in (4, 5):
            return True
        return (
            isinstance(m, AppendEntriesRequest)
            and m.dst == 3
            and any(e.index == 3 for e in m.entries)
            and c[3].log.last_index >= 2  # let the first probe through, to be rejected
        )

    c.drop = drop
    c.campaign(1)
    assert c.leader() is c[1] and c[1].term == 4
    c.tick_all(5)
    return c


def test_figure8_entry_of_older_term_on_majority_is_not_committed_by_counting() -> None:
    c = _figure8()
    assert [c.log_of(i)[:2] for i in (1, 2, 3)] == [[(1, 1), (2, 2)]] * 3
    assert c[1].status().progress[3].match == 2
    # Index 2 sits on S1, S2, S3 (a majority) but is from term 2: must not commit.
    assert c[1].log.committed == 1
    # Once an entry of the leader's own term reaches a majority, both commit together.
    c.drop = None
    c.tick_all(2)
    assert c[1].log.committed == 3
    assert c.log_of(3) == [(1, 1), (2, 2), (3, 4)]


def test_figure8_why_it_matters_the_entry_can_still_be_overwritten() -> None:
    c = _figure8()
    c.crash(1)
    c.drop = None
    # S5 (last term 3) can win with S3 and S4 and overwrite index 2 everywhere it reaches.
    c.campaign(5)
    assert c.leader() is c[5] and c[5].term == 5
    assert c.log_of(3) == [(1, 1), (2, 3), (3, 5)]
    assert c.log_of(2) == [(1, 1), (2, 3), (3, 5)]


def test_heartbeat_commit_never_exceeds_what_the_follower_matches() -> None:
    c = Cluster()
    c.campaign(1)
    c.drop = lambda m: isinstance(m, AppendEntriesRequest) and m.dst == 3
    for k in range(3):
        c.propose(b"%d" % k)
    c.tick_all(2)
    assert c[1].log.committed == 4
    hbs = [m for m in c.sent if isinstance(m, Heartbeat) and m.dst == 3]
    assert hbs and all(m.commit <= 1 for m in hbs)
    assert c[3].log.committed == 1


def test_new_leader_probes_then_replicates() -> None:
    c = Cluster()
    c.campaign(1)
    c.tick_all(1)
    progress = c[1].status().progress
    assert progress[2].state is ProgressState.REPLICATE
    assert progress[2].match == c[1].log.last_index


def test_inflight_window_bounds_unacknowledged_appends() -> None:
    c = Cluster(max_inflight_msgs=2, max_entries_per_msg=1)
    c.campaign(1)
    c.tick_all(1)
    c.blocked = {(2, 1), (3, 1)}  # acknowledgements are lost
    for k in range(6):
        c[1].propose(b"%d" % k)
    rd = c.process(1)
    assert rd is not None
    appends = [m for m in rd.messages if isinstance(m, AppendEntriesRequest) and m.dst == 2]
    assert len(appends) == 2 and all(len(m.entries) == 1 for m in appends)


def test_lost_appends_are_recovered_by_heartbeat_responses() -> None:
    c = Cluster()
    c.campaign(1)
    c.drop = lambda m: isinstance(m, AppendEntriesRequest) and m.dst == 3
    c.propose(b"a")
    c.drop = None
    c.tick_all(3)
    assert c[3].log.committed == c[1].log.committed == 2


def test_stale_append_does_not_truncate_newer_entries() -> None:
    c = Cluster()
    c.campaign(1)
    follower = c[2]
    e = [Entry(1, i, b"%d" % i) for i in (2, 3, 4)]
    follower.step(AppendEntriesRequest(1, 2, 1, 1, 1, tuple(e), 1))
    follower.step(AppendEntriesRequest(1, 2, 1, 1, 1, tuple(e[:1]), 1))  # reordered, older
    assert follower.log.last_index == 4


def test_committed_entry_is_never_overwritten() -> None:
    c = Cluster()
    c.campaign(1)
    c.propose(b"a")
    follower = c[2]
    bogus = Entry(1, 2, b"forged")
    follower.step(AppendEntriesRequest(1, 2, 1, 1, 1, (bogus,), 2))
    # prev_log_index below commit: answered with the commit, log untouched.
    assert follower.log.entry(2).data == b"a"


def test_ready_is_stable_until_advance_and_keeps_later_messages() -> None:
    c = Cluster()
    c.campaign(1)
    leader = c[1]
    leader.propose(b"x")
    rd1 = leader.ready()
    assert leader.ready() == rd1
    leader.propose(b"y")
    leader.advance(rd1)
    rd2 = leader.ready()
    assert [e.data for e in rd2.entries_to_persist] == [b"y"]
    assert rd2.messages and all(m not in rd1.messages for m in rd2.messages)


def test_truncation_between_ready_and_advance_is_not_marked_stable() -> None:
    c = Cluster()
    c.campaign(1)
    f = c[3]
    f.step(AppendEntriesRequest(1, 3, 1, 1, 1, (Entry(1, 2, b"old"), Entry(1, 3, b"old")), 1))
    rd = f.ready()
    # A new leader (term 2) overwrites index 3 before the driver finished persisting rd.
    f.step(AppendEntriesRequest(2, 3, 2, 2, 1, (Entry(2, 3, b"new"),), 1))
    c.stores[3].persist(rd)
    f.advance(rd)
    rd2 = f.ready()
    assert [(e.index, e.data) for e in rd2.entries_to_persist] == [(3, b"new")]
    c.stores[3].persist(rd2)
    f.advance(rd2)
    assert [e.data for e in c.stores[3].entries] == [b"", b"old", b"new"]


def test_proposals_on_followers_name_the_leader() -> None:
    c = Cluster()
    c.campaign(2)
    with pytest.raises(NotLeaderError) as err:
        c[1].propose(b"x")
    assert err.value.leader_hint == 2
    assert "node 2" in str(err.value)


def test_uncommitted_tail_is_bounded() -> None:
    c = Cluster(max_uncommitted_entries=3)
    c.campaign(1)
    c.isolate(1)
    for _ in range(3):
        c[1].propose(b"x")
    with pytest.raises(ProposalDropped):
        c[1].propose(b"x")


def test_entries_commit_on_every_node_in_order() -> None:
    c = Cluster(max_entries_per_msg=2)
    c.campaign(3)
    for k in range(20):
        c[3].propose(b"%d" % k)
    c.stabilize()
    c.tick_all(2)
    for i in (1, 2, 3):
        assert [e.data for e in c.applied[i]][1:] == [b"%d" % k for k in range(20)]
    assert c[3].role is Role.LEADER


def test_heartbeat_now_asks_every_peer_at_once_and_restarts_the_interval() -> None:
    # The leader's handover at shutdown asks who is up without waiting for the next beat.
    c = Cluster(heartbeat_tick=3)
    c.campaign(1)
    c.sent.clear()
    c[1].heartbeat_now()
    c.stabilize()
    assert sorted(m.dst for m in c.sent if isinstance(m, Heartbeat)) == [2, 3]
    c.sent.clear()
    c.tick_all(2)  # the interval starts over: no beat two ticks later
    assert not [m for m in c.sent if isinstance(m, Heartbeat)]
    c.tick_all(1)
    assert sorted(m.dst for m in c.sent if isinstance(m, Heartbeat)) == [2, 3]
    c.sent.clear()
    c[2].heartbeat_now()  # a follower has nothing to beat
    c.stabilize()
    assert not c.sent

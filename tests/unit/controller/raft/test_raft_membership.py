"""Dynamic voter membership (KIP-853): the voter set is log state, changed one voter at a time."""

from __future__ import annotations

import random

import pytest

from odradek.controller.raft import (
    AppendEntriesRequest,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    MembershipChangeRefused,
    MembershipError,
    MemoryStorage,
    NotLeaderError,
    RaftConfig,
    RaftNode,
    RaftStorageView,
    RefusalReason,
    Role,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
    VoterSet,
)
from odradek.controller.raft.log_store import FileLogStore
from tests.unit.controller.raft.raft_harness import Cluster


def _add_node(c: Cluster, new: int) -> None:
    """Start ``new`` knowing only the static voters (it is not one: an observer), and make
    every node replicate to it, as the runtime does for a joining controller."""
    c.add_observer(new)
    for i in c.stores:
        if c.nodes[i] is not None:
            c[i].set_observers(frozenset({new}))
    c.stabilize()
    c.tick_all(2)


def _three_with_leader() -> Cluster:
    c = Cluster()
    c.campaign(1)
    c.propose(b"a")
    return c


def test_voter_set_round_trips_and_rejects_garbage() -> None:
    vs = VoterSet.of({3: "h3:1", 1: "h1:1"})
    assert vs.voters == ((1, "h1:1"), (3, "h3:1"))
    assert VoterSet.decode(vs.encode()) == vs
    assert vs.with_voter(2, "h2:1").ids == {1, 2, 3}
    assert vs.without_voter(3).ids == {1}
    with pytest.raises(MembershipError):
        VoterSet.decode(b"not json")
    with pytest.raises(MembershipError):
        VoterSet.of({})
    with pytest.raises(MembershipError):
        VoterSet(((1, ""), (1, "x")))


def test_voter_set_records_directory_ids() -> None:
    static = VoterSet.of({1: "a:1", 2: "b:2"})
    added = static.with_voter(3, "c:3", "DIR3")
    assert added.directory_ids == {3: "DIR3"}
    assert VoterSet.decode(added.encode()) == added
    # Without directory ids the entry is what versions before them wrote (and read).
    assert static.encode() == b'{"voters":[[1,"a:1"],[2,"b:2"]]}'
    assert VoterSet.decode(b'{"voters":[[1,"a:1"],[2,"b:2"]]}') == static
    # Removing the voter drops its directory id; new endpoints keep it.
    assert added.without_voter(3) == static
    moved = added.with_endpoints({1: "a:9", 2: "b:2", 3: "c:3"})
    assert moved.directory_ids == {3: "DIR3"} and moved.endpoints[1] == "a:9"
    with pytest.raises(MembershipError):
        VoterSet(((1, ""),), ((2, "DIR2"),))  # a directory id for no voter
    with pytest.raises(MembershipError):
        VoterSet.decode(b'{"voters":[[1,""]],"dirs":7}')


def test_static_voters_apply_until_the_log_has_a_config_entry() -> None:
    c = _three_with_leader()
    assert c[1].voter_set == VoterSet.of({1, 2, 3})
    assert c[1].status().voters == {1, 2, 3} and c[1].status().voters_committed


def test_add_voter_replicates_the_config_and_every_node_uses_it() -> None:
    c = _three_with_leader()
    _add_node(c, 4)
    assert c[4].is_observer and c[4].log.last_index == c[1].log.last_index
    index = c[1].propose_voters(c[1].voter_set.with_voter(4, "h4:9093"))
    # In force at once on the leader, before it commits.
    assert c[1].config.voters == {1, 2, 3, 4} and not c[1].voters_committed
    c.stabilize()
    for i in (1, 2, 3, 4):
        assert c[i].config.voters == {1, 2, 3, 4}, i
        assert c[i].log.committed >= index
        assert c[i].voter_set.endpoints[4] == "h4:9093"
    assert not c[4].is_observer and c[1].voters_committed
    # The config entry reaches the appliers too (they skip it), in log order.
    assert any(e.kind is EntryKind.CONFIG for e in c.applied[2])


def test_new_voter_counts_towards_the_quorum_and_can_be_elected() -> None:
    c = _three_with_leader()
    _add_node(c, 4)
    c[1].propose_voters(c[1].voter_set.with_voter(4, ""))
    c.stabilize()
    c.crash(2)
    c.crash(3)
    # 1 and 4 of {1,2,3,4}: no majority, nothing commits.
    committed = c[1].log.committed
    c[1].propose(b"b")
    c.stabilize()
    assert c[1].log.committed == committed
    c.crash(1)
    c.start(2)
    c.start(3)
    c.campaign(4)
    assert c[4].role is Role.LEADER
    c.propose(b"c")
    assert c[4].log.committed == c[4].log.last_index


def test_remove_voter_shrinks_the_quorum() -> None:
    c = _three_with_leader()
    c.crash(3)
    c[1].propose_voters(c[1].voter_set.without_voter(3))
    c.stabilize()
    assert c[1].config.voters == {1, 2} and c[1].voters_committed
    # {1,2} needs both; 3 is gone for good and no longer matters.
    c.propose(b"b")
    assert c[2].log.committed == c[1].log.last_index
    # After losing 2 as well, 1 alone is no majority of {1, 2}.
    c.crash(2)
    c[1].propose(b"c")
    c.stabilize()
    assert c[1].log.committed < c[1].log.last_index


def test_replace_a_dead_voter_then_a_second_failure_leaves_a_majority() -> None:
    c = _three_with_leader()
    c.crash(3)
    _add_node(c, 4)
    c[1].propose_voters(c[1].voter_set.with_voter(4, ""))
    c.stabilize()
    # {1,2,4} live of {1,2,3,4}: 3 of 4 commits.
    c.propose(b"b")
    assert c[1].log.committed == c[1].log.last_index
    c[1].propose_voters(c[1].voter_set.without_voter(3))
    c.stabilize()
    assert c[4].config.voters == {1, 2, 4}
    c.crash(1)
    c.tick_all(3 * c[2].config.election_tick)
    leader = c.leader()
    assert leader is not None and leader.id in (2, 4)
    c.propose(b"c")
    assert c[4].log.committed == c[2].log.committed == leader.log.last_index
    assert [e.data for e in c.applied[4] if e.kind is EntryKind.NORMAL] == [b"a", b"b", b"c"]


def test_only_one_change_at_a_time() -> None:
    c = _three_with_leader()
    _add_node(c, 4)
    c.crash(2)
    c.crash(3)
    c[1].propose_voters(c[1].voter_set.with_voter(4, ""))  # cannot commit: 2 of 4
    c.stabilize()
    with pytest.raises(MembershipChangeRefused) as err:
        c[1].propose_voters(c[1].voter_set.without_voter(4))
    assert err.value.reason is RefusalReason.CHANGE_IN_PROGRESS and err.value.retriable


def test_two_voters_at_once_is_refused() -> None:
    c = _three_with_leader()
    with pytest.raises(MembershipChangeRefused) as err:
        c[1].propose_voters(VoterSet.of({1, 4, 5}))
    assert err.value.reason is RefusalReason.NOT_SINGLE_CHANGE
    with pytest.raises(MembershipChangeRefused) as err:
        c[1].propose_voters(c[1].voter_set)
    assert err.value.reason is RefusalReason.NOT_SINGLE_CHANGE


def test_duplicate_and_unknown_voters_are_refused_with_kafka_reasons() -> None:
    c = _three_with_leader()
    # A voter set equal in ids but with an endpoint changed is allowed (UpdateRaftVoter).
    c[1].propose_voters(c[1].voter_set.with_voter(2, "new:1"))
    c.stabilize()
    assert c[3].voter_set.endpoints[2] == "new:1"
    with pytest.raises(MembershipChangeRefused) as err:
        c[1].propose_voters(c[1].voter_set.with_voter(2, "new:1"))
    assert err.value.reason is RefusalReason.NOT_SINGLE_CHANGE


def test_an_unreached_or_lagging_node_cannot_be_added() -> None:
    c = _three_with_leader()
    with pytest.raises(MembershipChangeRefused) as err:
        c[1].propose_voters(c[1].voter_set.with_voter(9, ""))
    assert err.value.reason is RefusalReason.NOT_CAUGHT_UP and "not been reached" in str(err.value)
    c.add_observer(4)
    c.blocked |= {(1, 4)}
    c[1].set_observers(frozenset({4}))
    c.stabilize()
    with pytest.raises(MembershipChangeRefused) as err:
        c[1].propose_voters(c[1].voter_set.with_voter(4, ""))
    assert err.value.reason is RefusalReason.NOT_CAUGHT_UP


def test_a_follower_cannot_change_voters() -> None:
    c = _three_with_leader()
    with pytest.raises(NotLeaderError):
        c[2].propose_voters(c[2].voter_set.without_voter(3))


def test_a_new_leader_must_commit_in_its_term_first() -> None:
    c = _three_with_leader()
    c.crash(1)
    # 2 wins, but none of its term-2 entries reaches 3 yet, so nothing of its term commits.
    c[3].forget_leader(1)
    c.drop = lambda m: isinstance(m, AppendEntriesRequest | Heartbeat) and m.src == 2
    c.campaign(2)
    assert c[2].role is Role.LEADER
    with pytest.raises(MembershipChangeRefused) as err:
        c[2].propose_voters(c[2].voter_set.without_voter(1))
    assert err.value.reason is RefusalReason.NO_COMMIT_IN_TERM
    c.heal()
    c.tick_all(3)
    c[2].propose_voters(c[2].voter_set.without_voter(1))
    c.stabilize()
    assert c[3].config.voters == {2, 3}


def test_a_truncated_config_entry_reverts_the_voter_set() -> None:
    c = _three_with_leader()
    c.crash(2)
    c.crash(3)
    c[1].propose_voters(c[1].voter_set.without_voter(3))  # never reaches anyone
    c.stabilize()
    assert c[1].config.voters == {1, 2}
    c.crash(1)
    c.start(1)
    assert c[1].config.voters == {1, 2}  # durable and in force after a restart too
    c.start(2)
    c.start(3)
    c.blocked |= {(1, 2), (1, 3)}
    c.campaign(2)
    assert c[2].role is Role.LEADER
    c.propose(b"b")
    c.heal()
    c.tick_all(3)
    # 1's uncommitted config entry was overwritten by 2's log: back to the static set.
    assert c[1].log.latest_config_index() == 0
    assert c[1].config.voters == {1, 2, 3}
    assert c[1].log.committed == c[2].log.last_index


def test_a_removed_leader_steps_down_once_the_removal_commits() -> None:
    c = _three_with_leader()
    c.propose(b"b")
    c[1].propose_voters(c[1].voter_set.without_voter(1))
    # Until it commits, 1 keeps leading (it does not count itself towards the quorum).
    assert c[1].role is Role.LEADER and c[1].config.voters == {2, 3}
    c.stabilize()
    assert c[1].role is Role.FOLLOWER and c[1].is_observer
    # It handed over to an up-to-date voter at once.
    assert any(isinstance(m, TimeoutNow) and m.src == 1 for m in c.sent)
    leader = c.leader()
    assert leader is not None and leader.id in (2, 3)
    c.propose(b"c")
    assert c[2].log.committed == c[3].log.committed == leader.log.last_index
    # The removed node never campaigns again.
    c.tick(1, 10 * c[1].config.election_tick)
    c.stabilize()
    assert c[1].role is Role.FOLLOWER


def test_a_removed_voter_does_not_campaign() -> None:
    c = _three_with_leader()
    c[1].propose_voters(c[1].voter_set.without_voter(3))
    c.stabilize()
    assert c[3].is_observer
    c.tick(3, 10 * c[3].config.election_tick)
    c.stabilize()
    assert c[3].role is Role.FOLLOWER
    assert c[1].role is Role.LEADER and 3 not in c[1].progress


def test_snapshot_carries_the_voter_set() -> None:
    c = _three_with_leader()
    _add_node(c, 4)
    c[1].propose_voters(c[1].voter_set.with_voter(4, "h4:1"))
    c.stabilize()
    c.propose(b"b")
    n = c[1]
    n.compact(n.log.applied, b"state")
    assert n.log.snapshot is not None
    assert VoterSet.decode(n.log.snapshot.meta.config).endpoints == {1: "", 2: "", 3: "", 4: "h4:1"}
    assert n.log.snapshot.meta.voters == {1, 2, 3, 4}
    c.stabilize()
    # A node restored from that snapshot alone uses its voters, not the static ones.
    fresh = RaftNode(RaftConfig(5, frozenset({1, 2, 3})),
                     RaftStorageView(HardState(n.term, None, n.log.snapshot_index), (),
                                     n.log.snapshot), random.Random(0))
    assert fresh.config.voters == {1, 2, 3, 4}


def test_snapshot_compaction_records_the_config_as_of_its_index() -> None:
    c = _three_with_leader()
    c.crash(2)
    c.crash(3)
    applied = c[1].log.applied
    c[1].propose_voters(c[1].voter_set.without_voter(3))  # uncommitted, above the snapshot
    c.stabilize()
    c[1].compact(applied, b"s")
    snap = c[1].log.snapshot
    assert snap is not None and snap.meta.config == b"" and snap.meta.voters == {1, 2, 3}
    assert c[1].config.voters == {1, 2}


def test_config_entries_and_snapshots_survive_the_file_store(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    vs = VoterSet.of({1: "a:1", 2: "b:2"})
    store = FileLogStore(tmp_path / "raft")
    store.append([Entry(1, 1, b""), Entry(1, 2, vs.encode(), EntryKind.CONFIG)])
    reopened = FileLogStore(tmp_path / "raft")
    view = reopened.load()
    assert view.entries[1].kind is EntryKind.CONFIG
    node = RaftNode(RaftConfig(1, frozenset({1, 2, 3})), view, random.Random(0))
    assert node.config.voters == {1, 2}
    snap = Snapshot(SnapshotMeta(2, 1, frozenset({1, 2}), frozenset(), vs.encode()), b"data")
    reopened.save_snapshot(snap)
    again = FileLogStore(tmp_path / "raft").load()
    assert again.snapshot == snap
    assert (tmp_path / "raft" / "snapshot").read_bytes().startswith(b"ODRSNP02")
    # Without a voter set the old format is kept, so older versions can still read it.
    plain = FileLogStore(tmp_path / "plain")
    plain.save_snapshot(Snapshot(SnapshotMeta(0 + 1, 1, frozenset({1})), b"d"))
    assert (tmp_path / "plain" / "snapshot").read_bytes().startswith(b"ODRSNP01")
    assert FileLogStore(tmp_path / "plain").load().snapshot == Snapshot(
        SnapshotMeta(1, 1, frozenset({1})), b"d")


def test_follower_append_with_conflicting_config_is_reverted_in_memory() -> None:
    # Pure log-level check: a follower's CONFIG entry replaced by another term's entry.
    vs = VoterSet.of({1, 2})
    storage = MemoryStorage(RaftStorageView(HardState(2, None, 1),
                                            (Entry(1, 1), Entry(1, 2, vs.encode(),
                                                                EntryKind.CONFIG))))
    node = RaftNode(RaftConfig(2, frozenset({1, 2, 3})), storage.view(), random.Random(0))
    assert node.config.voters == {1, 2}
    node.step(AppendEntriesRequest(3, 2, 2, 1, 1, (Entry(2, 2, b"x"),), 1))
    assert node.config.voters == {1, 2, 3}

from __future__ import annotations

import random

import pytest

from odradek.controller.raft import (
    Entry,
    HardState,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    ProgressState,
    RaftConfig,
    RaftNode,
    RaftStorageView,
    Snapshot,
    SnapshotMeta,
)
from tests.unit.controller.raft.raft_harness import Cluster, view


def _with_history(n: int = 10) -> Cluster:
    c = Cluster()
    c.campaign(1)
    for k in range(n):
        c.propose(b"v%d" % k)
    c.tick_all(1)
    return c


def test_compact_refuses_what_is_not_applied() -> None:
    c = _with_history()
    leader = c[1]
    with pytest.raises(ValueError, match="applied"):
        leader.compact(leader.log.applied + 1, b"state")


def test_compaction_is_persisted_and_survives_restart() -> None:
    c = _with_history()
    leader = c[1]
    leader.compact(6, b"state@6")
    assert leader.log.first_index == 7
    rd = c.process(1)
    assert rd is not None and rd.snapshot_to_persist is not None
    assert rd.snapshot_to_apply is None  # the application already has this state
    assert rd.snapshot_to_persist.meta == SnapshotMeta(6, 1, frozenset({1, 2, 3}))
    assert [e.index for e in c.stores[1].entries] == list(range(7, 12))
    c.crash(1)
    node = c.start(1)
    assert node.log.snapshot_index == 6 and node.log.applied == 6
    # Committed entries after the snapshot are replayed to rebuild the state machine.
    assert [e.index for e in node.ready().committed_entries] == list(range(7, 12))


def test_follower_behind_the_first_index_is_restored_from_a_snapshot() -> None:
    c = _with_history(2)
    c.crash(3)
    for k in range(8):
        c.propose(b"w%d" % k)
    leader = c[1]
    leader.compact(leader.log.applied, b"state")
    c.stabilize()
    c.start(3)
    c.tick_all(3)
    assert any(isinstance(m, InstallSnapshotRequest) for m in c.sent)
    (snap,) = c.restored[3]
    assert snap.data == b"state" and snap.meta.index == 11
    rd3 = next(r for r in c.readies[3] if r.snapshot_to_apply is not None)
    assert rd3.snapshot_to_persist is rd3.snapshot_to_apply
    assert c.stores[3].snapshot == snap
    c.propose(b"after")
    assert [e.data for e in c.applied[3]] == [b"after"]
    assert c[1].status().progress[3].state is ProgressState.REPLICATE


def test_lost_snapshot_is_resent() -> None:
    c = _with_history(2)
    c.crash(3)
    for k in range(5):
        c.propose(b"w%d" % k)
    c[1].compact(c[1].log.applied, b"state")
    c.stabilize()
    c.start(3)
    c.drop = lambda m: isinstance(m, InstallSnapshotRequest)
    c.tick_all(2)
    assert c[1].status().progress[3].state is ProgressState.SNAPSHOT
    c.drop = None
    c.tick_all(2 * c[1].config.election_tick)
    assert c.restored[3] and c[3].log.committed == c[1].log.committed


def _follower(entries: list[Entry], commit: int) -> RaftNode:
    cfg = RaftConfig(2, frozenset({1, 2, 3}))
    return RaftNode(
        cfg, RaftStorageView(HardState(1, None, commit), tuple(entries)), random.Random(0)
    )


def test_snapshot_whose_tail_the_follower_holds_only_advances_commit() -> None:
    f = _follower([Entry(1, i) for i in range(1, 6)], commit=1)
    f.step(InstallSnapshotRequest(1, 2, 1, Snapshot(SnapshotMeta(3, 1), b"s")))
    rd = f.ready()
    assert rd.snapshot_to_apply is None and f.log.last_index == 5
    assert f.log.committed == 3
    assert rd.messages == (InstallSnapshotResponse(2, 1, 1, 3),)


def test_snapshot_replaces_a_conflicting_log() -> None:
    f = _follower([Entry(1, 1), Entry(1, 2), Entry(1, 3)], commit=1)
    snap = Snapshot(SnapshotMeta(5, 2), b"s")
    f.step(InstallSnapshotRequest(1, 2, 2, snap))
    assert f.log.entries == [] and f.log.snapshot_index == 5 and f.log.committed == 5
    rd = f.ready()
    assert rd.snapshot_to_apply is snap and rd.snapshot_to_persist is snap
    assert rd.committed_entries == ()
    f.advance(rd)
    assert f.log.applied == 5


def test_stale_snapshot_is_acknowledged_with_commit() -> None:
    f = _follower([Entry(1, i) for i in range(1, 6)], commit=4)
    f.step(InstallSnapshotRequest(1, 2, 1, Snapshot(SnapshotMeta(2, 1), b"s")))
    assert f.ready().messages == (InstallSnapshotResponse(2, 1, 1, 4),)
    assert f.log.snapshot_index == 0


def test_restart_with_commit_beyond_log_is_refused() -> None:
    cfg = RaftConfig(1, frozenset({1, 2, 3}))
    with pytest.raises(ValueError, match="beyond the last log index"):
        RaftNode(cfg, view(1, [1, 1], commit=5), random.Random(0))

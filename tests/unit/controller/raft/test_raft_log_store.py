from __future__ import annotations

import random
from pathlib import Path

import pytest

from odradek.controller.raft import (
    Entry,
    EntryKind,
    HardState,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from odradek.controller.raft.log_store import CorruptLogError, FileLogStore, encode_snapshot


def entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, b"data-%d" % i) for i in range(lo, hi + 1)]


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("log-*.seg"))


def test_round_trip(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    es = entries(1, 5) + [Entry(2, 6, b"", EntryKind.NOOP)]
    store.persist(Ready(hard_state=HardState(2, 3, 4), entries_to_persist=tuple(es)))
    view = FileLogStore(tmp_path).load()
    assert view.hard_state == HardState(2, 3, 4)
    assert list(view.entries) == es and view.snapshot is None


def test_torn_tail_is_cut_off_and_log_stays_appendable(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    store.append(entries(1, 5))
    (seg,) = segments(tmp_path)
    full = seg.read_bytes()
    # Power loss halfway through the last record.
    seg.write_bytes(full[: len(full) - 7])
    store = FileLogStore(tmp_path)
    assert store.last_index == 4
    assert [e.index for e in store.load().entries] == [1, 2, 3, 4]
    assert seg.stat().st_size < len(full) - 7 + 1
    store.append(entries(5, 6, term=2))
    assert [(e.index, e.term) for e in FileLogStore(tmp_path).load().entries][-2:] == [
        (5, 2),
        (6, 2),
    ]


def test_garbage_tail_with_bad_checksum_is_dropped(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    store.append(entries(1, 3))
    (seg,) = segments(tmp_path)
    raw = bytearray(seg.read_bytes())
    raw[-1] ^= 0xFF  # the last record's data no longer matches its CRC
    seg.write_bytes(bytes(raw) + b"\x00" * 11)
    assert [e.index for e in FileLogStore(tmp_path).load().entries] == [1, 2]


def test_damage_in_a_sealed_segment_refuses_to_start(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path, segment_bytes=200)
    store.append(entries(1, 20))
    first = segments(tmp_path)[0]
    assert len(segments(tmp_path)) > 1
    raw = bytearray(first.read_bytes())
    raw[20] ^= 0xFF
    first.write_bytes(bytes(raw))
    with pytest.raises(CorruptLogError, match="sealed segment"):
        FileLogStore(tmp_path)


def test_truncate_suffix_across_segments(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path, segment_bytes=200)
    store.append(entries(1, 30))
    n = len(segments(tmp_path))
    store.truncate_suffix(8)
    assert store.last_index == 7 and len(segments(tmp_path)) < n
    store.append(entries(8, 9, term=3))
    reopened = FileLogStore(tmp_path, segment_bytes=200)
    assert [(e.index, e.term) for e in reopened.load().entries][5:] == [
        (6, 1),
        (7, 1),
        (8, 3),
        (9, 3),
    ]


def test_append_over_a_conflict_truncates_first(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    store.append(entries(1, 5))
    store.append(entries(3, 4, term=2))
    view = FileLogStore(tmp_path).load()
    assert [(e.index, e.term) for e in view.entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    with pytest.raises(ValueError, match="gap"):
        store.append(entries(9, 9))


def test_compaction_deletes_covered_segments(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path, segment_bytes=200)
    store.append(entries(1, 40))
    before = len(segments(tmp_path))
    snap = Snapshot(SnapshotMeta(25, 1, frozenset({1, 2, 3}), frozenset({4})), b"state")
    store.persist(Ready(snapshot_to_persist=snap))
    assert len(segments(tmp_path)) < before
    reopened = FileLogStore(tmp_path, segment_bytes=200)
    view = reopened.load()
    assert view.snapshot == snap
    assert reopened.first_index <= 26 and view.entries[-1].index == 40
    # Entries the snapshot covers may linger on disk; the core skips them.
    node = RaftNode(RaftConfig(1, frozenset({1, 2, 3})), view, random.Random(0))
    assert node.log.first_index == 26 and node.log.last_index == 40


def test_snapshot_from_leader_replaces_a_conflicting_log(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    store.append(entries(1, 10, term=1))
    store.save_snapshot(Snapshot(SnapshotMeta(12, 3), b"s"))
    assert store.load().entries == () and store.last_index == 12
    store.append(entries(13, 14, term=3))
    view = FileLogStore(tmp_path).load()
    assert [e.index for e in view.entries] == [13, 14] and view.snapshot is not None


def test_crash_between_snapshot_and_log_reset_is_repaired_on_open(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    store.append(entries(1, 10, term=1))
    # The snapshot file was renamed into place, then the process died.
    (tmp_path / "snapshot").write_bytes(encode_snapshot(Snapshot(SnapshotMeta(8, 2), b"s")))
    reopened = FileLogStore(tmp_path)
    assert reopened.load().entries == () and segments(tmp_path) == []


def test_hard_state_write_is_atomic(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    store.append(entries(1, 2))
    store.save_hard_state(HardState(3, 2, 1))
    # A crash mid-write leaves only the temporary file; the old state stays in force.
    (tmp_path / "hardstate.tmp").write_bytes(b"half a hard st")
    reopened = FileLogStore(tmp_path)
    assert reopened.hard_state == HardState(3, 2, 1)
    assert not (tmp_path / "hardstate.tmp").exists()


def test_damaged_hard_state_refuses_to_start(tmp_path: Path) -> None:
    FileLogStore(tmp_path).save_hard_state(HardState(3, None, 0))
    raw = bytearray((tmp_path / "hardstate").read_bytes())
    raw[-1] ^= 1
    (tmp_path / "hardstate").write_bytes(bytes(raw))
    with pytest.raises(CorruptLogError, match="checksum"):
        FileLogStore(tmp_path)


def test_commit_beyond_stored_entries_refuses_to_start(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    store.append(entries(1, 3))
    store.save_hard_state(HardState(1, 1, 3))
    store.truncate_suffix(2)
    with pytest.raises(CorruptLogError, match="acknowledged entries are missing"):
        FileLogStore(tmp_path)


def test_empty_segment_from_interrupted_roll_is_removed(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path, segment_bytes=100)
    store.append(entries(1, 3))
    (tmp_path / f"log-{4:020d}.seg").write_bytes(b"ODRL")
    reopened = FileLogStore(tmp_path, segment_bytes=100)
    assert reopened.last_index == 3
    reopened.append(entries(4, 4))
    assert FileLogStore(tmp_path).last_index == 4


def test_drives_a_raft_node_across_restarts(tmp_path: Path) -> None:
    config = RaftConfig(1, frozenset({1}))

    def boot() -> tuple[RaftNode, FileLogStore]:
        store = FileLogStore(tmp_path, segment_bytes=256)
        return RaftNode(config, store.load(), random.Random(0)), store

    def drain(node: RaftNode, store: FileLogStore, applied: list[bytes]) -> None:
        while node.has_ready():
            rd = node.ready()
            store.persist(rd)
            applied.extend(e.data for e in rd.committed_entries)
            node.advance(rd)

    node, store = boot()
    applied: list[bytes] = []
    for _ in range(node.randomized_election_timeout):
        node.tick()
    drain(node, store, applied)
    for k in range(30):
        node.propose(b"cmd%d" % k)
        drain(node, store, applied)
    node.compact(20, b"state@20")
    drain(node, store, applied)

    node, store = boot()
    assert node.term == 1 and node.log.committed == 31 and node.log.snapshot_index == 20
    replayed: list[bytes] = []
    for _ in range(node.randomized_election_timeout):
        node.tick()
    drain(node, store, replayed)
    assert node.role is Role.LEADER and node.term == 2
    assert replayed[:11] == applied[20:31]

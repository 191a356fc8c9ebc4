"""Transactional offset commits (TxnOffsetCommit, KIP-98/447) in the group coordinator:
pending per producer until the transaction marker, require_stable, replay of transactional
batches and markers, expiry and deletion while a transaction is open."""

from __future__ import annotations

import asyncio
from typing import Any

from kio.schema.errors import ErrorCode as E

from odradek.broker.group import records
from odradek.broker.group.log import InMemoryGroupLog, LogAppendError, LogRecord
from odradek.broker.group.membership import LeavingMember
from odradek.broker.group.offsets import OffsetCommitEntry
from tests.unit.broker.group.group_harness import Harness
from tests.unit.broker.group.test_group_handlers import FETCH, TXN_COMMIT, call

PID, EPOCH = 4000, 3


def entries(**offsets: int) -> dict[tuple[str, int], OffsetCommitEntry]:
    """entries(t0=5, u1=7) -> {("t", 0): 5, ("u", 1): 7}"""
    return {(k[0], int(k[1:])): OffsetCommitEntry(v, 2, f"m{v}") for k, v in offsets.items()}


async def txn_commit(
    h: Harness, group: str = "g", producer_id: int = PID, **offsets: int
) -> dict[tuple[str, int], E]:
    return await h.coord.offsets.commit_transactional_offsets(
        group, entries(**offsets), producer_id=producer_id, producer_epoch=EPOCH
    )


def end_txn(h: Harness, group: str, producer_id: int, commit: bool) -> None:
    """What WriteTxnMarkers does: the marker lands in the log, then the coordinator hears."""
    p = h.coord.partition_for(group)
    h.log.append_marker(p, producer_id, commit)
    h.coord.on_transaction_completed(p, producer_id, commit)


def committed(h: Harness, group: str = "g") -> dict[tuple[str, int], int]:
    return h.coord.offsets.committed_offsets(group)


async def test_commit_marker_makes_pending_offsets_committed(harness: Harness) -> None:
    h = await harness.load_all()
    await h.coord.offsets.commit_offsets("g", entries(t0=1))
    assert await txn_commit(h, t0=5, u1=7) == {("t", 0): E.none, ("u", 1): E.none}
    # Written as one transactional batch of the producer ...
    written = h.log.partitions[h.coord.partition_for("g")][-2:]
    assert [(e.producer_id, e.transactional) for e in written if isinstance(e, LogRecord)] == [
        (PID, True)
    ] * 2
    # ... and invisible until the transaction commits.
    assert committed(h) == {("t", 0): 1}
    err, got = h.coord.offsets.fetch_offsets("g", [("t", 0), ("u", 1)])
    assert err is E.none and [o.offset if o else None for _, o in got] == [1, None]
    assert h.coord.offsets.unstable_partitions("g") == {("t", 0), ("u", 1)}
    # Another producer's marker changes nothing.
    end_txn(h, "g", PID + 1, True)
    assert committed(h) == {("t", 0): 1}
    end_txn(h, "g", PID, True)
    assert committed(h) == {("t", 0): 5, ("u", 1): 7}
    got_t0 = h.coord.offsets.fetch_offsets("g", [("t", 0)])[1][0][1]
    assert got_t0 is not None and (got_t0.offset, got_t0.leader_epoch, got_t0.metadata) == (5, 2, "m5")
    assert h.coord.offsets.unstable_partitions("g") == set()


async def test_abort_marker_drops_pending_offsets(harness: Harness) -> None:
    h = await harness.load_all()
    await h.coord.offsets.commit_offsets("g", entries(t0=1))
    await txn_commit(h, t0=5, u1=7)
    end_txn(h, "g", PID, False)
    assert committed(h) == {("t", 0): 1}
    assert h.coord.offsets.unstable_partitions("g") == set()
    # A late duplicate of the marker does nothing either.
    end_txn(h, "g", PID, True)
    assert committed(h) == {("t", 0): 1}


async def test_a_later_plain_commit_wins_over_a_transaction_committing_after_it(
    harness: Harness,
) -> None:
    h = await harness.load_all()
    await txn_commit(h, t0=5, t1=5)
    await h.coord.offsets.commit_offsets("g", entries(t0=9))  # written after the txn's record
    end_txn(h, "g", PID, True)
    # Kafka compares record offsets: t0's plain commit is newer, t1 had none.
    assert committed(h) == {("t", 0): 9, ("t", 1): 5}
    # The reverse order: the transactional record is the newer one and wins.
    await h.coord.offsets.commit_offsets("g", entries(t0=10))
    await txn_commit(h, t0=11)
    end_txn(h, "g", PID, True)
    assert committed(h)[("t", 0)] == 11
    # Replay comes to the same result.
    other = await Harness(log=h.log).load_all()
    assert committed(other) == {("t", 0): 11, ("t", 1): 5}


async def test_completion_only_touches_groups_of_that_partition() -> None:
    h = await Harness(log=InMemoryGroupLog(num_partitions=4)).load_all()
    groups = [f"g{i}" for i in range(12)]
    p = h.coord.partition_for("g0")
    elsewhere = next(g for g in groups if h.coord.partition_for(g) != p)
    await txn_commit(h, "g0", t0=1)
    await txn_commit(h, elsewhere, t0=2)
    end_txn(h, "g0", PID, True)
    assert committed(h, "g0") == {("t", 0): 1}
    assert committed(h, elsewhere) == {}  # its marker is still to come
    end_txn(h, elsewhere, PID, True)
    assert committed(h, elsewhere) == {("t", 0): 2}


async def test_txn_commit_validation(harness: Harness) -> None:
    h = await harness.load_all()
    a, b = (r.member_id for r in await h.stable_group("g", 2))
    commit = h.coord.offsets.commit_transactional_offsets
    # v0-v2 name no member: accepted even while the group has members (KIP-447 came later).
    assert await commit("g", entries(t0=1), producer_id=PID, producer_epoch=0) == {("t", 0): E.none}
    # v3+: the member and its generation are checked.
    ok = await commit("g", entries(t0=2), producer_id=PID, producer_epoch=0,
                      generation_id=1, member_id=a)
    assert ok == {("t", 0): E.none}
    stale = await commit("g", entries(t0=2), producer_id=PID, producer_epoch=0,
                         generation_id=0, member_id=a)
    assert stale == {("t", 0): E.illegal_generation}
    unknown = await commit("g", entries(t0=2), producer_id=PID, producer_epoch=0,
                           generation_id=1, member_id="who")
    assert unknown == {("t", 0): E.unknown_member_id}
    # A group that does not exist: only a commit without generation creates it.
    missing = await commit("nobody", entries(t0=1), producer_id=PID, producer_epoch=0,
                           generation_id=1, member_id=a)
    assert missing == {("t", 0): E.illegal_generation}
    assert h.coord.admin.group_state("nobody") is None
    unknown_tp = await commit("g", entries(x0=1, t9=1), producer_id=PID, producer_epoch=0)
    assert unknown_tp == {("x", 0): E.unknown_topic_or_partition,
                          ("t", 9): E.unknown_topic_or_partition}
    too_big = {("t", 1): OffsetCommitEntry(1, -1, "x" * 4097)}
    assert await commit("g", too_big, producer_id=PID, producer_epoch=0) == {
        ("t", 1): E.offset_metadata_too_large
    }
    # Unlike OffsetCommit, the empty group id is refused.
    assert await commit("", entries(t0=1), producer_id=PID, producer_epoch=0) == {
        ("t", 0): E.invalid_group_id
    }
    # During a rebalance's sync phase the producer's commit is not held up.
    h.coord.membership.leave_group("g", [LeavingMember(b)])
    fut = h.join("g", a)
    await h.settle()
    assert fut.done() and h.coord.admin.group_state("g") == "CompletingRebalance"
    during = await commit("g", entries(t0=3), producer_id=PID, producer_epoch=0,
                          generation_id=2, member_id=a)
    assert during == {("t", 0): E.none}


async def test_failed_write_leaves_nothing_pending(harness: Harness) -> None:
    h = await harness.load_all()
    h.log.fail_with = LogAppendError(E.invalid_producer_epoch)
    assert await txn_commit(h, t0=5) == {("t", 0): E.invalid_producer_epoch}
    h.log.fail_with = LogAppendError(E.not_enough_replicas)
    assert await txn_commit(h, t0=5) == {("t", 0): E.coordinator_not_available}
    assert h.coord.offsets.unstable_partitions("g") == set()
    # The simple group the first commit created is gone again.
    assert h.coord.admin.group_state("g") is None


async def test_replay_holds_transactions_until_their_marker(harness: Harness) -> None:
    h = await harness.load_all()
    await h.coord.offsets.commit_offsets("g", entries(t0=1, t1=1, t2=1))
    await txn_commit(h, producer_id=1, t0=10)
    await txn_commit(h, producer_id=2, t1=20)
    await txn_commit(h, producer_id=3, t2=30)
    await txn_commit(h, "only-txn", producer_id=3, t0=3)
    end_txn(h, "g", 1, True)
    end_txn(h, "g", 2, False)
    # Producer 3's transaction is still open at the end of the log.
    other = await Harness(log=h.log).load_all()
    assert committed(other) == {("t", 0): 10, ("t", 1): 1, ("t", 2): 1}
    assert other.coord.offsets.unstable_partitions("g") == {("t", 2)}
    # A group that only has an open transaction's offsets comes back (as Kafka's
    # replay creates a simple group for them).
    assert other.coord.admin.group_state("only-txn") == "Empty"
    assert other.coord.offsets.unstable_partitions("only-txn") == {("t", 0)}
    # Its marker comes later, through the coordinator.
    end_txn(other, "g", 3, True)
    assert committed(other) == {("t", 0): 10, ("t", 1): 1, ("t", 2): 30}
    assert committed(other, "only-txn") == {("t", 0): 3}
    # And a third load, with every marker in the log, agrees.
    third = await Harness(log=other.log).load_all()
    assert committed(third) == committed(other)
    assert third.coord.offsets.unstable_partitions("g") == set()


async def test_offset_delete_of_a_pending_offset_survives_replay() -> None:
    log = InMemoryGroupLog(num_partitions=1)
    h = await Harness(log=log).load_all()
    await txn_commit(h, t0=5, t1=5)
    # OffsetDelete of a partition with only a pending offset writes its tombstone too.
    err, result = await h.coord.offsets.delete_offsets("g", [("t", 0)])
    assert (err, result) == (E.none, {("t", 0): E.none})
    assert h.coord.offsets.unstable_partitions("g") == {("t", 1)}
    reloaded = await Harness(log=log).load_all()
    assert reloaded.coord.offsets.unstable_partitions("g") == {("t", 1)}
    for coordinator in (h, reloaded):
        coordinator.coord.on_transaction_completed(0, PID, True)
    log.append_marker(0, PID, True)
    assert committed(h) == committed(reloaded) == {("t", 1): 5}
    assert committed(await Harness(log=log).load_all()) == {("t", 1): 5}


async def test_marker_during_load_takes_effect_after_it() -> None:
    log = InMemoryGroupLog(num_partitions=1)
    h = await Harness(log=log).load_all()
    await txn_commit(h, t0=5)
    for i in range(50):  # enough records for the load to yield between batches
        await h.coord.offsets.commit_offsets(f"other{i}", entries(t0=i))
    h2 = Harness(log=log, load_batch_size=10)
    load = asyncio.ensure_future(h2.coord.load_partition(0))
    await asyncio.sleep(0)
    assert h2.coord.loading_partitions() == {0}
    # The marker lands after the load started reading (so past what it reads).
    log.append_marker(0, PID, True)
    h2.coord.on_transaction_completed(0, PID, True)
    await load
    assert committed(h2) == {("t", 0): 5}
    # On a partition this node does not coordinate, the call is a no-op.
    h2.coord.unload_partition(0)
    h2.coord.on_transaction_completed(0, PID, True)


async def test_open_transaction_keeps_offsets_and_group_from_expiring() -> None:
    h = await Harness(offsets_retention_ms=60_000).load_all()
    await h.coord.offsets.commit_offsets("simple", entries(t0=1, t1=1))
    await txn_commit(h, "simple", t0=2)
    await txn_commit(h, "txn-only", t0=2)
    await h.advance(60_000)
    # t1 expires; t0 is about to be replaced by the transaction and stays.
    assert await h.coord.offsets.expire_offsets() == 1
    assert committed(h, "simple") == {("t", 0): 1}
    # A group holding nothing but an open transaction's offsets is not removed.
    assert h.coord.admin.group_state("txn-only") == "Empty"
    end_txn(h, "simple", PID, False)
    end_txn(h, "txn-only", PID, False)
    assert await h.coord.offsets.expire_offsets() == 1
    assert h.coord.admin.group_state("simple") is None
    assert h.coord.admin.group_state("txn-only") is None  # aborted: nothing left


async def test_delete_groups_deletes_pending_offsets_too(harness: Harness) -> None:
    # Kafka's rule (OffsetMetadataManager.deleteAllOffsets): an empty group is deleted
    # with its pending transactional offsets, which get tombstones as well.
    h = await harness.load_all()
    await h.coord.offsets.commit_offsets("g", entries(t0=1))
    await txn_commit(h, t0=5, t1=5)
    assert await h.coord.admin.delete_groups(["g"]) == {"g": E.none}
    p = h.coord.partition_for("g")
    tombstones = {k for k, v in h.log.records(p) if v is None}
    assert {records.offset_key("g", "t", 0), records.offset_key("g", "t", 1)} <= tombstones
    end_txn(h, "g", PID, True)
    assert h.coord.admin.group_state("g") is None
    assert (await Harness(log=h.log).load_all()).coord.admin.group_state("g") is None


# --- through the handlers -------------------------------------------------------------


def txn_request(version: int, offset: int, **extra: Any) -> dict[str, Any]:
    partition: dict[str, Any] = {"partition_index": 0, "committed_offset": offset,
                                 "committed_metadata": "meta"}
    if version >= 2:
        partition["committed_leader_epoch"] = 4
    return {
        "transactional_id": "tx",
        "group_id": "g",
        "producer_id": PID,
        "producer_epoch": EPOCH,
        "topics": [{"name": "t", "partitions": [partition]}],
        **extra,
    }


def fetch_request(version: int, require_stable: bool) -> dict[str, Any]:
    if version >= 8:
        return {
            "groups": [{"group_id": "g", "topics": [{"name": "t", "partition_indexes": [0, 1]}]}],
            "require_stable": require_stable,
        }
    return {"group_id": "g", "topics": [{"name": "t", "partition_indexes": [0, 1]}],
            "require_stable": require_stable}


def fetched(resp: Any, version: int) -> list[tuple[int, int, E]]:
    topics = resp.groups[0].topics if version >= 8 else resp.topics
    return [(p.partition_index, p.committed_offset, p.error_code) for p in topics[0].partitions]


async def test_txn_offset_commit_every_version_and_require_stable(harness: Harness) -> None:
    h = await harness.load_all()
    await h.coord.offsets.commit_offsets("g", {("t", 1): OffsetCommitEntry(3)})
    for version in range(5):
        resp = await call(h, TXN_COMMIT, version, txn_request(version, 100 + version))
        assert [(t.name, [(p.partition_index, p.error_code) for p in t.partitions])
                for t in resp.topics] == [("t", [(0, E.none)])]
        for fetch_version in (7, 8, 9):
            stable = fetched(await call(h, FETCH, fetch_version, fetch_request(fetch_version, True)),
                             fetch_version)
            assert stable == [(0, -1, E.unstable_offset_commit), (1, 3, E.none)]
            latest = fetched(await call(h, FETCH, fetch_version,
                                        fetch_request(fetch_version, False)), fetch_version)
            # Without require_stable: the last committed offset (none yet for t0 at first).
            expected = -1 if version == 0 else 100 + version - 1
            assert latest == [(0, expected, E.none), (1, 3, E.none)]
        end_txn(h, "g", PID, True)
        got = h.coord.offsets.fetch_offsets("g", [("t", 0)])[1][0][1]
        assert got is not None and got.offset == 100 + version
        assert got.leader_epoch == (4 if version >= 2 else -1)
    # v3+ carries the member: an unknown one is refused.
    resp = await call(h, TXN_COMMIT, 3, txn_request(3, 1, generation_id=1, member_id="m"))
    assert resp.topics[0].partitions[0].error_code is E.unknown_member_id

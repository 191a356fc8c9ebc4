"""The committed-offset store (broker/group/offsets.py): OffsetCommit / OffsetFetch /
OffsetDelete semantics, write failures and offset expiry."""

from __future__ import annotations

import asyncio

import pytest
from kio.schema.errors import ErrorCode as E

from odradek.broker.group.log import LogAppendError
from odradek.broker.group.membership import LeavingMember
from odradek.broker.group.offsets import OffsetCommitEntry
from tests.unit.broker.group.group_harness import Harness


def entries(**offsets: int) -> dict[tuple[str, int], OffsetCommitEntry]:
    """entries(t0=5, u1=7) -> {("t", 0): 5, ("u", 1): 7}"""
    return {(k[0], int(k[1:])): OffsetCommitEntry(v, 3, f"m{v}") for k, v in offsets.items()}


async def test_group_member_commit_and_fetch(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 2)
    a = results[0].member_id
    res = await h.coord.offsets.commit_offsets("g", entries(t0=5, t2=9, u1=7), generation_id=1, member_id=a)
    assert res == {("t", 0): E.none, ("t", 2): E.none, ("u", 1): E.none}
    err, got = h.coord.offsets.fetch_offsets("g", [("t", 0), ("t", 1), ("u", 1)])
    assert err is E.none
    t0, t1, u1 = (o for _, o in got)
    assert t0 is not None and (t0.offset, t0.leader_epoch, t0.metadata) == (5, 3, "m5")
    assert t1 is None  # nothing committed: the handler reports -1
    assert u1 is not None and u1.offset == 7
    # All partitions when the request names none.
    err, everything = h.coord.offsets.fetch_offsets("g", None)
    assert [tp for tp, _ in everything] == [("t", 0), ("t", 2), ("u", 1)]
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 5, ("t", 2): 9, ("u", 1): 7}


async def test_commit_validation(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 2)
    a = results[0].member_id
    stale = await h.coord.offsets.commit_offsets("g", entries(t0=1), generation_id=0, member_id=a)
    assert stale == {("t", 0): E.illegal_generation}
    unknown = await h.coord.offsets.commit_offsets("g", entries(t0=1), generation_id=1, member_id="who")
    assert unknown == {("t", 0): E.unknown_member_id}
    # Without member id and generation only an empty group takes commits.
    anonymous = await h.coord.offsets.commit_offsets("g", entries(t0=1))
    assert anonymous == {("t", 0): E.unknown_member_id}
    # Unknown partitions fail alone; the rest of the request goes through.
    mixed = await h.coord.offsets.commit_offsets(
        "g", entries(t0=1, t3=1, x0=1), generation_id=1, member_id=a
    )
    assert mixed == {
        ("t", 0): E.none,
        ("t", 3): E.unknown_topic_or_partition,
        ("x", 0): E.unknown_topic_or_partition,
    }
    too_big = {("t", 1): OffsetCommitEntry(1, -1, "x" * 4097), ("t", 2): OffsetCommitEntry(2)}
    res = await h.coord.offsets.commit_offsets("g", too_big, generation_id=1, member_id=a)
    assert res == {("t", 1): E.offset_metadata_too_large, ("t", 2): E.none}
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 1, ("t", 2): 2}
    # The empty group id is accepted for commits (old clients), but not a missing coordinator.
    assert (await h.coord.offsets.commit_offsets("", entries(t0=1))) == {("t", 0): E.none}


async def test_commit_during_completing_rebalance(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.form_group("g", 1)
    a = results[0].member_id
    res = await h.coord.offsets.commit_offsets("g", entries(t0=1), generation_id=1, member_id=a)
    assert res == {("t", 0): E.rebalance_in_progress}


async def test_commit_during_preparing_rebalance_is_allowed_and_keeps_session(
    harness: Harness,
) -> None:
    h = await harness.load_all()
    a, b = (r.member_id for r in await h.stable_group("g", 2))
    fa = h.join("g", a)
    assert h.coord.admin.group_state("g") == "PreparingRebalance"
    res = await h.coord.offsets.commit_offsets("g", entries(t0=4), generation_id=1, member_id=b)
    assert res == {("t", 0): E.none}
    assert not fa.done()


async def test_standalone_commits(harness: Harness) -> None:
    h = await harness.load_all()
    # A consumer with manual assignment: generation -1, no member id, unknown group.
    res = await h.coord.offsets.commit_offsets("simple", entries(t0=10))
    assert res == {("t", 0): E.none}
    assert h.coord.admin.group_state("simple") == "Empty"
    assert h.coord.offsets.committed_offsets("simple") == {("t", 0): 10}
    # A generation for a group that does not exist: v9 says so, older versions
    # keep the old answer.
    v9 = await h.coord.offsets.commit_offsets("nope", entries(t0=1), generation_id=3, member_id="m")
    assert v9 == {("t", 0): E.group_id_not_found}
    v8 = await h.coord.offsets.commit_offsets(
        "nope", entries(t0=1), generation_id=3, member_id="m", api_version=8
    )
    assert v8 == {("t", 0): E.illegal_generation}
    # Generation -1 commits to an Empty consumer group are fine too (admin tools).
    await h.stable_group("g", 1)
    group = h.coord.admin.group("g")
    assert group is not None
    (only,) = group.members
    h.coord.membership.leave_group("g", [LeavingMember(only)])
    await h.settle()
    assert h.coord.admin.group_state("g") == "Empty"
    assert (await h.coord.offsets.commit_offsets("g", entries(u0=3))) == {("u", 0): E.none}


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (LogAppendError(E.not_leader_or_follower), E.not_coordinator),
        (LogAppendError(E.kafka_storage_error), E.not_coordinator),
        (LogAppendError(E.not_enough_replicas), E.coordinator_not_available),
        (LogAppendError(E.not_enough_replicas_after_append), E.coordinator_not_available),
        (LogAppendError(E.unknown_topic_or_partition), E.coordinator_not_available),
        (LogAppendError(E.record_list_too_large), E.invalid_commit_offset_size),
        (TimeoutError(), E.coordinator_not_available),
        (RuntimeError("boom"), E.unknown_server_error),
    ],
)
async def test_failed_commit_write_maps_errors(failure: Exception, expected: E) -> None:
    h = await Harness().load_all()
    await h.coord.offsets.commit_offsets("g", entries(t0=1))
    h.log.fail_with = failure
    res = await h.coord.offsets.commit_offsets("g", entries(t0=2, t1=2))
    assert res == {("t", 0): expected, ("t", 1): expected}
    # Nothing that failed to become durable is visible.
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 1}


async def test_failed_first_standalone_commit_leaves_no_group() -> None:
    h = await Harness().load_all()
    h.log.fail_with = LogAppendError(E.not_enough_replicas)
    await h.coord.offsets.commit_offsets("ghost", entries(t0=1))
    assert h.coord.admin.group_state("ghost") is None


async def test_response_waits_for_durable_write(harness: Harness) -> None:
    h = await harness.load_all()
    h.log.gate = asyncio.Event()
    task = asyncio.ensure_future(h.coord.offsets.commit_offsets("g", entries(t0=1)))
    await asyncio.sleep(0.01)
    assert not task.done()
    assert h.coord.offsets.committed_offsets("g") == {}
    h.log.gate.set()
    assert (await task) == {("t", 0): E.none}
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 1}


async def test_concurrent_commits_apply_in_log_order(harness: Harness) -> None:
    h = await harness.load_all()
    h.log.gate = asyncio.Event()
    first = asyncio.ensure_future(h.coord.offsets.commit_offsets("g", entries(t0=1)))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(h.coord.offsets.commit_offsets("g", entries(t0=2)))
    await asyncio.sleep(0)
    h.log.gate.set()
    await asyncio.gather(second, first)
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 2}


async def test_fetch_for_unknown_group_and_errors(harness: Harness) -> None:
    h = await harness.load_all()
    err, got = h.coord.offsets.fetch_offsets("nobody", [("t", 0)])
    assert err is E.none and got == [(("t", 0), None)]
    assert h.coord.offsets.fetch_offsets("nobody", None) == (E.none, [])
    h.coord.unload_partition(h.coord.partition_for("nobody"))
    assert h.coord.offsets.fetch_offsets("nobody", [("t", 0)]) == (E.not_coordinator, [])


async def test_offsets_of_empty_group_expire_after_retention() -> None:
    h = await Harness(offsets_retention_ms=60_000).load_all()
    a = (await h.stable_group("g", 1))[0].member_id
    await h.coord.offsets.commit_offsets("g", entries(t0=1), generation_id=1, member_id=a)
    await h.coord.offsets.commit_offsets("simple", entries(t0=1))
    # Stable consumer group subscribed to t: its offsets never expire while it is.
    for _ in range(24):
        await h.advance(5_000)
        assert h.coord.membership.heartbeat("g", 1, a) is E.none
    assert await h.coord.offsets.expire_offsets() == 1  # the simple group's offset
    assert h.coord.admin.group_state("simple") is None  # and the emptied group is gone
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 1}
    # Once the group is empty, retention counts from then.
    h.coord.membership.leave_group("g", [LeavingMember(a)])
    await h.settle()
    await h.advance(59_999)
    assert await h.coord.offsets.expire_offsets() == 0
    await h.advance(1)
    assert await h.coord.offsets.expire_offsets() == 1
    assert h.coord.admin.group_state("g") is None
    # Tombstones were written for the offsets and the groups.
    p = h.coord.partition_for("g")
    assert any(v is None for _, v in h.log.records(p))


async def test_explicit_retention_time_of_old_commit_versions() -> None:
    h = await Harness(
        offsets_retention_ms=10**9, offsets_retention_check_interval_ms=1_000
    ).load_all()
    await h.coord.offsets.commit_offsets("g", entries(t0=1), retention_ms=5_000, api_version=2)
    await h.advance(4_000)
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 1}
    await h.advance(1_000)  # the periodic check (every second here) removes it
    assert h.coord.offsets.committed_offsets("g") == {}


async def test_offset_delete(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 1)  # subscribed to "t"
    a = results[0].member_id
    await h.coord.offsets.commit_offsets(
        "g",
        {
            ("t", 0): OffsetCommitEntry(1),
            ("u", 0): OffsetCommitEntry(2),
            ("u", 1): OffsetCommitEntry(3),
        },
        generation_id=1,
        member_id=a,
    )
    err, result = await h.coord.offsets.delete_offsets("g", [("t", 0), ("u", 0), ("v", 0), ("x", 0)])
    assert err is E.none
    assert result == {
        ("t", 0): E.group_subscribed_to_topic,
        ("u", 0): E.none,
        ("v", 0): E.none,  # nothing committed there: nothing to do, no error
        ("x", 0): E.unknown_topic_or_partition,
    }
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 1, ("u", 1): 3}
    # Once the group is empty everything may go.
    h.coord.membership.leave_group("g", [LeavingMember(a)])
    await h.settle()
    err, result = await h.coord.offsets.delete_offsets("g", [("t", 0)])
    assert (err, result) == (E.none, {("t", 0): E.none})
    assert h.coord.offsets.committed_offsets("g") == {("u", 1): 3}
    # The deletion is durable.
    other = await Harness(log=h.log).load_all()
    assert other.coord.offsets.committed_offsets("g") == {("u", 1): 3}

    assert await h.coord.offsets.delete_offsets("missing", [("t", 0)]) == (E.group_id_not_found, {})
    assert await h.coord.offsets.delete_offsets("", [("t", 0)]) == (E.invalid_group_id, {})


async def test_offset_delete_in_active_non_consumer_group(harness: Harness) -> None:
    h = await harness.load_all()
    f = h.join("connect-group", protocol_type="connect", require_known=False)
    await h.advance(3_000)
    assert f.result().error is E.none
    assert await h.coord.offsets.delete_offsets("connect-group", [("t", 0)]) == (E.non_empty_group, {})


async def test_a_deleted_topic_takes_its_offsets_with_it() -> None:
    """Kafka's onPartitionsDeleted: every group forgets the deleted topic's offsets, with
    tombstones, so a coordinator that loads the log afterwards does not bring them back;
    other topics' offsets stay."""
    h = await Harness().load_all()
    a = (await h.stable_group("g", 1))[0].member_id
    await h.coord.offsets.commit_offsets("g", entries(t0=4, t1=5, u0=6), generation_id=1,
                                         member_id=a)
    await h.coord.offsets.commit_offsets("simple", entries(t0=7))
    assert await h.coord.offsets.forget_deleted_topics({"t"}) == 3
    assert h.coord.offsets.committed_offsets("g") == {("u", 0): 6}
    assert h.coord.offsets.committed_offsets("simple") == {}
    assert await h.coord.offsets.forget_deleted_topics({"t"}) == 0  # nothing left to drop
    # A coordinator loading the same log (a failover) sees the tombstones.
    other = await Harness(log=h.log).load_all()
    assert other.coord.offsets.committed_offsets("g") == {("u", 0): 6}
    assert other.coord.offsets.committed_offsets("simple") == {}

"""Loading and unloading __consumer_offsets partitions (broker/group/registry.py, replaying
with broker/group/loading.py): reload on a new coordinator, load epochs, close."""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode as E

from odradek.broker.group import records
from odradek.broker.group.log import InMemoryGroupLog
from odradek.broker.group.membership import LeavingMember
from odradek.broker.group.offsets import OffsetCommitEntry
from tests.unit.broker.group.group_harness import Harness, subscription


async def test_new_coordinator_on_same_log_has_offsets_and_generation(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 2)
    a, b = (r.member_id for r in results)
    await h.coord.offsets.commit_offsets(
        "g", {("t", 0): OffsetCommitEntry(42, 7, "meta")}, generation_id=1, member_id=a
    )
    await h.coord.offsets.commit_offsets("simple", {("u", 1): OffsetCommitEntry(3)})
    await h.coord.offsets.commit_offsets("gone", {("u", 0): OffsetCommitEntry(1)})
    assert (await h.coord.admin.delete_groups(["gone"])) == {"gone": E.none}

    other = await Harness(log=h.log).load_all()
    err, got = other.coord.offsets.fetch_offsets("g", [("t", 0)])
    ((_, o),) = got
    assert o is not None and (o.offset, o.leader_epoch, o.metadata) == (42, 7, "meta")
    assert other.coord.offsets.committed_offsets("simple") == {("u", 1): 3}
    assert other.coord.admin.group_state("gone") is None
    group = other.coord.admin.group("g")
    assert group is not None
    assert group.generation == 1 and group.protocol_name == "range"
    assert group.protocol_type == "consumer"
    # Members come back as of the last completed rebalance, so a coordinator move does
    # not force a rebalance: they carry on with heartbeats and commits.
    assert other.coord.admin.group_state("g") == "Stable"
    assert set(group.members) == {a, b}
    assert group.members[b].assignment == f"a:{b}".encode()
    assert other.coord.membership.heartbeat("g", 1, b) is E.none
    res = await other.coord.offsets.commit_offsets(
        "g", {("t", 1): OffsetCommitEntry(5)}, generation_id=1, member_id=b
    )
    assert res == {("t", 1): E.none}
    desc_err, summary = other.coord.admin.describe_group("g")
    assert summary is not None and summary.members[0].metadata == subscription("t")

    # Members that do not come back are expired after their session timeout.
    await other.advance(5_000)
    assert other.coord.membership.heartbeat("g", 1, b) is E.none
    await other.advance(5_000)
    assert set(group.members) == {b}
    assert other.coord.admin.group_state("g") == "PreparingRebalance"


async def test_empty_group_generation_survives_reload(harness: Harness) -> None:
    h = await harness.load_all()
    a = (await h.stable_group("g", 1))[0].member_id
    await h.coord.offsets.commit_offsets(
        "g", {("t", 0): OffsetCommitEntry(9)}, generation_id=1, member_id=a
    )
    h.coord.membership.leave_group("g", [LeavingMember(a)])
    await h.settle()
    other = await Harness(log=h.log).load_all()
    group = other.coord.admin.group("g")
    assert group is not None and group.generation == 2
    assert other.coord.admin.group_state("g") == "Empty"
    assert other.coord.offsets.committed_offsets("g") == {("t", 0): 9}
    # A consumer starting again begins a new generation after the stored one.
    f = other.join("g", require_known=False)
    await other.advance(3_000)
    assert f.result().generation_id == 3


async def test_unload_answers_not_coordinator_and_releases_parked_requests(
    harness: Harness,
) -> None:
    h = await harness.load_all()
    results = await h.form_group("g", 2)
    leader = next(r for r in results if r.members)
    follower = next(r for r in results if not r.members)
    parked_sync = h.sync("g", 1, follower.member_id)
    parked_join = h.join("other-group", require_known=False)
    p = h.coord.partition_for("g")
    h.coord.unload_partition(p)
    assert parked_sync.result().error is E.not_coordinator
    assert h.coord.membership.heartbeat("g", 1, leader.member_id) is E.not_coordinator
    assert h.join("g", leader.member_id).result().error is E.not_coordinator
    assert h.sync("g", 1, leader.member_id).result().error is E.not_coordinator
    assert h.coord.membership.leave_group("g", [LeavingMember(leader.member_id)])[0] is E.not_coordinator
    res = await h.coord.offsets.commit_offsets("g", {("t", 0): OffsetCommitEntry(1)})
    assert res == {("t", 0): E.not_coordinator}
    assert h.coord.admin.describe_group("g") == (E.not_coordinator, None)
    assert "g" not in {o.group_id for o in h.coord.admin.list_groups()}
    if h.coord.partition_for("other-group") == p:
        assert parked_join.result().error is E.not_coordinator
    else:
        assert not parked_join.done()
    # Becoming leader again reloads what was durable: nothing, for a group whose
    # first generation never completed.
    await h.coord.load_partition(p)
    assert h.coord.admin.group_state("g") is None
    assert h.join("g", leader.member_id).result().error is E.unknown_member_id


async def test_requests_during_load_get_load_in_progress() -> None:
    log = InMemoryGroupLog(num_partitions=1)
    for i in range(50):
        log.put(
            0,
            records.offset_key("g", "t", 0),
            records.encode_offset_value(records.OffsetValue(i, -1, "", 1)),
        )
    h = Harness(log=log, load_batch_size=10)
    load = asyncio.ensure_future(h.coord.load_partition(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not load.done()
    assert h.coord.offsets.fetch_offsets("g", None) == (E.coordinator_load_in_progress, [])
    assert h.join("g").result().error is E.coordinator_load_in_progress
    # Members keep quiet rather than being thrown out while their group loads.
    assert h.coord.membership.heartbeat("g", 1, "m") is E.none
    assert h.sync("g", 1, "m").result().error is E.rebalance_in_progress
    assert h.coord.admin.list_groups_error() is E.coordinator_load_in_progress
    await load
    assert h.coord.offsets.committed_offsets("g") == {("t", 0): 49}
    assert h.coord.admin.list_groups_error() is E.none


async def test_unload_during_load_abandons_it() -> None:
    log = InMemoryGroupLog(num_partitions=1)
    for _ in range(30):
        log.put(
            0,
            records.offset_key("g", "t", 0),
            records.encode_offset_value(records.OffsetValue(1, -1, "", 1)),
        )
    h = Harness(log=log, load_batch_size=10)
    load = asyncio.ensure_future(h.coord.load_partition(0))
    await asyncio.sleep(0)
    h.coord.unload_partition(0)
    await load
    assert h.coord.owned_partitions() == set()
    assert h.coord.offsets.fetch_offsets("g", None)[0] is E.not_coordinator


async def test_close_releases_everything(harness: Harness) -> None:
    h = await harness.load_all()
    f = h.join("g", require_known=False)
    await h.coord.close()
    assert f.result().error is E.not_coordinator
    assert h.coord.membership.heartbeat("g", 0, "x") is E.coordinator_not_available


async def test_undecodable_records_are_skipped() -> None:
    log = InMemoryGroupLog(num_partitions=1)
    for key, value in [
        (b"\x00", b"junk"),
        (records.offset_key("g", "t", 0), b"\x00\x09garbage"),
        (b"\x00\x05unknown-key-type", b"x"),
        (
            records.offset_key("g", "t", 1),
            records.encode_offset_value(records.OffsetValue(5, -1, "", 1)),
        ),
    ]:
        log.put(0, key, value)
    h = Harness(log=log)
    await h.coord.load_partition(0)
    assert h.coord.offsets.committed_offsets("g") == {("t", 1): 5}

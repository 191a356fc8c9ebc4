"""Static membership (group.instance.id, KIP-345) in broker/group/membership.py."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode as E

from odradek.broker.group.log import LogAppendError
from odradek.broker.group.membership import LeavingMember
from odradek.broker.group.offsets import OffsetCommitEntry
from tests.unit.broker.group.group_harness import INITIAL_DELAY_MS, Harness, subscription


async def stable_static_group(h: Harness, **kw: Any) -> dict[str, str]:
    """Instances i1 (leader) and i2 in a stable group; returns instance -> member id."""
    f1 = h.join("g", instance="i1", **kw)
    f2 = h.join("g", instance="i2", **kw)
    await h.advance(2 * INITIAL_DELAY_MS)
    r1, r2 = f1.result(), f2.result()
    assert r1.error is E.none and r2.error is E.none  # no MEMBER_ID_REQUIRED round trip
    assert r1.member_id.startswith("i1-") and r2.member_id.startswith("i2-")
    s2 = h.sync("g", 1, r2.member_id, instance="i2")
    s1 = h.sync("g", 1, r1.member_id, {r1.member_id: b"one", r2.member_id: b"two"}, instance="i1")
    await h.settle()
    assert s1.result().assignment == b"one" and s2.result().assignment == b"two"
    return {"i1": r1.member_id, "i2": r2.member_id}


async def test_static_rejoin_replaces_member_without_rebalance(harness: Harness) -> None:
    h = await harness.load_all()
    ids = await stable_static_group(h)
    # i2 restarts: it has lost its member id and joins as unknown with its instance id.
    f = h.join("g", instance="i2")
    await h.settle()
    r = f.result()
    assert r.error is E.none
    assert r.member_id != ids["i2"] and r.member_id.startswith("i2-")
    assert r.generation_id == 1 and h.coord.admin.group_state("g") == "Stable"
    assert r.leader_id == ids["i1"] and r.members == ()
    # It gets its old assignment back with the current generation.
    s = h.sync("g", 1, r.member_id, instance="i2")
    assert s.result().assignment == b"two"

    # The old incarnation is fenced everywhere.
    assert h.coord.membership.heartbeat("g", 1, ids["i2"], "i2") is E.fenced_instance_id
    assert h.sync("g", 1, ids["i2"], instance="i2").result().error is E.fenced_instance_id
    assert h.join("g", ids["i2"], instance="i2").result().error is E.fenced_instance_id
    commit = await h.coord.offsets.commit_offsets(
        "g",
        {("t", 0): OffsetCommitEntry(5)},
        generation_id=1,
        member_id=ids["i2"],
        group_instance_id="i2",
    )
    assert commit == {("t", 0): E.fenced_instance_id}
    assert h.coord.membership.heartbeat("g", 1, r.member_id, "i2") is E.none
    # An instance id the group does not know is simply unknown.
    assert h.coord.membership.heartbeat("g", 1, r.member_id, "i9") is E.unknown_member_id


async def test_static_leader_rejoin_v9_is_told_to_skip_assignment(harness: Harness) -> None:
    h = await harness.load_all()
    ids = await stable_static_group(h)
    f = h.join("g", instance="i1", skip=True)
    await h.settle()
    r = f.result()
    assert r.leader_id == r.member_id and r.skip_assignment
    assert sorted(m.member_id for m in r.members) == sorted([r.member_id, ids["i2"]])
    # Before v9 the returning leader is shown the old leader id, so it does not assign.
    g = h.join("g", instance="i1")
    await h.settle()
    assert g.result().leader_id == r.member_id != g.result().member_id
    assert not g.result().skip_assignment and g.result().members == ()
    assert h.coord.admin.group_state("g") == "Stable"


async def test_static_rejoin_with_new_metadata_but_same_protocol_does_not_rebalance(
    harness: Harness,
) -> None:
    h = await harness.load_all()
    await stable_static_group(h)
    # A restarted consumer's subscription bytes differ (no owned partitions any more);
    # as long as the group's protocol stays, that is no reason to rebalance.
    f = h.join("g", instance="i2", protocols=[("range", b"other bytes"), ("roundrobin", b"x")])
    await h.settle()
    assert f.result().error is E.none and f.result().generation_id == 1
    assert h.coord.admin.group_state("g") == "Stable"


async def test_static_rejoin_that_changes_the_protocol_rebalances(harness: Harness) -> None:
    h = await harness.load_all()
    both = [("range", b"r"), ("roundrobin", b"rr")]
    f = h.join("g", instance="i1", protocols=both)
    await h.advance(INITIAL_DELAY_MS)
    r = f.result()
    h.sync("g", 1, r.member_id, {r.member_id: b"a"}, instance="i1")
    await h.settle()
    assert h.coord.admin.group_state("g") == "Stable"
    again = h.join("g", instance="i1", protocols=both[::-1])
    # A rebalance ran (and finished at once: the only member has rejoined).
    assert h.coord.admin.group_state("g") == "CompletingRebalance"
    assert again.result().protocol_name == "roundrobin"
    assert again.result().generation_id == 2


async def test_static_member_survives_a_rebalance_it_misses(harness: Harness) -> None:
    h = await harness.load_all()
    ids = await stable_static_group(h, session=60_000, rebalance=5_000)
    # i2 is down (restarting); the leader rejoins; i2 is kept through the rebalance.
    f1 = h.join("g", ids["i1"], instance="i1", session=60_000, rebalance=5_000)
    await h.advance(5_000)
    r = f1.result()
    assert r.generation_id == 2
    assert sorted(m.member_id for m in r.members) == sorted(ids.values())
    assert h.coord.membership.heartbeat("g", 2, ids["i2"], "i2") is E.none


async def test_failed_write_of_static_rejoin_restores_old_member_id(harness: Harness) -> None:
    h = await harness.load_all()
    ids = await stable_static_group(h)
    h.log.fail_with = LogAppendError(E.not_enough_replicas)
    f = h.join("g", instance="i2")
    await h.settle()
    assert f.result().error is E.coordinator_not_available
    assert f.result().member_id == ""
    assert h.coord.membership.heartbeat("g", 1, ids["i2"], "i2") is E.none


async def test_leave_by_instance_id_and_session_expiry_of_static_member(harness: Harness) -> None:
    h = await harness.load_all()
    ids = await stable_static_group(h)
    top, errs = h.coord.membership.leave_group(
        "g", [LeavingMember("", "i2"), LeavingMember("", "i7"), LeavingMember(ids["i1"], "i2")]
    )
    assert top is E.none
    assert errs == [E.none, E.unknown_member_id, E.unknown_member_id]
    assert h.coord.admin.group_state("g") == "PreparingRebalance"
    group = h.coord.admin.group("g")
    assert group is not None and "i2" not in group.static_members


async def test_static_join_during_completing_rebalance_restarts_it(harness: Harness) -> None:
    h = await harness.load_all()
    f1 = h.join("g", instance="i1")
    f2 = h.join("g", instance="i2", protocols=[("range", subscription("u"))])
    await h.advance(2 * INITIAL_DELAY_MS)
    old_i2 = f2.result().member_id
    s1 = h.sync("g", 1, old_i2, instance="i2")
    assert h.coord.admin.group_state("g") == "CompletingRebalance"
    f2b = h.join("g", instance="i2")
    # The old incarnation's parked SyncGroup is fenced, then a new rebalance starts.
    assert s1.result().error is E.fenced_instance_id
    assert h.coord.admin.group_state("g") == "PreparingRebalance"
    f1b = h.join("g", f1.result().member_id, instance="i1")
    await h.settle()
    assert f1b.result().generation_id == 2 and f2b.result().generation_id == 2

"""JoinGroup / SyncGroup / Heartbeat / LeaveGroup and the rebalance state machine
(broker/group/membership.py)."""

from __future__ import annotations

from kio.schema.errors import ErrorCode as E

from odradek.broker.group.log import LogAppendError
from odradek.broker.group.membership import LeavingMember
from tests.unit.broker.group.group_harness import (
    INITIAL_DELAY_MS,
    REBALANCE_MS,
    SESSION_MS,
    Harness,
    subscription,
)


async def test_three_members_join_and_sync_with_leader_assignment(harness: Harness) -> None:
    h = await harness.load_all()
    ids = [await h.new_member_id("g") for _ in range(3)]
    assert len(set(ids)) == 3 and all(i.startswith("client-") for i in ids)
    assert h.coord.admin.group_state("g") == "Empty"  # pending members do not start a rebalance

    futs = [h.join("g", mid) for mid in ids]
    assert h.coord.admin.group_state("g") == "PreparingRebalance"
    # Everyone joined, but the initial delay of an empty group always runs its course,
    # and is extended once more because members kept arriving during the first one.
    await h.advance(2 * INITIAL_DELAY_MS - 1)
    assert not any(f.done() for f in futs)
    await h.advance(1)
    results = [f.result() for f in futs]
    assert h.coord.admin.group_state("g") == "CompletingRebalance"

    assert {r.error for r in results} == {E.none}
    assert {r.generation_id for r in results} == {1}
    assert {r.leader_id for r in results} == {ids[0]}
    assert {r.protocol_name for r in results} == {"range"}
    assert {r.protocol_type for r in results} == {"consumer"}
    leader, f1, f2 = results
    assert [m.member_id for m in leader.members] == ids
    assert all(m.metadata == subscription("t") for m in leader.members)
    assert f1.members == () and f2.members == ()

    # Followers sync first and wait for the leader's assignment.
    s1 = h.sync("g", 1, ids[1])
    s2 = h.sync("g", 1, ids[2])
    await h.settle()
    assert not s1.done() and not s2.done()
    sl = h.sync("g", 1, ids[0], {ids[0]: b"A0", ids[1]: b"A1"})  # ids[2] left out
    await h.settle()
    assert sl.result().assignment == b"A0"
    assert s1.result().assignment == b"A1"
    assert s2.result().error is E.none and s2.result().assignment == b""
    assert s1.result().protocol_name == "range" and s1.result().protocol_type == "consumer"
    assert h.coord.admin.group_state("g") == "Stable"
    # The completed generation was written to the log.
    assert h.log.appends >= 1

    # A repeated SyncGroup in Stable returns the current assignment.
    again = h.sync("g", 1, ids[1])
    assert again.result().assignment == b"A1"
    for mid in ids:
        assert h.coord.membership.heartbeat("g", 1, mid) is E.none


async def test_protocol_selection_by_vote_among_common_protocols(harness: Harness) -> None:
    h = await harness.load_all()
    prefs = [
        [("roundrobin", b"1"), ("range", b"1"), ("sticky", b"1")],
        [("range", b"2"), ("roundrobin", b"2")],
        [("range", b"3"), ("roundrobin", b"3"), ("only-me", b"3")],
    ]
    futs = [h.join("g", protocols=p, require_known=False) for p in prefs]
    await h.advance(2 * INITIAL_DELAY_MS)
    results = [f.result() for f in futs]
    assert {r.protocol_name for r in results} == {"range"}
    leader = next(r for r in results if r.members)
    assert sorted(m.metadata for m in leader.members) == [b"1", b"2", b"3"]

    # A new member sharing no protocol with the group is refused.
    bad = h.join("g", protocols=[("sticky", b"x")], require_known=False)
    assert bad.result().error is E.inconsistent_group_protocol
    other_type = h.join("g", protocol_type="connect", require_known=False)
    assert other_type.result().error is E.inconsistent_group_protocol


async def test_join_validation_errors(harness: Harness) -> None:
    h = await harness.load_all()
    assert h.join("").result().error is E.invalid_group_id
    assert h.join("g", session=999).result().error is E.invalid_session_timeout
    assert h.join("g", session=60_001).result().error is E.invalid_session_timeout
    # A member id the coordinator never handed out, for a group that does not exist.
    assert h.join("nope", "made-up").result().error is E.unknown_member_id
    assert h.join("g", protocols=[]).result().error is E.inconsistent_group_protocol


async def test_heartbeats_during_rebalance_and_errors(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 2)
    a, b = (r.member_id for r in results)
    assert h.coord.membership.heartbeat("g", 1, a) is E.none
    assert h.coord.membership.heartbeat("g", 0, a) is E.illegal_generation
    assert h.coord.membership.heartbeat("g", 1, "stranger") is E.unknown_member_id
    assert h.coord.membership.heartbeat("unknown-group", 1, a) is E.unknown_member_id
    assert h.coord.membership.heartbeat("", 1, a) is E.invalid_group_id

    # A third member arrives: the group rebalances and the others learn it by heartbeat.
    c = await h.new_member_id("g")
    fc = h.join("g", c)
    assert h.coord.admin.group_state("g") == "PreparingRebalance"
    assert h.coord.membership.heartbeat("g", 1, a) is E.rebalance_in_progress
    assert h.coord.membership.heartbeat("g", 1, b) is E.rebalance_in_progress
    # SyncGroup during the join phase says the same.
    assert h.sync("g", 1, a).result().error is E.rebalance_in_progress
    fa, fb = h.join("g", a), h.join("g", b)
    await h.settle()
    # All three rejoined: no need to wait for the rebalance timeout.
    for f in (fa, fb, fc):
        assert f.result().error is E.none and f.result().generation_id == 2
    assert h.coord.admin.group_state("g") == "CompletingRebalance"
    # In CompletingRebalance heartbeats with the new generation are fine.
    assert h.coord.membership.heartbeat("g", 2, a) is E.none
    assert h.coord.membership.heartbeat("g", 1, a) is E.illegal_generation


async def test_session_timeout_expires_member_and_rebalances(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 3)
    ids = [r.member_id for r in results]
    # Two members keep heartbeating, the third goes silent.
    for _ in range(3):
        await h.advance(SESSION_MS // 2)
        assert h.coord.membership.heartbeat("g", 1, ids[0]) in (E.none, E.rebalance_in_progress)
        h.coord.membership.heartbeat("g", 1, ids[1])
    group = h.coord.admin.group("g")
    assert group is not None
    assert ids[2] not in group.members
    assert h.coord.admin.group_state("g") == "PreparingRebalance"
    assert h.coord.membership.heartbeat("g", 1, ids[2]) is E.unknown_member_id
    f0 = h.join("g", ids[0])
    assert not f0.done()  # ids[1] has not rejoined yet
    f1 = h.join("g", ids[1])
    # Both remaining members rejoined: the rebalance completes without waiting.
    assert f0.result().generation_id == 2 and f1.result().generation_id == 2
    assert len(f0.result().members) == 2


async def test_rebalance_timeout_removes_members_that_did_not_rejoin(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 3, rebalance=5_000)
    a, b, c = (r.member_id for r in results)
    fa = h.join("g", a, rebalance=5_000)  # the leader asks for a rebalance
    assert h.coord.admin.group_state("g") == "PreparingRebalance"
    fb = h.join("g", b, rebalance=5_000)
    # c keeps heartbeating but never rejoins.
    await h.advance(2_500)
    assert h.coord.membership.heartbeat("g", 1, c) is E.rebalance_in_progress
    await h.advance(2_499)
    assert not fa.done()
    await h.advance(1)
    assert fa.result().generation_id == 2
    assert sorted(m.member_id for m in fa.result().members) == sorted([a, b])
    assert fb.result().error is E.none
    assert h.coord.membership.heartbeat("g", 2, c) is E.unknown_member_id


async def test_member_awaiting_join_is_not_expired_by_session_timeout(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 2, session=2_000, rebalance=20_000)
    a, b = (r.member_id for r in results)
    fa = h.join("g", a)  # parked in JoinGroup, cannot heartbeat
    await h.advance(10_000)
    group = h.coord.admin.group("g")
    assert group is not None and a in group.members and b not in group.members
    assert fa.result().generation_id == 2  # b timed out, a alone forms generation 2


async def test_initial_delay_extends_while_members_arrive(harness: Harness) -> None:
    h = await harness.load_all()
    f1 = h.join("g", require_known=False, rebalance=10_000)
    await h.advance(2_000)
    f2 = h.join("g", require_known=False, rebalance=10_000)
    await h.advance(1_000)  # first delay over; a member arrived meanwhile -> extend
    assert not f1.done()
    await h.advance(3_000)
    assert f1.result().generation_id == 1 and f2.result().generation_id == 1
    assert len([r for r in (f1.result(), f2.result()) if r.members]) == 1


async def test_initial_delay_capped_by_rebalance_timeout(harness: Harness) -> None:
    h = await harness.load_all()
    futs = [h.join("g", require_known=False, rebalance=5_000)]
    for _ in range(5):
        await h.advance(2_000)
        futs.append(h.join("g", require_known=False, rebalance=5_000))
    assert futs[0].done()  # at most ~rebalance timeout + one delay, not forever


async def test_zero_initial_delay(harness: Harness) -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    await h.load_all()
    f = h.join("g", require_known=False)
    assert not f.done()
    await h.advance(0)
    assert f.result().generation_id == 1


async def test_pending_member_expires_after_session_timeout(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 1)
    a = results[0].member_id
    pending = await h.new_member_id("g")
    fa = h.join("g", a)  # rebalance; the pending member holds it until it joins or expires
    await h.settle()
    assert not fa.done()
    await h.advance(SESSION_MS)
    assert fa.result().generation_id == 2 and len(fa.result().members) == 1
    assert h.join("g", pending).result().error is E.unknown_member_id


async def test_leave_group(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 3)
    a, b, c = (r.member_id for r in results)
    top, errs = h.coord.membership.leave_group(
        "g", [LeavingMember(b), LeavingMember("ghost"), LeavingMember(c, "not-static")]
    )
    assert top is E.none
    assert errs == [E.none, E.unknown_member_id, E.unknown_member_id]
    assert h.coord.admin.group_state("g") == "PreparingRebalance"
    fa = h.join("g", a)
    fc = h.join("g", c)
    assert fa.result().generation_id == 2 and len(fa.result().members) == 2  # a and c
    assert h.coord.membership.leave_group("nope", [LeavingMember(a)]) == (E.none, [E.unknown_member_id])
    assert h.coord.membership.leave_group("", [LeavingMember(a)])[0] is E.invalid_group_id

    # Everyone leaving empties the group and bumps the generation.
    gen = fc.result().generation_id
    h.coord.membership.leave_group("g", [LeavingMember(a), LeavingMember(c)])
    await h.settle()
    assert h.coord.admin.group_state("g") == "Empty"
    group = h.coord.admin.group("g")
    assert group is not None and group.generation == gen + 1


async def test_leave_of_pending_member_lets_rebalance_complete(harness: Harness) -> None:
    h = await harness.load_all()
    a = (await h.stable_group("g", 1))[0].member_id
    pending = await h.new_member_id("g")
    fa = h.join("g", a)
    await h.settle()
    assert not fa.done()
    assert h.coord.membership.leave_group("g", [LeavingMember(pending)]) == (E.none, [E.none])
    await h.settle()
    assert fa.result().generation_id == 2


async def test_pending_sync_expiry_removes_members_that_never_sync(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.form_group("g", 2, rebalance=4_000)
    leader = next(r for r in results if r.members)
    other = next(r for r in results if not r.members)
    s = h.sync("g", 1, leader.member_id, {})
    await h.settle()
    assert s.result().error is E.none
    # The follower never syncs (nor heartbeats): out after the rebalance timeout.
    h.coord.membership.heartbeat("g", 1, leader.member_id)
    await h.advance(4_000)
    group = h.coord.admin.group("g")
    assert group is not None and other.member_id not in group.members
    assert h.coord.admin.group_state("g") == "PreparingRebalance"


async def test_sync_validation(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.form_group("g", 2)
    leader = next(r for r in results if r.members)
    assert h.sync("g", 7, leader.member_id).result().error is E.illegal_generation
    assert h.sync("g", 1, "x").result().error is E.unknown_member_id
    assert h.sync("nope", 1, "x").result().error is E.unknown_member_id
    wrong_type = h.sync("g", 1, leader.member_id, protocol_type="connect")
    assert wrong_type.result().error is E.inconsistent_group_protocol
    wrong_name = h.sync("g", 1, leader.member_id, protocol_name="roundrobin")
    assert wrong_name.result().error is E.inconsistent_group_protocol
    ok = h.sync("g", 1, leader.member_id, protocol_type="consumer", protocol_name="range")
    await h.settle()
    assert ok.result().error is E.none


async def test_failed_assignment_write_is_reported_and_group_rebalances(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.form_group("g", 2)
    leader = next(r for r in results if r.members)
    follower = next(r for r in results if not r.members)
    sf = h.sync("g", 1, follower.member_id)
    h.log.fail_with = LogAppendError(E.not_leader_or_follower)
    sl = h.sync("g", 1, leader.member_id, {leader.member_id: b"x"})
    await h.settle()
    assert sl.result().error is E.not_coordinator
    assert sf.result().error is E.not_coordinator
    assert h.coord.admin.group_state("g") == "PreparingRebalance"

    h.log.fail_with = TimeoutError()
    fl, ff = h.join("g", leader.member_id), h.join("g", follower.member_id)
    await h.settle()
    sf = h.sync("g", 2, follower.member_id)
    sl = h.sync("g", 2, fl.result().leader_id, {})
    await h.settle()
    # A timed-out write means "try again": members just rejoin.
    assert sl.result().error is E.rebalance_in_progress
    assert ff.result().generation_id == 2


async def test_leader_rejoin_in_stable_triggers_rebalance_follower_does_not(
    harness: Harness,
) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 2)
    leader = next(r for r in results if r.members).member_id
    follower = next(r for r in results if not r.members).member_id
    same = h.join("g", follower)
    assert same.result().generation_id == 1 and same.result().members == ()
    assert h.coord.admin.group_state("g") == "Stable"
    changed = h.join("g", follower, protocols=[("range", subscription("t", "u"))])
    assert not changed.done()
    assert h.coord.admin.group_state("g") == "PreparingRebalance"
    fl = h.join("g", leader)
    await h.settle()
    assert fl.result().generation_id == 2 and changed.result().generation_id == 2


async def test_group_max_size(harness: Harness) -> None:
    h = Harness(max_group_size=2)
    await h.load_all()
    await h.stable_group("g", 2)
    extra = h.join("g", require_known=False)
    assert extra.result().error is E.group_max_size_reached
    assert extra.result().member_id == ""
    assert h.coord.admin.group_state("g") == "Stable"


async def test_duplicate_join_supersedes_the_parked_one(harness: Harness) -> None:
    h = await harness.load_all()
    a = await h.new_member_id("g")
    first = h.join("g", a)
    second = h.join("g", a)
    assert first.result().error is E.rebalance_in_progress
    await h.advance(INITIAL_DELAY_MS)
    assert second.result().error is E.none


async def test_new_member_that_never_completes_join_times_out(harness: Harness) -> None:
    h = Harness(new_member_join_timeout_ms=5_000)
    await h.load_all()
    a = (await h.stable_group("g", 1))[0].member_id
    fb = h.join("g", require_known=False, rebalance=REBALANCE_MS)  # new member, rebalance
    await h.advance(4_000)
    assert h.coord.membership.heartbeat("g", 1, a) is E.rebalance_in_progress
    await h.advance(1_000)
    # The new member's deadline passed while it waited: it is dropped with
    # UNKNOWN_MEMBER_ID (it will retry), and the rest of the group carries on.
    assert fb.result().error is E.unknown_member_id

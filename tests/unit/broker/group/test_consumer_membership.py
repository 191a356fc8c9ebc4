"""ConsumerGroupHeartbeat (KIP-848) through the coordinator on an in-memory log with a
manual clock: joining, incremental rebalances with revocation before reassignment,
Kafka's errors, leaving, session and rebalance timeouts, failover replay, and how the
classic protocol, offsets and the admin APIs see consumer groups."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from odradek.broker.group.clock import ManualClock
from odradek.broker.group.consumer_group import TopicMetadata
from odradek.broker.group.consumer_membership import Heartbeat, HeartbeatResult, Partitions
from odradek.broker.group.coordinator import GroupCoordinator
from odradek.broker.group.log import InMemoryGroupLog
from odradek.broker.group.offsets import OffsetCommitEntry

T = uuid.UUID(int=7)
TOPICS = {"t": TopicMetadata(T, "t", 6)}
SESSION = 45_000
GROUP = "cg"


def lookup(names: Iterable[str]) -> Mapping[str, TopicMetadata]:
    return {n: TOPICS[n] for n in names if n in TOPICS}


def all_names() -> Iterable[str]:
    return TOPICS.keys()


class Cluster:
    def __init__(self) -> None:
        self.log = InMemoryGroupLog()
        self.clock = ManualClock()
        self.coord = self.new_coordinator()

    def new_coordinator(self) -> GroupCoordinator:
        return GroupCoordinator(self.log, partition_exists=lambda t, p: t == "t" and p < 6,
                                topic_metadata=lookup, topic_names=all_names,
                                clock=self.clock)

    async def start(self) -> None:
        await self.coord.load_partition(self.coord.partition_for(GROUP))

    async def beat(self, member: str, epoch: int, owned: Iterable[int] | None = (),
                   *, topics: tuple[str, ...] | None = None, instance: str | None = None,
                   assignor: str | None = None, version: int = 1) -> HeartbeatResult:
        full = epoch == 0
        return await self.coord.consumer.heartbeat(Heartbeat(
            GROUP, member, epoch, instance_id=instance,
            rebalance_timeout_ms=30_000 if full else -1,
            subscribed_topic_names=topics if topics is not None else (("t",) if full else None),
            server_assignor=assignor,
            owned=None if owned is None else {T: frozenset(owned)},
            client_id="c", client_host="/127.0.0.1"), version)


def parts(r: HeartbeatResult) -> set[int]:
    assert r.assignment is not None
    return set(r.assignment.get(T, frozenset()))


async def test_join_rebalance_incrementally_and_leave() -> None:
    c = Cluster()
    await c.start()
    a = await c.beat("a", 0)
    assert (a.error, a.member_epoch, parts(a)) == (ErrorCode.none, 1, set(range(6)))
    assert a.heartbeat_interval_ms == 5000
    b = await c.beat("b", 0)
    # b's share is still a's: b waits (UNRELEASED) at the new epoch with nothing yet.
    assert b.member_epoch == 2 and parts(b) == set()
    a2 = await c.beat("a", 1, range(6))
    # a keeps three at its old epoch and is told to give the other three up.
    assert a2.member_epoch == 1 and len(parts(a2)) == 3
    kept = parts(a2)
    a3 = await c.beat("a", 1, kept)
    assert a3.member_epoch == 2 and a3.assignment is None or parts(a3) == kept
    b2 = await c.beat("b", 2, [])
    assert parts(b2) == set(range(6)) - kept
    view = c.coord.admin.describe_consumer_group(GROUP)[2]
    assert view is not None and view.state == "Stable" and view.group_epoch == 2
    # b leaves: a gets b's partitions without giving any up.
    left = await c.beat("b", -1, None)
    assert (left.error, left.member_epoch) == (ErrorCode.none, -1)
    a4 = await c.beat("a", 2, kept)
    assert a4.member_epoch == 3 and parts(a4) == set(range(6))


async def test_errors_are_kafkas() -> None:
    c = Cluster()
    await c.start()
    assert (await c.beat("", 0)).error is ErrorCode.invalid_request  # v1: id required
    assert (await c.beat("x", 3)).error is ErrorCode.group_id_not_found
    assert (await c.beat("a", 0, assignor="sticky")).error is ErrorCode.unsupported_assignor
    await c.beat("a", 0)
    assert (await c.beat("zz", 1, [])).error is ErrorCode.unknown_member_id
    assert (await c.beat("a", 5, [])).error is ErrorCode.fenced_member_epoch
    r = await c.coord.consumer.heartbeat(Heartbeat(GROUP, "a", 0, rebalance_timeout_ms=-1,
                                                   subscribed_topic_names=("t",), owned={}), 1)
    assert r.error is ErrorCode.invalid_request
    assert r.message == "RebalanceTimeoutMs must be provided in first request."
    # A classic group with members is not a consumer group.
    await c.coord.load_partition(c.coord.partition_for("classic"))
    fut = c.coord.membership.join_group("classic", "", session_timeout_ms=10_000,
                                        rebalance_timeout_ms=10_000, protocol_type="consumer",
                                        protocols=[("range", b"")],
                                        require_known_member_id=False)
    c.clock.advance(3_000)
    assert (await fut).error is ErrorCode.none
    r = await c.coord.consumer.heartbeat(Heartbeat("classic", "m", 0, rebalance_timeout_ms=1,
                                                   subscribed_topic_names=("t",), owned={}), 1)
    assert r.error is ErrorCode.group_id_not_found
    # ... and a classic member cannot join a consumer group with members.
    join = c.coord.membership.join_group(GROUP, "", session_timeout_ms=10_000,
                                         rebalance_timeout_ms=10_000, protocol_type="consumer",
                                         protocols=[("range", b"")])
    assert (await join).error is ErrorCode.inconsistent_group_protocol


async def test_previous_epoch_is_accepted_if_it_owns_no_more() -> None:
    c = Cluster()
    await c.start()
    await c.beat("a", 0)
    await c.beat("b", 0)
    await c.beat("a", 1, range(6))
    a = await c.beat("a", 1, [0, 1, 2])  # revoked: now at epoch 2
    assert a.member_epoch == 2
    # The answer was lost; a heartbeats at epoch 1 owning what it has: fine.
    assert (await c.beat("a", 1, [0, 1, 2])).error is ErrorCode.none
    assert (await c.beat("a", 1, [0, 1, 2, 3])).error is ErrorCode.fenced_member_epoch


async def test_session_timeout_removes_the_member_and_others_take_over() -> None:
    c = Cluster()
    await c.start()
    await c.beat("a", 0)
    b = await c.beat("b", 0)
    a = await c.beat("a", 1, range(6))
    await c.beat("a", 1, parts(a))
    b = await c.beat("b", 2, [])
    c.clock.advance(SESSION - 1)
    await c.beat("a", 2, parts(a))  # a stays alive; b goes silent
    c.clock.advance(2)
    await c.coord.settle()
    view = c.coord.admin.describe_consumer_group(GROUP)[2]
    assert view is not None and [m.member_id for m, _ in view.members] == ["a"]
    a2 = await c.beat("a", 2, parts(a))
    assert parts(a2) == set(range(6)) and a2.member_epoch == 4 - 1
    assert (await c.beat("b", 2, parts(b))).error is ErrorCode.unknown_member_id


async def test_rebalance_timeout_fences_a_member_that_does_not_revoke() -> None:
    c = Cluster()
    await c.start()
    await c.beat("a", 0)
    await c.beat("b", 0)
    await c.beat("a", 1, range(6))  # told to revoke three
    for _ in range(3):
        c.clock.advance(10_000)
        await c.beat("a", 1, range(6))  # heartbeats, but never revokes
    c.clock.advance(1)
    await c.coord.settle()
    assert (await c.beat("a", 1, range(6))).error is ErrorCode.unknown_member_id
    b = await c.beat("b", 2, [])
    assert parts(b) == set(range(6))


async def test_static_member_leaves_temporarily_and_comes_back_with_its_partitions() -> None:
    c = Cluster()
    await c.start()
    a = await c.beat("a", 0, instance="i1")
    assert parts(a) == set(range(6))
    epoch = c.coord.admin.describe_consumer_group(GROUP)[2].group_epoch  # type: ignore[union-attr]
    out = await c.beat("a", -2, None, instance="i1")
    assert out.member_epoch == -2
    # The instance comes back under a new member id with its partitions, no rebalance.
    again = await c.beat("a2", 0, instance="i1")
    assert again.error is ErrorCode.none and parts(again) == set(range(6))
    view = c.coord.admin.describe_consumer_group(GROUP)[2]
    assert view is not None and view.group_epoch == epoch
    assert [m.member_id for m, _ in view.members] == ["a2"]
    assert (await c.beat("a2", again.member_epoch, range(6), instance="i1")).error \
        is ErrorCode.none
    back = await c.beat("a3", 0, instance="i1")
    assert back.error is ErrorCode.unreleased_instance_id


async def test_a_new_coordinator_rebuilds_the_group_from_the_log() -> None:
    c = Cluster()
    await c.start()
    await c.beat("a", 0)
    await c.beat("b", 0)
    a = await c.beat("a", 1, range(6))
    await c.coord.settle()
    before = c.coord.admin.describe_consumer_group(GROUP)[2]
    c.coord.unload_partition(c.coord.partition_for(GROUP))
    c.coord = c.new_coordinator()
    await c.start()
    after = c.coord.admin.describe_consumer_group(GROUP)[2]
    assert before is not None and after is not None
    assert (after.group_epoch, after.assignment_epoch) == (before.group_epoch,
                                                           before.assignment_epoch)
    assert [(m, t) for m, t in after.members] == [(m, t) for m, t in before.members]
    # a carries on where it was: revoking, then at the new epoch.
    again = await c.beat("a", 1, parts(a))
    assert again.error is ErrorCode.none and again.member_epoch == 2


async def test_offsets_are_checked_against_member_epochs() -> None:
    c = Cluster()
    await c.start()
    await c.beat("a", 0)
    commit = {("t", 0): OffsetCommitEntry(5)}
    ok = await c.coord.offsets.commit_offsets(GROUP, commit, generation_id=1, member_id="a")
    assert ok == {("t", 0): ErrorCode.none}
    stale = await c.coord.offsets.commit_offsets(GROUP, commit, generation_id=0, member_id="a")
    assert stale == {("t", 0): ErrorCode.stale_member_epoch}
    other = await c.coord.offsets.commit_offsets(GROUP, commit, generation_id=1, member_id="x")
    assert other == {("t", 0): ErrorCode.unknown_member_id}
    assert c.coord.offsets.fetch_offsets(GROUP, [("t", 0)], "a", 0)[0] \
        is ErrorCode.stale_member_epoch
    err, got = c.coord.offsets.fetch_offsets(GROUP, [("t", 0)], "a", 1)
    assert err is ErrorCode.none and got[0][1] is not None and got[0][1].offset == 5
    # OffsetDelete keeps the offsets of subscribed topics while the group has members.
    assert await c.coord.offsets.delete_offsets(GROUP, [("t", 0)]) == (
        ErrorCode.none, {("t", 0): ErrorCode.group_subscribed_to_topic})
    await c.beat("a", -1, None)
    assert await c.coord.offsets.delete_offsets(GROUP, [("t", 0)]) == (
        ErrorCode.none, {("t", 0): ErrorCode.none})


async def test_list_describe_delete_and_conversion() -> None:
    c = Cluster()
    await c.start()
    await c.beat("a", 0)
    [g] = c.coord.admin.list_groups()
    assert (g.group_type, g.protocol_type, g.state) == ("consumer", "consumer", "Stable")
    assert c.coord.admin.list_groups(types=["classic"]) == []
    assert c.coord.admin.describe_group(GROUP) == (ErrorCode.none, None)  # not classic
    assert (await c.coord.admin.delete_groups([GROUP]))[GROUP] is ErrorCode.non_empty_group
    await c.beat("a", -1, None)
    assert c.coord.admin.list_groups()[0].state == "Empty"
    # An empty consumer group becomes classic at a JoinGroup.
    join = c.coord.membership.join_group(GROUP, "", session_timeout_ms=10_000,
                                         rebalance_timeout_ms=10_000, protocol_type="consumer",
                                         protocols=[("range", b"")],
                                         require_known_member_id=False)
    c.clock.advance(3_000)
    assert (await join).error is ErrorCode.none
    assert [g.group_type for g in c.coord.admin.list_groups()] == ["classic"]
    await c.coord.settle()
    # A new coordinator does not bring the consumer group back (the classic group has
    # not completed a rebalance, so it has no records yet either).
    c.coord.unload_partition(c.coord.partition_for(GROUP))
    c.coord = c.new_coordinator()
    await c.start()
    assert c.coord.admin.list_groups() == []


async def test_deleting_an_empty_consumer_group_survives_failover() -> None:
    c = Cluster()
    await c.start()
    await c.beat("a", 0)
    await c.coord.offsets.commit_offsets(GROUP, {("t", 1): OffsetCommitEntry(3)},
                                         generation_id=1, member_id="a")
    await c.beat("a", -1, None)
    assert (await c.coord.admin.delete_groups([GROUP]))[GROUP] is ErrorCode.none
    assert c.coord.admin.list_groups() == []
    c.coord.unload_partition(c.coord.partition_for(GROUP))
    c.coord = c.new_coordinator()
    await c.start()
    assert c.coord.admin.list_groups() == []
    assert c.coord.offsets.fetch_offsets(GROUP, [("t", 1)])[1] == [(("t", 1), None)]


async def test_regex_subscriptions_follow_the_topics() -> None:
    c = Cluster()
    await c.start()
    ev_a, ev_b, ev_c = uuid.UUID(int=21), uuid.UUID(int=22), uuid.UUID(int=23)
    TOPICS.update({"ev-a": TopicMetadata(ev_a, "ev-a", 2),
                   "ev-b": TopicMetadata(ev_b, "ev-b", 1)})
    try:
        def beat(epoch: int, regex: str | None, owned: Partitions | None = None,
                 describable: Callable[[set[str]], set[str]] | None = None
                 ) -> Awaitable[HeartbeatResult]:
            return c.coord.consumer.heartbeat(Heartbeat(
                GROUP, "r", epoch, rebalance_timeout_ms=30_000 if epoch == 0 else -1,
                subscribed_topic_regex=regex, owned=owned if epoch else {},
                describable=describable), 1)

        bad = await beat(0, "ev-(")
        assert bad.error is ErrorCode.invalid_regular_expression
        # Whole names match: "ev-.*" takes ev-a and ev-b, not "t".
        r = await beat(0, "ev-.*")
        assert r.assignment == {ev_a: frozenset({0, 1}), ev_b: frozenset({0})}
        owned = dict(r.assignment)
        # A topic created later that the regex matches joins the assignment.
        TOPICS["ev-c"] = TopicMetadata(ev_c, "ev-c", 1)
        r2 = await beat(r.member_epoch, None, owned)
        assert r2.member_epoch == r.member_epoch + 1
        assert r2.assignment is not None and r2.assignment[ev_c] == frozenset({0})
        # Only topics the member may describe are matched.
        r3 = await beat(r2.member_epoch, None, dict(r2.assignment),
                        describable=lambda names: names - {"ev-b"})
        assert r3.assignment is not None and ev_b not in r3.assignment
        view = c.coord.admin.describe_consumer_group(GROUP)[2]
        assert view is not None and view.members[0][0].subscribed_topic_regex == "ev-.*"
    finally:
        for name in ("ev-a", "ev-b", "ev-c"):
            TOPICS.pop(name, None)


async def test_an_empty_consumer_group_goes_once_its_offsets_expire() -> None:
    c = Cluster()
    await c.start()
    await c.beat("a", 0)
    await c.coord.offsets.commit_offsets(GROUP, {("t", 1): OffsetCommitEntry(3)},
                                         generation_id=1, member_id="a")
    assert await c.coord.offsets.expire_offsets() == 0  # a member: offsets stay
    await c.beat("a", -1, None)
    c.clock.advance(7 * 24 * 3600 * 1000)
    assert await c.coord.offsets.expire_offsets() == 1
    assert c.coord.admin.list_groups() == []
    await c.coord.settle()
    c.coord.unload_partition(c.coord.partition_for(GROUP))
    c.coord = c.new_coordinator()
    await c.start()
    assert c.coord.admin.list_groups() == []


async def test_an_empty_classic_group_becomes_a_consumer_group_keeping_its_offsets() -> None:
    from odradek.broker.group import records

    c = Cluster()
    p = c.coord.partition_for(GROUP)
    c.log.put(p, records.offset_key(GROUP, "t", 2), records.encode_offset_value(
        records.OffsetValue(40, -1, "", 1)))
    c.log.put(p, records.group_key(GROUP), records.encode_group_value(
        records.GroupValue("consumer", 3, None, None, 1, ())))
    await c.start()
    assert [(g.group_type, g.state) for g in c.coord.admin.list_groups()] == [
        ("classic", "Empty")]
    r = await c.beat("a", 0)
    assert r.error is ErrorCode.none
    assert [(g.group_type, g.state) for g in c.coord.admin.list_groups()] == [
        ("consumer", "Stable")]
    await c.coord.settle()
    assert (records.group_key(GROUP), None) in c.log.records(p)  # the classic group went
    c.coord.unload_partition(p)
    c.coord = c.new_coordinator()
    await c.start()
    assert [g.group_type for g in c.coord.admin.list_groups()] == ["consumer"]
    err, got = c.coord.offsets.fetch_offsets(GROUP, [("t", 2)], "a", 1)
    assert err is ErrorCode.none and got[0][1] is not None and got[0][1].offset == 40


async def test_group_consumer_max_size() -> None:
    c = Cluster()
    c.coord = GroupCoordinator(c.log, partition_exists=lambda t, p: True,
                               topic_metadata=lookup, topic_names=all_names, clock=c.clock,
                               consumer_max_size=2)
    await c.start()
    assert (await c.beat("a", 0)).error is ErrorCode.none
    assert (await c.beat("b", 0)).error is ErrorCode.none
    full = await c.beat("c", 0)
    assert full.error is ErrorCode.group_max_size_reached
    assert (await c.beat("a", 0)).error is ErrorCode.none  # a member rejoining is fine


async def test_transactional_commits_check_the_member_epoch() -> None:
    c = Cluster()
    await c.start()
    await c.beat("a", 0)
    commit = {("t", 0): OffsetCommitEntry(9)}

    async def txn(member: str, epoch: int) -> ErrorCode:
        got = await c.coord.offsets.commit_transactional_offsets(
            GROUP, commit, producer_id=5, producer_epoch=0, generation_id=epoch,
            member_id=member)
        return got[("t", 0)]

    assert await txn("a", 0) is ErrorCode.illegal_generation
    assert await txn("x", 1) is ErrorCode.unknown_member_id
    assert await txn("", -1) is ErrorCode.none  # a producer not tied to the group
    assert await txn("a", 1) is ErrorCode.none
    c.coord.on_transaction_completed(c.coord.partition_for(GROUP), 5, True)
    assert c.coord.offsets.fetch_offsets(GROUP, [("t", 0)])[1][0][1].offset == 9  # type: ignore[union-attr]


def _state(c: Cluster) -> object:
    view = c.coord.admin.describe_consumer_group(GROUP)[2]
    if view is None:
        return None
    return (view.state, view.group_epoch, view.assignment_epoch,
            sorted((m.member_id, m.member_epoch, m.previous_member_epoch, m.state,
                    dict(m.assigned), dict(m.pending_revocation), m.subscribed_topic_names,
                    tuple(sorted(t.items()))) for m, t in view.members))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["join", "join", "beat", "beat", "leave", "reload"]),
                          st.integers(0, 3)), max_size=30))
def test_model_clients_never_share_a_partition_and_a_reload_changes_nothing(
        ops: list[tuple[str, int]]) -> None:
    """Clients that do what the answers say (take the assignment, revoke the rest, rejoin
    when fenced) never own one partition at once; a new coordinator replaying the log
    after any step has the same group; and heartbeats alone bring the group to Stable
    with every partition owned."""

    async def run() -> None:
        c = Cluster()
        await c.start()
        owned: dict[str, set[int]] = {}
        epochs: dict[str, int] = {}

        async def beat(m: str) -> None:
            epoch = epochs.get(m, 0)
            r = await c.beat(m, epoch, owned[m] if epoch else ())
            if r.error is not ErrorCode.none:
                owned[m], epochs[m] = set(), 0  # fenced or unknown: drop all, rejoin
                return
            epochs[m] = r.member_epoch
            if r.assignment is not None:
                owned[m] = set(r.assignment.get(T, frozenset()))

        def check() -> None:
            seen: set[int] = set()
            for ps in owned.values():
                assert not seen & ps, owned
                seen |= ps

        for op, i in ops:
            m = f"m{i}"
            if op == "join" and m not in owned:
                owned[m] = set()
                await beat(m)
            elif op == "beat" and m in owned:
                await beat(m)
            elif op == "leave" and m in owned:
                r = await c.beat(m, -1, None)
                assert r.error is ErrorCode.none
                del owned[m]
                epochs.pop(m, None)
            elif op == "reload":
                await c.coord.settle()
                before = _state(c)
                c.coord.unload_partition(c.coord.partition_for(GROUP))
                c.coord = c.new_coordinator()
                await c.start()
                assert _state(c) == before
            check()
        for _ in range(4 * len(owned) + 2):
            for m in sorted(owned):
                await beat(m)
                check()
        if owned:
            assert _state(c) is not None
            view = c.coord.admin.describe_consumer_group(GROUP)[2]
            assert view is not None and view.state == "Stable"
            assert sorted(p for ps in owned.values() for p in ps) == list(range(6))

    asyncio.run(run())

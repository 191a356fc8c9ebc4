"""The consumer group protocol's pure rules (KIP-848): assignors, reconciliation, the
group's epochs and states; and a model check that a group driven through joins, leaves
and heartbeats never gives one partition to two members and always converges."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.broker.group.assignors import AssignorMember, RangeAssignor, UniformAssignor
from odradek.broker.group.consumer_group import (
    ConsumerGroup,
    ConsumerGroupState,
    ConsumerMember,
    MemberState,
    TopicMetadata,
    compute_target,
)
from odradek.broker.group.reconciliation import reconcile

T1 = uuid.UUID(int=1)
T2 = uuid.UUID(int=2)


def fs(*ps: int) -> frozenset[int]:
    return frozenset(ps)


def members(*ids: str, topics: frozenset[uuid.UUID] = frozenset({T1})) -> dict[str,
                                                                               AssignorMember]:
    return {m: AssignorMember(m, topics) for m in ids}


# --- assignors -------------------------------------------------------------------------


def test_range_gives_contiguous_ranges_extra_to_first_members() -> None:
    out = RangeAssignor().assign(members("a", "b", "c"), {T1: 7})
    assert out == {"a": {T1: fs(0, 1, 2)}, "b": {T1: fs(3, 4)}, "c": {T1: fs(5, 6)}}


def test_range_co_partitions_topics() -> None:
    out = RangeAssignor().assign(members("a", "b", topics=frozenset({T1, T2})), {T1: 4, T2: 4})
    assert out == {"a": {T1: fs(0, 1), T2: fs(0, 1)}, "b": {T1: fs(2, 3), T2: fs(2, 3)}}


def test_uniform_balances_and_one_member_gets_everything() -> None:
    assert UniformAssignor().assign(members("a"), {T1: 3}) == {"a": {T1: fs(0, 1, 2)}}
    out = UniformAssignor().assign(members("a", "b", "c"), {T1: 12})
    assert sorted(len(a[T1]) for a in out.values()) == [4, 4, 4]
    assert set().union(*(a[T1] for a in out.values())) == set(range(12))


def test_uniform_is_sticky_when_a_member_joins_or_leaves() -> None:
    a = UniformAssignor()
    three = a.assign(members("a", "b", "c"), {T1: 12})
    # c leaves: a and b keep all they had and split c's partitions.
    two = a.assign({m: AssignorMember(m, frozenset({T1}), three[m]) for m in ("a", "b")},
                   {T1: 12})
    for m in ("a", "b"):
        assert three[m][T1] <= two[m][T1]
        assert len(two[m][T1]) == 6
    # d joins: each keeps 3 of its 4 (its share), d takes one from each... of a 4-way split.
    specs = {m: AssignorMember(m, frozenset({T1}), three[m]) for m in ("a", "b", "c")}
    specs["d"] = AssignorMember("d", frozenset({T1}))
    four = a.assign(specs, {T1: 12})
    for m in ("a", "b", "c"):
        assert four[m][T1] <= three[m][T1] and len(four[m][T1]) == 3
    assert len(four["d"][T1]) == 3


def test_uniform_gives_kafkas_layout_when_subscriptions_are_the_same() -> None:
    """Results of Kafka 4.1.1's UniformAssignor on the same cases (compared on many more
    in tests/compat/test_kafka_assignors.py)."""
    def run(current: dict[str, set[int]], n: int) -> dict[str, set[int]]:
        specs = {m: AssignorMember(m, frozenset({T1}), {T1: frozenset(ps)} if ps else {})
                 for m, ps in current.items()}
        return {m: set(a.get(T1, ())) for m, a in UniformAssignor().assign(specs,
                                                                         {T1: n}).items()}

    # Fresh: contiguous ranges, the extra partitions to the last members.
    assert run({"a": set(), "b": set(), "c": set()}, 7) == {
        "a": {0, 1}, "b": {2, 3}, "c": {4, 5, 6}}
    # d joins: each keeps its lowest three, d gets what they give up.
    assert run({"a": {0, 1, 2, 3}, "b": {4, 5, 6, 7}, "c": {8, 9, 10, 11}, "d": set()},
               12) == {"a": {0, 1, 2}, "b": {4, 5, 6}, "c": {8, 9, 10}, "d": {3, 7, 11}}
    # The extra partitions stay with members that had more, then go to the last ones.
    assert run({"a": {0, 1, 2, 3, 4}, "b": set(), "c": set()}, 5) == {
        "a": {0, 1}, "b": {2}, "c": {3, 4}}
    # c leaves: its partitions fill a, then b.
    assert run({"a": {0, 1, 2, 3}, "b": {4, 5, 6, 7}}, 12) == {
        "a": {0, 1, 2, 3, 8, 9}, "b": {4, 5, 6, 7, 10, 11}}


def test_uniform_respects_heterogeneous_subscriptions() -> None:
    specs = {"a": AssignorMember("a", frozenset({T1})),
             "b": AssignorMember("b", frozenset({T1, T2}))}
    out = UniformAssignor().assign(specs, {T1: 2, T2: 4})
    assert T2 not in out["a"]
    assert len(out["a"].get(T1, ())) + len(out["b"].get(T1, ())) == 2
    assert sum(len(p) for p in out["b"].values()) == 4  # b: all of T2, a: both of T1
    assert out["a"][T1] == fs(0, 1)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 20), st.integers(0, 2**16))
def test_uniform_assigns_every_partition_once_and_balanced(n: int, parts: int,
                                                          seed: int) -> None:
    ids = [f"m{(seed + i) % 97}-{i}" for i in range(n)]
    out = UniformAssignor().assign(members(*ids), {T1: parts})
    got = [p for a in out.values() for p in a.get(T1, ())]
    assert sorted(got) == list(range(parts))
    sizes = [len(a.get(T1, ())) for a in out.values()]
    assert max(sizes) - min(sizes) <= 1


# --- reconciliation --------------------------------------------------------------------


def test_member_revokes_before_moving_to_the_target_epoch() -> None:
    m = ConsumerMember("a", member_epoch=1, assigned={T1: fs(0, 1, 2, 3)})
    step = reconcile(m, 2, {T1: fs(0, 1)}, lambda t, p: -1, None)
    assert step.state is MemberState.UNREVOKED_PARTITIONS
    assert step.member_epoch == 1
    assert step.assigned == {T1: fs(0, 1)} and step.pending_revocation == {T1: fs(2, 3)}
    # Still owning a revoked partition: nothing moves.
    assert reconcile(step, 2, {T1: fs(0, 1)}, lambda t, p: -1, {T1: fs(0, 1, 2)}) == step
    done = reconcile(step, 2, {T1: fs(0, 1)}, lambda t, p: -1, {T1: fs(0, 1)})
    assert done.state is MemberState.STABLE and done.member_epoch == 2
    assert done.previous_member_epoch == 1 and done.pending_revocation == {}


def test_partition_waits_until_its_previous_owner_released_it() -> None:
    m = ConsumerMember("b", member_epoch=1, assigned={T1: fs(2)})
    held = {(T1, 3): 1}
    step = reconcile(m, 2, {T1: fs(2, 3)}, lambda t, p: held.get((t, p), -1), {T1: fs(2)})
    assert step.state is MemberState.UNRELEASED_PARTITIONS
    assert step.member_epoch == 2 and step.assigned == {T1: fs(2)}
    held.clear()
    done = reconcile(step, 2, {T1: fs(2, 3)}, lambda t, p: -1, {T1: fs(2)})
    assert done.state is MemberState.STABLE and done.assigned == {T1: fs(2, 3)}


def test_new_member_gets_free_partitions_at_once() -> None:
    m = ConsumerMember("c")
    done = reconcile(m, 3, {T1: fs(0, 1)}, lambda t, p: -1, {})
    assert done.member_epoch == 3 and done.assigned == {T1: fs(0, 1)}
    assert done.state is MemberState.STABLE


# --- group -----------------------------------------------------------------------------


def test_group_states_and_partition_epochs() -> None:
    g = ConsumerGroup("g")
    assert g.state is ConsumerGroupState.EMPTY
    g.update_member(ConsumerMember("a", member_epoch=1, assigned={T1: fs(0)},
                                   pending_revocation={T1: fs(1)}))
    g.group_epoch = g.assignment_epoch = 1
    assert g.current_partition_epoch(T1, 0) == 1 and g.current_partition_epoch(T1, 1) == 1
    assert g.state is ConsumerGroupState.STABLE
    g.group_epoch = 2
    assert g.state is ConsumerGroupState.ASSIGNING
    g.assignment_epoch = 2
    assert g.state is ConsumerGroupState.RECONCILING
    g.remove_member("a")
    assert g.current_partition_epoch(T1, 0) == -1 and g.state is ConsumerGroupState.EMPTY


def test_preferred_assignor_is_the_most_asked_for() -> None:
    g = ConsumerGroup("g")
    assert g.preferred_assignor("uniform") == "uniform"
    g.update_member(ConsumerMember("a", server_assignor="range"))
    g.update_member(ConsumerMember("b", server_assignor="range"))
    g.update_member(ConsumerMember("c", server_assignor="uniform"))
    assert g.preferred_assignor("uniform") == "range"


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["join", "leave", "beat"]), st.integers(0, 4)),
                max_size=40))
def test_model_no_partition_has_two_owners_and_the_group_converges(
        ops: list[tuple[str, int]]) -> None:
    """Members own exactly what their last reconciled value says once they heartbeat
    with it (clients revoke what they are told to at once). After every step, no
    partition is owned by two members; after heartbeats stop changing anything, every
    member is at the assignment epoch and owns its target."""
    topics = {"t": TopicMetadata(T1, "t", 10)}
    g = ConsumerGroup("g")
    owned: dict[str, frozenset[int]] = {}

    def bump() -> None:
        g.group_epoch += 1
        g.target = compute_target(g, topics, UniformAssignor())
        g.assignment_epoch = g.group_epoch

    def beat(mid: str) -> None:
        m = g.members[mid]
        new = reconcile(m, g.assignment_epoch, g.target_of(mid), g.current_partition_epoch,
                        {T1: owned[mid]})
        g.update_member(new)
        # The client owns what it is told to: assigned (revoking the rest).
        owned[mid] = new.assigned.get(T1, frozenset())

    def check() -> None:
        seen: set[int] = set()
        for ps in owned.values():
            assert not (seen & ps), "a partition has two owners"
            seen |= ps

    for op, i in ops:
        mid = f"m{i}"
        if op == "join" and mid not in g.members:
            g.update_member(ConsumerMember(mid, subscribed_topic_names=("t",)))
            owned[mid] = frozenset()
            bump()
            beat(mid)
        elif op == "leave" and mid in g.members:
            g.remove_member(mid)
            del owned[mid]
            bump()
        elif op == "beat" and mid in g.members:
            beat(mid)
        check()
    for _ in range(3 * len(g.members) + 2):
        for mid in list(g.members):
            beat(mid)
            check()
    if g.members:
        assert g.state is ConsumerGroupState.STABLE
        assert sorted(p for ps in owned.values() for p in ps) == list(range(10))

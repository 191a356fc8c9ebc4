"""ListGroups, DescribeGroups, DeleteGroups, OffsetDelete and the partitioning function."""

from __future__ import annotations

from group_harness import Harness, subscription
from kio.schema.errors import ErrorCode as E

from odradek.broker.group.coordinator import LeavingMember, OffsetCommitEntry
from odradek.broker.group.log import LogAppendError
from odradek.broker.group.partitioning import java_string_hash, partition_for


def reference_hash(s: str) -> int:
    """String.hashCode spelled out: sum of s[i] * 31^(n-1-i), as a signed 32-bit int."""
    data = s.encode("utf-16-be")
    units = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    n = len(units)
    total = sum(u * 31 ** (n - 1 - i) for i, u in enumerate(units)) % 2**32
    return total - 2**32 if total >= 2**31 else total


def test_java_string_hash_known_values() -> None:
    # Values Java itself gives (and worked by hand for the short ones).
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("ab") == 97 * 31 + 98 == 3105
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("hello world") == 1794106052
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112
    # Outside the BMP Java hashes the two UTF-16 surrogates: 0xD83D*31 + 0xDE00.
    assert java_string_hash("\U0001f600") == 0xD83D * 31 + 0xDE00 == 1772899
    # The famous one whose hash is Integer.MIN_VALUE: Kafka's abs() maps it to 0.
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert partition_for("polygenelubricants", 50) == 0
    for s in ["my-group", "console-consumer-12345", "группа", "x" * 100]:
        assert java_string_hash(s) == reference_hash(s)


def test_partition_for_matches_kafka() -> None:
    assert partition_for("hello", 50) == 99162322 % 50 == 22
    # "my-group" hashes negative: abs(-1906497762) % 50.
    assert java_string_hash("my-group") == -1906497762
    assert partition_for("my-group", 50) == 12
    assert partition_for("a", 50) == 47
    assert partition_for("", 50) == 0
    assert partition_for("hello world", 7) == 1794106052 % 7


async def test_list_groups_with_filters(harness: Harness) -> None:
    h = await harness.load_all()
    await h.stable_group("stable", 1)
    h.join("preparing", require_known=False)
    await h.coord.commit_offsets("simple", {("t", 0): OffsetCommitEntry(1)})
    every = {(o.group_id, o.state, o.protocol_type) for o in h.coord.list_groups()}
    assert every == {
        ("stable", "Stable", "consumer"),
        ("preparing", "PreparingRebalance", "consumer"),
        ("simple", "Empty", ""),
    }
    assert [o.group_id for o in h.coord.list_groups(states=["stable", "EMPTY"])] == [
        "stable",
        "simple",
    ]
    assert len(h.coord.list_groups(types=["Classic"])) == 3
    assert h.coord.list_groups(types=["consumer"]) == []
    assert {o.group_type for o in h.coord.list_groups()} == {"classic"}
    assert h.coord.group_states() == {
        "stable": "Stable",
        "preparing": "PreparingRebalance",
        "simple": "Empty",
    }


async def test_describe_group(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 2, client_id="my-app")
    err, summary = h.coord.describe_group("g")
    assert err is E.none and summary is not None
    assert (summary.state, summary.protocol_type, summary.protocol) == (
        "Stable",
        "consumer",
        "range",
    )
    by_id = {m.member_id: m for m in summary.members}
    assert set(by_id) == {r.member_id for r in results}
    for mid, m in by_id.items():
        assert m.client_id == "my-app" and m.client_host == "/127.0.0.1"
        assert m.metadata == subscription("t") and m.assignment == f"a:{mid}".encode()
    assert h.coord.describe_group("nope") == (E.none, None)
    # Outside Stable, metadata and assignments are not shown (as in Kafka).
    h.join("g", results[0].member_id)
    _, preparing = h.coord.describe_group("g")
    assert preparing is not None and preparing.state == "PreparingRebalance"
    assert preparing.protocol == "" and all(m.assignment == b"" for m in preparing.members)


async def test_delete_groups(harness: Harness) -> None:
    h = await harness.load_all()
    await h.stable_group("busy", 1)
    await h.coord.commit_offsets("idle", {("t", 0): OffsetCommitEntry(1)})
    result = await h.coord.delete_groups(["busy", "idle", "missing", "idle"])
    assert result == {"busy": E.non_empty_group, "idle": E.none, "missing": E.group_id_not_found}
    assert h.coord.group_state("idle") is None
    assert h.coord.fetch_offsets("idle", [("t", 0)]) == (E.none, [(("t", 0), None)])
    p = h.coord.partition_for("busy")
    h.coord.unload_partition(p)
    assert (await h.coord.delete_groups(["busy"])) == {"busy": E.not_coordinator}


async def test_failed_delete_keeps_the_group(harness: Harness) -> None:
    h = await harness.load_all()
    await h.coord.commit_offsets("idle", {("t", 0): OffsetCommitEntry(1)})
    h.log.fail_with = LogAppendError(E.not_leader_or_follower)
    assert (await h.coord.delete_groups(["idle"])) == {"idle": E.not_coordinator}
    assert h.coord.group_state("idle") == "Empty"
    assert h.coord.committed_offsets("idle") == {("t", 0): 1}


async def test_offset_delete(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 1)  # subscribed to "t"
    a = results[0].member_id
    await h.coord.commit_offsets(
        "g",
        {
            ("t", 0): OffsetCommitEntry(1),
            ("u", 0): OffsetCommitEntry(2),
            ("u", 1): OffsetCommitEntry(3),
        },
        generation_id=1,
        member_id=a,
    )
    err, result = await h.coord.delete_offsets("g", [("t", 0), ("u", 0), ("v", 0), ("x", 0)])
    assert err is E.none
    assert result == {
        ("t", 0): E.group_subscribed_to_topic,
        ("u", 0): E.none,
        ("v", 0): E.none,  # nothing committed there: nothing to do, no error
        ("x", 0): E.unknown_topic_or_partition,
    }
    assert h.coord.committed_offsets("g") == {("t", 0): 1, ("u", 1): 3}
    # Once the group is empty everything may go.
    h.coord.leave_group("g", [LeavingMember(a)])
    await h.settle()
    err, result = await h.coord.delete_offsets("g", [("t", 0)])
    assert (err, result) == (E.none, {("t", 0): E.none})
    assert h.coord.committed_offsets("g") == {("u", 1): 3}
    # The deletion is durable.
    other = await Harness(log=h.log).load_all()
    assert other.coord.committed_offsets("g") == {("u", 1): 3}

    assert await h.coord.delete_offsets("missing", [("t", 0)]) == (E.group_id_not_found, {})
    assert await h.coord.delete_offsets("", [("t", 0)]) == (E.invalid_group_id, {})


async def test_offset_delete_in_active_non_consumer_group(harness: Harness) -> None:
    h = await harness.load_all()
    f = h.join("connect-group", protocol_type="connect", require_known=False)
    await h.advance(3_000)
    assert f.result().error is E.none
    assert await h.coord.delete_offsets("connect-group", [("t", 0)]) == (E.non_empty_group, {})

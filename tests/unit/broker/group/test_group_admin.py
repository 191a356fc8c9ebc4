"""ListGroups, DescribeGroups, DeleteGroups and the group views (broker/group/admin.py)."""

from __future__ import annotations

from kio.schema.errors import ErrorCode as E

from odradek.broker.group.log import LogAppendError
from odradek.broker.group.offsets import OffsetCommitEntry
from tests.unit.broker.group.group_harness import Harness, subscription


async def test_list_groups_with_filters(harness: Harness) -> None:
    h = await harness.load_all()
    await h.stable_group("stable", 1)
    h.join("preparing", require_known=False)
    await h.coord.offsets.commit_offsets("simple", {("t", 0): OffsetCommitEntry(1)})
    every = {(o.group_id, o.state, o.protocol_type) for o in h.coord.admin.list_groups()}
    assert every == {
        ("stable", "Stable", "consumer"),
        ("preparing", "PreparingRebalance", "consumer"),
        ("simple", "Empty", ""),
    }
    assert [o.group_id for o in h.coord.admin.list_groups(states=["stable", "EMPTY"])] == [
        "stable",
        "simple",
    ]
    assert len(h.coord.admin.list_groups(types=["Classic"])) == 3
    assert h.coord.admin.list_groups(types=["consumer"]) == []
    assert {o.group_type for o in h.coord.admin.list_groups()} == {"classic"}
    assert h.coord.admin.group_states() == {
        "stable": "Stable",
        "preparing": "PreparingRebalance",
        "simple": "Empty",
    }


async def test_describe_group(harness: Harness) -> None:
    h = await harness.load_all()
    results = await h.stable_group("g", 2, client_id="my-app")
    err, summary = h.coord.admin.describe_group("g")
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
    assert h.coord.admin.describe_group("nope") == (E.none, None)
    # Outside Stable, metadata and assignments are not shown (as in Kafka).
    h.join("g", results[0].member_id)
    _, preparing = h.coord.admin.describe_group("g")
    assert preparing is not None and preparing.state == "PreparingRebalance"
    assert preparing.protocol == "" and all(m.assignment == b"" for m in preparing.members)


async def test_delete_groups(harness: Harness) -> None:
    h = await harness.load_all()
    await h.stable_group("busy", 1)
    await h.coord.offsets.commit_offsets("idle", {("t", 0): OffsetCommitEntry(1)})
    result = await h.coord.admin.delete_groups(["busy", "idle", "missing", "idle"])
    assert result == {"busy": E.non_empty_group, "idle": E.none, "missing": E.group_id_not_found}
    assert h.coord.admin.group_state("idle") is None
    assert h.coord.offsets.fetch_offsets("idle", [("t", 0)]) == (E.none, [(("t", 0), None)])
    p = h.coord.partition_for("busy")
    h.coord.unload_partition(p)
    assert (await h.coord.admin.delete_groups(["busy"])) == {"busy": E.not_coordinator}


async def test_failed_delete_keeps_the_group(harness: Harness) -> None:
    h = await harness.load_all()
    await h.coord.offsets.commit_offsets("idle", {("t", 0): OffsetCommitEntry(1)})
    h.log.fail_with = LogAppendError(E.not_leader_or_follower)
    assert (await h.coord.admin.delete_groups(["idle"])) == {"idle": E.not_coordinator}
    assert h.coord.admin.group_state("idle") == "Empty"
    assert h.coord.offsets.committed_offsets("idle") == {("t", 0): 1}

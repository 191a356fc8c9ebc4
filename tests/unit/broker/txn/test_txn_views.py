"""ListTransactions (state, producer id, duration and id-pattern filters) and
DescribeTransactions."""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode as E

from odradek.broker.txn.views import TransactionListing
from tests.unit.broker.txn.txn_harness import Harness


async def setup() -> tuple[Harness, dict[str, tuple[int, int]]]:
    h = await Harness().load_all()
    producers = {}
    for txn in ("idle", "old", "new", "done"):
        producers[txn] = await h.producer(txn)
    pid, epoch = producers["old"]
    await h.add("old", pid, epoch, ("t", 0))
    h.clock.advance(10_000)
    pid, epoch = producers["new"]
    await h.add("new", pid, epoch, ("t", 1), ("u", 0))
    pid, epoch = producers["done"]
    await h.add("done", pid, epoch, ("t", 2))
    await h.end("done", pid, epoch)
    await h.settle()
    h.clock.advance(1_000)
    return h, producers


async def test_list_everything() -> None:
    h, producers = await setup()
    r = h.coord.list_transactions()
    assert r.error is E.none and r.unknown_state_filters == ()
    assert r.transactions == tuple(
        TransactionListing(t, producers[t][0], s)
        for t, s in sorted(
            {"idle": "Empty", "old": "Ongoing", "new": "Ongoing", "done": "CompleteCommit"}.items()
        )
    )


async def test_list_filters() -> None:
    h, producers = await setup()

    def ids(**kw: object) -> list[str]:
        r = h.coord.list_transactions(**kw)  # type: ignore[arg-type]
        assert r.error is E.none
        return [t.transactional_id for t in r.transactions]

    assert ids(state_filters=["Ongoing"]) == ["new", "old"]
    assert ids(state_filters=["Ongoing", "CompleteCommit"]) == ["done", "new", "old"]
    assert ids(producer_id_filters=[producers["idle"][0], 12345]) == ["idle"]
    # KIP-994: running for longer than the duration (Empty ones never started: included).
    assert ids(duration_filter_ms=5_000, state_filters=["Ongoing"]) == ["old"]
    assert ids(duration_filter_ms=0, state_filters=["Ongoing"]) == ["new", "old"]
    assert ids(duration_filter_ms=5_000, state_filters=["Empty"]) == ["idle"]
    assert ids(transactional_id_pattern="n.*") == ["new"]
    assert ids(transactional_id_pattern="o") == []  # the whole id must match
    assert ids(transactional_id_pattern="") == ["done", "idle", "new", "old"]
    r = h.coord.list_transactions(state_filters=["Ongoing", "Bogus", "ongoing"])
    assert r.unknown_state_filters == ("Bogus", "ongoing")  # names are exact
    assert [t.transactional_id for t in r.transactions] == ["new", "old"]
    r = h.coord.list_transactions(state_filters=["Bogus"])
    assert r.transactions == ()  # a filter that matches no state matches nothing
    r = h.coord.list_transactions(transactional_id_pattern="(")
    assert r.error is E.invalid_regular_expression


async def test_describe() -> None:
    h, producers = await setup()
    new, idle, missing, empty = h.coord.describe_transactions(["new", "idle", "nope", ""])
    pid, epoch = producers["new"]
    assert (new.error, new.state, new.producer_id, new.producer_epoch) == (
        E.none, "Ongoing", pid, epoch
    )
    assert new.topics == {"t": (1,), "u": (0,)}
    assert new.transaction_timeout_ms == 60_000
    assert new.transaction_start_time_ms == h.clock.now_ms() - 1_000
    assert (idle.state, idle.topics, idle.transaction_start_time_ms) == ("Empty", {}, -1)
    assert missing.error is E.transactional_id_not_found
    assert empty.error is E.invalid_request


async def test_describe_shows_partitions_still_waiting_for_markers() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("x")
    await h.add("x", pid, epoch, ("t", 0), ("t", 1))
    h.markers.gate = asyncio.Event()
    await h.end("x", pid, epoch)
    (d,) = h.coord.describe_transactions(["x"])
    assert (d.state, d.topics) == ("PrepareCommit", {"t": (0, 1)})
    h.markers.gate.set()
    await h.settle()
    (d,) = h.coord.describe_transactions(["x"])
    assert (d.state, d.topics) == ("CompleteCommit", {})

"""Loading a partition of __transaction_state on leadership, unloading it, coordinator
failover in the middle of a commit, and the races between loads, unloads and writes."""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode as E

from odradek.broker.txn.metadata import TxnState
from odradek.broker.txn.records import TxnLogValue, TxnPartitions, encode_key, encode_value
from tests.unit.broker.txn.txn_harness import Harness, spin, states


async def test_a_new_coordinator_finishes_a_commit_it_finds_prepared() -> None:
    a = await Harness().load_all(epoch=1)
    pid, epoch = await a.producer("x")
    await a.add("x", pid, epoch, ("t", 0), ("u", 1))
    a.markers.fail(("u", 1), *([E.not_leader_or_follower] * 3))
    assert (await a.end("x", pid, epoch)).error is E.none
    await a.settle()
    assert states(a.log, "x")[-1] == "PrepareCommit"  # (u, 1) still has no marker
    # Leadership moves: the old coordinator resigns, the new one loads at epoch 2.
    p = a.partition("x")
    a.coord.unload_partition(p)
    b = a.successor()
    a.log.elect(p, 2)
    await b.coord.load_partition(p, 2)
    assert (await a.init("x")).error is E.not_coordinator
    await b.advance(1_000)
    assert states(a.log, "x")[-1] == "CompleteCommit"
    resent = [r for r in b.markers.requests if r.coordinator_epoch == 2]
    # The new coordinator writes every marker again (they are idempotent) with its epoch.
    assert resent[0].partitions == {("t", 0), ("u", 1)} and resent[0].commit
    assert b.md("x").state is TxnState.COMPLETE_COMMIT
    assert (await b.end("x", pid, epoch)).error is E.none  # the client's retry
    assert b.markers.violations == []


async def test_the_old_coordinator_cannot_write_after_failover() -> None:
    a = await Harness().load_all(epoch=1)
    pid, epoch = await a.producer("x")
    await a.add("x", pid, epoch, ("t", 0))
    a.markers.gate = asyncio.Event()
    assert (await a.end("x", pid, epoch)).error is E.none
    await spin()
    # A new leader takes over while the old one is still sending markers (it has not
    # heard of its resignation yet).
    p = a.partition("x")
    b = a.successor()
    a.log.elect(p, 2)
    a.markers.gate.set()
    await b.coord.load_partition(p, 2)
    await a.settle()
    await b.settle()
    # The old coordinator's Complete* write was refused; the new one completed.
    assert states(a.log, "x") == ["Empty", "Ongoing", "PrepareCommit", "CompleteCommit"]
    assert b.md("x").state is TxnState.COMPLETE_COMMIT
    old = a.md("x")
    assert old.state is TxnState.PREPARE_COMMIT  # never made current on the stale one
    # Until the broker tells it to resign, its clients are told to retry; then to look
    # for the new coordinator.
    assert (await a.init("x")).error is E.concurrent_transactions
    a.coord.unload_partition(p, 1)
    assert (await a.init("x")).error is E.not_coordinator


async def test_requests_while_loading_get_load_in_progress() -> None:
    h = Harness(load_batch_size=1)
    for i in range(5):
        value = TxnLogValue(100 + i, 0, 60_000, TxnState.EMPTY.state_id, None, 1, -1)
        key = encode_key(f"id{i}")
        h.log.partitions.setdefault(0, []).append((key, encode_value(value)))
    in_p0 = next(t for t in (f"z{i}" for i in range(200)) if h.partition(t) == 0)
    load = asyncio.ensure_future(h.coord.load_partition(0, 1))
    await asyncio.sleep(0)
    assert h.coord.loading_partitions() == {0}
    assert (await h.init(in_p0)).error is E.coordinator_load_in_progress
    assert h.coord.list_transactions().error is E.coordinator_load_in_progress
    assert h.coord.describe_transactions([in_p0])[0].error is E.coordinator_load_in_progress
    await load
    assert h.coord.owned_partitions() == {0} and h.coord.loading_partitions() == set()
    assert (await h.init(in_p0)).error is E.none


async def test_unload_during_load_abandons_it() -> None:
    h = Harness(load_batch_size=1)
    for i in range(5):
        value = TxnLogValue(100 + i, 0, 60_000, TxnState.EMPTY.state_id, None, 1, -1)
        h.log.partitions.setdefault(0, []).append((encode_key(f"id{i}"), encode_value(value)))
    load = asyncio.ensure_future(h.coord.load_partition(0, 1))
    await asyncio.sleep(0)
    h.coord.unload_partition(0)
    await load
    assert h.coord.owned_partitions() == set() and h.coord.loading_partitions() == set()


async def test_loads_and_unloads_follow_the_leader_epoch() -> None:
    h = Harness()
    await h.coord.load_partition(0, 5)
    assert h.coord.coordinator_epoch(0) == 5
    await h.coord.load_partition(0, 5)  # again: nothing happens
    await h.coord.load_partition(0, 4)  # an older leadership: ignored
    assert h.coord.coordinator_epoch(0) == 5
    h.coord.unload_partition(0, 4)  # a late resignation of an older epoch: ignored
    assert h.coord.owned_partitions() == {0}
    await h.coord.load_partition(0, 7)  # a newer one replaces it
    assert h.coord.coordinator_epoch(0) == 7
    h.coord.unload_partition(0, 7)
    assert h.coord.owned_partitions() == set()
    # A newer load while an older one is still reading wins.
    h2 = Harness(load_batch_size=1)
    for i in range(3):
        value = TxnLogValue(100 + i, 0, 60_000, TxnState.EMPTY.state_id, None, 1, -1)
        h2.log.partitions.setdefault(0, []).append((encode_key(f"id{i}"), encode_value(value)))
    first = asyncio.ensure_future(h2.coord.load_partition(0, 1))
    await asyncio.sleep(0)
    await h2.coord.load_partition(0, 2)
    await first
    assert h2.coord.coordinator_epoch(0) == 2


async def test_a_write_racing_a_reload_is_not_applied() -> None:
    h = await Harness().load_all(epoch=1)
    pid, epoch = await h.producer("x")
    p = h.partition("x")
    h.log.gate = asyncio.Event()
    add = asyncio.ensure_future(h.add("x", pid, epoch, ("t", 0)))
    await asyncio.sleep(0)
    # The partition moves away and back (a new leader epoch) while the write waits.
    h.coord.unload_partition(p)
    h.log.elect(p, 3)
    h.log.gate.set()
    await h.coord.load_partition(p, 3)
    assert await add is E.not_coordinator
    assert states(h.log, "x") == ["Empty"]  # refused by the log at the old epoch
    assert h.md("x").state is TxnState.EMPTY
    assert await h.add("x", pid, epoch, ("t", 0)) is E.none


async def test_replay_keeps_the_last_record_and_skips_bad_ones() -> None:
    h = Harness()
    p = h.partition("good")

    def put(key: bytes, value: bytes | None) -> None:
        h.log.partitions.setdefault(p, []).append((key, value))

    def value(pid: int, epoch: int, state: TxnState, parts: tuple[tuple[str, int], ...] = ()) \
            -> bytes:
        entries = tuple(TxnPartitions(t, (n,)) for t, n in parts)
        return encode_value(TxnLogValue(pid, epoch, 60_000, state.state_id, entries, 1, 1))

    put(encode_key("good"), value(1, 0, TxnState.EMPTY))
    put(encode_key("good"), value(1, 1, TxnState.ONGOING, (("t", 0),)))
    put(encode_key("gone"), value(2, 0, TxnState.EMPTY))
    put(encode_key("gone"), None)
    put(encode_key("good"), b"\x00\x01garbage")  # undecodable: skipped
    put(encode_key("good"), b"\x00\x09" + b"\x00" * 40)  # a newer version: skipped
    put(b"\x00\x05whatever", value(3, 0, TxnState.EMPTY))  # another key type: skipped
    put(encode_key("good"), value(1, 2, TxnState.DEAD))  # never written by a coordinator
    put(encode_key("weird"), value(4, 0, TxnState.EMPTY)[:2] + b"\x00" * 3)
    await h.coord.load_partition(p, 1)
    md = h.md("good")
    assert (md.producer_epoch, md.state, md.partitions) == (1, TxnState.ONGOING, {("t", 0)})
    assert h.coord.transaction("gone") is None
    assert h.coord.transaction("weird") is None


async def test_a_loaded_ongoing_transaction_times_out() -> None:
    h = Harness(abort_timed_out_transactions_interval_ms=1_000)
    value = TxnLogValue(9, 3, 5_000, TxnState.ONGOING.state_id, (TxnPartitions("t", (1,)),),
                        h.clock.now_ms(), h.clock.now_ms())
    h.log.partitions.setdefault(h.partition("x"), []).append((encode_key("x"), encode_value(value)))
    await h.load_all()
    await h.advance(7_000, step=1_000)
    assert states(h.log, "x") == ["Ongoing", "PrepareAbort", "CompleteAbort"]
    assert [m.producer_epoch for m in h.markers.for_txn("x")] == [5]  # fenced, then v2 bump


async def test_close_refuses_everything() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("x")
    await h.coord.close()
    assert (await h.init("x")).error is E.coordinator_not_available
    assert await h.add("x", pid, epoch) is E.coordinator_not_available
    assert h.coord.list_transactions().error is E.coordinator_not_available
    assert h.coord.describe_transactions(["x"])[0].error is E.coordinator_not_available
    await h.coord.load_partition(0, 9)
    assert h.coord.owned_partitions() == set()
    assert h.clock.pending() == 0  # no timer left behind

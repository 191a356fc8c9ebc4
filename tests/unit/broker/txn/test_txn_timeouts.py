"""Transactions past their timeout are aborted (their producer fenced first), and idle
transactional ids expire with a tombstone."""

from __future__ import annotations

import asyncio
from typing import Any

from kio.schema.errors import ErrorCode as E

from odradek.broker.txn.log import LogAppendError
from odradek.broker.txn.metadata import MAX_EPOCH, TxnState
from odradek.broker.txn.records import TxnLogValue, encode_key, encode_value
from tests.unit.broker.txn.txn_harness import Harness, history, states

V2 = 5  # AddPartitionsToTxn v4+ and EndTxn v5+ are transactions v2
ABORT_INTERVAL = 1_000
EXPIRY_INTERVAL = 60_000
EXPIRATION = 600_000


def harness(level: int = 0, **config: Any) -> Harness:
    return Harness(
        transaction_version_level=level,
        abort_timed_out_transactions_interval_ms=ABORT_INTERVAL,
        remove_expired_transactional_ids_interval_ms=EXPIRY_INTERVAL,
        transactional_id_expiration_ms=EXPIRATION,
        **config,
    )


async def test_a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() -> None:
    h = await harness().load_all()
    pid, epoch = await h.producer("a", timeout=5_000)
    await h.add("a", pid, epoch, ("t", 0))
    await h.advance(5_000, step=ABORT_INTERVAL)
    assert h.md("a").state is TxnState.ONGOING  # not past it yet (start + timeout < now)
    await h.advance(ABORT_INTERVAL, step=ABORT_INTERVAL)
    await h.advance(100)
    assert states(h.log, "a") == ["Empty", "Ongoing", "PrepareAbort", "CompleteAbort"]
    assert {(m.producer_epoch, m.commit) for m in h.markers.for_txn("a")} == {(epoch + 1, False)}
    # The producer finds out it was fenced.
    assert await h.add("a", pid, epoch, ("t", 1)) is E.producer_fenced
    assert (await h.end("a", pid, epoch)).error is E.producer_fenced
    assert (await h.init("a")).producer_epoch == epoch + 2
    assert h.markers.violations == []


async def test_with_transactions_v2_the_abort_bumps_once_more() -> None:
    h = await harness(level=2).load_all()
    pid, epoch = await h.producer("a", timeout=1_000)
    await h.add("a", pid, epoch, ("t", 0))
    await h.advance(3_000, step=ABORT_INTERVAL)
    assert states(h.log, "a")[-1] == "CompleteAbort"
    assert {m.producer_epoch for m in h.markers.for_txn("a")} == {epoch + 2}


async def test_only_ongoing_transactions_time_out() -> None:
    h = await harness().load_all()
    pid, epoch = await h.producer("idle", timeout=1_000)
    pb, eb = await h.producer("busy", timeout=1_000)
    await h.add("busy", pb, eb)
    h.markers.fail(("t", 0), *([E.not_leader_or_follower] * 1000))
    await h.end("busy", pb, eb)  # completing, markers failing: not a timed out one
    assert h.coord.abort_timed_out_transactions() == 0
    await h.advance(5_000, step=ABORT_INTERVAL)
    assert states(h.log, "idle") == ["Empty"]
    assert h.md("busy").state is TxnState.PREPARE_COMMIT
    assert h.coord.abort_timed_out_transactions() == 0


async def test_a_failed_timeout_abort_is_tried_again_at_the_same_epoch() -> None:
    h = await harness().load_all()
    pid, epoch = await h.producer("a", timeout=1_000)
    await h.add("a", pid, epoch, ("t", 0))
    h.clock.advance(1_001)
    h.log.fail_with = LogAppendError(E.request_timed_out)
    assert h.coord.abort_timed_out_transactions() == 1
    await h.settle()
    md = h.md("a")
    assert (md.state, md.pending_state, md.producer_epoch) == (TxnState.ONGOING, None, epoch + 1)
    assert await h.add("a", pid, epoch, ("t", 1)) is E.producer_fenced  # fenced all the same
    assert h.coord.abort_timed_out_transactions() == 1
    await h.settle()
    assert states(h.log, "a") == ["Empty", "Ongoing", "PrepareAbort", "CompleteAbort"]
    assert [v.producer_epoch for v in history(h.log, "a") if v] == [epoch, epoch, epoch + 1,
                                                                    epoch + 1]


async def _exhausted(h: Harness, txn: str = "a") -> tuple[int, int]:
    """``txn`` with a v2 transaction open at the last epoch a client may hold (MAX - 1)."""
    value = TxnLogValue(500, MAX_EPOCH - 2, 1_000, TxnState.EMPTY.state_id, None, 1, -1,
                        client_transaction_version=2)
    h.log.partitions.setdefault(h.partition(txn), []).append(
        (encode_key(txn), encode_value(value))
    )
    await h.load_all()
    pid, epoch = await h.producer(txn, timeout=1_000)
    assert (pid, epoch) == (500, MAX_EPOCH - 1)
    assert await h.add(txn, pid, epoch, ("t", 0), api_version=V2) is E.none
    return pid, epoch


def _epochs(h: Harness, txn: str) -> list[tuple[str, int, int, int]]:
    return [
        (TxnState.from_id(v.transaction_status).state_name, v.producer_id, v.producer_epoch,
         v.next_producer_id)
        for v in history(h.log, txn) if v is not None
    ]


async def test_v2_timeout_at_an_exhausted_epoch_moves_to_a_new_producer_id() -> None:
    # Kafka rotates the producer id on the epoch-fence path too: the fence and the abort
    # end at Short.MAX_VALUE, and the transaction completes to the next producer id, so
    # no client is ever handed Short.MAX_VALUE (nothing could fence it).
    h = harness(level=2)
    pid, epoch = await _exhausted(h)
    await h.advance(3_000, step=ABORT_INTERVAL)
    assert _epochs(h, "a")[-2:] == [
        ("PrepareAbort", 500, MAX_EPOCH, 1000), ("CompleteAbort", 1000, 0, -1)
    ]
    assert {(m.producer_id, m.producer_epoch) for m in h.markers.for_txn("a")} == {
        (500, MAX_EPOCH)
    }
    # The producer's late abort is taken as a retry across the overflow (as in Kafka).
    r = await h.end("a", pid, epoch, commit=False, api_version=V2)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 0)
    # Its other requests are refused.
    assert await h.add("a", pid, epoch, ("t", 1), api_version=V2) in (
        E.producer_fenced, E.invalid_producer_id_mapping
    )
    assert (await h.end("a", pid, epoch, api_version=V2)).error is E.invalid_txn_state
    assert h.markers.violations == []


async def test_v2_timeout_at_an_exhausted_epoch_waits_for_a_producer_id() -> None:
    h = harness(level=2)
    await _exhausted(h)
    h.clock.advance(1_001)
    h.pids.fail_with = RuntimeError("no block")
    assert h.coord.abort_timed_out_transactions() == 1
    await h.settle()
    md = h.md("a")
    assert (md.state, md.pending_state, md.producer_epoch) == (
        TxnState.ONGOING, None, MAX_EPOCH - 1
    )
    await h.advance(ABORT_INTERVAL, step=ABORT_INTERVAL)
    assert _epochs(h, "a")[-1] == ("CompleteAbort", 1000, 0, -1)


async def test_v2_fence_by_a_new_producer_at_an_exhausted_epoch_moves_to_a_new_producer_id(
) -> None:
    h = harness(level=2)
    pid, epoch = await _exhausted(h)
    assert (await h.init("a")).error is E.concurrent_transactions
    await h.settle()
    assert _epochs(h, "a")[-2:] == [
        ("PrepareAbort", 500, MAX_EPOCH, 1000), ("CompleteAbort", 1000, 0, -1)
    ]
    r = await h.init("a")
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 1)
    assert await h.add("a", pid, epoch, ("t", 1), api_version=V2) in (
        E.producer_fenced, E.invalid_producer_id_mapping
    )
    assert h.markers.violations == []


async def test_idle_ids_expire_with_a_tombstone() -> None:
    h = await harness().load_all()
    pa, ea = await h.producer("a")
    pb, eb = await h.producer("b")
    await h.add("b", pb, eb)  # ongoing: never expires
    pc, ec = await h.producer("c")
    await h.add("c", pc, ec)
    await h.end("c", pc, ec)
    await h.settle()
    await h.advance(EXPIRATION - EXPIRY_INTERVAL, step=EXPIRY_INTERVAL)
    assert h.coord.transaction("a") is not None
    h.clock.advance(EXPIRY_INTERVAL)  # also aborts b, which is way past its timeout
    await h.settle()
    await h.advance(EXPIRY_INTERVAL, step=EXPIRY_INTERVAL)
    assert h.coord.transaction("a") is None and h.coord.transaction("c") is None
    assert states(h.log, "a")[-1] == "tombstone" and states(h.log, "c")[-1] == "tombstone"
    assert h.coord.describe_transactions(["a"])[0].error is E.transactional_id_not_found
    assert h.coord.transaction("b") is not None  # its abort made it recently active
    # The id can be used again, with a new producer id.
    r = await h.init("a")
    assert (r.error, r.producer_epoch) == (E.none, 0) and r.producer_id != pa


async def test_a_failed_tombstone_keeps_the_id() -> None:
    h = await harness().load_all()
    await h.producer("a")
    h.clock.advance(EXPIRATION + 1)
    h.log.fail_with = LogAppendError(E.not_enough_replicas)
    assert await h.coord.expire_transactional_ids() == 0
    md = h.md("a")
    assert (md.state, md.pending_state) == (TxnState.EMPTY, None)
    assert await h.coord.expire_transactional_ids() == 1
    assert h.coord.transaction("a") is None


async def test_a_producer_coming_back_during_expiry_waits_for_it() -> None:
    # (The periodic check runs hourly by default: this test runs the check itself.)
    h = await Harness(transactional_id_expiration_ms=EXPIRATION).load_all()
    pid, epoch = await h.producer("a")
    h.clock.advance(EXPIRATION + 1)
    h.log.gate = asyncio.Event()
    expire = asyncio.ensure_future(h.coord.expire_transactional_ids())
    await asyncio.sleep(0)
    # The producer comes back while the tombstone is being written: it must wait.
    assert (await h.init("a")).error is E.concurrent_transactions
    h.log.gate.set()
    assert await expire == 1
    assert (await h.init("a")).producer_id != pid

"""InitProducerId with a transactional id: new ids, epoch bumps, fencing a zombie's ongoing
transaction, KIP-360 recovery, epoch exhaustion, and failures that must change nothing."""

from __future__ import annotations

import pytest
from kio.schema.errors import ErrorCode as E

from odradek.broker.txn.log import LogAppendError
from odradek.broker.txn.metadata import MAX_EPOCH, TxnState
from odradek.broker.txn.records import TxnLogValue, encode_key, encode_value
from tests.unit.broker.txn.txn_harness import Harness, history, states


async def test_a_new_id_gets_a_producer_id_at_epoch_0() -> None:
    h = await Harness().load_all()
    r = await h.init("a", 30_000)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 0)
    assert states(h.log, "a") == ["Empty"]
    md = h.md("a")
    assert (md.state, md.txn_timeout_ms, md.last_producer_epoch) == (TxnState.EMPTY, 30_000, -1)
    # A new producer instance for the same id: the next epoch, the same producer id.
    r = await h.init("a", 20_000)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 1)
    assert h.md("a").txn_timeout_ms == 20_000
    assert states(h.log, "a") == ["Empty", "Empty"]


async def test_without_a_transactional_id_any_broker_hands_out_a_producer_id() -> None:
    h = Harness()  # owns nothing
    r = await h.coord.init_producer_id(None, 0)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 0)
    assert h.log.appends == 0


async def test_requests_are_validated() -> None:
    h = await Harness(transaction_max_timeout_ms=100_000).load_all()
    assert (await h.init("", 1000)).error is E.invalid_request
    assert (await h.init("a", 0)).error is E.invalid_transaction_timeout
    assert (await h.init("a", -5)).error is E.invalid_transaction_timeout
    assert (await h.init("a", 100_001)).error is E.invalid_transaction_timeout
    assert (await h.init("a", 100_000)).error is E.none
    assert (await h.init("x" * 40_000)).error is E.invalid_request  # too long for the key
    assert (await h.init("a", producer_id=5)).error is E.invalid_request  # id without epoch
    assert (await h.init("a", producer_epoch=5)).error is E.invalid_request
    assert h.pids.calls == 1


async def test_ids_of_other_partitions_are_not_ours() -> None:
    h = Harness()
    await h.coord.load_partition(h.partition("a"), 1)
    other = next(t for t in (f"x{i}" for i in range(100)) if h.partition(t) != h.partition("a"))
    assert (await h.init(other)).error is E.not_coordinator
    assert (await h.init("a")).error is E.none


@pytest.mark.parametrize("level", [0, 2], ids=["tv0", "tv2"])
async def test_an_ongoing_transaction_is_aborted_and_its_producer_fenced(level: int) -> None:
    # The coordinator's own abort follows the cluster's transaction version: with v2 the
    # abort bumps the epoch once more after the fence (as Kafka's does).
    bumps = 2 if level >= 2 else 1
    h = await Harness(transaction_version_level=level).load_all()
    pid, epoch = await h.producer("a")
    assert await h.add("a", pid, epoch, ("t", 0), ("u", 1)) is E.none
    # A new instance of the producer (the old one is a zombie now).
    r = await h.init("a")
    assert r.error is E.concurrent_transactions  # retry once the abort completes
    await h.settle()
    assert states(h.log, "a") == ["Empty", "Ongoing", "PrepareAbort", "CompleteAbort"]
    markers = h.markers.for_txn("a")
    assert {(m.partition, m.producer_epoch, m.commit) for m in markers} == {
        (("t", 0), epoch + bumps, False), (("u", 1), epoch + bumps, False)
    }
    # The zombie cannot go on, at any API version.
    assert await h.add("a", pid, epoch, ("t", 1)) is E.producer_fenced
    assert await h.add("a", pid, epoch, ("t", 1), api_version=1) is E.invalid_producer_epoch
    assert (await h.end("a", pid, epoch)).error is E.producer_fenced
    assert (await h.end("a", pid, epoch, api_version=1)).error is E.invalid_producer_epoch
    # The new instance retries and gets an epoch of its own.
    r = await h.init("a")
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, pid, epoch + bumps + 1)
    assert h.markers.violations == []


async def test_init_while_a_transaction_completes_waits() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch)
    h.markers.fail(("t", 0), E.not_leader_or_follower)
    assert (await h.end("a", pid, epoch)).error is E.none
    assert (await h.init("a")).error is E.concurrent_transactions
    await h.advance(200)
    assert states(h.log, "a")[-1] == "CompleteCommit"
    assert (await h.init("a")).producer_epoch == epoch + 1


async def test_kip_360_a_producer_recovers_with_its_own_epoch() -> None:
    h = await Harness().load_all()
    for _ in range(3):
        pid, epoch = await h.producer("a")
    assert epoch == 2
    r = await h.init("a", producer_id=pid, producer_epoch=epoch)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, pid, epoch + 1)
    # The same request again (its answer was lost): the same epoch, no new bump.
    r = await h.init("a", producer_id=pid, producer_epoch=epoch)
    assert (r.error, r.producer_epoch) == (E.none, epoch + 1)
    # An older epoch, or another producer id, is a fenced producer.
    for old_epoch in (0, 1):
        stale = await h.init("a", producer_id=pid, producer_epoch=old_epoch)
        assert stale.error is E.producer_fenced
    assert (await h.init("a", producer_id=pid + 7, producer_epoch=2)).error is E.producer_fenced
    # Clients before InitProducerId v4 do not know PRODUCER_FENCED.
    old = await h.init("a", producer_id=pid, producer_epoch=0, api_version=3)
    assert (old.error, old.producer_id, old.producer_epoch) == (E.invalid_producer_epoch, -1, -1)


async def test_kip_360_an_unknown_id_is_a_new_producer() -> None:
    # The producer's id expired meanwhile: it gets the new producer id.
    h = await Harness().load_all()
    r = await h.init("a", producer_id=77, producer_epoch=3)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 0)


def _seed(h: Harness, txn: str, *, pid: int, epoch: int, state: TxnState = TxnState.EMPTY,
          prev: int = -1) -> None:
    value = TxnLogValue(pid, epoch, 60_000, state.state_id, None, 1, -1, previous_producer_id=prev)
    h.log.partitions.setdefault(h.partition(txn), []).append((encode_key(txn), encode_value(value)))


async def test_exhausted_epochs_move_the_id_to_a_new_producer_id() -> None:
    h = Harness()
    _seed(h, "a", pid=500, epoch=MAX_EPOCH - 2)
    await h.load_all()
    assert await h.producer("a") == (500, MAX_EPOCH - 1)  # the last usable epoch
    assert await h.producer("a") == (1000, 0)  # no epoch left: a new producer id
    assert h.md("a").prev_producer_id == 500


async def test_kip_360_retry_across_a_producer_id_rotation() -> None:
    h = Harness()
    _seed(h, "a", pid=500, epoch=MAX_EPOCH - 1)
    await h.load_all()
    r = await h.init("a", producer_id=500, producer_epoch=MAX_EPOCH - 1)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 0)
    # The answer was lost and the producer asks again with what it had: the same answer.
    r = await h.init("a", producer_id=500, producer_epoch=MAX_EPOCH - 1)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 0)
    # An old producer id at an epoch that was not exhausted is a zombie.
    assert (await h.init("a", producer_id=500, producer_epoch=3)).error is E.producer_fenced


async def test_no_producer_id_to_be_had() -> None:
    h = await Harness().load_all()
    h.pids.fail_with = RuntimeError("the controller is unreachable")
    assert (await h.init("a")).error is E.coordinator_not_available
    assert h.coord.transaction("a") is None and h.log.appends == 0
    h.pids.fail_with = LogAppendError(E.coordinator_load_in_progress)
    assert (await h.init("a")).error is E.coordinator_load_in_progress
    assert (await h.init("a")).error is E.none


async def test_a_failed_write_changes_nothing() -> None:
    h = await Harness().load_all()
    h.log.fail_with = LogAppendError(E.not_enough_replicas)
    assert (await h.init("a")).error is E.coordinator_not_available
    assert h.coord.transaction("a") is None  # as if it had not been asked
    pid, epoch = await h.producer("a")
    h.log.fail_with = LogAppendError(E.not_leader_or_follower)
    assert (await h.init("a")).error is E.not_coordinator
    md = h.md("a")
    assert (md.producer_epoch, md.pending_state, md.state) == (epoch, None, TxnState.EMPTY)
    h.log.fail_with = TimeoutError()
    assert (await h.init("a")).error is E.coordinator_not_available
    h.log.fail_with = LogAppendError(E.message_too_large)
    assert (await h.init("a")).error is E.unknown_server_error
    assert (await h.init("a")).producer_epoch == epoch + 1
    assert states(h.log, "a") == ["Empty", "Empty"]


@pytest.mark.parametrize("level", [0, 2], ids=["tv0", "tv2"])
async def test_a_failed_fence_keeps_the_zombie_fenced(level: int) -> None:
    bumps = 2 if level >= 2 else 1
    h = await Harness(transaction_version_level=level).load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch)
    h.log.fail_with = LogAppendError(E.request_timed_out)
    assert (await h.init("a")).error is E.coordinator_not_available
    md = h.md("a")
    # The fenced epoch may have been written: it stays, and is not bumped again.
    assert (md.state, md.producer_epoch, md.has_failed_epoch_fence) == (
        TxnState.ONGOING, epoch + 1, True
    )
    assert await h.add("a", pid, epoch, ("t", 1)) is E.producer_fenced
    assert (await h.init("a")).error is E.concurrent_transactions
    await h.settle()
    aborted = epoch + bumps
    assert [v.producer_epoch for v in _values(h, "a")] == [epoch, epoch, aborted, aborted]
    assert (await h.init("a")).producer_epoch == aborted + 1


def _values(h: Harness, txn: str) -> list[TxnLogValue]:
    return [v for v in history(h.log, txn) if v is not None]

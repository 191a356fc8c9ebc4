"""AddPartitionsToTxn (client v0-v3, broker v4+ batched and verify-only), AddOffsetsToTxn
and EndTxn (v1 rules and transactions v2 epoch bumps), markers and their retries."""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode as E

from odradek.broker.group.partitioning import partition_for
from odradek.broker.txn.coordinator import AddPartitionsTxn
from odradek.broker.txn.log import LogAppendError
from odradek.broker.txn.metadata import MAX_EPOCH, TxnState
from odradek.broker.txn.records import TxnLogValue, encode_key, encode_value
from tests.unit.broker.txn.txn_harness import Harness, history, spin, states

V2_ADD = 5  # AddPartitionsToTxn v4+ is transactions v2
V2_END = 5  # EndTxn v5+ is transactions v2


async def test_add_partitions_checks_the_producer() -> None:
    h = await Harness().load_all()
    assert await h.add("a", 1, 0) is E.invalid_producer_id_mapping  # unknown id
    pid, epoch = await h.producer("a")
    assert await h.add("a", pid + 1, epoch) is E.invalid_producer_id_mapping
    assert await h.add("a", pid, epoch + 1) is E.producer_fenced
    assert await h.add("a", pid, epoch + 1, api_version=1) is E.invalid_producer_epoch
    assert await h.add("", pid, epoch) is E.invalid_request
    assert await h.coord.add_partitions_to_txn("a", pid, epoch, []) == {}
    assert h.md("a").state is TxnState.EMPTY
    assert h.log.appends == 1


async def test_unknown_partitions_fail_the_request() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    result = await h.coord.add_partitions_to_txn("a", pid, epoch, [("t", 0), ("t", 9), ("x", 0)])
    assert result == {
        ("t", 0): E.operation_not_attempted,
        ("t", 9): E.unknown_topic_or_partition,
        ("x", 0): E.unknown_topic_or_partition,
    }
    assert h.md("a").state is TxnState.EMPTY


async def test_partitions_join_the_ongoing_transaction() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    h.clock.advance(5)
    assert await h.add("a", pid, epoch, ("t", 0)) is E.none
    start = h.md("a").txn_start_timestamp
    h.clock.advance(5)
    assert await h.add("a", pid, epoch, ("t", 1), ("u", 0)) is E.none
    md = h.md("a")
    assert md.partitions == {("t", 0), ("t", 1), ("u", 0)}
    assert md.txn_start_timestamp == start  # one transaction, started at its first add
    appends = h.log.appends
    assert await h.add("a", pid, epoch, ("t", 1)) is E.none
    assert h.log.appends == appends  # nothing new: answered without a write
    assert states(h.log, "a") == ["Empty", "Ongoing", "Ongoing"]


async def test_a_failed_add_changes_nothing() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch, ("t", 0))
    h.log.fail_with = LogAppendError(E.not_enough_replicas_after_append)
    assert await h.add("a", pid, epoch, ("t", 1)) is E.coordinator_not_available
    md = h.md("a")
    assert (md.partitions, md.pending_state) == ({("t", 0)}, None)
    assert await h.add("a", pid, epoch, ("t", 1)) is E.none


async def test_add_offsets_adds_the_groups_offsets_partition() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    assert await h.coord.add_offsets_to_txn("a", pid, epoch, "my-group") is E.none
    assert h.md("a").partitions == {("__consumer_offsets", partition_for("my-group", 50))}
    assert h.md("a").client_transaction_version == 0
    assert await h.coord.add_offsets_to_txn("a", pid, 9, "g", api_version=1) is (
        E.invalid_producer_epoch
    )
    assert await h.coord.add_offsets_to_txn("a", pid, 9, "g") is E.producer_fenced


async def test_verify_only_answers_what_the_transaction_holds() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    verify = h.coord.verify_partitions_in_txn
    assert verify("a", pid, epoch, [("t", 0)]) == {("t", 0): E.transaction_abortable}
    await h.add("a", pid, epoch, ("t", 0))
    assert verify("a", pid, epoch, [("t", 0), ("t", 1)]) == {
        ("t", 0): E.none, ("t", 1): E.transaction_abortable
    }
    assert verify("a", pid, epoch + 1, [("t", 0)]) == {("t", 0): E.producer_fenced}
    assert verify("a", pid + 1, epoch, [("t", 0)]) == {("t", 0): E.invalid_producer_id_mapping}
    assert verify("b", pid, epoch, [("t", 0)]) == {("t", 0): E.invalid_producer_id_mapping}
    assert verify("", pid, epoch, [("t", 0)]) == {("t", 0): E.invalid_request}
    assert h.log.appends == 2  # verifying writes nothing
    h.markers.gate = asyncio.Event()
    await h.end("a", pid, epoch)
    assert verify("a", pid, epoch, [("t", 0)]) == {("t", 0): E.concurrent_transactions}
    h.markers.gate.set()


async def test_batched_requests_of_brokers() -> None:
    h = await Harness().load_all()
    pa, ea = await h.producer("a")
    pb, eb = await h.producer("b")
    await h.add("a", pa, ea, ("t", 0))
    result = await h.coord.add_partitions_batch(
        [
            AddPartitionsTxn("a", pa, ea, frozenset({("t", 0), ("t", 2)}), verify_only=True),
            AddPartitionsTxn("b", pb, eb, frozenset({("u", 1)})),
            AddPartitionsTxn("c", 1, 0, frozenset({("t", 9)}), verify_only=True),
        ]
    )
    assert result == {
        "a": {("t", 0): E.none, ("t", 2): E.transaction_abortable},
        "b": {("u", 1): E.none},
        "c": {("t", 9): E.unknown_topic_or_partition},
    }
    # An add from a broker (v4+) is a transactions v2 client's.
    assert h.md("b").client_transaction_version == 2


async def test_commit() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch, ("t", 0), ("u", 1))
    h.markers.gate = asyncio.Event()
    r = await h.end("a", pid, epoch, commit=True)
    # Answered once PrepareCommit is durable, before any marker is written.
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, -1, -1)
    assert states(h.log, "a") == ["Empty", "Ongoing", "PrepareCommit"]
    assert h.markers.written == []
    h.markers.gate.set()
    await h.settle()
    assert states(h.log, "a") == ["Empty", "Ongoing", "PrepareCommit", "CompleteCommit"]
    (request,) = h.markers.requests
    coordinator_epoch = h.coord.coordinator_epoch(h.partition("a"))
    assert (request.producer_id, request.producer_epoch, request.coordinator_epoch) == (
        pid, epoch, coordinator_epoch
    )
    assert (request.commit, request.partitions) == (True, frozenset({("t", 0), ("u", 1)}))
    md = h.md("a")
    assert (md.state, md.partitions, md.producer_epoch) == (TxnState.COMPLETE_COMMIT, set(), epoch)
    last = history(h.log, "a")[-1]
    assert last is not None and last.partitions == ()
    assert h.markers.violations == []


async def test_v1_end_txn_rules_and_retries() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    assert (await h.end("a", pid, epoch)).error is E.invalid_txn_state  # nothing to end
    await h.add("a", pid, epoch)
    assert (await h.end("a", pid + 1, epoch)).error is E.invalid_producer_id_mapping
    assert (await h.end("a", pid, epoch + 1)).error is E.producer_fenced
    assert (await h.end("a", pid, epoch + 1, api_version=1)).error is E.invalid_producer_epoch
    assert (await h.end("b", pid, epoch)).error is E.invalid_producer_id_mapping
    assert (await h.end("", pid, epoch)).error is E.invalid_request
    h.markers.gate = asyncio.Event()
    assert (await h.end("a", pid, epoch, commit=True)).error is E.none
    # While it completes: the same request waits, the opposite one is refused.
    assert (await h.end("a", pid, epoch, commit=True)).error is E.concurrent_transactions
    assert (await h.end("a", pid, epoch, commit=False)).error is E.concurrent_transactions
    # The next transaction's first add waits for the completion, a bounded time.
    waiting = asyncio.ensure_future(h.add("a", pid, epoch, ("t", 1)))
    await spin()
    assert not waiting.done()
    h.clock.advance(h.coord.concurrent_transaction_wait_ms)
    assert await waiting is E.concurrent_transactions
    h.markers.gate.set()
    await h.settle()
    # Completed: a retry succeeds, the opposite outcome is an invalid state.
    assert (await h.end("a", pid, epoch, commit=True)).error is E.none
    assert (await h.end("a", pid, epoch, commit=False)).error is E.invalid_txn_state
    # The next transaction keeps the epoch (v1).
    assert await h.add("a", pid, epoch, ("t", 1)) is E.none
    assert (await h.end("a", pid, epoch, commit=False)).error is E.none
    await h.settle()
    assert (await h.end("a", pid, epoch, commit=False)).error is E.none
    assert (await h.end("a", pid, epoch, commit=True)).error is E.invalid_txn_state
    assert states(h.log, "a")[-2:] == ["PrepareAbort", "CompleteAbort"]


async def test_a_failed_prepare_write_changes_nothing() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch)
    h.log.fail_with = LogAppendError(E.kafka_storage_error)
    assert (await h.end("a", pid, epoch)).error is E.not_coordinator
    md = h.md("a")
    assert (md.state, md.pending_state, md.partitions) == (TxnState.ONGOING, None, {("t", 0)})
    assert h.markers.requests == []
    assert (await h.end("a", pid, epoch)).error is E.none


async def test_v2_every_end_txn_bumps_the_epoch() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch, ("t", 0), api_version=V2_ADD)
    r = await h.end("a", pid, epoch, api_version=V2_END)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, pid, epoch + 1)
    await h.settle()
    assert {(m.producer_epoch, m.commit) for m in h.markers.for_txn("a")} == {(epoch + 1, True)}
    assert h.md("a").producer_epoch == epoch + 1
    # A retry (the epoch it had) succeeds with the current epoch; the old epoch is fenced
    # for anything else.
    r = await h.end("a", pid, epoch, api_version=V2_END)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, pid, epoch + 1)
    assert await h.add("a", pid, epoch, api_version=V2_ADD) is E.producer_fenced
    # The next transaction runs at the new epoch.
    assert await h.add("a", pid, epoch + 1, api_version=V2_ADD) is E.none
    r = await h.end("a", pid, epoch + 1, commit=False, api_version=V2_END)
    assert (r.error, r.producer_epoch) == (E.none, epoch + 2)
    await h.settle()
    assert states(h.log, "a")[-2:] == ["PrepareAbort", "CompleteAbort"]


async def test_v2_end_txn_table() -> None:
    """Kafka's table for v2 EndTxn on an idle transaction (retry = the epoch before the
    last bump, current = the current epoch)."""
    h = await Harness().load_all()
    await h.producer("a")
    pid, e0 = await h.producer("a")
    assert e0 == 1

    async def end(epoch: int, commit: bool) -> E:
        r = await h.end("a", pid, epoch, commit, api_version=V2_END)
        await h.settle()
        return r.error

    # Empty: abort-current bumps (an abort is always allowed); commit-current is invalid;
    # a retry epoch is fenced.
    assert await end(e0, commit=True) is E.invalid_txn_state
    assert await end(e0 - 1, commit=False) is E.producer_fenced
    assert await end(e0 - 1, commit=True) is E.producer_fenced
    assert await end(e0, commit=False) is E.none
    assert h.md("a").state is TxnState.COMPLETE_ABORT
    e1 = h.md("a").producer_epoch
    assert e1 == e0 + 1
    # CompleteAbort: abort-retry is NONE, abort-current bumps, commit is invalid.
    assert await end(e0, commit=False) is E.none
    assert await end(e0, commit=True) is E.invalid_txn_state
    assert await end(e1, commit=True) is E.invalid_txn_state
    assert await end(e1, commit=False) is E.none
    e2 = h.md("a").producer_epoch
    assert e2 == e1 + 1
    # CompleteCommit: commit-retry NONE, abort-retry invalid, commit-current invalid,
    # abort-current bumps.
    await h.add("a", pid, e2, api_version=V2_ADD)
    assert await end(e2, commit=True) is E.none
    e3 = h.md("a").producer_epoch
    assert h.md("a").state is TxnState.COMPLETE_COMMIT
    assert await end(e2, commit=True) is E.none
    assert await end(e2, commit=False) is E.invalid_txn_state
    assert await end(e3, commit=True) is E.invalid_txn_state
    assert await end(e3, commit=False) is E.none
    assert h.md("a").producer_epoch == e3 + 1
    # Older epochs are fenced, other producer ids unknown.
    assert await end(e0, commit=False) is E.producer_fenced
    assert (await h.end("a", pid + 5, e3, api_version=V2_END)).error is (
        E.invalid_producer_id_mapping
    )
    assert h.markers.violations == []


def _seed(h: Harness, txn: str, *, pid: int, epoch: int) -> None:
    value = TxnLogValue(pid, epoch, 60_000, TxnState.EMPTY.state_id, None, 1, -1,
                        client_transaction_version=2)
    h.log.partitions.setdefault(h.partition(txn), []).append((encode_key(txn), encode_value(value)))


async def test_v2_epoch_overflow_continues_with_the_next_producer_id() -> None:
    h = Harness()
    _seed(h, "a", pid=500, epoch=MAX_EPOCH - 2)
    await h.load_all()
    pid, epoch = await h.producer("a")
    assert (pid, epoch) == (500, MAX_EPOCH - 1)
    await h.add("a", pid, epoch, ("t", 0), api_version=V2_ADD)
    h.markers.gate = asyncio.Event()
    r = await h.end("a", pid, epoch, api_version=V2_END)
    # The answer names the producer id to continue with, at epoch 0.
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 0)
    await spin()
    # The markers carry the last epoch of the old producer id.
    (request,) = h.markers.requests
    assert (request.producer_id, request.producer_epoch) == (500, MAX_EPOCH)
    # The producer already uses its new id: told to retry until the completion (v4+ comes
    # from a partition leader verifying a write, which must not wait for markers).
    assert await h.add("a", 1000, 0, api_version=V2_ADD) is E.concurrent_transactions
    h.markers.gate.set()
    await h.settle()
    md = h.md("a")
    assert (md.producer_id, md.producer_epoch, md.prev_producer_id, md.next_producer_id) == (
        1000, 0, 500, -1
    )
    last = history(h.log, "a")[-1]
    assert last is not None and (last.producer_id, last.previous_producer_id) == (1000, 500)
    # A retry with the old producer id and its last epoch succeeds.
    r = await h.end("a", 500, MAX_EPOCH - 1, api_version=V2_END)
    assert (r.error, r.producer_id, r.producer_epoch) == (E.none, 1000, 0)
    assert await h.add("a", 1000, 0, api_version=V2_ADD) is E.none
    assert h.markers.violations == []


async def test_v2_overflow_needs_a_producer_id() -> None:
    h = Harness()
    _seed(h, "a", pid=500, epoch=MAX_EPOCH - 2)
    await h.load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch, api_version=V2_ADD)
    h.pids.fail_with = RuntimeError("no block")
    assert (await h.end("a", pid, epoch, api_version=V2_END)).error is E.coordinator_not_available
    assert h.md("a").state is TxnState.ONGOING
    assert (await h.end("a", pid, epoch, api_version=V2_END)).error is E.none


async def test_markers_are_retried_until_every_partition_has_one() -> None:
    h = await Harness(retry_backoff_ms=100).load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch, ("t", 0), ("t", 1), ("u", 0), ("u", 1))
    h.markers.fail(("t", 0), E.not_leader_or_follower, E.request_timed_out)
    h.markers.fail(("t", 1), E.unsupported_for_message_format)  # cannot hold one: done
    h.markers.fail(("u", 0), E.corrupt_message)  # unexpected: logged and retried
    await h.end("a", pid, epoch)
    await h.settle()
    assert states(h.log, "a")[-1] == "PrepareCommit"
    assert h.md("a").partitions == {("t", 0), ("u", 0)}
    await h.advance(100)
    assert h.md("a").partitions == {("t", 0)}
    h.markers.raise_next = ConnectionError("the leader went away")
    await h.advance(100)
    assert states(h.log, "a")[-1] == "PrepareCommit"
    await h.advance(100)
    assert states(h.log, "a")[-1] == "CompleteCommit"
    assert [len(r.partitions) for r in h.markers.requests] == [4, 2, 1, 1]
    assert h.markers.violations == []


async def test_markers_for_deleted_partitions_are_skipped() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch, ("t", 0), ("t", 2))
    h.markers.gate = asyncio.Event()
    await h.end("a", pid, epoch)
    h.markers.fail(("t", 2), E.unknown_topic_or_partition)
    h.markers.gate.set()
    await h.settle()
    from tests.unit.broker.txn import txn_harness

    txn_harness.TOPICS["t"] = 2  # partition 2 is gone
    try:
        await h.advance(100)
    finally:
        txn_harness.TOPICS["t"] = 3
    assert states(h.log, "a")[-1] == "CompleteCommit"
    assert [set(r.partitions) for r in h.markers.requests] == [{("t", 0), ("t", 2)}]


async def test_a_newer_epoch_seen_by_a_partition_stops_the_markers() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch, ("t", 0))
    h.markers.fail(("t", 0), E.transaction_coordinator_fenced)
    await h.end("a", pid, epoch)
    await h.advance(1000)
    assert len(h.markers.requests) == 1
    assert states(h.log, "a")[-1] == "PrepareCommit"


async def test_a_failed_complete_write_is_retried() -> None:
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch)
    h.markers.gate = asyncio.Event()
    await h.end("a", pid, epoch)
    h.log.fail_with = LogAppendError(E.not_enough_replicas)
    h.markers.gate.set()
    await h.settle()
    assert states(h.log, "a")[-1] == "PrepareCommit"
    assert h.md("a").pending_state is TxnState.COMPLETE_COMMIT  # still completing
    await h.advance(100)
    assert states(h.log, "a")[-1] == "CompleteCommit"
    assert h.md("a").pending_state is None


async def test_the_next_transaction_waits_for_the_previous_ones_completion() -> None:
    """AddPartitionsToTxn arriving while the markers of the previous transaction are being
    written is answered once they are, not CONCURRENT_TRANSACTIONS (which would leave the
    producer's next records unsent for a retry backoff after every commit)."""
    h = await Harness().load_all()
    pid, epoch = await h.producer("a")
    await h.add("a", pid, epoch, ("t", 0))
    h.markers.gate = asyncio.Event()
    assert (await h.end("a", pid, epoch, commit=True)).error is E.none
    waiting = asyncio.ensure_future(h.add("a", pid, epoch, ("t", 1)))
    await spin()
    assert not waiting.done()
    assert states(h.log, "a")[-1] == TxnState.PREPARE_COMMIT.state_name
    h.markers.gate.set()
    assert await waiting is E.none
    md = h.md("a")
    assert (md.state, md.partitions) == (TxnState.ONGOING, {("t", 1)})
    # The previous transaction completed in the log before the next one began.
    assert states(h.log, "a")[-2:] == [TxnState.COMPLETE_COMMIT.state_name,
                                       TxnState.ONGOING.state_name]
    assert h.markers.violations == []

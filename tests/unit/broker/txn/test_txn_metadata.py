"""The transaction state machine: Kafka's table of valid previous states, the two-step
prepare/complete transitions, epoch bumps and exhaustion, KIP-360 recovery and
transactions v2."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from odradek.broker.txn.metadata import (
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    DEAD,
    EMPTY,
    MAX_EPOCH,
    ONGOING,
    PREPARE_ABORT,
    PREPARE_COMMIT,
    PREPARE_EPOCH_FENCE,
    TV_0,
    TV_2,
    VALID_PREVIOUS_STATES,
    IllegalTransition,
    ProducerFenced,
    TransactionMetadata,
    TxnState,
    TxnTransit,
)

NOW = 1_000_000

# Kafka's TransactionState: target state <- the states it may follow, written out again
# here (not derived from the code under test).
KAFKA_TABLE = {
    "Empty": {"Empty", "CompleteCommit", "CompleteAbort"},
    "Ongoing": {"Ongoing", "Empty", "CompleteCommit", "CompleteAbort"},
    "PrepareCommit": {"Ongoing"},
    "PrepareAbort": {"Ongoing", "PrepareEpochFence", "Empty", "CompleteCommit", "CompleteAbort"},
    "CompleteCommit": {"PrepareCommit"},
    "CompleteAbort": {"PrepareAbort"},
    "Dead": {"Empty", "CompleteAbort", "CompleteCommit"},
    "PrepareEpochFence": {"Ongoing"},
}


def md_in(state: TxnState, epoch: int = 3, **kw: object) -> TransactionMetadata:
    parts = frozenset({("t", 0)}) if state in (ONGOING, PREPARE_COMMIT, PREPARE_ABORT) else None
    args: dict[str, object] = {
        "producer_id": 100,
        "producer_epoch": epoch,
        "last_producer_epoch": epoch - 1,
        "txn_timeout_ms": 60_000,
        "state": state,
        "partitions": parts or frozenset(),
        "txn_start_timestamp": NOW - 10 if parts else -1,
        "txn_last_update_timestamp": NOW - 5,
    }
    args.update(kw)
    return TransactionMetadata("txn", **args)  # type: ignore[arg-type]


def test_state_ids_and_names_are_kafkas() -> None:
    assert [(s.state_id, s.state_name) for s in TxnState] == [
        (0, "Empty"), (1, "Ongoing"), (2, "PrepareCommit"), (3, "PrepareAbort"),
        (4, "CompleteCommit"), (5, "CompleteAbort"), (6, "Dead"), (7, "PrepareEpochFence"),
    ]
    assert {s.state_name for s in TxnState if s.expiration_allowed} == {
        "Empty", "CompleteCommit", "CompleteAbort"
    }
    assert {
        to.state_name: {s.state_name for s in prev} for to, prev in VALID_PREVIOUS_STATES.items()
    } == KAFKA_TABLE


@pytest.mark.parametrize(
    ("current", "target"), list(itertools.product(TxnState, TxnState)),
    ids=lambda s: s.state_name,
)
def test_every_transition_of_the_table(current: TxnState, target: TxnState) -> None:
    md = md_in(current)
    if current.state_name in KAFKA_TABLE[target.state_name]:
        transit = md.prepare_transition(target)
        assert transit.state is target and md.pending_state is target
        assert md.state is current  # nothing changes before the record is written
        with pytest.raises(IllegalTransition):
            md.prepare_transition(target)  # one pending transition at a time
        md.abort_transition()
        assert md.pending_state is None
    else:
        with pytest.raises(IllegalTransition):
            md.prepare_transition(target)
        assert md.pending_state is None


def test_prepare_refuses_bad_ids_and_epochs() -> None:
    md = md_in(EMPTY)
    with pytest.raises(IllegalTransition):
        md.prepare_transition(ONGOING, producer_id=-1)
    with pytest.raises(IllegalTransition):
        md.prepare_transition(ONGOING, producer_epoch=-1)
    fresh = md_in(EMPTY, epoch=-1)
    assert fresh.prepare_dead().state is DEAD  # a never-initialized id may still expire
    assert md.pending_state is None


def test_complete_requires_the_pending_transition() -> None:
    md = md_in(EMPTY)
    transit = md.prepare_add_partitions(frozenset({("t", 1)}), NOW, TV_0)
    other = md_in(EMPTY).prepare_increment_producer_epoch(1000, None, NOW)
    with pytest.raises(IllegalTransition):
        md.complete_transition(other)  # not the pending one
    md.complete_transition(transit)
    assert (md.state, md.partitions, md.txn_start_timestamp) == (ONGOING, {("t", 1)}, NOW)
    with pytest.raises(IllegalTransition):
        md.complete_transition(transit)  # nothing pending any more


def test_increment_epoch_kip_360() -> None:
    new = md_in(EMPTY, epoch=-1, last_producer_epoch=-1)
    t = new.prepare_increment_producer_epoch(5000, None, NOW)
    assert (t.producer_epoch, t.last_producer_epoch, t.txn_timeout_ms) == (0, -1, 5000)
    new.complete_transition(t)
    assert (new.producer_epoch, new.txn_last_update_timestamp) == (0, NOW)

    # A new producer instance: bump, no previous epoch to remember.
    md = md_in(COMPLETE_COMMIT, epoch=5, last_producer_epoch=2)
    t = md.prepare_increment_producer_epoch(1000, None, NOW)
    assert (t.producer_epoch, t.last_producer_epoch) == (6, -1)
    md.abort_transition()
    # The current producer recovering (its epoch given): bump and remember the old one.
    t = md.prepare_increment_producer_epoch(1000, 5, NOW)
    assert (t.producer_epoch, t.last_producer_epoch) == (6, 5)
    md.complete_transition(t)
    # The same request retried (its answer lost): the same epoch again.
    t = md.prepare_increment_producer_epoch(1000, 5, NOW)
    assert (t.producer_epoch, t.last_producer_epoch) == (6, 5)
    md.complete_transition(t)
    # Anything else is a fenced producer.
    for stale in (4, 3, 7):
        with pytest.raises(ProducerFenced):
            md.prepare_increment_producer_epoch(1000, stale, NOW)
        assert md.pending_state is None


def test_exhausted_epochs_need_a_new_producer_id() -> None:
    md = md_in(EMPTY, epoch=MAX_EPOCH - 1)
    assert md.is_producer_epoch_exhausted and not md_in(EMPTY, epoch=MAX_EPOCH - 2)\
        .is_producer_epoch_exhausted
    with pytest.raises(IllegalTransition):
        md.prepare_increment_producer_epoch(1000, None, NOW)
    # A retry of the bump that exhausted it needs no bump: allowed.
    md.last_producer_epoch = MAX_EPOCH - 2
    assert md.prepare_increment_producer_epoch(1000, MAX_EPOCH - 2, NOW).producer_epoch == (
        MAX_EPOCH - 1
    )
    md.abort_transition()
    t = md.prepare_producer_id_rotation(200, 1000, NOW, record_last_epoch=True)
    assert (t.producer_id, t.prev_producer_id, t.producer_epoch, t.last_producer_epoch) == (
        200, 100, 0, MAX_EPOCH - 1
    )
    md.complete_transition(t)
    assert (md.producer_id, md.producer_epoch, md.prev_producer_id) == (200, 0, 100)
    ongoing = md_in(ONGOING)
    with pytest.raises(IllegalTransition):
        ongoing.prepare_producer_id_rotation(300, 1000, NOW, record_last_epoch=False)


def test_add_partitions_starts_a_transaction_once() -> None:
    md = md_in(COMPLETE_ABORT)
    t = md.prepare_add_partitions(frozenset({("t", 0)}), NOW, TV_0)
    assert t.txn_start_timestamp == NOW
    md.complete_transition(t)
    t = md.prepare_add_partitions(frozenset({("u", 1)}), NOW + 50, TV_0)
    assert t.txn_start_timestamp == NOW and t.partitions == {("t", 0), ("u", 1)}
    md.complete_transition(t)
    assert md.txn_last_update_timestamp == NOW + 50


def test_fencing_bumps_the_epoch_once() -> None:
    md = md_in(ONGOING, epoch=7)
    fence = md.prepare_fence_producer_epoch()
    assert (fence.state, fence.producer_epoch) == (PREPARE_EPOCH_FENCE, 8)
    abort = md.prepare_fenced_abort(fence, TV_0, NOW)
    # The fenced epoch is in memory at once (and stays there if the write fails).
    assert (md.producer_epoch, md.last_producer_epoch, md.pending_state) == (8, -1, PREPARE_ABORT)
    assert (abort.state, abort.producer_epoch) == (PREPARE_ABORT, 8)
    md.abort_transition()
    md.has_failed_epoch_fence = True
    again = md.prepare_fence_producer_epoch()
    assert again.producer_epoch == 8  # not bumped twice for one fence
    md.complete_transition(md.prepare_fenced_abort(again, TV_0, NOW))
    assert (md.state, md.producer_epoch) == (PREPARE_ABORT, 8)
    md.complete_transition(md.prepare_complete(NOW))
    assert md.state is COMPLETE_ABORT and not md.has_failed_epoch_fence
    at_max = md_in(ONGOING, epoch=MAX_EPOCH)
    assert at_max.prepare_fence_producer_epoch().producer_epoch == MAX_EPOCH
    with pytest.raises(IllegalTransition):
        md_in(ONGOING).prepare_fenced_abort(fence, TV_0, NOW)  # no fence pending


def test_fenced_abort_with_transactions_v2_bumps_again() -> None:
    md = md_in(ONGOING, epoch=7)
    abort = md.prepare_fenced_abort(md.prepare_fence_producer_epoch(), TV_2, NOW)
    assert (abort.producer_epoch, abort.last_producer_epoch) == (9, 8)
    md.complete_transition(abort)
    assert md.producer_epoch == 9


def test_v1_end_keeps_the_epoch() -> None:
    md = md_in(ONGOING, epoch=4, last_producer_epoch=2)
    t = md.prepare_abort_or_commit(PREPARE_COMMIT, TV_0, -1, NOW, no_partition_added=False)
    assert (t.producer_epoch, t.last_producer_epoch, t.txn_start_timestamp) == (4, 2, NOW - 10)
    md.complete_transition(t)
    md.remove_partition(("t", 0))
    c = md.prepare_complete(NOW + 1)
    assert (c.state, c.producer_epoch, c.partitions) == (COMPLETE_COMMIT, 4, frozenset())
    md.complete_transition(c)
    with pytest.raises(IllegalTransition):
        md.remove_partition(("t", 0))  # only while completing


def test_v2_end_bumps_the_epoch_and_overflows_to_the_next_producer_id() -> None:
    md = md_in(ONGOING, epoch=4)
    t = md.prepare_abort_or_commit(PREPARE_COMMIT, TV_2, -1, NOW, no_partition_added=False)
    assert (t.producer_epoch, t.last_producer_epoch, t.client_transaction_version) == (5, 4, 2)
    md.complete_transition(t)
    c = md.prepare_complete(NOW)
    assert (c.producer_id, c.producer_epoch) == (100, 5)
    md.complete_transition(c)

    last = md_in(ONGOING, epoch=MAX_EPOCH - 1)
    t = last.prepare_abort_or_commit(PREPARE_ABORT, TV_2, 101, NOW, no_partition_added=False)
    assert (t.producer_epoch, t.next_producer_id) == (MAX_EPOCH, 101)
    last.complete_transition(t)
    c = last.prepare_complete(NOW)
    assert (c.producer_id, c.prev_producer_id, c.producer_epoch, c.next_producer_id) == (
        101, 100, 0, -1
    )
    assert c.last_producer_epoch == MAX_EPOCH - 1  # the last epoch the client saw
    last.complete_transition(c)
    assert (last.producer_id, last.producer_epoch, last.state) == (101, 0, COMPLETE_ABORT)

    broken = md_in(ONGOING, epoch=MAX_EPOCH)
    t = broken.prepare_abort_or_commit(PREPARE_ABORT, TV_2, -1, NOW, no_partition_added=False)
    assert t.producer_epoch == MAX_EPOCH  # an abort may still go through, without overflow


def test_v2_abort_from_an_idle_state() -> None:
    for state in (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT):
        md = md_in(state, epoch=2)
        t = md.prepare_abort_or_commit(PREPARE_ABORT, TV_2, -1, NOW, no_partition_added=True)
        assert (t.txn_start_timestamp, t.partitions) == (NOW, frozenset())
        md.complete_transition(t)
        md.complete_transition(md.prepare_complete(NOW))
        assert (md.state, md.producer_epoch) == (COMPLETE_ABORT, 3)
    # Transactions v1 never abort from an idle state: completing it is refused.
    md = md_in(EMPTY)
    t = md.prepare_abort_or_commit(PREPARE_ABORT, TV_0, -1, NOW, no_partition_added=True)
    with pytest.raises(IllegalTransition):
        md.complete_transition(t)


def test_complete_checks_what_a_transition_may_change() -> None:
    md = md_in(ONGOING)
    t = md.prepare_abort_or_commit(PREPARE_COMMIT, TV_0, -1, NOW, no_partition_added=False)
    md.abort_transition()
    md.prepare_transition(PREPARE_COMMIT)
    with pytest.raises(IllegalTransition):
        md.complete_transition(_with(t, producer_epoch=9))
    with pytest.raises(IllegalTransition):
        md.complete_transition(_with(t, partitions=frozenset()))
    with pytest.raises(IllegalTransition):
        md.complete_transition(_with(t, txn_timeout_ms=1))
    empty = md_in(COMPLETE_COMMIT, epoch=3)
    empty.prepare_transition(EMPTY)
    with pytest.raises(IllegalTransition):  # an epoch jump that is not a bump
        empty.complete_transition(_with(empty.snapshot(), state=EMPTY, producer_epoch=7,
                                        txn_start_timestamp=-1))
    ongoing = md_in(ONGOING)
    ongoing.prepare_transition(ONGOING)
    with pytest.raises(IllegalTransition):  # partitions never leave an ongoing transaction
        ongoing.complete_transition(_with(ongoing.snapshot(), partitions=frozenset()))
    dead = md_in(EMPTY)
    with pytest.raises(IllegalTransition):  # Dead is removed, never made current
        dead.complete_transition(dead.prepare_dead())
    fence = md_in(ONGOING)
    with pytest.raises(IllegalTransition):
        fence.complete_transition(fence.prepare_fence_producer_epoch())


def _with(transit: TxnTransit, **changes: Any) -> TxnTransit:
    return dataclasses.replace(transit, **changes)

"""The transaction gauges over a real coordinator (in-memory ``__transaction_state``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.registry import Collector

from odradek.broker.txn_metrics import TxnCollector
from tests.unit.broker.txn.txn_harness import Harness

DOC = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()


def samples(collector: Collector) -> dict[str, float]:
    return {s.name + "".join(f"{{{v}}}" for v in s.labels.values()): s.value
            for m in collector.collect() for s in m.samples}


async def coordinator() -> Harness:
    """``idle`` Empty; ``old`` Ongoing for 45 s (its timeout is 60 s); ``new`` Ongoing for
    5 s; ``done`` CompleteAbort; ``stuck`` PrepareCommit (its markers not written yet)."""
    h = await Harness().load_all()
    pids = {t: await h.producer(t) for t in ("idle", "old", "new", "done", "stuck")}
    await h.add("old", *pids["old"], ("t", 0))
    h.clock.advance(20_000)
    await h.add("stuck", *pids["stuck"], ("t", 1))
    await h.add("done", *pids["done"], ("t", 2))
    await h.end("done", *pids["done"], commit=False)
    await h.settle()
    h.markers.gate = asyncio.Event()  # markers hang: stuck stays in PrepareCommit
    await h.end("stuck", *pids["stuck"])
    h.clock.advance(20_000)
    await h.add("new", *pids["new"], ("u", 0))
    h.clock.advance(5_000)
    return h


def test_transactions_by_state_and_oldest_open() -> None:
    h = asyncio.run(coordinator())
    got = samples(TxnCollector(lambda: h.coord, h.clock.now_ms))
    assert {k: v for k, v in got.items() if k.startswith("odradek_transactions{")} == {
        "odradek_transactions{empty}": 1, "odradek_transactions{ongoing}": 2,
        "odradek_transactions{prepare_commit}": 1, "odradek_transactions{prepare_abort}": 0,
        "odradek_transactions{complete_commit}": 0, "odradek_transactions{complete_abort}": 1,
        "odradek_transactions{prepare_epoch_fence}": 0}
    assert got["odradek_transaction_oldest_open_seconds"] == 45
    assert got["odradek_transaction_coordinator_partitions"] == 4
    assert got["odradek_transaction_coordinator_loading_partitions"] == 0
    # "done" aborted by its producer; "stuck" not completed (its markers hang).
    assert got["odradek_transactions_completed_total{abort}"] == 1
    assert got["odradek_transactions_completed_total{commit}"] == 0
    assert got["odradek_transaction_timeout_aborts_total"] == 0


def test_timeout_aborts_and_completions_are_counted() -> None:
    async def run() -> dict[str, float]:
        h = await coordinator()
        assert h.markers.gate is not None
        h.markers.gate.set()  # "stuck" commits
        # "old" and "new" run past their 60 s timeout; the coordinator's periodic check
        # (on the harness clock) aborts them.
        h.clock.advance(60_000)
        h.coord.abort_timed_out_transactions()
        await h.settle()
        return samples(TxnCollector(lambda: h.coord, h.clock.now_ms))

    got = asyncio.run(run())
    assert got["odradek_transaction_timeout_aborts_total"] == 2
    assert got["odradek_transactions_completed_total{commit}"] == 1
    assert got["odradek_transactions_completed_total{abort}"] == 3


def test_a_node_coordinating_nothing() -> None:
    got = samples(TxnCollector(lambda: None, lambda: 0))
    assert got["odradek_transactions{ongoing}"] == 0
    assert got["odradek_transaction_oldest_open_seconds"] == 0
    assert got["odradek_transaction_coordinator_partitions"] == 0
    h = Harness()  # started, but leading no __transaction_state partition
    got = samples(TxnCollector(lambda: h.coord, h.clock.now_ms))
    assert got["odradek_transaction_coordinator_partitions"] == 0
    assert got["odradek_transaction_oldest_open_seconds"] == 0


def test_every_transaction_metric_is_documented() -> None:
    names = {m.name for m in TxnCollector(lambda: None, lambda: 0).collect()}
    assert len(names) == 6
    for name in names:
        assert f"`{name}`" in DOC or f"`{name}_total`" in DOC, \
            f"{name} is not in docs/metrics.md"

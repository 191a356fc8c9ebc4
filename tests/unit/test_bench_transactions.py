"""The transactions benchmark's bookkeeping (tests/bench/transactions.py), without a
cluster: the order of the alternating runs, how runs add up, and its registration."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench import run, transactions
from tests.bench.single_broker import RECORD


def fake_run(delivered: int, elapsed: float, commits: list[float]) -> dict[str, Any]:
    return transactions._derived({
        "delivered": delivered, "errors": 0, "elapsed": elapsed, "cpu_s": elapsed / 2,
        "wall": elapsed + 1, "nodes_cpu_s": elapsed, "machine_cpu_s": 2 * elapsed,
        "load_average": 3.0, "commits": commits})


def test_runs_alternate_abba_and_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, float, str | None]] = []

    def phase(bootstrap: str, topic: str, seconds: float, tid: str | None, commit_ms: float,
              nodes: Any = ()) -> dict[str, Any]:
        calls.append((topic, seconds, tid))
        if tid is None:
            return fake_run(10_000, 5.0, [])
        return fake_run(5_000, 5.0, [100.0, 300.0] if topic == "txn-0" else [200.0])

    monkeypatch.setattr(transactions, "produce_phase", phase)
    args = transactions.TransactionsArgs(seconds=10, rounds=2)
    idem, txn = transactions.alternate("b:1", args, ())
    assert calls == [("idem-0", 5, None), ("txn-0", 5, "bench-txn"),
                     ("txn-1", 5, "bench-txn"), ("idem-1", 5, None)]
    assert idem["mb_s"] == pytest.approx(20_000 * RECORD / 10 / 1e6)
    assert txn["mb_s"] == pytest.approx(idem["mb_s"] / 2)
    # Percentiles over every commit of every run, not an average of the runs' own.
    assert (txn["transactions"], txn["commit_p50"], txn["commit_max"]) == (3, 200.0, 300.0)
    assert txn["commit_share"] == pytest.approx(0.6 / 10)
    assert txn["nodes_cpu_cores"] == pytest.approx(10 / 12)
    assert "commit_p50" not in idem and idem["transactions"] == 0


def test_registered_in_the_runner_with_its_peer_figures() -> None:
    args = run.parse_args(["--suite", "transactions", "--peer", "kafka", "--commit-ms", "50",
                           "--txn-rounds", "4"])
    assert [s.label for s in run.plan(args.suites, args.peer)] == [
        "transactions", "transactions on kafka"]
    assert (args.commit_ms, args.txn_rounds) == (50, 4)
    assert "transactions" in run.DEFAULT
    keys = {c.key for c in run.compared("transactions")}
    assert {"txn_mb_s", "idempotent_mb_s", "txn_vs_idempotent", "txn_e2e_p99_ms"} <= keys

"""``odradek verify --workload txn`` end to end: a short seeded fault run of transactional
writers and read_committed readers that must find no anomalies, and its negative controls
(readers that read read_uncommitted while the history says read_committed; nodes that serve
read_committed reads past the last stable offset), which must find what they break.

Both start three real node processes, in network namespaces where this machine allows it
(in CI, CI=true, it must), and drive them with confluent-kafka and kafka-python clients.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from odradek.broker.verify import history
from odradek.broker.verify.faults import PROCESS_KINDS
from odradek.broker.verify.runner import Options, run
from tests.chaos.test_verify import fault_phases, use_netns

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.mark.timeout(240)
def test_short_transactional_fault_run_finds_no_anomalies(tmp_path: Path) -> None:
    """25 s, RF=3, min.insync.replicas=2; a node kill, a pause or a crash losing unflushed
    writes every 8 s (with namespaces also an isolated node) from a fixed seed."""
    netns = use_netns()
    kinds = [*PROCESS_KINDS, *(["isolate"] if netns else [])]
    outcome = run(Options(duration=20, interval=7, seed=20261207, faults=kinds, netns=netns,
                          fault_min=3, fault_max=5, partitions=6, workload="txn",
                          out=tmp_path / "run"))
    result = outcome.result
    assert outcome.ok, (f"anomalies {result.counts()}, errors {outcome.errors}; report "
                        f"{outcome.report}\n{result.summary()}")

    # The workload really ran: transactions committed and aborted (on purpose and by
    # fencing), read back by every read_committed reader; the read_uncommitted control saw
    # aborted records, so their absence elsewhere means something; the LSO was observed.
    s = result.stats
    assert s["transactions"]["committed"] >= 100, s["transactions"]
    assert s["transactions"]["aborted"] >= 10, s["transactions"]
    assert s["control_aborted_reads"] > 0, s
    assert s["lso_observations"] > 0, s
    events = history.read(outcome.run_dir / "history.jsonl")
    ends = list(history.iter_type(events, history.TxnEnd))
    assert any("fenced" in e.detail for e in ends), "no transaction was fenced"
    polled = Counter(e.client for e in history.iter_type(events, history.Poll))
    assert set(polled) >= {"ckrc", "kprc", "ckgrouprc", "ckru"}, polled
    finals = list(history.iter_type(events, history.FinalRead))
    assert sorted(f.partition for f in finals) == list(range(6))
    assert all(f.isolation == "read_committed" for f in finals)
    phases = fault_phases(events)
    assert sum(c["start"] for c in phases.values()) >= 2, phases


@pytest.mark.timeout(240)
def test_negative_control_reading_uncommitted_finds_aborted_reads(tmp_path: Path) -> None:
    """The readers and the final read use read_uncommitted while the history claims
    read_committed (--txn-misread): the aborted transactions' records, really in the log,
    must be reported as aborted reads."""
    netns = use_netns()
    outcome = run(Options(duration=8, interval=30, seed=7, faults=[], netns=netns,
                          partitions=3, workload="txn", txn_misread=True,
                          out=tmp_path / "control"))
    counts = outcome.result.counts()
    assert counts["aborted_read"] > 0, outcome.result.summary()
    assert not outcome.ok


@pytest.mark.timeout(240)
def test_negative_control_in_the_broker_serving_past_the_lso_finds_uncommitted_reads(
        tmp_path: Path) -> None:
    """The nodes run with the fault injection read-committed-past-lso (--txn-past-lso):
    read_committed fetches return records of open transactions, among them those of
    transactions that abort after the fetch. The readers are honest; the checker must see
    aborted reads. (Uncommitted reads of transactions that then commit need a record to
    reach a reader before its writer asks to commit; the writers ask at once, the records
    go out with the commit's flush, so this workload rarely makes them.)"""
    netns = use_netns()
    outcome = run(Options(duration=10, interval=30, seed=11, faults=[], netns=netns,
                          partitions=3, workload="txn", txn_past_lso=True,
                          out=tmp_path / "control"))
    counts = outcome.result.counts()
    assert counts["aborted_read"] > 0, outcome.result.summary()
    assert not outcome.ok
    logs = "".join(p.read_text() for p in (outcome.run_dir / "cluster").rglob("node-*.log"))
    assert "fault injection read-committed-past-lso is ON" in logs

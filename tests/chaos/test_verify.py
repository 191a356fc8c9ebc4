"""``odradek verify`` end to end: a short seeded fault run that must find no anomalies, and
a negative control that must find the losses the checker exists to catch.

Both start real node processes, in network namespaces where this machine allows it (in CI,
CI=true, it must), and drive them with confluent-kafka and kafka-python clients.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from odradek.broker.cli.main import main as odradek
from odradek.broker.verify import history
from odradek.broker.verify.checker import check
from odradek.broker.verify.faults import PROCESS_KINDS
from odradek.broker.verify.runner import Options, run
from tests.requirements import in_ci, netns_unavailable_reason, require_netns

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              # kafka-python's protocol loader warns on every client it builds.
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def use_netns() -> bool:
    """Namespaces when this machine has them; in CI their absence fails the test."""
    if in_ci():
        require_netns()
        return True
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"network namespaces unavailable ({reason}): process faults only")
    return reason is None


def fault_phases(events: list[history.Event]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for e in history.iter_type(events, history.Fault):
        out.setdefault(e.kind, Counter())[e.phase] += 1
    return out


@pytest.mark.timeout(420)
def test_short_fault_run_finds_no_anomalies(tmp_path: Path) -> None:
    """About a minute: RF=3, min.insync.replicas=2, acks=all; one fault every 9 s
    (node kill, pause, active-controller kill, crash losing unflushed writes, and with
    namespaces an isolated node and one-way cuts) from a fixed seed."""
    netns = use_netns()
    kinds = [*PROCESS_KINDS, *(["isolate", "oneway"] if netns else [])]
    outcome = run(Options(duration=45, interval=9, seed=20240611, faults=kinds, netns=netns,
                          replication_factor=3, min_insync=2, acks="all", partitions=6,
                          out=tmp_path / "run"))
    events = history.read(outcome.run_dir / "history.jsonl")
    counts = outcome.result.counts()
    assert outcome.ok, (f"anomalies {counts}, errors {outcome.errors}; report "
                        f"{outcome.report}\n{outcome.result.summary()}")
    assert not any(counts.values()), counts

    # The workload really ran: thousands of acknowledged writes, read back by every reader.
    acks = sum(1 for _ in history.iter_type(events, history.Ack))
    assert acks >= 2000, f"only {acks} writes acknowledged in 45 s"
    polled = Counter(e.client for e in history.iter_type(events, history.Poll))
    assert set(polled) >= {"ckgroup", "kpgroup", "ckreader", "kpreader"}, polled
    finals = list(history.iter_type(events, history.FinalRead))
    assert sorted(f.partition for f in finals) == list(range(6))

    # Every planned fault was applied and ended: the run tested what it claims.
    phases = fault_phases(events)
    planned = Counter(p.split()[1] for p in outcome.stats["schedule"])
    assert len(planned) >= 4, f"the schedule has too few kinds: {outcome.stats['schedule']}"
    for kind, n in planned.items():
        assert phases.get(kind) == Counter(start=n, end=n), (kind, phases)

    for name in ("report.md", "report.json", "timeline.png", "history.jsonl", "run.json"):
        assert (outcome.run_dir / name).is_file(), f"{name} missing from {outcome.run_dir}"
    assert "odradek verify --seed 20240611" in (outcome.run_dir / "report.md").read_text()


@pytest.mark.timeout(240)
def test_negative_control_without_replication_loses_acknowledged_writes(
        tmp_path: Path) -> None:
    """RF=1: a crash that drops every unflushed write (the default flush policy never
    fsyncs) takes acknowledged records with it, as nothing else holds them. The checker
    must report them lost and ``odradek verify`` exit 1."""
    netns = use_netns()
    out = tmp_path / "control"
    # One crash (at 8 s, the warm-up) is enough: every acknowledged write since the last
    # flush, and there was none, goes with it.
    code = odradek(["verify", "--duration", "16", "--interval", "10", "--seed", "7",
                    "--faults", "crash-unflushed", "--unflushed", "all",
                    "--replication-factor", "1", "--min-insync", "1", "--acks", "all",
                    "--partitions", "3", "--out", str(out),
                    "--netns" if netns else "--no-netns"])
    events = history.read(out / "history.jsonl")
    result = check(events)
    assert result.counts().get("lost", 0) > 0, result.summary()
    assert code == 1
    assert fault_phases(events).get("crash-unflushed", {}).get("start", 0) >= 1

"""The report of one fault-injection run, for a person: what was run (seed, the command that
reproduces it, config), which faults hit when, how writes and reads fared around them, and
what the checker found.

``write_report(run_dir, events, result)`` writes into ``run_dir``:

- ``report.md``: verdict, seed, repro command, config, fault timeline, throughput and
  produce latency (overall, outside faults, during each fault), anomaly counts and examples;
- ``report.json``: the same, machine-readable;
- ``timeline.png``: acknowledged writes, polls and failed sends per second above, produce
  latency p50/p99 per second (log scale) below, fault windows shaded and labelled, the times
  of anomalies marked.

``python -m odradek.broker.verify.report HISTORY.jsonl OUTDIR [--recovery-window S] [--title T]``
re-renders a report from a saved history (running the checker); it exits 0 if the run is
clean, 1 if the checker found anomalies and 2 if the history cannot be read.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odradek.broker.verify import checker
from odradek.broker.verify.checker import CheckResult
from odradek.broker.verify.fault_windows import FaultTime, fault_windows
from odradek.broker.verify.history import Ack, Event, Fail, Poll, RunInfo, Send

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
TIMELINE_PNG = "timeline.png"


@dataclass(frozen=True)
class _Latency:
    count: int
    p50: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, seconds: list[float]) -> _Latency:
        if not seconds:
            return cls(0, None, None, None)
        s = sorted(seconds)
        return cls(len(s), _pct(s, 50), _pct(s, 99), s[-1])

    def to_dict(self) -> dict[str, Any]:
        def ms(x: float | None) -> float | None:
            return None if x is None else round(x * 1000, 3)
        return {"count": self.count, "p50_ms": ms(self.p50), "p99_ms": ms(self.p99),
                "max_ms": ms(self.max)}


def _pct(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _targets(targets: list[int]) -> str:
    return ",".join(f"n{t}" for t in targets) or "-"


class _Run:
    """What the report needs from the history, gathered in one pass."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.info: RunInfo | None = None
        sends: dict[str, Send] = {}
        self.acks: list[Ack] = []
        self.fails: list[Fail] = []
        self.poll_times: list[float] = []
        self.end = 0.0
        for e in events:
            self.end = max(self.end, e.t)
            if type(e) is Poll:
                self.poll_times.append(e.t)
            elif type(e) is Send:
                sends.setdefault(e.value, e)
            elif type(e) is Ack:
                self.acks.append(e)
            elif type(e) is Fail:
                self.fails.append(e)
            elif type(e) is RunInfo and self.info is None:
                self.info = e
        self.sends = sends
        # (send time, ack time, latency) of each acknowledged send.
        self.latencies: list[tuple[float, float, float]] = []
        for a in self.acks:
            s = sends.get(a.value)
            if s is not None:
                self.latencies.append((s.t, a.t, max(0.0, a.t - s.t)))
        self.windows = fault_windows(events)
        self.faults = FaultTime([(w["start"], w["end"]) for w in self.windows])


def _phases(run: _Run) -> list[dict[str, Any]]:
    """Throughput and latency overall, outside faults, and during each fault window.
    A send (and its latency) belongs to the phase it was sent in; an ack counts for
    throughput in the phase it arrived in."""
    sends_t = sorted(s.t for s in run.sends.values())
    acks_t = sorted(a.t for a in run.acks)
    fails_t = sorted(f.t for f in run.fails)
    lat = sorted((st, x) for st, _, x in run.latencies)
    lat_t = [st for st, _ in lat]
    first = sends_t[0] if sends_t else 0.0
    last = max(acks_t[-1] if acks_t else 0.0, sends_t[-1] if sends_t else 0.0)

    def row(name: str, span: float, sends: int, acks: int, fails: int,
            latencies: list[float]) -> dict[str, Any]:
        return {"phase": name, "seconds": round(span, 3), "sends": sends, "acks": acks,
                "fails": fails, "acks_per_s": round(acks / span, 2) if span > 0 else None,
                "latency": _Latency.of(latencies).to_dict()}

    def count(ts: list[float], a: float, b: float) -> int:
        return bisect.bisect_right(ts, b) - bisect.bisect_left(ts, a)

    active = run.faults.active
    rows = [row("all", last - first, len(sends_t), len(acks_t), len(fails_t),
                [x for _, x in lat]),
            row("no fault", (last - first) - run.faults.within(first, last),
                sum(1 for t in sends_t if not active(t)), sum(1 for t in acks_t if not active(t)),
                sum(1 for t in fails_t if not active(t)),
                [x for st, x in lat if not active(st)])]
    for i, w in enumerate(run.windows, 1):
        a, b = w["start"], w["end"]
        lo, hi = bisect.bisect_left(lat_t, a), bisect.bisect_right(lat_t, b)
        rows.append(row(f"fault {i}: {w['kind']} {_targets(w['targets'])}", b - a,
                        count(sends_t, a, b), count(acks_t, a, b), count(fails_t, a, b),
                        [x for _, x in lat[lo:hi]]))
    return rows


def _markdown(run: _Run, result: CheckResult, title: str, phases: list[dict[str, Any]]) -> str:
    counts = result.counts()
    total = sum(counts.values())
    verdict = "PASS" if result.ok else "FAIL"
    info = run.info
    seed = info.seed if info else "unknown (the history has no RunInfo)"
    command = info.command if info else "unknown (the history has no RunInfo)"
    out = [f"# {title or 'Chaos run'}: {verdict}", ""]
    if result.ok:
        out.append(f"**Verdict: PASS**: no anomalies in {result.stats.get('events', 0)} events.")
    else:
        found = ", ".join(f"{k} {n}" for k, n in counts.items() if n)
        out.append(f"**Verdict: FAIL**: {total} anomalies ({found}).")
    window = result.stats.get("recovery_window")
    out += ["", f"- Seed: `{seed}`",
            f"- Recovery window: {'-' if window is None else f'{window} s'}",
            f"- Unreadable check: {result.stats.get('unreadable_check')}",
            "", "Reproduce the run with:", "", "```sh", command, "```", "",
            "## Configuration", "", "```json",
            json.dumps(info.config if info else {}, indent=2, sort_keys=True, default=str),
            "```", "", "## Fault timeline", ""]
    if run.windows:
        out += ["| # | start (s) | end (s) | duration (s) | kind | targets | detail |",
                "|---|---:|---:|---:|---|---|---|"]
        for i, w in enumerate(run.windows, 1):
            end = f"{w['end']:.3f}" + ("" if w["ended"] else " (never ended)")
            out.append(f"| {i} | {w['start']:.3f} | {end} | {w['end'] - w['start']:.3f} | "
                       f"{_cell(w['kind'])} | {_cell(_targets(w['targets']))} | "
                       f"{_cell(w['detail'])} |")
    else:
        out.append("No faults were injected.")
    out += ["", "## Throughput and produce latency", "",
            "Latency is ack time minus send time, by the phase the record was sent in; "
            "acks/s counts acks by the phase they arrived in.", "",
            "| phase | seconds | sends | acks | failed | acks/s | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ph in phases:
        lat = ph["latency"]
        rate = "-" if ph["acks_per_s"] is None else f"{ph['acks_per_s']:.1f}"
        out.append(f"| {_cell(ph['phase'])} | {ph['seconds']:.1f} | {ph['sends']} | "
                   f"{ph['acks']} | {ph['fails']} | {rate} | "
                   + " | ".join("-" if lat[k] is None else f"{lat[k]:.1f}"
                                for k in ("p50_ms", "p99_ms", "max_ms")) + " |")
    out += ["", "## Anomalies", "", "| kind | count |", "|---|---:|"]
    out += [f"| {k} | {n} |" for k, n in counts.items()]
    out += ["", "```text", result.summary(), "```", "", "## Clients", "",
            "| client | sends | acks | fails | polls | assigns |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, c in result.stats.get("clients", {}).items():
        out.append(f"| {_cell(name)} | {c['sends']} | {c['acks']} | {c['fails']} | "
                   f"{c['polls']} | {c['assigns']} |")
    out += ["", "## Timeline", "", f"![timeline]({TIMELINE_PNG})", ""]
    return "\n".join(out)


def _per_second(times: list[float], n: int) -> list[int]:
    counts = [0] * n
    for t in times:
        i = int(t)
        if 0 <= i < n:
            counts[i] += 1
    return counts


def _plot(path: Path, run: _Run, result: CheckResult, title: str) -> None:
    # The object API with an explicit Agg canvas: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    n = max(1, math.ceil(run.end) + 1)
    xs = [i + 0.5 for i in range(n)]
    fig = Figure(figsize=(14, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])

    top.plot(xs, _per_second([a.t for a in run.acks], n), color="tab:blue", lw=1.2,
             label="acknowledged writes/s")
    top.plot(xs, _per_second(run.poll_times, n), color="tab:green", lw=1.0, alpha=0.8,
             label="polls/s")
    fails = _per_second([f.t for f in run.fails], n)
    if any(fails):
        top.bar(xs, fails, width=1.0, color="tab:red", alpha=0.6, label="failed sends/s")
    top.set_ylabel("events per second")
    top.set_ylim(bottom=0)

    buckets: dict[int, list[float]] = {}
    for st, _, lat in run.latencies:
        buckets.setdefault(int(st), []).append(lat * 1000)
    bx = sorted(buckets)
    floor = 1e-3  # ms; log scale cannot show zero
    p50 = [max(floor, _pct(sorted(buckets[b]), 50)) for b in bx]
    p99 = [max(floor, _pct(sorted(buckets[b]), 99)) for b in bx]
    if bx:
        bottom.plot([b + 0.5 for b in bx], p50, color="tab:blue", lw=1.0, label="p50")
        bottom.plot([b + 0.5 for b in bx], p99, color="tab:orange", lw=1.0, label="p99")
        bottom.set_yscale("log")
    bottom.set_ylabel("produce latency (ms), by send second")
    bottom.set_xlabel("seconds since the run started")
    bottom.set_xlim(0, n)

    kinds = sorted({w["kind"] for w in run.windows})
    palette = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
               "#ff7f0e", "#2ca02c"]
    colour = {k: palette[i % len(palette)] for i, k in enumerate(kinds)}
    label_tf = blended_transform_factory(top.transData, top.transAxes)
    lanes: list[float] = []  # the end of the last label in each lane, to avoid overlaps
    for w in run.windows:
        end = w["end"] if w["end"] > w["start"] else w["start"] + 0.2
        for ax in (top, bottom):
            ax.axvspan(w["start"], end, color=colour[w["kind"]], alpha=0.15, lw=0)
        text = f"{w['kind']} {_targets(w['targets'])}"
        width = len(text) * n / 160  # roughly, in data units at this figure width
        lane = next((i for i, e in enumerate(lanes) if e < w["start"]), len(lanes))
        if lane == len(lanes):
            lanes.append(0.0)
        lanes[lane] = w["start"] + width
        top.text(w["start"], 0.98 - 0.07 * lane, text, transform=label_tf, fontsize=8,
                 va="top", ha="left", color=colour[w["kind"]], fontweight="bold",
                 clip_on=True)
    times = sorted(a.t for kind in result.kinds for a in result.anomalies.get(kind, ())
                   if a.t is not None)
    if times:
        top.plot(times, [0.02] * len(times), "^", transform=label_tf, color="red",
                 markersize=7, label=f"anomaly ({len(times)}), at the event that shows it",
                 clip_on=False)
    top.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
    if bx:
        bottom.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
    verdict = "PASS" if result.ok else "FAIL: " + ", ".join(
        f"{k} {c}" for k, c in result.counts().items() if c)
    seed = run.info.seed if run.info else "?"
    fig.suptitle(f"{title or 'Chaos run'} (seed {seed}): {verdict}", fontsize=11)
    fig.savefig(path, format="png")


def write_report(run_dir: Path, events: Sequence[Event], result: CheckResult, *,
                 title: str = "") -> Path:
    """Write report.md, report.json and timeline.png into run_dir; return report.md's path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(events)
    phases = _phases(run)
    md = run_dir / REPORT_MD
    md.write_text(_markdown(run, result, title, phases))
    info = run.info
    doc = {
        "title": title,
        "verdict": "PASS" if result.ok else "FAIL",
        "ok": result.ok,
        "seed": info.seed if info else None,
        "command": info.command if info else None,
        "config": info.config if info else {},
        "counts": result.counts(),
        "stats": result.stats,
        "timeline": run.windows,
        "phases": phases,
        "anomalies": {k: [a.to_dict() for a in v[:20]] for k, v in result.anomalies.items()},
        "files": {"markdown": REPORT_MD, "timeline": TIMELINE_PNG},
    }
    (run_dir / REPORT_JSON).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    _plot(run_dir / TIMELINE_PNG, run, result, title)
    return md


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m odradek.broker.verify.report",
        description="Check a run's history and render its report (report.md, report.json, "
                    "timeline.png). Exit status: 0 clean, 1 anomalies, 2 unreadable history.")
    parser.add_argument("history", type=Path, help="the run's history (JSON Lines)")
    parser.add_argument("outdir", type=Path, help="directory to write the report into")
    parser.add_argument("--recovery-window", type=float,
                        default=checker.DEFAULT_RECOVERY_WINDOW, metavar="S",
                        help="see python -m odradek.broker.verify.checker (default %(default)s)")
    parser.add_argument("--title", default="", help="the report's title")
    args = parser.parse_args(argv)
    try:
        events = checker.load(args.history)
    except checker.HistoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = checker.check(events, recovery_window=args.recovery_window)
    path = write_report(args.outdir, events, result, title=args.title or args.history.stem)
    print(f"{'PASS' if result.ok else 'FAIL'}: report written to {path}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

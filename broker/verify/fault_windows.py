"""When faults were active during a run: fault start/end events paired into windows, and
their union, which the checker subtracts from delays and the report shades."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from odradek.broker.verify.history import Event, Fault


class FaultTime:
    """The union of fault windows: whether a fault was active at t, and for how long any
    fault was active within [a, b]."""

    def __init__(self, windows: list[tuple[float, float]]) -> None:
        merged: list[list[float]] = []
        for s, e in sorted(windows):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]
        self.cum = [0.0]
        for s, e in merged:
            self.cum.append(self.cum[-1] + (e - s))

    @property
    def total(self) -> float:
        return self.cum[-1]

    def _upto(self, x: float) -> float:
        i = bisect.bisect_right(self.starts, x) - 1
        if i < 0:
            return 0.0
        return self.cum[i] + min(x, self.ends[i]) - self.starts[i]

    def within(self, a: float, b: float) -> float:
        return max(0.0, self._upto(b) - self._upto(a)) if b > a else 0.0

    def active(self, t: float) -> bool:
        i = bisect.bisect_right(self.starts, t) - 1
        return i >= 0 and t <= self.ends[i]


def fault_windows(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Fault start/end events paired into windows (by kind and targets, first in first
    out); a fault that never ended closes at the last event's time with ``ended`` false."""
    open_: dict[tuple[str, tuple[int, ...]], list[Fault]] = {}
    windows: list[dict[str, Any]] = []
    last_t = 0.0
    for e in events:
        last_t = max(last_t, e.t)
        if type(e) is not Fault:
            continue
        key = (e.kind, tuple(e.targets))
        if e.phase == "start":
            open_.setdefault(key, []).append(e)
        elif e.phase == "end" and open_.get(key):
            s = open_[key].pop(0)
            windows.append({"start": s.t, "end": e.t, "kind": s.kind, "targets": list(s.targets),
                            "detail": s.detail or e.detail, "ended": True})
        else:
            windows.append({"start": e.t, "end": e.t, "kind": e.kind, "targets": list(e.targets),
                            "detail": e.detail, "ended": True, "unmatched": e.phase})
    for starts in open_.values():
        for s in starts:
            windows.append({"start": s.t, "end": last_t, "kind": s.kind,
                            "targets": list(s.targets), "detail": s.detail, "ended": False})
    windows.sort(key=lambda w: (w["start"], w["end"], w["kind"]))
    return windows

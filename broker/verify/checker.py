"""The checker: reads a run's history (history.py) and names every way the
cluster broke the promises Kafka makes to this workload.

The workload writes unique values (``<client>-<key>-<seq>``) with ``acks=all``, to a
partition it picks itself, reads them back with consumer groups and manually assigned
readers while faults are injected, and reads every partition once more after the cluster
healed (FinalRead). Kafka promises, for such a workload: an acknowledged record is in the
log for good, at the offset the acknowledgement named, exactly once; a partition's log is
one sequence that every reader sees the same way; a consumer receives a partition's records
in offset order without gaps; a definitely failed write is not in the log; and the log
holds nothing that was not produced. Each anomaly kind below breaks one of those promises.

The checker is pure and deterministic: events in, a :class:`CheckResult` out, in one pass
over the history plus one pass over its values (dicts throughout, no pairwise scans).
Events are taken in history order; a client's events are in the order it recorded them.
An Ack with a negative offset means the client did not learn the offset (librdkafka answers
some idempotent retries without one): its value is judged for loss and readability, but not
for the offset it names.

Anomaly kinds (one anomaly per value, per offset or per occurrence, as stated):

``lost``
    An acknowledged value is absent from the final read of the partition it was
    acknowledged in (one per value). That includes a value whose acked offset is below the
    final read's log start offset: the workload configures no retention, so a deleted
    prefix is lost data too. ``acks=all`` promised the record survives any fault that
    leaves a replica of the ISR alive, which the workload's faults do.
``no_final_read``
    A topic-partition that had a Send, Ack or Poll has no FinalRead (one per partition).
    Without it, loss and skipped reads cannot be judged there, and the checker never
    passes for lack of data.
``no_acks``
    The history acknowledged no write at all (one at most): nothing was tested, either
    because the workload never reached the cluster or because the cluster never accepted a
    write; neither may pass.
``duplicate``
    One value was read (polled or in a final read) at two or more distinct offsets, or in
    two partitions (one per value). Each value was produced once; the idempotent producer
    promises one copy even across retries, and the non-idempotent producers do not retry.
    Acks are not counted here: an ack naming another offset than the one the value was read
    at is an ``inconsistent_offset``, so that one fault is not reported twice.
``inconsistent_offset``
    Observers disagree about what one offset holds. Either two different values were seen
    at the same topic-partition-offset, across acks, polls and final reads (one per offset;
    e.g. the ack says v@5 while the final read has w@5: the log was rewritten below a
    record someone relied on), or, folding in the ack/offset mismatch, a value was
    acknowledged at offset o but read in that partition only at other offsets, while
    nothing else was seen at o (one per value). A Kafka offset names one record forever.
``non_monotonic_poll``
    Within one assignment session, a client polled an offset less than or equal to the
    offset it polled before (one per occurrence). A session of client c for partition p is
    the run of c's polls of p from an Assign of c naming p until c's next Assign naming p
    or, for a group member, c's next group Assign for that topic (a group assignment is the
    member's whole set; a manual reader's Assign re-seeks only the partitions it names); a
    consumer delivers a partition in offset order until its assignment changes.
    Re-reads after a rebalance (from the committed offset) start a new session and are fine.
    A poll of a partition c holds no session for starts one implicitly (counted in
    ``stats["polls_outside_session"]``).
``skipped_poll``
    Within one session, the offset polled next is more than one past the previous one and
    the final read holds a record at an offset in between (one per occurrence): the record
    existed and the consumer jumped over it. Offsets missing from the final read (a record
    truncated before it was committed) are not skips.
``aborted_read``
    A value whose send failed definitely (``Fail.definite``) was polled or is in a final
    read (one per value). A definite failure means the broker refused the record before
    appending it; a record that is nonetheless in the log was appended and reported as not.
``phantom_read``
    A polled or final-read value that no Send produced for that topic-partition (one per
    value): corruption, garbage, or a record served from the wrong partition.
``unreadable``
    An acknowledged value reached readers too late (one per value). With ``ack`` its ack
    time and ``first`` the time any client first polled it, and ``faults(a, b)`` the time
    in [a, b] during which at least one fault was active (the union of fault windows; a
    fault that never ended lasts until the history's last event), the delay is
    ``first - ack - faults(ack, first)``; it is an anomaly if the delay exceeds
    ``recovery_window``. A value never polled counts the same way with ``first`` replaced
    by the readers' end: the time of the run's last Poll (the readers were evidently alive
    until then), or, if the run had readers (Assign events) but no poll at all, the first
    FinalRead (or the last event). Lost values are not judged (they are ``lost``), nor are
    never-polled values of a partition without a final read (loss cannot be told from
    unreadability there). Topics no client assigned or polled are not judged, and a run
    without readers skips this check entirely; ``stats["unreadable_check"]`` says so.
    Committed data must become visible to consumers once the cluster has recovered.

A single fault can show as several kinds: a rewritten offset, for instance, is an
``inconsistent_offset`` at that offset and, if the value rewritten away was acknowledged,
``lost``. The self-test plants one instance of each kind and checks exactly that kind fires.

Command line: ``python -m odradek.broker.verify.checker HISTORY.jsonl [--recovery-window S] [--json]``
prints the summary (or JSON) and exits 0 if the history is clean, 1 on anomalies and 2 if
the history cannot be read.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from odradek.broker.verify import history
from odradek.broker.verify.history import (
    Ack,
    Assign,
    Event,
    Fail,
    Fault,
    FinalRead,
    Poll,
    RunInfo,
    Send,
)

LOST = "lost"
NO_FINAL_READ = "no_final_read"
NO_ACKS = "no_acks"
DUPLICATE = "duplicate"
INCONSISTENT_OFFSET = "inconsistent_offset"
NON_MONOTONIC_POLL = "non_monotonic_poll"
SKIPPED_POLL = "skipped_poll"
ABORTED_READ = "aborted_read"
PHANTOM_READ = "phantom_read"
UNREADABLE = "unreadable"

ANOMALY_KINDS: tuple[str, ...] = (
    LOST, NO_FINAL_READ, NO_ACKS, DUPLICATE, INCONSISTENT_OFFSET, NON_MONOTONIC_POLL,
    SKIPPED_POLL, ABORTED_READ, PHANTOM_READ, UNREADABLE,
)

DEFAULT_RECOVERY_WINDOW = 30.0

TP = tuple[str, int]
Slot = tuple[str, int, int]
# Where a value was seen: (source, client, t); source is "ack", "poll" or "final".
Source = tuple[str, str | None, float]


@dataclass(frozen=True)
class Anomaly:
    """One anomaly: where (topic, partition, offsets), what (value), who (client), when
    (t: the time of the event that shows it) and a sentence saying all of it."""

    kind: str
    topic: str
    partition: int
    offsets: tuple[int, ...]
    value: str | None
    client: str | None
    t: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["offsets"] = list(self.offsets)
        return d


@dataclass(frozen=True)
class CheckResult:
    anomalies: dict[str, list[Anomaly]]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.anomalies.values())

    def counts(self) -> dict[str, int]:
        return {kind: len(self.anomalies.get(kind, [])) for kind in ANOMALY_KINDS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts(),
            "stats": self.stats,
            "anomalies": {k: [a.to_dict() for a in v] for k, v in self.anomalies.items()},
        }

    def summary(self, examples: int = 5) -> str:
        s = self.stats
        lines = [
            f"Checked {s.get('events', 0)} events: {s.get('sends', 0)} sends, "
            f"{s.get('acks', 0)} acks, {s.get('fails_definite', 0)} definite and "
            f"{s.get('fails_indeterminate', 0)} indeterminate failures, "
            f"{s.get('unacknowledged_at_end', 0)} unacknowledged at the end, "
            f"{s.get('polls', 0)} polls, {len(s.get('final_records', {}))} partitions in the "
            f"final read ({sum(s.get('final_records', {}).values())} records).",
            f"Faults: {s.get('fault_windows', 0)} windows, {s.get('fault_time', 0.0):.1f} s "
            f"with a fault active; recovery window {s.get('recovery_window', 0)} s; "
            f"unreadable check: {s.get('unreadable_check', '?')}.",
        ]
        counts = self.counts()
        total = sum(counts.values())
        if total == 0:
            lines.append("Verdict: PASS (no anomalies)")
        else:
            found = ", ".join(f"{k} {n}" for k, n in counts.items() if n)
            lines.append(f"Verdict: FAIL: {total} anomalies ({found})")
        for kind in ANOMALY_KINDS:
            found_list = self.anomalies.get(kind, [])
            if not found_list:
                continue
            lines.append(f"{kind}: {len(found_list)}")
            for a in found_list[:examples]:
                lines.append(f"  - {a.message}")
            if len(found_list) > examples:
                lines.append(f"  ... and {len(found_list) - examples} more")
        clean = [k for k, n in counts.items() if not n]
        if total and clean:
            lines.append("No anomalies of kinds: " + ", ".join(clean))
        for w in s.get("warnings", []):
            lines.append(f"warning: {w}")
        return "\n".join(lines)


class HistoryError(Exception):
    """The history file cannot be read as a history."""


def load(path: Path) -> list[Event]:
    """Every event of a history file, with the line number in the error if one is bad."""
    try:
        f = path.open()
    except OSError as e:
        raise HistoryError(f"cannot open history {path}: {e.strerror or e}") from e
    events: list[Event] = []
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                e = history.from_json(line)
            except (ValueError, TypeError) as err:
                raise HistoryError(f"{path}:{n}: not a history event: {err}") from err
            if isinstance(e, FinalRead) and not all(
                    isinstance(r, list) and len(r) == 2 and isinstance(r[0], int)
                    for r in e.records):
                raise HistoryError(f"{path}:{n}: a final read's records must be "
                                   "[offset, value] pairs")
            events.append(e)
    if not events:
        raise HistoryError(f"{path} holds no events: was the run recorded to another file?")
    return events


def _tp(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def _src(s: Source) -> str:
    kind, client, t = s
    if kind == "final":
        return f"the final read (t={t:.3f})"
    return f"{kind} by {client} (t={t:.3f})"


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


def check(events: Sequence[Event], *,
          recovery_window: float = DEFAULT_RECOVERY_WINDOW) -> CheckResult:
    """Every anomaly in ``events`` (see the module docstring for the kinds and rules)."""
    found: dict[str, list[Anomaly]] = {k: [] for k in ANOMALY_KINDS}
    warnings: list[str] = []

    def add(kind: str, topic: str, partition: int, offsets: Sequence[int], value: str | None,
            client: str | None, t: float | None, message: str) -> None:
        found[kind].append(Anomaly(kind, topic, partition, tuple(offsets), value, client, t,
                                   f"{kind}: {message}"))

    sends: dict[str, Send] = {}
    acks: dict[str, Ack] = {}
    fails: dict[str, Fail] = {}
    resent = 0
    reacked = 0
    clients: dict[str, dict[str, int]] = {}

    def client_stats(name: str) -> dict[str, int]:
        c = clients.get(name)
        if c is None:
            c = clients[name] = {"sends": 0, "acks": 0, "fails": 0, "polls": 0, "assigns": 0}
        return c

    # The offset -> value map as every observer saw it, and the value -> offsets map of reads.
    at_slot: dict[Slot, tuple[str, Source]] = {}
    slot_conflicts: dict[Slot, dict[str, Source]] = {}
    read_at: dict[str, tuple[Slot, Source]] = {}
    read_multi: dict[str, dict[Slot, Source]] = {}
    first_poll: dict[str, Poll] = {}
    finals: dict[TP, FinalRead] = {}
    final_count: dict[TP, int] = {}
    tps_used: dict[TP, float] = {}  # partition -> first time it appears in a Send/Ack/Poll
    topics_read: set[str] = set()

    # Assignment sessions: (client, topic, partition) -> the session's last Poll (None: none yet).
    sessions: dict[tuple[str, str, int], Poll | None] = {}
    session_parts: dict[tuple[str, str], list[int]] = {}
    outside_session = 0
    skip_candidates: list[tuple[Poll, Poll]] = []

    n_polls = n_assigns = acks_without_offset = 0
    last_poll_t: float | None = None
    run_info: RunInfo | None = None
    last_t = 0.0

    def observe(slot: Slot, value: str, src: Source, is_read: bool) -> None:
        seen = at_slot.get(slot)
        if seen is None:
            at_slot[slot] = (value, src)
        elif seen[0] != value:
            conflict = slot_conflicts.get(slot)
            if conflict is None:
                conflict = slot_conflicts[slot] = {seen[0]: seen[1]}
            conflict.setdefault(value, src)
        if is_read:
            r = read_at.get(value)
            if r is None:
                read_at[value] = (slot, src)
            elif r[0] != slot:
                multi = read_multi.get(value)
                if multi is None:
                    multi = read_multi[value] = {r[0]: r[1]}
                multi.setdefault(slot, src)

    for e in events:
        cls = type(e)
        if e.t > last_t:
            last_t = e.t
        if cls is Poll:
            n_polls += 1
            client_stats(e.client)["polls"] += 1
            tps_used.setdefault((e.topic, e.partition), e.t)
            topics_read.add(e.topic)
            if last_poll_t is None or e.t > last_poll_t:
                last_poll_t = e.t
            fp = first_poll.get(e.value)
            if fp is None or e.t < fp.t:
                first_poll[e.value] = e
            observe((e.topic, e.partition, e.offset), e.value, ("poll", e.client, e.t), True)
            key = (e.client, e.topic, e.partition)
            if key not in sessions:
                outside_session += 1
                session_parts.setdefault((e.client, e.topic), []).append(e.partition)
                sessions[key] = e
                continue
            prev = sessions[key]
            sessions[key] = e
            if prev is None:
                continue
            if e.offset <= prev.offset:
                add(NON_MONOTONIC_POLL, e.topic, e.partition, (prev.offset, e.offset), e.value,
                    e.client, e.t,
                    f"{e.client} polled {_tp(e.topic, e.partition)}@{e.offset} "
                    f"(value {e.value!r}, t={e.t:.3f}) after @{prev.offset} (value "
                    f"{prev.value!r}, t={prev.t:.3f}) in the same assignment session")
            elif e.offset > prev.offset + 1:
                skip_candidates.append((prev, e))
        elif cls is Send:
            if e.value in sends:
                resent += 1
            else:
                sends[e.value] = e
            client_stats(e.client)["sends"] += 1
            tps_used.setdefault((e.topic, e.partition), e.t)
        elif cls is Ack:
            if e.value in acks:
                reacked += 1
                continue
            acks[e.value] = e
            client_stats(e.client)["acks"] += 1
            tps_used.setdefault((e.topic, e.partition), e.t)
            if e.offset >= 0:
                observe((e.topic, e.partition, e.offset), e.value, ("ack", e.client, e.t),
                        False)
            else:
                acks_without_offset += 1
        elif cls is Fail:
            fails.setdefault(e.value, e)
            client_stats(e.client)["fails"] += 1
        elif cls is Assign:
            n_assigns += 1
            client_stats(e.client)["assigns"] += 1
            topics_read.add(e.topic)
            ct = (e.client, e.topic)
            if e.group is not None:
                # A group assignment is the member's whole set: the rest was revoked.
                for p in session_parts.get(ct, ()):
                    sessions.pop((e.client, e.topic, p), None)
                session_parts[ct] = list(e.partitions)
            else:
                # A manual reader re-seeks the partitions named; the others read on.
                session_parts[ct] = sorted({*session_parts.get(ct, ()), *e.partitions})
            for p in e.partitions:
                sessions[(e.client, e.topic, p)] = None
        elif cls is FinalRead:
            tp = (e.topic, e.partition)
            finals[tp] = e
            final_count[tp] = final_count.get(tp, 0) + 1
            src: Source = ("final", None, e.t)
            for rec in e.records:
                observe((e.topic, e.partition, int(rec[0])), rec[1], src, True)
        elif cls is RunInfo:
            run_info = e

    # -- the partitions' final contents -----------------------------------------------------
    final_values: dict[TP, dict[str, int]] = {}
    final_offsets: dict[TP, list[int]] = {}
    for tp, fr in finals.items():
        final_values[tp] = {rec[1]: int(rec[0]) for rec in fr.records}
        final_offsets[tp] = sorted({int(rec[0]) for rec in fr.records})
        if final_count[tp] > 1:
            warnings.append(f"{final_count[tp]} final reads of {_tp(*tp)}: the last one is "
                            "judged for loss and skips, all of them for consistency")

    for tp, t in sorted(tps_used.items()):
        if tp not in finals:
            add(NO_FINAL_READ, tp[0], tp[1], (), None, None, t,
                f"{_tp(*tp)} was used from t={t:.3f} but the history has no final read of it, "
                "so its losses and skipped reads cannot be judged")

    if not acks:
        add(NO_ACKS, "", -1, (), None, None, None,
            f"the history acknowledged no write ({len(sends)} sends, {len(fails)} failures): "
            "the run tested nothing")

    # -- values read at several offsets, and values read that nobody (validly) wrote ---------
    for value, slots in read_multi.items():
        ordered = sorted(slots.items(), key=lambda kv: kv[0])
        (topic, partition, _), src0 = ordered[0]
        where = ", ".join(f"{_tp(s[0], s[1])}@{s[2]} ({_src(src)})" for s, src in ordered)
        send = sends.get(value)
        by = f"sent by {send.client} at t={send.t:.3f}" if send else "never sent"
        add(DUPLICATE, topic, partition, [s[2] for s, _ in ordered], value,
            send.client if send else src0[1], min(src[2] for _, src in ordered),
            f"value {value!r} ({by}) was read at {len(ordered)} offsets: {where}")

    for value, (slot, src) in read_at.items():
        send = sends.get(value)
        fail = fails.get(value)
        slots = read_multi.get(value) or {slot: src}
        if send is None or any((s[0], s[1]) != (send.topic, send.partition) for s in slots):
            s0, src0 = min(slots.items(), key=lambda kv: kv[1][2])
            sent = (f"was sent to {_tp(send.topic, send.partition)} by {send.client} "
                    f"at t={send.t:.3f}") if send else "was never sent by any producer"
            add(PHANTOM_READ, s0[0], s0[1], (s0[2],), value, src0[1], src0[2],
                f"value {value!r} read at {_tp(s0[0], s0[1])}@{s0[2]} by {_src(src0)} "
                f"{sent}")
        if fail is not None and fail.definite and value not in acks:
            s0, src0 = min(slots.items(), key=lambda kv: kv[1][2])
            add(ABORTED_READ, s0[0], s0[1], (s0[2],), value, fail.client, src0[2],
                f"value {value!r}, whose send by {fail.client} to "
                f"{_tp(fail.topic, fail.partition)} failed definitely at t={fail.t:.3f} "
                f"({fail.error}), was read at {_tp(s0[0], s0[1])}@{s0[2]} by {_src(src0)}")

    for slot, values in slot_conflicts.items():
        topic, partition, offset = slot
        seen = "; ".join(f"{v!r} by {_src(src)}" for v, src in values.items())
        first = min(values.values(), key=lambda s: s[2])
        add(INCONSISTENT_OFFSET, topic, partition, (offset,), next(iter(values)), first[1],
            first[2], f"{_tp(topic, partition)}@{offset} was seen holding {len(values)} "
            f"different values: {seen}")

    # -- acknowledged values: lost, at another offset, or unreadable ---------------------------
    readers_assigned = n_assigns > 0
    if last_poll_t is not None:
        reader_end: float | None = last_poll_t
    elif readers_assigned:
        reader_end = min((fr.t for fr in finals.values()), default=last_t)
    else:
        reader_end = None
    windows = fault_windows(events)
    faults = FaultTime([(w["start"], w["end"]) for w in windows])
    unreadable_topics_skipped = sorted({a.topic for a in acks.values()} - topics_read)
    if reader_end is None:
        unreadable_check = "skipped: the run had no readers (no Assign or Poll events)"
    elif unreadable_topics_skipped:
        unreadable_check = ("checked, except topics nobody read: "
                            + ", ".join(unreadable_topics_skipped))
    else:
        unreadable_check = f"checked (readers ran until t={reader_end:.3f})"

    definite_and_acked = 0
    for value, ack in acks.items():
        tp = (ack.topic, ack.partition)
        known = ack.offset >= 0
        where = f"{_tp(*tp)}@{ack.offset}" if known else f"{_tp(*tp)} (offset unknown)"
        ack_offsets = (ack.offset,) if known else ()
        if value not in sends:
            warnings.append(f"value {value!r} was acked at {where} without a Send")
        fail = fails.get(value)
        if fail is not None and fail.definite:
            definite_and_acked += 1
        fr = finals.get(tp)
        lost = False
        if fr is not None:
            vals = final_values[tp]
            at = vals.get(value)
            if at is None:
                lost = True
                why = (f"the log start offset {fr.start_offset} is past it"
                       if known and ack.offset < fr.start_offset else
                       f"the final read holds offsets {fr.start_offset}..{fr.end_offset - 1}"
                       if fr.end_offset > fr.start_offset else "the final read is empty")
                add(LOST, ack.topic, ack.partition, ack_offsets, value, ack.client, ack.t,
                    f"value {value!r} acked to {ack.client} at {where} (t={ack.t:.3f}) is "
                    f"absent from the final read of {_tp(*tp)} (t={fr.t:.3f}; {why})")
        # Acked at o but read in this partition only elsewhere, with nothing else seen at o.
        slot = (ack.topic, ack.partition, ack.offset)
        r = read_at.get(value)
        if known and r is not None and slot not in slot_conflicts:
            read_slots = read_multi.get(value) or {r[0]: r[1]}
            here = {s: src for s, src in read_slots.items() if (s[0], s[1]) == tp}
            if here and slot not in here:
                s0, src0 = min(here.items(), key=lambda kv: kv[1][2])
                add(INCONSISTENT_OFFSET, ack.topic, ack.partition,
                    (ack.offset, *sorted(s[2] for s in here)), value, ack.client, ack.t,
                    f"value {value!r} was acked to {ack.client} at {where} (t={ack.t:.3f}) "
                    f"but read at {_tp(*tp)}@{s0[2]} by {_src(src0)}")
        if lost or reader_end is None or ack.topic not in topics_read:
            continue
        poll = first_poll.get(value)
        if poll is not None:
            end = poll.t
        elif fr is not None:
            end = reader_end
        else:
            continue
        fault_time = faults.within(ack.t, end)
        delay = end - ack.t - fault_time
        if delay > recovery_window:
            if poll is not None:
                what = (f"was first polled by {poll.client} at "
                        f"{_tp(poll.topic, poll.partition)}@{poll.offset} at t={poll.t:.3f}")
            else:
                what = f"was never polled though readers ran until t={end:.3f}"
            add(UNREADABLE, ack.topic, ack.partition, ack_offsets, value, ack.client, ack.t,
                f"value {value!r} acked to {ack.client} at {where} (t={ack.t:.3f}) {what}: "
                f"{delay:.3f} s after the ack not counting {fault_time:.3f} s of faults, "
                f"more than the {recovery_window:g} s recovery window")

    # -- skipped offsets, judged against the final read -----------------------------------------
    for prev, e in skip_candidates:
        offs = final_offsets.get((e.topic, e.partition))
        if offs is None:
            continue
        lo = bisect.bisect_right(offs, prev.offset)
        hi = bisect.bisect_left(offs, e.offset)
        if hi > lo:
            missing = offs[lo:hi]
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            add(SKIPPED_POLL, e.topic, e.partition, tuple(missing), e.value, e.client, e.t,
                f"{e.client} polled {_tp(e.topic, e.partition)}@{prev.offset} (t={prev.t:.3f}) "
                f"then @{e.offset} (value {e.value!r}, t={e.t:.3f}) in one session, skipping "
                f"{len(missing)} records of the final read at offsets {shown}")

    for kind in ANOMALY_KINDS:
        found[kind].sort(key=lambda a: (math.inf if a.t is None else a.t, a.topic, a.partition,
                                        a.offsets, str(a.value)))

    # -- statistics -----------------------------------------------------------------------------
    n_definite = sum(1 for f in fails.values() if f.definite and f.value not in acks)
    n_indeterminate = sum(1 for f in fails.values() if not f.definite and f.value not in acks)
    unacked = sum(1 for v in sends if v not in acks and v not in fails)
    if run_info is None:
        warnings.append("the history has no RunInfo event: seed and command unknown")
    if resent:
        warnings.append(f"{resent} Send events repeat a value sent before (values must be "
                        "unique); the first Send of each is used")
    if reacked:
        warnings.append(f"{reacked} Ack events repeat a value acked before; the first is used")
    if definite_and_acked:
        warnings.append(f"{definite_and_acked} values were both acked and failed definitely; "
                        "the ack is believed")
    if outside_session:
        warnings.append(f"{outside_session} polls of a partition the client held no "
                        "assignment session for (each started one)")
    unmatched = [w for w in windows if w.get("unmatched")]
    if unmatched:
        warnings.append(f"{len(unmatched)} fault events have no matching start/end")
    if any(not w["ended"] for w in windows):
        warnings.append("a fault never ended: counted as active until the last event")
    if reader_end is None:
        warnings.append("no readers: the unreadable check was skipped")

    stats: dict[str, Any] = {
        "events": len(events),
        "seed": run_info.seed if run_info else None,
        "sends": len(sends),
        "acks": len(acks),
        "fails_definite": n_definite,
        "fails_indeterminate": n_indeterminate,
        "unacknowledged_at_end": unacked,
        "polls": n_polls,
        "acks_without_offset": acks_without_offset,
        "assigns": n_assigns,
        "polls_outside_session": outside_session,
        "fault_windows": len([w for w in windows if not w.get("unmatched")]),
        "fault_time": round(faults.total, 6),
        "final_records": {_tp(*tp): len(fr.records) for tp, fr in sorted(finals.items())},
        "clients": {c: clients[c] for c in sorted(clients)},
        "recovery_window": recovery_window,
        "reader_end": reader_end,
        "unreadable_check": unreadable_check,
        "warnings": warnings,
    }
    return CheckResult(anomalies=found, stats=stats)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m odradek.broker.verify.checker",
        description="Check a fault-injection run's history for anomalies. Exit status: "
                    "0 clean, 1 anomalies found, 2 the history cannot be read.")
    parser.add_argument("history", type=Path, help="the run's history (JSON Lines)")
    parser.add_argument("--recovery-window", type=float, default=DEFAULT_RECOVERY_WINDOW,
                        metavar="S", help="seconds (beyond fault time) an acknowledged "
                        "value may take to reach readers (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--examples", type=int, default=5, metavar="N",
                        help="examples per anomaly kind in the summary (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        events = load(args.history)
    except HistoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = check(events, recovery_window=args.recovery_window)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, sort_keys=False))
    else:
        print(result.summary(args.examples))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

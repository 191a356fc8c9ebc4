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
over the history (observed.py) plus one pass over its values per family of anomaly kinds
(dicts throughout, no pairwise scans).
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
from odradek.broker.verify.fault_windows import FaultTime, fault_windows
from odradek.broker.verify.history import Ack, Event, FinalRead
from odradek.broker.verify.observed import TP, Observed, Source

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
    # The kinds this check looks for, in report order (txn_checker.py has its own).
    kinds: tuple[str, ...] = ANOMALY_KINDS

    @property
    def ok(self) -> bool:
        return not any(self.anomalies.values())

    def counts(self) -> dict[str, int]:
        return {kind: len(self.anomalies.get(kind, [])) for kind in self.kinds}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts(),
            "stats": self.stats,
            "anomalies": {k: [a.to_dict() for a in v] for k, v in self.anomalies.items()},
        }

    def summary(self, examples: int = 5) -> str:
        s = self.stats
        lines = list(s["headline"]) if "headline" in s else [
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
        for kind in self.kinds:
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
                event = history.from_json(line)
            except (ValueError, TypeError) as err:
                raise HistoryError(f"{path}:{n}: not a history event: {err}") from err
            if isinstance(event, FinalRead) and not all(
                    isinstance(r, list) and len(r) == 2 and isinstance(r[0], int)
                    for r in event.records):
                raise HistoryError(f"{path}:{n}: a final read's records must be "
                                   "[offset, value] pairs")
            events.append(event)
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


def check(events: Sequence[Event], *,
          recovery_window: float = DEFAULT_RECOVERY_WINDOW) -> CheckResult:
    """Every anomaly in ``events`` (see the module docstring for the kinds and rules)."""
    seen = Observed.of(events)
    out = _Findings()
    final = _FinalContents.of(seen, out.warnings)
    readers = _Readers.of(seen)
    windows = fault_windows(events)
    faults = FaultTime([(w["start"], w["end"]) for w in windows])

    _non_monotonic_polls(seen, out)
    _unjudgeable(seen, out)
    _duplicates(seen, out)
    _foreign_reads(seen, out)
    _offset_conflicts(seen, out)
    definite_and_acked = _ack_warnings(seen, out.warnings)
    _lost(seen, final, out)
    _acked_elsewhere(seen, out)
    _unreadable(seen, final, readers, faults, recovery_window, out)
    _skipped_polls(seen, final, out)
    for kind in ANOMALY_KINDS:
        out.found[kind].sort(key=lambda a: (math.inf if a.t is None else a.t, a.topic,
                                            a.partition, a.offsets, str(a.value)))
    stats = _stats(seen, readers, windows, faults, recovery_window, definite_and_acked,
                   out.warnings)
    return CheckResult(anomalies=out.found, stats=stats)


class _Findings:
    """The anomalies found so far, by kind, and warnings about the history itself."""

    def __init__(self) -> None:
        self.found: dict[str, list[Anomaly]] = {k: [] for k in ANOMALY_KINDS}
        self.warnings: list[str] = []

    def add(self, kind: str, topic: str, partition: int, offsets: Sequence[int],
            value: str | None, client: str | None, t: float | None, message: str) -> None:
        self.found[kind].append(Anomaly(kind, topic, partition, tuple(offsets), value, client,
                                        t, f"{kind}: {message}"))


@dataclass(frozen=True)
class _FinalContents:
    """Each partition's last final read: value -> offset, and its offsets in order."""

    values: dict[TP, dict[str, int]]
    offsets: dict[TP, list[int]]

    @classmethod
    def of(cls, seen: Observed, warnings: list[str]) -> _FinalContents:
        values: dict[TP, dict[str, int]] = {}
        offsets: dict[TP, list[int]] = {}
        for tp, fr in seen.finals.items():
            values[tp] = {rec[1]: int(rec[0]) for rec in fr.records}
            offsets[tp] = sorted({int(rec[0]) for rec in fr.records})
            if seen.final_count[tp] > 1:
                warnings.append(f"{seen.final_count[tp]} final reads of {_tp(*tp)}: the last "
                                "one is judged for loss and skips, all of them for consistency")
        return cls(values, offsets)


@dataclass(frozen=True)
class _Readers:
    """Until when readers ran (None: the run had none), and which topics were not read."""

    end: float | None
    unread_topics: list[str]

    @classmethod
    def of(cls, seen: Observed) -> _Readers:
        end: float | None
        if seen.last_poll_t is not None:
            end = seen.last_poll_t
        elif seen.n_assigns > 0:
            end = min((fr.t for fr in seen.finals.values()), default=seen.last_t)
        else:
            end = None
        return cls(end, sorted({a.topic for a in seen.acks.values()} - seen.topics_read))

    def check_note(self) -> str:
        if self.end is None:
            return "skipped: the run had no readers (no Assign or Poll events)"
        if self.unread_topics:
            return "checked, except topics nobody read: " + ", ".join(self.unread_topics)
        return f"checked (readers ran until t={self.end:.3f})"


# -- the rules, one per anomaly family ------------------------------------------------------


def _non_monotonic_polls(seen: Observed, out: _Findings) -> None:
    """NON_MONOTONIC_POLL: a session's poll at or below the offset polled before it."""
    for prev, e in seen.backwards:
        out.add(NON_MONOTONIC_POLL, e.topic, e.partition, (prev.offset, e.offset), e.value,
                e.client, e.t,
                f"{e.client} polled {_tp(e.topic, e.partition)}@{e.offset} "
                f"(value {e.value!r}, t={e.t:.3f}) after @{prev.offset} (value "
                f"{prev.value!r}, t={prev.t:.3f}) in the same assignment session")


def _unjudgeable(seen: Observed, out: _Findings) -> None:
    """NO_FINAL_READ and NO_ACKS: what the history lacks to be judged at all."""
    for tp, t in sorted(seen.tps_used.items()):
        if tp not in seen.finals:
            out.add(NO_FINAL_READ, tp[0], tp[1], (), None, None, t,
                    f"{_tp(*tp)} was used from t={t:.3f} but the history has no final read "
                    "of it, so its losses and skipped reads cannot be judged")
    if not seen.acks:
        out.add(NO_ACKS, "", -1, (), None, None, None,
                f"the history acknowledged no write ({len(seen.sends)} sends, "
                f"{len(seen.fails)} failures): the run tested nothing")


def _duplicates(seen: Observed, out: _Findings) -> None:
    """DUPLICATE: values read at several offsets."""
    for value, slots in seen.read_multi.items():
        ordered = sorted(slots.items(), key=lambda kv: kv[0])
        (topic, partition, _), src0 = ordered[0]
        where = ", ".join(f"{_tp(s[0], s[1])}@{s[2]} ({_src(src)})" for s, src in ordered)
        send = seen.sends.get(value)
        by = f"sent by {send.client} at t={send.t:.3f}" if send else "never sent"
        out.add(DUPLICATE, topic, partition, [s[2] for s, _ in ordered], value,
                send.client if send else src0[1], min(src[2] for _, src in ordered),
                f"value {value!r} ({by}) was read at {len(ordered)} offsets: {where}")


def _foreign_reads(seen: Observed, out: _Findings) -> None:
    """PHANTOM_READ and ABORTED_READ: values read that nobody (validly) wrote there."""
    for value, (slot, src) in seen.read_at.items():
        send = seen.sends.get(value)
        fail = seen.fails.get(value)
        slots = seen.read_multi.get(value) or {slot: src}
        if send is None or any((s[0], s[1]) != (send.topic, send.partition) for s in slots):
            s0, src0 = min(slots.items(), key=lambda kv: kv[1][2])
            sent = (f"was sent to {_tp(send.topic, send.partition)} by {send.client} "
                    f"at t={send.t:.3f}") if send else "was never sent by any producer"
            out.add(PHANTOM_READ, s0[0], s0[1], (s0[2],), value, src0[1], src0[2],
                    f"value {value!r} read at {_tp(s0[0], s0[1])}@{s0[2]} by {_src(src0)} "
                    f"{sent}")
        if fail is not None and fail.definite and value not in seen.acks:
            s0, src0 = min(slots.items(), key=lambda kv: kv[1][2])
            out.add(ABORTED_READ, s0[0], s0[1], (s0[2],), value, fail.client, src0[2],
                    f"value {value!r}, whose send by {fail.client} to "
                    f"{_tp(fail.topic, fail.partition)} failed definitely at t={fail.t:.3f} "
                    f"({fail.error}), was read at {_tp(s0[0], s0[1])}@{s0[2]} by "
                    f"{_src(src0)}")


def _offset_conflicts(seen: Observed, out: _Findings) -> None:
    """INCONSISTENT_OFFSET, first half: offsets seen holding different values."""
    for slot, values in seen.slot_conflicts.items():
        topic, partition, offset = slot
        shown = "; ".join(f"{v!r} by {_src(src)}" for v, src in values.items())
        first = min(values.values(), key=lambda s: s[2])
        out.add(INCONSISTENT_OFFSET, topic, partition, (offset,), next(iter(values)),
                first[1], first[2], f"{_tp(topic, partition)}@{offset} was seen holding "
                f"{len(values)} different values: {shown}")


def _ack_warnings(seen: Observed, warnings: list[str]) -> int:
    """Warn of acks without a Send; return how many values were acked and failed
    definitely (the ack is believed)."""
    definite_and_acked = 0
    for value, ack in seen.acks.items():
        if value not in seen.sends:
            warnings.append(f"value {value!r} was acked at {_ack_where(ack)} without a Send")
        fail = seen.fails.get(value)
        if fail is not None and fail.definite:
            definite_and_acked += 1
    return definite_and_acked


def _lost(seen: Observed, final: _FinalContents, out: _Findings) -> None:
    """LOST: acknowledged values absent from their partition's final read."""
    for value, ack in seen.acks.items():
        tp = (ack.topic, ack.partition)
        fr = seen.finals.get(tp)
        if fr is None or value in final.values[tp]:
            continue
        known = ack.offset >= 0
        why = (f"the log start offset {fr.start_offset} is past it"
               if known and ack.offset < fr.start_offset else
               f"the final read holds offsets {fr.start_offset}..{fr.end_offset - 1}"
               if fr.end_offset > fr.start_offset else "the final read is empty")
        out.add(LOST, ack.topic, ack.partition, (ack.offset,) if known else (), value,
                ack.client, ack.t,
                f"value {value!r} acked to {ack.client} at {_ack_where(ack)} "
                f"(t={ack.t:.3f}) is absent from the final read of {_tp(*tp)} "
                f"(t={fr.t:.3f}; {why})")


def _acked_elsewhere(seen: Observed, out: _Findings) -> None:
    """INCONSISTENT_OFFSET, second half: a value acked at offset o but read in that
    partition only at other offsets, while nothing else was seen at o."""
    for value, ack in seen.acks.items():
        tp = (ack.topic, ack.partition)
        slot = (ack.topic, ack.partition, ack.offset)
        r = seen.read_at.get(value)
        if ack.offset < 0 or r is None or slot in seen.slot_conflicts:
            continue
        read_slots = seen.read_multi.get(value) or {r[0]: r[1]}
        here = {s: src for s, src in read_slots.items() if (s[0], s[1]) == tp}
        if here and slot not in here:
            s0, src0 = min(here.items(), key=lambda kv: kv[1][2])
            out.add(INCONSISTENT_OFFSET, ack.topic, ack.partition,
                    (ack.offset, *sorted(s[2] for s in here)), value, ack.client, ack.t,
                    f"value {value!r} was acked to {ack.client} at {_ack_where(ack)} "
                    f"(t={ack.t:.3f}) but read at {_tp(*tp)}@{s0[2]} by {_src(src0)}")


def _unreadable(seen: Observed, final: _FinalContents, readers: _Readers, faults: FaultTime,
                recovery_window: float, out: _Findings) -> None:
    """UNREADABLE: acknowledged values that reached readers later than the recovery window,
    fault time not counted."""
    if readers.end is None:
        return
    for value, ack in seen.acks.items():
        tp = (ack.topic, ack.partition)
        fr = seen.finals.get(tp)
        lost = fr is not None and value not in final.values[tp]
        if lost or ack.topic not in seen.topics_read:
            continue
        poll = seen.first_poll.get(value)
        if poll is not None:
            end = poll.t
        elif fr is not None:
            end = readers.end
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
            out.add(UNREADABLE, ack.topic, ack.partition,
                    (ack.offset,) if ack.offset >= 0 else (), value, ack.client, ack.t,
                    f"value {value!r} acked to {ack.client} at {_ack_where(ack)} "
                    f"(t={ack.t:.3f}) {what}: {delay:.3f} s after the ack not counting "
                    f"{fault_time:.3f} s of faults, more than the {recovery_window:g} s "
                    "recovery window")


def _skipped_polls(seen: Observed, final: _FinalContents, out: _Findings) -> None:
    """SKIPPED_POLL: a session jumped over offsets that the final read holds."""
    for prev, e in seen.forward_jumps:
        offs = final.offsets.get((e.topic, e.partition))
        if offs is None:
            continue
        lo = bisect.bisect_right(offs, prev.offset)
        hi = bisect.bisect_left(offs, e.offset)
        if hi > lo:
            missing = offs[lo:hi]
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            out.add(SKIPPED_POLL, e.topic, e.partition, tuple(missing), e.value, e.client, e.t,
                    f"{e.client} polled {_tp(e.topic, e.partition)}@{prev.offset} "
                    f"(t={prev.t:.3f}) then @{e.offset} (value {e.value!r}, t={e.t:.3f}) in "
                    f"one session, skipping {len(missing)} records of the final read at "
                    f"offsets {shown}")


def _ack_where(ack: Ack) -> str:
    tp = _tp(ack.topic, ack.partition)
    return f"{tp}@{ack.offset}" if ack.offset >= 0 else f"{tp} (offset unknown)"


def _stats(seen: Observed, readers: _Readers, windows: list[dict[str, Any]],
           faults: FaultTime, recovery_window: float, definite_and_acked: int,
           warnings: list[str]) -> dict[str, Any]:
    acks, fails = seen.acks, seen.fails
    n_definite = sum(1 for f in fails.values() if f.definite and f.value not in acks)
    n_indeterminate = sum(1 for f in fails.values() if not f.definite and f.value not in acks)
    unacked = sum(1 for v in seen.sends if v not in acks and v not in fails)
    if seen.run_info is None:
        warnings.append("the history has no RunInfo event: seed and command unknown")
    if seen.resent:
        warnings.append(f"{seen.resent} Send events repeat a value sent before (values must "
                        "be unique); the first Send of each is used")
    if seen.reacked:
        warnings.append(f"{seen.reacked} Ack events repeat a value acked before; the first "
                        "is used")
    if definite_and_acked:
        warnings.append(f"{definite_and_acked} values were both acked and failed definitely; "
                        "the ack is believed")
    if seen.outside_session:
        warnings.append(f"{seen.outside_session} polls of a partition the client held no "
                        "assignment session for (each started one)")
    unmatched = [w for w in windows if w.get("unmatched")]
    if unmatched:
        warnings.append(f"{len(unmatched)} fault events have no matching start/end")
    if any(not w["ended"] for w in windows):
        warnings.append("a fault never ended: counted as active until the last event")
    if readers.end is None:
        warnings.append("no readers: the unreadable check was skipped")
    return {
        "events": len(seen.events),
        "seed": seen.run_info.seed if seen.run_info else None,
        "sends": len(seen.sends),
        "acks": len(acks),
        "fails_definite": n_definite,
        "fails_indeterminate": n_indeterminate,
        "unacknowledged_at_end": unacked,
        "polls": seen.n_polls,
        "acks_without_offset": seen.acks_without_offset,
        "assigns": seen.n_assigns,
        "polls_outside_session": seen.outside_session,
        "fault_windows": len([w for w in windows if not w.get("unmatched")]),
        "fault_time": round(faults.total, 6),
        "final_records": {_tp(*tp): len(fr.records) for tp, fr in sorted(seen.finals.items())},
        "clients": {c: seen.clients[c] for c in sorted(seen.clients)},
        "recovery_window": recovery_window,
        "reader_end": readers.end,
        "unreadable_check": readers.check_note(),
        "warnings": warnings,
    }


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

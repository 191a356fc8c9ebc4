"""The transactional checker: reads the history of a ``--workload txn`` run
(transactions.py) and names every way the cluster broke what Kafka promises
read_committed consumers of transactions (KIP-98), in the classes Jepsen's Kafka analysis
uses.

A transaction ``T`` (a ``TxnEnd`` event) is *committed* (EndTxn commit acknowledged),
*aborted* (abort acknowledged, or a commit was never requested: the producer was fenced or
died first, so the coordinator must abort it) or *unknown* (commit requested, no answer).
A read is read_committed when the reader's ``Assign`` (or the ``FinalRead``) says so; the
read_uncommitted control reader is only counted (``stats["control_aborted_reads"]``: it
shows aborted records really were in the log for the others not to read).

Anomaly kinds:

``aborted_read``
    A read_committed poll or the final read holds a record of an aborted transaction (one
    per value).
``uncommitted_read``
    A read_committed poll of a record of ``T`` before ``T``'s commit was requested, i.e. while
    ``T`` was still open (one per value): only the commit marker moves the last stable
    offset past a transaction's records. Aborted transactions are ``aborted_read`` instead.
``torn_transaction``
    A read_committed reader saw part of a transaction only (one per transaction and reader
    session and partition, or per transaction for the final read). In a session of one
    reader on partition ``p`` that polled at or before ``T``'s first offset in ``p`` and
    later past its last, every record of ``T`` in ``p`` must have been polled, for ``T``
    committed or seen committed (all of it in the final read). And a transaction of unknown
    outcome is all or nothing in the final read (a committed one missing records is
    ``lost``).
``lost``
    A record of a committed transaction is absent from the final (read_committed) read of its
    partition (one per value).
``duplicate``
    A value was read at two or more distinct offsets or partitions (one per value).
``phantom_read``
    A read value that no Send produced for that partition (one per value).
``lso_regression``
    The last stable offset a client was answered for a partition went down while the leader
    epoch stayed the same (one per drop). Within one leader's term the high watermark and the
    first unstable offset only move forward, so the LSO (their minimum) does too. A new leader
    may answer a lower LSO at first (its high watermark catches up with the old leader's
    after a round of fetches, as in Kafka), so a change of epoch starts over.
``unseen``
    A read_committed reader with manual assignment (it reads every partition it was
    assigned from the start, to the end) never got as far as a committed record of the
    final read (one per reader and partition): it stopped short of committed data, though the
    run let the readers catch up with the final read after the cluster healed. Records it
    went past without polling are ``torn_transaction`` instead. Group members share the
    partitions and are not judged.
``no_final_read``, ``no_commits``
    A partition written to has no final read; no transaction committed at all (the run
    tested nothing). Neither may pass.

Command line: ``python -m odradek.broker.verify.txn_checker HISTORY.jsonl [--json]``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odradek.broker.verify.checker import Anomaly, CheckResult, HistoryError, load
from odradek.broker.verify.history import (
    Ack,
    Assign,
    Event,
    FinalRead,
    Lso,
    Poll,
    RunInfo,
    Send,
    TxnEnd,
)

ABORTED_READ = "aborted_read"
UNCOMMITTED_READ = "uncommitted_read"
TORN_TRANSACTION = "torn_transaction"
LOST = "lost"
DUPLICATE = "duplicate"
PHANTOM_READ = "phantom_read"
LSO_REGRESSION = "lso_regression"
UNSEEN = "unseen"
NO_FINAL_READ = "no_final_read"
NO_COMMITS = "no_commits"

TXN_ANOMALY_KINDS: tuple[str, ...] = (
    ABORTED_READ, UNCOMMITTED_READ, TORN_TRANSACTION, LOST, DUPLICATE, PHANTOM_READ,
    LSO_REGRESSION, UNSEEN, NO_FINAL_READ, NO_COMMITS,
)
READ_COMMITTED = "read_committed"

TP = tuple[str, int]


@dataclass
class _Session:
    """One reader's run of polls of one partition, between assignments."""

    client: str
    topic: str
    partition: int
    committed: bool
    manual: bool
    offsets: set[int] = field(default_factory=set)
    first: int = -1
    last: int = -1
    last_t: float = 0.0


@dataclass
class _Seen:
    """The history, indexed by value and partition in one pass."""

    sends: dict[str, Send] = field(default_factory=dict)
    offsets: dict[str, tuple[TP, int]] = field(default_factory=dict)  # value -> acked at
    txns: dict[str, TxnEnd] = field(default_factory=dict)
    txn_of: dict[str, str] = field(default_factory=dict)  # value -> txn
    polls: list[tuple[Poll, bool]] = field(default_factory=list)  # (poll, read_committed)
    sessions: list[_Session] = field(default_factory=list)
    finals: dict[TP, FinalRead] = field(default_factory=dict)
    lsos: list[Lso] = field(default_factory=list)
    written: dict[TP, float] = field(default_factory=dict)
    run_info: RunInfo | None = None
    events: int = 0
    control_aborted: int = 0  # aborted records the read_uncommitted control polled

    @classmethod
    def of(cls, events: Sequence[Event]) -> _Seen:
        seen = cls(events=len(events))
        isolation: dict[str, str] = {}
        current: dict[tuple[str, str, int], _Session] = {}
        held: dict[tuple[str, str], list[int]] = {}
        for e in events:
            if type(e) is Poll:
                rc = isolation.get(e.client) == READ_COMMITTED
                seen.polls.append((e, rc))
                key = (e.client, e.topic, e.partition)
                s = current.get(key)
                if s is None:
                    s = current[key] = _Session(e.client, e.topic, e.partition, rc, False)
                    seen.sessions.append(s)
                    held.setdefault((e.client, e.topic), []).append(e.partition)
                if s.first < 0:
                    s.first = e.offset
                s.offsets.add(e.offset)
                s.last = max(s.last, e.offset)
                s.last_t = e.t
            elif type(e) is Send:
                seen.sends.setdefault(e.value, e)
                seen.written.setdefault((e.topic, e.partition), e.t)
            elif type(e) is Ack:
                if e.offset >= 0:
                    seen.offsets.setdefault(e.value, ((e.topic, e.partition), e.offset))
            elif type(e) is Assign:
                isolation[e.client] = e.isolation
                ct = (e.client, e.topic)
                parts = e.partitions
                if e.group is not None:  # a group assignment replaces the whole set
                    parts = sorted({*held.get(ct, ()), *e.partitions})
                    held[ct] = list(e.partitions)
                for p in parts:
                    current.pop((e.client, e.topic, p), None)
                for p in e.partitions:
                    s = current[(e.client, e.topic, p)] = _Session(
                        e.client, e.topic, p, e.isolation == READ_COMMITTED, e.group is None)
                    seen.sessions.append(s)
            elif type(e) is TxnEnd:
                seen.txns[e.txn] = e
                for _, _, value in e.records:
                    seen.txn_of[value] = e.txn
            elif type(e) is FinalRead:
                seen.finals[(e.topic, e.partition)] = e
            elif type(e) is Lso:
                seen.lsos.append(e)
            elif type(e) is RunInfo:
                seen.run_info = e
        return seen


class _Out:
    def __init__(self) -> None:
        self.found: dict[str, list[Anomaly]] = {k: [] for k in TXN_ANOMALY_KINDS}

    def add(self, kind: str, tp: TP, offsets: Sequence[int], value: str | None,
            client: str | None, t: float | None, message: str) -> None:
        self.found[kind].append(Anomaly(kind, tp[0], tp[1], tuple(offsets), value, client, t,
                                        f"{kind}: {message}"))


def _w(tp: TP) -> str:
    return f"{tp[0]}/{tp[1]}"


def check_txn(events: Sequence[Event]) -> CheckResult:
    """Every transactional anomaly in ``events`` (module docstring)."""
    seen = _Seen.of(events)
    out = _Out()
    final_at = _final_values(seen)
    _reads(seen, final_at, out)
    _lost_and_atomicity(seen, final_at, out)
    _torn_sessions(seen, final_at, out)
    _lso_regressions(seen, out)
    _unseen(seen, out)
    for tp, t in sorted(seen.written.items()):
        if tp not in seen.finals:
            out.add(NO_FINAL_READ, tp, (), None, None, t,
                    f"{_w(tp)} was written from t={t:.3f} but has no final read")
    outcomes = {o: sum(1 for x in seen.txns.values() if x.outcome == o)
                for o in ("committed", "aborted", "unknown")}
    if not outcomes["committed"]:
        out.add(NO_COMMITS, ("", -1), (), None, None, None,
                f"no transaction committed ({len(seen.txns)} ended: {outcomes}): the run "
                "tested nothing")
    for found in out.found.values():
        found.sort(key=lambda a: (math.inf if a.t is None else a.t, a.topic, a.partition,
                                  a.offsets, str(a.value)))
    return CheckResult(out.found, _stats(seen, outcomes), TXN_ANOMALY_KINDS)


def _final_values(seen: _Seen) -> dict[str, list[tuple[TP, int]]]:
    """value -> where the read_committed final reads hold it."""
    at: dict[str, list[tuple[TP, int]]] = {}
    for tp, fr in seen.finals.items():
        for offset, value in fr.records:
            at.setdefault(value, []).append((tp, int(offset)))
    return at


def _outcome(seen: _Seen, value: str) -> TxnEnd | None:
    txn = seen.txn_of.get(value)
    return seen.txns.get(txn) if txn is not None else None


def _reads(seen: _Seen, final_at: dict[str, list[tuple[TP, int]]], out: _Out) -> None:
    """ABORTED_READ, UNCOMMITTED_READ, DUPLICATE and PHANTOM_READ, from polls and finals."""
    where: dict[str, dict[tuple[TP, int], tuple[str, float]]] = {}
    flagged: set[str] = set()
    control = 0
    for poll, rc in seen.polls:
        tp = (poll.topic, poll.partition)
        where.setdefault(poll.value, {}).setdefault((tp, poll.offset), (poll.client, poll.t))
        end = _outcome(seen, poll.value)
        if not rc:
            control += end is not None and end.outcome == "aborted"
            continue
        if poll.value in flagged or end is None:
            continue
        if end.outcome == "aborted":
            flagged.add(poll.value)
            out.add(ABORTED_READ, tp, (poll.offset,), poll.value, poll.client, poll.t,
                    f"{poll.client} (read_committed) polled {_w(tp)}@{poll.offset} = "
                    f"{poll.value!r} at t={poll.t:.3f}, of transaction {end.txn} "
                    f"aborted at t={end.t:.3f} ({end.detail or 'abort acknowledged'})")
        elif end.commit_t is None or poll.t < end.commit_t:
            flagged.add(poll.value)
            asked = ("its commit was never requested" if end.commit_t is None else
                     f"its commit was requested only at t={end.commit_t:.3f}")
            out.add(UNCOMMITTED_READ, tp, (poll.offset,), poll.value, poll.client, poll.t,
                    f"{poll.client} (read_committed) polled {_w(tp)}@{poll.offset} = "
                    f"{poll.value!r} at t={poll.t:.3f} while transaction {end.txn} was "
                    f"open: {asked}")
    seen.control_aborted = control
    for tp, fr in seen.finals.items():
        for offset, value in fr.records:
            where.setdefault(value, {}).setdefault((tp, int(offset)), ("final read", fr.t))
            end = _outcome(seen, value)
            if (fr.isolation == READ_COMMITTED and end is not None
                    and end.outcome == "aborted" and value not in flagged):
                flagged.add(value)
                out.add(ABORTED_READ, tp, (int(offset),), value, None, fr.t,
                        f"the final read (read_committed) holds {_w(tp)}@{offset} = "
                        f"{value!r} of transaction {end.txn}, aborted at t={end.t:.3f}")
    for value, slots in where.items():
        send = seen.sends.get(value)
        first_slot, (client, t) = min(slots.items(), key=lambda kv: kv[1][1])
        if len(slots) > 1:
            shown = ", ".join(f"{_w(tp)}@{o} ({c}, t={ti:.3f})"
                              for (tp, o), (c, ti) in sorted(slots.items()))
            out.add(DUPLICATE, first_slot[0], sorted(o for _, o in slots), value, client, t,
                    f"{value!r} was read at {len(slots)} places: {shown}")
        if send is None or any(tp != (send.topic, send.partition) for tp, _ in slots):
            sent = (f"was sent to {_w((send.topic, send.partition))}" if send
                    else "was never sent")
            out.add(PHANTOM_READ, first_slot[0], (first_slot[1],), value, client, t,
                    f"{value!r} read at {_w(first_slot[0])}@{first_slot[1]} by {client} "
                    f"{sent}")


def _lost_and_atomicity(seen: _Seen, final_at: dict[str, list[tuple[TP, int]]],
                        out: _Out) -> None:
    """LOST for committed transactions, TORN_TRANSACTION for unknown ones in the final read."""
    for txn in seen.txns.values():
        if txn.outcome == "aborted":
            continue
        judged = [(topic, partition, value) for topic, partition, value in txn.records
                  if (topic, partition) in seen.finals]
        present = [r for r in judged if r[2] in final_at]
        missing = [r for r in judged if r[2] not in final_at]
        if txn.outcome == "committed":
            for topic, partition, value in missing:
                tp = (topic, partition)
                fr = seen.finals[tp]
                acked = seen.offsets.get(value)
                out.add(LOST, tp, (acked[1],) if acked else (), value, txn.client, txn.t,
                        f"{value!r} of transaction {txn.txn}, committed at t={txn.t:.3f}, "
                        f"is absent from the final read of {_w(tp)} (offsets "
                        f"{fr.start_offset}..{fr.end_offset - 1})")
        elif present and missing:
            tp = (missing[0][0], missing[0][1])
            out.add(TORN_TRANSACTION, tp, (), missing[0][2], txn.client, txn.t,
                    f"transaction {txn.txn} (outcome unknown: {txn.detail}) is only partly "
                    f"in the final read: {len(present)} of its {len(judged)} records, "
                    f"missing {[r[2] for r in missing]}")


def _torn_sessions(seen: _Seen, final_at: dict[str, list[tuple[TP, int]]],
                   out: _Out) -> None:
    """TORN_TRANSACTION: a read_committed session passed a visible transaction's records in
    a partition but polled only some of them."""
    # partition -> [(first offset, last offset, offsets, txn)] of visible transactions
    spans: dict[TP, list[tuple[int, int, frozenset[int], str]]] = {}
    for txn in seen.txns.values():
        values = [r[2] for r in txn.records]
        visible = txn.outcome == "committed" or (
            txn.outcome == "unknown" and values and all(v in final_at for v in values))
        if not visible:
            continue
        by_tp: dict[TP, set[int]] = {}
        known = True
        for topic, partition, value in txn.records:
            at = seen.offsets.get(value) or next(
                (w for w in final_at.get(value, ()) if w[0] == (topic, partition)), None)
            if at is None:
                known = False  # lost, or never acknowledged: judged as such
                break
            by_tp.setdefault((topic, partition), set()).add(at[1])
        if not known:
            continue
        for tp, offs in by_tp.items():
            spans.setdefault(tp, []).append((min(offs), max(offs), frozenset(offs), txn.txn))
    for tp_spans in spans.values():
        tp_spans.sort()
    for s in seen.sessions:
        if not s.committed or s.first < 0:
            continue
        tp = (s.topic, s.partition)
        tp_spans = spans.get(tp, [])
        lo = bisect.bisect_left(tp_spans, (s.first, -1, frozenset(), ""))
        for first, last, span, txn_id in tp_spans[lo:]:
            if first > s.last:
                break
            if last >= s.last:
                continue  # the session did not get past it
            missing = sorted(span - s.offsets)
            if missing:
                read = len(span) - len(missing)
                out.add(TORN_TRANSACTION, tp, missing, None, s.client, s.last_t,
                        f"{s.client} (read_committed) read {read} of the {len(span)} records "
                        f"of committed transaction {txn_id} in {_w(tp)} (offsets "
                        f"{sorted(span)}) and went on to @{s.last} without offsets "
                        f"{missing}")


def _unseen(seen: _Seen, out: _Out) -> None:
    """UNSEEN: a manual read_committed reader's furthest poll of a partition, over all its
    sessions, stops short of committed records of the final read."""
    furthest: dict[tuple[str, TP], tuple[int, float]] = {}
    for s in seen.sessions:
        if not (s.committed and s.manual):
            continue
        key = (s.client, (s.topic, s.partition))
        prev = furthest.get(key, (-1, 0.0))
        furthest[key] = max(prev, (s.last, s.last_t))
    for (client, tp), (last, last_t) in sorted(furthest.items()):
        fr = seen.finals.get(tp)
        if fr is None:
            continue
        beyond = [int(o) for o, v in fr.records
                  if int(o) > last and (end := _outcome(seen, v)) is not None
                  and end.outcome == "committed"]
        if beyond:
            at = f"@{last} at t={last_t:.3f}" if last >= 0 else "nothing"
            out.add(UNSEEN, tp, (beyond[0], beyond[-1]), None, client, fr.t,
                    f"{client} (read_committed) polled {_w(tp)} up to {at}, never the "
                    f"{len(beyond)} committed records of the final read from @{beyond[0]} "
                    f"to @{beyond[-1]}")


def _lso_regressions(seen: _Seen, out: _Out) -> None:
    """LSO_REGRESSION: a drop of the LSO a client was answered within one leader epoch."""
    last: dict[tuple[str, str, int], Lso] = {}
    for e in seen.lsos:
        key = (e.client, e.topic, e.partition)
        prev = last.get(key)
        if prev is not None and e.leader_epoch == prev.leader_epoch and e.lso < prev.lso:
            out.add(LSO_REGRESSION, (e.topic, e.partition), (prev.lso, e.lso), None, e.client,
                    e.t, f"{e.client} was answered LSO {e.lso} for "
                    f"{_w((e.topic, e.partition))} at t={e.t:.3f} after {prev.lso} at "
                    f"t={prev.t:.3f}, both in leader epoch {e.leader_epoch}")
        if prev is None or e.leader_epoch != prev.leader_epoch or e.lso >= prev.lso:
            last[key] = e  # after a drop, the higher value stays the bar


def _stats(seen: _Seen, outcomes: dict[str, int]) -> dict[str, Any]:
    rc_polls = sum(1 for _, rc in seen.polls if rc)
    control = seen.control_aborted
    finals = sum(len(fr.records) for fr in seen.finals.values())
    headline = [
        f"Checked {seen.events} events: {len(seen.txns)} transactions ({outcomes['committed']} "
        f"committed, {outcomes['aborted']} aborted, {outcomes['unknown']} unknown), "
        f"{len(seen.sends)} records sent, {rc_polls} read_committed polls, "
        f"{len(seen.polls) - rc_polls} read_uncommitted polls ({control} of them aborted "
        f"records: the control), {finals} records in {len(seen.finals)} final reads, "
        f"{len(seen.lsos)} LSO changes observed."]
    return {
        "headline": headline, "events": seen.events,
        "seed": seen.run_info.seed if seen.run_info else None,
        "transactions": outcomes, "sends": len(seen.sends),
        "read_committed_polls": rc_polls, "read_uncommitted_polls": len(seen.polls) - rc_polls,
        "control_aborted_reads": control, "final_records": finals,
        "lso_observations": len(seen.lsos), "sessions": len(seen.sessions),
        "recovery_window": None, "unreadable_check": "not applicable (transactional run)",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m odradek.broker.verify.txn_checker",
        description="Check a transactional run's history. Exit status: 0 clean, 1 anomalies "
                    "found, 2 the history cannot be read.")
    parser.add_argument("history", type=Path)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--examples", type=int, default=5, metavar="N")
    args = parser.parse_args(argv)
    try:
        events = load(args.history)
    except HistoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = check_txn(events)
    print(json.dumps(result.to_dict(), indent=1) if args.json else result.summary(args.examples))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

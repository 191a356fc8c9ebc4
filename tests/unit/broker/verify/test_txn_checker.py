"""The transactional checker's self-test (txn_checker.py): a clean synthetic history of
committed and aborted transactions, read by a read_committed and a read_uncommitted reader,
passes; planting one instance of each anomaly kind reports exactly that kind, once."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path

import pytest

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
from odradek.broker.verify.report import write_report
from odradek.broker.verify.txn_checker import TXN_ANOMALY_KINDS, check_txn

TOPIC = "txn"
RC, RU = "read_committed", "read_uncommitted"


def clean_history(seed: int = 1, txns: int = 60, partitions: int = 3) -> list[Event]:
    """Transactions one after the other (each commit or abort writes a marker in every
    partition it touched); the rc reader polls committed records after their commit, the ru
    reader every record; the LSO probe sees each partition's LSO rise, in one epoch."""
    rng = random.Random(seed)
    timed: list[tuple[float, int, Event]] = []

    def emit(e: Event) -> None:
        timed.append((e.t, len(timed), e))

    emit(RunInfo(0.0, seed, "odradek verify --workload txn", {}))
    for client, level in (("rc", RC), ("ru", RU)):
        emit(Assign(0.5, client, TOPIC, list(range(partitions)), None, level))
    next_offset = dict.fromkeys(range(partitions), 0)
    committed: dict[int, list[list[object]]] = {p: [] for p in range(partitions)}
    t = 1.0
    for n in range(txns):
        outcome = "committed" if rng.random() < 0.7 else "aborted"
        count = rng.randint(2, 4)
        records: list[tuple[int, int, str]] = []  # (partition, offset, value)
        for i in range(count):
            p = rng.randrange(partitions)
            value = f"w1-{n}-{i}-{count}"
            offset = next_offset[p]
            next_offset[p] += 1
            emit(Send(t, "w1", TOPIC, p, f"k{i}", value))
            emit(Ack(t + 0.01, "w1", TOPIC, p, value, offset))
            emit(Poll(t + 0.02, "ru", TOPIC, p, offset, value))
            records.append((p, offset, value))
        commit_t = t + 0.05 if outcome == "committed" else None
        end_t = t + 0.1
        for p in sorted({r[0] for r in records}):
            next_offset[p] += 1  # the marker
            emit(Lso(end_t + 0.01, "probe", TOPIC, p, next_offset[p], 0))
        emit(TxnEnd(end_t, "w1", f"w1-{n}", outcome, [[TOPIC, p, v] for p, _, v in records],
                    commit_t))
        if outcome == "committed":
            for p, offset, value in sorted(records):
                emit(Poll(end_t + 0.05, "rc", TOPIC, p, offset, value))
                committed[p].append([offset, value])
        t += 0.2
    for p in range(partitions):
        emit(FinalRead(t + 1, TOPIC, p, committed[p], next_offset[p], 0, RC))
    return [e for _, _, e in sorted(timed, key=lambda x: (x[0], x[1]))]


def counts(events: list[Event]) -> dict[str, int]:
    return {k: n for k, n in check_txn(events).counts().items() if n}


def txn_ends(events: list[Event], outcome: str) -> list[TxnEnd]:
    return [e for e in events if isinstance(e, TxnEnd) and e.outcome == outcome]


def polls_of(events: list[Event], client: str, value: str) -> list[Poll]:
    return [e for e in events if isinstance(e, Poll) and e.client == client and e.value == value]


def acked_at(events: list[Event], value: str) -> tuple[int, int]:
    ack = next(e for e in events if isinstance(e, Ack) and e.value == value)
    return ack.partition, ack.offset


def extra_reader(events: list[Event], t: float, p: int, offset: int, value: str,
                 level: str = RC) -> list[Event]:
    """The history plus a new group member's session polling one record (a group member,
    so the records it does not read are no ``unseen``)."""
    return [*events, Assign(t, "late", TOPIC, [p], "late-group", level),
            Poll(t + 0.001, "late", TOPIC, p, offset, value)]


# -- the plants: each returns the history with one anomaly of its kind ------------------------


def plant_aborted_read(events: list[Event]) -> list[Event]:
    value = str(txn_ends(events, "aborted")[0].records[0][2])
    p, offset = acked_at(events, value)
    return extra_reader(events, 30.0, p, offset, value)


def plant_uncommitted_read(events: list[Event]) -> list[Event]:
    end = txn_ends(events, "committed")[3]
    value = str(end.records[0][2])
    p, offset = acked_at(events, value)
    assert end.commit_t is not None
    return extra_reader(events, end.commit_t - 0.04, p, offset, value)


def plant_torn_transaction(events: list[Event]) -> list[Event]:
    """The rc reader skips one record of a committed transaction and reads on past it."""
    first_rc: dict[int, int] = {}
    last_rc: dict[int, int] = {}
    for e in events:
        if isinstance(e, Poll) and e.client == "rc":
            first_rc.setdefault(e.partition, e.offset)
            last_rc[e.partition] = e.offset
    for end in txn_ends(events, "committed"):
        value = str(end.records[0][2])
        p, offset = acked_at(events, value)
        # Not the session's first poll: a session is judged from where it started.
        if first_rc[p] < offset < last_rc[p]:
            drop = polls_of(events, "rc", value)[0]
            return [e for e in events if e is not drop]
    raise AssertionError("no committed transaction to tear")


def plant_torn_unknown(events: list[Event]) -> list[Event]:
    """A transaction of unknown outcome, only partly in the final read."""
    end = next(e for e in txn_ends(events, "committed") if len(e.records) >= 2)
    value = str(end.records[0][2])
    p, _ = acked_at(events, value)
    out: list[Event] = []
    for e in events:
        if e is end:
            e = dataclasses.replace(end, outcome="unknown")
        elif isinstance(e, FinalRead) and e.partition == p:
            e = dataclasses.replace(e, records=[r for r in e.records if r[1] != value])
        out.append(e)
    return out


def plant_lost(events: list[Event]) -> list[Event]:
    value = str(txn_ends(events, "committed")[5].records[0][2])
    p, _ = acked_at(events, value)
    return [dataclasses.replace(e, records=[r for r in e.records if r[1] != value])
            if isinstance(e, FinalRead) and e.partition == p else e for e in events]


def plant_duplicate(events: list[Event]) -> list[Event]:
    value = str(txn_ends(events, "committed")[2].records[0][2])
    p, _ = acked_at(events, value)
    return extra_reader(events, 30.0, p, 10_000, value)


def plant_phantom_read(events: list[Event]) -> list[Event]:
    return extra_reader(events, 30.0, 0, 10_000, "nobody-1-0-1")


def plant_lso_regression(events: list[Event]) -> list[Event]:
    last = [e for e in events if isinstance(e, Lso)][-1]
    return [*events, dataclasses.replace(last, t=last.t + 0.5, lso=last.lso - 1)]


def plant_unseen(events: list[Event]) -> list[Event]:
    """The rc reader stops before the last committed record of partition 0."""
    last = [e for e in events if isinstance(e, Poll) and e.client == "rc" and e.partition == 0][-1]
    return [e for e in events if e is not last]


def plant_no_final_read(events: list[Event]) -> list[Event]:
    return [e for e in events if not (isinstance(e, FinalRead) and e.partition == 1)]


def plant_no_commits(events: list[Event]) -> list[Event]:
    return [e for e in events if not (isinstance(e, TxnEnd) and e.outcome == "committed")]


PLANTS: dict[str, Callable[[list[Event]], list[Event]]] = {
    "aborted_read": plant_aborted_read,
    "uncommitted_read": plant_uncommitted_read,
    "torn_transaction": plant_torn_transaction,
    "lost": plant_lost,
    "duplicate": plant_duplicate,
    "phantom_read": plant_phantom_read,
    "lso_regression": plant_lso_regression,
    "unseen": plant_unseen,
    "no_final_read": plant_no_final_read,
    "no_commits": plant_no_commits,
}


def test_every_kind_has_a_plant() -> None:
    assert set(PLANTS) == set(TXN_ANOMALY_KINDS)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_history_passes(seed: int) -> None:
    events = clean_history(seed)
    result = check_txn(events)
    assert result.ok, result.summary()
    assert result.stats["control_aborted_reads"] > 0  # the ru reader saw aborted records
    assert result.stats["transactions"]["committed"] > 20


@pytest.mark.parametrize("kind", sorted(PLANTS))
@pytest.mark.parametrize("seed", [1, 2])
def test_each_planted_anomaly_is_found_exactly(kind: str, seed: int) -> None:
    found = counts(PLANTS[kind](clean_history(seed)))
    assert found == {kind: 1}, found


def test_torn_unknown_transaction_in_the_final_read() -> None:
    found = counts(plant_torn_unknown(clean_history(4)))
    assert found == {"torn_transaction": 1}, found


def test_lso_may_start_lower_in_a_new_leader_epoch() -> None:
    events = clean_history(5)
    last = [e for e in events if isinstance(e, Lso)][-1]
    lower = dataclasses.replace(last, t=last.t + 0.5, lso=last.lso - 3, leader_epoch=1)
    assert check_txn([*events, lower]).ok
    again = dataclasses.replace(lower, t=lower.t + 0.5, lso=lower.lso - 1)
    assert counts([*events, lower, again]) == {"lso_regression": 1}


def test_read_uncommitted_reader_may_read_aborted_and_open_transactions() -> None:
    events = clean_history(6)
    value = str(txn_ends(events, "aborted")[0].records[0][2])
    p, offset = acked_at(events, value)
    assert check_txn(extra_reader(events, 30.0, p, offset, value, level=RU)).ok


def test_a_regrouped_session_starting_inside_a_transaction_is_not_torn() -> None:
    """A group member resumes from a committed offset in the middle of a transaction's
    records: the records before it belong to an earlier session."""
    events = clean_history(7)
    end = next(e for e in txn_ends(events, "committed")
               if len({r[1] for r in e.records}) < len(e.records))
    same_p = [acked_at(events, str(r[2])) for r in end.records]
    p = next(q for q, _ in same_p if sum(1 for x, _ in same_p if x == q) > 1)
    offs = sorted(o for q, o in same_p if q == p)
    values = {acked_at(events, str(r[2])): str(r[2]) for r in end.records}
    resumed: list[Event] = [Assign(40.0, "g", TOPIC, [p], "grp", RC)]
    resumed += [Poll(40.1, "g", TOPIC, p, o, values[(p, o)]) for o in offs[1:]]
    later = [e for e in events if isinstance(e, Poll) and e.client == "rc" and e.partition == p
             and e.offset > offs[-1]]
    resumed += [dataclasses.replace(e, client="g", t=40.2) for e in later]
    assert check_txn([*events, *resumed]).ok


def test_report_of_a_transactional_run_lists_its_kinds(tmp_path: Path) -> None:
    events = plant_lost(clean_history(8))
    result = check_txn(events)
    md = write_report(tmp_path, events, result, title="txn").read_text()
    assert "**Verdict: FAIL**" in md and "| torn_transaction | 0 |" in md
    assert "| lost | 1 |" in md and "transactions (" in md

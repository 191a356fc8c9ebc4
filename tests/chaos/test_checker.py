"""The checker's self-test: it must prove it can fail.

A generator builds clean synthetic histories of a multi-client, multi-partition run with
faults, definite and indeterminate failures (whose values may or may not be in the log),
sends still unanswered at the end, consumer-group rebalances that re-read from the committed
offset, and manual readers that re-assign and re-read. Clean histories must pass; planting
one instance of any anomaly kind must report exactly that kind, once.

``python -m tests.chaos.test_checker [EVENTS]`` times the checker on a large history.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek.broker.verify import checker, history
from odradek.broker.verify.checker import ANOMALY_KINDS, check
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

REPO = Path(__file__).resolve().parents[2]
TOPIC = "chaos"
FAULT_KINDS = ["kill", "pause", "isolate", "split", "oneway", "loss", "delay",
               "controller-kill", "crash-unflushed"]


# -- the clean history --------------------------------------------------------------------------

def synthetic_history(seed: int, *, partitions: int = 4, producers: int = 3,
                      duration: float = 60.0, rate: float = 12.0, faults: int = 3,
                      group_size: int = 2, manual_readers: int = 1, rebalances: int = 3,
                      reassigns: int = 1) -> list[Event]:
    """A clean run of ``duration`` seconds: ``rate`` sends per second in all, ``faults``
    (possibly overlapping) fault windows, a consumer group of ``group_size`` members that
    rebalances ``rebalances`` times and manual readers that re-assign ``reassigns`` times."""
    rng = random.Random(seed)
    out: list[tuple[float, int, Event]] = []

    def emit(e: Event) -> None:
        out.append((e.t, len(out), e))

    emit(RunInfo(0.0, seed, f"odradek verify --seed {seed} --duration "
                            f"{duration:g} --partitions {partitions}",
                 {"partitions": partitions, "producers": producers, "rate": rate,
                  "replication_factor": 3, "nodes": 3}))
    windows: list[tuple[float, float]] = []
    for _ in range(faults):
        s = round(rng.uniform(3, duration - 10), 3)
        e = round(min(s + rng.uniform(1, 6), duration - 3), 3)
        kind = rng.choice(FAULT_KINDS)
        targets = sorted(rng.sample([1, 2, 3], rng.randint(1, 2)))
        detail = f"{kind} of node(s) {targets}"
        emit(Fault(s, kind, "start", targets, detail))
        emit(Fault(e, kind, "end", targets, ""))
        windows.append((s, e))
    merged: list[list[float]] = []
    for s, e in sorted(windows):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    starts = [s for s, _ in merged]

    def fault_end(t: float) -> float | None:
        i = bisect.bisect_right(starts, t) - 1
        return merged[i][1] if i >= 0 and t < merged[i][1] else None

    # Producers: each send is acked, fails (definitely or not) or is still open at the end;
    # during a fault nothing is appended until the fault ends.
    appended: list[list[tuple[float, str, str, float | None]]] = [[] for _ in range(partitions)]
    for i in range(producers):
        client = f"{'cp' if i % 2 == 0 else 'kp'}{i}"
        t, seq = rng.uniform(0.2, 0.5), 0
        while t < duration:
            p = rng.randrange(partitions)
            key = f"k{rng.randrange(8)}"
            value = f"{client}-{key}-{seq}"
            seq += 1
            emit(Send(t, client, TOPIC, p, key, value))
            fe = fault_end(t)
            r = rng.random()
            if fe is None:
                if t > duration - 0.4 and r < 0.5:
                    if rng.random() < 0.5:  # unanswered at the end, maybe appended
                        appended[p].append((t + 0.002, client, value, None))
                elif r < 0.02:
                    emit(Fail(t + 0.002, client, TOPIC, p, value, "NOT_ENOUGH_REPLICAS", True))
                elif r < 0.04:
                    if rng.random() < 0.5:
                        appended[p].append((t + 0.003, client, value, None))
                    emit(Fail(t + rng.uniform(0.5, 2), client, TOPIC, p, value,
                              "REQUEST_TIMED_OUT", False))
                else:
                    at = t + rng.uniform(0.001, 0.01)
                    appended[p].append((at, client, value, at + rng.uniform(0.001, 0.03)))
            else:
                at = fe + rng.uniform(0.05, 0.5)
                if r < 0.3:
                    emit(Fail(t + 0.001, client, TOPIC, p, value, "NOT_LEADER_OR_FOLLOWER",
                              True))
                elif r < 0.6:
                    if rng.random() < 0.5:
                        appended[p].append((at, client, value, None))
                    emit(Fail(t + rng.uniform(0.5, 3), client, TOPIC, p, value,
                              "MSG_TIMED_OUT", False))
                else:
                    appended[p].append((at, client, value, at + rng.uniform(0.001, 0.05)))
            t += rng.expovariate(rate / producers)

    logs: list[list[tuple[float, str]]] = []
    for p, recs in enumerate(appended):
        recs.sort()
        logs.append([(at, v) for at, _, v, _ in recs])
        for offset, (_at, client, value, ack_t) in enumerate(recs):
            if ack_t is not None:
                # librdkafka acks some idempotent retries without an offset: -1
                known = not client.startswith("cp") or rng.random() > 0.01
                emit(Ack(ack_t, client, TOPIC, p, value, offset if known else -1))

    read_end = duration + 3.0

    def read(client: str, p: int, pos: int, seg_start: float, seg_end: float,
             commit: Callable[[int], None] | None = None) -> int:
        t = seg_start + rng.uniform(0.05, 0.3)
        log = logs[p]
        while pos < len(log):
            at, value = log[pos]
            t = max(t, at + rng.uniform(0.002, 0.05)) + 1e-4
            if t >= seg_end:
                break
            emit(Poll(t, client, TOPIC, p, pos, value))
            pos += 1
            if commit is not None and rng.random() < 0.3:
                commit(pos)
        return pos

    def segments(n: int) -> list[tuple[float, float]]:
        cuts = sorted(rng.uniform(3, duration) for _ in range(n))
        bounds = [rng.uniform(0.05, 0.2), *cuts, read_end]
        return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]

    # A consumer group: every rebalance re-assigns the partitions and each one resumes from
    # its committed offset, re-reading what was polled but not committed.
    members = [f"g{i}" for i in range(group_size)]
    committed = [0] * partitions
    for n, (s, e) in enumerate(segments(rebalances) if members else []):
        owners = {p: members[(p + n) % len(members)] for p in range(partitions)}
        for c in members:
            emit(Assign(s, c, TOPIC, [p for p in range(partitions) if owners[p] == c], "grp"))
        for p in range(partitions):
            def commit(pos: int, p: int = p) -> None:
                committed[p] = pos
            end = read(owners[p], p, committed[p], s, e, commit)
            if rng.random() < 0.5:
                committed[p] = end

    # Manual readers read every partition; on re-assignment they rewind a little.
    for m in range(manual_readers):
        client = f"m{m}"
        pos = [0] * partitions
        for s, e in segments(reassigns):
            emit(Assign(s, client, TOPIC, list(range(partitions)), None))
            for p in range(partitions):
                start = max(0, pos[p] - rng.randint(0, 4))
                pos[p] = read(client, p, start, s, e)

    for p in range(partitions):
        emit(FinalRead(duration + 5.0, TOPIC, p, [[o, v] for o, (_, v) in enumerate(logs[p])],
                       len(logs[p]), 0))
    out.sort(key=lambda x: (x[0], x[1]))
    return [e for _, _, e in out]


# -- planting one anomaly -------------------------------------------------------------------

def _finals(events: list[Event]) -> dict[int, int]:
    """Partition -> index of its FinalRead in events."""
    return {e.partition: i for i, e in enumerate(events) if isinstance(e, FinalRead)}


def _append_final(events: list[Event], p: int, value: str) -> list[Event]:
    i = _finals(events)[p]
    fr = events[i]
    assert isinstance(fr, FinalRead)
    events = list(events)
    events[i] = dataclasses.replace(fr, records=[*fr.records, [fr.end_offset, value]],
                                    end_offset=fr.end_offset + 1)
    return events


def _insert(events: list[Event], *new: Event) -> list[Event]:
    events = list(events)
    for e in new:
        i = bisect.bisect_right([x.t for x in events], e.t)
        events.insert(i, e)
    return events


def _acks(events: list[Event]) -> list[Ack]:
    """The acks that name an offset."""
    return [e for e in events if isinstance(e, Ack) and e.offset >= 0]


def _sessions(events: list[Event]) -> list[list[int]]:
    """Indices of the Polls of each assignment session, in order (as the checker defines)."""
    current: dict[tuple[str, str, int], list[int]] = {}
    parts: dict[tuple[str, str], list[int]] = {}
    done: list[list[int]] = []
    for i, e in enumerate(events):
        if isinstance(e, Assign):
            for p in parts.get((e.client, e.topic), []):
                if (s := current.pop((e.client, e.topic, p), None)) is not None:
                    done.append(s)
            parts[(e.client, e.topic)] = list(e.partitions)
            for p in e.partitions:
                current[(e.client, e.topic, p)] = []
        elif isinstance(e, Poll):
            current[(e.client, e.topic, e.partition)].append(i)
    return done + list(current.values())


def _first_polls(events: list[Event]) -> dict[str, int]:
    first: dict[str, int] = {}
    for i, e in enumerate(events):
        if isinstance(e, Poll) and e.value not in first:
            first[e.value] = i
    return first


def plant_lost(events: list[Event], rng: random.Random) -> list[Event]:
    """An acked record vanishes from the log (and nobody polled it)."""
    ack = rng.choice(_acks(events))
    fi = _finals(events)[ack.partition]
    fr = events[fi]
    assert isinstance(fr, FinalRead)
    out = [e for e in events if not (isinstance(e, Poll) and e.value == ack.value)]
    fi = _finals(out)[ack.partition]
    out[fi] = dataclasses.replace(fr, records=[r for r in fr.records if r[1] != ack.value])
    return out


def plant_lost_below_log_start(events: list[Event], rng: random.Random) -> list[Event]:
    """The log start moved past the first acked record of a partition (deleted prefix)."""
    ack = min(_acks(events), key=lambda a: (a.offset, a.partition))
    fi = _finals(events)[ack.partition]
    fr = events[fi]
    assert isinstance(fr, FinalRead)
    out = list(events)
    out[fi] = dataclasses.replace(fr, records=[r for r in fr.records if r[0] > ack.offset],
                                  start_offset=ack.offset + 1)
    return out


def plant_no_final_read(events: list[Event], rng: random.Random) -> list[Event]:
    p = rng.choice(sorted({a.partition for a in _acks(events)}))
    return [e for e in events if not (isinstance(e, FinalRead) and e.partition == p)]


def plant_no_acks(events: list[Event], rng: random.Random) -> list[Event]:
    return [e for e in events if not isinstance(e, Ack)]


def plant_duplicate(events: list[Event], rng: random.Random) -> list[Event]:
    """An acked value is in the log twice (an idempotent producer's retry appended again)."""
    ack = rng.choice(_acks(events))
    return _append_final(events, ack.partition, ack.value)


def plant_inconsistent_offset(events: list[Event], rng: random.Random) -> list[Event]:
    """A consumer read, at an offset that holds v, a value w that never made it into the log
    (as if it read a record above the high watermark that was later truncated)."""
    first = _first_polls(events)
    cands = [i for i, e in enumerate(events) if isinstance(e, Poll) and first[e.value] != i]
    i = rng.choice(cands)
    poll = events[i]
    assert isinstance(poll, Poll)
    w = f"ghost-k0-{rng.randrange(10**6)}"
    out = list(events)
    out[i] = dataclasses.replace(poll, value=w)
    return _insert(out, Send(max(0.0, poll.t - 1.0), "cp0", poll.topic, poll.partition, "k0", w))


def plant_ack_offset_mismatch(events: list[Event], rng: random.Random) -> list[Event]:
    """The ack names an offset past the log's end, while the record is at another one."""
    acks = _acks(events)
    ack = rng.choice(acks)
    fr = events[_finals(events)[ack.partition]]
    assert isinstance(fr, FinalRead)
    out = list(events)
    out[events.index(ack)] = dataclasses.replace(ack, offset=fr.end_offset + 10)
    return out


def plant_non_monotonic_poll(events: list[Event], rng: random.Random) -> list[Event]:
    """A consumer delivers one record twice within one assignment."""
    i = rng.choice([i for i, e in enumerate(events) if isinstance(e, Poll)])
    return [*events[:i + 1], events[i], *events[i + 1:]]


def plant_skipped_poll(events: list[Event], rng: random.Random) -> list[Event]:
    """A consumer jumps over one record (that another reader polled earlier)."""
    first = _first_polls(events)
    cands = []
    for s in _sessions(events):
        for a, b, c in zip(s, s[1:], s[2:], strict=False):
            pa, pb, pc = events[a], events[b], events[c]
            assert isinstance(pa, Poll) and isinstance(pb, Poll) and isinstance(pc, Poll)
            if pa.offset + 1 == pb.offset == pc.offset - 1 and first[pb.value] != b:
                cands.append(b)
    i = rng.choice(cands)
    return events[:i] + events[i + 1:]


def plant_aborted_read(events: list[Event], rng: random.Random) -> list[Event]:
    """A send the broker refused (definitely failed) is in the log anyway."""
    p = rng.choice(sorted(_finals(events)))
    t = rng.uniform(1.0, 20.0)
    w = f"cp0-k1-aborted{rng.randrange(10**6)}"
    out = _insert(events, Send(t, "cp0", TOPIC, p, "k1", w),
                  Fail(t + 0.01, "cp0", TOPIC, p, w, "NOT_ENOUGH_REPLICAS", True))
    return _append_final(out, p, w)


def plant_phantom_read(events: list[Event], rng: random.Random) -> list[Event]:
    """The log holds a value nobody produced."""
    p = rng.choice(sorted(_finals(events)))
    return _append_final(events, p, f"garbage-{rng.randrange(10**6)}")


def plant_unreadable(events: list[Event], rng: random.Random) -> list[Event]:
    """A record acked early in the run is in the final read but no reader ever saw it."""
    p = rng.choice(sorted(_finals(events)))
    fr = events[_finals(events)[p]]
    assert isinstance(fr, FinalRead)
    w = f"cp0-k2-unseen{rng.randrange(10**6)}"
    out = _insert(events, Send(0.5, "cp0", TOPIC, p, "k2", w),
                  Ack(0.51, "cp0", TOPIC, p, w, fr.end_offset))
    return _append_final(out, p, w)


Planter = Callable[[list[Event], random.Random], list[Event]]
PLANTERS: dict[str, Planter] = {
    checker.LOST: plant_lost,
    checker.NO_FINAL_READ: plant_no_final_read,
    checker.NO_ACKS: plant_no_acks,
    checker.DUPLICATE: plant_duplicate,
    checker.INCONSISTENT_OFFSET: plant_inconsistent_offset,
    checker.NON_MONOTONIC_POLL: plant_non_monotonic_poll,
    checker.SKIPPED_POLL: plant_skipped_poll,
    checker.ABORTED_READ: plant_aborted_read,
    checker.PHANTOM_READ: plant_phantom_read,
    checker.UNREADABLE: plant_unreadable,
}
# More ways to plant some kinds: each must still report exactly its kind, once.
VARIANTS: list[tuple[str, Planter]] = [
    (checker.LOST, plant_lost_below_log_start),
    (checker.INCONSISTENT_OFFSET, plant_ack_offset_mismatch),
]


def only(kind: str, n: int = 1) -> dict[str, int]:
    return {k: (n if k == kind else 0) for k in ANOMALY_KINDS}


@pytest.fixture(scope="module")
def clean() -> list[Event]:
    return synthetic_history(7)


# -- the tests ------------------------------------------------------------------------------

def test_every_anomaly_kind_has_a_planting_test() -> None:
    assert set(PLANTERS) == set(ANOMALY_KINDS)
    assert len(set(ANOMALY_KINDS)) == len(ANOMALY_KINDS)
    for kind in ANOMALY_KINDS:
        assert f"``{kind}``" in (checker.__doc__ or ""), f"{kind} is not documented"


def test_the_clean_history_is_a_real_run_and_passes(clean: list[Event]) -> None:
    result = check(clean)
    assert result.ok, result.summary()
    assert result.counts() == {k: 0 for k in ANOMALY_KINDS}
    s = result.stats
    # It exercises what the checker must tolerate, so passing it means something.
    assert s["acks"] > 300 and s["fails_definite"] > 0 and s["fails_indeterminate"] > 0
    assert s["unacknowledged_at_end"] > 0 and s["fault_windows"] == 3
    assert 0 < s["acks_without_offset"] < 20
    assert s["polls"] > 2 * s["acks"]  # group re-reads and manual readers
    indeterminate = {e.value for e in clean if isinstance(e, Fail) and not e.definite}
    read = {e.value for e in clean if isinstance(e, Poll)}
    assert indeterminate & read and indeterminate - read  # both outcomes occur
    assert sum(isinstance(e, Assign) and e.group == "grp" for e in clean) >= 6
    slots: dict[tuple[int, int], int] = {}
    for e in clean:
        if isinstance(e, Poll) and e.client.startswith("g"):
            slots[(e.partition, e.offset)] = slots.get((e.partition, e.offset), 0) + 1
    assert max(slots.values()) > 1, "the group never re-read after a rebalance"
    assert "Verdict: PASS" in result.summary()
    assert s["unreadable_check"].startswith("checked")


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_a_planted_anomaly_is_caught(kind: str, clean: list[Event], tmp_path: Path) -> None:
    planted = PLANTERS[kind](clean, random.Random(1))
    result = check(planted)
    assert result.counts() == only(kind), result.summary()
    assert not result.ok
    text = result.summary()
    assert f"{kind}: 1" in text and "Verdict: FAIL" in text
    [a] = result.anomalies[kind]
    assert a.message in text and a.kind == kind
    path = tmp_path / "h.jsonl"
    history.write(path, planted)
    assert checker.main([str(path)]) == 1


@pytest.mark.parametrize(("kind", "plant"), VARIANTS, ids=[p.__name__ for _, p in VARIANTS])
def test_other_plantings_are_caught(kind: str, plant: Planter, clean: list[Event]) -> None:
    result = check(plant(clean, random.Random(2)))
    assert result.counts() == only(kind), result.summary()


def test_examples_name_client_partition_offsets_value_and_time(clean: list[Event]) -> None:
    ack = _acks(clean)[5]
    fr = clean[_finals(clean)[ack.partition]]
    assert isinstance(fr, FinalRead)
    out = list(clean)
    out[_finals(clean)[ack.partition]] = dataclasses.replace(
        fr, records=[r if r[1] != ack.value else [r[0], "cp0-k0-999999"] for r in fr.records])
    out = _insert(out, Send(1.0, "cp0", TOPIC, ack.partition, "k0", "cp0-k0-999999"))
    result = check(out)
    # The brief's example: the ack says v@o, the final read has w@o: v is lost, o rewritten.
    assert result.counts() == {**only(checker.LOST), checker.INCONSISTENT_OFFSET: 1}
    [lost] = result.anomalies[checker.LOST]
    assert (lost.client, lost.topic, lost.partition, lost.offsets, lost.value) == (
        ack.client, TOPIC, ack.partition, (ack.offset,), ack.value)
    for needle in (ack.client, f"{TOPIC}/{ack.partition}@{ack.offset}", repr(ack.value),
                   f"t={ack.t:.3f}"):
        assert needle in lost.message
    [inc] = result.anomalies[checker.INCONSISTENT_OFFSET]
    assert "cp0-k0-999999" in inc.message and ack.value in inc.message
    d = result.to_dict()
    assert d["ok"] is False and d["counts"][checker.LOST] == 1
    assert d["anomalies"][checker.LOST][0]["offsets"] == [ack.offset]


def _tiny(first_poll: float | None, *, fault: tuple[float, float] | None = (2.0, 40.0),
          other_poll: float = 100.0) -> list[Event]:
    """v acked at t=1.01; optionally a fault window; v first polled at ``first_poll``."""
    ev: list[Event] = [RunInfo(0.0, 1, "cmd"), Assign(0.1, "m0", "t", [0, 1]),
                       Send(1.0, "cp0", "t", 0, "k", "v"), Ack(1.01, "cp0", "t", 0, "v", 0),
                       Send(1.0, "cp0", "t", 1, "k", "x"), Ack(1.01, "cp0", "t", 1, "x", 0),
                       Poll(1.1, "m0", "t", 1, 0, "x")]
    if fault:
        ev += [Fault(fault[0], "kill", "start", [1]), Fault(fault[1], "kill", "end", [1])]
    if first_poll is not None:
        ev.append(Poll(first_poll, "m0", "t", 0, 0, "v"))
    ev += [Send(other_poll - 1, "cp0", "t", 1, "k", "y"),
           Ack(other_poll - 0.9, "cp0", "t", 1, "y", 1),
           Poll(other_poll, "m0", "t", 1, 1, "y"),
           FinalRead(other_poll + 5, "t", 0, [[0, "v"]], 1),
           FinalRead(other_poll + 5, "t", 1, [[0, "x"], [1, "y"]], 2)]
    return sorted(ev, key=lambda e: e.t)


@pytest.mark.parametrize(("first_poll", "fault", "unreadable"), [
    (31.0, None, False),             # 29.99 s: within the window
    (31.5, None, True),              # 30.49 s
    (69.0, (2.0, 40.0), False),      # 67.99 s, 38 s of it a fault
    (69.5, (2.0, 40.0), True),       # 30.49 s beyond the fault
    (69.5, (0.0, 40.0), False),      # the fault was already active at the ack: 39 s of it
    (None, (2.0, 40.0), True),       # never polled; readers ran until t=100
    (None, (2.0, 80.0), False),      # never polled, but faults cover all but 21 s
])
def test_the_unreadable_rule(first_poll: float | None, fault: tuple[float, float] | None,
                             unreadable: bool) -> None:
    result = check(_tiny(first_poll, fault=fault))
    assert result.counts() == (only(checker.UNREADABLE) if unreadable else only("")), \
        result.summary()


def test_faults_overlapping_or_never_ended_count_once() -> None:
    ev = _tiny(75.0, fault=None)
    ev += [Fault(2.0, "kill", "start", [1]), Fault(20.0, "pause", "start", [2]),
           Fault(30.0, "kill", "end", [1]), Fault(50.0, "isolate", "start", [3])]
    ev.sort(key=lambda e: e.t)
    # Faults [2, 30] and [20, ...) overlap; [20, ...) and [50, ...) never end: active to 105.
    result = check(ev)
    assert result.ok, result.summary()
    assert result.stats["fault_time"] == pytest.approx(103.0)
    assert any("never ended" in w for w in result.stats["warnings"])


def test_no_readers_skips_the_unreadable_check_and_says_so() -> None:
    ev = [e for e in _tiny(None) if not isinstance(e, Poll | Assign)]
    result = check(ev)
    assert result.ok, result.summary()
    assert result.stats["unreadable_check"].startswith("skipped")
    assert "skipped" in result.summary()


def test_missing_data_never_passes() -> None:
    assert check([]).counts() == only(checker.NO_ACKS)
    ev = [e for e in _tiny(5.0) if not isinstance(e, FinalRead)]
    assert check(ev).counts() == only(checker.NO_FINAL_READ, 2)


def test_an_ack_without_an_offset_is_judged_by_value() -> None:
    ev = [dataclasses.replace(e, offset=-1) if isinstance(e, Ack) and e.value == "v" else e
          for e in _tiny(5.0)]
    assert check(ev).ok
    gone = [dataclasses.replace(e, records=[], end_offset=0)
            if isinstance(e, FinalRead) and e.partition == 0 else e for e in ev]
    result = check(gone)
    assert result.counts() == only(checker.LOST), result.summary()
    [lost] = result.anomalies[checker.LOST]
    assert lost.offsets == () and "t/0 (offset unknown)" in lost.message


def test_a_value_in_the_wrong_partition_is_a_phantom() -> None:
    ev = _tiny(5.0)
    ev = [dataclasses.replace(e, records=[[0, "x"], [1, "y"], [2, "v"]], end_offset=3)
          if isinstance(e, FinalRead) and e.partition == 1 else e for e in ev]
    result = check(ev)
    # v is in partition 1 as well as 0: read twice, and never sent to 1.
    assert result.counts() == {**only(checker.PHANTOM_READ), checker.DUPLICATE: 1}


def test_rereads_in_a_new_session_and_gaps_of_truncated_records_are_fine() -> None:
    ev: list[Event] = [RunInfo(0.0, 1, "cmd"), Assign(0.1, "g0", "t", [0], "grp")]
    log = [f"cp0-k-{i}" for i in range(6)]
    for i, v in enumerate(log):
        ev += [Send(1 + i, "cp0", "t", 0, "k", v), Ack(1.1 + i, "cp0", "t", 0, v, i)]
    ev += [Send(0.5, "cp0", "t", 0, "k", "cp0-k-x")]  # unanswered; truncated at offset 6
    ev += [Poll(1.2 + i, "g0", "t", 0, i, log[i]) for i in range(4)]
    ev += [Assign(10.0, "g0", "t", [0], "grp")]      # rebalance: back to committed offset 2
    ev += [Poll(10.2 + i, "g0", "t", 0, i, log[i]) for i in range(2, 6)]
    ev += [Send(16.0, "cp0", "t", 0, "k", "cp0-k-7"), Ack(16.1, "cp0", "t", 0, "cp0-k-7", 7),
           Poll(16.2, "g0", "t", 0, 7, "cp0-k-7")]   # offset 6 is not in the log: no skip
    ev.append(FinalRead(20.0, "t", 0, [[i, v] for i, v in enumerate(log)]
                        + [[7, "cp0-k-7"]], 8))
    result = check(sorted(ev, key=lambda e: e.t))
    assert result.ok, result.summary()


def test_summary_and_json_are_deterministic(clean: list[Event]) -> None:
    planted = plant_duplicate(plant_phantom_read(clean, random.Random(3)), random.Random(4))
    a, b = check(planted), check(list(planted))
    assert a.to_dict() == b.to_dict() and a.summary() == b.summary()
    import json
    json.dumps(a.to_dict())
    assert a.summary(examples=0).count("  - ") == 0


def test_cli_exit_codes(clean: list[Event], tmp_path: Path) -> None:
    good, bad, broken = tmp_path / "good.jsonl", tmp_path / "bad.jsonl", tmp_path / "x.jsonl"
    history.write(good, clean)
    history.write(bad, plant_lost(clean, random.Random(5)))
    broken.write_text(history.to_json(clean[0]) + "\n{not json\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "odradek.broker.verify.checker", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    r = run(str(good))
    assert r.returncode == 0 and "Verdict: PASS" in r.stdout, r.stdout + r.stderr
    r = run(str(bad), "--json")
    assert r.returncode == 1, r.stderr
    import json
    assert json.loads(r.stdout)["counts"][checker.LOST] == 1
    r = run(str(broken))
    assert r.returncode == 2 and "x.jsonl:2" in r.stderr, r.stderr
    assert checker.main([str(tmp_path / "missing.jsonl")]) == 2
    (tmp_path / "empty.jsonl").write_text("")
    assert checker.main([str(tmp_path / "empty.jsonl")]) == 2
    (tmp_path / "odd.jsonl").write_text('{"type": "send", "t": 1}\n')
    assert checker.main([str(tmp_path / "odd.jsonl")]) == 2
    (tmp_path / "final.jsonl").write_text(
        '{"type": "final", "t": 1, "topic": "t", "partition": 0, "records": [5], '
        '"end_offset": 1}\n')
    assert checker.main([str(tmp_path / "final.jsonl")]) == 2
    assert checker.main([str(good), "--recovery-window", "0.0001"]) == 1


histories = st.builds(
    synthetic_history,
    seed=st.integers(0, 2**32),
    partitions=st.integers(1, 6),
    producers=st.integers(1, 4),
    rate=st.floats(6.0, 20.0),
    faults=st.integers(0, 4),
    group_size=st.integers(1, 3),
    manual_readers=st.integers(1, 2),
    rebalances=st.integers(0, 4),
    reassigns=st.integers(0, 2),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=histories)
def test_random_clean_histories_pass(events: list[Event]) -> None:
    result = check(events)
    assert result.ok, result.summary()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=histories, kind=st.sampled_from(ANOMALY_KINDS), seed=st.integers(0, 2**32))
def test_any_single_planted_anomaly_is_caught(events: list[Event], kind: str,
                                              seed: int) -> None:
    result = check(PLANTERS[kind](events, random.Random(seed)))
    assert result.counts() == only(kind), result.summary()


def test_a_large_history_checks_in_linear_time() -> None:
    """Not a timed assertion: prints the rate, and checks a big clean run still passes."""
    events = synthetic_history(11, duration=120.0, rate=400.0, partitions=6, faults=4)
    start = time.perf_counter()
    result = check(events)
    took = time.perf_counter() - start
    print(f"checked {len(events)} events in {took:.2f} s ({len(events) / took:,.0f}/s)")
    assert result.ok, result.summary()


def measure(n_events: int) -> None:
    """Time the checker on a clean history of about ``n_events`` events."""
    rate = n_events / 600.0 / 3.4  # a send makes about 3.4 events (send, ack, ~1.4 polls)
    start = time.perf_counter()
    events = synthetic_history(1, duration=600.0, rate=rate, partitions=6, faults=6,
                               group_size=3, manual_readers=1, rebalances=8)
    built = time.perf_counter() - start
    start = time.perf_counter()
    result = check(events)
    took = time.perf_counter() - start
    print(f"{len(events):,} events (built in {built:.1f} s) checked in {took:.2f} s: "
          f"{len(events) / took:,.0f} events/s; ok={result.ok}")


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)


def test_a_manual_reseek_restarts_only_the_partitions_it_names() -> None:
    """A reader re-seeking partition 1 (Assign naming only it) keeps reading partition 0 in
    the same session: its polls are not "outside a session", and going backwards on
    partition 0 is still caught. A group assignment, by contrast, is the whole set."""
    def run(assign_again: Assign, back: int) -> checker.CheckResult:
        events: list[Event] = [RunInfo(0.0, 1, "test")]
        for o in range(4):
            for p in (0, 1):
                events += [Send(0.1, "p", "t", p, "k", f"v{p}-{o}"),
                           Ack(0.2, "p", "t", p, f"v{p}-{o}", o)]
        events.append(Assign(0.3, "r", "t", [0, 1], assign_again.group))
        events += [Poll(0.4, "r", "t", 0, 0, "v0-0"), Poll(0.4, "r", "t", 0, 1, "v0-1"),
                   Poll(0.4, "r", "t", 1, 0, "v1-0"), Poll(0.4, "r", "t", 1, 1, "v1-1")]
        events.append(assign_again)
        events += [Poll(0.6, "r", "t", 1, 0, "v1-0"),
                   Poll(0.6, "r", "t", 0, back, f"v0-{back}")]
        for p in (0, 1):
            events.append(FinalRead(1.0, "t", p, [[o, f"v{p}-{o}"] for o in range(4)], 4))
        return check(events)

    ok = run(Assign(0.5, "r", "t", [1], None), back=2)
    assert ok.ok and ok.stats["polls_outside_session"] == 0, ok.summary()
    backwards = run(Assign(0.5, "r", "t", [1], None), back=0)
    assert backwards.counts()[checker.NON_MONOTONIC_POLL] == 1, backwards.summary()
    # A group member assigned only partition 1 lost partition 0: reading 0 again later
    # starts over (a session of its own), not a step back.
    regroup = run(Assign(0.5, "r", "t", [1], "g"), back=0)
    assert regroup.counts()[checker.NON_MONOTONIC_POLL] == 0, regroup.summary()
    assert regroup.stats["polls_outside_session"] == 1

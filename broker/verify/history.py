"""The history of one fault-injection run: what clients sent, what the cluster acknowledged,
what readers polled, which faults were active, and what every partition held at the end.

The workload (workload.py) appends events as they happen; the checker
(checker.py) and the report (report.py) read them back. A history
is a JSON Lines file, one event per line, ``{"type": "<kind>", ...fields}``, so a run can be
checked again, or by hand, long after it finished.

Times are seconds since the start of the run (``time.monotonic()`` minus the run's start),
from one clock in one process, so they are comparable across clients.

Values are unique strings across the whole run (``<client>-<key>-<seq>``), so a value
names exactly one send.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any


@dataclass(frozen=True)
class RunInfo:
    """The first event: how the run was made, so the report can print the repro command."""

    t: float
    seed: int
    command: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Send:
    """A producer handed ``value`` to its client library for ``topic``/``partition``."""

    t: float
    client: str
    topic: str
    partition: int
    key: str
    value: str


@dataclass(frozen=True)
class Ack:
    """The cluster acknowledged ``value`` at ``offset``."""

    t: float
    client: str
    topic: str
    partition: int
    value: str
    offset: int


@dataclass(frozen=True)
class Fail:
    """The send of ``value`` failed. ``definite`` is true only when the record certainly was
    not appended (an error the broker returns before appending, on the only attempt: the
    producer does not retry); otherwise the outcome is unknown (timeouts, lost connections,
    errors after retries) and a later read of the value is allowed."""

    t: float
    client: str
    topic: str
    partition: int
    value: str
    error: str
    definite: bool


@dataclass(frozen=True)
class Assign:
    """``client`` starts reading ``partitions`` of ``topic``: a new assignment session for
    each, so offset continuity is only checked between polls of one session. ``group`` is
    the consumer group, or None for a reader with manual assignment."""

    t: float
    client: str
    topic: str
    partitions: list[int]
    group: str | None = None
    isolation: str = "read_uncommitted"  # the consumer's isolation.level


@dataclass(frozen=True)
class Poll:
    """``client`` received ``value`` at ``offset`` of ``topic``/``partition``."""

    t: float
    client: str
    topic: str
    partition: int
    offset: int
    value: str


@dataclass(frozen=True)
class Fault:
    """A fault started (``phase="start"``) or ended (``phase="end"``). ``kind`` is one of
    kill, pause, isolate, split, oneway, loss, delay, controller-kill, crash-unflushed;
    ``targets`` are the node ids it hits; ``detail`` is free text for the timeline."""

    t: float
    kind: str
    phase: str
    targets: list[int]
    detail: str = ""


@dataclass(frozen=True)
class FinalRead:
    """Everything ``topic``/``partition`` held after the faults stopped and the cluster
    healed: ``records`` is a list of ``[offset, value]`` from the log start to
    ``end_offset`` (the high watermark)."""

    t: float
    topic: str
    partition: int
    records: list[list[Any]]
    end_offset: int
    start_offset: int = 0
    isolation: str = "read_uncommitted"  # read_committed: only committed records, to the LSO


@dataclass(frozen=True)
class TxnEnd:
    """How transaction ``txn`` of transactional producer ``client`` ended, as the client saw
    it. ``records`` are its ``[topic, partition, value]`` (each value was also a Send).
    ``outcome``: ``committed`` (EndTxn commit acknowledged), ``aborted`` (abort acknowledged,
    or commit never requested: the producer was fenced or failed first, so the coordinator
    aborts it), or ``unknown`` (commit requested, answer never had). ``commit_t`` is when the
    commit was first requested (None: never)."""

    t: float
    client: str
    txn: str
    outcome: str
    records: list[list[Any]]
    commit_t: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Lso:
    """``client`` learnt ``topic``/``partition``'s last stable offset ``lso`` from a
    READ_COMMITTED ListOffsets answered in leader epoch ``leader_epoch`` (-1: unknown)."""

    t: float
    client: str
    topic: str
    partition: int
    lso: int
    leader_epoch: int


Event = RunInfo | Send | Ack | Fail | Assign | Poll | Fault | FinalRead | TxnEnd | Lso

KINDS: dict[str, type[Event]] = {
    "run": RunInfo, "send": Send, "ack": Ack, "fail": Fail, "assign": Assign, "poll": Poll,
    "fault": Fault, "final": FinalRead, "txn": TxnEnd, "lso": Lso,
}
_NAME = {cls: name for name, cls in KINDS.items()}


def to_json(event: Event) -> str:
    return json.dumps({"type": _NAME[type(event)], **asdict(event)}, separators=(",", ":"))


def from_json(line: str) -> Event:
    raw = json.loads(line)
    kind = raw.pop("type", None)
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"history line has unknown event type {kind!r}: {line[:200]}")
    names = {f.name for f in fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"{kind} event has unknown fields {sorted(unknown)}: {line[:200]}")
    return cls(**raw)


def read(path: Path) -> list[Event]:
    """Every event of a history file, in file order."""
    with path.open() as f:
        return [from_json(line) for line in f if line.strip()]


def write(path: Path, events: Iterable[Event]) -> None:
    with path.open("w") as f:
        for event in events:
            f.write(to_json(event) + "\n")


class Recorder:
    """Appends events to a history file from any thread (client callbacks run on library
    threads); every line is flushed, so a crashed run still leaves its history."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] = path.open("a")

    def __call__(self, event: Event) -> None:
        line = to_json(event) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_type(events: Iterable[Event], cls: type) -> Iterator[Any]:
    return (e for e in events if isinstance(e, cls))

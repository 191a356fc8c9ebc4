"""One pass over a run's history, indexed for the checker's rules (checker.py).

Every event is looked at once, in history order, and lands in dicts keyed by value, by
topic-partition or by topic-partition-offset (no pairwise scans), so the rules that follow
are lookups. Assignment sessions are followed during the pass, since what a poll is judged
against (the poll before it in the same session) depends on the order of events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from odradek.broker.verify.history import Ack, Assign, Event, Fail, FinalRead, Poll, RunInfo, Send

TP = tuple[str, int]
Slot = tuple[str, int, int]
# Where a value was seen: (source, client, t); source is "ack", "poll" or "final".
Source = tuple[str, str | None, float]


@dataclass
class Observed:
    """What the history holds, as the rules look it up."""

    events: Sequence[Event]
    sends: dict[str, Send] = field(default_factory=dict)  # value -> its first Send
    acks: dict[str, Ack] = field(default_factory=dict)  # value -> its first Ack
    fails: dict[str, Fail] = field(default_factory=dict)  # value -> its first Fail
    resent: int = 0  # Sends of a value sent before
    reacked: int = 0  # Acks of a value acked before
    clients: dict[str, dict[str, int]] = field(default_factory=dict)  # event counts
    # The offset -> value map as every observer saw it, and the value -> offsets map of reads.
    at_slot: dict[Slot, tuple[str, Source]] = field(default_factory=dict)
    slot_conflicts: dict[Slot, dict[str, Source]] = field(default_factory=dict)
    read_at: dict[str, tuple[Slot, Source]] = field(default_factory=dict)
    read_multi: dict[str, dict[Slot, Source]] = field(default_factory=dict)
    first_poll: dict[str, Poll] = field(default_factory=dict)
    finals: dict[TP, FinalRead] = field(default_factory=dict)  # the last final read of each
    final_count: dict[TP, int] = field(default_factory=dict)
    tps_used: dict[TP, float] = field(default_factory=dict)  # first Send/Ack/Poll time
    topics_read: set[str] = field(default_factory=set)
    # Assignment sessions: (client, topic, partition) -> the session's last Poll (None: none
    # yet), and each client's partitions with a session per topic.
    sessions: dict[tuple[str, str, int], Poll | None] = field(default_factory=dict)
    session_parts: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    outside_session: int = 0  # polls that started a session without an Assign
    backwards: list[tuple[Poll, Poll]] = field(default_factory=list)  # (previous, poll)
    forward_jumps: list[tuple[Poll, Poll]] = field(default_factory=list)  # skip candidates
    n_polls: int = 0
    n_assigns: int = 0
    acks_without_offset: int = 0
    last_poll_t: float | None = None
    run_info: RunInfo | None = None
    last_t: float = 0.0

    @classmethod
    def of(cls, events: Sequence[Event]) -> Observed:
        seen = cls(events)
        for e in events:
            if e.t > seen.last_t:
                seen.last_t = e.t
            if type(e) is Poll:
                seen._poll(e)
            elif type(e) is Send:
                seen._send(e)
            elif type(e) is Ack:
                seen._ack(e)
            elif type(e) is Fail:
                seen.fails.setdefault(e.value, e)
                seen._client(e.client)["fails"] += 1
            elif type(e) is Assign:
                seen._assign(e)
            elif type(e) is FinalRead:
                seen._final(e)
            elif type(e) is RunInfo:
                seen.run_info = e
        return seen

    def _client(self, name: str) -> dict[str, int]:
        c = self.clients.get(name)
        if c is None:
            c = self.clients[name] = {"sends": 0, "acks": 0, "fails": 0, "polls": 0,
                                      "assigns": 0}
        return c

    def _observe(self, slot: Slot, value: str, src: Source, is_read: bool) -> None:
        seen = self.at_slot.get(slot)
        if seen is None:
            self.at_slot[slot] = (value, src)
        elif seen[0] != value:
            conflict = self.slot_conflicts.get(slot)
            if conflict is None:
                conflict = self.slot_conflicts[slot] = {seen[0]: seen[1]}
            conflict.setdefault(value, src)
        if is_read:
            r = self.read_at.get(value)
            if r is None:
                self.read_at[value] = (slot, src)
            elif r[0] != slot:
                multi = self.read_multi.get(value)
                if multi is None:
                    multi = self.read_multi[value] = {r[0]: r[1]}
                multi.setdefault(slot, src)

    def _poll(self, e: Poll) -> None:
        self.n_polls += 1
        self._client(e.client)["polls"] += 1
        self.tps_used.setdefault((e.topic, e.partition), e.t)
        self.topics_read.add(e.topic)
        if self.last_poll_t is None or e.t > self.last_poll_t:
            self.last_poll_t = e.t
        fp = self.first_poll.get(e.value)
        if fp is None or e.t < fp.t:
            self.first_poll[e.value] = e
        self._observe((e.topic, e.partition, e.offset), e.value, ("poll", e.client, e.t), True)
        key = (e.client, e.topic, e.partition)
        if key not in self.sessions:
            self.outside_session += 1
            self.session_parts.setdefault((e.client, e.topic), []).append(e.partition)
            self.sessions[key] = e
            return
        prev = self.sessions[key]
        self.sessions[key] = e
        if prev is None:
            return
        if e.offset <= prev.offset:
            self.backwards.append((prev, e))
        elif e.offset > prev.offset + 1:
            self.forward_jumps.append((prev, e))

    def _send(self, e: Send) -> None:
        if e.value in self.sends:
            self.resent += 1
        else:
            self.sends[e.value] = e
        self._client(e.client)["sends"] += 1
        self.tps_used.setdefault((e.topic, e.partition), e.t)

    def _ack(self, e: Ack) -> None:
        if e.value in self.acks:
            self.reacked += 1
            return
        self.acks[e.value] = e
        self._client(e.client)["acks"] += 1
        self.tps_used.setdefault((e.topic, e.partition), e.t)
        if e.offset >= 0:
            self._observe((e.topic, e.partition, e.offset), e.value, ("ack", e.client, e.t),
                          False)
        else:
            self.acks_without_offset += 1

    def _assign(self, e: Assign) -> None:
        self.n_assigns += 1
        self._client(e.client)["assigns"] += 1
        self.topics_read.add(e.topic)
        ct = (e.client, e.topic)
        if e.group is not None:
            # A group assignment is the member's whole set: the rest was revoked.
            for p in self.session_parts.get(ct, ()):
                self.sessions.pop((e.client, e.topic, p), None)
            self.session_parts[ct] = list(e.partitions)
        else:
            # A manual reader re-seeks the partitions named; the others read on.
            self.session_parts[ct] = sorted({*self.session_parts.get(ct, ()), *e.partitions})
        for p in e.partitions:
            self.sessions[(e.client, e.topic, p)] = None

    def _final(self, e: FinalRead) -> None:
        tp = (e.topic, e.partition)
        self.finals[tp] = e
        self.final_count[tp] = self.final_count.get(tp, 0) + 1
        src: Source = ("final", None, e.t)
        for rec in e.records:
            self._observe((e.topic, e.partition, int(rec[0])), rec[1], src, True)

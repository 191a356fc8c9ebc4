"""Server-side partition assignors of the consumer group protocol (KIP-848): ``uniform``
(the default) and ``range``, by the names Kafka gives them.

Pure functions of the group's subscriptions and topic metadata. Partitions are named by
topic id, as in the protocol and in ``__consumer_offsets``. An assignor gives each
member a *target* assignment; moving members to it without two owners at once is the
reconciliation's job (reconciliation.py), not the assignor's.

* ``uniform`` spreads every member's subscribed partitions as evenly as the subscriptions
  allow and is sticky: a member keeps what it had as long as that stays balanced, so a
  member leaving moves only its own partitions, and one joining takes only its share.
  When all members subscribe to the same topics it lays partitions out as Kafka 4.1's
  UniformAssignor does (tests/compat/test_kafka_assignors.py compares them).
* ``range`` gives each member a contiguous range of every topic it subscribes to, the
  first ``partitions % members`` members (by member id) one partition more; members that
  share subscriptions get the same partition numbers of each topic (co-partitioning).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

TopicId = uuid.UUID
# topic id -> partitions
Assignment = Mapping[TopicId, frozenset[int]]

UNIFORM = "uniform"
RANGE = "range"


@dataclass(frozen=True, slots=True)
class AssignorMember:
    """What an assignor knows of a member: the topics it subscribes to (those that exist)
    and its current target assignment, which a sticky assignor tries to keep."""

    member_id: str
    subscribed: frozenset[TopicId]
    current: Assignment = field(default_factory=dict)


class Assignor(Protocol):
    name: str

    def assign(
        self, members: Mapping[str, AssignorMember], partitions: Mapping[TopicId, int]
    ) -> dict[str, dict[TopicId, frozenset[int]]]:
        """The target assignment of every member; ``partitions`` gives the partition
        count of each subscribed topic that exists."""
        ...


def _frozen(owned: Mapping[TopicId, set[int]]) -> dict[TopicId, frozenset[int]]:
    return {t: frozenset(ps) for t, ps in owned.items() if ps}


class UniformAssignor:
    name = UNIFORM

    def assign(
        self, members: Mapping[str, AssignorMember], partitions: Mapping[TopicId, int]
    ) -> dict[str, dict[TopicId, frozenset[int]]]:
        if len({m.subscribed for m in members.values()}) == 1:
            return self._assign_homogeneous(members, partitions)
        return self._assign_heterogeneous(members, partitions)

    @staticmethod
    def _assign_homogeneous(
        members: Mapping[str, AssignorMember], partitions: Mapping[TopicId, int]
    ) -> dict[str, dict[TopicId, frozenset[int]]]:
        """Every member subscribes to the same topics: Kafka's layout. Each member gets
        ``partitions // members``, and ``partitions % members`` of them one more: first
        those that had more than that already (in member order), then the last members.
        A member keeps the lowest of its partitions up to its quota; the rest, in
        (topic, partition) order, fill the members in member order. So a fresh group gets
        contiguous ranges, and a member joining or leaving moves only what it must."""
        order = sorted(members)
        topics = next(iter(members.values())).subscribed
        every = [(t, p) for t in sorted(topics) if t in partitions
                 for p in range(partitions[t])]
        quota, extra = divmod(len(every), len(order))
        valid = set(every)
        taken: set[tuple[TopicId, int]] = set()
        kept: dict[str, list[tuple[TopicId, int]]] = {}
        for m in order:
            mine = sorted(tp for t, ps in members[m].current.items() for tp in
                          ((t, p) for p in ps) if tp in valid and tp not in taken)
            kept[m] = mine
            taken.update(mine)
        quotas = {}
        for m in order:
            if len(kept[m]) > quota and extra:
                quotas[m] = quota + 1
                extra -= 1
            else:
                quotas[m] = quota
        for m in reversed(order):
            if not extra:
                break
            if quotas[m] == quota:
                quotas[m] = quota + 1
                extra -= 1
        for m in order:
            kept[m] = kept[m][:quotas[m]]
        free = iter(sorted(valid - {tp for m in order for tp in kept[m]}))
        out: dict[str, dict[TopicId, set[int]]] = {}
        for m in order:
            mine = kept[m]
            while len(mine) < quotas[m]:
                mine.append(next(free))
            for t, p in mine:
                out.setdefault(m, {}).setdefault(t, set()).add(p)
        return {m: _frozen(out.get(m, {})) for m in order}

    def _assign_heterogeneous(
        self, members: Mapping[str, AssignorMember], partitions: Mapping[TopicId, int]
    ) -> dict[str, dict[TopicId, frozenset[int]]]:
        """Members subscribe to different topics: balanced as far as the subscriptions
        allow, and sticky."""
        order = sorted(members)
        owner: dict[tuple[TopicId, int], str] = {}
        load = dict.fromkeys(order, 0)
        # Keep what each member had and may still have; a partition two members claim
        # (possible only after a failed write) goes to the first of them.
        for m in order:
            spec = members[m]
            for topic, ps in spec.current.items():
                if topic not in spec.subscribed or topic not in partitions:
                    continue
                for p in ps:
                    if 0 <= p < partitions[topic] and (topic, p) not in owner:
                        owner[(topic, p)] = m
                        load[m] += 1
        # Unowned partitions to the least loaded member that wants them.
        for topic in sorted(partitions):
            wanting = [m for m in order if topic in members[m].subscribed]
            if not wanting:
                continue
            for p in range(partitions[topic]):
                if (topic, p) in owner:
                    continue
                m = min(wanting, key=lambda x: (load[x], order.index(x)))
                owner[(topic, p)] = m
                load[m] += 1
        self._balance(members, order, owner, load)
        out: dict[str, dict[TopicId, set[int]]] = {m: {} for m in order}
        for (topic, p), m in owner.items():
            out[m].setdefault(topic, set()).add(p)
        return {m: _frozen(a) for m, a in out.items()}

    @staticmethod
    def _balance(
        members: Mapping[str, AssignorMember],
        order: list[str],
        owner: dict[tuple[TopicId, int], str],
        load: dict[str, int],
    ) -> None:
        """Move partitions from the most to the least loaded member able to take them
        until no move narrows the gap; each move lowers the sum of squared loads, so
        this ends, and it moves nothing that balance does not need."""
        rank = {m: i for i, m in enumerate(order)}
        subscribers: dict[TopicId, list[str]] = {}
        for m in order:
            for topic in members[m].subscribed:
                subscribers.setdefault(topic, []).append(m)
        owned: dict[str, list[tuple[TopicId, int]]] = {m: [] for m in order}
        for tp, m in sorted(owner.items()):
            owned[m].append(tp)
        while True:
            moved = False
            for giver in sorted(order, key=lambda m: (-load[m], rank[m])):
                # Highest-numbered partitions move first: what stays is contiguous-ish.
                for tp in reversed(owned[giver]):
                    takers = [m for m in subscribers.get(tp[0], ())
                              if load[m] + 1 < load[giver]]
                    if not takers:
                        continue
                    taker = min(takers, key=lambda m: (load[m], rank[m]))
                    owner[tp] = taker
                    owned[giver].remove(tp)
                    bisect.insort(owned[taker], tp)
                    load[giver] -= 1
                    load[taker] += 1
                    moved = True
                    break
                if moved:
                    break
            if not moved:
                return


class RangeAssignor:
    name = RANGE

    def assign(
        self, members: Mapping[str, AssignorMember], partitions: Mapping[TopicId, int]
    ) -> dict[str, dict[TopicId, frozenset[int]]]:
        out: dict[str, dict[TopicId, frozenset[int]]] = {m: {} for m in members}
        for topic, count in partitions.items():
            subscribers = sorted(m for m, spec in members.items() if topic in spec.subscribed)
            if not subscribers:
                continue
            quota, extra = divmod(count, len(subscribers))
            start = 0
            for i, m in enumerate(subscribers):
                n = quota + (1 if i < extra else 0)
                if n:
                    out[m][topic] = frozenset(range(start, start + n))
                start += n
        return out


ASSIGNORS: dict[str, Assignor] = {UNIFORM: UniformAssignor(), RANGE: RangeAssignor()}


def assignor(name: str) -> Assignor | None:
    return ASSIGNORS.get(name)

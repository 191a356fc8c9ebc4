"""Choosing replicas for new partitions.

Leaders go round-robin over the usable brokers, starting at a random broker so that many small
topics do not all lead on the same one; the order interleaves racks, so neighbours in the
rotation sit on different racks. Followers go to the brokers with the fewest replicas of this
topic, preferring racks the partition does not use yet, then brokers that follow this leader
least often, so that a failed leader's partitions move to many different brokers. Balance is
per topic: a topic's leaders differ by at most one between brokers and its replicas spread as
evenly as the racks allow.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PlacementBroker:
    id: int
    rack: str | None = None


def rack_interleaved(brokers: Sequence[PlacementBroker]) -> list[int]:
    """Broker ids ordered so that consecutive ids are on different racks while possible.

    A broker without a rack counts as a rack of its own.
    """
    by_rack: dict[str, list[int]] = defaultdict(list)
    for broker in sorted(brokers, key=lambda b: b.id):
        key = f"rack:{broker.rack}" if broker.rack is not None else f"broker:{broker.id}"
        by_rack[key].append(broker.id)
    # Largest racks first, so the tail of the order is not one rack's leftovers in a row
    # more than it must be.
    racks = sorted(by_rack.values(), key=lambda ids: (-len(ids), ids[0]))
    order: list[int] = []
    for i in range(max((len(ids) for ids in racks), default=0)):
        order.extend(ids[i] for ids in racks if i < len(ids))
    return order


def place_partitions(
    brokers: Sequence[PlacementBroker],
    num_partitions: int,
    replication_factor: int,
    rng: random.Random,
    existing: Iterable[Sequence[int]] = (),
) -> list[tuple[int, ...]]:
    """Replica lists (leader first) for `num_partitions` new partitions of one topic.

    `existing` holds the replica lists of the topic's current partitions, so that partitions
    added later keep the topic balanced.
    """
    if replication_factor < 1:
        raise ValueError(f"replication factor must be positive, got {replication_factor}")
    if replication_factor > len(brokers):
        raise ValueError(
            f"replication factor {replication_factor} exceeds the {len(brokers)} usable brokers"
        )
    order = rack_interleaved(brokers)
    n = len(order)
    start = rng.randrange(n)
    order = order[start:] + order[:start]
    position = {broker_id: i for i, broker_id in enumerate(order)}
    rack = {b.id: b.rack for b in brokers}

    leader_load: Counter[int] = Counter()
    replica_load: Counter[int] = Counter()
    # How often each broker follows each leader: preferring rare pairs spreads a failed
    # leader's partitions over many brokers instead of one or two.
    pairs: Counter[tuple[int, int]] = Counter()
    for replicas in existing:
        if replicas:
            leader_load[replicas[0]] += 1
            pairs.update((replicas[0], b) for b in replicas[1:])
        replica_load.update(replicas)

    placed: list[tuple[int, ...]] = []
    cursor = 0
    for index in range(num_partitions):
        # Together with `pairs`, shifting the last tie-break every round of n partitions
        # varies which brokers follow a given leader.
        shift = (index // n) % max(1, n - 1)
        # Fewest leaders first; among equals the next one in the rotation, which on a fresh
        # topic is plain round-robin.
        leader = min(order, key=lambda b: (leader_load[b], (position[b] - cursor) % n))
        cursor = position[leader] + 1
        chosen = [leader]
        racks_used = {rack[leader]} if rack[leader] is not None else set()
        for _ in range(replication_factor - 1):
            follower = min(
                (b for b in order if b not in chosen),
                key=lambda b: (
                    rack[b] is not None and rack[b] in racks_used,
                    replica_load[b],
                    pairs[(leader, b)],
                    (position[b] - position[leader] - 1 - shift) % n,
                ),
            )
            chosen.append(follower)
            if rack[follower] is not None:
                racks_used.add(rack[follower])
        leader_load[leader] += 1
        replica_load.update(chosen)
        pairs.update((leader, b) for b in chosen[1:])
        placed.append(tuple(chosen))
    return placed

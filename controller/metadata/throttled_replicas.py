"""The throttled-replica topic configs of Kafka's replication throttles (KIP-73).

``leader.replication.throttled.replicas`` and ``follower.replication.throttled.replicas``
name the replicas whose replication traffic a broker's ``leader.replication.throttled.rate``
and ``follower.replication.throttled.rate`` limit: a list of ``partitionId:brokerId``, or
the wildcard ``*`` for every replica of the topic; empty (the default) throttles nothing.

The controller validates them (Kafka's ThrottledReplicaListValidator, with its message) and
each broker reads from them the partitions it throttles (Kafka's
TopicConfigHandler.parseThrottledPartitions): both import this module, which lives beside
the image for that reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LEADER_THROTTLED_REPLICAS = "leader.replication.throttled.replicas"
FOLLOWER_THROTTLED_REPLICAS = "follower.replication.throttled.replicas"
THROTTLED_REPLICAS_CONFIGS = frozenset({LEADER_THROTTLED_REPLICAS, FOLLOWER_THROTTLED_REPLICAS})

WILDCARD = "*"
# Kafka's per-item pattern: an empty item is allowed ("0:1,,1:2" passes its validator).
_ITEM = re.compile(r"([0-9]+:[0-9]+)?")


def _items(value: str) -> list[str]:
    """The list items as Kafka's ConfigDef LIST parses them: split at commas, trimmed; a
    blank value is the empty list and trailing empty items are dropped (Java's split)."""
    if not value.strip():
        return []
    items = [item.strip() for item in value.strip().split(",")]
    while items and items[-1] == "":
        items.pop()
    return items


def throttled_replicas_error(name: str, value: str) -> str | None:
    """Why ``value`` is not a valid ``name`` (one of THROTTLED_REPLICAS_CONFIGS), in Kafka's
    words (its ConfigException message), or None when it is valid."""
    items = _items(value)
    if all(_ITEM.fullmatch(item) for item in items) or "".join(items) == WILDCARD:
        return None
    shown = "[" + ", ".join(items) + "]"  # how Java prints the parsed list
    return (f"Invalid value {shown} for configuration {name}: {name} must be the literal "
            "'*' or a list of replicas in the following format: "
            "[partitionId]:[brokerId],[partitionId]:[brokerId],...")


@dataclass(frozen=True, slots=True)
class ThrottledPartitions:
    """The partitions of one topic whose replicas on one broker are throttled."""

    every: bool = False  # the wildcard: all of them
    partitions: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return self.every or bool(self.partitions)

    def covers(self, partition: int) -> bool:
        return self.every or partition in self.partitions


NOTHING_THROTTLED = ThrottledPartitions()
EVERY_PARTITION = ThrottledPartitions(every=True)


def throttled_partitions(value: str, broker_id: int) -> ThrottledPartitions:
    """The partitions ``value`` throttles on broker ``broker_id``: ``*`` all of them, else
    those listed with that broker. A value the controller would refuse (written by another
    version) throttles nothing."""
    items = [item for item in _items(value) if item]
    if items == [WILDCARD]:
        return EVERY_PARTITION
    partitions = set()
    for item in items:
        if not _ITEM.fullmatch(item):
            return NOTHING_THROTTLED
        partition, broker = item.split(":")
        if int(broker) == broker_id:
            partitions.add(int(partition))
    return ThrottledPartitions(partitions=frozenset(partitions)) if partitions \
        else NOTHING_THROTTLED

"""leader/follower.replication.throttled.replicas: Kafka's validation (its
ThrottledReplicaListValidator and message) and what one broker reads from a value."""

from __future__ import annotations

import pytest

from odradek.controller.metadata.throttled_replicas import (
    EVERY_PARTITION,
    FOLLOWER_THROTTLED_REPLICAS,
    LEADER_THROTTLED_REPLICAS,
    NOTHING_THROTTLED,
    ThrottledPartitions,
    throttled_partitions,
    throttled_replicas_error,
)

KAFKA_RULE = ("must be the literal '*' or a list of replicas in the following format: "
              "[partitionId]:[brokerId],[partitionId]:[brokerId],...")


@pytest.mark.parametrize("value", [
    "", "  ", "*", " * ", "0:1", "0:1,1:2", " 0:1 , 10:20 ", "0:1,", "0:1,,1:2", "*,",
])
def test_values_kafka_accepts(value: str) -> None:
    assert throttled_replicas_error(LEADER_THROTTLED_REPLICAS, value) is None


@pytest.mark.parametrize(("value", "shown"), [
    ("all", "[all]"),
    ("0", "[0]"),
    ("0:1,x", "[0:1, x]"),
    ("*,0:1", "[*, 0:1]"),
    ("0:-1", "[0:-1]"),
    ("0:1:2", "[0:1:2]"),
    ("p0:1", "[p0:1]"),
])
def test_values_kafka_refuses_with_its_message(value: str, shown: str) -> None:
    name = FOLLOWER_THROTTLED_REPLICAS
    assert throttled_replicas_error(name, value) == (
        f"Invalid value {shown} for configuration {name}: {name} {KAFKA_RULE}")


def test_what_a_broker_throttles() -> None:
    value = "0:1,1:2,2:1,7:3"
    assert throttled_partitions(value, 1) == ThrottledPartitions(partitions=frozenset({0, 2}))
    assert throttled_partitions(value, 3).covers(7)
    assert not throttled_partitions(value, 3).covers(0)
    assert throttled_partitions(value, 4) == NOTHING_THROTTLED  # not named: none
    assert not throttled_partitions(value, 4)
    assert throttled_partitions(" * ", 9) == EVERY_PARTITION
    assert EVERY_PARTITION.covers(12345)
    assert throttled_partitions("", 1) == NOTHING_THROTTLED
    # A value the controller would have refused throttles nothing.
    assert throttled_partitions("0:1,junk", 1) == NOTHING_THROTTLED

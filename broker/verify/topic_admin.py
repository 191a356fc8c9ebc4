"""The run's topic as the cluster reports it: create it, see its partitions' leaders and
in-sync replicas, wait until it is healthy, and read its offsets (through confluent-kafka's
admin client and consumer, imported when called)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from odradek.broker.verify.clients import CLIENT_LOG, Log

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient


def _admin(bootstrap: str) -> AdminClient:
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": CLIENT_LOG,
                            "socket.timeout.ms": 5000}
    return AdminClient(conf)


def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int,
                 min_insync: int, timeout: float = 60.0) -> bool:
    """Create the topic unless it exists; True if created here."""
    from confluent_kafka import KafkaError, KafkaException

    # The documented import; confluent_kafka.admin re-exports it without saying so. Only
    # newer confluent-kafka releases ship type information; the older one quixstreams pins
    # in the test extras has none, which makes this ignore unused there.
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined,unused-ignore]

    admin = _admin(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        fut = admin.create_topics([NewTopic(topic, partitions, replication_factor, config={
            "min.insync.replicas": str(min_insync)})], operation_timeout=15)[topic]
        try:
            fut.result(20)
            return True
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return False
            if time.monotonic() > deadline or not err.retriable():
                raise RuntimeError(f"cannot create topic {topic}: {err.str()}") from e
        time.sleep(1)


def partition_states(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas, isr) as one broker reports it."""
    md = _admin(bootstrap).list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        raise RuntimeError(f"topic {topic}: {t.error if t else 'missing'}")
    return {p.id: (p.leader, sorted(p.replicas), sorted(p.isrs))
            for p in t.partitions.values()}


def wait_healthy(bootstrap: str, topic: str, partitions: int, timeout: float,
                 log: Log = print) -> str | None:
    """Wait until every partition has a leader and its whole replica set in sync, twice in
    a row; None when it is, else a message saying what was still wrong."""
    deadline = time.monotonic() + timeout
    good = 0
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            states = partition_states(bootstrap, topic)
            bad = {p: s for p, s in states.items() if s[0] < 0 or s[2] != s[1]}
            if len(states) < partitions:
                last = f"only {len(states)} of {partitions} partitions known"
            elif bad:
                last = "; ".join(f"partition {p}: leader {s[0]} replicas {s[1]} isr {s[2]}"
                                 for p, s in sorted(bad.items()))
            else:
                good += 1
                if good >= 2:
                    return None
                time.sleep(0.5)
                continue
        except Exception as e:  # noqa: BLE001 - a node may still be starting
            last = f"{type(e).__name__}: {e}"
        good = 0
        time.sleep(0.5)
    msg = f"cluster not healthy after {timeout:.0f}s: {last}"
    log(msg)
    return msg


def end_offsets(bootstrap: str, topic: str, partitions: int, group: str,
                timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """partition -> (log start, high watermark)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "logger": CLIENT_LOG,
                  "group.id": group, "enable.auto.commit": False})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout,
                                           cached=False) for p in range(partitions)}
    finally:
        c.close()

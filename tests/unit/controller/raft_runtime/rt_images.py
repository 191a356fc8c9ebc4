"""Random metadata logs for the raft_runtime tests: every image they yield is one a real log
can produce, because it is built by replaying valid records at consecutive offsets."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

from odradek.controller.metadata import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    MetadataDelta,
    MetadataImage,
    MetadataRecord,
)
from odradek.controller.metadata.records import (
    broker_controlled_shutdown_record,
    config_record,
    fence_broker_record,
    no_op_record,
    partition_change_record,
    partition_record,
    producer_ids_record,
    register_broker_record,
    remove_topic_record,
    topic_record,
    unfence_broker_record,
    unregister_broker_record,
)

TOPIC_NAMES = ("a", "b", "c", "d", "e")
CONFIG_KEYS = ("retention.ms", "cleanup.policy", "segment.bytes")


def _replicas(rng: random.Random) -> list[int]:
    return rng.sample(range(1, 6), rng.randint(1, 3))


def random_batch(image: MetadataImage, rng: random.Random) -> list[MetadataRecord]:
    """One controller-operation-like batch of records valid on ``image``."""
    kind = rng.choice(["register", "register", "fence", "unregister", "topic", "topic",
                       "partition", "change", "change", "config", "config", "remove",
                       "pids", "noop"])
    brokers = sorted(image.brokers.values(), key=lambda b: b.id)
    topics = sorted(image.topics.values(), key=lambda t: t.name)
    if kind == "register":
        bid = rng.randint(1, 5)
        return [register_broker_record(bid, str(uuid.UUID(int=rng.getrandbits(128))),
                                       [("PLAINTEXT", f"h{bid}", 9000 + bid)],
                                       rng.choice([None, "r1", "r2"]), rng.random() < 0.5)]
    if kind == "fence" and brokers:
        b = rng.choice(brokers)
        if not b.in_controlled_shutdown and rng.random() < 0.3:
            return [broker_controlled_shutdown_record(b.id, b.epoch)]
        make = unfence_broker_record if b.fenced else fence_broker_record
        return [make(b.id, b.epoch)]
    if kind == "unregister" and brokers:
        b = rng.choice(brokers)
        return [unregister_broker_record(b.id, b.epoch)]
    if kind == "topic":
        free = [n for n in TOPIC_NAMES if n not in image.topics]
        if free:
            name = rng.choice(free)
            tid = uuid.UUID(int=rng.getrandbits(128), version=4)
            out = [topic_record(name, tid)]
            for p in range(rng.randint(1, 3)):
                reps = _replicas(rng)
                out.append(partition_record(tid, p, reps, reps, reps[0]))
            if rng.random() < 0.5:
                out.append(config_record(TOPIC_RESOURCE, name, rng.choice(CONFIG_KEYS),
                                         str(rng.randint(1, 100))))
            return out
    if kind == "partition" and topics:
        t = rng.choice(topics)
        reps = _replicas(rng)
        return [partition_record(t.topic_id, len(t.partitions), reps, reps, reps[0])]
    if kind == "change" and topics:
        t = rng.choice(topics)
        p = rng.choice(sorted(t.partitions))
        reps = _replicas(rng)
        return [partition_change_record(
            t.topic_id, p,
            isr=reps[: rng.randint(0, len(reps))] if rng.random() < 0.7 else None,
            leader=rng.choice([-1, *reps]) if rng.random() < 0.5 else None,
            replicas=reps if rng.random() < 0.3 else None,
            # Eligible leader replicas (KIP-966): a snapshot must carry them too.
            elr=reps[rng.randint(0, len(reps)):] if rng.random() < 0.4 else None,
        )]
    if kind == "config":
        if topics and rng.random() < 0.7:
            resource = (TOPIC_RESOURCE, rng.choice(topics).name)
        else:
            resource = (BROKER_RESOURCE, rng.choice(["", "1", "2"]))
        value = None if rng.random() < 0.3 else str(rng.randint(1, 100))
        return [config_record(resource[0], resource[1], rng.choice(CONFIG_KEYS), value)]
    if kind == "remove" and topics:
        return [remove_topic_record(rng.choice(topics).topic_id)]
    if kind == "pids":
        bid = brokers[0].id if brokers else 1
        epoch = brokers[0].epoch if brokers else 0
        return [producer_ids_record(bid, epoch, image.next_producer_id + 1000)]
    return [no_op_record()]


def commit(image: MetadataImage, records: list[MetadataRecord]) -> MetadataImage:
    delta = MetadataDelta(image)
    for record in records:
        delta.replay(record, delta.offset + 1)
    return delta.apply()


def random_log(rng: random.Random, batches: int) -> Iterator[tuple[list[MetadataRecord],
                                                                   MetadataImage]]:
    """(batch, image after it) for ``batches`` random batches from an empty image."""
    image = MetadataImage.EMPTY
    for _ in range(batches):
        batch = random_batch(image, rng)
        image = commit(image, batch)
        yield batch, image

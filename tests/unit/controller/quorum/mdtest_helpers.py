"""Shared helpers for the metadata and controller unit tests (imported by module name)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from odradek.controller.metadata import (
    MetadataDelta,
    MetadataImage,
    MetadataRecord,
    PartitionRegistration,
)
from odradek.controller.metadata.records import register_broker_record, unfence_broker_record
from odradek.controller.metadata.requests import AlterPartitionItem, CreateTopicSpec
from odradek.controller.quorum import ControllerSettings, OpResult
from odradek.controller.quorum.partitions import alter_partition
from odradek.controller.quorum.topics import create_topics

SETTINGS = ControllerSettings()
R = TypeVar("R")


def commit(image: MetadataImage, records: Iterable[MetadataRecord]) -> MetadataImage:
    delta = MetadataDelta(image)
    for record in records:
        delta.replay(record, delta.offset + 1)
    return delta.apply()


def applied(image: MetadataImage, result: OpResult[R]) -> tuple[MetadataImage, R]:
    return commit(image, result.records), result.response


def cluster(
    brokers: int | Mapping[int, str | None], fenced: Iterable[int] = ()
) -> MetadataImage:
    """An image with registered brokers (ids 1..n, or id -> rack), unfenced unless listed."""
    racks = {i: None for i in range(1, brokers + 1)} if isinstance(brokers, int) else brokers
    fenced = set(fenced)
    image = MetadataImage.EMPTY
    for broker_id, rack in racks.items():
        image = commit(
            image,
            [
                register_broker_record(
                    broker_id,
                    str(uuid.UUID(int=broker_id)),
                    [("PLAINTEXT", f"h{broker_id}", 9092)],
                    rack,
                )
            ],
        )
        if broker_id not in fenced:
            image = commit(image, [unfence_broker_record(broker_id, image.brokers[broker_id].epoch)])
    return image


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)


# One topic "t" with one partition, as the ELR and reassignment tests use it.


def with_topic(
    image: MetadataImage, replicas: Sequence[int], configs: Mapping[str, str] | None = None
) -> MetadataImage:
    spec = CreateTopicSpec("t", assignments={0: list(replicas)}, configs=dict(configs or {}))
    image, (res,) = applied(image, create_topics(image, [spec], settings=SETTINGS, rng=rng()))
    assert res.error_code == 0, res
    return image


def part(image: MetadataImage) -> PartitionRegistration:
    partition = image.partition("t", 0)
    assert partition is not None
    return partition


def set_isr(image: MetadataImage, isr: Sequence[int]) -> MetadataImage:
    """The leader's AlterPartition to `isr`, against the current epochs."""
    p = part(image)
    leader = image.brokers[p.leader]
    item = AlterPartitionItem(image.topics["t"].topic_id, 0, p.leader_epoch, p.partition_epoch,
                              list(isr))
    image, result = applied(image, alter_partition(image, leader.id, leader.epoch, [item]))
    assert result.partitions[0].error_code == 0, result
    assert result.partitions[0].registration == part(image)
    return image

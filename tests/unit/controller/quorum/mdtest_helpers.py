"""Shared helpers for the metadata and controller unit tests (imported by module name)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping
from typing import TypeVar

from odradek.controller.metadata import MetadataDelta, MetadataImage, MetadataRecord
from odradek.controller.metadata.records import register_broker_record, unfence_broker_record
from odradek.controller.quorum import ControllerSettings, OpResult

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

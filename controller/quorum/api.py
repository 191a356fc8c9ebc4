"""What the quorum controller's operations are built from: its settings, an operation's
result (records plus answer) and the error that turns one item into an error answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataRecord

R = TypeVar("R")

NONE = ErrorCode.none


@dataclass(frozen=True)
class ControllerSettings:
    # Kafka's num.partitions / default.replication.factor, used when a request says -1.
    default_num_partitions: int = 1
    default_replication_factor: int = 1
    # Kafka's min.insync.replicas default: written into the config of a new topic that does
    # not set it, capped at the topic's replication factor (more would refuse every acks=all
    # write). Stored in the topic, so every broker and the ELR logic agree on it.
    default_min_insync_replicas: int = 1
    producer_id_block_size: int = 1000
    # One request may not create more partitions than this: every partition is a record
    # that must fit in one atomic metadata batch.
    max_partitions_per_request: int = 10_000
    # This controller's node id, named in Kafka's "Local controller N ..." refusals of
    # UpdateFeatures.
    node_id: int = -1


@dataclass(frozen=True)
class OpResult(Generic[R]):
    """What an operation wants appended to the log, and what to answer once it is committed."""

    records: tuple[MetadataRecord, ...]
    response: R


class ApiError(Exception):
    """Raised inside operations to turn one item of a request into an error result."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

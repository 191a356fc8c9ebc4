"""Requests and results of controller operations.

Requests and results are plain frozen values with Kafka's error codes (`kio`'s ErrorCode, an
int enum), so the broker's protocol handlers can translate them field by field.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kio.schema.errors import ErrorCode
from odradek.controller.metadata import Listener, MetadataRecord, PartitionRegistration

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


# ----- topics -----


@dataclass(frozen=True)
class CreateTopicSpec:
    name: str
    num_partitions: int = -1  # -1: the controller's default
    replication_factor: int = -1  # -1: the controller's default
    # Explicit placement: partition id -> replica broker ids (leader first). When given,
    # num_partitions and replication_factor must be -1, as in Kafka.
    assignments: Mapping[int, Sequence[int]] = field(default_factory=dict)
    # A None value is Kafka's null, which CreateTopics refuses.
    configs: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateTopicResult:
    name: str
    error_code: int
    error_message: str | None = None
    topic_id: uuid.UUID | None = None
    num_partitions: int = -1
    replication_factor: int = -1
    # The configs set explicitly on the topic; defaults are not listed.
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteTopicSpec:
    """Name a topic either by name or by id (DeleteTopics v6+), not both."""

    name: str | None = None
    topic_id: uuid.UUID | None = None


@dataclass(frozen=True)
class DeleteTopicResult:
    name: str | None
    topic_id: uuid.UUID | None
    error_code: int
    error_message: str | None = None


@dataclass(frozen=True)
class CreatePartitionsSpec:
    name: str
    count: int  # the new total number of partitions
    # Replica lists for the new partitions only, in partition order; None: placed by us.
    assignments: Sequence[Sequence[int]] | None = None


@dataclass(frozen=True)
class CreatePartitionsResult:
    name: str
    error_code: int
    error_message: str | None = None


# ----- configs -----


@dataclass(frozen=True)
class AlterConfigsResource:
    """Legacy AlterConfigs: `configs` becomes the resource's whole set of overrides."""

    resource_type: int
    resource_name: str
    configs: Mapping[str, str | None]


class AlterConfigOpType(enum.IntEnum):
    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


@dataclass(frozen=True)
class AlterConfigOp:
    name: str
    op: int  # AlterConfigOpType
    value: str | None = None


@dataclass(frozen=True)
class IncrementalAlterConfigsResource:
    resource_type: int
    resource_name: str
    ops: Sequence[AlterConfigOp]


@dataclass(frozen=True)
class AlterConfigsResult:
    resource_type: int
    resource_name: str
    error_code: int
    error_message: str | None = None


# ----- brokers -----


@dataclass(frozen=True)
class RegisterBrokerRequest:
    broker_id: int
    incarnation_id: str  # a UUID string, new for every start of the broker process
    listeners: tuple[Listener, ...]
    rack: str | None = None
    # False when the broker's previous process crashed (it may have lost its unflushed tail);
    # True after a clean shutdown or for a new broker.
    previous_shutdown_clean: bool = True


@dataclass(frozen=True)
class RegisterBrokerResult:
    error_code: int
    error_message: str | None = None
    # The broker's epoch, to be sent with its later requests; -1 on error. The pure operation
    # cannot know it for a new registration (it is the record's log offset), so the
    # QuorumController fills it in after the commit.
    broker_epoch: int = -1


@dataclass(frozen=True)
class BrokerResult:
    """Result of fence/unfence/unregister."""

    error_code: int
    error_message: str | None = None


@dataclass(frozen=True)
class ProducerIdsResult:
    error_code: int
    error_message: str | None = None
    first_producer_id: int = -1
    size: int = 0


# ----- partitions -----


@dataclass(frozen=True)
class AlterPartitionItem:
    """The leader's proposal for one partition, made against the state it last saw."""

    topic_id: uuid.UUID
    partition: int
    leader_epoch: int
    partition_epoch: int
    new_isr: Sequence[int]


@dataclass(frozen=True)
class AlterPartitionItemResult:
    topic_id: uuid.UUID
    partition: int
    error_code: int
    error_message: str | None = None
    # The partition's state after the change (also when nothing had to change); None on error.
    registration: PartitionRegistration | None = None


@dataclass(frozen=True)
class AlterPartitionResult:
    error_code: int  # request-level: STALE_BROKER_EPOCH, BROKER_ID_NOT_REGISTERED
    error_message: str | None = None
    partitions: tuple[AlterPartitionItemResult, ...] = ()

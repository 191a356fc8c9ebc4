"""The immutable metadata image: the cluster state after replaying a prefix of the log.

Images are shared between the loader, listeners and concurrent readers, so nothing in them can
change: values are frozen dataclasses and tuples, and mappings are read-only views over dicts
that no one else holds. A new image is only ever built by `MetadataDelta.apply()`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, ClassVar

from odradek.controller.metadata.acls import StandardAcl
from odradek.controller.metadata.client_quotas import QuotaEntityKey
from odradek.controller.metadata.features import DEFAULT_FINALIZED

NO_LEADER = -1

# Kafka's ConfigResource.Type codes.
TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4

ConfigResource = tuple[int, str]

_EMPTY_MAPPING: Mapping[str, str] = MappingProxyType({})
_NOTHING: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    id: int
    incarnation_id: str
    listeners: tuple[Listener, ...]
    rack: str | None
    fenced: bool
    # Offset of the RegisterBrokerRecord: Kafka's broker epoch. Requests from a broker carry
    # it so that a request from an older process of the same broker id can be refused.
    epoch: int
    # Shutting down (Kafka's InControlledShutdown): listed for clients, but neither leader
    # nor ISR member nor new replica any more; fenced once its process is gone.
    in_controlled_shutdown: bool = False

    @property
    def usable(self) -> bool:
        """May lead, join an ISR or get new replicas."""
        return not self.fenced and not self.in_controlled_shutdown

    def listener(self, name: str) -> Listener | None:
        return next((lst for lst in self.listeners if lst.name == name), None)


@dataclass(frozen=True, slots=True)
class PartitionRegistration:
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int
    # Eligible leader replicas (KIP-966), in replica order: replicas that left the ISR while it
    # shrank below min.insync.replicas, so they still hold every record up to the high
    # watermark (which cannot advance meanwhile); they may lead when no ISR member can.
    elr: tuple[int, ...] = ()
    # An ongoing reassignment (KIP-455): `replicas` is the target followed by `removing`;
    # `adding` are target replicas that have not joined the ISR yet. Both empty otherwise.
    removing: tuple[int, ...] = ()
    adding: tuple[int, ...] = ()

    @property
    def reassigning(self) -> bool:
        return bool(self.removing or self.adding)

    @property
    def target_replicas(self) -> tuple[int, ...]:
        """The replicas the partition has once its reassignment completes."""
        return tuple(r for r in self.replicas if r not in self.removing)

    @property
    def original_replicas(self) -> tuple[int, ...]:
        """The replicas it had before the reassignment (what cancelling goes back to)."""
        return tuple(r for r in self.replicas if r not in self.adding)

    @property
    def has_leader(self) -> bool:
        return self.leader != NO_LEADER


@dataclass(frozen=True)
class TopicImage:
    name: str
    topic_id: uuid.UUID
    partitions: Mapping[int, PartitionRegistration]

    @property
    def replication_factor(self) -> int:
        # Partition 0's, as Kafka's CreatePartitions takes it; a reassignment may give
        # partitions different counts, and one in progress counts its target.
        first = self.partitions.get(0)
        return len(first.target_replicas) if first is not None else 0


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where clients (or other brokers) reach one broker on one listener."""

    broker_id: int
    host: str
    port: int
    rack: str | None
    fenced: bool


@dataclass(frozen=True, slots=True)
class ScramCredentialInfo:
    """A user's stored SCRAM credential for one mechanism (Kafka's
    UserScramCredentialRecord): never the password, only what verifies it."""

    salt: bytes
    # Out of repr, as in logs: with a captured exchange, StoredKey gives away the ClientKey.
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    iterations: int = 4096


@dataclass(frozen=True)
class MetadataImage:
    offset: int
    brokers: Mapping[int, BrokerRegistration]
    topics: Mapping[str, TopicImage]
    topics_by_id: Mapping[uuid.UUID, TopicImage]
    configs: Mapping[ConfigResource, Mapping[str, str]]
    next_producer_id: int
    # (user name, mechanism) -> credential, e.g. ("alice", "SCRAM-SHA-256").
    scram_credentials: Mapping[tuple[str, str], ScramCredentialInfo] = field(
        default_factory=lambda: _NOTHING)
    # ACL id (Kafka's StandardAclWithId's Uuid) -> the ACL.
    acls: Mapping[uuid.UUID, StandardAcl] = field(default_factory=lambda: _NOTHING)
    # Client quota entity (its components, sorted by type; a None name is the default
    # entity) -> {quota key: value}; entities without a key are left out.
    client_quotas: Mapping[QuotaEntityKey, Mapping[str, float]] = field(
        default_factory=lambda: _NOTHING)
    # Feature name -> finalized level (KIP-584), features at level 0 left out as in Kafka.
    # An image whose log never set a feature holds its default (DEFAULT_FINALIZED:
    # transaction.version 2, what every Odradek broker has always finalized).
    finalized_features: Mapping[str, int] = field(default_factory=lambda: DEFAULT_FINALIZED)

    EMPTY: ClassVar[MetadataImage]

    def topic_configs(self, name: str) -> Mapping[str, str]:
        return self.configs.get((TOPIC_RESOURCE, name), _EMPTY_MAPPING)

    def partition(self, topic: str, partition: int) -> PartitionRegistration | None:
        image = self.topics.get(topic)
        return image.partitions.get(partition) if image is not None else None

    def topic_name(self, topic_id: uuid.UUID | None) -> str | None:
        """The name of the topic whose id is ``topic_id``, as the APIs that name topics by
        id (Fetch v13+, OffsetCommit/OffsetFetch v10) resolve it: None for an id this image
        does not know (never created, or deleted: a topic created again under its name
        has a new id) and for the null id, which clients send for "no topic"; those are
        answered UNKNOWN_TOPIC_ID."""
        t = self.topics_by_id.get(topic_id) if topic_id is not None else None
        return None if t is None else t.name

    def unfenced_broker_ids(self) -> list[int]:
        return sorted(self.unfenced_ids)

    @cached_property
    def unfenced_ids(self) -> frozenset[int]:
        """The brokers Metadata lists, asked for by every Metadata request: computed once per
        image (cached_property writes the instance dict, which a frozen dataclass allows)."""
        return frozenset(b.id for b in self.brokers.values() if not b.fenced)

    def is_unfenced(self, broker_id: int) -> bool:
        broker = self.brokers.get(broker_id)
        return broker is not None and not broker.fenced

    @cached_property
    def usable_ids(self) -> frozenset[int]:
        """Brokers that may lead, join an ISR or get new replicas: unfenced and not shutting
        down. Asked for by every follower fetch that reads a partition: computed once per
        image."""
        return frozenset(b.id for b in self.brokers.values() if b.usable)

    def is_usable(self, broker_id: int) -> bool:
        broker = self.brokers.get(broker_id)
        return broker is not None and broker.usable

    def endpoints(self, listener_name: str, *, include_fenced: bool = False
                  ) -> list[BrokerEndpoint]:
        """Every broker's address on ``listener_name``, by broker id; fenced brokers only
        when asked for."""
        out = []
        for b in sorted(self.brokers.values(), key=lambda b: b.id):
            li = b.listener(listener_name)
            if li is not None and (include_fenced or not b.fenced):
                out.append(BrokerEndpoint(b.id, li.host, li.port, b.rack or None, b.fenced))
        return out

    def endpoint(self, broker_id: int, listener_name: str) -> BrokerEndpoint | None:
        """Where to reach an unfenced broker on ``listener_name``."""
        b = self.brokers.get(broker_id)
        li = b.listener(listener_name) if b is not None and not b.fenced else None
        return None if b is None or li is None else BrokerEndpoint(
            b.id, li.host, li.port, b.rack or None, b.fenced)


MetadataImage.EMPTY = MetadataImage(
    offset=-1,
    brokers=_NOTHING,
    topics=_NOTHING,
    topics_by_id=_NOTHING,
    configs=_NOTHING,
    next_producer_id=0,
)

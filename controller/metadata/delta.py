"""Replaying metadata records on top of an image.

A `MetadataDelta` collects the effect of committed records on a base image; `apply()` builds the
next image, reusing every part of the base that the records did not touch. Controllers and
brokers run exactly this code, so they cannot disagree about what a record means.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from odradek.controller.metadata.acls import StandardAcl
from odradek.controller.metadata.client_quotas import QuotaEntityKey, entity_key
from odradek.controller.metadata.gen import metadata_pb2 as pb
from odradek.controller.metadata.image import (
    TOPIC_RESOURCE,
    BrokerRegistration,
    ConfigResource,
    Listener,
    MetadataImage,
    PartitionRegistration,
    ScramCredentialInfo,
    TopicImage,
)
from odradek.controller.metadata.records import uuid_from_bytes
from odradek.controller.metadata.scram import mechanism_name

_NO_QUOTAS: Mapping[str, float] = MappingProxyType({})


class MetadataReplayError(Exception):
    """A committed record contradicts the image it is replayed on.

    Records are produced by the controller against the same image, so this means a bug or a
    corrupted log; replay stops rather than guess.
    """


TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class LocalReplicaChanges:
    """What one broker must do after a delta.

    Every partition of the broker that the delta touched appears once, under the role the
    broker now has: the broker compares `leader_epoch` with its own state to tell a new
    leadership from, say, an ISR change. `deleted` lists replicas to remove from disk, because
    their topic was deleted or the broker is no longer a replica. A topic deleted and created
    again under the same name within one delta appears in `deleted` and in leaders/followers:
    process `deleted` first. `topic_ids` maps every topic named in leaders/followers to its id.
    """

    leaders: dict[TopicPartition, PartitionRegistration]
    followers: dict[TopicPartition, PartitionRegistration]
    deleted: set[TopicPartition]
    topic_ids: dict[str, uuid.UUID]


class _TopicDelta:
    """Changed partitions of one topic, over its base image (None for a topic created here)."""

    __slots__ = ("base", "name", "topic_id", "changed")

    def __init__(self, base: TopicImage | None, name: str, topic_id: uuid.UUID) -> None:
        self.base = base
        self.name = name
        self.topic_id = topic_id
        self.changed: dict[int, PartitionRegistration] = {}

    def partition(self, partition_id: int) -> PartitionRegistration | None:
        found = self.changed.get(partition_id)
        if found is None and self.base is not None:
            found = self.base.partitions.get(partition_id)
        return found

    def apply(self) -> TopicImage:
        if self.base is not None and not self.changed:
            return self.base
        partitions = dict(self.base.partitions) if self.base is not None else {}
        partitions.update(self.changed)
        return TopicImage(self.name, self.topic_id, MappingProxyType(partitions))


def merge_partition_change(
    current: PartitionRegistration, change: pb.PartitionChangeRecord
) -> PartitionRegistration:
    """Kafka's PartitionChangeRecord semantics: absent fields keep their value, every change
    bumps partition_epoch, and a present leader field bumps leader_epoch (the controller only
    sets it when leadership changes, so followers can tell a new leadership by the epoch)."""
    leader, leader_epoch = current.leader, current.leader_epoch
    if change.HasField("leader"):
        leader, leader_epoch = change.leader, current.leader_epoch + 1
    return PartitionRegistration(
        replicas=tuple(change.replicas.broker_ids)
        if change.HasField("replicas")
        else current.replicas,
        isr=tuple(change.isr.broker_ids) if change.HasField("isr") else current.isr,
        leader=leader,
        leader_epoch=leader_epoch,
        partition_epoch=current.partition_epoch + 1,
        elr=tuple(change.eligible_leader_replicas.broker_ids)
        if change.HasField("eligible_leader_replicas")
        else current.elr,
        removing=tuple(change.removing_replicas.broker_ids)
        if change.HasField("removing_replicas")
        else current.removing,
        adding=tuple(change.adding_replicas.broker_ids)
        if change.HasField("adding_replicas")
        else current.adding,
    )


class MetadataDelta:
    """Accumulates replayed records over `image`; not thread-safe, used by one replayer."""

    def __init__(self, image: MetadataImage) -> None:
        self.image = image
        self._offset = image.offset
        # None marks an unregistered broker.
        self._brokers: dict[int, BrokerRegistration | None] = {}
        self._topics: dict[uuid.UUID, _TopicDelta] = {}
        # Names of topics created by this delta, so name lookups need not scan _topics.
        self._created_names: dict[str, uuid.UUID] = {}
        # Topics of the base image that were removed, kept whole for local_changes().
        self._removed_topics: dict[uuid.UUID, TopicImage] = {}
        # None marks a deleted key.
        self._configs: dict[ConfigResource, dict[str, str | None]] = {}
        self._next_producer_id: int | None = None
        # (user, mechanism name) -> credential; None marks a removed one.
        self._scram: dict[tuple[str, str], ScramCredentialInfo | None] = {}
        # ACL id -> ACL; None marks a removed one.
        self._acls: dict[uuid.UUID, StandardAcl | None] = {}
        # Quota entity -> its changed keys; None marks a removed key.
        self._quotas: dict[QuotaEntityKey, dict[str, float | None]] = {}
        # Feature name -> its new finalized level; None marks level 0 (not finalized).
        self._features: dict[str, int | None] = {}

    # ----- reading the state as of the last replayed record -----

    @property
    def offset(self) -> int:
        return self._offset

    def broker(self, broker_id: int) -> BrokerRegistration | None:
        if broker_id in self._brokers:
            return self._brokers[broker_id]
        return self.image.brokers.get(broker_id)

    def topic_id(self, name: str) -> uuid.UUID | None:
        created = self._created_names.get(name)
        if created is not None:
            return created
        base = self.image.topics.get(name)
        if base is not None and base.topic_id not in self._removed_topics:
            return base.topic_id
        return None

    def changed_broker_ids(self) -> set[int]:
        return set(self._brokers)

    def changed_topic_ids(self) -> set[uuid.UUID]:
        """Topics created or changed (not removed) by this delta."""
        return set(self._topics)

    def removed_topics(self) -> Mapping[uuid.UUID, TopicImage]:
        """Topics of the base image that this delta removed."""
        return dict(self._removed_topics)

    def changed_config_resources(self) -> set[ConfigResource]:
        return set(self._configs)

    def acl(self, acl_id: uuid.UUID) -> StandardAcl | None:
        if acl_id in self._acls:
            return self._acls[acl_id]
        return self.image.acls.get(acl_id)

    def client_quota(self, entity: QuotaEntityKey, key: str) -> float | None:
        changed = self._quotas.get(entity, {})
        if key in changed:
            return changed[key]
        return self.image.client_quotas.get(entity, {}).get(key)

    def changed_client_quota_entities(self) -> set[QuotaEntityKey]:
        return set(self._quotas)

    def changed_acl_ids(self) -> set[uuid.UUID]:
        """ACLs added or removed by this delta."""
        return set(self._acls)

    def scram_credential(self, user: str, mechanism: str) -> ScramCredentialInfo | None:
        key = (user, mechanism)
        if key in self._scram:
            return self._scram[key]
        return self.image.scram_credentials.get(key)

    # ----- replay -----

    def replay(self, record: pb.MetadataRecord, offset: int) -> None:
        if offset <= self._offset:
            raise MetadataReplayError(
                f"record offset {offset} is not after the last replayed offset {self._offset}"
            )
        kind = record.WhichOneof("record")
        handler = _REPLAY.get(kind) if kind is not None else None
        if handler is None:
            raise MetadataReplayError(f"cannot replay record of type {kind!r} at offset {offset}")
        handler(self, getattr(record, kind), offset)
        self._offset = offset

    def _registered(self, broker_id: int, broker_epoch: int, what: str) -> BrokerRegistration:
        current = self.broker(broker_id)
        if current is None:
            raise MetadataReplayError(f"{what}: broker {broker_id} is not registered")
        if current.epoch != broker_epoch:
            raise MetadataReplayError(
                f"{what}: broker {broker_id} has epoch {current.epoch}, record names {broker_epoch}"
            )
        return current

    def _replay_register_broker(self, rec: pb.RegisterBrokerRecord, offset: int) -> None:
        self._brokers[rec.broker_id] = BrokerRegistration(
            id=rec.broker_id,
            incarnation_id=rec.incarnation_id,
            listeners=tuple(Listener(x.name, x.host, x.port) for x in rec.listeners),
            rack=rec.rack if rec.HasField("rack") else None,
            fenced=rec.fenced,
            epoch=offset,
            in_controlled_shutdown=rec.in_controlled_shutdown,
        )

    def _replay_fence_broker(self, rec: pb.FenceBrokerRecord, offset: int) -> None:
        current = self._registered(rec.broker_id, rec.broker_epoch, "FenceBrokerRecord")
        self._brokers[rec.broker_id] = dataclasses.replace(current, fenced=True)

    def _replay_unfence_broker(self, rec: pb.UnfenceBrokerRecord, offset: int) -> None:
        current = self._registered(rec.broker_id, rec.broker_epoch, "UnfenceBrokerRecord")
        self._brokers[rec.broker_id] = dataclasses.replace(
            current, fenced=False, in_controlled_shutdown=False)

    def _replay_broker_controlled_shutdown(self, rec: pb.BrokerControlledShutdownRecord,
                                           offset: int) -> None:
        current = self._registered(rec.broker_id, rec.broker_epoch,
                                   "BrokerControlledShutdownRecord")
        self._brokers[rec.broker_id] = dataclasses.replace(current, in_controlled_shutdown=True)

    def _replay_unregister_broker(self, rec: pb.UnregisterBrokerRecord, offset: int) -> None:
        self._registered(rec.broker_id, rec.broker_epoch, "UnregisterBrokerRecord")
        self._brokers[rec.broker_id] = None

    def _topic_for_update(self, topic_id: uuid.UUID, what: str) -> _TopicDelta:
        topic = self._topics.get(topic_id)
        if topic is None:
            base = self.image.topics_by_id.get(topic_id)
            if base is None or topic_id in self._removed_topics:
                raise MetadataReplayError(f"{what}: unknown topic id {topic_id}")
            topic = self._topics[topic_id] = _TopicDelta(base, base.name, topic_id)
        return topic

    def _replay_topic(self, rec: pb.TopicRecord, offset: int) -> None:
        topic_id = uuid_from_bytes(rec.topic_id)
        if self.topic_id(rec.name) is not None:
            raise MetadataReplayError(f"TopicRecord: topic {rec.name!r} already exists")
        if topic_id in self._topics or (
            topic_id in self.image.topics_by_id and topic_id not in self._removed_topics
        ):
            raise MetadataReplayError(f"TopicRecord: topic id {topic_id} is already in use")
        self._topics[topic_id] = _TopicDelta(None, rec.name, topic_id)
        self._created_names[rec.name] = topic_id

    def _replay_partition(self, rec: pb.PartitionRecord, offset: int) -> None:
        topic = self._topic_for_update(uuid_from_bytes(rec.topic_id), "PartitionRecord")
        topic.changed[rec.partition_id] = PartitionRegistration(
            replicas=tuple(rec.replicas),
            isr=tuple(rec.isr),
            leader=rec.leader,
            leader_epoch=rec.leader_epoch,
            partition_epoch=rec.partition_epoch,
            elr=tuple(rec.eligible_leader_replicas),
            removing=tuple(rec.removing_replicas),
            adding=tuple(rec.adding_replicas),
        )

    def _replay_partition_change(self, rec: pb.PartitionChangeRecord, offset: int) -> None:
        topic = self._topic_for_update(uuid_from_bytes(rec.topic_id), "PartitionChangeRecord")
        current = topic.partition(rec.partition_id)
        if current is None:
            raise MetadataReplayError(
                f"PartitionChangeRecord: topic {topic.name!r} has no partition {rec.partition_id}"
            )
        topic.changed[rec.partition_id] = merge_partition_change(current, rec)

    def _replay_config(self, rec: pb.ConfigRecord, offset: int) -> None:
        key = (int(rec.resource_type), rec.resource_name)
        self._configs.setdefault(key, {})[rec.name] = rec.value if rec.HasField("value") else None

    def _replay_remove_topic(self, rec: pb.RemoveTopicRecord, offset: int) -> None:
        topic_id = uuid_from_bytes(rec.topic_id)
        topic = self._topic_for_update(topic_id, "RemoveTopicRecord")
        del self._topics[topic_id]
        if topic.base is not None:
            self._removed_topics[topic_id] = topic.base
        else:
            del self._created_names[topic.name]
        resource = (TOPIC_RESOURCE, topic.name)
        keys = set(self.image.configs.get(resource, {})) | set(self._configs.get(resource, {}))
        self._configs[resource] = dict.fromkeys(keys)

    def _replay_producer_ids(self, rec: pb.ProducerIdsRecord, offset: int) -> None:
        current = self.next_producer_id
        if rec.next_producer_id <= current:
            # Handing out a producer id twice would let two producers share idempotence state.
            raise MetadataReplayError(
                f"ProducerIdsRecord moves next producer id back from {current} to "
                f"{rec.next_producer_id}"
            )
        self._next_producer_id = rec.next_producer_id

    def _replay_no_op(self, rec: pb.NoOpRecord, offset: int) -> None:
        pass

    @staticmethod
    def _scram_mechanism(code: int, what: str) -> str:
        name = mechanism_name(code)
        if name is None:
            # The controller refuses unknown mechanisms, so the log cannot hold one.
            raise MetadataReplayError(f"{what}: unknown SCRAM mechanism type {code}")
        return name

    def _replay_user_scram_credential(self, rec: pb.UserScramCredentialRecord,
                                      offset: int) -> None:
        mechanism = self._scram_mechanism(rec.mechanism, "UserScramCredentialRecord")
        self._scram[(rec.name, mechanism)] = ScramCredentialInfo(
            salt=rec.salt, stored_key=rec.stored_key, server_key=rec.server_key,
            iterations=rec.iterations)

    def _replay_remove_user_scram_credential(self, rec: pb.RemoveUserScramCredentialRecord,
                                             offset: int) -> None:
        mechanism = self._scram_mechanism(rec.mechanism, "RemoveUserScramCredentialRecord")
        if self.scram_credential(rec.name, mechanism) is None:
            raise MetadataReplayError(
                f"RemoveUserScramCredentialRecord: user {rec.name!r} has no {mechanism} "
                "credential")
        self._scram[(rec.name, mechanism)] = None

    def _replay_access_control_entry(self, rec: pb.AccessControlEntryRecord,
                                     offset: int) -> None:
        acl_id = uuid_from_bytes(rec.id)
        if self.acl(acl_id) is not None:
            raise MetadataReplayError(f"AccessControlEntryRecord: ACL id {acl_id} is in use")
        self._acls[acl_id] = StandardAcl(
            resource_type=rec.resource_type, resource_name=rec.resource_name,
            pattern_type=rec.pattern_type, principal=rec.principal, host=rec.host,
            operation=rec.operation, permission_type=rec.permission_type)

    def _replay_remove_access_control_entry(self, rec: pb.RemoveAccessControlEntryRecord,
                                            offset: int) -> None:
        acl_id = uuid_from_bytes(rec.id)
        if self.acl(acl_id) is None:
            raise MetadataReplayError(f"RemoveAccessControlEntryRecord: no ACL with id {acl_id}")
        self._acls[acl_id] = None

    def _replay_client_quota(self, rec: pb.ClientQuotaRecord, offset: int) -> None:
        entity = entity_key((e.entity_type, e.entity_name if e.HasField("entity_name")
                             else None) for e in rec.entity)
        if not entity:
            raise MetadataReplayError("ClientQuotaRecord: an entity needs a component")
        # As Kafka's: removing a key that is not set changes nothing.
        self._quotas.setdefault(entity, {})[rec.key] = None if rec.remove else rec.value

    def _replay_feature_level(self, rec: pb.FeatureLevelRecord, offset: int) -> None:
        if rec.feature_level < 0:
            raise MetadataReplayError(
                f"FeatureLevelRecord: {rec.name!r} at negative level {rec.feature_level}")
        # Kafka's FeatureControlManager.replay: level 0 removes the feature.
        self._features[rec.name] = rec.feature_level or None

    @property
    def next_producer_id(self) -> int:
        if self._next_producer_id is not None:
            return self._next_producer_id
        return self.image.next_producer_id

    # ----- results -----

    def apply(self) -> MetadataImage:
        # Every dict built here is new and owned by the image alone, so a read-only view over
        # it (no copy) keeps the image immutable.
        base = self.image
        brokers = base.brokers
        if self._brokers:
            merged_brokers = dict(base.brokers)
            for broker_id, registration in self._brokers.items():
                if registration is None:
                    merged_brokers.pop(broker_id, None)
                else:
                    merged_brokers[broker_id] = registration
            brokers = MappingProxyType(merged_brokers)

        topics, topics_by_id = base.topics, base.topics_by_id
        if self._topics or self._removed_topics:
            by_name = dict(base.topics)
            by_id = dict(base.topics_by_id)
            for topic_id, removed in self._removed_topics.items():
                del by_name[removed.name]
                del by_id[topic_id]
            for topic_id, topic_delta in self._topics.items():
                topic = topic_delta.apply()
                by_name[topic.name] = topic
                by_id[topic_id] = topic
            topics, topics_by_id = MappingProxyType(by_name), MappingProxyType(by_id)

        configs = base.configs
        if self._configs:
            merged_configs = dict(base.configs)
            for resource, changes in self._configs.items():
                entries = dict(merged_configs.get(resource, {}))
                for name, value in changes.items():
                    if value is None:
                        entries.pop(name, None)
                    else:
                        entries[name] = value
                if entries:
                    merged_configs[resource] = MappingProxyType(entries)
                else:
                    merged_configs.pop(resource, None)
            configs = MappingProxyType(merged_configs)

        return MetadataImage(
            offset=self._offset,
            brokers=brokers,
            topics=topics,
            topics_by_id=topics_by_id,
            configs=configs,
            next_producer_id=self.next_producer_id,
            scram_credentials=_merged(base.scram_credentials, self._scram),
            acls=_merged(base.acls, self._acls),
            client_quotas=self._merged_client_quotas(),
            finalized_features=_merged(base.finalized_features, self._features),
        )

    def _merged_client_quotas(self) -> Mapping[QuotaEntityKey, Mapping[str, float]]:
        base = self.image.client_quotas
        if not self._quotas:
            return base
        merged = dict(base)
        for entity, changes in self._quotas.items():
            values = _merged(base.get(entity, _NO_QUOTAS), changes)
            if values:
                merged[entity] = values
            else:
                merged.pop(entity, None)
        return MappingProxyType(merged)

    def local_changes(self, broker_id: int) -> LocalReplicaChanges:
        changes = LocalReplicaChanges(leaders={}, followers={}, deleted=set(), topic_ids={})
        for removed in self._removed_topics.values():
            for partition_id, partition in removed.partitions.items():
                if broker_id in partition.replicas:
                    changes.deleted.add((removed.name, partition_id))
        for topic_id, topic in self._topics.items():
            for partition_id, partition in topic.changed.items():
                key = (topic.name, partition_id)
                if broker_id in partition.replicas:
                    role = changes.leaders if partition.leader == broker_id else changes.followers
                    role[key] = partition
                    changes.topic_ids[topic.name] = topic_id
                elif topic.base is not None:
                    before = topic.base.partitions.get(partition_id)
                    if before is not None and broker_id in before.replicas:
                        changes.deleted.add(key)
        return changes


K = TypeVar("K")
V = TypeVar("V")


def _merged(base: Mapping[K, V], changes: Mapping[K, V | None]) -> Mapping[K, V]:
    """``base`` with ``changes`` applied (None removes a key); ``base`` itself when nothing
    changed, so an image shares every part a delta did not touch."""
    if not changes:
        return base
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return MappingProxyType(merged)


def local_replicas(image: MetadataImage, broker_id: int) -> LocalReplicaChanges:
    """Every partition of `broker_id` in `image`, as the changes that take a broker holding
    nothing to that image: what a broker applies once, when its metadata has caught up."""
    changes = LocalReplicaChanges(leaders={}, followers={}, deleted=set(), topic_ids={})
    for topic in image.topics.values():
        for partition_id, partition in topic.partitions.items():
            if broker_id in partition.replicas:
                role = changes.leaders if partition.leader == broker_id else changes.followers
                role[(topic.name, partition_id)] = partition
                changes.topic_ids[topic.name] = topic.topic_id
    return changes


_REPLAY: dict[str, Callable[[MetadataDelta, Any, int], None]] = {
    "register_broker": MetadataDelta._replay_register_broker,
    "fence_broker": MetadataDelta._replay_fence_broker,
    "unfence_broker": MetadataDelta._replay_unfence_broker,
    "broker_controlled_shutdown": MetadataDelta._replay_broker_controlled_shutdown,
    "unregister_broker": MetadataDelta._replay_unregister_broker,
    "topic": MetadataDelta._replay_topic,
    "partition": MetadataDelta._replay_partition,
    "partition_change": MetadataDelta._replay_partition_change,
    "config": MetadataDelta._replay_config,
    "remove_topic": MetadataDelta._replay_remove_topic,
    "producer_ids": MetadataDelta._replay_producer_ids,
    "no_op": MetadataDelta._replay_no_op,
    "user_scram_credential": MetadataDelta._replay_user_scram_credential,
    "remove_user_scram_credential": MetadataDelta._replay_remove_user_scram_credential,
    "access_control_entry": MetadataDelta._replay_access_control_entry,
    "remove_access_control_entry": MetadataDelta._replay_remove_access_control_entry,
    "client_quota": MetadataDelta._replay_client_quota,
    "feature_level": MetadataDelta._replay_feature_level,
}

__all__ = [
    "LocalReplicaChanges",
    "MetadataDelta",
    "MetadataReplayError",
    "local_replicas",
    "merge_partition_change",
]

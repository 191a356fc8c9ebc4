"""An image as records, and the records that move one image to another.

A snapshot of the metadata log is the image at some record offset L, written as metadata
records that rebuild it when replayed into an empty image. Each record carries the offset it
must be replayed at, because the image depends on offsets: a broker's epoch *is* the offset of
its RegisterBrokerRecord, and the image's own offset is that of its last record. So:

- every RegisterBrokerRecord is placed at its broker's epoch (the registration's fenced state
  goes into the record itself, no Fence/Unfence record needed);
- every other record takes a free offset counting down from L, so the last one is at L
  (or a NoOpRecord is, when nothing else is).

There is always room: a log that produced the image spent at least one record on each thing
the snapshot writes (a topic, a partition, a config key, a producer id block, a broker), at a
distinct offset. ``diff_records`` generalises this to "records that take image A to a later
image B", which is how a node that already has an image installs a snapshot: its loader
replays the difference, so listeners (the local broker) get a normal delta saying which
partitions were created, changed or deleted, rather than a new world with no delta.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from odradek.controller.metadata import (
    TOPIC_RESOURCE,
    MetadataDelta,
    MetadataImage,
    MetadataRecord,
)
from odradek.controller.metadata.records import (
    access_control_entry_record,
    broker_controlled_shutdown_record,
    client_quota_record,
    config_record,
    feature_level_record,
    fence_broker_record,
    no_op_record,
    partition_record,
    producer_ids_record,
    register_broker_record,
    remove_access_control_entry_record,
    remove_topic_record,
    remove_user_scram_credential_record,
    topic_record,
    unfence_broker_record,
    unregister_broker_record,
    user_scram_credential_record,
)
from odradek.controller.metadata.scram import MECHANISM_CODES

OffsetRecord = tuple[int, MetadataRecord]


class SnapshotError(ValueError):
    """A snapshot that cannot be written or read: corrupt data, or an image that no log could
    have produced (which means a bug, not bad luck)."""


def image_to_records(image: MetadataImage) -> list[OffsetRecord]:
    """The records, each with its replay offset, that rebuild ``image`` from an empty one."""
    return diff_records(MetadataImage.EMPTY, image)


def replay(records: Iterable[OffsetRecord], base: MetadataImage = MetadataImage.EMPTY
           ) -> MetadataImage:
    delta = MetadataDelta(base)
    replayed = False
    for offset, record in records:
        delta.replay(record, offset)
        replayed = True
    return delta.apply() if replayed else base


def diff_records(base: MetadataImage, target: MetadataImage) -> list[OffsetRecord]:
    """Records that, replayed onto ``base``, give an image equal to ``target``.

    ``target`` must be a later image of the same log as ``base``. Offsets are strictly
    increasing, all in (base.offset, target.offset], the last one target.offset.
    """
    if target.offset < base.offset:
        raise SnapshotError(
            f"cannot go back from the image at offset {base.offset} to one at {target.offset}"
        )
    if target.offset == base.offset:
        if base != target:
            raise SnapshotError(f"two different images claim offset {base.offset}")
        return []
    others: list[MetadataRecord] = []
    registrations = _broker_changes(base, target, others)
    removed = _topic_changes(base, target, others)
    _config_changes(base, target, removed, others)
    _scram_changes(base, target, others)
    _acl_changes(base, target, others)
    _client_quota_changes(base, target, others)
    _feature_level_changes(base, target, others)
    if target.next_producer_id != base.next_producer_id:
        if target.next_producer_id < base.next_producer_id:
            raise SnapshotError(
                f"next producer id goes back from {base.next_producer_id} to "
                f"{target.next_producer_id}"
            )
        # Replay only keeps the highest block end; which broker got it is history.
        others.append(producer_ids_record(-1, -1, target.next_producer_id))

    epochs = {offset for offset, _ in registrations}
    slots: list[int] = []
    offset = target.offset
    while len(slots) < len(others) and offset > base.offset:
        if offset not in epochs:
            slots.append(offset)
        offset -= 1
    if len(slots) < len(others):
        raise SnapshotError(
            f"{len(others)} records do not fit between offsets {base.offset} and "
            f"{target.offset}: the target image cannot come from this log"
        )
    slots.reverse()
    out = sorted([*zip(slots, others, strict=True), *registrations], key=lambda x: x[0])
    if not out or out[-1][0] < target.offset:
        out.append((target.offset, no_op_record()))
    return out


def _broker_changes(base: MetadataImage, target: MetadataImage,
                    others: list[MetadataRecord]) -> list[OffsetRecord]:
    registrations: list[OffsetRecord] = []
    for broker_id in sorted(base.brokers.keys() | target.brokers.keys()):
        old, new = base.brokers.get(broker_id), target.brokers.get(broker_id)
        if new is None:
            assert old is not None
            others.append(unregister_broker_record(broker_id, old.epoch))
        elif old is None or old.epoch != new.epoch:
            if not base.offset < new.epoch <= target.offset:
                raise SnapshotError(
                    f"broker {broker_id} has epoch {new.epoch}, outside ({base.offset}, "
                    f"{target.offset}]"
                )
            record = register_broker_record(
                new.id, new.incarnation_id,
                [(x.name, x.host, x.port) for x in new.listeners], new.rack, new.fenced,
                new.in_controlled_shutdown,
            )
            registrations.append((new.epoch, record))
        elif old != new:
            if (old.incarnation_id, old.listeners, old.rack) != (
                new.incarnation_id, new.listeners, new.rack
            ):
                raise SnapshotError(
                    f"broker {broker_id} changed its registration without a new epoch"
                )
            # Only unfencing ends a controlled shutdown; fencing keeps it.
            fenced, in_shutdown = old.fenced, old.in_controlled_shutdown
            if in_shutdown and not new.in_controlled_shutdown:
                others.append(unfence_broker_record(broker_id, new.epoch))
                fenced = in_shutdown = False
            if new.fenced != fenced:
                make = fence_broker_record if new.fenced else unfence_broker_record
                others.append(make(broker_id, new.epoch))
                in_shutdown = in_shutdown and new.fenced
            if new.in_controlled_shutdown and not in_shutdown:
                others.append(broker_controlled_shutdown_record(broker_id, new.epoch))
    return registrations


def _topic_changes(base: MetadataImage, target: MetadataImage,
                   others: list[MetadataRecord]) -> list[str]:
    """Appends topic and partition records; returns the names of removed topics."""
    removed = sorted(
        (t for tid, t in base.topics_by_id.items() if tid not in target.topics_by_id),
        key=lambda t: t.name,
    )
    # Removals first: a topic may have been deleted and created again under the same name.
    others.extend(remove_topic_record(t.topic_id) for t in removed)
    for topic in sorted(target.topics_by_id.values(), key=lambda t: t.name):
        old = base.topics_by_id.get(topic.topic_id)
        if old is None:
            others.append(topic_record(topic.name, topic.topic_id))
            changed = sorted(topic.partitions)
        else:
            if old.name != topic.name or old.partitions.keys() - topic.partitions.keys():
                raise SnapshotError(
                    f"topic {old.name!r} ({topic.topic_id}) was renamed or lost partitions"
                )
            changed = sorted(p for p, reg in topic.partitions.items()
                             if old.partitions.get(p) != reg)
        for p in changed:
            reg = topic.partitions[p]
            # A PartitionRecord replaces the whole registration, epochs included.
            others.append(partition_record(topic.topic_id, p, reg.replicas, reg.isr, reg.leader,
                                           reg.leader_epoch, reg.partition_epoch, reg.elr,
                                           reg.removing, reg.adding))
    return [t.name for t in removed]


def _config_changes(base: MetadataImage, target: MetadataImage, removed: Sequence[str],
                    others: list[MetadataRecord]) -> None:
    # Replaying a RemoveTopicRecord also drops the topic's configs.
    current = {res: dict(cfg) for res, cfg in base.configs.items()}
    for name in removed:
        current.pop((TOPIC_RESOURCE, name), None)
    for resource in sorted(current.keys() | target.configs.keys()):
        old = current.get(resource, {})
        new = target.configs.get(resource, {})
        for key in sorted(old.keys() | new.keys()):
            if old.get(key) != new.get(key):
                others.append(config_record(resource[0], resource[1], key, new.get(key)))


def _scram_changes(base: MetadataImage, target: MetadataImage,
                   others: list[MetadataRecord]) -> None:
    old, new = base.scram_credentials, target.scram_credentials
    for key in sorted(old.keys() | new.keys()):
        user, mechanism = key
        credential = new.get(key)
        if credential is None:
            others.append(remove_user_scram_credential_record(user, MECHANISM_CODES[mechanism]))
        elif old.get(key) != credential:
            others.append(user_scram_credential_record(
                user, MECHANISM_CODES[mechanism], credential.salt, credential.stored_key,
                credential.server_key, credential.iterations))


def _acl_changes(base: MetadataImage, target: MetadataImage,
                 others: list[MetadataRecord]) -> None:
    old, new = base.acls, target.acls
    for acl_id in sorted(old.keys() - new.keys()):
        others.append(remove_access_control_entry_record(acl_id))
    for acl_id in sorted(new.keys() - old.keys()):
        others.append(access_control_entry_record(acl_id, new[acl_id]))
    for acl_id in sorted(old.keys() & new.keys()):
        if old[acl_id] != new[acl_id]:
            raise SnapshotError(f"ACL {acl_id} changed; an ACL is only ever added or removed")


def _client_quota_changes(base: MetadataImage, target: MetadataImage,
                          others: list[MetadataRecord]) -> None:
    old, new = base.client_quotas, target.client_quotas
    for entity in sorted(old.keys() | new.keys(), key=repr):
        before, after = old.get(entity, {}), new.get(entity, {})
        for key in sorted(before.keys() | after.keys()):
            if before.get(key) != after.get(key):
                others.append(client_quota_record(entity, key, after.get(key)))


def _feature_level_changes(base: MetadataImage, target: MetadataImage,
                           others: list[MetadataRecord]) -> None:
    """A feature absent from an image is at level 0 (a default level is in the map), so a
    snapshot of a log that set transaction.version to 0 writes the 0 explicitly."""
    old, new = base.finalized_features, target.finalized_features
    for name in sorted(old.keys() | new.keys()):
        level = new.get(name, 0)
        if old.get(name, 0) != level:
            others.append(feature_level_record(name, level))

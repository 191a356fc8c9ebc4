"""Encoding of metadata records for the log, and small conversions shared by replay and ops."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import cast

from odradek.controller.metadata.acls import StandardAcl
from odradek.controller.metadata.client_quotas import QuotaEntityKey
from odradek.controller.metadata.gen import metadata_pb2 as pb

MetadataRecord = pb.MetadataRecord


class RecordDecodeError(ValueError):
    """The bytes are not a metadata record this version understands."""


def encode_record(record: pb.MetadataRecord) -> bytes:
    if record.WhichOneof("record") is None:
        raise ValueError("refusing to encode a MetadataRecord with no record set")
    # Deterministic so that the same record always has the same bytes (and CRC) everywhere.
    return record.SerializeToString(deterministic=True)


def decode_record(data: bytes) -> pb.MetadataRecord:
    record = pb.MetadataRecord()
    try:
        record.ParseFromString(data)
    except Exception as exc:  # protobuf raises its own DecodeError, not a ValueError subclass
        raise RecordDecodeError(f"malformed metadata record ({len(data)} bytes): {exc}") from exc
    if record.WhichOneof("record") is None:
        # Either an empty record or one written by a newer version with a record type we do
        # not know; applying the rest of the log without it would give a wrong image.
        raise RecordDecodeError(
            f"metadata record of {len(data)} bytes has no record type this version knows; "
            "upgrade this node before replaying the log"
        )
    return record


def uuid_from_bytes(data: bytes) -> uuid.UUID:
    if len(data) != 16:
        raise RecordDecodeError(f"topic id must be 16 bytes, got {len(data)}")
    return uuid.UUID(bytes=data)


# Builders: every producer of records (controller ops, tests, tools) goes through these, so
# the wrapper and field conventions (absent = unchanged / deleted) live in one place.


def register_broker_record(
    broker_id: int,
    incarnation_id: str,
    listeners: Iterable[tuple[str, str, int]] = (),
    rack: str | None = None,
    fenced: bool = True,
    in_controlled_shutdown: bool = False,
) -> pb.MetadataRecord:
    rec = pb.RegisterBrokerRecord(
        broker_id=broker_id,
        incarnation_id=incarnation_id,
        listeners=[pb.Listener(name=n, host=h, port=p) for n, h, p in listeners],
        fenced=fenced,
        in_controlled_shutdown=in_controlled_shutdown,
    )
    if rack is not None:
        rec.rack = rack
    return pb.MetadataRecord(register_broker=rec)


def fence_broker_record(broker_id: int, broker_epoch: int) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        fence_broker=pb.FenceBrokerRecord(broker_id=broker_id, broker_epoch=broker_epoch)
    )


def broker_controlled_shutdown_record(broker_id: int, broker_epoch: int) -> pb.MetadataRecord:
    return pb.MetadataRecord(broker_controlled_shutdown=pb.BrokerControlledShutdownRecord(
        broker_id=broker_id, broker_epoch=broker_epoch))


def unfence_broker_record(broker_id: int, broker_epoch: int) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        unfence_broker=pb.UnfenceBrokerRecord(broker_id=broker_id, broker_epoch=broker_epoch)
    )


def unregister_broker_record(broker_id: int, broker_epoch: int) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        unregister_broker=pb.UnregisterBrokerRecord(broker_id=broker_id, broker_epoch=broker_epoch)
    )


def topic_record(name: str, topic_id: uuid.UUID) -> pb.MetadataRecord:
    return pb.MetadataRecord(topic=pb.TopicRecord(name=name, topic_id=topic_id.bytes))


def partition_record(
    topic_id: uuid.UUID,
    partition_id: int,
    replicas: Sequence[int],
    isr: Sequence[int],
    leader: int,
    leader_epoch: int = 0,
    partition_epoch: int = 0,
    elr: Sequence[int] = (),
    removing: Sequence[int] = (),
    adding: Sequence[int] = (),
) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        partition=pb.PartitionRecord(
            topic_id=topic_id.bytes,
            partition_id=partition_id,
            replicas=replicas,
            isr=isr,
            leader=leader,
            leader_epoch=leader_epoch,
            partition_epoch=partition_epoch,
            eligible_leader_replicas=elr,
            removing_replicas=removing,
            adding_replicas=adding,
        )
    )


def partition_change_record(
    topic_id: uuid.UUID,
    partition_id: int,
    *,
    isr: Sequence[int] | None = None,
    leader: int | None = None,
    replicas: Sequence[int] | None = None,
    elr: Sequence[int] | None = None,
    removing: Sequence[int] | None = None,
    adding: Sequence[int] | None = None,
) -> pb.MetadataRecord:
    """None means unchanged; pass leader only when leadership changes (it bumps leader_epoch).
    `elr` is the new list of eligible leader replicas (KIP-966); `removing` and `adding` the
    reassignment's (KIP-455)."""
    rec = pb.PartitionChangeRecord(topic_id=topic_id.bytes, partition_id=partition_id)
    if isr is not None:
        rec.isr.SetInParent()  # present even when the new ISR is empty
        rec.isr.broker_ids.extend(isr)
    if leader is not None:
        rec.leader = leader
    if replicas is not None:
        rec.replicas.SetInParent()
        rec.replicas.broker_ids.extend(replicas)
    if elr is not None:
        rec.eligible_leader_replicas.SetInParent()
        rec.eligible_leader_replicas.broker_ids.extend(elr)
    if removing is not None:
        rec.removing_replicas.SetInParent()
        rec.removing_replicas.broker_ids.extend(removing)
    if adding is not None:
        rec.adding_replicas.SetInParent()
        rec.adding_replicas.broker_ids.extend(adding)
    return pb.MetadataRecord(partition_change=rec)


def config_record(
    resource_type: int, resource_name: str, name: str, value: str | None
) -> pb.MetadataRecord:
    """value None deletes the key."""
    # The enum's values are Kafka's resource type numbers; protobuf takes the int.
    rec = pb.ConfigRecord(resource_type=cast("pb.ConfigResourceType", resource_type),
                          resource_name=resource_name, name=name)
    if value is not None:
        rec.value = value
    return pb.MetadataRecord(config=rec)


def remove_topic_record(topic_id: uuid.UUID) -> pb.MetadataRecord:
    return pb.MetadataRecord(remove_topic=pb.RemoveTopicRecord(topic_id=topic_id.bytes))


def producer_ids_record(
    broker_id: int, broker_epoch: int, next_producer_id: int
) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        producer_ids=pb.ProducerIdsRecord(
            broker_id=broker_id, broker_epoch=broker_epoch, next_producer_id=next_producer_id
        )
    )


def no_op_record() -> pb.MetadataRecord:
    return pb.MetadataRecord(no_op=pb.NoOpRecord())


def user_scram_credential_record(name: str, mechanism: int, salt: bytes, stored_key: bytes,
                                 server_key: bytes, iterations: int) -> pb.MetadataRecord:
    """``mechanism`` is Kafka's ScramMechanism type (controller/metadata/scram.py)."""
    return pb.MetadataRecord(user_scram_credential=pb.UserScramCredentialRecord(
        name=name, mechanism=mechanism, salt=salt, stored_key=stored_key,
        server_key=server_key, iterations=iterations))


def remove_user_scram_credential_record(name: str, mechanism: int) -> pb.MetadataRecord:
    return pb.MetadataRecord(remove_user_scram_credential=pb.RemoveUserScramCredentialRecord(
        name=name, mechanism=mechanism))


def access_control_entry_record(acl_id: uuid.UUID, acl: StandardAcl) -> pb.MetadataRecord:
    return pb.MetadataRecord(access_control_entry=pb.AccessControlEntryRecord(
        id=acl_id.bytes, resource_type=acl.resource_type, resource_name=acl.resource_name,
        pattern_type=acl.pattern_type, principal=acl.principal, host=acl.host,
        operation=acl.operation, permission_type=acl.permission_type))


def remove_access_control_entry_record(acl_id: uuid.UUID) -> pb.MetadataRecord:
    return pb.MetadataRecord(remove_access_control_entry=pb.RemoveAccessControlEntryRecord(
        id=acl_id.bytes))


def client_quota_record(entity: QuotaEntityKey, key: str, value: float | None
                        ) -> pb.MetadataRecord:
    """value None removes the key."""
    rec = pb.ClientQuotaRecord(
        entity=[pb.ClientQuotaRecord.EntityData(entity_type=t, entity_name=n) for t, n in entity],
        key=key, value=0.0 if value is None else value, remove=value is None)
    return pb.MetadataRecord(client_quota=rec)


def feature_level_record(name: str, level: int) -> pb.MetadataRecord:
    """Level 0 takes the feature out of the finalized features, as in Kafka."""
    return pb.MetadataRecord(feature_level=pb.FeatureLevelRecord(name=name, feature_level=level))

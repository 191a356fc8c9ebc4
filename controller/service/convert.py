"""Conversions between controller/quorum/api.py values and controller.proto messages.

Each value has one `*_to_pb` and one `*_from_pb`, used by both the servicer and the client,
so the two sides cannot disagree. Decoding is strict: a malformed message (a topic id that is
not 16 bytes) raises ConversionError, which the servicer answers with INVALID_ARGUMENT.
Error codes come back as kio's ErrorCode when known, as the controller produced them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import Listener, PartitionRegistration
from odradek.controller.metadata.acls import AclFilter, StandardAcl
from odradek.controller.metadata.client_quotas import ClientQuotaChange, entity_key
from odradek.controller.metadata.gen import metadata_pb2 as mpb
from odradek.controller.metadata.requests import (
    AlterClientQuotasResult,
    AlterConfigOp,
    AlterConfigsResource,
    AlterConfigsResult,
    AlterPartitionItem,
    AlterPartitionItemResult,
    AlterPartitionResult,
    AlterScramCredentialResult,
    BrokerResult,
    CreateAclResult,
    CreatePartitionsResult,
    CreatePartitionsSpec,
    CreateTopicResult,
    CreateTopicSpec,
    DeleteAclsResult,
    DeleteTopicResult,
    DeleteTopicSpec,
    ElectionType,
    ElectLeadersResult,
    FeatureUpdate,
    IncrementalAlterConfigsResource,
    ProducerIdsResult,
    ReassignmentRequest,
    ReassignmentResult,
    RegisterBrokerResult,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
    UpdateFeaturesResult,
)
from odradek.controller.rpc import controller_pb2 as pb


class ConversionError(ValueError):
    """A message that cannot be a valid request or result."""


def error_code(value: int) -> int:
    try:
        return ErrorCode(value)
    except ValueError:
        return value  # a code newer than our kio: keep the number


def _opt(msg: object, field: str) -> str | None:
    return getattr(msg, field) if msg.HasField(field) else None  # type: ignore[attr-defined]


def uuid_to_bytes(value: uuid.UUID | None) -> bytes:
    return b"" if value is None else value.bytes


def uuid_from_bytes(data: bytes) -> uuid.UUID | None:
    if not data:
        return None
    if len(data) != 16:
        raise ConversionError(f"a topic id must be 16 bytes; got {len(data)}")
    return uuid.UUID(bytes=data)


def _required_uuid(data: bytes) -> uuid.UUID:
    value = uuid_from_bytes(data)
    if value is None:
        raise ConversionError("a topic id is required here")
    return value


def _config_values(configs: Mapping[str, str | None]) -> list[pb.ConfigValue]:
    return [pb.ConfigValue(name=k, value=v) for k, v in configs.items()]


def _config_map(values: Iterable[pb.ConfigValue]) -> dict[str, str | None]:
    return {v.name: _opt(v, "value") for v in values}


# ----- listeners -----


def listener_to_pb(listener: Listener | tuple[str, str, int]) -> mpb.Listener:
    name, host, port = (
        (listener.name, listener.host, listener.port)
        if isinstance(listener, Listener)
        else listener
    )
    return mpb.Listener(name=name, host=host, port=port)


def listener_from_pb(msg: mpb.Listener) -> Listener:
    return Listener(msg.name, msg.host, msg.port)


# ----- topics -----


def create_topic_spec_to_pb(spec: CreateTopicSpec) -> pb.CreatableTopic:
    return pb.CreatableTopic(
        name=spec.name,
        num_partitions=spec.num_partitions,
        replication_factor=spec.replication_factor,
        assignments=[
            pb.ReplicaAssignment(partition=p, replicas=list(r)) for p, r in spec.assignments.items()
        ],
        configs=_config_values(spec.configs),
    )


def create_topic_spec_from_pb(msg: pb.CreatableTopic) -> CreateTopicSpec:
    assignments: dict[int, tuple[int, ...]] = {}
    for a in msg.assignments:
        if a.partition in assignments:
            # A CreateTopicSpec's mapping cannot hold duplicates, so no client of ours sends
            # them; keeping the last one silently would place replicas nobody asked for.
            raise ConversionError(f"topic {msg.name!r}: partition {a.partition} assigned twice")
        assignments[a.partition] = tuple(a.replicas)
    return CreateTopicSpec(
        name=msg.name,
        num_partitions=msg.num_partitions,
        replication_factor=msg.replication_factor,
        assignments=assignments,
        configs=_config_map(msg.configs),
    )


def create_topic_result_to_pb(result: CreateTopicResult) -> pb.CreateTopicResult:
    return pb.CreateTopicResult(
        name=result.name,
        error_code=result.error_code,
        error_message=result.error_message,
        topic_id=uuid_to_bytes(result.topic_id),
        num_partitions=result.num_partitions,
        replication_factor=result.replication_factor,
        configs=dict(result.configs),
    )


def create_topic_result_from_pb(msg: pb.CreateTopicResult) -> CreateTopicResult:
    return CreateTopicResult(
        name=msg.name,
        error_code=error_code(msg.error_code),
        error_message=_opt(msg, "error_message"),
        topic_id=uuid_from_bytes(msg.topic_id),
        num_partitions=msg.num_partitions,
        replication_factor=msg.replication_factor,
        configs=dict(msg.configs),
    )


def delete_topic_spec_to_pb(spec: DeleteTopicSpec) -> pb.TopicRef:
    return pb.TopicRef(name=spec.name, topic_id=uuid_to_bytes(spec.topic_id))


def delete_topic_spec_from_pb(msg: pb.TopicRef) -> DeleteTopicSpec:
    return DeleteTopicSpec(name=_opt(msg, "name"), topic_id=uuid_from_bytes(msg.topic_id))


def delete_topic_result_to_pb(result: DeleteTopicResult) -> pb.DeleteTopicResult:
    return pb.DeleteTopicResult(
        name=result.name,
        topic_id=uuid_to_bytes(result.topic_id),
        error_code=result.error_code,
        error_message=result.error_message,
    )


def delete_topic_result_from_pb(msg: pb.DeleteTopicResult) -> DeleteTopicResult:
    return DeleteTopicResult(
        name=_opt(msg, "name"),
        topic_id=uuid_from_bytes(msg.topic_id),
        error_code=error_code(msg.error_code),
        error_message=_opt(msg, "error_message"),
    )


def create_partitions_spec_to_pb(spec: CreatePartitionsSpec) -> pb.CreatePartitionsTopic:
    msg = pb.CreatePartitionsTopic(name=spec.name, count=spec.count)
    if spec.assignments is not None:
        # Set even when empty: an empty list is a (wrong) explicit assignment, not "place them".
        msg.assignments.SetInParent()
        msg.assignments.partitions.extend(
            pb.ReplicaList(broker_ids=list(r)) for r in spec.assignments
        )
    return msg


def create_partitions_spec_from_pb(msg: pb.CreatePartitionsTopic) -> CreatePartitionsSpec:
    assignments = (
        tuple(tuple(r.broker_ids) for r in msg.assignments.partitions)
        if msg.HasField("assignments")
        else None
    )
    return CreatePartitionsSpec(name=msg.name, count=msg.count, assignments=assignments)


def create_partitions_result_to_pb(result: CreatePartitionsResult) -> pb.CreatePartitionsResult:
    return pb.CreatePartitionsResult(
        name=result.name, error_code=result.error_code, error_message=result.error_message
    )


def create_partitions_result_from_pb(msg: pb.CreatePartitionsResult) -> CreatePartitionsResult:
    return CreatePartitionsResult(
        name=msg.name,
        error_code=error_code(msg.error_code),
        error_message=_opt(msg, "error_message"),
    )


# ----- configs -----


def alter_configs_resource_to_pb(resource: AlterConfigsResource) -> pb.AlterConfigsResource:
    return pb.AlterConfigsResource(
        resource_type=resource.resource_type,
        resource_name=resource.resource_name,
        configs=_config_values(resource.configs),
    )


def alter_configs_resource_from_pb(msg: pb.AlterConfigsResource) -> AlterConfigsResource:
    return AlterConfigsResource(
        resource_type=msg.resource_type,
        resource_name=msg.resource_name,
        configs=_config_map(msg.configs),
    )


def incremental_resource_to_pb(
    resource: IncrementalAlterConfigsResource,
) -> pb.IncrementalAlterConfigsResource:
    return pb.IncrementalAlterConfigsResource(
        resource_type=resource.resource_type,
        resource_name=resource.resource_name,
        ops=[pb.AlterConfigOp(name=o.name, op=o.op, value=o.value) for o in resource.ops],
    )


def incremental_resource_from_pb(
    msg: pb.IncrementalAlterConfigsResource,
) -> IncrementalAlterConfigsResource:
    return IncrementalAlterConfigsResource(
        resource_type=msg.resource_type,
        resource_name=msg.resource_name,
        ops=tuple(AlterConfigOp(o.name, o.op, _opt(o, "value")) for o in msg.ops),
    )


def alter_configs_result_to_pb(result: AlterConfigsResult) -> pb.AlterConfigsResult:
    return pb.AlterConfigsResult(
        resource_type=result.resource_type,
        resource_name=result.resource_name,
        error_code=result.error_code,
        error_message=result.error_message,
    )


def alter_configs_result_from_pb(msg: pb.AlterConfigsResult) -> AlterConfigsResult:
    return AlterConfigsResult(
        resource_type=msg.resource_type,
        resource_name=msg.resource_name,
        error_code=error_code(msg.error_code),
        error_message=_opt(msg, "error_message"),
    )


# ----- brokers -----


def register_broker_result_to_pb(
    result: RegisterBrokerResult, *, heartbeat_interval_ms: int = 0, session_timeout_ms: int = 0
) -> pb.RegisterBrokerResponse:
    return pb.RegisterBrokerResponse(
        error_code=result.error_code,
        error_message=result.error_message,
        broker_epoch=result.broker_epoch,
        heartbeat_interval_ms=heartbeat_interval_ms,
        session_timeout_ms=session_timeout_ms,
    )


def register_broker_result_from_pb(msg: pb.RegisterBrokerResponse) -> RegisterBrokerResult:
    return RegisterBrokerResult(
        error_code=error_code(msg.error_code),
        error_message=_opt(msg, "error_message"),
        broker_epoch=msg.broker_epoch,
    )


def producer_ids_result_to_pb(result: ProducerIdsResult) -> pb.AllocateProducerIdsResponse:
    return pb.AllocateProducerIdsResponse(
        error_code=result.error_code,
        error_message=result.error_message,
        first_producer_id=result.first_producer_id,
        size=result.size,
    )


def producer_ids_result_from_pb(msg: pb.AllocateProducerIdsResponse) -> ProducerIdsResult:
    return ProducerIdsResult(
        error_code=error_code(msg.error_code),
        error_message=_opt(msg, "error_message"),
        first_producer_id=msg.first_producer_id,
        size=msg.size,
    )


# ----- partitions -----


def alter_partition_item_to_pb(item: AlterPartitionItem) -> pb.AlterPartitionItem:
    return pb.AlterPartitionItem(
        topic_id=item.topic_id.bytes,
        partition=item.partition,
        leader_epoch=item.leader_epoch,
        partition_epoch=item.partition_epoch,
        new_isr=list(item.new_isr),
    )


def alter_partition_item_from_pb(msg: pb.AlterPartitionItem) -> AlterPartitionItem:
    return AlterPartitionItem(
        topic_id=_required_uuid(msg.topic_id),
        partition=msg.partition,
        leader_epoch=msg.leader_epoch,
        partition_epoch=msg.partition_epoch,
        new_isr=tuple(msg.new_isr),
    )


def partition_registration_to_pb(reg: PartitionRegistration) -> pb.PartitionState:
    return pb.PartitionState(
        replicas=list(reg.replicas),
        isr=list(reg.isr),
        leader=reg.leader,
        leader_epoch=reg.leader_epoch,
        partition_epoch=reg.partition_epoch,
        eligible_leader_replicas=list(reg.elr),
        removing_replicas=list(reg.removing),
        adding_replicas=list(reg.adding),
    )


def partition_registration_from_pb(msg: pb.PartitionState) -> PartitionRegistration:
    return PartitionRegistration(
        replicas=tuple(msg.replicas),
        isr=tuple(msg.isr),
        leader=msg.leader,
        leader_epoch=msg.leader_epoch,
        partition_epoch=msg.partition_epoch,
        elr=tuple(msg.eligible_leader_replicas),
        removing=tuple(msg.removing_replicas),
        adding=tuple(msg.adding_replicas),
    )


def alter_partition_result_to_pb(result: AlterPartitionResult) -> pb.AlterPartitionResponse:
    items = []
    for r in result.partitions:
        item = pb.AlterPartitionItemResult(
            topic_id=r.topic_id.bytes,
            partition=r.partition,
            error_code=r.error_code,
            error_message=r.error_message,
        )
        if r.registration is not None:
            item.registration.CopyFrom(partition_registration_to_pb(r.registration))
        items.append(item)
    return pb.AlterPartitionResponse(
        error_code=result.error_code, error_message=result.error_message, partitions=items
    )


def alter_partition_result_from_pb(msg: pb.AlterPartitionResponse) -> AlterPartitionResult:
    return AlterPartitionResult(
        error_code=error_code(msg.error_code),
        error_message=_opt(msg, "error_message"),
        partitions=tuple(
            AlterPartitionItemResult(
                topic_id=_required_uuid(r.topic_id),
                partition=r.partition,
                error_code=error_code(r.error_code),
                error_message=_opt(r, "error_message"),
                registration=partition_registration_from_pb(r.registration)
                if r.HasField("registration")
                else None,
            )
            for r in msg.partitions
        ),
    )


def election_type_from_pb(value: int) -> ElectionType:
    try:
        return ElectionType(value)
    except ValueError:
        raise ConversionError(
            f"unknown election type {value}; 0 is preferred, 1 unclean") from None


def elect_leaders_result_to_pb(result: ElectLeadersResult) -> pb.ElectLeadersResult:
    return pb.ElectLeadersResult(topic=result.topic, partition=result.partition,
                                 error_code=result.error_code,
                                 error_message=result.error_message)


def elect_leaders_result_from_pb(msg: pb.ElectLeadersResult) -> ElectLeadersResult:
    return ElectLeadersResult(msg.topic, msg.partition, error_code(msg.error_code),
                              msg.error_message if msg.HasField("error_message") else None)


# ----- partition reassignments -----


def reassignment_to_pb(r: ReassignmentRequest) -> pb.PartitionReassignment:
    return pb.PartitionReassignment(topic=r.topic, partition=r.partition,
                                    cancel=r.replicas is None, replicas=list(r.replicas or ()))


def reassignment_from_pb(msg: pb.PartitionReassignment) -> ReassignmentRequest:
    return ReassignmentRequest(msg.topic, msg.partition,
                               None if msg.cancel else tuple(msg.replicas))


def reassignment_result_to_pb(r: ReassignmentResult) -> pb.ElectLeadersResult:
    return pb.ElectLeadersResult(topic=r.topic, partition=r.partition,
                                 error_code=r.error_code, error_message=r.error_message)


def reassignment_result_from_pb(msg: pb.ElectLeadersResult) -> ReassignmentResult:
    return ReassignmentResult(msg.topic, msg.partition, error_code(msg.error_code),
                              msg.error_message if msg.HasField("error_message") else None)


# ----- SCRAM credentials -----


def scram_deletion_to_pb(d: ScramCredentialDeletion) -> pb.ScramCredentialDeletion:
    return pb.ScramCredentialDeletion(user=d.user, mechanism=d.mechanism)


def scram_deletion_from_pb(msg: pb.ScramCredentialDeletion) -> ScramCredentialDeletion:
    return ScramCredentialDeletion(msg.user, msg.mechanism)


def scram_upsertion_to_pb(u: ScramCredentialUpsertion) -> pb.ScramCredentialUpsertion:
    return pb.ScramCredentialUpsertion(user=u.user, mechanism=u.mechanism,
                                       iterations=u.iterations, salt=u.salt,
                                       salted_password=u.salted_password)


def scram_upsertion_from_pb(msg: pb.ScramCredentialUpsertion) -> ScramCredentialUpsertion:
    return ScramCredentialUpsertion(msg.user, msg.mechanism, msg.iterations, msg.salt,
                                    msg.salted_password)


def scram_result_to_pb(r: AlterScramCredentialResult) -> pb.AlterUserScramCredentialResult:
    return pb.AlterUserScramCredentialResult(user=r.user, error_code=r.error_code,
                                             error_message=r.error_message)


def scram_result_from_pb(msg: pb.AlterUserScramCredentialResult) -> AlterScramCredentialResult:
    return AlterScramCredentialResult(msg.user, error_code(msg.error_code),
                                      _opt(msg, "error_message"))


# ----- ACLs -----


def acl_to_pb(acl: StandardAcl) -> pb.Acl:
    return pb.Acl(resource_type=acl.resource_type, resource_name=acl.resource_name,
                  pattern_type=acl.pattern_type, principal=acl.principal, host=acl.host,
                  operation=acl.operation, permission_type=acl.permission_type)


def acl_from_pb(msg: pb.Acl) -> StandardAcl:
    return StandardAcl(msg.resource_type, msg.resource_name, msg.pattern_type, msg.principal,
                       msg.host, msg.operation, msg.permission_type)


def acl_filter_to_pb(f: AclFilter) -> pb.AclFilter:
    return pb.AclFilter(resource_type=f.resource_type, resource_name=f.resource_name,
                        pattern_type=f.pattern_type, principal=f.principal, host=f.host,
                        operation=f.operation, permission_type=f.permission_type)


def acl_filter_from_pb(msg: pb.AclFilter) -> AclFilter:
    return AclFilter(msg.resource_type, _opt(msg, "resource_name"), msg.pattern_type,
                     _opt(msg, "principal"), _opt(msg, "host"), msg.operation,
                     msg.permission_type)


def create_acl_result_to_pb(r: CreateAclResult) -> pb.CreateAclResult:
    return pb.CreateAclResult(error_code=r.error_code, error_message=r.error_message)


def create_acl_result_from_pb(msg: pb.CreateAclResult) -> CreateAclResult:
    return CreateAclResult(error_code(msg.error_code), _opt(msg, "error_message"))


def delete_acls_result_to_pb(r: DeleteAclsResult) -> pb.DeleteAclsResult:
    return pb.DeleteAclsResult(error_code=r.error_code, error_message=r.error_message,
                               matching=[acl_to_pb(a) for a in r.matching])


def delete_acls_result_from_pb(msg: pb.DeleteAclsResult) -> DeleteAclsResult:
    return DeleteAclsResult(error_code(msg.error_code), _opt(msg, "error_message"),
                            tuple(acl_from_pb(a) for a in msg.matching))


# ----- client quotas -----


def client_quota_change_to_pb(c: ClientQuotaChange) -> pb.ClientQuotaChange:
    return pb.ClientQuotaChange(
        entity=[mpb.ClientQuotaRecord.EntityData(entity_type=t, entity_name=n)
                for t, n in c.entity], key=c.key, value=c.value)


def client_quota_change_from_pb(msg: pb.ClientQuotaChange) -> ClientQuotaChange:
    entity = entity_key((e.entity_type, e.entity_name if e.HasField("entity_name") else None)
                        for e in msg.entity)
    return ClientQuotaChange(entity, msg.key, msg.value if msg.HasField("value") else None)


def alter_client_quotas_result_to_pb(r: AlterClientQuotasResult
                                     ) -> pb.AlterClientQuotasResponse:
    return pb.AlterClientQuotasResponse(error_code=r.error_code, error_message=r.error_message)


def alter_client_quotas_result_from_pb(msg: pb.AlterClientQuotasResponse
                                       ) -> AlterClientQuotasResult:
    return AlterClientQuotasResult(error_code(msg.error_code), _opt(msg, "error_message"))


# ----- feature levels -----


def feature_update_to_pb(u: FeatureUpdate) -> pb.FeatureUpdate:
    return pb.FeatureUpdate(feature=u.feature, max_version_level=u.max_version_level,
                            upgrade_type=u.upgrade_type)


def feature_update_from_pb(msg: pb.FeatureUpdate) -> FeatureUpdate:
    return FeatureUpdate(msg.feature, msg.max_version_level, msg.upgrade_type)


def update_features_result_to_pb(r: UpdateFeaturesResult) -> pb.UpdateFeaturesResponse:
    return pb.UpdateFeaturesResponse(error_code=r.error_code, error_message=r.error_message)


def update_features_result_from_pb(msg: pb.UpdateFeaturesResponse) -> UpdateFeaturesResult:
    return UpdateFeaturesResult(error_code(msg.error_code), _opt(msg, "error_message"))


# ----- broker decommissioning -----


def broker_result_to_pb(r: BrokerResult) -> pb.UnregisterBrokerResponse:
    return pb.UnregisterBrokerResponse(error_code=r.error_code, error_message=r.error_message)


def broker_result_from_pb(msg: pb.UnregisterBrokerResponse) -> BrokerResult:
    return BrokerResult(error_code(msg.error_code), _opt(msg, "error_message"))

"""controller.proto <-> api.py conversions: every request and result survives the wire."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.message import Message
from kio.schema.errors import ErrorCode

from odradek.controller.metadata import Listener, PartitionRegistration
from odradek.controller.metadata.requests import (
    AlterConfigOp,
    AlterConfigsResource,
    AlterConfigsResult,
    AlterPartitionItem,
    AlterPartitionItemResult,
    AlterPartitionResult,
    BrokerResult,
    CreatePartitionsResult,
    CreatePartitionsSpec,
    CreateTopicResult,
    CreateTopicSpec,
    DeleteTopicResult,
    DeleteTopicSpec,
    ElectLeadersResult,
    IncrementalAlterConfigsResource,
    ProducerIdsResult,
    ReassignmentRequest,
    ReassignmentResult,
    RegisterBrokerResult,
)
from odradek.controller.rpc import controller_pb2 as pb
from odradek.controller.service import convert

TID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def wire(to_pb: Callable[[Any], Message], from_pb: Callable[[Any], Any], value: Any) -> Any:
    """value -> message -> bytes -> message -> value."""
    msg = to_pb(value)
    return from_pb(type(msg).FromString(msg.SerializeToString()))


CASES: list[tuple[str, Callable[[Any], Message], Callable[[Any], Any], Any]] = [
    ("topic spec, defaults", convert.create_topic_spec_to_pb, convert.create_topic_spec_from_pb,
     CreateTopicSpec("t")),
    ("topic spec, full", convert.create_topic_spec_to_pb, convert.create_topic_spec_from_pb,
     CreateTopicSpec("t", 3, 2, {}, {"retention.ms": "1", "null.one": None, "empty": ""})),
    ("topic spec, assignments", convert.create_topic_spec_to_pb,
     convert.create_topic_spec_from_pb,
     CreateTopicSpec("t", assignments={0: (1, 2), 2: (3,), 1: ()})),
    ("topic result, ok", convert.create_topic_result_to_pb, convert.create_topic_result_from_pb,
     CreateTopicResult("t", ErrorCode.none, None, TID, 3, 2, {"retention.ms": "1"})),
    ("topic result, error", convert.create_topic_result_to_pb,
     convert.create_topic_result_from_pb,
     CreateTopicResult("t", ErrorCode.invalid_replication_factor, "too few brokers")),
    ("topic result, empty message", convert.create_topic_result_to_pb,
     convert.create_topic_result_from_pb, CreateTopicResult("t", ErrorCode.invalid_config, "")),
    ("delete by name", convert.delete_topic_spec_to_pb, convert.delete_topic_spec_from_pb,
     DeleteTopicSpec(name="t")),
    ("delete by id", convert.delete_topic_spec_to_pb, convert.delete_topic_spec_from_pb,
     DeleteTopicSpec(topic_id=TID)),
    ("delete by neither", convert.delete_topic_spec_to_pb, convert.delete_topic_spec_from_pb,
     DeleteTopicSpec()),
    ("delete by empty name", convert.delete_topic_spec_to_pb, convert.delete_topic_spec_from_pb,
     DeleteTopicSpec(name="")),
    ("delete result", convert.delete_topic_result_to_pb, convert.delete_topic_result_from_pb,
     DeleteTopicResult("t", TID, ErrorCode.none)),
    ("delete result, unknown", convert.delete_topic_result_to_pb,
     convert.delete_topic_result_from_pb,
     DeleteTopicResult(None, TID, ErrorCode.unknown_topic_id, "no such topic")),
    ("partitions, placed", convert.create_partitions_spec_to_pb,
     convert.create_partitions_spec_from_pb, CreatePartitionsSpec("t", 4)),
    ("partitions, assigned", convert.create_partitions_spec_to_pb,
     convert.create_partitions_spec_from_pb, CreatePartitionsSpec("t", 4, ((1, 2), (2, 3)))),
    # An empty explicit assignment is not "no assignment": the controller must see it.
    ("partitions, empty assignment", convert.create_partitions_spec_to_pb,
     convert.create_partitions_spec_from_pb, CreatePartitionsSpec("t", 4, ())),
    ("partitions result", convert.create_partitions_result_to_pb,
     convert.create_partitions_result_from_pb,
     CreatePartitionsResult("t", ErrorCode.invalid_partitions, "cannot shrink")),
    ("alter configs", convert.alter_configs_resource_to_pb,
     convert.alter_configs_resource_from_pb,
     AlterConfigsResource(2, "t", {"a": "1", "b": None})),
    ("incremental", convert.incremental_resource_to_pb, convert.incremental_resource_from_pb,
     IncrementalAlterConfigsResource(4, "1", (AlterConfigOp("a", 0, "1"), AlterConfigOp("b", 1),
                                              AlterConfigOp("c", 2, ""), AlterConfigOp("d", 3)))),
    ("configs result", convert.alter_configs_result_to_pb, convert.alter_configs_result_from_pb,
     AlterConfigsResult(2, "t", ErrorCode.policy_violation, "no")),
    ("register result", convert.register_broker_result_to_pb,
     convert.register_broker_result_from_pb, RegisterBrokerResult(ErrorCode.none, None, 42)),
    ("register result, error", convert.register_broker_result_to_pb,
     convert.register_broker_result_from_pb,
     RegisterBrokerResult(ErrorCode.duplicate_broker_registration, "still live")),
    ("producer ids", convert.producer_ids_result_to_pb, convert.producer_ids_result_from_pb,
     ProducerIdsResult(ErrorCode.none, None, 2**40, 1000)),
    ("producer ids, error", convert.producer_ids_result_to_pb,
     convert.producer_ids_result_from_pb, ProducerIdsResult(ErrorCode.stale_broker_epoch, "old")),
    ("alter partition item", convert.alter_partition_item_to_pb,
     convert.alter_partition_item_from_pb, AlterPartitionItem(TID, 3, 5, 9, (1, 2))),
    ("alter partition item, empty isr", convert.alter_partition_item_to_pb,
     convert.alter_partition_item_from_pb, AlterPartitionItem(TID, 0, 0, 0, ())),
    ("alter partition result", convert.alter_partition_result_to_pb,
     convert.alter_partition_result_from_pb,
     AlterPartitionResult(ErrorCode.none, None, (
         AlterPartitionItemResult(TID, 0, ErrorCode.none, None,
                                  PartitionRegistration((1, 2, 3), (1, 2), 1, 4, 7)),
         AlterPartitionItemResult(TID, 1, ErrorCode.fenced_leader_epoch, "stale", None),
         AlterPartitionItemResult(TID, 2, ErrorCode.none, None,
                                  PartitionRegistration((1,), (), -1, 0, 0)),
         AlterPartitionItemResult(TID, 3, ErrorCode.none, None,
                                  PartitionRegistration((1, 2, 3), (1,), 1, 2, 5, (2, 3))),
     ))),
    ("elect leaders result", convert.elect_leaders_result_to_pb,
     convert.elect_leaders_result_from_pb, ElectLeadersResult("t", 3, ErrorCode.none)),
    ("elect leaders result, error", convert.elect_leaders_result_to_pb,
     convert.elect_leaders_result_from_pb,
     ElectLeadersResult("t", 0, ErrorCode.preferred_leader_not_available, "not in the ISR")),
    ("alter partition result, request error", convert.alter_partition_result_to_pb,
     convert.alter_partition_result_from_pb,
     AlterPartitionResult(ErrorCode.stale_broker_epoch, "old epoch")),
    ("unregister broker result", convert.broker_result_to_pb, convert.broker_result_from_pb,
     BrokerResult(ErrorCode.none)),
    ("unregister broker result, error", convert.broker_result_to_pb,
     convert.broker_result_from_pb,
     BrokerResult(ErrorCode.broker_id_not_registered, "Broker 7 is not registered")),
]


@pytest.mark.parametrize(("to_pb", "from_pb", "value"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_round_trip(to_pb: Callable[[Any], Message], from_pb: Callable[[Any], Any],
                    value: Any) -> None:
    back = wire(to_pb, from_pb, value)
    assert back == value
    for name in ("error_code",):
        if hasattr(value, name):
            # The controller's results hold kio's ErrorCode; so must the client's.
            assert type(getattr(back, name)) is ErrorCode


def test_listeners_from_values_and_tuples() -> None:
    for given in (Listener("PLAINTEXT", "h", 9092), ("PLAINTEXT", "h", 9092)):
        msg = convert.listener_to_pb(given)
        assert convert.listener_from_pb(msg) == Listener("PLAINTEXT", "h", 9092)


def test_unknown_error_codes_stay_numbers() -> None:
    result = convert.create_topic_result_from_pb(pb.CreateTopicResult(name="t", error_code=9999))
    assert result.error_code == 9999


@pytest.mark.parametrize("bad", [b"\x01" * 15, b"\x01" * 17])
def test_malformed_topic_ids_are_refused(bad: bytes) -> None:
    with pytest.raises(convert.ConversionError, match="16 bytes"):
        convert.delete_topic_spec_from_pb(pb.TopicRef(topic_id=bad))
    with pytest.raises(convert.ConversionError):
        convert.alter_partition_item_from_pb(pb.AlterPartitionItem(topic_id=bad))


def test_alter_partition_needs_a_topic_id() -> None:
    with pytest.raises(convert.ConversionError, match="required"):
        convert.alter_partition_item_from_pb(pb.AlterPartitionItem(partition=1))


def test_duplicate_partition_assignments_are_refused() -> None:
    msg = pb.CreatableTopic(name="t", assignments=[
        pb.ReplicaAssignment(partition=0, replicas=[1]),
        pb.ReplicaAssignment(partition=0, replicas=[2])])
    with pytest.raises(convert.ConversionError, match="assigned twice"):
        convert.create_topic_spec_from_pb(msg)


def test_reassignments_round_trip() -> None:
    for req in (ReassignmentRequest("t", 3, (4, 2)), ReassignmentRequest("t", 0, None),
                ReassignmentRequest("t", 1, ())):
        assert convert.reassignment_from_pb(convert.reassignment_to_pb(req)) == req
    result = ReassignmentResult("t", 2, ErrorCode.no_reassignment_in_progress, "none")
    assert convert.reassignment_result_from_pb(
        convert.reassignment_result_to_pb(result)) == result


def test_partition_state_keeps_a_reassignment() -> None:
    reg = PartitionRegistration((2, 3, 4, 1), (1, 2, 3), 1, 4, 7, removing=(1,), adding=(4,))
    assert convert.partition_registration_from_pb(
        convert.partition_registration_to_pb(reg)) == reg


def test_every_rpc_has_its_conversions() -> None:
    """A new RPC in controller.proto needs a client method and servicer handler."""
    from odradek.controller.client import ControllerClient
    from odradek.controller.rpc import controller_pb2_grpc as pb_grpc
    from odradek.controller.service import ControllerService

    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["Controller"].methods}
    for name in methods:
        assert getattr(ControllerService, name) is not getattr(pb_grpc.ControllerServicer, name)
    client_names = {
        "RegisterBroker": "register", "BrokerHeartbeat": "heartbeat",
        "FetchMetadata": "fetch_metadata", "CreateTopics": "create_topics",
        "DeleteTopics": "delete_topics", "CreatePartitions": "create_partitions",
        "AlterConfigs": "alter_configs", "IncrementalAlterConfigs": "incremental_alter_configs",
        "AlterPartition": "alter_partition", "AllocateProducerIds": "allocate_producer_ids",
        "ElectLeaders": "elect_leaders", "BrokerLiveness": "hold_liveness",
        "AlterUserScramCredentials": "alter_user_scram_credentials",
        "CreateAcls": "create_acls", "DeleteAcls": "delete_acls",
        "AlterClientQuotas": "alter_client_quotas", "UpdateFeatures": "update_features",
        "UnregisterBroker": "unregister_broker",
        "AlterPartitionReassignments": "alter_partition_reassignments",
    }
    assert set(client_names) == methods
    for name in client_names.values():
        assert callable(getattr(ControllerClient, name))


@pytest.mark.parametrize("name", [
    "create_topics", "delete_topics", "create_partitions", "alter_configs",
    "incremental_alter_configs", "allocate_producer_ids", "alter_partition", "register_broker",
    "elect_leaders", "alter_user_scram_credentials", "create_acls", "delete_acls",
    "alter_client_quotas", "update_features", "unregister_broker",
])
def test_client_mirrors_the_controller(name: str) -> None:
    """Broker code may hold either object, so calls must bind the same way on both."""
    import inspect

    from odradek.controller.client import ControllerClient
    from odradek.controller.quorum import QuorumController

    ours = inspect.signature(getattr(ControllerClient, name))
    theirs = inspect.signature(getattr(QuorumController, name))
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()]
    assert ours.return_annotation == theirs.return_annotation
    assert inspect.iscoroutinefunction(getattr(ControllerClient, name))

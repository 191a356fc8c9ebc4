"""AlterConfigs (legacy, replaces the whole set) and IncrementalAlterConfigs.

Topic resources hold topic overrides. BROKER resources hold dynamic broker configs (KIP-226):
resource name "" is the cluster-wide default, a broker id that broker's own values; the keys
that may change, and their values, are checked against controller/metadata/broker_configs.py.
As in Kafka, a broker id need not be registered (a broker added later picks its values up).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    MetadataImage,
    MetadataRecord,
)
from odradek.controller.metadata.broker_configs import DYNAMIC_BROKER_KEYS_BY_NAME, refusal
from odradek.controller.metadata.records import config_record, partition_change_record
from odradek.controller.metadata.requests import (
    AlterConfigOp,
    AlterConfigOpType,
    AlterConfigsResource,
    AlterConfigsResult,
    IncrementalAlterConfigsResource,
)
from odradek.controller.quorum.api import NONE, ApiError, OpResult
from odradek.controller.quorum.topic_configs import (
    list_config_items,
    min_insync_replicas,
    validate_topic_configs,
)

Resource = AlterConfigsResource | IncrementalAlterConfigsResource


def _check_resource(image: MetadataImage, resource: Resource) -> None:
    if resource.resource_type == TOPIC_RESOURCE:
        if resource.resource_name not in image.topics:
            raise ApiError(
                ErrorCode.unknown_topic_or_partition,
                f"Topic {resource.resource_name!r} does not exist.",
            )
    elif resource.resource_type == BROKER_RESOURCE:
        name = resource.resource_name
        if name and not name.isdigit():
            raise ApiError(
                ErrorCode.invalid_request,
                f"Broker config resource name must be a broker id, or empty for the cluster-wide "
                f"default; got {name!r}.",
            )
    else:
        raise ApiError(
            ErrorCode.invalid_request,
            f"Config resource type {resource.resource_type} is not supported; only TOPIC "
            f"({TOPIC_RESOURCE}) and BROKER ({BROKER_RESOURCE}) are.",
        )


def _diff(
    resource_type: int, resource_name: str, old: Mapping[str, str], new: Mapping[str, str]
) -> list[MetadataRecord]:
    records = [
        config_record(resource_type, resource_name, key, value)
        for key, value in sorted(new.items())
        if old.get(key) != value
    ]
    records.extend(
        config_record(resource_type, resource_name, key, None)
        for key in sorted(old)
        if key not in new
    )
    return records


def _elr_changes(
    image: MetadataImage, topic: str, old: Mapping[str, str], new: Mapping[str, str]
) -> list[MetadataRecord]:
    """A lower min.insync.replicas can let the high watermark move on with the ISR alone:
    where the ISR now reaches it, the ELR members stop being sure to hold every committed
    record, so they leave the ELR in the same batch as the config change."""
    min_isr = min_insync_replicas(new)
    if min_isr == min_insync_replicas(old):
        return []
    image_topic = image.topics[topic]
    return [
        partition_change_record(image_topic.topic_id, partition_id, elr=())
        for partition_id, partition in sorted(image_topic.partitions.items())
        if partition.elr and len(partition.isr) >= min_isr
    ]


def _alter(
    image: MetadataImage,
    resources: Sequence[Resource],
    new_configs: Callable[[Mapping[str, str], Any], dict[str, str]],
    validate_only: bool,
) -> OpResult[list[AlterConfigsResult]]:
    """`new_configs(old, resource)` computes a topic's whole new set of overrides."""
    counts = Counter((r.resource_type, r.resource_name) for r in resources)
    records: list[MetadataRecord] = []
    results: list[AlterConfigsResult] = []
    for resource in resources:
        try:
            if counts[(resource.resource_type, resource.resource_name)] > 1:
                raise ApiError(
                    ErrorCode.invalid_request,
                    f"Config resource {resource.resource_type}/{resource.resource_name!r} "
                    "appears more than once in the request.",
                )
            _check_resource(image, resource)
            if resource.resource_type == TOPIC_RESOURCE:
                old = image.topic_configs(resource.resource_name)
                new = new_configs(old, resource)
                validate_topic_configs(new)
                records.extend(_diff(TOPIC_RESOURCE, resource.resource_name, old, new))
                records.extend(_elr_changes(image, resource.resource_name, old, new))
            else:
                old = image.configs.get((BROKER_RESOURCE, resource.resource_name), {})
                _check_broker_keys(resource)
                new = new_configs(old, resource)
                records.extend(_diff(BROKER_RESOURCE, resource.resource_name, old, new))
        except ApiError as err:
            results.append(
                AlterConfigsResult(
                    resource.resource_type, resource.resource_name, err.code, err.message
                )
            )
            continue
        results.append(AlterConfigsResult(resource.resource_type, resource.resource_name, NONE))
    return OpResult(() if validate_only else tuple(records), results)


def _check_broker_keys(resource: Resource) -> None:
    """Kafka checks broker config changes before applying them and answers INVALID_REQUEST
    (KAFKA-13609) naming the key: not dynamically updatable, wrong level, bad value."""
    per_broker = resource.resource_name != ""
    if isinstance(resource, AlterConfigsResource):
        changes = list(resource.configs.items())
    else:
        changes = [(op.name, None if op.op == AlterConfigOpType.DELETE else op.value)
                   for op in resource.ops]
    for name, value in changes:
        if value is None and (isinstance(resource, AlterConfigsResource)
                              or name not in DYNAMIC_BROKER_KEYS_BY_NAME):
            continue  # a null value is refused below; deleting an unknown key does nothing
        reason = refusal(name, value, per_broker)
        if reason is not None:
            raise ApiError(ErrorCode.invalid_request, reason)


def _replace(old: Mapping[str, str], resource: AlterConfigsResource) -> dict[str, str]:
    new: dict[str, str] = {}
    for key, value in resource.configs.items():
        if value is None:
            raise ApiError(
                ErrorCode.invalid_request,
                f"Null value not supported for config {key!r}; leave the key out to remove it.",
            )
        new[key] = value
    return new


def _apply_ops(old: Mapping[str, str], resource: IncrementalAlterConfigsResource) -> dict[str, str]:
    is_topic = resource.resource_type == TOPIC_RESOURCE
    names = Counter(op.name for op in resource.ops)
    new = dict(old)
    for op in resource.ops:
        if names[op.name] > 1:
            raise ApiError(
                ErrorCode.invalid_request,
                f"Config {op.name!r} is changed more than once in one request.",
            )
        _apply_op(new, op, is_topic)
    return new


def _apply_op(configs: dict[str, str], op: AlterConfigOp, is_topic: bool) -> None:
    if op.op == AlterConfigOpType.DELETE:
        configs.pop(op.name, None)
        return
    if op.op not in tuple(AlterConfigOpType):
        raise ApiError(
            ErrorCode.invalid_request,
            f"Unknown config operation {op.op} for {op.name!r}; use SET (0), DELETE (1), "
            "APPEND (2) or SUBTRACT (3).",
        )
    if op.value is None:
        raise ApiError(
            ErrorCode.invalid_request,
            f"Null value not supported for {AlterConfigOpType(op.op).name} of {op.name!r}.",
        )
    if op.op == AlterConfigOpType.SET:
        configs[op.name] = op.value
        return
    # No dynamic broker config is a list (Kafka's max.connections.per.ip.overrides is a
    # STRING), so APPEND and SUBTRACT apply to topic configs only.
    items = list_config_items(op.name, configs.get(op.name)) if is_topic else None
    if items is None:
        raise ApiError(
            ErrorCode.invalid_config,
            f"Config {op.name!r} is not a list, so {AlterConfigOpType(op.op).name} cannot be "
            "applied to it; use SET.",
        )
    given = [part.strip() for part in op.value.split(",") if part.strip()]
    if op.op == AlterConfigOpType.APPEND:
        items += [item for item in given if item not in items]
    else:
        items = [item for item in items if item not in given]
    configs[op.name] = ",".join(items)


def alter_configs(
    image: MetadataImage, resources: Sequence[AlterConfigsResource], validate_only: bool = False
) -> OpResult[list[AlterConfigsResult]]:
    return _alter(image, resources, _replace, validate_only)


def incremental_alter_configs(
    image: MetadataImage,
    resources: Sequence[IncrementalAlterConfigsResource],
    validate_only: bool = False,
) -> OpResult[list[AlterConfigsResult]]:
    return _alter(image, resources, _apply_ops, validate_only)

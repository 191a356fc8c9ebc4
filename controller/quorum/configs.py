"""AlterConfigs (legacy, replaces the whole set) and IncrementalAlterConfigs.

Only topic configs can change. Broker resources are accepted by the records and the image (so
logs written by later versions with dynamic broker configs still replay) but changes to them
are refused until dynamic broker configs exist.
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


def _check_resource(image: MetadataImage, resource: Resource, has_changes: bool) -> None:
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
        if has_changes:
            raise ApiError(
                ErrorCode.invalid_request,
                "Dynamic broker configs are not supported yet: set broker configs in the "
                "node's config file and restart the node.",
            )
    else:
        raise ApiError(
            ErrorCode.invalid_request,
            f"Config resource type {resource.resource_type} is not supported; only TOPIC "
            f"({TOPIC_RESOURCE}) and BROKER ({BROKER_RESOURCE}) are.",
        )


def _diff(
    resource_name: str, old: Mapping[str, str], new: Mapping[str, str]
) -> list[MetadataRecord]:
    records = [
        config_record(TOPIC_RESOURCE, resource_name, key, value)
        for key, value in sorted(new.items())
        if old.get(key) != value
    ]
    records.extend(
        config_record(TOPIC_RESOURCE, resource_name, key, None)
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
            changes = (
                resource.configs if isinstance(resource, AlterConfigsResource) else resource.ops
            )
            _check_resource(image, resource, has_changes=bool(changes))
            if resource.resource_type == TOPIC_RESOURCE:
                old = image.topic_configs(resource.resource_name)
                new = new_configs(old, resource)
                validate_topic_configs(new)
                records.extend(_diff(resource.resource_name, old, new))
                records.extend(_elr_changes(image, resource.resource_name, old, new))
        except ApiError as err:
            results.append(
                AlterConfigsResult(
                    resource.resource_type, resource.resource_name, err.code, err.message
                )
            )
            continue
        results.append(AlterConfigsResult(resource.resource_type, resource.resource_name, NONE))
    return OpResult(() if validate_only else tuple(records), results)


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
    names = Counter(op.name for op in resource.ops)
    new = dict(old)
    for op in resource.ops:
        if names[op.name] > 1:
            raise ApiError(
                ErrorCode.invalid_request,
                f"Config {op.name!r} is changed more than once in one request.",
            )
        _apply_op(new, op)
    return new


def _apply_op(configs: dict[str, str], op: AlterConfigOp) -> None:
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
    items = list_config_items(op.name, configs.get(op.name))
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

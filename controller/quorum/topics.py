"""Topic operations: create, delete, add partitions.

Each operation is a pure function `(image, request) -> OpResult(records, results)`; requests
naming several topics are answered item by item, and an error on one item does not stop the
others, as in Kafka.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    MetadataImage,
    MetadataRecord,
    TopicImage,
)
from odradek.controller.metadata.broker_configs import effective_cluster_default
from odradek.controller.metadata.names import collision_key, topic_name_error
from odradek.controller.metadata.records import (
    config_record,
    partition_record,
    remove_topic_record,
    topic_record,
)
from odradek.controller.metadata.requests import (
    CreatePartitionsResult,
    CreatePartitionsSpec,
    CreateTopicResult,
    CreateTopicSpec,
    DeleteTopicResult,
    DeleteTopicSpec,
)
from odradek.controller.quorum.api import NONE, ApiError, ControllerSettings, OpResult
from odradek.controller.quorum.placement import PlacementBroker, place_partitions
from odradek.controller.quorum.topic_configs import MIN_INSYNC_REPLICAS, validate_topic_configs


def usable_brokers(image: MetadataImage) -> list[PlacementBroker]:
    return [PlacementBroker(b.id, b.rack) for b in image.brokers.values() if b.usable]


def new_topic_id(rng: random.Random, taken: Callable[[uuid.UUID], bool]) -> uuid.UUID:
    while True:
        topic_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        # Kafka reserves the all-zero id to mean "no id".
        if topic_id.int != 0 and not taken(topic_id):
            return topic_id


def _duplicates(keys: Sequence[object]) -> set[object]:
    return {key for key, count in Counter(keys).items() if count > 1}


def _check_assignment(
    image: MetadataImage, partition_id: int, replicas: Sequence[int], expected_rf: int | None
) -> tuple[int, ...]:
    where = f"The manual partition assignment for partition {partition_id}"
    if not replicas:
        raise ApiError(ErrorCode.invalid_replica_assignment, f"{where} is an empty replica list.")
    for broker_id, count in Counter(replicas).items():
        if count > 1:
            raise ApiError(
                ErrorCode.invalid_replica_assignment,
                f"{where} names broker {broker_id} more than once.",
            )
        if broker_id not in image.brokers:
            raise ApiError(
                ErrorCode.invalid_replica_assignment,
                f"{where} includes broker {broker_id}, but no such broker is registered.",
            )
    if expected_rf is not None and len(replicas) != expected_rf:
        raise ApiError(
            ErrorCode.invalid_replica_assignment,
            f"{where} has {len(replicas)} replica(s), but the topic's other partitions have "
            f"{expected_rf}: all partitions of a topic need the same replication factor.",
        )
    if not any(image.is_usable(b) for b in replicas):
        raise ApiError(
            ErrorCode.invalid_replica_assignment,
            f"{where} lists only fenced brokers {list(replicas)}; include at least one live broker.",
        )
    return tuple(replicas)


def _partition_records(
    image: MetadataImage, topic_id: uuid.UUID, first_id: int, placements: Sequence[Sequence[int]]
) -> list[MetadataRecord]:
    records = []
    for offset, replicas in enumerate(placements):
        # Fenced brokers named in a manual assignment start outside the ISR; they join once
        # they are back and caught up.
        isr = [b for b in replicas if image.is_usable(b)]
        records.append(partition_record(topic_id, first_id + offset, replicas, isr, isr[0]))
    return records


def _check_replication_factor(
    rf: int, usable: Sequence[PlacementBroker], default: int | None = None
) -> None:
    if rf < 1:
        allowed = f", or -1 to use the default ({default})" if default is not None else ""
        raise ApiError(
            ErrorCode.invalid_replication_factor,
            f"Replication factor must be larger than 0{allowed}; got {rf}.",
        )
    if rf > len(usable):
        raise ApiError(
            ErrorCode.invalid_replication_factor,
            f"Unable to replicate the partition {rf} time(s): the target replication factor of "
            f"{rf} cannot be reached because only {len(usable)} broker(s) are registered and "
            "unfenced.",
        )


def _check_partition_budget(count: int, used: int, settings: ControllerSettings) -> None:
    if used + count > settings.max_partitions_per_request:
        raise ApiError(
            ErrorCode.invalid_partitions,
            f"Creating {count} partition(s) would exceed the limit of "
            f"{settings.max_partitions_per_request} new partitions per request; "
            "split the request.",
        )


def with_dynamic_defaults(settings: ControllerSettings, image: MetadataImage) -> ControllerSettings:
    """The controller's defaults for a request's -1, with the cluster-wide dynamic broker
    configs (BROKER resource "") over the controller's config file."""
    dynamic = image.configs.get((BROKER_RESOURCE, ""), {})
    partitions = effective_cluster_default(dynamic, "num.partitions")
    rf = effective_cluster_default(dynamic, "default.replication.factor")
    if partitions is None and rf is None:
        return settings
    return dataclasses.replace(
        settings,
        default_num_partitions=(settings.default_num_partitions if partitions is None
                                else int(partitions)),
        default_replication_factor=settings.default_replication_factor if rf is None else int(rf),
    )


def create_topics(
    image: MetadataImage,
    specs: Sequence[CreateTopicSpec],
    *,
    settings: ControllerSettings,
    rng: random.Random,
    validate_only: bool = False,
) -> OpResult[list[CreateTopicResult]]:
    settings = with_dynamic_defaults(settings, image)
    duplicates = _duplicates([spec.name for spec in specs])
    # Collision keys of existing topics and of topics created earlier in this request.
    claimed = {collision_key(name): name for name in image.topics}
    new_ids: set[uuid.UUID] = set()
    usable = usable_brokers(image)
    records: list[MetadataRecord] = []
    results: list[CreateTopicResult] = []
    partitions_used = 0
    for spec in specs:
        try:
            if spec.name in duplicates:
                raise ApiError(
                    ErrorCode.invalid_request,
                    f"Topic {spec.name!r} appears more than once in the request.",
                )
            topic_records, result = _create_topic(
                image, spec, settings, rng, claimed, usable, partitions_used,
                lambda tid: tid in image.topics_by_id or tid in new_ids,
            )
        except ApiError as err:
            results.append(CreateTopicResult(spec.name, err.code, err.message))
            continue
        claimed[collision_key(spec.name)] = spec.name
        assert result.topic_id is not None
        new_ids.add(result.topic_id)
        partitions_used += result.num_partitions
        records.extend(topic_records)
        results.append(result)
    return OpResult(() if validate_only else tuple(records), results)


def _create_topic(
    image: MetadataImage,
    spec: CreateTopicSpec,
    settings: ControllerSettings,
    rng: random.Random,
    claimed: dict[str, str],
    usable: Sequence[PlacementBroker],
    partitions_used: int,
    id_taken: Callable[[uuid.UUID], bool],
) -> tuple[list[MetadataRecord], CreateTopicResult]:
    name = spec.name
    name_error = topic_name_error(name)
    if name_error is not None:
        raise ApiError(ErrorCode.invalid_topic_exception, name_error)
    if name in image.topics:
        raise ApiError(ErrorCode.topic_already_exists, f"Topic {name!r} already exists.")
    other = claimed.get(collision_key(name))
    if other is not None and other != name:
        raise ApiError(
            ErrorCode.invalid_topic_exception,
            f"Topic {name!r} collides with existing topic {other!r}: names that differ only "
            "in '.' versus '_' cannot both exist.",
        )

    configs: dict[str, str] = {}
    for key, value in spec.configs.items():
        if value is None:
            raise ApiError(
                ErrorCode.invalid_config,
                f"Null value not supported for topic config {key!r}; omit the key to use "
                "the default.",
            )
        configs[key] = value
    validate_topic_configs(configs)

    if spec.assignments:
        if spec.num_partitions != -1 or spec.replication_factor != -1:
            raise ApiError(
                ErrorCode.invalid_request,
                "A manual replica assignment was given together with num_partitions or "
                "replication_factor; set those to -1 when assigning replicas.",
            )
        ids = sorted(spec.assignments)
        if ids != list(range(len(ids))):
            raise ApiError(
                ErrorCode.invalid_replica_assignment,
                f"The manual partition assignment names partitions {ids}; it must name "
                f"partitions 0 to {len(ids) - 1} without gaps.",
            )
        _check_partition_budget(len(ids), partitions_used, settings)
        expected_rf = len(spec.assignments[0])
        placements = [
            _check_assignment(image, pid, spec.assignments[pid], expected_rf) for pid in ids
        ]
        num_partitions, rf = len(ids), expected_rf
    else:
        num_partitions = spec.num_partitions
        if num_partitions == -1:
            num_partitions = settings.default_num_partitions
        elif num_partitions < 1:
            raise ApiError(
                ErrorCode.invalid_partitions,
                f"Number of partitions must be larger than 0, or -1 to use the default "
                f"({settings.default_num_partitions}); got {num_partitions}.",
            )
        _check_partition_budget(num_partitions, partitions_used, settings)
        rf = spec.replication_factor
        if rf == -1:
            rf = settings.default_replication_factor
        _check_replication_factor(rf, usable, settings.default_replication_factor)
        placements = place_partitions(usable, num_partitions, rf, rng)
    if settings.default_min_insync_replicas > 1 and MIN_INSYNC_REPLICAS not in configs:
        configs[MIN_INSYNC_REPLICAS] = str(max(1, min(settings.default_min_insync_replicas, rf)))

    topic_id = new_topic_id(rng, id_taken)
    records = [topic_record(name, topic_id)]
    records.extend(_partition_records(image, topic_id, 0, placements))
    records.extend(
        config_record(TOPIC_RESOURCE, name, key, value) for key, value in sorted(configs.items())
    )
    return records, CreateTopicResult(
        name=name,
        error_code=NONE,
        topic_id=topic_id,
        num_partitions=num_partitions,
        replication_factor=rf,
        configs=configs,
    )


def _resolve(image: MetadataImage, spec: DeleteTopicSpec) -> TopicImage:
    if (spec.name is None) == (spec.topic_id is None):
        raise ApiError(
            ErrorCode.invalid_request,
            "Name the topic to delete either by name or by topic id, not both or neither.",
        )
    if spec.topic_id is not None:
        topic = image.topics_by_id.get(spec.topic_id)
        if topic is None:
            raise ApiError(ErrorCode.unknown_topic_id, f"Topic id {spec.topic_id} does not exist.")
        return topic
    assert spec.name is not None
    topic = image.topics.get(spec.name)
    if topic is None:
        raise ApiError(
            ErrorCode.unknown_topic_or_partition, f"Topic {spec.name!r} does not exist."
        )
    return topic


def delete_topics(
    image: MetadataImage, specs: Sequence[DeleteTopicSpec]
) -> OpResult[list[DeleteTopicResult]]:
    resolved: list[TopicImage | ApiError] = []
    for spec in specs:
        try:
            resolved.append(_resolve(image, spec))
        except ApiError as err:
            resolved.append(err)
    duplicates = _duplicates([t.topic_id for t in resolved if isinstance(t, TopicImage)])
    records: list[MetadataRecord] = []
    results: list[DeleteTopicResult] = []
    for spec, topic in zip(specs, resolved, strict=True):
        if isinstance(topic, ApiError):
            results.append(DeleteTopicResult(spec.name, spec.topic_id, topic.code, topic.message))
        elif topic.topic_id in duplicates:
            results.append(
                DeleteTopicResult(
                    topic.name,
                    topic.topic_id,
                    ErrorCode.invalid_request,
                    f"Topic {topic.name!r} is named more than once in the request.",
                )
            )
        else:
            records.append(remove_topic_record(topic.topic_id))
            results.append(DeleteTopicResult(topic.name, topic.topic_id, NONE))
    return OpResult(tuple(records), results)


def create_partitions(
    image: MetadataImage,
    specs: Sequence[CreatePartitionsSpec],
    *,
    settings: ControllerSettings,
    rng: random.Random,
    validate_only: bool = False,
) -> OpResult[list[CreatePartitionsResult]]:
    duplicates = _duplicates([spec.name for spec in specs])
    usable = usable_brokers(image)
    records: list[MetadataRecord] = []
    results: list[CreatePartitionsResult] = []
    partitions_used = 0
    for spec in specs:
        try:
            if spec.name in duplicates:
                raise ApiError(
                    ErrorCode.invalid_request,
                    f"Topic {spec.name!r} appears more than once in the request.",
                )
            new_records = _create_partitions(image, spec, settings, rng, usable, partitions_used)
        except ApiError as err:
            results.append(CreatePartitionsResult(spec.name, err.code, err.message))
            continue
        partitions_used += len(new_records)
        records.extend(new_records)
        results.append(CreatePartitionsResult(spec.name, NONE))
    return OpResult(() if validate_only else tuple(records), results)


def _create_partitions(
    image: MetadataImage,
    spec: CreatePartitionsSpec,
    settings: ControllerSettings,
    rng: random.Random,
    usable: Sequence[PlacementBroker],
    partitions_used: int,
) -> list[MetadataRecord]:
    topic = image.topics.get(spec.name)
    if topic is None:
        raise ApiError(ErrorCode.unknown_topic_or_partition, f"Topic {spec.name!r} does not exist.")
    current = len(topic.partitions)
    if spec.count < current:
        raise ApiError(
            ErrorCode.invalid_partitions,
            f"Topic {spec.name!r} has {current} partition(s); {spec.count} would not be an "
            "increase, and partitions cannot be removed.",
        )
    if spec.count == current:
        raise ApiError(
            ErrorCode.invalid_partitions,
            f"Topic {spec.name!r} already has {current} partition(s); ask for more.",
        )
    added = spec.count - current
    _check_partition_budget(added, partitions_used, settings)
    rf = topic.replication_factor
    if spec.assignments is not None:
        if len(spec.assignments) != added:
            raise ApiError(
                ErrorCode.invalid_replica_assignment,
                f"Attempted to add {added} partition(s), but {len(spec.assignments)} "
                "assignment(s) were given: give one replica list per new partition.",
            )
        placements: Sequence[Sequence[int]] = [
            _check_assignment(image, current + i, replicas, rf)
            for i, replicas in enumerate(spec.assignments)
        ]
    else:
        _check_replication_factor(rf, usable)
        existing = [p.replicas for p in topic.partitions.values()]
        placements = place_partitions(usable, added, rf, rng, existing)
    return _partition_records(image, topic.topic_id, current, placements)

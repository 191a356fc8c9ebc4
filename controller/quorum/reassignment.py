"""Partition reassignment (KIP-455): AlterPartitionReassignments and
ListPartitionReassignments, as Kafka's controller answers them.

Moving a partition from replicas C to a target T happens in steps, each a PartitionChange
record: first the replicas become T followed by the ones being removed (C - T), with
`adding` = T - C; the new replicas start following the leader like any other, and the leader
adds them to the ISR once they have caught up (AlterPartition); the change after which every
replica of T is in the ISR also completes the reassignment (`election.partition_change`):
the replicas become T, the removed ones leave the ISR and the ELR, and a new leader is
elected if the old one was removed. Brokers delete the replica of a partition they are no longer
assigned. Until then the removed replicas stay in the ISR, so no acknowledged write depends
on the new ones before they hold it.

A new reassignment of a partition that is being reassigned starts from its current replicas
(target and removing); a replica it was still adding stays `adding` if the new target keeps
it. Cancelling (a null target) goes back to the replicas without the adding ones, as Kafka's
PartitionReassignmentRevert does; when that would leave an empty ISR it needs an unclean
election and is refused unless the topic allows one.
"""

from __future__ import annotations

from collections.abc import Sequence

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataImage, MetadataRecord, PartitionRegistration
from odradek.controller.metadata.requests import ReassignmentRequest, ReassignmentResult
from odradek.controller.quorum.api import NONE, ApiError, OpResult
from odradek.controller.quorum.election import ReplicaSets, partition_change
from odradek.controller.quorum.topic_configs import min_insync_replicas, unclean_election_enabled


def alter_partition_reassignments(
    image: MetadataImage, requests: Sequence[ReassignmentRequest],
    allow_replication_factor_change: bool = True,
) -> OpResult[list[ReassignmentResult]]:
    """Start, change or cancel reassignments, partition by partition: an error on one does
    not stop the others, and the records of all of them commit as one batch."""
    records: list[MetadataRecord] = []
    results: list[ReassignmentResult] = []
    seen: set[tuple[str, int]] = set()
    for req in requests:
        key = (req.topic, req.partition)
        try:
            if key in seen:
                raise ApiError(ErrorCode.invalid_request,
                               f"Partition {req.topic}-{req.partition} appears more than once "
                               "in the request.")
            seen.add(key)
            record = _reassign(image, req, allow_replication_factor_change)
        except ApiError as err:
            results.append(ReassignmentResult(req.topic, req.partition, err.code, err.message))
            continue
        if record is not None:
            records.append(record)
        results.append(ReassignmentResult(req.topic, req.partition, NONE))
    return OpResult(tuple(records), results)


def _reassign(image: MetadataImage, req: ReassignmentRequest,
              allow_replication_factor_change: bool) -> MetadataRecord | None:
    topic = image.topics.get(req.topic)
    if topic is None:
        raise ApiError(ErrorCode.unknown_topic_or_partition,
                       f"Unable to find a topic named {req.topic}.")
    current = topic.partitions.get(req.partition)
    if current is None:
        raise ApiError(ErrorCode.unknown_topic_or_partition,
                       f"Unable to find partition {req.topic}:{req.partition}.")
    configs = image.topic_configs(req.topic)
    unclean = unclean_election_enabled(configs)
    if req.replicas is None:
        target, isr = _revert(req, current, unclean)
    else:
        _validate(image, req.replicas)
        if (not allow_replication_factor_change
                and len(req.replicas) != len(current.target_replicas)):
            raise ApiError(ErrorCode.invalid_replication_factor,
                           f"The replication factor is changed from "
                           f"{len(current.target_replicas)} to {len(req.replicas)}")
        target, isr = _start(current, req.replicas), None
    return partition_change(topic.topic_id, req.partition, current, image.is_usable,
                            unclean=unclean, min_isr=min_insync_replicas(configs),
                            target_isr=isr, target=target)


def _validate(image: MetadataImage, replicas: Sequence[int]) -> None:
    # Kafka's validateManualPartitionAssignment messages.
    if not replicas:
        raise ApiError(ErrorCode.invalid_replica_assignment,
                       "The manual partition assignment includes an empty replica list.")
    seen: set[int] = set()
    for broker in replicas:
        if broker in seen:
            raise ApiError(ErrorCode.invalid_replica_assignment,
                           f"The manual partition assignment includes the broker {broker} "
                           "more than once.")
        seen.add(broker)
        if broker not in image.brokers:
            raise ApiError(ErrorCode.invalid_replica_assignment,
                           f"The manual partition assignment includes broker {broker}, but "
                           "no such broker is registered.")


def _start(current: PartitionRegistration, target: Sequence[int]) -> ReplicaSets:
    target = tuple(target)
    removing = tuple(b for b in current.replicas if b not in target)
    adding = tuple(b for b in target
                   if b not in current.replicas or b in current.adding)
    return ReplicaSets(target + removing, removing, adding)


def _revert(req: ReassignmentRequest, current: PartitionRegistration, unclean: bool
            ) -> tuple[ReplicaSets, tuple[int, ...]]:
    if not current.reassigning:
        raise ApiError(ErrorCode.no_reassignment_in_progress,
                       "No partition reassignment is in progress for the topic "
                       f"{req.topic} partition {req.partition}.")
    replicas = current.original_replicas
    isr = tuple(b for b in current.isr if b not in current.adding)
    if not isr:
        if not unclean:
            raise ApiError(ErrorCode.invalid_replica_assignment,
                           f"Unable to revert partition assignment for {req.topic}:"
                           f"{req.partition} because it would require an unclean leader "
                           "election.")
        # Kafka's revert: the first remaining replica is the ISR, an unclean election.
        isr = replicas[:1]
    return ReplicaSets(replicas), isr


__all__ = ["alter_partition_reassignments"]


"""AlterPartition: a partition leader's ISR change, applied with compare-and-set.

The leader proposes a new ISR against the leader epoch and partition epoch it last saw; the
controller applies it only if both are still current, so a proposal based on stale state (an
election or another ISR change happened meanwhile) is refused instead of undoing newer changes.
The ELR follows the new ISR (election.next_elr): replicas dropped from an ISR that falls below
min.insync.replicas become eligible leaders, replicas added leave the ELR.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataImage, MetadataRecord, PartitionRegistration
from odradek.controller.metadata.delta import merge_partition_change
from odradek.controller.metadata.records import partition_change_record
from odradek.controller.metadata.requests import (
    AlterPartitionItem,
    AlterPartitionItemResult,
    AlterPartitionResult,
)
from odradek.controller.quorum.api import NONE, ApiError, OpResult
from odradek.controller.quorum.brokers import registered_broker
from odradek.controller.quorum.election import next_elr, partition_change
from odradek.controller.quorum.topic_configs import min_insync_replicas, unclean_election_enabled


def _check(
    image: MetadataImage, broker_id: int, item: AlterPartitionItem
) -> PartitionRegistration:
    """The partition's current registration if `item` may be applied; ApiError otherwise."""
    topic = image.topics_by_id.get(item.topic_id)
    if topic is None:
        raise ApiError(ErrorCode.unknown_topic_id, f"Topic id {item.topic_id} does not exist.")
    current = topic.partitions.get(item.partition)
    where = f"{topic.name}-{item.partition}"
    if current is None:
        raise ApiError(ErrorCode.unknown_topic_or_partition, f"Partition {where} does not exist.")
    # Epochs newer than ours mean the sender saw state this controller has not: it is most
    # likely no longer the active controller, so the leader should look for the new one.
    if item.leader_epoch > current.leader_epoch or item.partition_epoch > current.partition_epoch:
        raise ApiError(
            ErrorCode.not_controller,
            f"{where}: request epochs (leader {item.leader_epoch}, partition "
            f"{item.partition_epoch}) are newer than this controller's (leader "
            f"{current.leader_epoch}, partition {current.partition_epoch}).",
        )
    if item.leader_epoch < current.leader_epoch:
        raise ApiError(
            ErrorCode.fenced_leader_epoch,
            f"{where}: leader epoch {item.leader_epoch} is stale; the current leader epoch is "
            f"{current.leader_epoch}.",
        )
    if broker_id != current.leader:
        raise ApiError(
            ErrorCode.invalid_request,
            f"{where}: broker {broker_id} is not the leader; the leader is {current.leader}.",
        )
    if item.partition_epoch < current.partition_epoch:
        raise ApiError(
            ErrorCode.invalid_update_version,
            f"{where}: partition epoch {item.partition_epoch} is stale; the current partition "
            f"epoch is {current.partition_epoch}. Refresh the partition state and retry.",
        )
    new_isr = list(item.new_isr)
    if len(set(new_isr)) != len(new_isr) or not set(new_isr) <= set(current.replicas):
        raise ApiError(
            ErrorCode.invalid_request,
            f"{where}: ISR {new_isr} must list distinct members of the replicas "
            f"{list(current.replicas)}.",
        )
    if current.leader not in new_isr:
        raise ApiError(
            ErrorCode.invalid_request,
            f"{where}: ISR {new_isr} must include the leader {current.leader}.",
        )
    ineligible = [b for b in new_isr if not image.is_usable(b)]
    if ineligible:
        raise ApiError(
            ErrorCode.ineligible_replica,
            f"{where}: replicas {ineligible} are fenced, shutting down or not registered and "
            "cannot join the ISR.",
        )
    return current


def alter_partition(
    image: MetadataImage,
    broker_id: int,
    broker_epoch: int,
    items: Sequence[AlterPartitionItem],
) -> OpResult[AlterPartitionResult]:
    try:
        registered_broker(image, broker_id, broker_epoch)
    except ApiError as err:
        return OpResult((), AlterPartitionResult(err.code, err.message))
    # Two proposals for one partition cannot both be compare-and-set against the same epoch.
    counts = Counter((item.topic_id, item.partition) for item in items)
    records: list[MetadataRecord] = []
    results: list[AlterPartitionItemResult] = []
    for item in items:
        try:
            if counts[(item.topic_id, item.partition)] > 1:
                raise ApiError(
                    ErrorCode.invalid_request,
                    f"Partition {item.partition} of topic id {item.topic_id} appears more than "
                    "once in the request.",
                )
            current = _check(image, broker_id, item)
        except ApiError as err:
            results.append(
                AlterPartitionItemResult(item.topic_id, item.partition, err.code, err.message)
            )
            continue
        new_isr = tuple(item.new_isr)
        registration = current
        if new_isr != current.isr:
            configs = image.topic_configs(image.topics_by_id[item.topic_id].name)
            min_isr = min_insync_replicas(configs)
            record: MetadataRecord | None
            if current.reassigning:
                # The ISR change may complete the reassignment, and then the leader may be
                # one of the replicas it removes: Kafka's full partition change.
                record = partition_change(
                    item.topic_id, item.partition, current, image.is_usable,
                    unclean=unclean_election_enabled(configs), min_isr=min_isr,
                    target_isr=new_isr)
            else:
                elr = next_elr(current.replicas, current.isr, new_isr, current.elr, min_isr)
                record = partition_change_record(
                    item.topic_id,
                    item.partition,
                    isr=new_isr,
                    elr=elr if elr != current.elr else None,
                )
            if record is not None:
                records.append(record)
                registration = merge_partition_change(current, record.partition_change)
        results.append(
            AlterPartitionItemResult(item.topic_id, item.partition, NONE, None, registration)
        )
    return OpResult(tuple(records), AlterPartitionResult(NONE, None, tuple(results)))

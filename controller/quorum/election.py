"""Leader election and ISR changes for one partition, following Kafka's rules.

- The current leader stays while it is in the ISR and usable (registered and unfenced).
- Otherwise the new leader is the first replica, in replica order, that is in the ISR and
  usable; the replica order is the preference order an operator set or placement chose.
- With no such replica the partition has no leader (-1) unless the topic enables
  unclean.leader.election, in which case the first usable replica leads with ISR = [itself],
  accepting the loss of records it had not replicated.
- A broker leaving (fenced, unregistered) is removed from every ISR except where it is the last
  member: keeping it there remembers which replica holds all committed records, so the
  partition can come back cleanly when that broker returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence

from controller.metadata import NO_LEADER, MetadataImage, MetadataRecord, PartitionRegistration
from controller.metadata.records import partition_change_record
from controller.quorum.topic_configs import unclean_election_enabled

IsUsable = Callable[[int], bool]


def elect_leader(
    replicas: Sequence[int],
    isr: Sequence[int],
    current_leader: int,
    is_usable: IsUsable,
    unclean: bool,
) -> tuple[int, tuple[int, ...]]:
    """(leader, isr) after an election over the given ISR."""
    isr = tuple(isr)
    if current_leader != NO_LEADER and current_leader in isr and is_usable(current_leader):
        return current_leader, isr
    for replica in replicas:
        if replica in isr and is_usable(replica):
            return replica, isr
    if unclean:
        for replica in replicas:
            if is_usable(replica):
                return replica, (replica,)
    return NO_LEADER, isr


def partition_change(
    topic_id: uuid.UUID,
    partition_id: int,
    current: PartitionRegistration,
    is_usable: IsUsable,
    *,
    unclean: bool,
    target_isr: Sequence[int] | None = None,
) -> MetadataRecord | None:
    """The record moving `current` to the ISR `target_isr` (default: unchanged) with a leader
    elected under the rules above, or None when nothing changes."""
    isr = current.isr if target_isr is None else tuple(target_isr)
    leader, isr = elect_leader(current.replicas, isr, current.leader, is_usable, unclean)
    leader_changed = leader != current.leader
    isr_changed = isr != current.isr
    if not leader_changed and not isr_changed:
        return None
    return partition_change_record(
        topic_id,
        partition_id,
        isr=isr if isr_changed else None,
        leader=leader if leader_changed else None,
    )


def _partitions(image: MetadataImage) -> Iterator[tuple[str, uuid.UUID, int, PartitionRegistration]]:
    for topic in image.topics.values():
        for partition_id, partition in topic.partitions.items():
            yield topic.name, topic.topic_id, partition_id, partition


def move_off_broker(image: MetadataImage, broker_id: int) -> list[MetadataRecord]:
    """Changes for every partition whose ISR holds `broker_id`, which is about to become
    unusable: drop it from ISRs where it is not the last member, and elect new leaders where
    it led."""
    def usable(b: int) -> bool:
        return b != broker_id and image.is_unfenced(b)

    records = []
    for name, topic_id, partition_id, partition in _partitions(image):
        if broker_id not in partition.isr:
            continue
        target = tuple(b for b in partition.isr if b != broker_id) or partition.isr
        record = partition_change(
            topic_id,
            partition_id,
            partition,
            usable,
            unclean=unclean_election_enabled(image.topic_configs(name)),
            target_isr=target,
        )
        if record is not None:
            records.append(record)
    return records


def elect_leaderless(image: MetadataImage, now_usable: int) -> list[MetadataRecord]:
    """Changes giving a leader to leaderless partitions once `now_usable` is unfenced."""
    def usable(b: int) -> bool:
        return b == now_usable or image.is_unfenced(b)

    records = []
    for name, topic_id, partition_id, partition in _partitions(image):
        if partition.has_leader or now_usable not in partition.replicas:
            continue
        record = partition_change(
            topic_id,
            partition_id,
            partition,
            usable,
            unclean=unclean_election_enabled(image.topic_configs(name)),
        )
        if record is not None:
            records.append(record)
    return records


def elect_preferred_leaders(image: MetadataImage) -> list[MetadataRecord]:
    """Move leadership back to each partition's preferred replica (the first one) where it
    is usable and in the ISR (auto.leader.rebalance.enable): after a broker returns, its
    partitions would otherwise stay led by whoever took over."""
    records = []
    for _name, topic_id, partition_id, partition in _partitions(image):
        if not partition.replicas:
            continue
        preferred = partition.replicas[0]
        if (partition.leader != preferred and preferred in partition.isr
                and image.is_unfenced(preferred)):
            records.append(partition_change_record(topic_id, partition_id, leader=preferred))
    return records

"""Leader election, ISR and ELR changes for one partition, following Kafka's rules (KIP-966
for the eligible leader replicas, ELR).

- The current leader stays while it is in the ISR and usable (registered, unfenced and not
  in controlled shutdown).
- Otherwise the new leader is the first replica, in replica order, that is in the ISR and
  usable; the replica order is the preference order an operator set or placement chose.
- Otherwise the first usable ELR member leads, with ISR = [itself]: it holds every record up
  to the high watermark, which is every acknowledged acks=all write.
- With no such replica the partition has no leader (-1) unless the topic enables
  unclean.leader.election, in which case the first usable replica leads with ISR = [itself]
  and the ELR is emptied, accepting the loss of records it had not replicated.
- A broker leaving (fenced, unregistered) is removed from every ISR except where it is the last
  member: keeping it there remembers which replica holds all committed records, so the
  partition can come back cleanly when that broker returns.

The ELR follows the ISR (`next_elr`): replicas leaving an ISR that ends up below
min.insync.replicas join the ELR, because the leader does not advance the high watermark
while the ISR is that small, so they keep every committed record; a replica entering the ISR
leaves the ELR; an ISR back at min.insync.replicas or above empties it (the high watermark
moves on without the ELR members). A broker that restarts after an unclean shutdown may have
lost its unflushed tail, so it leaves every ELR, and the ISR where it is the last member, as
long as another replica remains that holds the committed records (`drop_unclean_replica`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import (
    NO_LEADER,
    MetadataImage,
    MetadataRecord,
    PartitionRegistration,
)
from odradek.controller.metadata.records import partition_change_record
from odradek.controller.metadata.requests import ElectionType, ElectLeadersResult
from odradek.controller.quorum.topic_configs import min_insync_replicas, unclean_election_enabled

IsUsable = Callable[[int], bool]


@dataclass(frozen=True)
class ReplicaSets:
    """A partition's replicas with its reassignment (KIP-455): during one, `replicas` is the
    target followed by the replicas being `removing`; `adding` are target replicas that have
    not joined the ISR yet."""

    replicas: tuple[int, ...]
    removing: tuple[int, ...] = ()
    adding: tuple[int, ...] = ()

    def completed(self, isr: Sequence[int]) -> tuple[ReplicaSets, tuple[int, ...]]:
        """The sets and ISR once the reassignment completes, if it can with `isr`: every
        replica of the target is in it (Kafka's maybeCompleteReassignment); else unchanged.
        The replicas being removed leave the ISR as they leave the replicas."""
        isr = tuple(isr)
        if not (self.removing or self.adding):
            return self, isr
        kept_isr = tuple(b for b in isr if b not in self.removing)
        kept = tuple(b for b in self.replicas if b not in self.removing)
        if not kept_isr or not kept or any(b not in kept_isr for b in kept):
            return self, isr
        return ReplicaSets(kept), kept_isr


def elect_leader(
    replicas: Sequence[int],
    isr: Sequence[int],
    current_leader: int,
    is_usable: IsUsable,
    unclean: bool,
    elr: Sequence[int] = (),
) -> tuple[int, tuple[int, ...]]:
    """(leader, isr) after an election over the given ISR and ELR. The ISR changes only
    when the leader comes from outside it (from the ELR, or unclean): it is then [leader]."""
    isr = tuple(isr)
    if current_leader != NO_LEADER and current_leader in isr and is_usable(current_leader):
        return current_leader, isr
    for replica in replicas:
        if replica in isr and is_usable(replica):
            return replica, isr
    for replica in replicas:
        if replica in elr and is_usable(replica):
            return replica, (replica,)
    if unclean:
        for replica in replicas:
            if is_usable(replica):
                return replica, (replica,)
    return NO_LEADER, isr


def next_elr(
    replicas: Sequence[int],
    isr_before: Sequence[int],
    isr_after: Sequence[int],
    elr: Sequence[int],
    min_isr: int,
    ineligible: Collection[int] = (),
) -> tuple[int, ...]:
    """The ELR once the ISR goes from `isr_before` to `isr_after`; `ineligible` brokers
    (unclean restart, unregistered) neither stay in it nor join it."""
    if len(isr_after) >= min_isr:
        return ()
    members = (set(elr) | set(isr_before)) - set(isr_after) - set(ineligible)
    return tuple(r for r in replicas if r in members)


def partition_change(
    topic_id: uuid.UUID,
    partition_id: int,
    current: PartitionRegistration,
    is_usable: IsUsable,
    *,
    unclean: bool,
    min_isr: int = 1,
    target_isr: Sequence[int] | None = None,
    ineligible: Collection[int] = (),
    target: ReplicaSets | None = None,
) -> MetadataRecord | None:
    """The record moving `current` to the ISR `target_isr` (default: unchanged) and the
    replica sets `target` (default: unchanged) with its ELR and a leader elected under the
    rules above, or None when nothing changes. A reassignment whose adding replicas are all
    in the new ISR completes in the same record (Kafka's PartitionChangeBuilder)."""
    sets = target or ReplicaSets(current.replicas, current.removing, current.adding)
    isr = current.isr if target_isr is None else tuple(target_isr)
    sets, isr = sets.completed(isr)
    replicas = sets.replicas
    elr = next_elr(replicas, current.isr, isr, current.elr, min_isr, ineligible)
    leader, elected_isr = elect_leader(replicas, isr, current.leader, is_usable, unclean, elr)
    if elected_isr != isr:
        if leader in elr:
            # The ISR members it replaces were in sync; they become eligible in turn.
            elr = next_elr(replicas, isr, elected_isr, elr, min_isr, ineligible)
        else:
            # Unclean: the new leader's log is the truth now, and it lacks what they hold.
            elr = ()
        isr = elected_isr
    leader_changed = leader != current.leader
    isr_changed = isr != current.isr
    elr_changed = elr != current.elr
    replicas_changed = replicas != current.replicas
    removing_changed = sets.removing != current.removing
    adding_changed = sets.adding != current.adding
    if not (leader_changed or isr_changed or elr_changed or replicas_changed
            or removing_changed or adding_changed):
        return None
    return partition_change_record(
        topic_id,
        partition_id,
        isr=isr if isr_changed else None,
        leader=leader if leader_changed else None,
        elr=elr if elr_changed else None,
        replicas=replicas if replicas_changed else None,
        removing=sets.removing if removing_changed else None,
        adding=sets.adding if adding_changed else None,
    )


def _partitions(image: MetadataImage) -> Iterator[tuple[str, uuid.UUID, int, PartitionRegistration]]:
    for topic in image.topics.values():
        for partition_id, partition in topic.partitions.items():
            yield topic.name, topic.topic_id, partition_id, partition


def move_off_broker(
    image: MetadataImage, broker_id: int, *, eligible: bool = True
) -> list[MetadataRecord]:
    """Changes for every partition whose ISR holds `broker_id`, which is about to become
    unusable: drop it from ISRs where it is not the last member, and elect new leaders where
    it led. With `eligible` false (the broker goes away for good) it also leaves every ELR
    and joins none."""
    def usable(b: int) -> bool:
        return b != broker_id and image.is_usable(b)

    ineligible = () if eligible else (broker_id,)
    records = []
    for name, topic_id, partition_id, partition in _partitions(image):
        if broker_id not in partition.isr and not (ineligible and broker_id in partition.elr):
            continue
        target = tuple(b for b in partition.isr if b != broker_id) or partition.isr
        configs = image.topic_configs(name)
        record = partition_change(
            topic_id,
            partition_id,
            partition,
            usable,
            unclean=unclean_election_enabled(configs),
            min_isr=min_insync_replicas(configs),
            target_isr=target,
            ineligible=ineligible,
        )
        if record is not None:
            records.append(record)
    return records


def drop_unclean_replica(image: MetadataImage, broker_id: int) -> list[MetadataRecord]:
    """Changes for a broker registering after an unclean shutdown (it is fenced): it may have
    lost records it had acknowledged, so it leaves every ELR, and every ISR where it is the
    last member, so that a replica with the committed records (an ELR member) leads instead.
    Where no other replica is left in the ISR or ELR it stays: nobody is known to hold more,
    and removing it would leave the partition without a leader for good."""
    def usable(b: int) -> bool:
        return b != broker_id and image.is_usable(b)

    records = []
    for name, topic_id, partition_id, partition in _partitions(image):
        candidates = set(partition.isr) | set(partition.elr)
        if broker_id not in candidates or candidates == {broker_id}:
            continue
        # It is in no larger ISR: it was fenced, so moved off, before it could register again.
        target = () if partition.isr == (broker_id,) else partition.isr
        configs = image.topic_configs(name)
        record = partition_change(
            topic_id,
            partition_id,
            partition,
            usable,
            unclean=unclean_election_enabled(configs),
            min_isr=min_insync_replicas(configs),
            target_isr=target,
            ineligible=(broker_id,),
        )
        if record is not None:
            records.append(record)
    return records


def elect_leaderless(image: MetadataImage, now_usable: int) -> list[MetadataRecord]:
    """Changes giving a leader to leaderless partitions once `now_usable` is usable."""
    def usable(b: int) -> bool:
        return b == now_usable or image.is_usable(b)

    records = []
    for name, topic_id, partition_id, partition in _partitions(image):
        if partition.has_leader or now_usable not in partition.replicas:
            continue
        configs = image.topic_configs(name)
        record = partition_change(
            topic_id,
            partition_id,
            partition,
            usable,
            unclean=unclean_election_enabled(configs),
            min_isr=min_insync_replicas(configs),
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
                and image.is_usable(preferred)):
            records.append(partition_change_record(topic_id, partition_id, leader=preferred))
    return records


# Kafka's error codes for ElectLeaders.
_UNKNOWN_TOPIC_OR_PARTITION = ErrorCode.unknown_topic_or_partition
_PREFERRED_LEADER_NOT_AVAILABLE = ErrorCode.preferred_leader_not_available
_ELIGIBLE_LEADERS_NOT_AVAILABLE = ErrorCode.eligible_leaders_not_available
_ELECTION_NOT_NEEDED = ErrorCode.election_not_needed


def elect_leaders(
    image: MetadataImage, election_type: ElectionType,
    partitions: Sequence[tuple[str, int]] | None,
) -> tuple[list[MetadataRecord], list[ElectLeadersResult]]:
    """ElectLeaders, as Kafka's controller answers it.

    PREFERRED: the first replica leads if it is usable and in the ISR (not needed when it
    already leads). UNCLEAN: a partition without a usable leader gets one under the rules
    above with unclean election allowed for it, whatever its topic's config says (not
    needed when it has a leader). ``partitions`` None: every partition, and only the ones
    where an election was needed are reported."""
    wanted = (((t.name, t.topic_id, i, p) for t in image.topics.values()
               for i, p in sorted(t.partitions.items()))
              if partitions is None else _named(image, partitions))
    records: list[MetadataRecord] = []
    results: list[ElectLeadersResult] = []
    for name, topic_id, index, current in wanted:
        if current is None:
            results.append(ElectLeadersResult(
                name, index, _UNKNOWN_TOPIC_OR_PARTITION,
                f"partition {name}-{index} does not exist"))
            continue
        if election_type == ElectionType.PREFERRED:
            record, result = _preferred(image, name, topic_id, index, current)
        else:
            record, result = _unclean(image, name, topic_id, index, current)
        if record is not None:
            records.append(record)
        if partitions is not None or result.error_code != _ELECTION_NOT_NEEDED:
            results.append(result)
    return records, results


def _named(image: MetadataImage, partitions: Sequence[tuple[str, int]]
           ) -> Iterator[tuple[str, uuid.UUID | None, int, PartitionRegistration | None]]:
    for name, index in partitions:
        topic = image.topics.get(name)
        current = topic.partitions.get(index) if topic is not None else None
        yield name, topic.topic_id if topic is not None else None, index, current


def _preferred(image: MetadataImage, name: str, topic_id: uuid.UUID | None, index: int,
               current: PartitionRegistration
               ) -> tuple[MetadataRecord | None, ElectLeadersResult]:
    preferred = current.replicas[0] if current.replicas else NO_LEADER
    if current.leader == preferred and image.is_usable(preferred):
        return None, ElectLeadersResult(name, index, _ELECTION_NOT_NEEDED,
                                        f"replica {preferred} already leads")
    if preferred not in current.isr or not image.is_usable(preferred):
        return None, ElectLeadersResult(
            name, index, _PREFERRED_LEADER_NOT_AVAILABLE,
            f"the preferred replica {preferred} is not in the ISR {list(current.isr)} or "
            "not live")
    assert topic_id is not None
    return (partition_change_record(topic_id, index, leader=preferred),
            ElectLeadersResult(name, index, ErrorCode.none))


def _unclean(image: MetadataImage, name: str, topic_id: uuid.UUID | None, index: int,
             current: PartitionRegistration
             ) -> tuple[MetadataRecord | None, ElectLeadersResult]:
    if current.has_leader and image.is_usable(current.leader):
        return None, ElectLeadersResult(name, index, _ELECTION_NOT_NEEDED,
                                        f"replica {current.leader} leads")
    assert topic_id is not None
    leader, _ = elect_leader(current.replicas, current.isr, current.leader,
                             image.is_usable, True, current.elr)
    record = partition_change(topic_id, index, current, image.is_usable, unclean=True,
                              min_isr=min_insync_replicas(image.topic_configs(name)))
    if leader == NO_LEADER or record is None:
        return None, ElectLeadersResult(
            name, index, _ELIGIBLE_LEADERS_NOT_AVAILABLE,
            f"no replica of {name}-{index} is live ({list(current.replicas)})")
    return record, ElectLeadersResult(name, index, ErrorCode.none)

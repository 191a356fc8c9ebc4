"""Rebuilding groups from the records of one ``__consumer_offsets`` partition.

Replay is last-writer-wins per key, like log compaction: the latest offset record per
(group, topic, partition) and the latest group metadata record per group count; a
tombstone removes what came before. Groups come back as Kafka brings them back: with the
generation, protocol, leader, members and assignments of their last completed rebalance
(Stable), or Empty; a group with offsets but no metadata is a "simple" group.
"""

from __future__ import annotations

from odradek.broker.group.group import ClassicGroup, CommittedOffset, GroupState, TopicPartition
from odradek.broker.group.member import Member
from odradek.broker.group.records import (
    GroupKey,
    GroupValue,
    OffsetKey,
    decode_group_value,
    decode_key,
    decode_offset_value,
)


class Replay:
    """Accumulates records in log order; ``groups()`` gives the resulting groups."""

    def __init__(self) -> None:
        self.offsets: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        self.metadata: dict[str, GroupValue | None] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Apply one record; raises RecordFormatError for one that cannot be decoded."""
        k = decode_key(key)
        if isinstance(k, OffsetKey):
            tp = (k.topic, k.partition)
            if value is None:
                self.offsets.get(k.group, {}).pop(tp, None)
            else:
                v = decode_offset_value(value)
                self.offsets.setdefault(k.group, {})[tp] = CommittedOffset(
                    v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, v.expire_timestamp
                )
        elif isinstance(k, GroupKey):
            self.metadata[k.group] = None if value is None else decode_group_value(value)

    def groups(self) -> list[ClassicGroup]:
        out = []
        for group_id in dict.fromkeys([*self.metadata, *self.offsets]):
            meta = self.metadata.get(group_id)
            offsets = self.offsets.get(group_id) or {}
            if meta is None and not offsets:
                continue  # deleted
            group = group_from_record(group_id, meta) if meta else ClassicGroup(group_id)
            group.offsets = offsets
            group.offset_seq = {tp: 0 for tp in offsets}
            out.append(group)
        return out


def group_from_record(group_id: str, meta: GroupValue) -> ClassicGroup:
    group = ClassicGroup(
        group_id,
        generation=meta.generation,
        protocol_type=meta.protocol_type or None,
        protocol_name=meta.protocol,
        leader_id=meta.leader,
        state_timestamp=meta.current_state_timestamp if meta.current_state_timestamp >= 0 else None,
    )
    if meta.protocol is not None:
        for mv in meta.members:
            # Only the chosen protocol's metadata is stored, so that is all the member
            # supports until it rejoins (as in Kafka).
            group.members[mv.member_id] = Member(
                mv.member_id,
                mv.group_instance_id,
                mv.client_id,
                mv.client_host,
                mv.rebalance_timeout,
                mv.session_timeout,
                meta.protocol_type,
                [(meta.protocol, mv.subscription)],
                assignment=mv.assignment,
            )
            if mv.group_instance_id is not None:
                group.static_members[mv.group_instance_id] = mv.member_id
    group.state = GroupState.STABLE if group.members else GroupState.EMPTY
    if group.leader_id not in group.members:
        group.leader_id = next(iter(group.members), None)
    group.subscribed_topics = group.compute_subscribed_topics()
    return group

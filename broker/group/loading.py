"""Rebuilding groups from the records of one ``__consumer_offsets`` partition.

Replay is last-writer-wins per key, like log compaction: the latest offset record per
(group, topic, partition) and the latest group metadata record per group count; a
tombstone removes what came before. Groups come back as Kafka brings them back: with the
generation, protocol, leader, members and assignments of their last completed rebalance
(Stable), or Empty; a group with offsets but no metadata is a "simple" group.

Transactional offset commits (TxnOffsetCommit, records of a transactional batch) are
held per producer id until that producer's marker: COMMIT makes them committed where no
plain commit was written after them, ABORT drops them, and a transaction still open at
the end of the log stays pending (its marker reaches the coordinator later, through
``GroupCoordinator.on_transaction_completed``). A tombstone also removes the pending
offsets of its partition, as in Kafka's OffsetMetadataManager.replay.

Groups of the consumer group protocol (KIP-848, consumer_records.py) come back from their
records as Kafka's replay brings them back: group epoch, target assignment and its epoch,
each member's metadata and current assignment (epochs, state, assigned partitions and
those still to revoke). Their committed offsets are kept like any group's.
"""

from __future__ import annotations

from odradek.broker.group import consumer_records as cr
from odradek.broker.group.consumer_group import ConsumerGroup, ConsumerMember, MemberState
from odradek.broker.group.group import (
    ClassicGroup,
    CommittedOffset,
    GroupState,
    PendingTxnOffset,
    TopicPartition,
)
from odradek.broker.group.log import LogEntry, LogMarker
from odradek.broker.group.member import Member
from odradek.broker.group.records import (
    GroupKey,
    GroupValue,
    OffsetKey,
    decode_group_value,
    decode_key,
    decode_offset_value,
)

# group -> partition -> (log offset of the record, offset)
_Offsets = dict[str, dict[TopicPartition, tuple[int, CommittedOffset]]]


class Replay:
    """Accumulates log entries in log order; ``groups()`` gives the resulting groups."""

    def __init__(self) -> None:
        self.offsets: _Offsets = {}
        self.metadata: dict[str, GroupValue | None] = {}
        # producer id -> its open transaction's offsets
        self.pending: dict[int, _Offsets] = {}
        self.consumer: dict[str, _ConsumerRecords] = {}

    def apply(self, entry: LogEntry) -> None:
        """Apply one entry; raises RecordFormatError for a record that cannot be decoded."""
        if isinstance(entry, LogMarker):
            self._end_txn(entry.producer_id, entry.commit)
            return
        k = decode_key(entry.key)
        if k is None:
            ck = cr.decode_key(entry.key)
            if ck is not None:
                self._apply_consumer(ck, entry.value)
            return
        if isinstance(k, OffsetKey):
            tp = (k.topic, k.partition)
            if entry.value is None:
                self.offsets.get(k.group, {}).pop(tp, None)
                for txn in self.pending.values():
                    txn.get(k.group, {}).pop(tp, None)
                return
            v = decode_offset_value(entry.value)
            value = CommittedOffset(
                v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, v.expire_timestamp
            )
            target = self.pending.setdefault(entry.producer_id, {}) if entry.transactional \
                else self.offsets
            target.setdefault(k.group, {})[tp] = (entry.offset, value)
        elif isinstance(k, GroupKey):
            self.metadata[k.group] = None if entry.value is None else decode_group_value(entry.value)

    def _apply_consumer(self, k: cr.ConsumerKey, data: bytes | None) -> None:
        if k.record_type == cr.GROUP_METADATA and data is None:
            # The group is deleted (its members' tombstones come first, as Kafka writes).
            self.consumer.pop(k.group, None)
            return
        value = None if data is None else cr.decode_value(k.record_type, data)
        if data is not None and value is None:
            return  # a type this coordinator reads and ignores
        rec = self.consumer.setdefault(k.group, _ConsumerRecords())
        member = k.member or ""
        if k.record_type == cr.GROUP_METADATA:
            assert isinstance(value, cr.GroupMetadataValue)
            rec.metadata = value
        elif k.record_type == cr.TARGET_ASSIGNMENT_METADATA:
            rec.assignment_epoch = value.assignment_epoch \
                if isinstance(value, cr.TargetAssignmentMetadataValue) else 0
        elif k.record_type == cr.MEMBER_METADATA:
            _put(rec.members, member, value)
        elif k.record_type == cr.TARGET_ASSIGNMENT_MEMBER:
            _put(rec.targets, member, value)
        elif k.record_type == cr.CURRENT_MEMBER_ASSIGNMENT:
            _put(rec.current, member, value)

    def consumer_groups(self) -> list[ConsumerGroup]:
        out = []
        for group_id, rec in self.consumer.items():
            if rec.metadata is None:
                continue  # records of a group whose metadata was never written
            group = ConsumerGroup(group_id, group_epoch=rec.metadata.epoch,
                                  assignment_epoch=rec.assignment_epoch,
                                  metadata_hash=rec.metadata.metadata_hash)
            for member_id, target in rec.targets.items():
                assert isinstance(target, cr.TargetAssignmentMemberValue)
                group.target[member_id] = dict(target.partitions)
            for member_id, meta in rec.members.items():
                assert isinstance(meta, cr.MemberMetadataValue)
                current = rec.current.get(member_id)
                member = ConsumerMember(
                    member_id,
                    instance_id=meta.instance_id,
                    rack_id=meta.rack_id,
                    client_id=meta.client_id,
                    client_host=meta.client_host,
                    subscribed_topic_names=meta.subscribed_topic_names,
                    subscribed_topic_regex=meta.subscribed_topic_regex,
                    rebalance_timeout_ms=meta.rebalance_timeout_ms,
                    server_assignor=meta.server_assignor,
                )
                if isinstance(current, cr.CurrentAssignmentValue):
                    state = current.state if current.state in MemberState._value2member_map_ \
                        else MemberState.UNKNOWN
                    member = member.replace(
                        member_epoch=current.member_epoch,
                        previous_member_epoch=current.previous_member_epoch,
                        state=MemberState(state),
                        assigned=dict(current.assigned),
                        pending_revocation=dict(current.pending_revocation),
                    )
                group.update_member(member)
            # A target of a member that is gone means nothing.
            group.target = {m: t for m, t in group.target.items() if m in group.members}
            out.append(group)
        return out

    def _end_txn(self, producer_id: int, commit: bool) -> None:
        txn = self.pending.pop(producer_id, None)
        if txn is None or not commit:
            return
        for group_id, offsets in txn.items():
            committed = self.offsets.setdefault(group_id, {})
            for tp, (at, value) in offsets.items():
                current = committed.get(tp)
                # A plain commit written after the transactional one stays.
                if current is None or current[0] < at:
                    committed[tp] = (at, value)

    def groups(self) -> list[ClassicGroup]:
        pending_groups = [g for txn in self.pending.values() for g, o in txn.items() if o]
        out = []
        for group_id in dict.fromkeys([*self.metadata, *self.offsets, *pending_groups]):
            meta = self.metadata.get(group_id)
            offsets = self.offsets.get(group_id) or {}
            group = group_from_record(group_id, meta) if meta else ClassicGroup(group_id)
            group.offsets = {tp: value for tp, (_, value) in offsets.items()}
            group.offset_seq = {tp: at for tp, (at, _) in offsets.items()}
            for producer_id, txn in self.pending.items():
                if txn.get(group_id):
                    group.pending_txn_offsets[producer_id] = {
                        tp: PendingTxnOffset(at, value) for tp, (at, value) in txn[group_id].items()
                    }
            if meta is None and not group.offsets and not group.pending_txn_offsets:
                continue  # deleted
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


class _ConsumerRecords:
    """The latest record of each key of one consumer group, as replay meets them."""

    def __init__(self) -> None:
        self.metadata: cr.GroupMetadataValue | None = None
        self.assignment_epoch = 0
        self.members: dict[str, cr.ConsumerValue] = {}
        self.targets: dict[str, cr.ConsumerValue] = {}
        self.current: dict[str, cr.ConsumerValue] = {}


def _put(into: dict[str, cr.ConsumerValue], member: str, value: cr.ConsumerValue | None) -> None:
    if value is None:
        into.pop(member, None)
    else:
        into[member] = value

"""Membership of the consumer group protocol (KIP-848): ConsumerGroupHeartbeat, leaving,
session and rebalance timeouts, and what ConsumerGroupDescribe shows.

One heartbeat does what Kafka's GroupMetadataManager does, in its order: find or create
the group and the member (checking the member epoch), take the member's new subscription
and settings; bump the group epoch if the member is new, its subscription changed or the
subscribed topics' metadata changed; recompute the target assignment when the group epoch
is ahead of it; move the member one step towards its target (reconciliation.py); answer
with its epoch and, when it changed or the request was a full one, its assignment.

The state changes at once (later heartbeats see it, as in Kafka) and the records that
say so are appended to the group's partition of ``__consumer_offsets``; the heartbeat is
answered once they are durable. A write that fails is answered with the error (the member
retries or rejoins); the state stays as it is in memory, and a coordinator that takes over
rebuilds the last durable state, in which members that moved since are fenced and rejoin.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from odradek.broker.group import consumer_records as cr
from odradek.broker.group.assignors import ASSIGNORS, UNIFORM, TopicId
from odradek.broker.group.clock import Clock, TimerHandle
from odradek.broker.group.consumer_group import (
    JOIN_EPOCH,
    LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
    ConsumerGroup,
    ConsumerMember,
    MemberState,
    TopicMetadata,
    compute_target,
    metadata_hash,
    normalize,
)
from odradek.broker.group.group import GroupState
from odradek.broker.group.log import Record, group_write_error
from odradek.broker.group.reconciliation import FencedMemberEpoch, reconcile
from odradek.broker.group.records import group_key
from odradek.broker.group.registry import CONSUMER_GROUP_HEARTBEAT, GroupRegistry
from odradek.broker.group.topic_regex import RegexError, TopicRegexes

log = logging.getLogger("odradek.group")

# Looks up the named topics in the metadata: those that exist, by name.
TopicLookup = Callable[[Iterable[str]], Mapping[str, TopicMetadata]]
# The names of every topic in the metadata (what subscription regexes match against).
TopicNames = Callable[[], Iterable[str]]
# Of the given topic names, those the requesting principal may DESCRIBE.
TopicFilter = Callable[[set[str]], set[str]]

Partitions = Mapping[TopicId, frozenset[int]]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A ConsumerGroupHeartbeat request; None for a field means "unchanged"."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: Partitions | None = None
    client_id: str = ""
    client_host: str = ""
    # Regex subscriptions match only topics the member may describe (Kafka's rule).
    describable: TopicFilter | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    error: ErrorCode
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    # None: not sent (unchanged)
    assignment: Partitions | None = None


class HeartbeatError(Exception):
    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def _failed(error: ErrorCode, message: str | None = None) -> HeartbeatResult:
    return HeartbeatResult(error, message)


def _done(result: HeartbeatResult) -> asyncio.Future[HeartbeatResult]:
    fut: asyncio.Future[HeartbeatResult] = asyncio.get_running_loop().create_future()
    fut.set_result(result)
    return fut


class ConsumerMembership:
    def __init__(
        self,
        registry: GroupRegistry,
        clock: Clock,
        *,
        topics: TopicLookup,
        topic_names: TopicNames,
        session_timeout_ms: int,
        heartbeat_interval_ms: int,
        log_prefix: str,
        max_size: int = 2**31 - 1,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._topics = topics
        self._topic_names = topic_names
        self._regexes = TopicRegexes()
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.max_size = max_size
        self._log_prefix = log_prefix
        # (group id, member id) -> timer
        self._session_timers: dict[tuple[str, str], TimerHandle] = {}
        self._rebalance_timers: dict[tuple[str, str], TimerHandle] = {}

    # --- loading and unloading -----------------------------------------------------------

    def on_group_loaded(self, group: ConsumerGroup) -> None:
        """A group came back from the log: its members must heartbeat to stay."""
        for member in group.members.values():
            self._schedule_session(group, member.member_id)
            if member.state is MemberState.UNREVOKED_PARTITIONS:
                self._schedule_rebalance(group, member)

    def on_group_unloaded(self, group: ConsumerGroup) -> None:
        for member_id in group.members:
            self._cancel_timers(group.group_id, member_id)

    # --- heartbeat -----------------------------------------------------------------------

    def heartbeat(self, req: Heartbeat, api_version: int) -> asyncio.Future[HeartbeatResult]:
        """Handle a ConsumerGroupHeartbeat; the future resolves once its records are
        durable (at once for errors)."""
        try:
            self._validate(req, api_version)
            err = self._registry.status(req.group_id, CONSUMER_GROUP_HEARTBEAT)
            if err is not None:
                return _done(_failed(err))
            if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
                return self._leave(req)
            return self._heartbeat(req)
        except HeartbeatError as e:
            return _done(_failed(e.error, e.message))

    def _validate(self, req: Heartbeat, api_version: int) -> None:
        def invalid(message: str) -> HeartbeatError:
            return HeartbeatError(ErrorCode.invalid_request, message)

        # From v1 the consumer makes up its member id (KIP-1082).
        if (api_version >= 1 or req.member_epoch > 0 or req.member_epoch == LEAVE_EPOCH) \
                and not req.member_id:
            raise invalid("MemberId can't be empty.")
        if not req.group_id:
            raise invalid("GroupId can't be empty.")
        if req.instance_id == "":
            raise invalid("InstanceId can't be empty.")
        if req.rack_id == "":
            raise invalid("RackId can't be empty.")
        if req.member_epoch == JOIN_EPOCH:
            if req.rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if req.owned is None or any(req.owned.values()):
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
                raise invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be "
                              "non-null when (re-)joining.")
        elif req.member_epoch == STATIC_LEAVE_EPOCH:
            if req.instance_id is None:
                raise invalid("InstanceId can't be null.")
        elif req.member_epoch < STATIC_LEAVE_EPOCH:
            raise invalid("MemberEpoch is invalid.")
        if req.subscribed_topic_regex:  # the empty regex (librdkafka sends it) is none
            try:
                self._regexes.compile(req.subscribed_topic_regex)
            except RegexError as e:
                raise HeartbeatError(
                    ErrorCode.invalid_regular_expression,
                    f"SubscribedTopicRegex `{req.subscribed_topic_regex}` is not a valid "
                    f"regular expression: {e}.") from e
        if req.server_assignor is not None and req.server_assignor not in ASSIGNORS:
            raise HeartbeatError(
                ErrorCode.unsupported_assignor,
                f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: "
                f"{', '.join(ASSIGNORS)}.")

    def _group_for(self, req: Heartbeat, records: list[Record]) -> ConsumerGroup:
        group = self._registry.consumer_group(req.group_id)
        if group is not None:
            return group
        classic = self._registry.get(req.group_id)
        if classic is not None and not classic.is_(GroupState.DEAD) and (
                classic.members or classic.pending_members
                or not classic.is_(GroupState.EMPTY)):
            # A classic group with members: Kafka converts it only with online migration,
            # which this broker does not do.
            raise HeartbeatError(ErrorCode.group_id_not_found,
                                 f"Group {req.group_id} is not a consumer group.")
        if req.member_epoch != JOIN_EPOCH:
            raise HeartbeatError(ErrorCode.group_id_not_found,
                                 f"Consumer group {req.group_id} not found.")
        if classic is not None and (classic.protocol_type is not None or classic.generation):
            # An empty classic group becomes a consumer group (its offsets stay): its
            # classic metadata goes, as Kafka's conversion writes.
            records.append((group_key(req.group_id), None))
            classic.protocol_type = None
            classic.protocol_name = None
            classic.generation = 0
            classic.leader_id = None
            classic.subscribed_topics = None
        group = ConsumerGroup(req.group_id)
        self._registry.add_consumer_group(group)
        return group

    def _member_for(self, group: ConsumerGroup, req: Heartbeat,
                    records: list[Record]) -> tuple[ConsumerMember, ConsumerMember | None, bool]:
        """(the member as it is now or starts; the member it was before this heartbeat,
        None if it has no records yet; whether it joins, which moves the group epoch: a
        static member's new incarnation takes over its predecessor's place and does not)."""
        member_id = req.member_id or str(uuid.uuid4())
        if req.instance_id is not None:
            return self._static_member_for(group, req, member_id, records)
        existing = group.members.get(member_id)
        if existing is None:
            if req.member_epoch != JOIN_EPOCH:
                raise HeartbeatError(
                    ErrorCode.unknown_member_id,
                    f"Member {member_id} is not a member of group {group.group_id}.")
            return ConsumerMember(member_id), None, True
        if req.member_epoch != JOIN_EPOCH:
            self._check_epoch(existing, req)
        return existing, existing, False

    def _static_member_for(self, group: ConsumerGroup, req: Heartbeat, member_id: str,
                           records: list[Record]
                           ) -> tuple[ConsumerMember, ConsumerMember | None, bool]:
        assert req.instance_id is not None
        existing = group.member_by_instance(req.instance_id)
        if req.member_epoch == JOIN_EPOCH:
            if existing is None:
                return ConsumerMember(member_id, instance_id=req.instance_id), None, True
            if existing.member_id == member_id:
                return existing, existing, False
            if existing.member_epoch != STATIC_LEAVE_EPOCH:
                raise HeartbeatError(
                    ErrorCode.unreleased_instance_id,
                    f"Static member {member_id} with instance id {req.instance_id} cannot "
                    f"join the group because the instance id is owned by "
                    f"{existing.member_id} member.")
            # The instance came back under a new member id: it takes over the old
            # member's assignment and target, so the group need not rebalance.
            target = group.target.get(existing.member_id)
            self._remove(group, existing, records, bump=False)
            replaced = existing.replace(member_id=member_id, member_epoch=0,
                                        previous_member_epoch=0, state=MemberState.STABLE)

            if target is not None:
                group.target[member_id] = target
                records.append(_target_record(group.group_id, member_id, target))
            return replaced, None, False
        if existing is None:
            raise HeartbeatError(ErrorCode.unknown_member_id,
                                 f"Instance id {req.instance_id} is unknown.")
        if existing.member_id != member_id:
            raise HeartbeatError(
                ErrorCode.fenced_instance_id,
                f"Static member {member_id} with instance id {req.instance_id} was fenced "
                f"by member {existing.member_id}.")
        self._check_epoch(existing, req)
        return existing, existing, False

    @staticmethod
    def _check_epoch(member: ConsumerMember, req: Heartbeat) -> None:
        if req.member_epoch > member.member_epoch:
            raise HeartbeatError(
                ErrorCode.fenced_member_epoch,
                f"The consumer group member has a greater member epoch ({req.member_epoch}) "
                f"than the one known by the group coordinator ({member.member_epoch}). The "
                f"member must abandon all its partitions and rejoin.")
        if req.member_epoch < member.member_epoch:
            # The answer with the new epoch may have been lost: the previous epoch is
            # fine as long as the member owns no more than it is assigned now.
            if req.member_epoch != member.previous_member_epoch or not _is_subset(
                    req.owned, member.assigned):
                raise HeartbeatError(
                    ErrorCode.fenced_member_epoch,
                    f"The consumer group member has a smaller member epoch "
                    f"({req.member_epoch}) than the one known by the group coordinator "
                    f"({member.member_epoch}). The member must abandon all its partitions "
                    f"and rejoin.")

    def _heartbeat(self, req: Heartbeat) -> asyncio.Future[HeartbeatResult]:
        records: list[Record] = []
        group = self._group_for(req, records)
        try:
            member, before, joined = self._member_for(group, req, records)
            if joined and len(group.members) >= self.max_size:
                raise HeartbeatError(
                    ErrorCode.group_max_size_reached,
                    f"The consumer group has reached its maximum capacity of "
                    f"{self.max_size} members (group.consumer.max.size).")
        except HeartbeatError:
            if group.group_epoch == 0 and not group.members:
                self._registry.discard_consumer_group(group)  # never written
            raise

        updated = member.replace(
            instance_id=req.instance_id if req.instance_id is not None else member.instance_id,
            rack_id=req.rack_id if req.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=req.rebalance_timeout_ms if req.rebalance_timeout_ms != -1
            else member.rebalance_timeout_ms,
            server_assignor=req.server_assignor if req.server_assignor is not None
            else member.server_assignor,
            subscribed_topic_names=tuple(req.subscribed_topic_names)
            if req.subscribed_topic_names is not None else member.subscribed_topic_names,
            # "" (what librdkafka sends without a regex) clears it.
            subscribed_topic_regex=(req.subscribed_topic_regex or None)
            if req.subscribed_topic_regex is not None else member.subscribed_topic_regex,
            client_id=req.client_id,
            client_host=req.client_host,
        )
        bump = group.group_epoch == 0 or joined
        if before is None or updated.metadata_key() != before.metadata_key():
            records.append(_member_metadata_record(group.group_id, updated))
        if before is not None and updated.subscription_key() != before.subscription_key():
            bump = True
        group.update_member(updated)
        self._resolve_regexes(group, req.describable)
        if joined:
            log.debug("%s[group %s] member %s joins: topics %s, regex %s (matches %s)",
                      self._log_prefix, group.group_id, updated.member_id,
                      list(updated.subscribed_topic_names), updated.subscribed_topic_regex,
                      sorted(group.member_topics(updated)))
        topics = self._topics(group.subscribed_topic_names())
        new_hash = metadata_hash(topics)
        if new_hash != group.metadata_hash:
            bump = True
        if bump:
            group.group_epoch += 1
            group.metadata_hash = new_hash
            records.append((cr.key(cr.GROUP_METADATA, group.group_id), cr.encode_value(
                cr.GroupMetadataValue(group.group_epoch, new_hash))))
            log.info("%s[group %s] epoch %d", self._log_prefix, group.group_id,
                     group.group_epoch)
        if group.group_epoch > group.assignment_epoch:
            self._update_target(group, topics, records)
        try:
            reconciled = reconcile(updated, group.assignment_epoch,
                                   group.target_of(updated.member_id),
                                   group.current_partition_epoch, req.owned)
        except FencedMemberEpoch as e:
            # What changed before this point (the member's settings, the group epoch, the
            # target) stands: write it, and tell the member to rejoin.
            return self._write(group, records, _failed(ErrorCode.fenced_member_epoch, str(e)))
        group.update_member(reconciled)
        if before is None or before.assignment_key() != reconciled.assignment_key():
            records.append(_current_assignment_record(group.group_id, reconciled))
        self._schedule_session(group, reconciled.member_id)
        if reconciled.state is MemberState.UNREVOKED_PARTITIONS:
            if before is None or before.member_epoch != reconciled.member_epoch \
                    or before.state is not MemberState.UNREVOKED_PARTITIONS:
                self._schedule_rebalance(group, reconciled)
        else:
            self._cancel_rebalance(group.group_id, reconciled.member_id)
        full = req.member_epoch == JOIN_EPOCH or (
            req.rebalance_timeout_ms != -1 and req.subscribed_topic_names is not None
            and req.owned is not None)
        changed = before is None or normalize(before.assigned) != normalize(reconciled.assigned)
        result = HeartbeatResult(
            ErrorCode.none,
            member_id=reconciled.member_id,
            member_epoch=reconciled.member_epoch,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            assignment=reconciled.assigned if full or changed else None,
        )
        return self._write(group, records, result)

    def _resolve_regexes(self, group: ConsumerGroup, describable: TopicFilter | None) -> None:
        """The topics each regex of the group matches now (whole names, as Kafka's
        matcher), less those the member heartbeating may not describe. A change of what
        they match changes the subscribed topics' hash: the group rebalances."""
        regexes = group.regexes()
        if not regexes:
            group.resolved_regex = {}
            return
        names = self._topic_names()
        resolved: dict[str, frozenset[str]] = {}
        for regex in regexes:
            matched = self._regexes.matching(regex, names)
            if describable is not None and matched:
                matched = frozenset(describable(set(matched)))
            resolved[regex] = matched
        group.resolved_regex = resolved

    def _update_target(self, group: ConsumerGroup, topics: Mapping[str, TopicMetadata],
                       records: list[Record]) -> None:
        assignor = ASSIGNORS[group.preferred_assignor(UNIFORM)]
        target = compute_target(group, topics, assignor)
        for member_id, assignment in target.items():
            if group.target.get(member_id) != assignment:
                records.append(_target_record(group.group_id, member_id, assignment))
        group.target = target
        group.assignment_epoch = group.group_epoch
        records.append((cr.key(cr.TARGET_ASSIGNMENT_METADATA, group.group_id), cr.encode_value(
            cr.TargetAssignmentMetadataValue(group.assignment_epoch))))

    # --- leaving and fencing -------------------------------------------------------------

    def _leave(self, req: Heartbeat) -> asyncio.Future[HeartbeatResult]:
        group = self._registry.consumer_group(req.group_id)
        if group is None:
            raise HeartbeatError(ErrorCode.group_id_not_found,
                                 f"Consumer group {req.group_id} not found.")
        records: list[Record] = []
        if req.instance_id is not None:
            member = group.member_by_instance(req.instance_id)
            if member is None:
                raise HeartbeatError(ErrorCode.unknown_member_id,
                                     f"Instance id {req.instance_id} is unknown.")
            if member.member_id != req.member_id:
                raise HeartbeatError(
                    ErrorCode.fenced_instance_id,
                    f"Static member {req.member_id} with instance id {req.instance_id} was "
                    f"fenced by member {member.member_id}.")
        else:
            found = group.members.get(req.member_id)
            if found is None:
                raise HeartbeatError(
                    ErrorCode.unknown_member_id,
                    f"Member {req.member_id} is not a member of group {group.group_id}.")
            member = found
        if req.member_epoch == STATIC_LEAVE_EPOCH:
            # The static member goes away for a while and keeps its assignment; it is
            # removed only if it does not come back within the session timeout.
            left = member.replace(member_epoch=STATIC_LEAVE_EPOCH)
            group.update_member(left)
            records.append(_current_assignment_record(group.group_id, left))
            self._cancel_rebalance(group.group_id, member.member_id)
            log.info("%s[group %s] static member %s (instance %s) left temporarily",
                     self._log_prefix, group.group_id, member.member_id, member.instance_id)
        else:
            self._remove(group, member, records, bump=True)
            log.info("%s[group %s] member %s left", self._log_prefix, group.group_id,
                     member.member_id)
        return self._write(group, records, HeartbeatResult(
            ErrorCode.none, member_id=member.member_id, member_epoch=req.member_epoch))

    def _remove(self, group: ConsumerGroup, member: ConsumerMember, records: list[Record],
                *, bump: bool) -> None:
        """Take the member out (its partitions are free at once) and write its tombstones
        (in Kafka's order); ``bump`` moves the group epoch so the rest rebalance."""
        group.remove_member(member.member_id)
        self._cancel_timers(group.group_id, member.member_id)
        gid, mid = group.group_id, member.member_id
        records += [(cr.key(cr.CURRENT_MEMBER_ASSIGNMENT, gid, mid), None),
                    (cr.key(cr.TARGET_ASSIGNMENT_MEMBER, gid, mid), None),
                    (cr.key(cr.MEMBER_METADATA, gid, mid), None)]
        if bump:
            group.group_epoch += 1
            records.append((cr.key(cr.GROUP_METADATA, gid), cr.encode_value(
                cr.GroupMetadataValue(group.group_epoch, group.metadata_hash))))

    def _fence(self, group_id: str, member_id: str, epoch: int | None, why: str) -> None:
        """A timer ran out: the member is removed and the others rebalance."""
        group = self._registry.consumer_group(group_id)
        if group is None or not self._registry.consumer_current(group):
            return
        member = group.members.get(member_id)
        if member is None or (epoch is not None and member.member_epoch != epoch):
            return
        if self._registry.status(group_id, CONSUMER_GROUP_HEARTBEAT) is not None:
            return
        records: list[Record] = []
        self._remove(group, member, records, bump=True)
        log.info("%s[group %s] member %s fenced: %s", self._log_prefix, group_id, member_id,
                 why)
        self._write(group, records, HeartbeatResult(ErrorCode.none))

    # --- timers --------------------------------------------------------------------------

    def _schedule_session(self, group: ConsumerGroup, member_id: str) -> None:
        key = (group.group_id, member_id)
        old = self._session_timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._session_timers[key] = self._clock.call_later(
            self.session_timeout_ms,
            lambda: self._on_session_expired(group.group_id, member_id))

    def _on_session_expired(self, group_id: str, member_id: str) -> None:
        self._session_timers.pop((group_id, member_id), None)
        self._fence(group_id, member_id, None, f"no heartbeat within the session timeout "
                    f"({self.session_timeout_ms} ms, group.consumer.session.timeout.ms)")

    def _schedule_rebalance(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        self._cancel_rebalance(group.group_id, member.member_id)
        epoch = member.member_epoch
        timeout = max(member.rebalance_timeout_ms, 0)

        def expired() -> None:
            self._rebalance_timers.pop((group.group_id, member.member_id), None)
            current = group.members.get(member.member_id)
            if current is not None and current.state is MemberState.UNREVOKED_PARTITIONS:
                self._fence(group.group_id, member.member_id, epoch,
                            f"did not revoke its partitions within its rebalance timeout "
                            f"({timeout} ms)")

        self._rebalance_timers[(group.group_id, member.member_id)] = self._clock.call_later(
            timeout, expired)

    def _cancel_rebalance(self, group_id: str, member_id: str) -> None:
        timer = self._rebalance_timers.pop((group_id, member_id), None)
        if timer is not None:
            timer.cancel()

    def _cancel_timers(self, group_id: str, member_id: str) -> None:
        timer = self._session_timers.pop((group_id, member_id), None)
        if timer is not None:
            timer.cancel()
        self._cancel_rebalance(group_id, member_id)

    def cancel_group_timers(self, group: ConsumerGroup) -> None:
        for member_id in list(group.members):
            self._cancel_timers(group.group_id, member_id)

    # --- writes --------------------------------------------------------------------------

    def _write(self, group: ConsumerGroup, records: list[Record],
               result: HeartbeatResult) -> asyncio.Future[HeartbeatResult]:
        if not records:
            return _done(result)
        fut: asyncio.Future[HeartbeatResult] = asyncio.get_running_loop().create_future()
        partition = self._registry.partition_for(group.group_id)

        async def write() -> None:
            exc = await self._registry.append(partition, records)
            if fut.done():
                return
            if exc is None:
                fut.set_result(result)
            else:
                fut.set_result(_failed(group_write_error(exc)))

        self._registry.spawn(write())
        return fut


def _is_subset(owned: Partitions | None, assigned: Partitions) -> bool:
    if owned is None:
        return False
    return all(ps <= assigned.get(t, frozenset()) for t, ps in owned.items() if ps)


def _member_metadata_record(group_id: str, m: ConsumerMember) -> Record:
    return (cr.key(cr.MEMBER_METADATA, group_id, m.member_id), cr.encode_value(
        cr.MemberMetadataValue(m.instance_id, m.rack_id, m.client_id, m.client_host,
                               m.subscribed_topic_names, m.subscribed_topic_regex,
                               m.rebalance_timeout_ms, m.server_assignor)))


def _target_record(group_id: str, member_id: str, assignment: Partitions) -> Record:
    return (cr.key(cr.TARGET_ASSIGNMENT_MEMBER, group_id, member_id),
            cr.encode_value(cr.TargetAssignmentMemberValue(assignment)))


def _current_assignment_record(group_id: str, m: ConsumerMember) -> Record:
    return (cr.key(cr.CURRENT_MEMBER_ASSIGNMENT, group_id, m.member_id), cr.encode_value(
        cr.CurrentAssignmentValue(m.member_epoch, m.previous_member_epoch, int(m.state),
                                  m.assigned, m.pending_revocation)))

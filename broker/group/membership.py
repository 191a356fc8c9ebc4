"""The classic group membership state machine: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.

Behaviour follows Kafka's GroupCoordinator: the states Empty -> PreparingRebalance ->
CompletingRebalance -> Stable (and Dead), the initial rebalance delay for empty groups,
MEMBER_ID_REQUIRED for JoinGroup v4+ (KIP-394), static membership (KIP-345), pending-sync
expiry, session and rebalance timeouts, and the same error codes in the same situations.

Requests change state synchronously and return a result or an ``asyncio.Future`` that a
later event (another member joining, a timer, a log append) resolves. Per-group state lives
in the :class:`~odradek.broker.group.group.ClassicGroup` and its members; the groups
themselves, and the writes, belong to the :class:`GroupRegistry`. Group metadata is
written after each completed rebalance, when a group becomes empty and on a static
member's replacement.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from odradek.broker.group import consumer_records as cr
from odradek.broker.group.clock import Clock
from odradek.broker.group.group import ClassicGroup, GroupState
from odradek.broker.group.log import Record, group_write_error
from odradek.broker.group.member import JoinResult, Member, SyncResult, resolve
from odradek.broker.group.records import encode_group_value, group_key
from odradek.broker.group.registry import (
    HEARTBEAT,
    JOIN_GROUP,
    LEAVE_GROUP,
    SYNC_GROUP,
    GroupRegistry,
)

log = logging.getLogger("odradek.group")

EMPTY = GroupState.EMPTY
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD


@dataclass(frozen=True, slots=True)
class LeavingMember:
    member_id: str
    group_instance_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class _JoinArgs:
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    supports_skip_assignment: bool
    reason: str | None


class Membership:
    def __init__(
        self,
        registry: GroupRegistry,
        clock: Clock,
        *,
        initial_rebalance_delay_ms: int,
        min_session_timeout_ms: int,
        max_session_timeout_ms: int,
        max_group_size: int,
        new_member_join_timeout_ms: int,
        log_prefix: str,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.max_group_size = max_group_size
        self.new_member_join_timeout_ms = new_member_join_timeout_ms
        self._log_prefix = log_prefix

    # --- loading and unloading -----------------------------------------------------------

    def on_group_loaded(self, group: ClassicGroup) -> None:
        """A group came back from the log: its members must heartbeat to stay."""
        for member in group.members.values():
            self.schedule_heartbeat(group, member)
        if group.size() > self.max_group_size:
            # group.max.size was lowered: rebalance, and the late rejoiners are refused.
            self._prepare_rebalance(group, "group is over group.max.size after loading")

    def on_group_unloaded(self, group: ClassicGroup) -> None:
        """The group moved away: answer its parked requests NOT_COORDINATOR, stop its timers."""
        group.transition(DEAD, self._clock.now_ms())
        self._cancel_join_timer(group)
        self._cancel_sync_timer(group)
        for member in group.members.values():
            member.cancel_heartbeat()
            resolve(
                member.take_join(), JoinResult.failed(ErrorCode.not_coordinator, member.member_id)
            )
            resolve(member.take_sync(), SyncResult(ErrorCode.not_coordinator))
        self.cancel_pending_members(group)

    def cancel_pending_members(self, group: ClassicGroup) -> None:
        """Forget the members that were told MEMBER_ID_REQUIRED, and their timers."""
        for timer in group.pending_members.values():
            if timer is not None:
                timer.cancel()
        group.pending_members.clear()

    def _group_record(self, group: ClassicGroup, assignment: dict[str, bytes]) -> Record:
        return group_key(group.group_id), encode_group_value(group.to_record(assignment))

    # --- JoinGroup -----------------------------------------------------------------------

    def join_group(
        self,
        group_id: str,
        member_id: str,
        *,
        group_instance_id: str | None = None,
        client_id: str = "",
        client_host: str = "",
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        require_known_member_id: bool = True,
        supports_skip_assignment: bool = False,
        reason: str | None = None,
    ) -> asyncio.Future[JoinResult]:
        """Handle a JoinGroup. The future resolves when the rebalance completes (or at once
        for errors, MEMBER_ID_REQUIRED and rejoins that need no rebalance)."""
        fut: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        err = self._registry.status(group_id, JOIN_GROUP)
        if err is None and not (
            self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms
        ):
            err = ErrorCode.invalid_session_timeout
        if err is None:
            err = self._claim_from_consumer_group(group_id)
        group = self._registry.get(group_id)
        unknown = member_id == ""
        if err is None and group is None:
            if not unknown:
                err = ErrorCode.unknown_member_id
            else:
                group = ClassicGroup(group_id, state_timestamp=self._clock.now_ms())
                self._registry.add(group)
        if err is not None or group is None:
            resolve(fut, JoinResult.failed(err or ErrorCode.unknown_server_error, member_id))
            return fut

        # Duplicate protocol names: keep the first, like Kafka's keyed collection.
        protocols = list({name: (name, data) for name, data in reversed(protocols)}.values())[::-1]
        args = _JoinArgs(
            group_instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type,
            protocols,
            supports_skip_assignment,
            reason,
        )
        if not self._accept_joining_member(group, member_id):
            existing = group.members.get(member_id)
            if existing is not None:
                self._remove_member(group, existing)
            else:
                group.remove(member_id)
            resolve(fut, JoinResult.failed(ErrorCode.group_max_size_reached, ""))
        elif unknown:
            self._new_member_join(group, fut, args, require_known_member_id)
        else:
            self._current_member_join(group, member_id, fut, args)
        if group.is_(PREPARING):
            self._try_complete_join(group)
        return fut

    def _claim_from_consumer_group(self, group_id: str) -> ErrorCode | None:
        """A JoinGroup for the id of a consumer group (KIP-848): an empty one becomes a
        classic group, as in Kafka (its records get tombstones; offsets stay); one with
        members is refused, since classic members cannot join it here (Kafka's online
        migration is not implemented)."""
        cgroup = self._registry.consumer_group(group_id)
        if cgroup is None:
            return None
        if cgroup.members:
            return ErrorCode.inconsistent_group_protocol
        self._registry.discard_consumer_group(cgroup)
        records: list[Record] = [
            (cr.key(cr.TARGET_ASSIGNMENT_METADATA, group_id), None),
            (cr.key(cr.GROUP_METADATA, group_id), None),
        ]
        self._registry.spawn(self._registry.append(self._registry.partition_for(group_id),
                                                   records))
        log.info("%s[group %s] converted the empty consumer group to a classic group",
                 self._log_prefix, group_id)
        return None

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        if group.is_(EMPTY, DEAD):
            return True
        if group.is_(PREPARING):
            # Count members that already rejoined, not the group size: the size may be
            # over the limit (limit lowered), and this lets the last rejoiners be refused.
            m = group.members.get(member_id)
            return (m is not None and m.awaiting_join) or (
                group.num_awaiting_join() < self.max_group_size
            )
        return group.has_member(member_id) or group.size() < self.max_group_size

    def _new_member_join(
        self,
        group: ClassicGroup,
        fut: asyncio.Future[JoinResult],
        a: _JoinArgs,
        require_known_member_id: bool,
    ) -> None:
        if group.is_(DEAD):
            # The group is being deleted or moved; the client retries (maybe elsewhere).
            resolve(fut, JoinResult.failed(ErrorCode.coordinator_not_available))
            return
        if not group.supports_protocols(a.protocol_type, [n for n, _ in a.protocols]):
            resolve(fut, JoinResult.failed(ErrorCode.inconsistent_group_protocol))
            return
        new_id = f"{a.group_instance_id or a.client_id}-{uuid.uuid4()}"
        if a.group_instance_id is not None:
            old_id = group.static_members.get(a.group_instance_id)
            if old_id is not None:
                self._update_static_member_and_rebalance(group, old_id, new_id, fut, a)
            else:
                self._add_member_and_rebalance(group, new_id, fut, a)
        elif require_known_member_id:
            # KIP-394: hand out the id first, so a client that times out and retries
            # rejoins as the same member instead of piling up unknown members.
            self._add_pending_member(group, new_id, a.session_timeout_ms)
            resolve(fut, JoinResult.failed(ErrorCode.member_id_required, new_id))
        else:
            self._add_member_and_rebalance(group, new_id, fut, a)

    def _current_member_join(
        self, group: ClassicGroup, member_id: str, fut: asyncio.Future[JoinResult], a: _JoinArgs
    ) -> None:
        if group.is_(DEAD):
            resolve(fut, JoinResult.failed(ErrorCode.coordinator_not_available, member_id))
            return
        if not group.supports_protocols(a.protocol_type, [n for n, _ in a.protocols]):
            resolve(fut, JoinResult.failed(ErrorCode.inconsistent_group_protocol, member_id))
            return
        if member_id in group.pending_members:
            if a.group_instance_id is not None:
                # Pending ids are only handed to dynamic members; start over cleanly.
                resolve(fut, JoinResult.failed(ErrorCode.unknown_member_id, member_id))
                return
            self._add_member_and_rebalance(group, member_id, fut, a)
            return
        err = group.validate_member(member_id, a.group_instance_id)
        if err is not None:
            resolve(fut, JoinResult.failed(err, member_id))
            return
        member = group.members[member_id]
        if group.is_(PREPARING):
            self._update_member_and_rebalance(group, member, fut, a, "rejoin during rebalance")
        elif group.is_(COMPLETING):
            if member.matches(a.protocols):
                # Same metadata: probably a retry after a lost JoinGroup response; answer
                # with the current generation instead of starting another rebalance.
                resolve(fut, self._join_result(group, member, include_members=True))
            else:
                self._update_member_and_rebalance(group, member, fut, a, "metadata changed")
        elif group.is_(STABLE):
            if group.is_leader(member_id):
                # The leader rejoining is how clients ask for a rebalance after changes the
                # coordinator cannot see (e.g. new partitions of a subscribed topic).
                self._update_member_and_rebalance(group, member, fut, a, "leader rejoined")
            elif not member.matches(a.protocols):
                self._update_member_and_rebalance(group, member, fut, a, "metadata changed")
            else:
                resolve(fut, self._join_result(group, member, include_members=False))
        else:
            resolve(fut, JoinResult.failed(ErrorCode.unknown_member_id, member_id))

    def _join_result(
        self, group: ClassicGroup, member: Member, *, include_members: bool
    ) -> JoinResult:
        leader = group.is_leader(member.member_id)
        return JoinResult(
            ErrorCode.none,
            member.member_id,
            group.generation,
            group.protocol_type,
            group.protocol_name,
            group.leader_id or "",
            False,
            group.current_member_metadata() if (leader and include_members) else (),
        )

    def _add_pending_member(
        self, group: ClassicGroup, member_id: str, session_timeout_ms: int
    ) -> None:
        timer = self._clock.call_later(
            session_timeout_ms, lambda: self._on_pending_member_expired(group, member_id)
        )
        group.pending_members[member_id] = timer

    def _on_pending_member_expired(self, group: ClassicGroup, member_id: str) -> None:
        if not self._registry.current(group) or member_id not in group.pending_members:
            return
        log.info(
            "%spending member %s of group %s did not rejoin within its session timeout",
            self._log_prefix,
            member_id,
            group.group_id,
        )
        group.pending_members.pop(member_id, None)
        if group.is_(PREPARING):
            self._try_complete_join(group)

    def _add_member_and_rebalance(
        self, group: ClassicGroup, member_id: str, fut: asyncio.Future[JoinResult], a: _JoinArgs
    ) -> None:
        member = Member(
            member_id,
            a.group_instance_id,
            a.client_id,
            a.client_host,
            a.rebalance_timeout_ms,
            a.session_timeout_ms,
            a.protocol_type,
            a.protocols,
            join_future=fut,
            is_new=True,
        )
        if group.is_(PREPARING) and group.generation == 0:
            group.new_member_added = True
        group.add(member)
        self.schedule_heartbeat(group, member, self.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance(
            group, f"new member {member_id} joined (reason: {a.reason or 'not provided'})"
        )

    def _update_member_and_rebalance(
        self,
        group: ClassicGroup,
        member: Member,
        fut: asyncio.Future[JoinResult],
        a: _JoinArgs,
        why: str,
    ) -> None:
        group.update_member(member, a.protocols, a.rebalance_timeout_ms, a.session_timeout_ms, fut)
        self._maybe_prepare_rebalance(
            group, f"{why}: member {member.member_id} (reason: {a.reason or 'not provided'})"
        )

    def _update_static_member_and_rebalance(
        self,
        group: ClassicGroup,
        old_id: str,
        new_id: str,
        fut: asyncio.Future[JoinResult],
        a: _JoinArgs,
    ) -> None:
        instance_id = a.group_instance_id
        assert instance_id is not None
        current_leader = group.leader_id or ""
        member = group.replace_static_member(instance_id, old_id, new_id)
        old = (list(member.protocols), member.rebalance_timeout_ms, member.session_timeout_ms)
        # The old id's heartbeat deadline goes with it; the new id starts a fresh one.
        self.schedule_heartbeat(group, member)
        group.update_member(member, a.protocols, a.rebalance_timeout_ms, a.session_timeout_ms, fut)
        log.info(
            "%sstatic member %s of group %s rejoined as %s (was %s)",
            self._log_prefix,
            instance_id,
            group.group_id,
            new_id,
            old_id,
        )
        if group.is_(STABLE):
            # KIP-345: a restarted static member takes its old place without a rebalance,
            # unless that would change the group's protocol. Its subscription may differ
            # byte-wise (owned partitions, generation) even when nothing changed, so the
            # protocol choice, not the bytes, decides -- as in Kafka.
            if group.protocol_name == group.select_protocol():
                assignment = {mid: m.assignment for mid, m in group.members.items()}
                record = self._group_record(group, assignment)
                self._registry.spawn(
                    self._persist_static_rejoin(
                        group,
                        member,
                        fut,
                        instance_id,
                        old_id,
                        new_id,
                        old,
                        current_leader,
                        a.supports_skip_assignment,
                        record,
                    )
                )
            else:
                self._maybe_prepare_rebalance(
                    group, f"static member {instance_id} rejoined with a different protocol"
                )
        elif group.is_(COMPLETING):
            # The leader may be assigning to the old id right now; its assignment would
            # not reach the new id, so start over.
            self._prepare_rebalance(group, f"static member {instance_id} rejoined mid-sync")
        # PreparingRebalance: the member simply waits for the rebalance like everyone.

    async def _persist_static_rejoin(
        self,
        group: ClassicGroup,
        member: Member,
        fut: asyncio.Future[JoinResult],
        instance_id: str,
        old_id: str,
        new_id: str,
        old: tuple[list[tuple[str, bytes]], int, int],
        current_leader: str,
        skip_assignment: bool,
        record: Record,
    ) -> None:
        exc = await self._registry.append(self._registry.partition_for(group.group_id), [record])
        if not self._registry.current(group) or member.join_future is not fut:
            return  # a rebalance or an unload took over and answered the request
        if exc is not None:
            error = group_write_error(exc)
            member.take_join()
            if group.static_members.get(instance_id) == new_id:
                # The new id was never durable: put the old one back.
                group.update_member(member, old[0], old[1], old[2], None)
                group.replace_static_member(instance_id, new_id, old_id)
                self.schedule_heartbeat(group, member)
            resolve(
                fut,
                JoinResult(
                    error,
                    "",
                    group.generation,
                    group.protocol_type,
                    group.protocol_name,
                    current_leader,
                ),
            )
            return
        member.take_join()
        is_leader = group.is_leader(new_id)
        if skip_assignment:
            # JoinGroup v9+: tell a returning leader it leads, but that the group is stable
            # and it must not run the assignor (its result would be ignored anyway).
            result = JoinResult(
                ErrorCode.none,
                new_id,
                group.generation,
                group.protocol_type,
                group.protocol_name,
                group.leader_id or "",
                is_leader,
                group.current_member_metadata() if is_leader else (),
            )
        else:
            # Older clients: report the previous leader id, so a returning leader does not
            # think it leads and run an assignment a stable group would never distribute.
            result = JoinResult(
                ErrorCode.none,
                new_id,
                group.generation,
                group.protocol_type,
                group.protocol_name,
                current_leader,
            )
        resolve(fut, result)

    # --- rebalance machinery ---------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.is_(COMPLETING):
            self._reset_and_propagate_assignment_error(group, ErrorCode.rebalance_in_progress)
        self._cancel_sync_timer(group)
        self._cancel_join_timer(group)
        initial = group.is_(EMPTY)
        # The deadline is fixed now, from the members known now (as Kafka does).
        timeout = group.rebalance_timeout_ms
        group.transition(PREPARING, self._clock.now_ms())
        log.info(
            "%spreparing to rebalance group %s (generation %d, __consumer_offsets-%d): %s",
            self._log_prefix,
            group.group_id,
            group.generation,
            self._registry.partition_for(group.group_id),
            reason,
        )
        if initial:
            # Empty group: wait for more members before the first assignment, extending
            # while new members keep arriving, up to the rebalance timeout.
            delay = self.initial_rebalance_delay_ms
            remaining = max(timeout - delay, 0)
            group.new_member_added = False
            group.initial_delay = True
            group.join_timer = self._clock.call_later(
                delay, lambda: self._on_initial_join_timer(group, delay, remaining)
            )
        else:
            group.initial_delay = False
            group.join_timer = self._clock.call_later(timeout, lambda: self._complete_join(group))
            self._try_complete_join(group)

    def _on_initial_join_timer(self, group: ClassicGroup, delay: int, remaining: int) -> None:
        group.join_timer = None
        if not self._registry.current(group) or not group.is_(PREPARING):
            return
        if group.new_member_added and remaining != 0:
            group.new_member_added = False
            next_delay = min(self.initial_rebalance_delay_ms, remaining)
            next_remaining = max(remaining - delay, 0)
            group.join_timer = self._clock.call_later(
                next_delay,
                lambda: self._on_initial_join_timer(group, next_delay, next_remaining),
            )
        else:
            self._complete_join(group)

    def _try_complete_join(self, group: ClassicGroup) -> None:
        """Finish the join phase early once every member (and no pending one) has rejoined,
        except during the initial delay, which always runs its course."""
        if group.is_(PREPARING) and not group.initial_delay and group.has_all_members_joined():
            self._complete_join(group)

    def _complete_join(self, group: ClassicGroup) -> None:
        self._cancel_join_timer(group)
        group.initial_delay = False
        if not self._registry.current(group) or not group.is_(PREPARING):
            return
        for member in group.not_yet_rejoined():
            if not member.is_static:
                # Static members keep their place through a missed rebalance (KIP-345);
                # dynamic ones that did not rejoin within the rebalance timeout are out.
                self._remove_member(group, member)
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Only absent static members are left: wait for them (or their session
            # timeouts) for another round instead of forming a generation of ghosts.
            group.join_timer = self._clock.call_later(
                group.rebalance_timeout_ms, lambda: self._complete_join(group)
            )
            return
        group.init_next_generation(self._clock.now_ms())
        if group.is_(EMPTY):
            log.info(
                "%sgroup %s is empty at generation %d",
                self._log_prefix,
                group.group_id,
                group.generation,
            )
            # Best effort, as in Kafka: if this write is lost the old generation comes
            # back on failover, which is harmless for a group without members.
            self._registry.spawn(
                self._registry.append(self._registry.partition_for(group.group_id), [self._group_record(group, {})])
            )
            return
        log.info(
            "%sgroup %s formed generation %d with %d members, protocol %s",
            self._log_prefix,
            group.group_id,
            group.generation,
            group.size(),
            group.protocol_name,
        )
        for member in group.members.values():
            resolve(member.take_join(), self._join_result(group, member, include_members=True))
            self.schedule_heartbeat(group, member)
            member.is_new = False
            group.pending_sync.add(member.member_id)
        generation = group.generation
        group.sync_timer = self._clock.call_later(
            group.rebalance_timeout_ms, lambda: self._on_pending_sync_expired(group, generation)
        )

    def _on_pending_sync_expired(self, group: ClassicGroup, generation: int) -> None:
        group.sync_timer = None
        if not self._registry.current(group) or group.generation != generation:
            return
        if group.is_(COMPLETING, STABLE) and group.pending_sync:
            missing = sorted(group.pending_sync)
            for member_id in missing:
                member = group.members.get(member_id)
                if member is not None:
                    self._remove_member(group, member)
            self._prepare_rebalance(group, f"members {missing} did not send SyncGroup in time")

    def _reset_and_propagate_assignment_error(self, group: ClassicGroup, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
            resolve(member.take_sync(), SyncResult(error))

    def _set_and_propagate_assignment(
        self, group: ClassicGroup, assignment: dict[str, bytes]
    ) -> None:
        for member_id, member in group.members.items():
            member.assignment = assignment.get(member_id, b"")
        for member in group.members.values():
            fut = member.take_sync()
            if fut is not None:
                resolve(
                    fut,
                    SyncResult(
                        ErrorCode.none, group.protocol_type, group.protocol_name, member.assignment
                    ),
                )
                self.schedule_heartbeat(group, member)

    def _remove_member(self, group: ClassicGroup, member: Member) -> None:
        """Take a member out without triggering anything (callers decide what follows)."""
        resolve(member.take_join(), JoinResult.failed(ErrorCode.unknown_member_id, ""))
        resolve(member.take_sync(), SyncResult(ErrorCode.unknown_member_id))
        member.cancel_heartbeat()
        group.remove(member.member_id)

    def _remove_member_and_update_group(
        self, group: ClassicGroup, member: Member, reason: str
    ) -> None:
        log.info(
            "%sremoving %s from group %s: %s",
            self._log_prefix,
            member.member_id,
            group.group_id,
            reason,
        )
        self._remove_member(group, member)
        if group.is_(STABLE, COMPLETING):
            self._maybe_prepare_rebalance(group, reason)
        elif group.is_(PREPARING):
            self._try_complete_join(group)

    def _cancel_join_timer(self, group: ClassicGroup) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None

    def _cancel_sync_timer(self, group: ClassicGroup) -> None:
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    # --- heartbeats ------------------------------------------------------------------------

    def schedule_heartbeat(
        self, group: ClassicGroup, member: Member, timeout_ms: int | None = None
    ) -> None:
        """(Re)start ``member``'s session deadline (a heartbeat, or a commit, proves it alive)."""
        member.cancel_heartbeat()
        delay = member.session_timeout_ms if timeout_ms is None else timeout_ms
        member.heartbeat_timer = self._clock.call_later(
            delay, lambda: self._on_heartbeat_expired(group, member)
        )

    def _on_heartbeat_expired(self, group: ClassicGroup, member: Member) -> None:
        member.heartbeat_timer = None
        if not self._registry.current(group) or group.members.get(member.member_id) is not member:
            return
        if not member.is_new and (member.awaiting_join or member.awaiting_sync):
            # A member parked in JoinGroup/SyncGroup cannot heartbeat; the rebalance and
            # pending-sync deadlines decide its fate instead.
            return
        self._remove_member_and_update_group(
            group, member, f"session timeout ({member.session_timeout_ms} ms) expired"
        )

    def heartbeat(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
    ) -> ErrorCode:
        err = self._registry.status(group_id, HEARTBEAT)
        if err is ErrorCode.coordinator_load_in_progress:
            # We are reloading the group; a member that is fine should not be disturbed.
            return ErrorCode.none
        if err is not None:
            return err
        group = self._registry.get(group_id)
        if group is None:
            return ErrorCode.unknown_member_id
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available
        err = group.validate_member(member_id, group_instance_id)
        if err is not None:
            return err
        if generation_id != group.generation:
            return ErrorCode.illegal_generation
        if group.is_(EMPTY):
            return ErrorCode.unknown_member_id
        self.schedule_heartbeat(group, group.members[member_id])
        if group.is_(PREPARING):
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    # --- SyncGroup -------------------------------------------------------------------------

    def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        *,
        group_instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
        assignments: Mapping[str, bytes] | None = None,
    ) -> asyncio.Future[SyncResult]:
        """Handle a SyncGroup. Followers wait until the leader's assignment is durable."""
        fut: asyncio.Future[SyncResult] = asyncio.get_running_loop().create_future()
        err = self._registry.status(group_id, SYNC_GROUP)
        if err is ErrorCode.coordinator_load_in_progress:
            # The rebalance in progress was lost with the old coordinator; rejoining is
            # the way forward (and old clients do not know the loading error here).
            err = ErrorCode.rebalance_in_progress
        group = self._registry.get(group_id)
        if err is None and group is None:
            err = ErrorCode.unknown_member_id
        if err is None and group is not None:
            err = self._validate_sync(
                group, generation_id, member_id, group_instance_id, protocol_type, protocol_name
            )
        if err is not None or group is None:
            resolve(fut, SyncResult(err or ErrorCode.unknown_server_error))
            return fut
        member = group.members[member_id]
        if group.is_(EMPTY):
            resolve(fut, SyncResult(ErrorCode.unknown_member_id))
        elif group.is_(PREPARING):
            resolve(fut, SyncResult(ErrorCode.rebalance_in_progress))
        elif group.is_(COMPLETING):
            resolve(member.take_sync(), SyncResult(ErrorCode.rebalance_in_progress))
            member.sync_future = fut
            self._remove_pending_sync_member(group, member_id)
            if group.is_leader(member_id):
                given = dict(assignments or {})
                missing = [mid for mid in group.members if mid not in given]
                if missing:
                    log.warning(
                        "%sleader of group %s gave no assignment for %s; they get an empty one",
                        self._log_prefix,
                        group.group_id,
                        missing,
                    )
                full = {mid: given.get(mid, b"") for mid in group.members}
                record = self._group_record(group, full)
                self._registry.spawn(self._finish_sync(group, group.generation, full, record))
        else:  # Stable: a late or repeated SyncGroup gets the current assignment
            self._remove_pending_sync_member(group, member_id)
            resolve(
                fut,
                SyncResult(
                    ErrorCode.none, group.protocol_type, group.protocol_name, member.assignment
                ),
            )
            self.schedule_heartbeat(group, member)
        return fut

    def _validate_sync(
        self,
        group: ClassicGroup,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
    ) -> ErrorCode | None:
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available
        err = group.validate_member(member_id, group_instance_id)
        if err is not None:
            return err
        if generation_id != group.generation:
            return ErrorCode.illegal_generation
        if protocol_type is not None and protocol_type != group.protocol_type:
            return ErrorCode.inconsistent_group_protocol
        if protocol_name is not None and protocol_name != group.protocol_name:
            return ErrorCode.inconsistent_group_protocol
        return None

    def _remove_pending_sync_member(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            self._cancel_sync_timer(group)

    async def _finish_sync(
        self, group: ClassicGroup, generation: int, assignment: dict[str, bytes], record: Record
    ) -> None:
        exc = await self._registry.append(self._registry.partition_for(group.group_id), [record])
        # Members may have joined or left meanwhile; only the same generation, still
        # waiting for its assignment, may be completed by this write.
        if not self._registry.current(group) or not group.is_(COMPLETING) or group.generation != generation:
            return
        if exc is not None:
            self._reset_and_propagate_assignment_error(group, group_write_error(exc))
            self._maybe_prepare_rebalance(group, "storing the group assignment failed")
            return
        self._set_and_propagate_assignment(group, assignment)
        group.transition(STABLE, self._clock.now_ms())
        log.info(
            "%sgroup %s is stable at generation %d", self._log_prefix, group.group_id, generation
        )

    # --- LeaveGroup ------------------------------------------------------------------------

    def leave_group(
        self, group_id: str, leaving: Iterable[LeavingMember]
    ) -> tuple[ErrorCode, list[ErrorCode]]:
        """The top-level error and one error per leaving member, in order."""
        leaving = list(leaving)
        err = self._registry.status(group_id, LEAVE_GROUP)
        if err is not None:
            return err, []
        group = self._registry.get(group_id)
        if group is None:
            return ErrorCode.none, [ErrorCode.unknown_member_id] * len(leaving)
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available, []
        out = []
        for lm in leaving:
            reason = f"member left the group (reason: {lm.reason or 'not provided'})"
            if lm.member_id == "":
                # Admin removal of a static member by instance id (KIP-345).
                current = group.static_members.get(lm.group_instance_id or "")
                if lm.group_instance_id is not None and current is not None:
                    self._remove_member_and_update_group(group, group.members[current], reason)
                    out.append(ErrorCode.none)
                else:
                    out.append(ErrorCode.unknown_member_id)
            elif lm.member_id in group.pending_members:
                group.remove(lm.member_id)
                if group.is_(PREPARING):
                    self._try_complete_join(group)
                out.append(ErrorCode.none)
            else:
                e = group.validate_member(lm.member_id, lm.group_instance_id)
                if e is None:
                    self._remove_member_and_update_group(group, group.members[lm.member_id], reason)
                    out.append(ErrorCode.none)
                else:
                    out.append(e)
        return ErrorCode.none, out


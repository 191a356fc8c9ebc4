"""A member of a classic group, and the results handed back to waiting Join/Sync requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TypeVar

from kio.schema.errors import ErrorCode

from odradek.broker.group.clock import TimerHandle


@dataclass(frozen=True, slots=True)
class JoinedMember:
    """One entry of the member list the leader receives in its JoinGroup response."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResult:
    error: ErrorCode
    member_id: str
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    skip_assignment: bool = False
    members: tuple[JoinedMember, ...] = ()

    @staticmethod
    def failed(error: ErrorCode, member_id: str = "") -> JoinResult:
        return JoinResult(error, member_id)


@dataclass(frozen=True, slots=True)
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(eq=False)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    # (name, metadata) in the member's order of preference.
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    # A member "awaits join" while it has a JoinGroup parked here; this, not whether the
    # client is still connected, is what counts for completing a rebalance (as in Kafka).
    join_future: asyncio.Future[JoinResult] | None = None
    sync_future: asyncio.Future[SyncResult] | None = None
    # New members get a long first deadline: they cannot heartbeat before their first
    # JoinGroup response, and a client that gave up must not stall the rebalance forever.
    is_new: bool = False
    heartbeat_timer: TimerHandle | None = field(default=None, repr=False)

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def awaiting_join(self) -> bool:
        return self.join_future is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_future is not None

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        raise KeyError(f"member {self.member_id} does not support protocol {protocol}")

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among those every member supports."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")

    def take_join(self) -> asyncio.Future[JoinResult] | None:
        fut, self.join_future = self.join_future, None
        return fut

    def take_sync(self) -> asyncio.Future[SyncResult] | None:
        fut, self.sync_future = self.sync_future, None
        return fut

    def cancel_heartbeat(self) -> None:
        if self.heartbeat_timer is not None:
            self.heartbeat_timer.cancel()
            self.heartbeat_timer = None


R = TypeVar("R", JoinResult, SyncResult)


def resolve(fut: asyncio.Future[R] | None, result: R) -> None:
    """Answer a parked request unless its handler already went away (cancelled)."""
    if fut is not None and not fut.done():
        fut.set_result(result)

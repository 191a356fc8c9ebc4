"""How a controller that is not the active one tells the caller where the leader is.

Shared by the servicer (which sets it) and the client (which follows it), so the keys and the
status codes are defined once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from odradek.controller.service.quorum_info import NO_LEADER

LEADER_ID_KEY = "odradek-leader-id"
LEADER_ADDRESS_KEY = "odradek-leader-address"


@dataclass(frozen=True)
class Redirect:
    """A refusal because this node is not the active controller."""

    leader_id: int  # NO_LEADER when unknown
    leader_address: str | None

    @property
    def code(self) -> grpc.StatusCode:
        # With a known leader the caller can go there at once; without one it must wait for
        # an election, which UNAVAILABLE (retry later) says.
        return (
            grpc.StatusCode.FAILED_PRECONDITION
            if self.leader_id != NO_LEADER
            else grpc.StatusCode.UNAVAILABLE
        )

    @property
    def message(self) -> str:
        if self.leader_id == NO_LEADER:
            return "not the active controller; no leader is known (election in progress), retry"
        where = self.leader_address or "unknown address"
        return f"not the active controller; leader is {self.leader_id} at {where}"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        md: list[tuple[str, str]] = []
        if self.leader_id != NO_LEADER:
            md.append((LEADER_ID_KEY, str(self.leader_id)))
        if self.leader_address:
            md.append((LEADER_ADDRESS_KEY, self.leader_address))
        return tuple(md)


def parse_redirect(metadata: Iterable[tuple[str, str | bytes]] | None) -> Redirect | None:
    """The redirect carried by an error's trailing metadata, or None if it carries none."""
    leader_id, address = NO_LEADER, None
    found = False
    for key, value in metadata or ():
        text = value.decode() if isinstance(value, bytes) else value
        if key == LEADER_ID_KEY:
            try:
                leader_id = int(text)
                found = True
            except ValueError:
                continue
        elif key == LEADER_ADDRESS_KEY:
            address = text or None
            found = True
    return Redirect(leader_id, address) if found else None

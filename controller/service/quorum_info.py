"""What the controller service needs to know about the Raft quorum.

The Raft runtime implements `QuorumInfo`; single-node clusters and tests use `StaticLeader`
(always the leader) or `ManualQuorumInfo` (set by hand).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

NO_LEADER = -1

LeaderChangeCallback = Callable[[], None]


class QuorumInfo(Protocol):
    """The local node's view of the quorum.

    `is_leader` must only be true once this node's QuorumController has replayed every
    committed record (its image is current), because the service answers from that image.
    `on_leader_change(cb)` registers `cb()`, called on the event loop after any change of
    `is_leader`, `leader_id` or `term`.
    """

    @property
    def is_leader(self) -> bool: ...

    @property
    def leader_id(self) -> int: ...  # NO_LEADER (-1) when none is known

    @property
    def leader_address(self) -> str | None: ...  # "host:port" of the leader's gRPC listener

    @property
    def term(self) -> int: ...

    def on_leader_change(self, cb: LeaderChangeCallback) -> None: ...

    def lost_peers(self) -> frozenset[int]: ...  # voters whose connection to us is down


class ManualQuorumInfo:
    """A QuorumInfo whose state is set by `set()`; for tests and single-node setups."""

    def __init__(
        self,
        *,
        is_leader: bool,
        leader_id: int = NO_LEADER,
        leader_address: str | None = None,
        term: int = 0,
    ) -> None:
        self._is_leader = is_leader
        self._leader_id = leader_id
        self._leader_address = leader_address
        self._term = term
        self._callbacks: list[LeaderChangeCallback] = []
        self.lost: frozenset[int] = frozenset()

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    @property
    def leader_id(self) -> int:
        return self._leader_id

    @property
    def leader_address(self) -> str | None:
        return self._leader_address

    @property
    def term(self) -> int:
        return self._term

    def on_leader_change(self, cb: LeaderChangeCallback) -> None:
        self._callbacks.append(cb)

    def lost_peers(self) -> frozenset[int]:
        return self.lost

    def set(
        self,
        *,
        is_leader: bool,
        leader_id: int = NO_LEADER,
        leader_address: str | None = None,
        term: int | None = None,
    ) -> None:
        self._is_leader = is_leader
        self._leader_id = leader_id
        self._leader_address = leader_address
        self._term = self._term + 1 if term is None else term
        for cb in list(self._callbacks):
            cb()


def StaticLeader(node_id: int = 0, address: str | None = None) -> ManualQuorumInfo:  # noqa: N802
    """A quorum of one: this node always leads (single-node clusters on a LocalMetadataLog)."""
    return ManualQuorumInfo(is_leader=True, leader_id=node_id, leader_address=address, term=1)

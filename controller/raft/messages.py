"""Values the Raft core exchanges with its peers and its driver.

Everything here is an immutable value: the core never mutates a message after handing it out,
so a driver may queue, retry or serialize them freely. Node ids are positive integers; ``None``
means "no vote" / "no known leader".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EntryKind(enum.IntEnum):
    NORMAL = 0
    # Appended by every new leader: committing an entry of its own term is the only way it
    # learns which earlier entries are committed (Raft section 5.4.2 / 8).
    NOOP = 1
    # A whole voter set (controller.raft.membership.VoterSet): the latest one in a node's log,
    # committed or not, is that node's configuration. Applied by the Raft core, not the
    # state machine.
    CONFIG = 2


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash: voting for two candidates in one term breaks safety."""

    term: int = 0
    vote: int | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    voters: frozenset[int] = frozenset()
    observers: frozenset[int] = frozenset()
    # The payload of the latest CONFIG entry the snapshot covers; b"" if the log never had one
    # (the static controller.quorum.voters still apply).
    config: bytes = b""


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class _Header:
    src: int
    dst: int
    term: int


@dataclass(frozen=True, slots=True)
class VoteRequest(_Header):
    last_log_index: int
    last_log_term: int
    # Set when the campaign was triggered by TimeoutNow: the old leader asked for it, so voters
    # must not ignore it because of the leader lease.
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse(_Header):
    granted: bool


@dataclass(frozen=True, slots=True)
class PreVoteRequest(_Header):
    """Carries the term the sender *would* campaign in; nobody changes state on it."""

    last_log_index: int
    last_log_term: int


@dataclass(frozen=True, slots=True)
class PreVoteResponse(_Header):
    granted: bool


@dataclass(frozen=True, slots=True)
class AppendEntriesRequest(_Header):
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    commit: int


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse(_Header):
    success: bool
    # On success: highest index known to match the leader's log.
    match_index: int = 0
    # On rejection: the prev_log_index that did not match, plus a hint (index, term) of the
    # follower's last entry whose term is <= the leader's prev_log_term, so the leader can skip
    # a whole conflicting term per round trip instead of one entry.
    rejected_index: int = 0
    reject_hint_index: int = 0
    reject_hint_term: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat(_Header):
    # min(follower's match, leader commit): a follower may only commit what it is known to hold.
    commit: int


@dataclass(frozen=True, slots=True)
class HeartbeatResponse(_Header):
    pass


@dataclass(frozen=True, slots=True)
class InstallSnapshotRequest(_Header):
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse(_Header):
    match_index: int


@dataclass(frozen=True, slots=True)
class TimeoutNow(_Header):
    """Leader -> transfer target: campaign immediately, skipping PreVote."""


Message = (
    VoteRequest
    | VoteResponse
    | PreVoteRequest
    | PreVoteResponse
    | AppendEntriesRequest
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshotRequest
    | InstallSnapshotResponse
    | TimeoutNow
)

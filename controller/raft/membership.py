"""The voter set as Raft log state (Kafka's KIP-853, the Raft thesis section 4).

A ``CONFIG`` entry carries a whole :class:`VoterSet`. Every node uses the latest one in its
log, committed or not, and falls back to the one its snapshot recorded, then to the static
``controller.quorum.voters`` it was started with. A truncated ``CONFIG`` entry therefore
reverts the set by itself: nothing else has to be undone.

Changes are single-server (one voter added or removed per entry): any majority of the old set
and any majority of the new one then overlap, so no two leaders can be elected in one term
across the change. The leader takes one change at a time, and only once an entry of its own
term is committed (otherwise a change from an earlier leader that is not yet known to be
committed could be overtaken; see Ongaro's "bug in single-server membership changes").

The endpoint of each voter travels with it, so a node learns how to reach a new voter from the
log rather than from its own configuration file. The core treats endpoints as opaque text.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class MembershipError(ValueError):
    """A ``CONFIG`` entry's payload is not a voter set: corrupted storage or a bug."""


@dataclass(frozen=True, slots=True)
class VoterSet:
    # Sorted (node id, endpoint) pairs; the endpoint is "" where none is known (static voters
    # whose addresses live in the node's configuration file).
    voters: tuple[tuple[int, str], ...]

    def __post_init__(self) -> None:
        ids = [v for v, _ in self.voters]
        if not ids:
            raise MembershipError("a voter set must have at least one voter")
        if any(v <= 0 for v in ids) or len(set(ids)) != len(ids):
            raise MembershipError(f"voter ids must be distinct positive integers, got {ids}")
        if list(self.voters) != sorted(self.voters):
            object.__setattr__(self, "voters", tuple(sorted(self.voters)))

    @classmethod
    def of(cls, voters: Mapping[int, str] | Iterable[int]) -> VoterSet:
        if isinstance(voters, Mapping):
            return cls(tuple(sorted((int(k), str(v)) for k, v in voters.items())))
        return cls(tuple(sorted((int(v), "") for v in voters)))

    @property
    def ids(self) -> frozenset[int]:
        return frozenset(v for v, _ in self.voters)

    @property
    def endpoints(self) -> dict[int, str]:
        return dict(self.voters)

    def with_voter(self, node_id: int, endpoint: str) -> VoterSet:
        return VoterSet.of({**self.endpoints, node_id: endpoint})

    def without_voter(self, node_id: int) -> VoterSet:
        return VoterSet.of({k: v for k, v in self.endpoints.items() if k != node_id})

    def encode(self) -> bytes:
        return json.dumps({"voters": [[v, e] for v, e in self.voters]},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> VoterSet:
        try:
            raw = json.loads(data)
            pairs = tuple((int(v), str(e)) for v, e in raw["voters"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MembershipError(f"malformed voter set {data[:80]!r}: {exc}") from exc
        return cls(pairs)


class RefusalReason(enum.Enum):
    """Why a leader refused a voter change; the runtime maps these to Kafka error codes."""

    # Another change is appended but not committed yet (Kafka: REQUEST_TIMED_OUT, retriable).
    CHANGE_IN_PROGRESS = "change_in_progress"
    # The leader has not committed an entry of its own term yet (retriable).
    NO_COMMIT_IN_TERM = "no_commit_in_term"
    # Kafka: DUPLICATE_VOTER.
    DUPLICATE_VOTER = "duplicate_voter"
    # Kafka: VOTER_NOT_FOUND.
    VOTER_NOT_FOUND = "voter_not_found"
    # The node to add is not replicated to or lags the leader's commit (retriable).
    NOT_CAUGHT_UP = "not_caught_up"
    # More than one voter would change, or nothing would: not a single-server change.
    NOT_SINGLE_CHANGE = "not_single_change"


class MembershipChangeRefused(Exception):
    def __init__(self, reason: RefusalReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)

    @property
    def retriable(self) -> bool:
        return self.reason in (RefusalReason.CHANGE_IN_PROGRESS, RefusalReason.NO_COMMIT_IN_TERM,
                               RefusalReason.NOT_CAUGHT_UP)

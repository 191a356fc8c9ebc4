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
log rather than from its own configuration file. So does the directory id a voter was added
with (KIP-858, its ``meta.properties``): a node id names one voter, and the directory id says
which copy of that node's data it is, so a removal can name exactly the voter it means. Voters
of the static ``controller.quorum.voters`` have none recorded. The core treats endpoints and
directory ids as opaque text.
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
    # Sorted (node id, directory id) of the voters whose directory id is known.
    directories: tuple[tuple[int, str], ...] = ()

    def __post_init__(self) -> None:
        ids = [v for v, _ in self.voters]
        if not ids:
            raise MembershipError("a voter set must have at least one voter")
        if any(v <= 0 for v in ids) or len(set(ids)) != len(ids):
            raise MembershipError(f"voter ids must be distinct positive integers, got {ids}")
        if list(self.voters) != sorted(self.voters):
            object.__setattr__(self, "voters", tuple(sorted(self.voters)))
        dirs = tuple(sorted((v, d) for v, d in self.directories if d))
        if any(v not in ids for v, _ in dirs) or len({v for v, _ in dirs}) != len(dirs):
            raise MembershipError(f"directory ids {dirs} do not name distinct voters {ids}")
        object.__setattr__(self, "directories", dirs)

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

    @property
    def directory_ids(self) -> dict[int, str]:
        return dict(self.directories)

    def with_voter(self, node_id: int, endpoint: str, directory_id: str = "") -> VoterSet:
        dirs = {k: d for k, d in self.directories if k != node_id}
        if directory_id:
            dirs[node_id] = directory_id
        return VoterSet(VoterSet.of({**self.endpoints, node_id: endpoint}).voters,
                        tuple(dirs.items()))

    def without_voter(self, node_id: int) -> VoterSet:
        return VoterSet(VoterSet.of({k: v for k, v in self.endpoints.items()
                                     if k != node_id}).voters,
                        tuple((k, d) for k, d in self.directories if k != node_id))

    def with_endpoints(self, endpoints: Mapping[int, str]) -> VoterSet:
        """The same voters and directory ids with these endpoints (ids must match)."""
        return VoterSet(VoterSet.of(endpoints).voters, self.directories)

    def encode(self) -> bytes:
        # "dirs" only when there are any: an entry without stays byte-identical to what
        # versions before directory ids wrote, and those versions ignore the key.
        body: dict[str, object] = {"voters": [[v, e] for v, e in self.voters]}
        if self.directories:
            body["dirs"] = [[v, d] for v, d in self.directories]
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> VoterSet:
        try:
            raw = json.loads(data)
            pairs = tuple((int(v), str(e)) for v, e in raw["voters"])
            dirs = tuple((int(v), str(d)) for v, d in raw.get("dirs", ()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MembershipError(f"malformed voter set {data[:80]!r}: {exc}") from exc
        return cls(pairs, dirs)


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
    # The node to add runs on another directory than the request names (Kafka's tool read
    # another meta.properties than the running node's).
    DIRECTORY_MISMATCH = "directory_mismatch"


class MembershipChangeRefused(Exception):
    def __init__(self, reason: RefusalReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)

    @property
    def retriable(self) -> bool:
        return self.reason in (RefusalReason.CHANGE_IN_PROGRESS, RefusalReason.NO_COMMIT_IN_TERM,
                               RefusalReason.NOT_CAUGHT_UP)

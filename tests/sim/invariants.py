"""Named Raft safety invariants, checked after every simulated event.

The checker is white-box: it reads each live node's in-memory log, term and role. It keeps
its own record of every entry any node ever reported committed, so a later disagreement is
caught no matter which node holds the bad copy.

ElectionSafety       at most one leader per term, over the whole history.
TermMonotonic        a live node's term never decreases; after a restart it is at least the
                     term that was durable on its disk.
CommitMonotonic      a live node's commit index never decreases; after a restart it is at least
                     the commit that was durable on its disk.
LogMatching          every node's committed entries equal the history's committed entries,
                     index by index (retained log and snapshot boundary term).
StateMachineSafety   every node applies the same state (digest chain) at every index, in order.
LeaderCompleteness   a leader of term T holds every entry seen committed at a term < T.
VoteSafety           a voter never grants votes to two candidates in the same term, even across
                     crashes (i.e. the vote was durable before the grant was sent).
SingleVoterChange    consecutive voter sets in the committed history differ by at most one
                     voter (KIP-853's single-server changes, which keep old and new majorities
                     overlapping).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from odradek.controller.raft import (
    Entry,
    EntryKind,
    HardState,
    Message,
    RaftNode,
    Role,
    VoteResponse,
    VoterSet,
)


class InvariantViolation(AssertionError):
    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        self.detail = detail
        super().__init__(f"{name}: {detail}")


class LivenessViolation(AssertionError):
    pass


class CheckedNode(Protocol):
    id: int
    raft: RaftNode | None


@dataclass
class _NodeMarks:
    term: int = 0
    commit: int = 0


class InvariantChecker:
    def __init__(self) -> None:
        self.leader_of_term: dict[int, int] = {}
        # committed[i] is the entry first seen committed at index i (None: not seen yet, e.g.
        # only ever inside snapshots); seen_term[i] the observer's term at that moment, an
        # upper bound on the term in which it was committed.
        self.committed: list[Entry | None] = [None]
        self.seen_term: list[int] = [0]
        self.digests: dict[int, bytes] = {}
        self.votes: dict[tuple[int, int], int] = {}
        self._marks: dict[int, _NodeMarks] = {}
        self._completeness_checked: set[int] = set()

    # ---------------------------------------------------------------- event hooks

    def on_restart(self, node_id: int, raft: RaftNode, durable: HardState) -> None:
        marks = self._marks.setdefault(node_id, _NodeMarks())
        if raft.term < durable.term:
            raise InvariantViolation(
                "TermMonotonic",
                f"node {node_id} restarted at term {raft.term} below durable {durable.term}",
            )
        if raft.log.committed < durable.commit:
            raise InvariantViolation(
                "CommitMonotonic",
                f"node {node_id} restarted with commit {raft.log.committed} below durable "
                f"{durable.commit}",
            )
        # While down, nothing of it was observable; restart marks what it recovered.
        marks.term = raft.term
        marks.commit = raft.log.committed

    def on_send(self, m: Message) -> None:
        if isinstance(m, VoteResponse) and m.granted:
            prev = self.votes.setdefault((m.src, m.term), m.dst)
            if prev != m.dst:
                raise InvariantViolation(
                    "VoteSafety",
                    f"node {m.src} granted its term-{m.term} vote to {prev} and to {m.dst}",
                )

    def on_apply(self, node_id: int, index: int, digest: bytes) -> None:
        prev = self.digests.setdefault(index, digest)
        if prev != digest:
            raise InvariantViolation(
                "StateMachineSafety",
                f"node {node_id} state at index {index} is {digest.hex()}, "
                f"another node had {prev.hex()}",
            )

    # ---------------------------------------------------------------- per event

    def observe(self, nodes: Iterable[CheckedNode]) -> None:
        live = [n for n in nodes if n.raft is not None]
        leaders = [n for n in live if n.raft is not None and n.raft.role is Role.LEADER]
        for n in live:
            raft = n.raft
            assert raft is not None
            marks = self._marks.setdefault(n.id, _NodeMarks())
            if raft.term < marks.term:
                raise InvariantViolation(
                    "TermMonotonic", f"node {n.id} term went from {marks.term} to {raft.term}"
                )
            marks.term = raft.term
            if raft.log.committed < marks.commit:
                raise InvariantViolation(
                    "CommitMonotonic",
                    f"node {n.id} commit went from {marks.commit} to {raft.log.committed}",
                )
            marks.commit = raft.log.committed
            self._check_committed(n.id, raft, leaders)
        for n in leaders:
            raft = n.raft
            assert raft is not None
            prev = self.leader_of_term.setdefault(raft.term, n.id)
            if prev != n.id:
                raise InvariantViolation(
                    "ElectionSafety", f"nodes {prev} and {n.id} both led term {raft.term}"
                )
            if raft.term not in self._completeness_checked:
                self._completeness_checked.add(raft.term)
                for i in range(1, len(self.committed)):
                    self._check_leader_has(n.id, raft, i)

    def _check_committed(self, node_id: int, raft: RaftNode, leaders: list[CheckedNode]) -> None:
        log = raft.log
        base = log.snapshot_index
        if base > 0 and base < len(self.committed):
            known = self.committed[base]
            if known is not None and known.term != log.snapshot_term:
                raise InvariantViolation(
                    "LogMatching",
                    f"node {node_id} snapshot ends at ({base}, term {log.snapshot_term}) but "
                    f"committed entry {base} has term {known.term}",
                )
        c = log.committed
        if c <= base:
            return
        mine = log.entries[: c - base]
        if self.committed[base + 1 : c + 1] == mine:
            return  # the common case: nothing new, compared mostly by identity
        for i in range(base + 1, c + 1):
            e = mine[i - base - 1]
            if i >= len(self.committed):
                self.committed.extend([None] * (i + 1 - len(self.committed)))
                self.seen_term.extend([0] * (i + 1 - len(self.seen_term)))
            known = self.committed[i]
            if known is None:
                self.committed[i] = e
                self.seen_term[i] = raft.term
                if e.kind is EntryKind.CONFIG:
                    self._check_single_change(i, e)
                for leader in leaders:
                    if leader.raft is not None and leader.raft.term > raft.term:
                        self._check_leader_has(leader.id, leader.raft, i)
            elif known != e:
                raise InvariantViolation(
                    "LogMatching",
                    f"node {node_id} has committed entry {e} at index {i}; history has {known}",
                )

    def _check_single_change(self, index: int, e: Entry) -> None:
        new = VoterSet.decode(e.data).ids
        for j in range(index - 1, 0, -1):
            prev = self.committed[j]
            if prev is None:
                return  # history before j is only known through snapshots
            if prev.kind is EntryKind.CONFIG:
                old = VoterSet.decode(prev.data).ids
                if len(old ^ new) > 1:
                    raise InvariantViolation(
                        "SingleVoterChange",
                        f"committed voters {sorted(old)} at {j} became {sorted(new)} at {index}",
                    )
                return

    def _check_leader_has(self, node_id: int, raft: RaftNode, index: int) -> None:
        known = self.committed[index]
        if known is None or self.seen_term[index] >= raft.term:
            return
        log = raft.log
        if index <= log.snapshot_index:
            return  # covered by its snapshot, whose boundary term is checked above
        if index > log.last_index or log.entry(index) != known:
            have = log.entry(index) if index <= log.last_index else None
            raise InvariantViolation(
                "LeaderCompleteness",
                f"leader {node_id} of term {raft.term} has {have} at index {index}, but {known} "
                f"was committed by term {self.seen_term[index]}",
            )

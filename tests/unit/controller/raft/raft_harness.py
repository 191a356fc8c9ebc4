"""A tiny synchronous driver for unit tests: nodes, memory storage, and a hand-held network."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from odradek.controller.raft import (
    Entry,
    HardState,
    MemoryStorage,
    Message,
    RaftConfig,
    RaftNode,
    RaftStorageView,
    Ready,
    Role,
    Snapshot,
)

Filter = Callable[[Message], bool]


class Cluster:
    def __init__(
        self,
        voters: Iterable[int] = (1, 2, 3),
        observers: Iterable[int] = (),
        views: dict[int, RaftStorageView] | None = None,
        **config: object,
    ) -> None:
        self.voters = frozenset(voters)
        self.observers = frozenset(observers)
        self.config = config
        self.stores = {
            i: MemoryStorage((views or {}).get(i)) for i in sorted(self.voters | self.observers)
        }
        self.nodes: dict[int, RaftNode | None] = {}
        self.applied: dict[int, list[Entry]] = {i: [] for i in self.stores}
        self.restored: dict[int, list[Snapshot]] = {i: [] for i in self.stores}
        self.readies: dict[int, list[Ready]] = {i: [] for i in self.stores}
        self.queue: list[Message] = []
        self.sent: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()
        self.drop: Filter | None = None
        for i in self.stores:
            self.start(i)

    def start(self, i: int) -> RaftNode:
        cfg = RaftConfig(i, self.voters, self.observers, **self.config)  # type: ignore[arg-type]
        node = RaftNode(cfg, self.stores[i].view(), random.Random(i))
        self.nodes[i] = node
        return node

    def add_observer(self, i: int) -> RaftNode:
        self.observers |= {i}
        self.stores[i] = MemoryStorage()
        self.applied[i], self.restored[i], self.readies[i] = [], [], []
        return self.start(i)

    def crash(self, i: int) -> None:
        """Lose everything not persisted (the pending Ready, queued messages)."""
        self.nodes[i] = None
        self.queue = [m for m in self.queue if m.dst != i]

    def __getitem__(self, i: int) -> RaftNode:
        node = self.nodes[i]
        assert node is not None, f"node {i} is down"
        return node

    def up(self) -> list[RaftNode]:
        return [n for n in self.nodes.values() if n is not None]

    def leader(self) -> RaftNode | None:
        leaders = [n for n in self.up() if n.role is Role.LEADER]
        return max(leaders, key=lambda n: n.term) if leaders else None

    def isolate(self, i: int) -> None:
        for j in self.stores:
            if j != i:
                self.blocked |= {(i, j), (j, i)}

    def heal(self) -> None:
        self.blocked.clear()
        self.drop = None

    def process(self, i: int) -> Ready | None:
        node = self.nodes[i]
        if node is None or not node.has_ready():
            return None
        rd = node.ready()
        self.readies[i].append(rd)
        self.stores[i].persist(rd)
        for m in rd.messages:
            self.sent.append(m)
            self.queue.append(m)
        if rd.snapshot_to_apply is not None:
            self.restored[i].append(rd.snapshot_to_apply)
            self.applied[i] = []  # the state machine is replaced wholesale
        self.applied[i].extend(rd.committed_entries)
        node.advance(rd)
        return rd

    def deliver_one(self) -> bool:
        while self.queue:
            m = self.queue.pop(0)
            if (m.src, m.dst) in self.blocked or (self.drop is not None and self.drop(m)):
                continue
            node = self.nodes[m.dst]
            if node is not None:
                node.step(m)
            return True
        return False

    def stabilize(self, limit: int = 10_000) -> None:
        """Process readies and deliver messages until nothing moves."""
        for _ in range(limit):
            moved = False
            for i in list(self.nodes):
                if self.process(i) is not None:
                    moved = True
            if self.deliver_one():
                moved = True
            if not moved:
                return
        raise AssertionError("cluster did not stabilize")

    def tick(self, i: int, n: int = 1) -> None:
        for _ in range(n):
            self[i].tick()

    def tick_all(self, n: int = 1, stabilize: bool = True) -> None:
        for _ in range(n):
            for node in self.up():
                node.tick()
            if stabilize:
                self.stabilize()

    def campaign(self, i: int) -> None:
        """Let node i's election timer fire first, then run to quiescence."""
        node = self[i]
        self.tick(i, node.randomized_election_timeout - node.election_elapsed)
        self.stabilize()

    def propose(self, data: bytes) -> int:
        leader = self.leader()
        assert leader is not None, "no leader"
        index = leader.propose(data)
        self.stabilize()
        return index

    def log_of(self, i: int) -> list[tuple[int, int]]:
        """(index, term) of node i's retained log."""
        return [(e.index, e.term) for e in self[i].log.entries]


def view(term: int, terms: list[int], commit: int = 0, vote: int | None = None) -> RaftStorageView:
    """A storage view whose log has one entry per element of ``terms``."""
    entries = tuple(Entry(t, i + 1, b"e%d" % (i + 1)) for i, t in enumerate(terms))
    return RaftStorageView(HardState(term, vote, commit), entries)

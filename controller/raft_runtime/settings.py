"""Configuration of one controller's Raft runtime."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from odradek.controller.grpc_security import PLAINTEXT, GrpcSecurity
from odradek.controller.raft import RaftConfig


def parse_quorum(text: str) -> dict[int, str]:
    """``1@host:port,2@host:port`` (Kafka's controller.quorum.voters) -> {1: "host:port"}."""
    out: dict[int, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        ident, sep, addr = item.partition("@")
        host, _, port = addr.rpartition(":")
        if not sep or not ident.strip().isdigit() or not host or not port.isdigit():
            raise ValueError(f"{item!r} is not id@host:port")
        if int(ident) in out:
            raise ValueError(f"node {ident} is listed twice in {text!r}")
        out[int(ident)] = addr
    return out


@dataclass(frozen=True)
class RaftSettings:
    node_id: int
    # controller.quorum.voters: id -> "host:port" of each voter's controller gRPC listener.
    voters: Mapping[int, str]
    # Where the Raft log, hard state and snapshot live (one directory per node, never shared).
    data_dir: Path
    # Non-voting members (brokers following the metadata log), id -> "host:port". Voters must
    # list them to replicate to them; a node whose id is here rather than in voters follows
    # the log and never votes or campaigns.
    observers: Mapping[int, str] = field(default_factory=dict)
    # How the peers' gRPC channels are secured (controller/grpc_security.py).
    security: GrpcSecurity = PLAINTEXT
    # Batches carrying another cluster id are refused; "" disables the check.
    cluster_id: str = ""
    # This node's data directory id (meta.properties, Kafka's Uuid text; "" none): told to
    # the leader while observing, so AddRaftVoter can check it names this copy of the node.
    directory_id: str = ""
    # Time is counted in ticks: elections start after election_tick..2*election_tick ticks
    # without a leader (1-2 s by default), the leader heartbeats every heartbeat_tick (300 ms:
    # three or more heartbeats per election timeout, as etcd advises; each is an RPC to
    # every peer, and at 100 ms they were a third of an idle controller's CPU). Commits
    # reach followers at once (an append follows each commit), crashed peers are noticed
    # by their connection (transport.py), so heartbeats only prove the leader alive.
    tick_ms: int = 100
    election_tick: int = 10
    heartbeat_tick: int = 3
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_msg: int = 64
    max_inflight_msgs: int = 256
    max_uncommitted_entries: int = 4096
    # Take a snapshot of the metadata image after this many records since the last one.
    snapshot_interval_records: int = 10_000
    # Per peer: messages waiting to be sent; beyond this the oldest are dropped.
    peer_queue_size: int = 4096
    # Messages per Send RPC.
    max_batch_messages: int = 256
    rpc_timeout_ms: int = 5_000
    # Backoff after a failed Send to a peer, doubling up to the maximum (with jitter).
    reconnect_backoff_ms: int = 50
    reconnect_backoff_max_ms: int = 2_000
    # stop() on the leader waits at most this long for a follower to take over; None: one
    # election timeout (the core abandons a transfer after that anyway).
    transfer_timeout_ms: int | None = None
    # A new leader's append() waits at most this long for the records of earlier terms to be
    # applied; None: two election timeouts.
    leader_ready_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "voters", dict(self.voters))
        object.__setattr__(self, "observers", dict(self.observers))
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.node_id not in self.voters and self.node_id not in self.observers:
            raise ValueError(
                f"node {self.node_id} is neither a voter ({sorted(self.voters)}) nor an observer "
                f"({sorted(self.observers)}); add it to controller.quorum.voters"
            )
        if set(self.voters) & set(self.observers):
            raise ValueError("a node cannot be both a voter and an observer")
        for ident, addr in {**self.voters, **self.observers}.items():
            host, _, port = addr.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"address of node {ident} must be host:port, got {addr!r}")
        if self.tick_ms < 1 or self.snapshot_interval_records < 1:
            raise ValueError("tick_ms and snapshot_interval_records must be >= 1")
        if min(self.peer_queue_size, self.max_batch_messages, self.rpc_timeout_ms,
               self.reconnect_backoff_ms) < 1:
            raise ValueError("queue, batch, timeout and backoff settings must be >= 1")
        self.raft_config()  # validates the Raft knobs with the core's own rules

    def raft_config(self) -> RaftConfig:
        return RaftConfig(
            node_id=self.node_id,
            voters=frozenset(self.voters),
            observers=frozenset(self.observers),
            election_tick=self.election_tick,
            heartbeat_tick=self.heartbeat_tick,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            max_entries_per_msg=self.max_entries_per_msg,
            max_inflight_msgs=self.max_inflight_msgs,
            max_uncommitted_entries=self.max_uncommitted_entries,
        )

    @property
    def election_timeout_s(self) -> float:
        return self.election_tick * self.tick_ms / 1000

    @property
    def transfer_timeout_s(self) -> float:
        if self.transfer_timeout_ms is not None:
            return self.transfer_timeout_ms / 1000
        return self.election_timeout_s

    @property
    def leader_ready_timeout_s(self) -> float:
        if self.leader_ready_timeout_ms is not None:
            return self.leader_ready_timeout_ms / 1000
        return 2 * self.election_timeout_s

    def peers(self) -> dict[int, str]:
        """Everyone this node may need to send to."""
        return {i: a for i, a in {**self.voters, **self.observers}.items() if i != self.node_id}

"""What the console learns from a node's /metrics page: its health as the node itself
reports it. Pure: text in, typed views out (the scrape is in ``app``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

_RAFT_ROLES = ("follower", "pre_candidate", "candidate", "leader", "observer")


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """One node as its metrics describe it. ``up`` is False when the scrape failed, and
    then every other field is unknown (None or empty)."""

    url: str
    up: bool
    error: str | None = None
    controller_active: bool | None = None
    raft_role: str | None = None
    raft_term: int | None = None
    raft_leader_id: int | None = None
    metadata_offset: int | None = None
    partitions_led: int | None = None
    partitions_hosted: int | None = None
    under_replicated: int | None = None
    under_min_isr: int | None = None
    offline_log_partitions: int | None = None
    connections: int | None = None
    # (topic, partition) -> bytes of that partition's log on this node.
    log_sizes: dict[tuple[str, int], int] = field(default_factory=dict)


_GAUGES = {
    "odradek_raft_term": "raft_term",
    "odradek_raft_leader_id": "raft_leader_id",
    "odradek_metadata_offset": "metadata_offset",
    "odradek_partitions_led": "partitions_led",
    "odradek_partitions_hosted": "partitions_hosted",
    "odradek_under_replicated_partitions": "under_replicated",
    "odradek_under_min_isr_partitions": "under_min_isr",
    "odradek_offline_log_partitions": "offline_log_partitions",
}


def node_health(url: str, text: str) -> NodeHealth:
    """The health of the node whose /metrics page (at ``url``) is ``text``. Families the
    node does not export (a broker-only node has no Raft role) stay None."""
    gauges: dict[str, int] = {}
    active: bool | None = None
    role: str | None = None
    sizes: dict[tuple[str, int], int] = {}
    connections = 0
    saw_connections = False
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if name in _GAUGES:
                gauges[_GAUGES[name]] = int(s.value)
            elif name == "odradek_controller_active":
                active = s.value >= 1
            elif name == "odradek_raft_role" and s.value >= 1:
                if s.labels.get("role") in _RAFT_ROLES:
                    role = s.labels["role"]
            elif name == "odradek_log_size_bytes":
                try:
                    key = (s.labels["topic"], int(s.labels["partition"]))
                except (KeyError, ValueError):
                    continue
                sizes[key] = int(s.value)
            elif name == "odradek_connections":
                saw_connections = True
                connections += int(s.value)
    g = gauges.get
    return NodeHealth(
        url=url, up=True, controller_active=active, raft_role=role,
        raft_term=g("raft_term"), raft_leader_id=g("raft_leader_id"),
        metadata_offset=g("metadata_offset"), partitions_led=g("partitions_led"),
        partitions_hosted=g("partitions_hosted"), under_replicated=g("under_replicated"),
        under_min_isr=g("under_min_isr"), offline_log_partitions=g("offline_log_partitions"),
        connections=connections if saw_connections else None, log_sizes=sizes)


def unreachable(url: str, error: str) -> NodeHealth:
    return NodeHealth(url=url, up=False, error=error)


@dataclass(frozen=True, slots=True)
class QuorumView:
    """The controller quorum as the reachable controllers report it."""

    leader_id: int | None
    term: int | None
    # node url -> its Raft role ("leader", "follower", ...); unreachable nodes are absent.
    roles: dict[str, str]
    # More than one leader id among the nodes: a split view, usually seconds after an
    # election (a node that has not heard of the new leader yet).
    disagreement: bool


def quorum(nodes: list[NodeHealth]) -> QuorumView:
    """The quorum's leader and term: the view of the node with the highest term wins (a
    node that missed an election still reports the old term's leader)."""
    voters = [n for n in nodes if n.up and n.raft_role is not None]
    if not voters:
        return QuorumView(None, None, {}, False)
    newest = max(voters, key=lambda n: n.raft_term or -1)
    leaders = {n.raft_leader_id for n in voters
               if n.raft_leader_id is not None and n.raft_leader_id >= 0}
    leader = newest.raft_leader_id if (newest.raft_leader_id or -1) >= 0 else None
    return QuorumView(leader, newest.raft_term,
                      {n.url: n.raft_role for n in voters if n.raft_role},
                      len(leaders) > 1)

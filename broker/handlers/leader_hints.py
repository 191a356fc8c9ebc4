"""KIP-951 leader hints: an answer that tells a client "not the leader" also names the
current leader and where to reach it, so the client goes there without a metadata refresh
(Fetch v16+, Produce v10+). Kafka's brokers give them the same way: the leader as this
node sees it (its replica, else the metadata), and the addresses of those leaders that are
alive on the listener the request came in on."""

from __future__ import annotations

from typing import Any, Protocol

from odradek.broker.replica_manager import ReplicaManager
from odradek.controller.metadata import MetadataImage


class LeaderHintNode(Protocol):
    @property
    def image(self) -> MetadataImage: ...

    @property
    def replicas(self) -> ReplicaManager: ...


class LeaderHints:
    """Collects the hints of one answer: ``current_leader`` per partition, then the
    ``node_endpoints`` of the leaders named."""

    def __init__(self, node: LeaderHintNode, listener: str) -> None:
        self._node = node
        self._listener = listener
        self._endpoints: dict[int, dict[str, Any]] = {}

    def current_leader(self, topic: str, index: int) -> dict[str, int]:
        node = self._node
        p = node.replicas.get((topic, index))
        if p is not None:
            leader, epoch = p.leader_id, p.leader_epoch
        else:
            reg = node.image.partition(topic, index)
            leader, epoch = (reg.leader, reg.leader_epoch) if reg is not None else (-1, -1)
        ep = node.image.endpoint(leader, self._listener) if leader >= 0 else None
        if ep is not None:
            self._endpoints[leader] = {"node_id": leader, "host": ep.host, "port": ep.port,
                                       "rack": ep.rack}
        return {"leader_id": leader, "leader_epoch": epoch}

    def node_endpoints(self) -> list[dict[str, Any]]:
        return [self._endpoints[i] for i in sorted(self._endpoints)]

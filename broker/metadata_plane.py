"""How a node gets its cluster metadata, as the rest of the node sees it.

A node either is its own controller over a local metadata log (single node) or belongs to a
Raft controller quorum. Either way it gives the node a ``MetadataLoader`` whose listeners see
every committed record batch, the controller's operations (``ControllerApi``), and the
broker's lease (registration, unfencing, controlled shutdown). The two implementations, and
the wiring of the controller, Raft and gRPC they need, live with the node's entry point
(odradek.broker.cli.metadata_plane); this module only names what the node uses.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client.registry import Collector

from odradek.controller.metadata import MetadataLoader
from odradek.controller.metadata.requests import ControllerApi, QuorumDescription
from odradek.storage.meta_properties import ensure_meta_properties

CLEAN_SHUTDOWN_MARKER = ".clean-shutdown"


@dataclass(frozen=True)
class NodeIdentity:
    """Who this node process is: read from, or first written to, its data directory."""

    node_id: int
    data_dir: Path
    cluster_id: str
    # New for every start of the process: the controller tells a restart from a duplicate.
    incarnation_id: str
    # Whether the previous process stopped cleanly (every log flushed and closed). A replica
    # that crashed may have lost its unflushed tail, so the controller must not trust it as
    # the last member of an ISR (KIP-966).
    previous_shutdown_clean: bool
    # This data directory's id (meta.properties' directory.id, Kafka's Uuid text): what a
    # controller tells the Raft leader it is, and what AddRaftVoter must name to add it.
    directory_id: str = ""


class MetadataPlane(Protocol):
    @property
    def loader(self) -> MetadataLoader: ...

    @property
    def controller(self) -> ControllerApi: ...

    @property
    def broker_epoch(self) -> int: ...

    @property
    def is_active_controller(self) -> bool:
        """This node is the controller that accepts metadata writes now."""
        ...

    @property
    def active_controller_id(self) -> int:
        """The node id of the active controller as this node knows it (-1: none known)."""
        ...

    async def start(self, listeners: list[tuple[str, str, int]]) -> None:
        """Start the controller side (if any) and register the broker (if any); returns
        while the broker may still be fenced."""

    async def wait_unfenced(self, timeout: float) -> None:
        """Until the controller has unfenced this broker; TimeoutError says why not yet."""

    async def controlled_shutdown(self) -> None:
        """Ask the controller to move this broker's leaderships away."""

    async def stop(self) -> None: ...

    async def describe_quorum(self) -> QuorumDescription:
        """The metadata quorum as its leader describes it (DescribeQuorum);
        ControllerUnavailable when no leader answers."""
        ...

    async def add_raft_voter(self, node_id: int, address: str, timeout_s: float,
                             directory_id: str) -> None:
        """Make controller ``node_id`` (its controller listener at ``address``, its data
        directory ``directory_id``, "" unchecked) a voter once it has caught up, and wait for
        the change to commit (AddRaftVoter).
        VoterChangeFailed says why not; ControllerUnavailable when no controller answers."""
        ...

    async def remove_raft_voter(self, node_id: int, timeout_s: float,
                                directory_id: str) -> None:
        """Remove voter ``node_id`` (``directory_id`` must be the one the voter set records
        for it, if any) and wait for the change to commit (RemoveRaftVoter)."""
        ...

    def collectors(self) -> list[Collector]:
        """Prometheus collectors of the controller side (the Raft quorum), if any."""
        ...


def derived_cluster_id(voters: tuple[tuple[int, str, int], ...]) -> str:
    """Nodes of one quorum agree on a cluster id without coordination when none is set."""
    text = ",".join(f"{i}@{h}:{p}" for i, h, p in sorted(voters))
    return uuid.uuid5(uuid.NAMESPACE_URL, f"odradek:{text}").hex


def _random_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def node_identity(node_id: int, data_dir: Path, configured_cluster_id: str,
                  voters: tuple[tuple[int, str, int], ...]) -> NodeIdentity:
    """Read (or establish) the node's identity; consumes the clean-shutdown marker."""
    wanted = configured_cluster_id or (derived_cluster_id(voters) if voters else None)
    meta = ensure_meta_properties(data_dir, node_id, wanted, _random_cluster_id)
    marker = data_dir / CLEAN_SHUTDOWN_MARKER
    clean = marker.exists() or not (data_dir / "logs").exists()
    marker.unlink(missing_ok=True)
    return NodeIdentity(node_id, data_dir, meta.cluster_id, str(uuid.uuid4()), clean,
                        meta.directory_id)

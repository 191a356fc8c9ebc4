"""Raft among the controllers, over gRPC: the runtime around the sans-I/O core.

- ``RaftMetadataLog``: the Raft-replicated metadata log (MetadataLog protocol + QuorumInfo);
- ``RaftDriver``: the asyncio loop around ``controller.raft.RaftNode``;
- ``GrpcTransport`` / ``RaftServicer``: messages out / in;
- ``wire``: core messages <-> proto/raft.proto; ``snapshot``: metadata image <-> records.
"""

from odradek.controller.raft_runtime.driver import (
    DriverStoppedError,
    LeadershipLostError,
    RaftDriver,
)
from odradek.controller.raft_runtime.metadata_log import (
    NO_LEADER,
    DataDirInUseError,
    OffsetCompactedError,
    RaftMetadataLog,
    RaftNotControllerError,
)
from odradek.controller.raft_runtime.service import RaftServicer
from odradek.controller.raft_runtime.settings import RaftSettings, parse_quorum
from odradek.controller.raft_runtime.transport import (
    CHANNEL_OPTIONS,
    SERVER_OPTIONS,
    GrpcTransport,
    Transport,
)

__all__ = [
    "CHANNEL_OPTIONS",
    "NO_LEADER",
    "SERVER_OPTIONS",
    "DataDirInUseError",
    "DriverStoppedError",
    "GrpcTransport",
    "LeadershipLostError",
    "OffsetCompactedError",
    "RaftDriver",
    "RaftMetadataLog",
    "RaftNotControllerError",
    "RaftServicer",
    "RaftSettings",
    "Transport",
    "parse_quorum",
]

"""The broker-facing controller service: gRPC servicer, broker sessions, conversions."""

from odradek.controller.service.metadata_stream import SnapshotSource, SnapshotUnavailable
from odradek.controller.service.quorum_info import (
    NO_LEADER,
    ManualQuorumInfo,
    QuorumInfo,
    StaticLeader,
)
from odradek.controller.service.redirect import LEADER_ADDRESS_KEY, LEADER_ID_KEY, Redirect
from odradek.controller.service.servicer import ControllerService
from odradek.controller.service.sessions import (
    DEFAULT_HEARTBEAT_INTERVAL_MS,
    DEFAULT_SESSION_TIMEOUT_MS,
    BrokerSessions,
    HeartbeatAction,
    HeartbeatDecision,
)

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_MS",
    "DEFAULT_SESSION_TIMEOUT_MS",
    "LEADER_ADDRESS_KEY",
    "LEADER_ID_KEY",
    "NO_LEADER",
    "BrokerSessions",
    "ControllerService",
    "HeartbeatAction",
    "HeartbeatDecision",
    "ManualQuorumInfo",
    "QuorumInfo",
    "Redirect",
    "SnapshotSource",
    "SnapshotUnavailable",
    "StaticLeader",
]

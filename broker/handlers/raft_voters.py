"""AddRaftVoter and RemoveRaftVoter (KIP-853): change the controller quorum's voters, one at a
time. What ``kafka-metadata-quorum.sh add-controller / remove-controller`` and the admin
clients' addRaftVoter/removeRaftVoter send; as Kafka's brokers forward them to the active
controller, this broker asks the controllers (MetadataPlane.add_raft_voter), which forward to
the Raft leader.

Both need ALTER on the CLUSTER, as in Kafka. The request's voter_directory_id (the new
controller's meta.properties directory.id, KIP-858) is recorded with the voter: AddRaftVoter
succeeds only if the node runs on that directory, RemoveRaftVoter only if it names the
directory the voter was added with (voters of the static controller.quorum.voters have none
recorded and are named by their id alone). The zero Uuid means "none". AddRaftVoter v1's ack_when_committed=false is answered like true, after the commit (later than
Kafka would, never wrongly).
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, cluster_allowed, message
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata.requests import ControllerCallFailed, VoterChangeFailed
from odradek.storage.meta_properties import encode_uuid

# The name Kafka's tools give the controller listener in AddRaftVoter's listeners.
CONTROLLER_LISTENER = "CONTROLLER"
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 120.0

_ERRORS = {
    "duplicate_voter": ErrorCode.duplicate_voter,
    "voter_not_found": ErrorCode.voter_not_found,
    "not_single_change": ErrorCode.invalid_request,
    "directory_mismatch": ErrorCode.invalid_request,
    "timed_out": ErrorCode.request_timed_out,
    "not_leader": ErrorCode.not_leader_or_follower,
    "unsupported": ErrorCode.unsupported_version,
}


class RaftVotersNode(Protocol):
    """What the voter-change handlers use of the node."""

    @property
    def authorization(self) -> Authorization: ...

    @property
    def cluster_id(self) -> str: ...

    async def add_raft_voter(self, node_id: int, address: str, timeout_s: float,
                             directory_id: str) -> None: ...

    async def remove_raft_voter(self, node_id: int, timeout_s: float,
                                directory_id: str) -> None: ...


def directory_text(directory: uuid.UUID | None) -> str:
    """The request's directory Uuid in Kafka's text form; "" for none (the zero Uuid)."""
    if directory is None or directory.int == 0:
        return ""
    return encode_uuid(directory.bytes)


def _answer(ctx: RequestContext, code: ErrorCode, text: str | None) -> Payload:
    return ctx.respond({"error_code": code, "error_message": text})


def _precheck(node: RaftVotersNode, ctx: RequestContext, req: Any) -> Payload | None:
    if not cluster_allowed(node.authorization, ctx, AclOperation.ALTER):
        code = ErrorCode.cluster_authorization_failed
        return _answer(ctx, code, message(code))
    if req.cluster_id is not None and req.cluster_id != node.cluster_id:
        return _answer(ctx, ErrorCode.inconsistent_cluster_id,
                       f"this is cluster {node.cluster_id!r}, the request is for "
                       f"{req.cluster_id!r}")
    if req.voter_id <= 0:
        return _answer(ctx, ErrorCode.invalid_request,
                       f"voter id {req.voter_id}: Odradek's node ids are positive")
    return None


async def _run(ctx: RequestContext, change: Any) -> Payload:
    try:
        await change
    except VoterChangeFailed as e:
        return _answer(ctx, _ERRORS.get(e.error, ErrorCode.unknown_server_error), str(e))
    except ControllerCallFailed as e:
        return _answer(ctx, ErrorCode.request_timed_out, str(e))
    return _answer(ctx, ErrorCode.none, None)


async def handle_add_raft_voter(node: RaftVotersNode, ctx: RequestContext, req: Any) -> Payload:
    refused = _precheck(node, ctx, req)
    if refused is not None:
        return refused
    listeners = list(req.listeners)
    if not listeners:
        return _answer(ctx, ErrorCode.invalid_request,
                       "the new voter's listeners are empty: give its controller listener")
    chosen = next((x for x in listeners if x.name == CONTROLLER_LISTENER), listeners[0])
    host = f"[{chosen.host}]" if ":" in chosen.host else chosen.host
    # The request's own timeout, within (0, MAX_TIMEOUT_S]: a client may not hold a
    # request slot of this broker for days.
    asked = req.timeout.total_seconds()
    timeout_s = min(asked, MAX_TIMEOUT_S) if asked > 0 else DEFAULT_TIMEOUT_S
    return await _run(ctx, node.add_raft_voter(req.voter_id, f"{host}:{chosen.port}",
                                               timeout_s, directory_text(req.voter_directory_id)))


async def handle_remove_raft_voter(node: RaftVotersNode, ctx: RequestContext,
                                   req: Any) -> Payload:
    refused = _precheck(node, ctx, req)
    if refused is not None:
        return refused
    return await _run(ctx, node.remove_raft_voter(req.voter_id, DEFAULT_TIMEOUT_S,
                                                  directory_text(req.voter_directory_id)))


APIS: tuple[ApiSpec[RaftVotersNode], ...] = (
    ApiSpec(80, 0, 1, handle_add_raft_voter),
    ApiSpec(81, 0, 0, handle_remove_raft_voter),
)

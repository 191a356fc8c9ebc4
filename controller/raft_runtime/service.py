"""The gRPC side of Raft: receive messages from peers, describe the quorum."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc

from odradek.controller.metadata.requests import NotControllerError
from odradek.controller.raft import LogSafetyError, MembershipChangeRefused, NotLeaderError
from odradek.controller.raft_runtime.wire import WireFormatError, batch_from_pb
from odradek.controller.rpc import raft_pb2 as pb
from odradek.controller.rpc import raft_pb2_grpc
from odradek.controller.rpc.registration import register

if TYPE_CHECKING:
    from odradek.controller.raft_runtime.metadata_log import RaftMetadataLog

log = logging.getLogger("odradek.raft.service")


class RaftServicer(raft_pb2_grpc.RaftServiceServicer):
    def __init__(self, runtime: RaftMetadataLog) -> None:
        self._rt = runtime

    async def Send(self, request: pb.RaftMessageBatch,  # noqa: N802 - gRPC method name
                   context: grpc.aio.ServicerContext) -> pb.Ack:
        rt = self._rt
        me = rt.node_id
        if not rt.driver.running:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"Raft on node {me} is not running (starting, stopping or "
                                f"failed: {rt.driver.failure}); retry later")
        if request.cluster_id and rt.settings.cluster_id and (
                request.cluster_id != rt.settings.cluster_id):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"node {me} belongs to cluster {rt.settings.cluster_id!r}, the "
                                f"sender to {request.cluster_id!r}: check "
                                "controller.quorum.voters on both nodes")
        try:
            messages = batch_from_pb(request)
        except WireFormatError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"node {me}: {exc}")
        members = rt.members()
        for m in messages:
            if m.dst != me:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"message for node {m.dst} reached node {me}: the sender "
                                    "has a wrong address for it in controller.quorum.voters")
            if m.src not in members:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"node {m.src} is not a voter or observer known to node "
                                    f"{me} (members: {sorted(members)}); fix "
                                    "controller.quorum.voters")
        try:
            rt.driver.step(messages)
        except NotLeaderError as exc:  # stopped between the check above and now
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {me}: {exc}")
        except LogSafetyError as exc:
            log.error("node %d: refused Raft messages from node %d: %s", me,
                      messages[0].src if messages else 0, exc)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"node {me} refused the messages: {exc}")
        return pb.Ack()

    async def DescribeQuorum(self, request: pb.DescribeQuorumRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext) -> pb.DescribeQuorumResponse:
        rt = self._rt
        if request.local_only or rt.driver.is_leader:
            return rt.describe()
        leader = rt.leader_id
        channel = rt.channel_to(leader) if leader >= 0 else None
        if channel is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"node {rt.node_id} knows no controller leader yet (election "
                                "in progress?); retry, or ask with local_only for this "
                                "node's view")
        stub = raft_pb2_grpc.RaftServiceStub(channel)
        try:
            answer: pb.DescribeQuorumResponse = await stub.DescribeQuorum(
                pb.DescribeQuorumRequest(local_only=True),
                timeout=rt.settings.rpc_timeout_ms / 1000)
            return answer
        except grpc.aio.AioRpcError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"node {rt.node_id} could not reach the leader, node {leader} "
                                f"({rt.address_of(leader)}): {exc.code().name} "
                                f"{exc.details()}")
        raise AssertionError("unreachable")  # abort() raises


    async def AddVoter(self, request: pb.AddVoterRequest,  # noqa: N802
                       context: grpc.aio.ServicerContext) -> pb.VoterChangeResponse:
        timeout_s = (request.timeout_ms or 30_000) / 1000
        return await self._change_voters(
            context, timeout_s,
            lambda: self._rt.add_voter(request.node_id, request.address, timeout_s,
                                       request.directory_id),
            lambda stub: stub.AddVoter(request, timeout=timeout_s + 1))

    async def RemoveVoter(self, request: pb.RemoveVoterRequest,  # noqa: N802
                          context: grpc.aio.ServicerContext) -> pb.VoterChangeResponse:
        timeout_s = (request.timeout_ms or 30_000) / 1000
        return await self._change_voters(
            context, timeout_s,
            lambda: self._rt.remove_voter(request.node_id, timeout_s, request.directory_id),
            lambda stub: stub.RemoveVoter(request, timeout=timeout_s + 1))

    async def Observe(self, request: pb.ObserveRequest,  # noqa: N802
                      context: grpc.aio.ServicerContext) -> pb.ObserveResponse:
        rt = self._rt
        if request.cluster_id and rt.settings.cluster_id and (
                request.cluster_id != rt.settings.cluster_id):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"node {rt.node_id} belongs to cluster {rt.settings.cluster_id!r}"
                                f", the observer to {request.cluster_id!r}")
        accepted = False
        if rt.driver.is_leader and request.node_id > 0 and request.address:
            await rt.observe(request.node_id, request.address, request.directory_id)
            accepted = True
        return pb.ObserveResponse(accepted=accepted, leader_id=rt.leader_id,
                                  leader_address=rt.leader_address or "")

    async def _change_voters(
        self, context: grpc.aio.ServicerContext, timeout_s: float,
        local: Callable[[], Awaitable[None]],
        forward: Callable[[raft_pb2_grpc.RaftServiceStub], Awaitable[pb.VoterChangeResponse]],
    ) -> pb.VoterChangeResponse:
        rt = self._rt
        if not rt.driver.is_leader:
            leader = rt.leader_id
            channel = rt.channel_to(leader) if leader >= 0 else None
            if channel is None:
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"node {rt.node_id} knows no controller leader yet; retry")
            try:
                return await forward(raft_pb2_grpc.RaftServiceStub(channel))
            except grpc.aio.AioRpcError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"node {rt.node_id} could not reach the leader, node "
                                    f"{leader}: {exc.code().name} {exc.details()}")
        try:
            async with asyncio.timeout(timeout_s):
                await local()
        except MembershipChangeRefused as exc:
            error = "timed_out" if exc.retriable else exc.reason.value
            return pb.VoterChangeResponse(error=error, message=str(exc))
        except TimeoutError:
            return pb.VoterChangeResponse(
                error="timed_out", message=f"the voter change did not commit within "
                f"{timeout_s:.1f}s; is a majority of the new voter set running?")
        except (NotLeaderError, NotControllerError) as exc:
            return pb.VoterChangeResponse(error="not_leader", message=str(exc))
        return pb.VoterChangeResponse()


def add_raft_service(server: grpc.aio.Server, runtime: RaftMetadataLog) -> None:
    register(server, raft_pb2_grpc.add_RaftServiceServicer_to_server, RaftServicer(runtime))


"""The Controller gRPC service: brokers' entry to the active controller.

Wraps a QuorumController (which runs the operations) and a QuorumInfo (which says whether this
node is the active controller). Only the active controller serves; the others refuse every call
with the leader's whereabouts (controller/service/redirect.py). Operations answer with the
controller's own results, per-item Kafka error codes included; gRPC errors only say that the
call itself could not be served.

Node wiring (see ControllerService.__init__ for the knobs):

    service = ControllerService(controller, quorum, metadata_log)
    service.add_to_server(server)     # the same grpc.aio.Server as the Raft service
    await service.start()             # session expiry, metadata stream wake-ups
    ...
    await service.close()             # before server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataDelta, MetadataImage
from odradek.controller.metadata.requests import ControllerFailedError, NotControllerError
from odradek.controller.quorum import QuorumController
from odradek.controller.rpc import controller_pb2 as pb
from odradek.controller.rpc import controller_pb2_grpc as pb_grpc
from odradek.controller.rpc.registration import register
from odradek.controller.service import convert
from odradek.controller.service.listener_probe import ListenerProbe, refuses_connections
from odradek.controller.service.metadata_stream import (
    DEFAULT_MAX_MESSAGE_BYTES,
    CommittedRecords,
    SnapshotSource,
    SnapshotUnavailable,
    default_snapshot,
    read_range,
    snapshot_entries,
    to_messages,
)
from odradek.controller.service.quorum_info import NO_LEADER, QuorumInfo
from odradek.controller.service.redirect import Redirect
from odradek.controller.service.sessions import (
    DEFAULT_DISCONNECT_GRACE_MS,
    DEFAULT_HEARTBEAT_INTERVAL_MS,
    DEFAULT_SESSION_TIMEOUT_MS,
    BrokerSessions,
    Clock,
    HeartbeatAction,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]]


class _Refused(Exception):
    """Ends a call with a gRPC status; raised inside handlers, answered by `_rpc`."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = metadata


def _rpc(handler: Handler[T]) -> Handler[T]:
    """Turns the failures of a unary handler into explicit gRPC statuses."""

    @functools.wraps(handler)
    async def wrapper(
        self: ControllerService, request: Any, context: grpc.aio.ServicerContext
    ) -> T:
        try:
            return await handler(self, request, context)
        except Exception as exc:
            refused = self._refusal(exc, handler.__name__)
        await context.abort(refused.code, refused.message, refused.metadata)
        raise AssertionError("unreachable: abort() raises")

    return wrapper


class ControllerService(pb_grpc.ControllerServicer):
    def __init__(
        self,
        controller: QuorumController,
        quorum: QuorumInfo,
        metadata_log: CommittedRecords,
        *,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms: int = DEFAULT_HEARTBEAT_INTERVAL_MS,
        snapshot_records: SnapshotSource | None = None,
        clock: Clock = time.monotonic,
        stream_keepalive_s: float = 3.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        node_id: int | None = None,
        disconnect_grace_ms: int = DEFAULT_DISCONNECT_GRACE_MS,
        probe_listener: str = "",
        probe: ListenerProbe = refuses_connections,
    ) -> None:
        """`metadata_log` is read (read_from) for FetchMetadata; `snapshot_records` builds the
        snapshot sent when a broker asks for records the log no longer holds (default: the
        Raft runtime's image_to_records over the current image). `stream_keepalive_s`: an idle
        FetchMetadata stream sends an empty message this often so that brokers can tell a
        quiet controller from a dead connection. `probe_listener`: the brokers' inter-broker
        listener, which `probe` connects to when a broker's liveness stream ends; a refusal
        moves its leaderships at once, as in a controlled shutdown, instead of waiting out
        the disconnect grace ("" = never probe)."""
        if heartbeat_interval_ms <= 0 or heartbeat_interval_ms >= session_timeout_ms:
            raise ValueError(
                f"the heartbeat interval ({heartbeat_interval_ms} ms) must be > 0 and below "
                f"broker.session.timeout.ms ({session_timeout_ms} ms)"
            )
        self._controller = controller
        self._quorum = quorum
        self._log = metadata_log
        self._snapshot = snapshot_records or default_snapshot(lambda: controller.image)
        self.sessions = BrokerSessions(session_timeout_ms, clock, disconnect_grace_ms)
        self._clock = clock
        # Set when a session's deadline moved earlier (a liveness stream ended), so that the
        # expiry loop looks again at the new deadline rather than at its next period.
        self._expiry_wake = asyncio.Event()
        self._probe_listener = probe_listener
        self._probe = probe
        self._probes: set[asyncio.Task[None]] = set()
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._keepalive = stream_keepalive_s
        self._max_message_bytes = max_message_bytes
        self._name = f"controller {node_id}" if node_id is not None else "controller"
        # Replaced on every change; streams wait on the current one. A plain Event set by the
        # loader listener (which cannot await) is enough, and each waiter sees every change.
        self._changed = asyncio.Event()
        self._leading_term: int | None = None
        self._expiry_task: asyncio.Task[None] | None = None
        self._closed = False
        self._started = False

    # ----- lifecycle -----

    def add_to_server(self, server: grpc.aio.Server) -> None:
        register(server, pb_grpc.add_ControllerServicer_to_server, self)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._controller.loader.register(self._on_metadata)
        self._quorum.on_leader_change(self._on_leader_change)
        self._on_leader_change()
        self._expiry_task = asyncio.create_task(self._expire_sessions(), name="session-expiry")

    async def close(self) -> None:
        """Stop expiring sessions and end open metadata streams (UNAVAILABLE)."""
        self._closed = True
        self._wake()
        if self._started:
            with contextlib.suppress(ValueError):
                self._controller.loader.unregister(self._on_metadata)
        for task in list(self._probes):
            task.cancel()
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
            self._expiry_task = None

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _on_metadata(self, delta: MetadataDelta, image: MetadataImage) -> None:
        self._wake()

    def _on_leader_change(self) -> None:
        if self._quorum.is_leader:
            if self._leading_term != self._quorum.term:
                self._leading_term = self._quorum.term
                # The old leader's timers are lost with it: everyone gets a full session,
                # but for the brokers of nodes whose connection we lost (the old leader's own
                # process, in a combined node), which must show up within two heartbeats.
                suspects = self._quorum.lost_peers()
                self.sessions.reset(self._controller.image, suspects,
                                    2 * self.heartbeat_interval_ms / 1000)
                for broker_id in suspects:
                    session_epoch = self.sessions.epoch_of(broker_id)
                    if session_epoch is not None:
                        self._start_probe(broker_id, session_epoch)
                log.info("%s: active in term %d; %d broker sessions started", self._name,
                         self._quorum.term, len(self._controller.image.unfenced_broker_ids()))
        else:
            self._leading_term = None
            self.sessions.clear()
        self._wake()

    async def _expire_sessions(self) -> None:
        # Checking a tenth of the timeout apart fences at most 10% late; the cap keeps the
        # check cheap with the default 9 s timeout.
        period = min(self.sessions.session_timeout / 10, 0.5)
        while True:
            delay = period
            deadline = self.sessions.next_deadline()
            if deadline is not None:
                # At the earliest deadline, not up to a period after it (crash detection
                # cuts a session to a fraction of a second); never a busy loop.
                delay = max(0.01, min(period, deadline - self._clock() + 0.005))
            self._expiry_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._expiry_wake.wait()
            if not self._quorum.is_leader or self._closed:
                continue
            image = self._controller.image
            self.sessions.track_unfenced(image)
            lost = self.sessions.disconnected()
            stopping = {b for b in lost if self.sessions.is_shutting_down(b)}
            gone = self.sessions.known_gone()
            for broker_id, epoch in self.sessions.expire(image):
                if broker_id in gone:
                    log.info("%s: broker %d's process is gone (its leaderships moved when its "
                             "liveness stream closed); fencing it at its session timeout",
                             self._name, broker_id)
                elif broker_id in stopping:
                    log.info("%s: broker %d stopped after its controlled shutdown; fencing it",
                             self._name, broker_id)
                elif broker_id in lost:
                    log.warning(
                        "%s: broker %d closed its liveness stream (its process is gone) and "
                        "did not reconnect within broker.session.disconnect.grace.ms; "
                        "fencing it", self._name, broker_id)
                else:
                    log.warning(
                        "%s: broker %d sent no heartbeat for %d ms (broker.session.timeout.ms); "
                        "fencing it", self._name, broker_id, self.session_timeout_ms)
                try:
                    result = await self._controller.fence_broker(broker_id, epoch)
                except NotControllerError:
                    break  # the next leader starts the sessions again
                except Exception:
                    log.exception("%s: fencing broker %d failed", self._name, broker_id)
                    continue
                if result.error_code != ErrorCode.none:
                    log.info("%s: broker %d not fenced: %s", self._name, broker_id,
                             result.error_message)

    # ----- errors -----

    def _redirect(self, exc: NotControllerError | None = None) -> Redirect:
        hinted = getattr(exc, "leader_id", None)
        leader_id = self._quorum.leader_id
        address = self._quorum.leader_address
        if isinstance(hinted, int) and hinted != leader_id:
            # The log knows a newer leader than our QuorumInfo (the Raft log's error also
            # carries its address).
            leader_id, address = hinted, getattr(exc, "leader_address", None)
        if self._quorum.is_leader and hinted is None:
            # The log refused although we still think we lead: leadership is changing.
            leader_id, address = NO_LEADER, None
        return Redirect(leader_id, address)

    def _require_leader(self) -> None:
        if self._closed:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, "the controller is shutting down; retry")
        if not self._quorum.is_leader:
            r = self._redirect()
            raise _Refused(r.code, r.message, r.trailing_metadata())

    def _refusal(self, exc: Exception, what: str) -> _Refused:
        if isinstance(exc, _Refused):
            return exc
        if isinstance(exc, NotControllerError):
            r = self._redirect(exc)
            return _Refused(r.code, r.message, r.trailing_metadata())
        if isinstance(exc, SnapshotUnavailable):
            log.error("%s: %s: %s", self._name, what, exc)
            return _Refused(grpc.StatusCode.OUT_OF_RANGE, str(exc))
        if isinstance(exc, convert.ConversionError):
            return _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {what} request: {exc}")
        if isinstance(exc, ControllerFailedError):
            log.error("%s: %s refused: %s", self._name, what, exc)
            return _Refused(grpc.StatusCode.UNAVAILABLE, f"the controller cannot serve: {exc}")
        log.exception("%s: %s failed", self._name, what, exc_info=exc)
        return _Refused(grpc.StatusCode.INTERNAL, f"{what} failed on the controller: {exc!r}")

    # ----- brokers -----

    @_rpc
    async def RegisterBroker(  # noqa: N802 - gRPC method names
        self, request: pb.RegisterBrokerRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterBrokerResponse:
        self._require_leader()
        # Absent: a broker that cannot tell, taken as unclean (the safe reading).
        clean = request.HasField("previous_shutdown_clean") and request.previous_shutdown_clean
        await self._fence_gone_predecessor(request.broker_id, request.incarnation_id)
        result = await self._controller.register_broker(
            request.broker_id,
            request.incarnation_id,
            [convert.listener_from_pb(x) for x in request.listeners],
            request.rack if request.HasField("rack") else None,
            clean,
        )
        if result.error_code == ErrorCode.none:
            self.sessions.registered(request.broker_id, result.broker_epoch)
            log.info("%s: broker %d registered with epoch %d%s", self._name, request.broker_id,
                     result.broker_epoch, "" if clean else " (after an unclean shutdown)")
        return convert.register_broker_result_to_pb(
            result,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            session_timeout_ms=self.session_timeout_ms,
        )

    async def _fence_gone_predecessor(self, broker_id: int, incarnation_id: str) -> None:
        """A new process of a broker whose old process is known to be gone (listed until its
        session timeout, leading nothing) registers at once: the old registration is fenced
        first instead of refusing the new one until that session ends."""
        current = self._controller.image.brokers.get(broker_id)
        if current is None or current.fenced or current.incarnation_id == incarnation_id:
            return
        epoch = self.sessions.take_gone(broker_id)
        if epoch is None:
            return
        log.info("%s: broker %d registers again; fencing its old registration (epoch %d), "
                 "whose process is gone", self._name, broker_id, epoch)
        await self._controller.fence_broker(broker_id, epoch)

    @_rpc
    async def BrokerHeartbeat(  # noqa: N802
        self, request: pb.BrokerHeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> pb.BrokerHeartbeatResponse:
        self._require_leader()
        broker_id, epoch = request.broker_id, request.broker_epoch
        decision = self.sessions.heartbeat(
            self._controller.image,
            broker_id,
            epoch,
            request.metadata_offset,
            want_fence=request.want_fence,
            want_shutdown=request.want_shutdown,
        )
        if decision.error_code != ErrorCode.none:
            return pb.BrokerHeartbeatResponse(
                error_code=decision.error_code, error_message=decision.error_message,
                is_fenced=True)
        if decision.action is HeartbeatAction.FENCE:
            op = await self._controller.fence_broker(broker_id, epoch)
            if op.error_code == ErrorCode.none:
                log.info("%s: broker %d fenced on its request", self._name, broker_id)
        elif decision.action is HeartbeatAction.CONTROLLED_SHUTDOWN:
            op = await self._controller.begin_controlled_shutdown(broker_id, epoch)
            if op.error_code == ErrorCode.none:
                log.info("%s: broker %d in controlled shutdown: its leaderships moved away",
                         self._name, broker_id)
        elif decision.action is HeartbeatAction.UNFENCE:
            op = await self._controller.unfence_broker(broker_id, epoch)
            if op.error_code == ErrorCode.none:
                log.info("%s: broker %d caught up (offset %d); unfenced", self._name, broker_id,
                         request.metadata_offset)
        else:
            op = None
        if op is not None and op.error_code != ErrorCode.none:
            # The registration changed while we decided (a new incarnation registered).
            return pb.BrokerHeartbeatResponse(
                error_code=op.error_code, error_message=op.error_message, is_fenced=True)
        image = self._controller.image
        broker = image.brokers.get(broker_id)
        return pb.BrokerHeartbeatResponse(
            error_code=ErrorCode.none,
            is_fenced=broker is None or broker.epoch != epoch or broker.fenced,
            is_caught_up=decision.is_caught_up,
            should_shutdown=self.sessions.should_shutdown(image, broker_id),
        )

    @_rpc
    async def AllocateProducerIds(  # noqa: N802
        self, request: pb.AllocateProducerIdsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AllocateProducerIdsResponse:
        self._require_leader()
        epoch = request.broker_epoch if request.HasField("broker_epoch") else None
        result = await self._controller.allocate_producer_ids(request.broker_id, epoch)
        return convert.producer_ids_result_to_pb(result)

    @_rpc
    async def ElectLeaders(  # noqa: N802
        self, request: pb.ElectLeadersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ElectLeadersResponse:
        self._require_leader()
        partitions = None if request.all_partitions else [
            (p.topic, p.partition) for p in request.partitions]
        results = await self._controller.elect_leaders(
            convert.election_type_from_pb(request.election_type), partitions)
        return pb.ElectLeadersResponse(
            results=[convert.elect_leaders_result_to_pb(r) for r in results])

    @_rpc
    async def AlterPartitionReassignments(  # noqa: N802
        self, request: pb.AlterPartitionReassignmentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AlterPartitionReassignmentsResponse:
        self._require_leader()
        results = await self._controller.alter_partition_reassignments(
            [convert.reassignment_from_pb(p) for p in request.partitions],
            allow_replication_factor_change=request.allow_replication_factor_change)
        return pb.AlterPartitionReassignmentsResponse(
            results=[convert.reassignment_result_to_pb(r) for r in results])

    # ----- security -----

    @_rpc
    async def AlterUserScramCredentials(  # noqa: N802
        self, request: pb.AlterUserScramCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AlterUserScramCredentialsResponse:
        self._require_leader()
        results = await self._controller.alter_user_scram_credentials(
            [convert.scram_deletion_from_pb(d) for d in request.deletions],
            [convert.scram_upsertion_from_pb(u) for u in request.upsertions])
        return pb.AlterUserScramCredentialsResponse(
            results=[convert.scram_result_to_pb(r) for r in results])

    @_rpc
    async def CreateAcls(  # noqa: N802
        self, request: pb.CreateAclsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateAclsResponse:
        self._require_leader()
        results = await self._controller.create_acls(
            [convert.acl_from_pb(a) for a in request.acls])
        return pb.CreateAclsResponse(
            results=[convert.create_acl_result_to_pb(r) for r in results])

    @_rpc
    async def DeleteAcls(  # noqa: N802
        self, request: pb.DeleteAclsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteAclsResponse:
        self._require_leader()
        results = await self._controller.delete_acls(
            [convert.acl_filter_from_pb(f) for f in request.filters])
        return pb.DeleteAclsResponse(
            results=[convert.delete_acls_result_to_pb(r) for r in results])

    @_rpc
    async def AlterClientQuotas(  # noqa: N802
        self, request: pb.AlterClientQuotasRequest, context: grpc.aio.ServicerContext
    ) -> pb.AlterClientQuotasResponse:
        self._require_leader()
        result = await self._controller.alter_client_quotas(
            [convert.client_quota_change_from_pb(c) for c in request.changes])
        return convert.alter_client_quotas_result_to_pb(result)

    @_rpc
    async def UpdateFeatures(  # noqa: N802
        self, request: pb.UpdateFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateFeaturesResponse:
        self._require_leader()
        result = await self._controller.update_features(
            [convert.feature_update_from_pb(u) for u in request.updates],
            validate_only=request.validate_only)
        return convert.update_features_result_to_pb(result)

    @_rpc
    async def UnregisterBroker(  # noqa: N802
        self, request: pb.UnregisterBrokerRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnregisterBrokerResponse:
        self._require_leader()
        result = await self._controller.unregister_broker(request.broker_id)
        return convert.broker_result_to_pb(result)

    # ----- topics -----

    @_rpc
    async def CreateTopics(  # noqa: N802
        self, request: pb.CreateTopicsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTopicsResponse:
        self._require_leader()
        specs = [convert.create_topic_spec_from_pb(t) for t in request.topics]
        results = await self._controller.create_topics(specs, validate_only=request.validate_only)
        return pb.CreateTopicsResponse(
            results=[convert.create_topic_result_to_pb(r) for r in results])

    @_rpc
    async def DeleteTopics(  # noqa: N802
        self, request: pb.DeleteTopicsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteTopicsResponse:
        self._require_leader()
        specs = [convert.delete_topic_spec_from_pb(t) for t in request.topics]
        results = await self._controller.delete_topics(specs)
        return pb.DeleteTopicsResponse(
            results=[convert.delete_topic_result_to_pb(r) for r in results])

    @_rpc
    async def CreatePartitions(  # noqa: N802
        self, request: pb.CreatePartitionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatePartitionsResponse:
        self._require_leader()
        specs = [convert.create_partitions_spec_from_pb(t) for t in request.topics]
        results = await self._controller.create_partitions(
            specs, validate_only=request.validate_only)
        return pb.CreatePartitionsResponse(
            results=[convert.create_partitions_result_to_pb(r) for r in results])

    # ----- configs -----

    @_rpc
    async def AlterConfigs(  # noqa: N802
        self, request: pb.AlterConfigsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AlterConfigsResponse:
        self._require_leader()
        resources = [convert.alter_configs_resource_from_pb(r) for r in request.resources]
        results = await self._controller.alter_configs(
            resources, validate_only=request.validate_only)
        return pb.AlterConfigsResponse(
            results=[convert.alter_configs_result_to_pb(r) for r in results])

    @_rpc
    async def IncrementalAlterConfigs(  # noqa: N802
        self, request: pb.IncrementalAlterConfigsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AlterConfigsResponse:
        self._require_leader()
        resources = [convert.incremental_resource_from_pb(r) for r in request.resources]
        results = await self._controller.incremental_alter_configs(
            resources, validate_only=request.validate_only)
        return pb.AlterConfigsResponse(
            results=[convert.alter_configs_result_to_pb(r) for r in results])

    # ----- partitions -----

    @_rpc
    async def AlterPartition(  # noqa: N802
        self, request: pb.AlterPartitionRequest, context: grpc.aio.ServicerContext
    ) -> pb.AlterPartitionResponse:
        self._require_leader()
        items = [convert.alter_partition_item_from_pb(i) for i in request.items]
        result = await self._controller.alter_partition(
            request.broker_id, request.broker_epoch, items)
        return convert.alter_partition_result_to_pb(result)

    # ----- metadata stream -----

    async def FetchMetadata(  # noqa: N802
        self, request: pb.FetchMetadataRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.FetchMetadataResponse]:
        # An async generator cannot use _rpc: failures are turned into a status here.
        try:
            async for message in self._stream(max(request.from_offset, 0)):
                yield message
        except Exception as exc:
            refused = self._refusal(exc, "FetchMetadata")
        else:
            return
        await context.abort(refused.code, refused.message, refused.metadata)

    async def BrokerLiveness(  # noqa: N802
        self, request: pb.BrokerLivenessRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.BrokerLivenessResponse]:
        broker_id, epoch = request.broker_id, request.broker_epoch
        try:
            self._require_leader()
            code = self.sessions.liveness_opened(self._controller.image, broker_id, epoch)
            if code != ErrorCode.none:
                yield pb.BrokerLivenessResponse(error_code=code)
                return
            try:
                loop = asyncio.get_running_loop()
                sent = loop.time()
                while True:
                    # Keep-alives only; the stream's end is the message. Metadata changes
                    # wake this to notice a lost leadership at once. The keep-alive is due by
                    # the clock, not by a quiet wait: while metadata commits faster than the
                    # keep-alive interval (a bulk creation) every wait ends early, and the
                    # broker would take the stream for silent and drop it.
                    due = self._keepalive - (loop.time() - sent)
                    if due <= 0:
                        yield pb.BrokerLivenessResponse()
                        sent = loop.time()
                        continue
                    changed = self._changed
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(due):
                            await changed.wait()
                    if self._closed:
                        return
                    self._require_leader()
            finally:
                # Runs when the broker's connection closes (grpc cancels the call), too.
                if self.sessions.liveness_closed(broker_id, epoch):
                    self._expiry_wake.set()
                    self._start_probe(broker_id, epoch)
        except Exception as exc:
            refused = self._refusal(exc, "BrokerLiveness")
        else:
            return
        await context.abort(refused.code, refused.message, refused.metadata)

    def _start_probe(self, broker_id: int, epoch: int) -> None:
        """Ask whether the broker whose liveness stream just ended still listens."""
        if (not self._probe_listener or self._closed
                or self.sessions.is_shutting_down(broker_id)):
            return
        # Fenced brokers have no endpoint; an unfenced one has nothing to lose by the grace.
        ep = self._controller.image.endpoint(broker_id, self._probe_listener)
        if ep is None:
            return
        task = asyncio.create_task(self._probe_gone(broker_id, epoch, ep.host, ep.port),
                                   name=f"probe-broker-{broker_id}")
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe_gone(self, broker_id: int, epoch: int, host: str, port: int) -> None:
        # A dying process's sockets close one by one: its liveness stream may end while its
        # listener still accepts for a moment. Ask again a few times within the grace
        # (0, 20, 60, 140 ms...) before leaving the broker to it.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sessions.disconnect_grace
        pause = 0.02
        while True:
            try:
                refused = await self._probe(host, port,
                                            max(0.01, min(0.1, deadline - loop.time())))
            except Exception:
                log.exception("%s: probing broker %d at %s:%d failed", self._name, broker_id,
                              host, port)
                return
            if refused or loop.time() + pause >= deadline or self._closed:
                break
            await asyncio.sleep(pause)
            pause *= 2
            if broker_id not in self.sessions.disconnected():
                return  # its stream is back: alive
        if not refused or not self.sessions.process_gone(broker_id, epoch):
            return
        log.info("%s: broker %d closed its liveness stream and %s:%d refuses connections: its "
                 "process is gone; moving its leaderships now", self._name, broker_id, host,
                 port)
        try:
            result = await self._controller.begin_controlled_shutdown(broker_id, epoch)
        except NotControllerError:
            return  # the next active controller probes it again
        except Exception:
            log.exception("%s: moving the leaderships of broker %d failed", self._name,
                          broker_id)
            return
        if result.error_code != ErrorCode.none:
            log.info("%s: leaderships of broker %d not moved: %s", self._name, broker_id,
                     result.error_message)

    async def _stream(self, next_offset: int) -> AsyncIterator[pb.FetchMetadataResponse]:
        while True:
            self._require_leader()
            changed = self._changed
            end = self._controller.image.offset
            if next_offset <= end:
                entries = read_range(self._log, next_offset, end)
                if entries is None:
                    # Compacted away: the image as a snapshot, then the log after it.
                    offset, records = self._snapshot()
                    for message in to_messages(snapshot_entries(offset, records), snapshot=True,
                                               max_bytes=self._max_message_bytes):
                        yield message
                    next_offset = offset + 1
                    continue
                for message in to_messages(entries, max_bytes=self._max_message_bytes):
                    yield message
                next_offset = end + 1
                continue
            try:
                async with asyncio.timeout(self._keepalive):
                    await changed.wait()
            except TimeoutError:
                yield pb.FetchMetadataResponse()


__all__ = ["ControllerService", "SnapshotUnavailable"]

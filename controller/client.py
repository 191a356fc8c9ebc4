"""Client of the Controller gRPC service, used by brokers to reach the active controller.

`ControllerClient` has the same operation methods and result types as QuorumController
(create_topics ... alter_partition, register_broker), so broker code can hold either one: a
combined node calls its local controller, a broker-only node this client. It finds the active
controller by itself: it asks the leader it last saw, follows a non-leader's redirect
(controller/service/redirect.py), and otherwise tries the voters in turn with backoff. Every call
is bounded in total time and then fails with ControllerUnavailable, which lists what was tried.

A retried write may have been applied by a controller that failed before answering (as with
Kafka's admin client): a retried create then answers TOPIC_ALREADY_EXISTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from odradek.controller.grpc_security import PLAINTEXT, GrpcSecurity
from odradek.controller.metadata import Listener
from odradek.controller.metadata.acls import AclFilter, StandardAcl
from odradek.controller.metadata.client_quotas import ClientQuotaChange
from odradek.controller.metadata.requests import (
    AlterClientQuotasResult,
    AlterConfigsResource,
    AlterConfigsResult,
    AlterPartitionItem,
    AlterPartitionResult,
    AlterScramCredentialResult,
    BrokerResult,
    ControllerError,
    ControllerUnavailable,
    CreateAclResult,
    CreatePartitionsResult,
    CreatePartitionsSpec,
    CreateTopicResult,
    CreateTopicSpec,
    DeleteAclsResult,
    DeleteTopicResult,
    DeleteTopicSpec,
    ElectionType,
    ElectLeadersResult,
    FeatureUpdate,
    HeartbeatResult,
    IncrementalAlterConfigsResource,
    MetadataBatch,
    ProducerIdsResult,
    ReassignmentRequest,
    ReassignmentResult,
    RegisterBrokerResult,
    Registration,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
    UpdateFeaturesResult,
)
from odradek.controller.rpc import controller_pb2 as pb
from odradek.controller.rpc import controller_pb2_grpc as pb_grpc
from odradek.controller.service import convert
from odradek.controller.service.quorum_info import NO_LEADER
from odradek.controller.service.redirect import parse_redirect

log = logging.getLogger(__name__)

# Codes after which another attempt (elsewhere or later) can succeed; any other code is an
# answer about the request itself and is raised as ControllerError.
_RETRYABLE = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,  # the server went away mid-call (shutdown)
})












@dataclass
class _Target:
    node_id: int
    address: str

    def __str__(self) -> str:
        return f"{self.node_id}@{self.address}" if self.node_id != NO_LEADER else self.address


# Reconnect quickly, as the Raft transport does: after a failed connect a channel refuses
# every call until its reconnect backoff has passed, and grpc's default backoff starts at
# 1 s and grows to two minutes. A broker that tried a controller a moment before it
# listened (every node of a starting cluster does) would otherwise wait that out, and one
# whose controller restarted could be kept from it for minutes.
_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class ControllerClient:
    def __init__(
        self,
        voters: Mapping[int, str],
        *,
        request_timeout_s: float = 10.0,
        attempt_timeout_s: float = 3.0,
        backoff_s: tuple[float, float] = (0.05, 1.0),
        stream_idle_timeout_s: float = 10.0,
        rng: random.Random | None = None,
        leader_hint: Callable[[], int] | None = None,
        security: GrpcSecurity = PLAINTEXT,
    ) -> None:
        """`voters`: controller id -> "host:port" of its gRPC listener. `request_timeout_s`
        bounds a whole call, retries included; one attempt gets at most `attempt_timeout_s`.
        `backoff_s`: (first, max) pause after every voter failed. A metadata stream silent for
        `stream_idle_timeout_s` (the service sends keep-alives every few seconds) is treated
        as a dead connection. `leader_hint()`, on a node that is itself a controller, names
        the leader its own Raft knows (-1: none), so a call never waits on a stale leader
        the local node already knows has lost its place."""
        if not voters:
            raise ValueError("ControllerClient needs at least one controller voter")
        self._voters = dict(sorted(voters.items()))
        self._security = security
        self._order = list(self._voters)
        self._request_timeout = request_timeout_s
        self._attempt_timeout = attempt_timeout_s
        self._backoff = backoff_s
        self._idle_timeout = stream_idle_timeout_s
        self._rng = rng or random.Random()
        self._leader: _Target | None = None
        self._leader_hint = leader_hint
        self._next_voter = self._rng.randrange(len(self._order))
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, pb_grpc.ControllerStub] = {}

    @property
    def leader_id(self) -> int:
        """The controller this client believes is active, NO_LEADER (-1) if none."""
        return self._leader.node_id if self._leader is not None else NO_LEADER

    async def close(self) -> None:
        channels, self._channels, self._stubs = self._channels, {}, {}
        for channel in channels.values():
            await channel.close()

    # ----- finding the leader -----

    def _stub(self, address: str) -> pb_grpc.ControllerStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = self._channels[address] = self._security.channel(
                address, options=_CHANNEL_OPTIONS)
            stub = self._stubs[address] = pb_grpc.ControllerStub(channel)
        return stub

    def _target(self) -> _Target:
        if self._leader_hint is not None:
            hinted = self._leader_hint()
            if hinted in self._voters and (self._leader is None
                                           or self._leader.node_id != hinted):
                self._leader = _Target(hinted, self._voters[hinted])
        if self._leader is not None:
            return self._leader
        node_id = self._order[self._next_voter % len(self._order)]
        self._next_voter += 1
        return _Target(node_id, self._voters[node_id])

    def _follow(self, failed: _Target, error: grpc.aio.AioRpcError) -> bool:
        """Learn from a failed attempt; True when it named a leader to try at once."""
        redirect = parse_redirect(error.trailing_metadata())
        self._leader = None
        if redirect is None or redirect.leader_id == NO_LEADER:
            return False
        address = redirect.leader_address or self._voters.get(redirect.leader_id)
        if address is None:
            return False
        self._leader = _Target(redirect.leader_id, address)
        # Redirected to the node that just refused: it is still catching up on the election.
        return (self._leader.node_id, self._leader.address) != (failed.node_id, failed.address)

    def _is_redirect(self, error: grpc.aio.AioRpcError) -> bool:
        return error.code() == grpc.StatusCode.FAILED_PRECONDITION and (
            parse_redirect(error.trailing_metadata()) is not None
        )

    def _pause(self, failures: int) -> float:
        first, most = self._backoff
        base = min(most, first * 2.0 ** max(failures // len(self._order) - 1, 0))
        return base * (0.5 + self._rng.random() / 2)  # jitter keeps brokers out of lockstep

    async def _wait_before_retry(self, pause: float) -> None:
        """Sleep ``pause`` seconds, but on a controller node stop as soon as its own Raft
        names a new leader: while a cluster starts, the pauses have grown to most of a
        second by the time the first election ends, and every broker would sit them out.
        (Only a change wakes it: a leader that refused, e.g. while it applies the records
        of earlier terms, is not asked again before the pause is over.)"""
        if self._leader_hint is None:
            await asyncio.sleep(pause)
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + pause
        known = self._leader_hint()
        while (left := until - loop.time()) > 0:
            await asyncio.sleep(min(left, 0.02))
            hinted = self._leader_hint()
            if hinted in self._voters and hinted != known:
                return

    async def _call(self, method: str, request: Any, timeout: float | None = None,
                    attempt_timeout: float | None = None) -> Any:
        loop = asyncio.get_running_loop()
        total = self._request_timeout if timeout is None else timeout
        attempt = self._attempt_timeout if attempt_timeout is None else attempt_timeout
        deadline = loop.time() + total
        tried: list[str] = []
        failures = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ControllerUnavailable(method, total, tried[-8:])
            target = self._target()
            try:
                response = await getattr(self._stub(target.address), method)(
                    request, timeout=min(attempt, remaining)
                )
            except grpc.aio.AioRpcError as error:
                tried.append(f"{target}: {error.code().name} ({error.details()})")
                if not (self._is_redirect(error) or error.code() in _RETRYABLE):
                    raise ControllerError(method, str(target), error.code().name,
                                          error.details() or "") from error
                if self._follow(target, error):
                    continue
                failures += 1
                # Each voter gets one quick try; only after all failed do we wait.
                if failures % len(self._order) == 0 or self._leader is not None:
                    await self._wait_before_retry(min(self._pause(failures), max(remaining, 0)))
                continue
            self._leader = target
            return response

    # ----- operations (same names and results as QuorumController) -----

    async def create_topics(
        self, specs: Sequence[CreateTopicSpec], *, validate_only: bool = False
    ) -> list[CreateTopicResult]:
        response = await self._call("CreateTopics", pb.CreateTopicsRequest(
            topics=[convert.create_topic_spec_to_pb(s) for s in specs],
            validate_only=validate_only))
        return [convert.create_topic_result_from_pb(r) for r in response.results]

    async def delete_topics(self, specs: Sequence[DeleteTopicSpec]) -> list[DeleteTopicResult]:
        response = await self._call("DeleteTopics", pb.DeleteTopicsRequest(
            topics=[convert.delete_topic_spec_to_pb(s) for s in specs]))
        return [convert.delete_topic_result_from_pb(r) for r in response.results]

    async def create_partitions(
        self, specs: Sequence[CreatePartitionsSpec], *, validate_only: bool = False
    ) -> list[CreatePartitionsResult]:
        response = await self._call("CreatePartitions", pb.CreatePartitionsRequest(
            topics=[convert.create_partitions_spec_to_pb(s) for s in specs],
            validate_only=validate_only))
        return [convert.create_partitions_result_from_pb(r) for r in response.results]

    async def elect_leaders(self, election_type: ElectionType,
                            partitions: Sequence[tuple[str, int]] | None
                            ) -> list[ElectLeadersResult]:
        response = await self._call("ElectLeaders", pb.ElectLeadersRequest(
            election_type=int(election_type), all_partitions=partitions is None,
            partitions=[pb.PartitionRef(topic=t, partition=p) for t, p in partitions or ()]))
        return [convert.elect_leaders_result_from_pb(r) for r in response.results]

    async def alter_partition_reassignments(
        self, requests: Sequence[ReassignmentRequest], *,
        allow_replication_factor_change: bool = True,
    ) -> list[ReassignmentResult]:
        response = await self._call(
            "AlterPartitionReassignments", pb.AlterPartitionReassignmentsRequest(
                partitions=[convert.reassignment_to_pb(r) for r in requests],
                allow_replication_factor_change=allow_replication_factor_change))
        return [convert.reassignment_result_from_pb(r) for r in response.results]

    async def alter_configs(
        self, resources: Sequence[AlterConfigsResource], *, validate_only: bool = False
    ) -> list[AlterConfigsResult]:
        response = await self._call("AlterConfigs", pb.AlterConfigsRequest(
            resources=[convert.alter_configs_resource_to_pb(r) for r in resources],
            validate_only=validate_only))
        return [convert.alter_configs_result_from_pb(r) for r in response.results]

    async def incremental_alter_configs(
        self, resources: Sequence[IncrementalAlterConfigsResource], *, validate_only: bool = False
    ) -> list[AlterConfigsResult]:
        response = await self._call("IncrementalAlterConfigs", pb.IncrementalAlterConfigsRequest(
            resources=[convert.incremental_resource_to_pb(r) for r in resources],
            validate_only=validate_only))
        return [convert.alter_configs_result_from_pb(r) for r in response.results]

    async def alter_user_scram_credentials(
        self, deletions: Sequence[ScramCredentialDeletion],
        upsertions: Sequence[ScramCredentialUpsertion],
    ) -> list[AlterScramCredentialResult]:
        response = await self._call("AlterUserScramCredentials",
                                    pb.AlterUserScramCredentialsRequest(
            deletions=[convert.scram_deletion_to_pb(d) for d in deletions],
            upsertions=[convert.scram_upsertion_to_pb(u) for u in upsertions]))
        return [convert.scram_result_from_pb(r) for r in response.results]

    async def create_acls(self, acls: Sequence[StandardAcl]) -> list[CreateAclResult]:
        response = await self._call("CreateAcls", pb.CreateAclsRequest(
            acls=[convert.acl_to_pb(a) for a in acls]))
        return [convert.create_acl_result_from_pb(r) for r in response.results]

    async def delete_acls(self, filters: Sequence[AclFilter]) -> list[DeleteAclsResult]:
        response = await self._call("DeleteAcls", pb.DeleteAclsRequest(
            filters=[convert.acl_filter_to_pb(f) for f in filters]))
        return [convert.delete_acls_result_from_pb(r) for r in response.results]

    async def alter_client_quotas(self, changes: Sequence[ClientQuotaChange]
                                  ) -> AlterClientQuotasResult:
        response = await self._call("AlterClientQuotas", pb.AlterClientQuotasRequest(
            changes=[convert.client_quota_change_to_pb(c) for c in changes]))
        return convert.alter_client_quotas_result_from_pb(response)

    async def update_features(self, updates: Sequence[FeatureUpdate], *,
                              validate_only: bool = False) -> UpdateFeaturesResult:
        response = await self._call("UpdateFeatures", pb.UpdateFeaturesRequest(
            updates=[convert.feature_update_to_pb(u) for u in updates],
            validate_only=validate_only))
        return convert.update_features_result_from_pb(response)

    async def unregister_broker(self, broker_id: int) -> BrokerResult:
        response = await self._call("UnregisterBroker",
                                    pb.UnregisterBrokerRequest(broker_id=broker_id))
        return convert.broker_result_from_pb(response)

    async def register(
        self,
        broker_id: int,
        incarnation_id: str,
        listeners: Sequence[Listener | tuple[str, str, int]],
        rack: str | None = None,
        previous_shutdown_clean: bool = True,
    ) -> Registration:
        """register_broker, plus the lease settings the controller answered with."""
        response = await self._call("RegisterBroker", pb.RegisterBrokerRequest(
            broker_id=broker_id, incarnation_id=incarnation_id,
            listeners=[convert.listener_to_pb(x) for x in listeners], rack=rack,
            previous_shutdown_clean=previous_shutdown_clean))
        return Registration(convert.register_broker_result_from_pb(response),
                            response.heartbeat_interval_ms, response.session_timeout_ms)

    async def register_broker(
        self,
        broker_id: int,
        incarnation_id: str,
        listeners: Sequence[Listener | tuple[str, str, int]],
        rack: str | None = None,
        previous_shutdown_clean: bool = True,
    ) -> RegisterBrokerResult:
        return (await self.register(broker_id, incarnation_id, listeners, rack,
                                    previous_shutdown_clean)).result

    async def allocate_producer_ids(
        self, broker_id: int, broker_epoch: int | None = None
    ) -> ProducerIdsResult:
        response = await self._call("AllocateProducerIds", pb.AllocateProducerIdsRequest(
            broker_id=broker_id, broker_epoch=broker_epoch))
        return convert.producer_ids_result_from_pb(response)

    async def alter_partition(
        self, broker_id: int, broker_epoch: int, items: Sequence[AlterPartitionItem]
    ) -> AlterPartitionResult:
        response = await self._call("AlterPartition", pb.AlterPartitionRequest(
            broker_id=broker_id, broker_epoch=broker_epoch,
            items=[convert.alter_partition_item_to_pb(i) for i in items]))
        return convert.alter_partition_result_from_pb(response)

    async def heartbeat(
        self,
        broker_id: int,
        broker_epoch: int,
        metadata_offset: int,
        *,
        want_fence: bool = False,
        want_shutdown: bool = False,
        timeout: float | None = None,
    ) -> HeartbeatResult:
        # A heartbeat stuck on an unreachable controller must not outlast the session it
        # keeps alive: each attempt gets a quarter of the call's time, then the next voter.
        attempt = None if timeout is None else max(0.1, timeout / 4)
        response = await self._call("BrokerHeartbeat", pb.BrokerHeartbeatRequest(
            broker_id=broker_id, broker_epoch=broker_epoch, metadata_offset=metadata_offset,
            want_fence=want_fence, want_shutdown=want_shutdown), timeout, attempt)
        return HeartbeatResult(
            convert.error_code(response.error_code),
            response.error_message if response.HasField("error_message") else None,
            response.is_fenced,
            response.is_caught_up,
            response.should_shutdown,
        )

    # ----- metadata stream -----

    async def fetch_metadata(self, from_offset: int) -> AsyncIterator[MetadataBatch]:
        """Committed metadata from `from_offset` on, as whole batches, forever.

        Survives controller failover: on any retryable failure it finds the active controller
        again and resumes after the last batch it yielded (a partly received batch is asked
        for again). Raises ControllerError only for errors that retrying cannot fix."""
        next_offset = from_offset
        pending: list[tuple[int, bytes]] = []

        def request() -> pb.FetchMetadataRequest:
            # Asked again on every reconnect: resume after the last batch yielded.
            return pb.FetchMetadataRequest(from_offset=next_offset)

        async with contextlib.aclosing(self._leader_stream("FetchMetadata", request)) as stream:
            async for message in stream:
                if message is None:
                    pending = []  # a new stream: it starts at a batch boundary
                    continue
                pending.extend((e.offset, e.record) for e in message.entries)
                if not message.batch_end:
                    continue
                batch = MetadataBatch(tuple(pending), message.snapshot)
                pending = []
                if not batch.records:
                    continue
                if not batch.snapshot and batch.records[0][0] != next_offset:
                    raise ControllerError(
                        "FetchMetadata", "the active controller", "DATA_LOSS",
                        f"asked for offset {next_offset}, the batch starts at "
                        f"{batch.records[0][0]}")
                next_offset = batch.last_offset + 1
                yield batch

    async def hold_liveness(self, broker_id: int, broker_epoch: int) -> int:
        """Keep a BrokerLiveness stream open to the active controller, following it across
        failovers, until cancelled: the controller fences this broker soon after the stream
        closes for good (the process died). Returns the Kafka error code with which the
        controller refused the registration (register again), if it does."""
        request = pb.BrokerLivenessRequest(broker_id=broker_id, broker_epoch=broker_epoch)
        async with contextlib.aclosing(
                self._leader_stream("BrokerLiveness", lambda: request)) as stream:
            async for message in stream:
                if message is not None and message.error_code:
                    return int(message.error_code)
        raise AssertionError("a leader stream never ends")  # pragma: no cover

    async def _leader_stream(self, rpc: str, request: Callable[[], Any]
                             ) -> AsyncGenerator[Any, None]:
        """The messages of server-streaming call `rpc` on the active controller, forever:
        on a redirect, an error worth retrying, a clean end or a silent connection it finds
        the active controller again and calls again with a fresh `request()`, yielding None
        first so the caller drops what it holds of the broken stream. Raises ControllerError
        only for errors that retrying cannot fix."""
        failures = 0
        while True:
            target = self._target()
            call = getattr(self._stub(target.address), rpc)(request())
            yield None
            try:
                while True:
                    try:
                        async with asyncio.timeout(self._idle_timeout):
                            message = await call.read()
                    except TimeoutError:
                        log.warning("%s stream from controller %s silent for %.0fs; "
                                    "reconnecting", rpc, target, self._idle_timeout)
                        self._leader = None
                        break
                    if message is grpc.aio.EOF:
                        break  # the server ended the stream cleanly; find the leader again
                    self._leader, failures = target, 0
                    yield message
            except grpc.aio.AioRpcError as error:
                if not (self._is_redirect(error) or error.code() in _RETRYABLE):
                    raise ControllerError(rpc, str(target), error.code().name,
                                          error.details() or "") from error
                if self._follow(target, error):
                    continue
                failures += 1
                log.log(logging.WARNING if failures % len(self._order) == 0 else logging.DEBUG,
                        "%s stream from controller %s failed: %s (%s); calling again", rpc,
                        target, error.code().name, error.details())
                if failures % len(self._order) == 0:
                    await asyncio.sleep(self._pause(failures))
                continue
            finally:
                call.cancel()
            # Ended without an error (silence, or a clean end): pause so that a server ending
            # streams at once cannot make this a busy loop.
            failures += 1
            await asyncio.sleep(self._pause(failures))

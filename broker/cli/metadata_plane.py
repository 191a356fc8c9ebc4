"""The two ways a node gets its metadata (odradek.broker.metadata_plane.MetadataPlane): a
local single-node log, or the Raft controller quorum. This is where the controller, Raft
and gRPC are wired into a node, so only the node's entry point imports it.

Both give the node the same things: a ``MetadataLoader`` whose listeners see every committed
record batch, and a ``controller`` with the ControllerApi operations (a QuorumController
itself, or a ControllerClient that reaches the active controller over gRPC).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import grpc
from kio.schema.errors import ErrorCode
from prometheus_client.registry import Collector

from odradek.broker.config import NodeConfig
from odradek.broker.lifecycle import BrokerLifecycle, MetadataFollower
from odradek.broker.metadata_plane import MetadataPlane, NodeIdentity
from odradek.broker.security import tls
from odradek.broker.security.listeners import tls_settings
from odradek.controller.client import ControllerClient
from odradek.controller.grpc_security import PLAINTEXT, GrpcSecurity
from odradek.controller.metadata import MetadataLoader
from odradek.controller.metadata.requests import (
    ControllerUnavailable,
    QuorumDescription,
    QuorumReplica,
    VoterChangeFailed,
)
from odradek.controller.quorum import LocalMetadataLog, QuorumController
from odradek.controller.quorum.api import ControllerSettings
from odradek.controller.raft_runtime import SERVER_OPTIONS, RaftMetadataLog, RaftSettings
from odradek.controller.raft_runtime.metrics import RaftCollector
from odradek.controller.rpc import raft_pb2, raft_pb2_grpc
from odradek.controller.service import ControllerService
from odradek.controller.service.metrics import SessionsCollector

log = logging.getLogger("odradek.metadata")


def controller_settings(config: NodeConfig) -> ControllerSettings:
    return ControllerSettings(default_num_partitions=config["num.partitions"],
                              default_replication_factor=config["default.replication.factor"],
                              default_min_insync_replicas=config["min.insync.replicas"],
                              node_id=config.node_id)



class LocalMetadataPlane:
    """Single node: the node is its own controller, over a local fsynced log."""

    def __init__(self, cfg: NodeConfig, me: NodeIdentity) -> None:
        self.config = cfg
        self.me = me
        self.loader = MetadataLoader()
        self.log = LocalMetadataLog(me.data_dir / "metadata")
        self.controller = QuorumController(self.log, settings=controller_settings(cfg),
                                           rng=random.Random(), loader=self.loader)
        self.broker_epoch = -1
        # No Raft here: nothing to elect, this node is always the active controller.
        self.raft: RaftMetadataLog | None = None

    @property
    def is_active_controller(self) -> bool:
        return True

    @property
    def active_controller_id(self) -> int:
        return self.me.node_id

    async def start(self, listeners: list[tuple[str, str, int]]) -> None:
        await self.controller.load()
        node_id, rack = self.me.node_id, self.config["rack"] or None
        clean = self.me.previous_shutdown_clean
        reg = await self.controller.register_broker(node_id, self.me.incarnation_id,
                                                    listeners, rack, clean)
        if reg.error_code == ErrorCode.duplicate_broker_registration:
            # Our previous run died without fencing itself; in single-node mode nobody else
            # can, so fence the stale session and register again.
            await self.controller.fence_broker(node_id)
            reg = await self.controller.register_broker(node_id, self.me.incarnation_id,
                                                        listeners, rack, clean)
        if reg.error_code != ErrorCode.none:
            raise RuntimeError(f"broker registration failed: {reg.error_message}")
        self.broker_epoch = reg.broker_epoch
        res = await self.controller.unfence_broker(node_id, self.broker_epoch)
        if res.error_code != ErrorCode.none:
            raise RuntimeError(f"unfencing failed: {res.error_message}")

    async def wait_unfenced(self, timeout: float) -> None:
        """Unfenced by start() itself: nothing to wait for."""

    async def controlled_shutdown(self) -> None:
        """Nothing to hand over: this node holds every replica."""

    async def stop(self) -> None:
        self.log.close()

    async def describe_quorum(self) -> QuorumDescription:
        """A quorum of one: this node leads its own log, in epoch 0 (never elected)."""
        end = self.log.next_offset
        me = QuorumReplica(self.me.node_id, end, 0)
        return QuorumDescription(self.me.node_id, 0, end, (me,), (), {})

    def collectors(self) -> list[Collector]:
        return []  # no Raft quorum

    async def add_raft_voter(self, node_id: int, address: str, timeout_s: float,
                             directory_id: str) -> None:
        raise VoterChangeFailed("unsupported", _NO_QUORUM)

    async def remove_raft_voter(self, node_id: int, timeout_s: float,
                                directory_id: str) -> None:
        raise VoterChangeFailed("unsupported", _NO_QUORUM)


_NO_QUORUM = ("this node keeps the metadata log alone (no controller.quorum.voters): there "
              "is no controller quorum to change")


class RaftMetadataPlane:
    """Multi-node: controllers replicate the metadata log with Raft; brokers register with
    the active controller, heartbeat, and (broker-only nodes) follow the log over gRPC."""

    def __init__(self, cfg: NodeConfig, me: NodeIdentity) -> None:
        self.config = cfg
        self.me = me
        self.loader = MetadataLoader()
        voters = cfg["controller.quorum.voters"]
        self.voters = {i: f"{h}:{p}" for i, h, p in voters}
        # Raft, registration, heartbeats and the metadata stream: plaintext or mutual TLS.
        self.security = controller_security(cfg)
        self.is_controller = "controller" in cfg.roles
        self.is_broker = "broker" in cfg.roles
        self.raft: RaftMetadataLog | None = None
        self.service: ControllerService | None = None
        self.server: grpc.aio.Server | None = None
        self.follower: MetadataFollower | None = None
        self.lifecycle: BrokerLifecycle | None = None
        self._rebalancer: asyncio.Task[None] | None = None
        if self.is_controller:
            # A controller missing from controller.quorum.voters is a new one joining an
            # existing quorum (KIP-853): it follows the log as an observer until the active
            # controller adds it as a voter (AddRaftVoter); its Raft log then says so, also
            # after a restart.
            observers = ({} if me.node_id in self.voters
                         else {me.node_id: cfg["controller.listener"]})
            if observers:
                log.info("node %d is not in controller.quorum.voters %s: starting as an "
                         "observer; add it with AddRaftVoter (kafka-metadata-quorum.sh "
                         "add-controller)", me.node_id, sorted(self.voters))
            tick_ms = 100
            self.raft = RaftMetadataLog(RaftSettings(
                node_id=me.node_id, voters=self.voters, observers=observers,
                data_dir=me.data_dir / "metadata-raft",
                cluster_id=me.cluster_id, directory_id=me.directory_id, tick_ms=tick_ms,
                election_tick=max(2, cfg["controller.quorum.election.timeout.ms"] // tick_ms),
                snapshot_interval_records=cfg["metadata.snapshot.interval.records"],
                security=self.security),
                self.loader)
            self.quorum_controller = QuorumController(
                self.raft, settings=controller_settings(cfg), rng=random.Random(),
                loader=self.loader)
            self.service = ControllerService(
                self.quorum_controller, self.raft, self.raft,
                session_timeout_ms=cfg["broker.session.timeout.ms"],
                heartbeat_interval_ms=cfg["broker.heartbeat.interval.ms"],
                disconnect_grace_ms=cfg["broker.session.disconnect.grace.ms"],
                probe_listener=cfg.inter_broker_listener,
                node_id=me.node_id)
        # Every operation, even on a controller node, goes to whichever node is active.
        raft = self.raft
        self.client = ControllerClient(
            self.voters, leader_hint=(lambda: raft.leader_id) if raft is not None else None,
            security=self.security)
        self.controller = self.client

    @property
    def broker_epoch(self) -> int:
        return self.lifecycle.broker_epoch if self.lifecycle else -1

    @property
    def is_active_controller(self) -> bool:
        """Raft leader with every committed record applied: it accepts controller writes."""
        return self.raft is not None and self.raft.is_leader

    @property
    def active_controller_id(self) -> int:
        """The Raft leader a controller node knows; on a broker-only node the controller
        its last call reached."""
        if self.raft is not None:
            return self.raft.leader_id
        return self.client.leader_id

    async def start(self, listeners: list[tuple[str, str, int]]) -> None:
        cfg = self.config
        if self.raft is not None and self.service is not None:
            self.server = grpc.aio.server(options=SERVER_OPTIONS)
            self.raft.add_to_server(self.server)
            self.service.add_to_server(self.server)
            address = cfg["controller.listener"]
            if self.security.add_port(self.server, address) == 0:
                raise OSError(f"cannot listen on controller.listener {address}")
            await self.server.start()
            await self.raft.start()
            await self.service.start()
            if cfg["auto.leader.rebalance.enable"]:
                self._rebalancer = asyncio.create_task(self._rebalance_leaders())
        elif self.is_broker:
            self.follower = MetadataFollower(self.client, self.loader)
            await self.follower.start()
        if self.is_broker:
            self.lifecycle = BrokerLifecycle(
                self.client, self.me.node_id, self.me.incarnation_id, listeners,
                cfg["rack"] or None, lambda: self.loader.image.offset,
                cfg["broker.heartbeat.interval.ms"],
                previous_shutdown_clean=self.me.previous_shutdown_clean)
            await self.lifecycle.start()

    async def wait_unfenced(self, timeout: float) -> None:
        """Until the active controller has unfenced this broker: it has caught up with the
        metadata log up to its own registration. TimeoutError says why not yet."""
        assert self.lifecycle is not None, "only a broker is fenced or unfenced"
        await self.lifecycle.wait_unfenced(timeout)

    async def _rebalance_leaders(self) -> None:
        interval = self.config["leader.imbalance.check.interval.seconds"]
        while True:
            await asyncio.sleep(interval)
            if self.raft is None or not self.raft.is_leader:
                continue
            try:
                moved = await self.quorum_controller.elect_preferred_leaders()
            except Exception as e:  # leadership lost mid-way: the next leader will do it
                log.debug("preferred leader election skipped: %s", e)
                continue
            if moved:
                log.info("moved %d partition leaderships back to preferred replicas", moved)

    async def controlled_shutdown(self) -> None:
        if self.lifecycle is None:
            return
        timeout = self.config["controlled.shutdown.timeout.ms"] / 1000
        if await self.lifecycle.controlled_shutdown(timeout):
            log.info("controlled shutdown: leaderships moved away")
        else:
            log.warning("controlled shutdown not confirmed within %.1fs; stopping anyway",
                        timeout)

    async def stop(self) -> None:
        if self._rebalancer is not None:
            self._rebalancer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebalancer
        if self.lifecycle is not None:
            await self.lifecycle.stop()
        if self.follower is not None:
            await self.follower.stop()
        if self.service is not None:
            await self.service.close()
        if self.raft is not None:
            await self.raft.stop()
        if self.server is not None:
            await self.server.stop(grace=1.0)
        with contextlib.suppress(Exception):
            await self.client.close()

    async def add_raft_voter(self, node_id: int, address: str, timeout_s: float,
                             directory_id: str) -> None:
        """KIP-853 AddRaftVoter: asks a controller (which forwards to the Raft leader)."""
        await self._change_voters(
            "AddVoter", raft_pb2.AddVoterRequest(node_id=node_id, address=address,
                                                 timeout_ms=int(timeout_s * 1000),
                                                 directory_id=directory_id), timeout_s)

    async def remove_raft_voter(self, node_id: int, timeout_s: float,
                                directory_id: str) -> None:
        await self._change_voters(
            "RemoveVoter", raft_pb2.RemoveVoterRequest(node_id=node_id,
                                                       timeout_ms=int(timeout_s * 1000),
                                                       directory_id=directory_id),
            timeout_s)

    async def _change_voters(self, method: str, request: object, timeout_s: float) -> None:
        voters = self.raft.voter_endpoints if self.raft is not None else dict(self.voters)
        voters = {i: a for i, a in voters.items() if a} or dict(self.voters)
        hint = self.raft.leader_id if self.raft is not None else self.client.leader_id
        tried = []
        for node_id in sorted(voters, key=lambda i: (i != hint, i)):
            address = voters[node_id]
            try:
                async with self.security.channel(address) as ch:
                    stub = raft_pb2_grpc.RaftServiceStub(ch)
                    answer: raft_pb2.VoterChangeResponse = await getattr(stub, method)(
                        request, timeout=timeout_s + 2.0)
            except grpc.aio.AioRpcError as e:
                tried.append(f"{node_id}@{address}: {e.code().name}")
                continue
            if answer.error:
                raise VoterChangeFailed(answer.error, answer.message)
            return
        raise ControllerUnavailable(method, timeout_s, tried)

    async def describe_quorum(self) -> QuorumDescription:
        """The leader's view: this node's own when it leads, else asked over gRPC of the
        voters (the leader hint first; a follower's Raft service forwards to its leader)."""
        if self.raft is not None and self.raft.is_leader:
            return _quorum_description(self.raft.describe(), self.voters)
        hint = self.raft.leader_id if self.raft is not None else self.client.leader_id
        order = sorted(self.voters, key=lambda i: (i != hint, i))
        tried = []
        for node_id in order:
            address = self.voters[node_id]
            try:
                async with self.security.channel(address) as ch:
                    answer = await raft_pb2_grpc.RaftServiceStub(ch).DescribeQuorum(
                        raft_pb2.DescribeQuorumRequest(), timeout=2.0)
            except grpc.aio.AioRpcError as e:
                tried.append(f"{node_id}@{address}: {e.code().name}")
                continue
            return _quorum_description(answer, self.voters)
        raise ControllerUnavailable("DescribeQuorum", 2.0 * len(order), tried)

    def collectors(self) -> list[Collector]:
        out: list[Collector] = []
        if self.raft is not None:
            out.append(RaftCollector(self.raft))
        if self.service is not None:
            out.append(SessionsCollector(self.service.sessions))
        return out


def _quorum_description(r: raft_pb2.DescribeQuorumResponse,
                        voters: dict[int, str]) -> QuorumDescription:
    """Raft's answer in Kafka's terms: the term is the leader epoch, indexes are offsets."""

    def replica(x: raft_pb2.ReplicaState) -> QuorumReplica:
        return QuorumReplica(x.node_id, x.log_end_offset if x.log_end_offset else -1,
                             x.last_contact_ms_ago, x.directory_id)

    endpoints = {}
    # The voters' addresses as the leader knows them (from the Raft log once voters were
    # changed), falling back to controller.quorum.voters.
    addresses = {**voters, **{v.node_id: v.address for v in r.voters if v.address}}
    for node_id in [v.node_id for v in r.voters] or list(voters):
        host, _, port = addresses.get(node_id, "").rpartition(":")
        if host and port.isdigit():
            endpoints[node_id] = (host.strip("[]"), int(port))
    return QuorumDescription(r.leader_id, r.term, r.high_watermark,
                             tuple(replica(v) for v in r.voters),
                             tuple(replica(o) for o in r.observers), endpoints)


def make_plane(cfg: NodeConfig, me: NodeIdentity) -> MetadataPlane:
    if cfg["controller.quorum.voters"]:
        return RaftMetadataPlane(cfg, me)
    return LocalMetadataPlane(cfg, me)


def controller_security(config: NodeConfig) -> GrpcSecurity:
    """How the controllers' gRPC listener and every channel to it are secured: the
    protocol of ``controller.listener.names`` in ``listener.security.protocol.map``
    (PLAINTEXT when it is not there), SSL meaning TLS with mutual authentication."""
    name = config.controller_listener_name
    protocol = config["listener.security.protocol.map"].get(name, "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return PLAINTEXT
    what = f"controller listener {name}"
    settings = tls_settings(config, name)
    if protocol != "SSL":
        raise tls.TlsConfigError(
            f"{what} is {protocol}: the controllers' gRPC listener supports PLAINTEXT or SSL "
            "(TLS with mutual authentication by certificate), not SASL")
    if not settings.has_keystore or not settings.has_truststore:
        raise tls.TlsConfigError(
            f"{what} is SSL: it needs ssl.keystore.location (this node's key and "
            "certificate) and ssl.truststore.location (the CAs of the other nodes' "
            f"certificates), globally or as listener.name.{name.lower()}.ssl.*")
    return GrpcSecurity(tls.grpc_material(settings, what))

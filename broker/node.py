"""One Odradek node: metadata, partition logs, group coordinator and the Kafka listeners.

This is the only place that wires broker, controller and storage together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker import features, topic_configs
from odradek.broker.config import NodeConfig, parse_ip_overrides
from odradek.broker.fetch_sessions import FetchSessionCache
from odradek.broker.group.consumer_group import TopicMetadata
from odradek.broker.group.coordinator import GroupCoordinator
from odradek.broker.group_log import PartitionGroupLog
from odradek.broker.handlers import (
    acls,
    admin,
    broker_registrations,
    client_quotas,
    feature_updates,
    fetch,
    log_dirs,
    meta,
    produce,
    quorum,
    raft_voters,
    reassignments,
    sasl,
    scram_credentials,
    txn,
    txn_admin,
)
from odradek.broker.handlers.api import ApiSpec
from odradek.broker.kafka import codec
from odradek.broker.loop_watchdog import LoopWatchdog
from odradek.broker.metadata_collector import MetadataCollector
from odradek.broker.metadata_plane import CLEAN_SHUTDOWN_MARKER, MetadataPlane, NodeIdentity
from odradek.broker.metrics import NodeMetrics
from odradek.broker.metrics_http import MetricsServer
from odradek.broker.node_collector import NodeCollector
from odradek.broker.replica_manager import ReplicaManager
from odradek.broker.replication import ReplicationManager
from odradek.broker.replication_quota import ReplicationQuotas
from odradek.broker.security.acl_metadata import updated_index
from odradek.broker.security.authorization import Authorization, parse_super_users
from odradek.broker.security.authorizer import AclIndex
from odradek.broker.security.listeners import inter_broker_client, listener_security
from odradek.broker.security.quota_metadata import quota_configs_of
from odradek.broker.security.quotas import ControllerMutationQuotaManager, QuotaConfigs
from odradek.broker.security.scram import ScramCredential
from odradek.broker.security.throttling import Throttling
from odradek.broker.server import KafkaServer, ServerLimits
from odradek.broker.txn import TransactionCoordinator
from odradek.broker.txn_markers import BrokerMarkerSender, MarkerWriter
from odradek.broker.txn_metrics import TxnCollector
from odradek.broker.txn_state_log import PartitionTxnLog
from odradek.broker.txn_verification import TxnVerifier
from odradek.controller.metadata import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    MetadataDelta,
    MetadataImage,
)
from odradek.controller.metadata.broker_configs import DYNAMIC_BROKER_KEYS_BY_NAME
from odradek.controller.metadata.delta import LocalReplicaChanges, local_replicas
from odradek.controller.metadata.requests import (
    ControllerApi,
    ControllerCallFailed,
    CreateTopicSpec,
    QuorumDescription,
)
from odradek.storage.cleaner import CleanerConfig, LogCleaner

log = logging.getLogger("odradek.node")

# The APIs on a broker's hot path (clients' writes and reads, followers, coordinators):
# their schema classes are loaded at start-up rather than by the first request that uses
# them (codec.warm). The others load on first use.
_WARM_APIS = (0, 1, 2, 3, 8, 9, 10, 11, 12, 14, 18, 22, 24, 26)


# Of each, the newest versions, which current clients mostly send (librdkafka 2.12 sends
# Fetch v16 and Produce v10, the Java client 4.1 the newest we serve). Every version would
# cost every node start 0.6 s of CPU, these four about 0.25 s.
_WARM_NEWEST = 4


# Between two versions loaded by the warm-up: about a millisecond of loading each time,
# then the GIL is left to the event loop.
_WARM_PAUSE_S = 0.01


def _warm_versions(apis: Mapping[int, ApiSpec[Node]]) -> list[tuple[int, int]]:
    """The hot APIs' newest versions, newest first."""
    pairs = [(key, v) for key in _WARM_APIS if (spec := apis.get(key)) is not None
             for v in range(max(spec.min_version, spec.max_version - _WARM_NEWEST + 1),
                            spec.max_version + 1)]
    return sorted(pairs, key=lambda kv: (-kv[1], kv[0]))


def handler_table(unstable_versions: bool = False) -> dict[int, ApiSpec[Node]]:
    """Every API this node serves, with the versions Kafka marks unstable only when
    ``unstable_versions`` (unstable.api.versions.enable). Each module's handlers need a node
    with the services its Protocol names; listing them here checks (mypy) that Node has
    them all."""
    from odradek.broker.group import handlers as group_handlers

    apis: dict[int, ApiSpec[Node]] = {}
    specs: list[Sequence[ApiSpec[Node]]] = [meta.APIS, produce.APIS, fetch.APIS, admin.APIS,
                                            log_dirs.APIS, quorum.APIS, group_handlers.APIS,
                                            txn.APIS, txn_admin.APIS, sasl.APIS,
                                            scram_credentials.APIS, acls.APIS,
                                            client_quotas.APIS, feature_updates.APIS,
                                            broker_registrations.APIS, reassignments.APIS,
                                            raft_voters.APIS]
    for module_specs in specs:
        for spec in module_specs:
            assert spec.api_key not in apis, f"api key {spec.api_key} registered twice"
            apis[spec.api_key] = spec if unstable_versions else spec.stable()
    return apis




def cleaner_config(config: NodeConfig) -> CleanerConfig:
    return CleanerConfig(
        enable=config["log.cleaner.enable"],
        threads=config["log.cleaner.threads"],
        io_max_bytes_per_second=config["log.cleaner.io.max.bytes.per.second"],
        dedupe_buffer_size=config["log.cleaner.dedupe.buffer.size"],
        backoff_ms=config["log.cleaner.backoff.ms"],
    )

@dataclasses.dataclass(slots=True)
class _ReplicaChanges:
    """One delta's work for the replica manager, queued by the metadata listener."""

    changes: LocalReplicaChanges
    image: MetadataImage
    configs: set[str]  # topics whose configs changed
    first: bool  # the first image holding this process's registration


# How long a clean stop may take before the node logs what it is waiting for.
STOP_REPORT_S = 10.0
# How long a stopping broker keeps answering after its leaderships moved away.
HANDOVER_LINGER_S = 0.25


def task_stacks() -> str:
    """Where every pending task of the running loop waits (a hung stop, SIGUSR2)."""
    me = asyncio.current_task()
    stacks = []
    for task in asyncio.all_tasks():
        if task is me or task.done():
            continue
        # Not task.print_stack: it fails on frames without a line number (gRPC's Cython
        # coroutines), which is when this is needed.
        lines = [f"{task.get_name()}:"]
        # The chain of awaits, outermost first (Task.get_stack shows one frame only).
        awaited: Any = task.get_coro()
        for _ in range(30):
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                lines.append(f"  awaiting {awaited!r}")
                break
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
            if awaited is None:
                break
        stacks.append("\n".join(lines))
    return "\n".join(stacks)


async def _report_slow_stop(node_id: int, after_s: float) -> None:
    await asyncio.sleep(after_s)
    log.error("node %d: stopping has taken %.0f s; the tasks still running (a stop should "
              "take a second; send SIGKILL if it does not end, and report these stacks):\n%s",
              node_id, after_s, task_stacks())


class Node:
    """The broker side of one node, around the metadata plane it is given (a local log or a
    Raft quorum: odradek.broker.cli.metadata_plane wires either in)."""

    def __init__(self, config: NodeConfig, me: NodeIdentity,
                 make_plane: Callable[[NodeConfig, NodeIdentity], MetadataPlane]) -> None:
        # The config file; `config` is the effective config: the dynamic broker configs of
        # the metadata image over the file (_apply_dynamic_configs), read live by everyone.
        self.static_config = config
        self.config = config
        self.config_levels = topic_configs.BrokerConfigLevels(config)
        self.me = me
        # The replication throttles (KIP-73): their rates follow the dynamic configs
        # (_apply_dynamic_configs), their throttled partitions the topics' configs.
        self.replication_quotas = ReplicationQuotas(
            config.node_id, config["replication.quota.window.num"],
            config["replication.quota.window.size.seconds"])
        self._apply_replication_rates()
        self.node_id = config.node_id
        self.metrics = NodeMetrics(self.node_id)
        self.watchdog = LoopWatchdog(self.metrics.registry)
        self.stopping = False
        self.data_dir = config.data_dir
        self.cluster_id = me.cluster_id
        self.incarnation_id = me.incarnation_id
        self.image: MetadataImage = MetadataImage.EMPTY
        self._replicas_current = False
        self.apis = handler_table(bool(config["unstable.api.versions.enable"]))
        self.inter_broker_listener = config.inter_broker_listener
        # The ACLs of the cluster metadata, current with self.image (kept by the metadata
        # listener), and what handlers ask of them.
        self.acls: AclIndex = AclIndex.EMPTY
        # Client quotas of the cluster metadata, current with self.image (kept by the
        # metadata listener), and their enforcement by the transport.
        self.quota_configs = QuotaConfigs()
        self.throttling = Throttling(lambda: self.quota_configs)
        self.mutation_quotas = ControllerMutationQuotaManager(lambda: self.quota_configs)
        self.authorization = Authorization(
            bool(config["authorizer.class.name"]), parse_super_users(config["super.users"]),
            config["allow.everyone.if.no.acl.found"], lambda: self.acls)
        # How this broker reaches the others' inter-broker listener (TLS, SASL).
        self.inter_broker_security = inter_broker_client(config)
        self.server = KafkaServer(self, self.apis, ServerLimits(
            max_request_bytes=config["socket.request.max.bytes"],
            queued_max_request_bytes=config["queued.max.request.bytes"],
            max_connections=config["max.connections"],
            max_connections_per_ip=config["max.connections.per.ip"],
            max_connections_per_ip_overrides=parse_ip_overrides(
                config["max.connections.per.ip.overrides"]),
            connections_max_idle_ms=config["connections.max.idle.ms"],
            socket_send_buffer_bytes=config["socket.send.buffer.bytes"],
            inter_broker_listener=self.inter_broker_listener,
            max_connection_creation_rate=config["max.connection.creation.rate"],
            listener_connection_creation_rates={
                li.name: int(rate) for li in config.listeners
                if (rate := config.listener_override(li.name, "max.connection.creation.rate"))
                is not None}))
        self.metrics.export_listeners([li.name for li in config.listeners])
        self.metrics.export_apis(sorted(self.apis))
        self.metrics.request_queue_bytes.set_function(lambda: self.server.budget.used)
        # Set once the image holds this process's registration and the replica manager
        # has taken it: from then on this node answers clients with the cluster as it is.
        self._current = asyncio.Event()
        self._replica_changes: asyncio.Queue[_ReplicaChanges] = asyncio.Queue()
        self.replicas = ReplicaManager(self.node_id, self.data_dir / "logs", self.log_config_for,
                                       self.min_insync_replicas,
                                       cleaner=LogCleaner(cleaner_config(config)))
        self.replicas.isr_listeners.append(
            lambda kind: self.metrics.isr_changes.labels(kind=kind).inc())
        self.replicas.leadership_listeners.append(self._on_leadership)
        self.replication = ReplicationManager(self)
        self.fetch_sessions = FetchSessionCache(
            config["max.incremental.fetch.session.cache.slots"],
            config["min.incremental.fetch.session.eviction.ms"],
            on_evict=self.metrics.fetch_session_evictions.inc)
        self.replicas.nudge_followers = self.fetch_sessions.nudge
        self.metrics.fetch_sessions.set_function(lambda: len(self.fetch_sessions))
        self.metrics.fetch_session_partitions.set_function(
            lambda: self.fetch_sessions.total_partitions)
        self.plane = make_plane(config, me)
        # The controller's operations: local, or a client of the active controller.
        self.controller: ControllerApi = self.plane.controller
        self.plane.loader.register(self._on_metadata)
        self.group_log = PartitionGroupLog(self.replicas, meta.OFFSETS_TOPIC,
                                           config["offsets.topic.num.partitions"])
        self.groups = GroupCoordinator(
            self.group_log,
            partition_exists=self._partition_exists,
            initial_rebalance_delay_ms=config["group.initial.rebalance.delay.ms"],
            min_session_timeout_ms=config["group.min.session.timeout.ms"],
            max_session_timeout_ms=config["group.max.session.timeout.ms"],
            max_group_size=config["group.max.size"],
            offsets_retention_ms=config["offsets.retention.minutes"] * 60_000,
            topic_metadata=self._topic_metadata,
            # The mapping itself: replaced when topics change, so regex matches are
            # cached for as long as it is the same object (group/topic_regex.py).
            topic_names=lambda: self.image.topics,
            consumer_session_timeout_ms=config["group.consumer.session.timeout.ms"],
            consumer_heartbeat_interval_ms=config["group.consumer.heartbeat.interval.ms"],
            consumer_max_size=config["group.consumer.max.size"],
        )
        self.marker_writer = MarkerWriter(self, self.replicas, self.groups)
        self.marker_sender = BrokerMarkerSender(self, self.marker_writer)
        self.transactions = TransactionCoordinator(
            PartitionTxnLog(self.replicas, meta.TRANSACTION_STATE_TOPIC,
                            config["transaction.state.log.num.partitions"]),
            self.marker_sender,
            self,
            partition_exists=self._partition_exists,
            group_partition_for=self.groups.partition_for,
            transaction_max_timeout_ms=config["transaction.max.timeout.ms"],
            transactional_id_expiration_ms=config["transactional.id.expiration.ms"],
            abort_timed_out_transactions_interval_ms=config[
                "transaction.abort.timed.out.transaction.cleanup.interval.ms"],
            remove_expired_transactional_ids_interval_ms=config[
                "transaction.remove.expired.transaction.cleanup.interval.ms"],
            # The finalized transaction.version: how the coordinator's own aborts and
            # records are written (broker/features.py); _on_metadata keeps it current.
            transaction_version_level=features.transaction_version_level(self.image),
            node_id=self.node_id,
        )
        self.txn_verifier = TxnVerifier(self)
        self._coordinator_loads: set[asyncio.Task[None]] = set()
        self.metrics.add_collector(NodeCollector(
            self.replicas, self.groups.admin.list_groups, self.groups.offsets.committed_offsets))
        self.metrics.add_collector(TxnCollector(lambda: self.transactions,
                                                lambda: int(time.time() * 1000)))
        self.metrics.add_collector(MetadataCollector(
            lambda: self.image, lambda: self.plane.is_active_controller))
        for collector in self.plane.collectors():
            self.metrics.add_collector(collector)
        self.metrics_server: MetricsServer | None = None
        self.bound: dict[str, tuple[str, int]] = {}
        self._pid_block: tuple[int, int] = (0, 0)
        self._tasks: list[asyncio.Task[None]] = []
        self._internal_topic_lock = asyncio.Lock()

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def is_broker(self) -> bool:
        return "broker" in self.config.roles

    def _expire_quota_sensors(self) -> None:
        self.throttling.expire_idle()
        self.mutation_quotas.expire_idle(time.monotonic())

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        """A SCRAM user's credential as the cluster metadata holds it now (SASL listeners
        look it up at each authentication, so a changed password applies at once)."""
        stored = self.image.scram_credentials.get((user, mechanism))
        if stored is None:
            return None
        return ScramCredential(stored.salt, stored.stored_key, stored.server_key,
                               stored.iterations)

    async def start(self) -> None:
        if self.is_broker:
            # Bound now (an ephemeral port must be known to register it), but accepting
            # connections only once this node knows the cluster: a client that connected
            # earlier would be told of an empty cluster, and librdkafka, for one, would
            # not ask again for minutes.
            for li in self.config.listeners:
                security = listener_security(self.config, li.name, self.scram_credential)
                if security.authenticator is not None and "OAUTHBEARER" in \
                        self.config.listener_value(li.name, "sasl.enabled.mechanisms"):
                    log.warning("listener %s accepts unsecured OAUTHBEARER tokens: any client "
                                "can claim any principal (Kafka's development mode); do not "
                                "use it where authentication matters", li.name)
                port = await self.server.listen(li.name, li.host, li.port, security)
                self.bound[li.name] = (li.host, port)
        listeners = [(li.name, li.host, li.port or self.bound[li.name][1])
                     for li in self.config.advertised_listeners]
        self.watchdog.start()
        self._tasks.append(asyncio.create_task(self._apply_replica_changes(),
                                               name=f"replica-changes-{self.node_id}"))
        await self.plane.start(listeners)
        if self.is_broker:
            await self._until_current()
            self.replication.start()
            if self.replicas.cleaner is not None:
                self.replicas.cleaner.start()
            self._tasks.append(asyncio.create_task(self._every(
                self.config["log.retention.check.interval.ms"],
                self.replicas.enforce_retention)))
            self._tasks.append(asyncio.create_task(self._every(
                self.config["log.flush.scheduler.interval.ms"], self.replicas.flush_due)))
            # Quota sensors of clients gone for an hour are dropped (Kafka's sensor expiry).
            self._tasks.append(asyncio.create_task(self._every(
                30_000, self._expire_quota_sensors)))
            await self.server.start_serving()
            # Once serving, not during the start-up rush (a 1-node test cluster's first
            # write came 0.35 s later with the warm-up beside the start): paced, so that
            # the loop keeps most of the GIL meanwhile.
            threading.Thread(target=codec.warm, args=(_warm_versions(self.apis),
                                                      _WARM_PAUSE_S),
                             name="schema-warm-up", daemon=True).start()
        if self.config["metrics.listener"]:
            host, _, port = self.config["metrics.listener"].rpartition(":")
            self.metrics_server = MetricsServer(self.metrics.registry)
            await self.metrics_server.start(host, int(port))
        if not self.is_broker:
            log.info("node %d started as a controller only, cluster %s", self.node_id,
                     self.cluster_id)
            return
        log.info("node %d started: kafka %s, cluster %s", self.node_id,
                 ", ".join(f"{n}={h}:{p}" for n, (h, p) in self.bound.items()), self.cluster_id)

    async def _until_current(self) -> None:
        """Until the controller has unfenced this broker and its image, with its own
        registration, has reached the replica manager."""
        waited = 0.0
        step = 10.0
        while True:
            try:
                await self.plane.wait_unfenced(step)
                async with asyncio.timeout(step):
                    await self._current.wait()
                return
            except TimeoutError as e:
                waited += step
                log.warning("%s; Kafka clients are not served until it has (waited %.0fs)",
                            e or "this node's metadata image does not hold its registration "
                            "yet", waited)

    @property
    def broker_epoch(self) -> int:
        return self.plane.broker_epoch

    @property
    def active_controller_id(self) -> int:
        return self.plane.active_controller_id

    async def describe_quorum(self) -> QuorumDescription:
        return await self.plane.describe_quorum()

    async def add_raft_voter(self, node_id: int, address: str, timeout_s: float,
                             directory_id: str) -> None:
        await self.plane.add_raft_voter(node_id, address, timeout_s, directory_id)

    async def remove_raft_voter(self, node_id: int, timeout_s: float,
                                directory_id: str) -> None:
        await self.plane.remove_raft_voter(node_id, timeout_s, directory_id)

    async def stop(self) -> None:
        # A stop that hangs is a process the operator has to kill: say what it waits for.
        reporter = asyncio.create_task(_report_slow_stop(self.node_id, STOP_REPORT_S))
        try:
            await self._stop()
        finally:
            reporter.cancel()

    async def _hand_over(self) -> None:
        """The controlled shutdown, given up as soon as no other broker could take over
        (all of them stopping too: with the quorum going, the hand-over might never
        commit, and the stop would wait out controlled.shutdown.timeout.ms)."""
        handover = asyncio.create_task(self.plane.controlled_shutdown())
        try:
            while not handover.done():
                if not self.live_broker_ids() - {self.node_id}:
                    log.info("no other broker can take over (all are stopping); not waiting "
                             "for the controlled shutdown")
                    handover.cancel()
                    break
                await asyncio.wait({handover}, timeout=0.05)
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await handover

    async def _stop(self) -> None:
        if self.is_broker and self.live_broker_ids() - {self.node_id}:
            # Someone can take over our leaderships: hand them over before going.
            led = any(p.is_leader for p in self.replicas.partitions.values())
            await self._hand_over()
            if led:
                # Answer a moment longer: clients writing or reading here get
                # NOT_LEADER_OR_FOLLOWER with the new leader (KIP-951) or refresh their
                # metadata over a connection that is still up, instead of a closed socket
                # and a reconnect backoff (librdkafka then waits up to half a second).
                await asyncio.sleep(HANDOVER_LINGER_S)
        self.stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.server.close()
        await self.replication.stop()
        await self.transactions.close()
        await self.marker_sender.close()
        await self.txn_verifier.close()
        await self.groups.close()
        if self.metrics_server:
            await self.metrics_server.stop()
        self.replicas.close()
        await self.plane.stop()
        await self.watchdog.stop()
        (self.data_dir / CLEAN_SHUTDOWN_MARKER).touch()  # read by node_identity() next time
        log.info("node %d stopped cleanly", self.node_id)

    async def _every(self, interval_ms: int, fn: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            try:
                fn()
            except Exception:
                log.exception("periodic task %s failed", getattr(fn, "__name__", fn))

    # --- metadata -----------------------------------------------------------------------

    def _on_metadata(self, delta: MetadataDelta, image: MetadataImage) -> None:
        """The loader's listener: called as records commit (in a combined node, inside the
        Raft driver), so it only takes the image and queues the local replica changes:
        _apply_replica_changes applies them in order without holding the loop."""
        # From the image being replaced: a new index only when the ACLs changed.
        self.acls = updated_index(self.acls, self.image.acls, image.acls)
        self.quota_configs = quota_configs_of(self.quota_configs, self.image.client_quotas,
                                              image.client_quotas)
        self.image = image
        # An UpdateFeatures of transaction.version applies to the coordinator's next write.
        self.transactions.transaction_version_level = features.transaction_version_level(image)
        self._apply_dynamic_configs(image)
        changed = {name for rtype, name in delta.changed_config_resources()
                   if rtype == TOPIC_RESOURCE}
        # Throttled replicas are configs, not replica state: history replayed at start-up
        # leaves them as they are now, so they are taken from every delta.
        for topic in changed:
            self.replication_quotas.update_topic(topic, image.topic_configs(topic))
        removed = delta.removed_topics()
        if removed:
            self._forget_offsets_of({t.name for t in removed.values()})
        if not self._replicas_current:
            # Until the image holds this process's own registration, the records being
            # applied are history (a restart replays the metadata log from its start): this
            # node leading at some old epoch must not touch its logs, or it would rewrite
            # their leader-epoch history. The controller fenced the previous process and
            # moved its leaderships before it accepted this registration, so from here on
            # the image is current: take all of it at once, then deltas as they come.
            reg = image.brokers.get(self.node_id)
            if reg is None or reg.incarnation_id != self.incarnation_id:
                return
            self._replicas_current = True
            changes = local_replicas(image, self.node_id)
            first = True
        else:
            changes = delta.local_changes(self.node_id)
            first = False
        self._replica_changes.put_nowait(_ReplicaChanges(changes, image, changed, first))

    def _forget_offsets_of(self, topics: set[str]) -> None:
        """Deleted topics: the groups this node coordinates drop their offsets of them
        (nothing is loaded yet while history is replayed at start-up)."""
        async def forget() -> None:
            try:
                await self.groups.offsets.forget_deleted_topics(topics)
            except Exception:
                log.exception("removing the committed offsets of deleted topics %s failed",
                              sorted(topics))

        task = asyncio.get_running_loop().create_task(forget())
        self._coordinator_loads.add(task)
        task.add_done_callback(self._coordinator_loads.discard)

    async def _apply_replica_changes(self) -> None:
        """Apply queued local replica changes one delta at a time, in log order."""
        while True:
            item = await self._replica_changes.get()
            try:
                await self.replicas.apply(item.changes, item.image)
                if item.first:
                    self._current.set()
                if not self.stopping:
                    self.replication.update_fetchers()
                if item.configs:
                    self.replicas.update_configs(item.configs)
            except Exception:
                log.exception("applying the metadata image at offset %d to the local "
                              "replicas failed", item.image.offset)

    def _apply_dynamic_configs(self, image: MetadataImage) -> None:
        """Take the dynamic broker configs (cluster-wide, then this broker's) of the image:
        keys read where they are used see them at once; the connection limits and the
        log configs of hosted partitions are pushed here."""
        cluster = image.configs.get((BROKER_RESOURCE, ""), {})
        own = image.configs.get((BROKER_RESOURCE, str(self.node_id)), {})
        if cluster == self.config_levels.cluster and own == self.config_levels.own:
            return
        old = self.config
        self.config_levels = topic_configs.BrokerConfigLevels(self.static_config, cluster, own)
        self.config = self.config_levels.effective
        changed = {k for k in DYNAMIC_BROKER_KEYS_BY_NAME if old[k] != self.config[k]}
        if not changed:
            return
        self._apply_replication_rates()
        log.info("node %d: dynamic broker configs now in effect: %s", self.node_id,
                 ", ".join(f"{k}={self.config[k]}" for k in sorted(changed)))
        self.server.limits = dataclasses.replace(
            self.server.limits,
            max_connections=self.config["max.connections"],
            max_connections_per_ip=self.config["max.connections.per.ip"],
            max_connections_per_ip_overrides=parse_ip_overrides(
                self.config["max.connections.per.ip.overrides"]))
        if changed & set(topic_configs.BROKER_TOPIC_DEFAULTS):
            self.replicas.update_configs({topic for topic, _ in self.replicas.partitions})

    def _apply_replication_rates(self) -> None:
        self.replication_quotas.update_rates(self.config["leader.replication.throttled.rate"],
                                             self.config["follower.replication.throttled.rate"])

    def _on_leadership(self, tp: tuple[str, int], leader: bool) -> None:
        if tp[0] == meta.OFFSETS_TOPIC:
            if leader:
                asyncio.get_running_loop().create_task(self.groups.load_partition(tp[1]))
            else:
                self.groups.unload_partition(tp[1])
        elif tp[0] == meta.TRANSACTION_STATE_TOPIC:
            p = self.replicas.get(tp)
            if leader and p is not None:
                # The partition's leader epoch is the coordinator epoch its markers carry.
                task = asyncio.get_running_loop().create_task(
                    self._load_transactions(tp[1], p.leader_epoch))
                self._coordinator_loads.add(task)
                task.add_done_callback(self._coordinator_loads.discard)
            else:
                self.transactions.unload_partition(tp[1])
        elif leader:  # the topic's traffic counters exist, at 0, wherever it is led
            self.metrics.export_topic(tp[0])

    async def _load_transactions(self, partition: int, leader_epoch: int) -> None:
        # Only if still leading at that epoch: a leadership lost before this task ran must
        # not be loaded after the unload that followed it.
        p = self.replicas.get((meta.TRANSACTION_STATE_TOPIC, partition))
        if p is not None and p.is_leader and p.leader_epoch == leader_epoch:
            await self.transactions.load_partition(partition, leader_epoch)

    def topic_overrides(self, topic: str) -> Mapping[str, str]:
        return self.image.topic_configs(topic)

    def log_config_for(self, topic: str) -> storage.LogConfig:
        return topic_configs.log_config(self.config, self.topic_overrides(topic))

    def describe_topic_configs(self, topic: str) -> list[tuple[str, str, int, str, int]]:
        return topic_configs.describe_topic(self.config_levels, self.topic_overrides(topic))

    def describe_broker_configs(self) -> list[tuple[str, str, int, str, int]]:
        return topic_configs.describe_broker(self.config_levels)

    def describe_cluster_default_configs(self) -> list[tuple[str, str, int, str, int]]:
        return topic_configs.describe_cluster_default(self.config_levels.cluster)

    def broker_config_synonyms(self, name: str) -> list[tuple[str, str, int]]:
        return self.config_levels.synonyms(name)

    def min_insync_replicas(self, topic: str) -> int:
        return int(self.topic_overrides(topic).get("min.insync.replicas", 1))

    def _partition_exists(self, topic: str, partition: int) -> bool:
        t = self.image.topics.get(topic)
        return t is not None and partition in t.partitions

    def _topic_metadata(self, names: Iterable[str]) -> dict[str, TopicMetadata]:
        """The named topics that exist, as consumer group assignors see them."""
        topics = self.image.topics
        return {n: TopicMetadata(t.topic_id, n, len(t.partitions))
                for n in names if (t := topics.get(n)) is not None}

    def live_broker_ids(self) -> frozenset[int]:
        """Brokers that may lead or join an ISR: unfenced, not shutting down."""
        return self.image.usable_ids

    def api_versions_list(self) -> list[dict[str, int]]:
        return self.server.api_versions

    # --- topics -------------------------------------------------------------------------

    async def auto_create_topics(self, names: list[str]) -> None:
        specs = [CreateTopicSpec(n, self.config["num.partitions"],
                                 self.config["default.replication.factor"]) for n in names]
        try:
            results = await self.controller.create_topics(specs)
        except ControllerCallFailed as e:
            # The Metadata answer says LEADER_NOT_AVAILABLE and the client asks again.
            log.warning("auto-creating topics %s failed: %s", names, e)
            return
        for r in results:
            if r.error_code not in (0, ErrorCode.topic_already_exists.value):
                log.warning("auto-creating topic %s failed: %s", r.name, r.error_message)

    def _internal_topic_spec(self, name: str) -> CreateTopicSpec:
        """How an internal topic is created: compacted, its replication factor capped to
        the brokers present (a one-broker cluster still gets one), and so its min ISR."""
        prefix = "offsets.topic" if name == meta.OFFSETS_TOPIC else "transaction.state.log"
        live = max(1, len(self.live_broker_ids()))
        rf = min(self.config[f"{prefix}.replication.factor"], live)
        configs = {"cleanup.policy": "compact",
                   "segment.bytes": str(self.config[f"{prefix}.segment.bytes"])}
        if name == meta.TRANSACTION_STATE_TOPIC:
            configs["min.insync.replicas"] = str(
                min(self.config["transaction.state.log.min.isr"], rf))
        return CreateTopicSpec(name, self.config[f"{prefix}.num.partitions"], rf,
                               configs=configs)

    async def ensure_internal_topic(self, name: str) -> bool:
        """Create __consumer_offsets or __transaction_state on first use, as Kafka does."""
        if name in self.image.topics:
            return True
        async with self._internal_topic_lock:
            if name in self.image.topics:
                return True
            try:
                results = await self.controller.create_topics([self._internal_topic_spec(name)])
            except ControllerCallFailed as e:
                log.warning("creating %s failed: %s", name, e)
                return False
            for r in results:
                if r.error_code not in (0, ErrorCode.topic_already_exists.value):
                    log.error("creating %s failed: %s", name, r.error_message)
        return name in self.image.topics

    async def coordinator_endpoint(self, key: str, key_type: int, listener_name: str
                                   ) -> tuple[int, str, int] | None:
        if key_type == meta.GROUP_KEY:
            topic, partition = meta.OFFSETS_TOPIC, self.groups.partition_for(key)
        else:
            topic, partition = meta.TRANSACTION_STATE_TOPIC, self.transactions.partition_for(key)
        if not await self.ensure_internal_topic(topic):
            return None
        reg = self.image.topics[topic].partitions.get(partition)
        if reg is None or reg.leader < 0:
            return None
        ep = self.image.endpoint(reg.leader, listener_name)
        return None if ep is None else (reg.leader, ep.host, ep.port)

    # --- producers and replication --------------------------------------------------------

    async def next_producer_id(self) -> int:
        start, end = self._pid_block
        if start >= end:
            res = await self.controller.allocate_producer_ids(self.node_id, self.broker_epoch)
            if res.error_code != ErrorCode.none:
                raise RuntimeError(f"producer id allocation refused: {res.error_message}")
            start, end = res.first_producer_id, res.first_producer_id + res.size
        self._pid_block = (start + 1, end)
        return start

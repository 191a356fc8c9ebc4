"""Replication between brokers: follower fetchers and the leader's in-sync replica set.

Followers fetch from their partition's leader with the ordinary Fetch API (replica_id set),
one fetcher per leader broker carrying all partitions followed from it, at the highest
Fetch version both brokers serve (asked with ApiVersions on each connection): from v13
topics are named by id, so a topic deleted and created again under its name is never
confused with the old one, and from v15 the follower also sends its broker epoch, which
the leader checks before taking it into the ISR (KIP-903). A fetch carries the
follower's last epoch, and the leader answers a diverging epoch when the follower's log
went past the point where it agrees with the leader (KIP-320/595); the follower truncates
there, never to its own high watermark (the KIP-101 failure).

Replication throttles (KIP-73): a partition its topic names in
``follower.replication.throttled.replicas`` for this broker is left out of the fetch while
this replica is not in sync and the follower throttle is exceeded (Kafka's
shouldFollowerThrottle); a fetch session forgets it meanwhile, so the leader does not read
it either, and names it again once the throttle lets it through. The bytes fetched for
throttled partitions count against the throttle.

The leader tracks when each follower last caught up. A follower that has not caught up for
``replica.lag.time.max.ms`` is removed from the ISR, and one that has caught up is added
back, both through AlterPartition to the controller; the change takes effect when the
metadata record comes back, so every broker sees the same ISR.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from kio.schema.errors import ErrorCode

# Followers speak Fetch v12-v18: their answers' partitions have the fields of this type.
from kio.schema.fetch.v18.response import PartitionData

from odradek.broker.alter_partition import AlterPartitionBatcher
from odradek.broker.config import NodeConfig
from odradek.broker.fetch_sessions import FetcherSession, FetchPlan, PartitionKey
from odradek.broker.kafka.async_client import AsyncKafkaConnection, BrokerConnectionError
from odradek.broker.metrics import NodeMetrics
from odradek.broker.partition import Partition
from odradek.broker.partition_watch import PartitionWatch
from odradek.broker.replica_manager import ReplicaManager
from odradek.broker.replication_quota import ReplicationQuota, ReplicationQuotas, should_throttle
from odradek.broker.security.sasl_client import ClientSecurity
from odradek.controller.metadata import MetadataImage
from odradek.controller.metadata.requests import (
    AlterPartitionItem,
    AlterPartitionItemResult,
    ControllerApi,
)
from odradek.storage.errors import StorageError

log = logging.getLogger("odradek.replication")

FETCH_VERSION = 18  # the highest a follower asks for
MIN_FETCH_VERSION = 12  # last_fetched_epoch (diverging epochs) is there from v12
FETCH_TOPIC_IDS_VERSION = 13
_BACKOFF_S = 0.5
# Partition errors that mean the leader and this follower have not applied the same
# leadership yet (one of them is a few milliseconds behind on the metadata log): the
# fetcher asks again after _RETRY_FIRST_S, doubling while it lasts, up to _BACKOFF_S. With
# the full back-off after every leadership change, a new leader's acks=all writes waited
# half a second for this follower (a controlled shutdown took 0.7 s instead of 0.15 s).
_METADATA_LAG_ERRORS = frozenset({
    ErrorCode.not_leader_or_follower, ErrorCode.unknown_leader_epoch,
    ErrorCode.fenced_leader_epoch, ErrorCode.unknown_topic_or_partition,
    ErrorCode.unknown_topic_id, ErrorCode.inconsistent_topic_id,
})
_RETRY_FIRST_S = 0.01


class _Backoff(enum.IntEnum):
    """What one partition's fetch answer asks of the fetcher, mildest first."""

    NONE = 0
    # The metadata disagrees for a moment: ask again soon (_METADATA_LAG_ERRORS).
    SOON = 1
    # Asking again at once would get the same answer (a storage error, a truncation that
    # changed nothing): wait _BACKOFF_S.
    FULL = 2


@dataclass
class _Target:
    """Where one followed partition fetches from, as of its last metadata."""

    leader_id: int
    leader_epoch: int


class ReplicationNode(Protocol):
    """What the follower fetchers and the ISR upkeep use of the node."""

    @property
    def node_id(self) -> int: ...

    @property
    def config(self) -> NodeConfig: ...

    @property
    def image(self) -> MetadataImage: ...

    @property
    def inter_broker_listener(self) -> str: ...

    @property
    def inter_broker_security(self) -> ClientSecurity: ...

    @property
    def replicas(self) -> ReplicaManager: ...

    @property
    def controller(self) -> ControllerApi: ...

    @property
    def broker_epoch(self) -> int: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def replication_quotas(self) -> ReplicationQuotas: ...

    def live_broker_ids(self) -> frozenset[int]: ...


class LeaderFetcher:
    """Fetches every partition this broker follows from one leader broker."""

    def __init__(self, node: ReplicationNode, leader_id: int) -> None:
        self.node = node
        self.leader_id = leader_id
        self.partitions: dict[tuple[str, int], Partition] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncKafkaConnection | None = None
        self.session = FetcherSession()
        self._version_used: int | None = None  # the Fetch version of the last request
        # What the next request would say of each partition, kept up to date from the
        # partitions' own change notices (broker/partition_watch.py) instead of visiting
        # thousands of them on every request.
        self._wanted: dict[PartitionKey, tuple[Any, ...]] = {}
        self._wanted_key: dict[tuple[str, int], PartitionKey] = {}
        self._watch: PartitionWatch[tuple[str, int]] = PartitionWatch()
        self._wanted_basis: tuple[bool, int] | None = None  # (by topic id, max bytes)
        self._unnamed = False  # a partition without topic id: fetch by name (v12)
        # Partitions whose last answer found this log at the leader's high watermark: in
        # sync for the follower throttle (Kafka's PartitionFetchState lag <= 0).
        self._caught_up: set[tuple[str, int]] = set()
        # Partitions the follower throttle left out of the last request.
        self._held: set[PartitionKey] = set()
        # Answers in a row that found the leader's metadata and ours apart (_Backoff.SOON).
        self._lagging_answers = 0
        # Requests in a row that failed on the connection (_run).
        self._connection_failures = 0
        # conn.connections when the session was last valid: a new connection may reach a
        # new process of the leader, which does not know our session.
        self._session_connection = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()
        self._watch.close()

    def set_partitions(self, parts: dict[tuple[str, int], Partition]) -> None:
        old, self.partitions = self.partitions, parts
        unnamed = False
        for tp, p in parts.items():
            unnamed = unnamed or p.topic_id is None
            if old.get(tp) is not p:
                self._watch.mark(tp)  # added, or another replica object
                self._caught_up.discard(tp)
        for tp in old.keys() - parts.keys():
            self._watch.mark(tp)
            self._caught_up.discard(tp)
        self._unnamed = unnamed
        # A leadership change starts afresh: a disagreement about the last one (ended,
        # or left behind when its partitions moved away) says nothing about this one.
        self._lagging_answers = 0
        self._changed.set()

    async def _connection(self) -> AsyncKafkaConnection | None:
        ep = self.node.image.endpoint(self.leader_id, self.node.inter_broker_listener)
        if ep is None:
            return None
        if self._conn is None or (self._conn.host, self._conn.port) != (ep.host, ep.port):
            if self._conn is not None:
                await self._conn.close()
            # The leader moved to another address (restarted): our session died with it.
            self.session.reset()
            self._conn = AsyncKafkaConnection(
                ep.host, ep.port, client_id=f"odradek-replica-fetcher-{self.node.node_id}",
                security=self.node.inter_broker_security)
        return self._conn

    async def _run(self) -> None:
        while True:
            if not self.partitions:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                conn = await self._connection()
                if conn is None:
                    await asyncio.sleep(_BACKOFF_S)
                    continue
                await self._fetch_once(conn)
            except asyncio.CancelledError:
                raise
            except BrokerConnectionError as e:
                log.debug("fetch from broker %d failed: %s", self.leader_id, e)
                # The first failure is retried at once on a new connection (the old one
                # may have broken in a way a fresh one does not, e.g. the leader restarted
                # while our request was out); a second in a row backs off.
                self._connection_failures += 1
                if self._connection_failures > 1:
                    await asyncio.sleep(_BACKOFF_S)
            except Exception:
                log.exception("follower fetch from broker %d failed", self.leader_id)
                await asyncio.sleep(_BACKOFF_S)
            else:
                self._connection_failures = 0

    async def _version(self, conn: AsyncKafkaConnection) -> int:
        """The Fetch version of the next request: the highest both brokers serve, but with
        names (v12) if a partition has no topic id (every partition from metadata has)."""
        lo, hi = (await conn.api_versions()).get(1, (0, -1))
        version = min(FETCH_VERSION, hi)
        if version < max(lo, MIN_FETCH_VERSION):
            raise BrokerConnectionError(
                f"broker {self.leader_id} serves Fetch v{lo}-v{hi}, not v{MIN_FETCH_VERSION}+")
        if version >= FETCH_TOPIC_IDS_VERSION and self._unnamed:
            version = MIN_FETCH_VERSION
        used = self._version_used
        if version != used:
            log.info("fetching from broker %d with Fetch v%d", self.leader_id, version)
            if used is not None and (version >= FETCH_TOPIC_IDS_VERSION) \
                    != (used >= FETCH_TOPIC_IDS_VERSION):
                self.session.reset()  # a session's partitions are keyed by ids or by names
        self._version_used = version
        return version

    def _refresh_wanted(self, by_id: bool) -> set[PartitionKey] | None:
        """Bring ``_wanted`` up to date: what the next fetch would say of each partition (an
        offline log fetches nothing), by (topic id, index) from Fetch v13, else by (topic,
        index). A fetch session names a partition again only when this changed. The
        partition object is part of it, so a re-created replica is named even at the same
        position; a topic created again under its name has another id, so the old id is
        forgotten and the new one added. Returns the keys that may have changed, None when
        all may have."""
        max_bytes = self.node.config["replica.fetch.max.bytes"]
        if self._wanted_basis != (by_id, max_bytes):
            self._watch.close()
            self._wanted.clear()
            self._wanted_key.clear()
            for tp, each in self.partitions.items():
                self._want(tp, each, by_id, max_bytes)
            self._wanted_basis = (by_id, max_bytes)
            return None
        keys: set[PartitionKey] = set()
        for tp in self._watch.take():
            old = self._wanted_key.pop(tp, None)
            if old is not None:
                del self._wanted[old]
                keys.add(old)
            p = self.partitions.get(tp)
            if p is not None:
                keys.add(self._want(tp, p, by_id, max_bytes))
        return keys

    def _want(self, tp: tuple[str, int], p: Partition, by_id: bool, max_bytes: int
              ) -> PartitionKey:
        key: PartitionKey = (p.topic_id if by_id else tp[0], tp[1])
        self._watch.watch(tp, p)  # its next change (own appends included) updates it
        plog = p.log
        if not plog.offline:
            self._wanted[key] = (p, p.leader_epoch, plog.log_end_offset,
                                 plog.leader_epochs.latest_epoch, plog.log_start_offset,
                                 max_bytes)
            self._wanted_key[tp] = key
        return key

    def _throttled_out(self, quota: ReplicationQuota, now: float) -> set[PartitionKey]:
        """The partitions the follower throttle leaves out of this request."""
        if not quota.is_quota_exceeded(now):
            return set()
        me, caught_up = self.node.node_id, self._caught_up
        return {key for key, (p, *_) in self._wanted.items()
                if should_throttle(quota, p.topic, p.index,
                                   me in p.isr or (p.topic, p.index) in caught_up, now)}

    async def _fetch_once(self, conn: AsyncKafkaConnection) -> None:
        version = await self._version(conn)
        if conn.connections != self._session_connection:
            # A new connection (the last one broke, or the leader closed it while we had
            # nothing to fetch from it): it may reach a new process, without our session.
            self.session.reset()
            self._session_connection = conn.connections
        by_id = version >= FETCH_TOPIC_IDS_VERSION
        topic_field = "topic_id" if by_id else "topic"
        changed = self._refresh_wanted(by_id)
        wanted = self._wanted
        if not wanted:
            await asyncio.sleep(_BACKOFF_S)
            return
        quota = self.node.replication_quotas.follower
        held = self._throttled_out(quota, time.monotonic())
        if held or self._held:
            # Left out, a partition is forgotten by the session, and named again (changed)
            # when it is let through.
            if changed is not None:
                changed |= held ^ self._held
            self._held = held
            wanted = {key: value for key, value in wanted.items() if key not in held}
            self.node.metrics.replication_throttled_skips.labels(role="follower").inc(
                len(held))
        # A fetch session (KIP-227): after one full fetch, name only the partitions whose
        # position changed, and the ones no longer followed from this leader, so an idle
        # follower's requests do not grow with its partitions.
        plan = self.session.build(wanted, changed)
        if not wanted and not plan.forgotten:
            # All held back, and the leader's session holds none of them: nothing to ask
            # for until the throttle may let one through.
            await asyncio.sleep(max(quota.recheck_after(time.monotonic()), 0.001))
            return
        by_topic: dict[Any, list[dict[str, Any]]] = {}
        for (topic, index), (_, leader_epoch, offset, last_epoch, start, max_bytes) \
                in plan.send.items():
            by_topic.setdefault(topic, []).append({
                "partition": index, "current_leader_epoch": leader_epoch,
                "fetch_offset": offset, "last_fetched_epoch": last_epoch,
                "log_start_offset": start, "partition_max_bytes": max_bytes})
        forgotten: dict[Any, list[int]] = {}
        for topic, index in plan.forgotten:
            forgotten.setdefault(topic, []).append(index)
        wait_ms = self.node.config["replica.fetch.wait.max.ms"]
        if held:
            # Back by the time the throttle may let the held partitions through.
            wait_ms = min(wait_ms, max(1, int(quota.recheck_after(time.monotonic()) * 1000)))
        try:
            # replica_id up to v14, replica_state (with the broker epoch) from v15: the codec
            # keeps the one the version has.
            response = await conn.request(1, version, {
                "replica_id": self.node.node_id,
                "replica_state": {"replica_id": self.node.node_id,
                                  "replica_epoch": self.node.broker_epoch},
                "max_wait": wait_ms, "min_bytes": 1,
                "max_bytes": self.node.config["replica.fetch.response.max.bytes"],
                "isolation_level": 0, "session_id": plan.session_id,
                "session_epoch": plan.epoch,
                "topics": [{topic_field: t, "partitions": ps} for t, ps in by_topic.items()],
                "forgotten_topics_data": [{topic_field: t, "partitions": ps}
                                          for t, ps in forgotten.items()],
            }, timeout=wait_ms / 1000 + 30)
        except BaseException:
            # Whether the leader took this request is unknown: start over with a full
            # fetch (which also closes the old session there).
            self.session.on_failure()
            raise
        self._count(plan, conn.last_request_bytes)
        self.session.on_response(plan, response.error_code, response.session_id)
        if response.error_code != ErrorCode.none:
            log.log(logging.INFO if plan.full else logging.DEBUG,
                    "fetch from broker %d: %s", self.leader_id, response.error_code.name)
            if plan.full:
                await asyncio.sleep(_BACKOFF_S)
            return
        backoff = _Backoff.NONE
        throttled_bytes = 0
        for t in response.responses:
            topic = t.topic_id if by_id else t.topic
            for pd in t.partitions:
                asked = wanted.get((topic, pd.partition_index))
                if asked is None:
                    continue
                fetched: Partition = asked[0]
                # Skip answers for partitions whose leadership changed while we waited.
                if fetched.is_leader \
                        or self.partitions.get((fetched.topic, fetched.index)) is not fetched:
                    continue
                backoff = max(backoff, self._apply(fetched, pd))
                # Whatever the answer did (truncations wake no one), ask anew next time.
                self._watch.mark((fetched.topic, fetched.index))
                if pd.records and quota.throttles_some_partition \
                        and quota.is_throttled(fetched.topic, fetched.index):
                    throttled_bytes += len(pd.records)
        if throttled_bytes:
            quota.record(throttled_bytes, time.monotonic())
            self.node.metrics.replication_throttled_bytes.labels(role="follower").inc(
                throttled_bytes)
        if backoff is _Backoff.NONE:
            self._lagging_answers = 0
        elif backoff is _Backoff.SOON:
            self._lagging_answers += 1
            await asyncio.sleep(min(_BACKOFF_S,
                                    _RETRY_FIRST_S * 2 ** (self._lagging_answers - 1)))
        else:
            await asyncio.sleep(_BACKOFF_S)

    def _count(self, plan: FetchPlan, size: int) -> None:
        kind = "full" if plan.full else "incremental"
        m = self.node.metrics
        m.replica_fetch_requests.labels(kind=kind).inc()
        m.replica_fetch_partitions.labels(kind=kind).inc(len(plan.send) + len(plan.forgotten))
        m.replica_fetch_request_bytes.labels(kind=kind).inc(size)

    def _apply(self, p: Partition, pd: PartitionData) -> _Backoff:
        """Apply one partition's fetch answer; how long the fetcher should back off."""
        plog = p.log
        err = pd.error_code
        try:
            if err == ErrorCode.none:
                diverging = pd.diverging_epoch
                if diverging.epoch >= 0 or diverging.end_offset >= 0:
                    before = (plog.log_end_offset, plog.leader_epochs.latest_epoch)
                    self._truncate_diverging(p, diverging.epoch, diverging.end_offset)
                    # The leader answers a diverging epoch at once: if truncating changed
                    # nothing, the next fetch would ask the same, so back off instead of
                    # spinning.
                    changed = (plog.log_end_offset, plog.leader_epochs.latest_epoch) != before
                    return _Backoff.NONE if changed else _Backoff.FULL
                if pd.records:
                    plog.append_as_follower(bytes(pd.records))
                p.follow_leader_high_watermark(pd.high_watermark)
                if plog.log_end_offset >= pd.high_watermark:
                    self._caught_up.add((p.topic, p.index))
                else:
                    self._caught_up.discard((p.topic, p.index))
                if pd.log_start_offset > plog.log_start_offset:
                    # The leader deleted records (retention, DeleteRecords): follow, but
                    # never past what is committed here.
                    target = min(pd.log_start_offset, plog.log_end_offset)
                    if target <= plog.high_watermark:
                        plog.delete_records(target)
                p.wake()
                return _Backoff.NONE
            if err == ErrorCode.offset_out_of_range:
                self._reset_out_of_range(p, pd)
                return _Backoff.NONE
        except StorageError as e:
            log.error("replicating %s-%d from broker %d: %s", p.topic, p.index,
                      self.leader_id, e)
            return _Backoff.FULL
        # NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_(OR_PARTITION|ID),
        # INCONSISTENT_TOPIC_ID: the leader and we disagree about metadata; it settles when
        # the next records arrive.
        log.debug("fetch %s-%d from %d: %s", p.topic, p.index, self.leader_id, err.name)
        return _Backoff.SOON if err in _METADATA_LAG_ERRORS else _Backoff.FULL

    def _truncate_diverging(self, p: Partition, epoch: int, end_offset: int) -> None:
        """Truncate to where this log and the leader's agree (Kafka's truncation rule)."""
        plog = p.log
        own_epoch, own_end = (-1, -1) if epoch < 0 else plog.leader_epochs.end_offset_for(epoch)
        if own_epoch < 0:
            # Neither side can name a common epoch: only the high watermark is known safe.
            target = plog.high_watermark
        else:
            target = min(end_offset, own_end)
        target = max(target, plog.log_start_offset)
        log.info("truncating %s-%d from %d to %d (diverged from leader %d at epoch %d)",
                 p.topic, p.index, plog.log_end_offset, target, self.leader_id, epoch)
        plog.truncate_to(target)

    def _reset_out_of_range(self, p: Partition, pd: PartitionData) -> None:
        plog = p.log
        if pd.log_start_offset > plog.log_end_offset:
            # Retention on the leader removed what we still need: start over at its start.
            log.info("%s-%d is behind the leader's log start %d: restarting there",
                     p.topic, p.index, pd.log_start_offset)
            plog.truncate_fully_and_start_at(pd.log_start_offset)
        elif pd.high_watermark >= 0 and plog.log_end_offset > pd.high_watermark:
            plog.truncate_to(max(pd.high_watermark, plog.log_start_offset))


class ReplicationManager:
    """Owns the follower fetchers and the leader-side ISR maintenance of one broker."""

    def __init__(self, node: ReplicationNode) -> None:
        self.node = node
        self.fetchers: dict[int, LeaderFetcher] = {}
        self._isr_task: asyncio.Task[None] | None = None
        # ISR proposals go to the controller in batches, one request in flight.
        self.alter_partition = AlterPartitionBatcher(
            lambda items: node.controller.alter_partition(node.node_id, node.broker_epoch,
                                                          items))

    def start(self) -> None:
        self._isr_task = asyncio.get_running_loop().create_task(self._isr_loop())

    async def stop(self) -> None:
        if self._isr_task is not None:
            self._isr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._isr_task
        for f in list(self.fetchers.values()):
            await f.stop()
        self.fetchers.clear()
        await self.alter_partition.close()

    # --- followers ----------------------------------------------------------------------

    def update_fetchers(self) -> None:
        """Point fetchers at the current leaders of every partition we follow."""
        wanted: dict[int, dict[tuple[str, int], Partition]] = {}
        for tp, p in self.node.replicas.partitions.items():
            if not p.is_leader and p.leader_id >= 0 and p.leader_id != self.node.node_id:
                wanted.setdefault(p.leader_id, {})[tp] = p
        for leader_id, idle in list(self.fetchers.items()):
            if leader_id not in wanted:
                idle.set_partitions({})
        for leader_id, parts in wanted.items():
            fetcher = self.fetchers.get(leader_id)
            if fetcher is None:
                fetcher = self.fetchers[leader_id] = LeaderFetcher(self.node, leader_id)
                fetcher.start()
            fetcher.set_partitions(parts)

    # --- leaders ------------------------------------------------------------------------

    def on_follower_fetch(self, p: Partition, replica_id: int, offset: int,
                          replica_epoch: int = -1) -> None:
        """A follower fetched ``p`` from ``offset``. It may join the ISR only if it is alive
        and, when its fetch carries its broker epoch (Fetch v15+, KIP-903), that epoch is the
        one of its current registration: a fetch of a broker's earlier process must not
        bring back into the ISR a replica that may have lost data since."""
        eligible = replica_id in self.node.live_broker_ids()
        if eligible and replica_epoch >= 0:
            reg = self.node.image.brokers.get(replica_id)
            eligible = reg is not None and reg.epoch == replica_epoch
        new_isr = p.follower_fetched(replica_id, offset, live=eligible)
        if new_isr is not None:
            self._request_isr(p, new_isr, "caught up")

    async def _isr_loop(self) -> None:
        while True:
            lag_ms = self.node.config["replica.lag.time.max.ms"]
            await asyncio.sleep(max(0.05, lag_ms / 2000))
            for p in list(self.node.replicas.partitions.values()):
                new_isr = p.isr_without_laggards(lag_ms / 1000)
                if new_isr is not None:
                    lagging = [r for r in p.isr if r not in new_isr]
                    self._request_isr(p, new_isr, f"replicas {lagging} lag more than "
                                                  f"replica.lag.time.max.ms={lag_ms}")

    def _request_isr(self, p: Partition, new_isr: tuple[int, ...], why: str) -> None:
        tp = (p.topic, p.index)
        if p.topic_id is None or self.alter_partition.busy(tp):
            return
        log.info("ISR of %s-%d: %s -> %s (%s)", p.topic, p.index, list(p.isr), list(new_isr),
                 why)
        p.propose_isr(new_isr)
        item = AlterPartitionItem(p.topic_id, p.index, p.leader_epoch, p.partition_epoch,
                                  new_isr)
        self.alter_partition.submit(
            tp, item, lambda outcome: self._isr_answered(p, new_isr, outcome))

    def _isr_answered(self, p: Partition, new_isr: tuple[int, ...],
                      outcome: AlterPartitionItemResult | BaseException) -> None:
        # Counted when the change reaches this node's metadata (replica_manager's
        # isr_listeners), with the controller's own shrinks.
        if isinstance(outcome, BaseException):
            # Its fate is unknown: the controller may have applied it. The addition stays
            # pending until the metadata settles it (or its replica stops keeping up).
            log.warning("AlterPartition for %s-%d failed: %s", p.topic, p.index, outcome)
        elif outcome.error_code:
            log.warning("AlterPartition for %s-%d refused: %s", p.topic, p.index,
                        outcome.error_message)
            p.proposal_refused(new_isr)

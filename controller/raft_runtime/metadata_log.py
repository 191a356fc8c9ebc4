"""The metadata log replicated by Raft among the controllers (KRaft-style).

``RaftMetadataLog`` implements the ``MetadataLog`` protocol the QuorumController uses, and is
the state machine of the Raft log it drives:

- one Raft entry holds one atomic batch of records (``batch.py``); NOOP entries of new
  leaders hold none;
- record offsets are not stored: every node assigns them by counting records as it applies
  committed entries in log order, so all nodes (followers and observers too) agree;
- applying an entry replays its records into the loader (publishing a new image to the local
  listeners) *before* the proposer's ``append()`` returns, so when the QuorumController
  replays the same batch it is skipped as already applied;
- every ``snapshot_interval_records`` records the image is written as records
  (``snapshot.py``) into a Raft snapshot and the log is compacted; a node that is too far
  behind receives the snapshot and its loader replays the difference to its own image.

Use from the node process, in this order::

    loader = MetadataLoader(); loader.register(...)
    mlog = RaftMetadataLog(settings, loader)          # opens and recovers the data dir
    controller = QuorumController(mlog, loader=loader, ...)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    mlog.add_to_server(server)                        # plus the node's other services
    server.add_insecure_port(settings.voters[node_id]); await server.start()
    await mlog.start()                                # restores the snapshot, joins Raft
    ...
    await mlog.stop()                                 # hands over leadership first
    await server.stop(grace)

Do not call ``controller.load()``: the log feeds the loader itself (calling it is harmless).
Appends must be serialized by the caller (the QuorumController's lock does this), because
each batch is computed against the image it follows.
"""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import logging
import os
import random
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc

from odradek.controller.metadata import (
    MetadataImage,
    MetadataListenerError,
    MetadataLoader,
    MetadataRecord,
    decode_record,
)
from odradek.controller.metadata.diff import SnapshotError, diff_records
from odradek.controller.metadata.requests import NotControllerError
from odradek.controller.raft import (
    Entry,
    EntryKind,
    MembershipChangeRefused,
    NotLeaderError,
    ProposalDropped,
    RaftNode,
    RefusalReason,
    Role,
    Snapshot,
    VoterSet,
)
from odradek.controller.raft.log_store import FileLogStore
from odradek.controller.raft_runtime.batch import decode_batch, encode_batch
from odradek.controller.raft_runtime.driver import (
    DriverStoppedError,
    LeaderChangeCallback,
    RaftDriver,
)
from odradek.controller.raft_runtime.service import add_raft_service
from odradek.controller.raft_runtime.settings import RaftSettings
from odradek.controller.raft_runtime.snapshot import decode_snapshot_data, encode_snapshot_data
from odradek.controller.raft_runtime.transport import GrpcTransport, Transport
from odradek.controller.rpc import raft_pb2 as pb
from odradek.controller.rpc import raft_pb2_grpc

log = logging.getLogger("odradek.raft")

NO_LEADER = -1
# An observing controller renews its request every OBSERVE_INTERVAL_S; the leader forgets it
# after OBSERVER_LEASE_S without one (it died, or was started for nothing).
OBSERVE_INTERVAL_S = 1.0
OBSERVER_LEASE_S = 10.0
LOCK_FILE = ".lock"


class RaftNotControllerError(NotControllerError):
    """This node cannot append now; ``leader_id`` (-1: unknown) says where to retry."""

    def __init__(self, message: str, leader_id: int = NO_LEADER,
                 leader_address: str | None = None) -> None:
        super().__init__(message)
        self.leader_id = leader_id
        self.leader_address = leader_address


class OffsetCompactedError(LookupError):
    """read_from() was asked for records inside a snapshot (they exist only as an image)."""


class DataDirInUseError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class _Batch:
    raft_index: int
    base_offset: int
    records: tuple[bytes, ...]


class RaftMetadataLog:
    # Every node applies each committed entry to the loader (_apply), the leader before its
    # append returns: the QuorumController must not replay its own operations again.
    publishes_commits = True

    def __init__(
        self,
        settings: RaftSettings,
        loader: MetadataLoader,
        *,
        rng: random.Random | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.loader = loader
        self._observers = dict(settings.observers)
        # Every voter address seen (configuration, then the log), for voters being removed.
        self._addresses: dict[int, str] = dict(settings.voters)
        # Controllers being added as voters: replicated to while they catch up.
        self._joining: dict[int, str] = {}
        # Controllers that asked to observe (Observe RPC): id -> (address, lease expiry).
        self._observing: dict[int, tuple[str, float]] = {}
        # The directory id each observer last told (Observe RPC), checked by add_voter.
        self._observer_dirs: dict[int, str] = {}
        self._observe_task: asyncio.Task[None] | None = None
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_dir(settings.data_dir)
        try:
            self._store = FileLogStore(settings.data_dir)
            view = self._store.load()
            node = RaftNode(settings.raft_config(), view, rng or random.Random())
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._transport: Transport = transport or GrpcTransport(
            settings.node_id, settings.peers(), cluster_id=settings.cluster_id,
            queue_size=settings.peer_queue_size, max_batch=settings.max_batch_messages,
            rpc_timeout_s=settings.rpc_timeout_ms / 1000,
            backoff_s=settings.reconnect_backoff_ms / 1000,
            backoff_max_s=settings.reconnect_backoff_max_ms / 1000,
            security=settings.security)
        self.driver = RaftDriver(node, self._store, self._transport, apply=self._apply,
                                 restore=self._restore, initial_snapshot=view.snapshot,
                                 tick_ms=settings.tick_ms,
                                 on_voters_changed=self._sync_peers)
        if isinstance(self._transport, GrpcTransport):
            self._transport.on_peer_lost = self.driver.peer_lost
        # Committed batches since the last snapshot, for read_from().
        self._batches: deque[_Batch] = deque()
        self._next_offset = 0
        self._applied_index = 0
        self._snapshot_index = 0
        self._snapshot_last_offset = -1
        self._snapshot_data: bytes | None = None
        self._records_since_snapshot = 0
        self._snapshot_task: asyncio.Task[int] | None = None
        # Snapshots received from a leader (not counting the one loaded at start).
        self.snapshots_installed = 0
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Serve RaftService on the node's grpc.aio server (create it with SERVER_OPTIONS)."""
        add_raft_service(server, self)

    async def start(self) -> None:
        self._started = True
        await self._transport.start()
        await self.driver.start()
        # While this node is not a voter (a controller about to be added, or one that was
        # removed and still runs) it asks the leader to replicate to it.
        own = self.settings.observers.get(self.node_id) or self.settings.voters.get(self.node_id)
        if own and isinstance(self._transport, GrpcTransport):
            self._observe_task = asyncio.get_running_loop().create_task(
                self._observe_loop(own), name=f"raft-observe-{self.node_id}")
        log.info("node %d: Raft started (%s, term %d, commit index %d, snapshot index %d; "
                 "committed entries after the snapshot are replayed next)",
                 self.node_id, "observer" if self.is_observer else "voter", self.driver.term,
                 self.driver.node.log.committed, self._snapshot_index)

    async def stop(self, *, handover: bool = True) -> None:
        """Hand over leadership (bounded by transfer_timeout), stop Raft, close channels.
        Call it before stopping the gRPC server: the handover needs it. Pass
        handover=False when the whole quorum is going down anyway."""
        if self._observe_task is not None:
            self._observe_task.cancel()
            await asyncio.wait([self._observe_task])
            self._observe_task = None
        if self._started:
            await self.driver.stop(self.settings.transfer_timeout_s if handover else 0.0)
            if self._snapshot_task is not None:
                self._snapshot_task.cancel()
                # wait() instead of awaiting the task: its own cancellation is expected and
                # must not be mistaken for (or swallow) a cancellation of stop() itself.
                await asyncio.wait([self._snapshot_task])
            await self._transport.close()
            self._started = False
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1
        log.info("node %d: Raft stopped", self.node_id)

    async def wait_stopped(self) -> None:
        """Returns when Raft stopped, by stop() or by a fatal error (see driver.failure)."""
        await self.driver.wait_stopped()

    # ------------------------------------------------------------------ MetadataLog

    async def append(self, records: Sequence[bytes]) -> int:
        if not records:
            raise ValueError("append needs at least one record")
        # The caller computed the records against the image as it is now (nothing ran
        # between its operation and this call); if the image moves while we wait for
        # leadership to settle, the records may contradict it.
        seen = self.loader.image.offset
        driver = self.driver
        if not driver.is_leader:
            if driver.running and driver.role is Role.LEADER:
                await driver.wait_leader_ready(self.settings.leader_ready_timeout_s)
            if not driver.is_leader:
                raise self._not_controller()
        if self.loader.image.offset != seen:
            raise RaftNotControllerError(
                f"node {self.node_id} just became the controller leader and was still applying "
                "records of earlier leaders when this operation was computed; retry it",
                self.node_id, self.leader_address)
        try:
            return int(await driver.propose(encode_batch(records)))
        except ProposalDropped as exc:
            raise RaftNotControllerError(str(exc), self.node_id, self.leader_address) from exc
        except NotLeaderError as exc:
            hint = exc.leader_hint if exc.leader_hint is not None else NO_LEADER
            raise RaftNotControllerError(str(exc), hint, self.address_of(hint)) from exc

    def read_from(self, offset: int) -> Iterator[tuple[int, bytes]]:
        """Committed records with offset >= ``offset``.

        Records up to the last snapshot exist only as the snapshot's image: ``read_from(0)``
        yields the snapshot as records (at their replay offsets, which rebuild the image in an
        empty loader) and then the records after it; an offset inside the snapshot (other than
        0) raises OffsetCompactedError, because no record stream leads from an arbitrary image
        there. Offsets after the snapshot are read as written.
        """
        offset = max(offset, 0)
        snap_last = self._snapshot_last_offset
        head: list[tuple[int, bytes]] = []
        if self._snapshot_data is not None and offset <= snap_last:
            if offset != 0:
                raise OffsetCompactedError(
                    f"records up to offset {snap_last} are compacted into a snapshot; read "
                    f"from 0 to get the snapshot, or from {snap_last + 1}"
                )
            head = list(decode_snapshot_data(self._snapshot_data).records)
        batches = list(self._batches)
        start = max(bisect.bisect_right([b.base_offset for b in batches], offset) - 1, 0)
        return self._iter(head, batches[start:], offset)

    @staticmethod
    def _iter(head: list[tuple[int, bytes]], batches: list[_Batch], offset: int
              ) -> Iterator[tuple[int, bytes]]:
        yield from head
        for batch in batches:
            for k, record in enumerate(batch.records):
                if batch.base_offset + k >= offset:
                    yield batch.base_offset + k, record

    # ------------------------------------------------------------------ leadership

    @property
    def is_leader(self) -> bool:
        """Leader with every committed record applied: appends are accepted."""
        return self.driver.is_leader

    @property
    def leader_id(self) -> int:
        lead = self.driver.leader_id
        return NO_LEADER if lead is None else lead

    def lost_peers(self) -> frozenset[int]:
        """Voters whose connection to this node was lost (their process probably died)."""
        if isinstance(self._transport, GrpcTransport):
            return self._transport.lost_peers()
        return frozenset()

    @property
    def leader_address(self) -> str | None:
        return self.address_of(self.leader_id)

    @property
    def term(self) -> int:
        return self.driver.term

    @property
    def committed_offset(self) -> int:
        """Offset of the last record applied on this node (-1: none)."""
        return self._next_offset - 1

    @property
    def is_observer(self) -> bool:
        return self.node_id not in self.driver.node.config.voters

    @property
    def voter_endpoints(self) -> dict[int, str]:
        """The voters in force (the latest set in the Raft log, else controller.quorum.voters)
        with their controller addresses: from the log where it has one, else from the
        static configuration."""
        current = self.driver.node.voter_set
        return {v: endpoint or self.settings.voters.get(v, "")
                for v, endpoint in current.voters}

    def on_leader_change(self, callback: LeaderChangeCallback) -> None:
        """``callback()`` runs on the event loop after any change of is_leader, leader_id or
        term (the QuorumInfo contract)."""
        self.driver.on_leader_change(callback)

    def address_of(self, node_id: int) -> str | None:
        return (self.voter_endpoints.get(node_id) or self.settings.voters.get(node_id)
                or self._observers.get(node_id))

    def members(self) -> set[int]:
        # Static voters stay members even once removed: a removed node may still send until
        # it learns of its removal, and refusing it would only hide that.
        return (set(self.settings.voters) | set(self.voter_endpoints) | set(self._observers)
                | set(self._joining) | set(self._observing))

    def _all_observers(self) -> dict[int, str]:
        """Everyone the leader replicates to without a vote: configured observers,
        controllers being added, controllers that asked to observe."""
        return {**self._observers, **self._joining,
                **{i: a for i, (a, _) in self._observing.items()}}

    def _peers(self) -> dict[int, str]:
        """Voters of the latest and of the committed set (a voter being removed must still
        get the entry that removes it), and everyone replicated to without a vote."""
        node = self.driver.node
        for v, address in self.voter_endpoints.items():
            if address:
                self._addresses[v] = address
        ids = node.voter_set.ids | node.committed_voter_set.ids
        peers = {v: self._addresses[v] for v in ids if self._addresses.get(v)}
        peers.update(self._all_observers())
        peers.pop(self.node_id, None)
        return peers

    async def _sync_peers(self) -> None:
        """The voter set in the log changed: connect to new voters (their address came with
        their CONFIG entry), stop sending to removed ones."""
        set_peers = getattr(self._transport, "set_peers", None)
        if set_peers is not None:
            await set_peers(self._peers())
        log.info("node %d: voters are now %s%s", self.node_id,
                 dict(sorted(self.voter_endpoints.items())),
                 "" if self.driver.node.voters_committed else " (not committed yet)")

    async def add_voter(self, node_id: int, endpoint: str, timeout_s: float,
                        directory_id: str = "") -> None:
        """As the active controller, make ``node_id`` (a controller started as an observer,
        reachable at ``endpoint``) a voter: replicate the log to it until it has caught up,
        then append the change and wait for it to commit (KIP-853's AddRaftVoter). A
        ``directory_id`` is recorded with the voter, once the node has told (as an observer)
        that it runs on that directory.

        Raises RaftNotControllerError (not the leader), MembershipChangeRefused (duplicate
        voter, another directory, or TimeoutError when it did not catch up or commit within
        ``timeout_s``)."""
        driver = self.driver
        if not driver.is_leader:
            raise self._not_controller()
        voters = self.voter_endpoints
        if node_id in voters:
            raise MembershipChangeRefused(
                RefusalReason.DUPLICATE_VOTER,
                f"node {node_id} is already a voter ({sorted(voters)})")
        current = driver.node.voter_set.with_endpoints(voters)
        new = current.with_voter(node_id, endpoint, directory_id)
        self._joining[node_id] = endpoint
        try:
            await self._apply_observers()
            if directory_id:
                await self._wait_directory(node_id, directory_id, timeout_s)
            await self._propose_voters(new, timeout_s)
        finally:
            self._joining.pop(node_id, None)
            await self._apply_observers()

    async def _wait_directory(self, node_id: int, directory_id: str, timeout_s: float) -> None:
        """Until observer ``node_id`` has told its directory id (its first Observe call) and
        it is ``directory_id``: the request was written from that node's meta.properties, and
        another copy of the node (an old disk) must not be added in its name."""
        deadline = time.monotonic() + timeout_s
        while (told := self._observer_dirs.get(node_id)) is None:
            if time.monotonic() >= deadline:
                raise MembershipChangeRefused(
                    RefusalReason.NOT_CAUGHT_UP,
                    f"node {node_id} has not asked to observe the metadata log within "
                    f"{timeout_s:.0f}s: start it (an id missing from controller.quorum.voters "
                    "starts as an observer) and check it reaches the controllers")
            await asyncio.sleep(0.1)
        if told != directory_id:
            raise MembershipChangeRefused(
                RefusalReason.DIRECTORY_MISMATCH,
                f"node {node_id} runs on directory {told or '(none: an older version)'}, the "
                f"request names {directory_id}: give the directory.id of the meta.properties "
                "in that node's data.dir")

    async def remove_voter(self, node_id: int, timeout_s: float, directory_id: str = "") -> None:
        """As the active controller, remove ``node_id`` from the voters and wait for the
        change to commit (KIP-853's RemoveRaftVoter). A voter recorded with a directory id is
        removed only when ``directory_id`` names it. Removing this node itself hands
        leadership to another voter once the change commits."""
        driver = self.driver
        if not driver.is_leader:
            raise self._not_controller()
        voters = self.voter_endpoints
        if node_id not in voters:
            raise MembershipChangeRefused(
                RefusalReason.VOTER_NOT_FOUND,
                f"node {node_id} is not a voter ({sorted(voters)})")
        current = driver.node.voter_set.with_endpoints(voters)
        recorded = current.directory_ids.get(node_id, "")
        if recorded and directory_id != recorded:
            raise MembershipChangeRefused(
                RefusalReason.VOTER_NOT_FOUND,
                f"voter {node_id} has directory id {recorded}, not "
                f"{directory_id or '(none)'}: name the voter as describe --status lists it")
        if len(voters) == 1:
            raise MembershipChangeRefused(
                RefusalReason.NOT_SINGLE_CHANGE, "cannot remove the only voter")
        await self._propose_voters(current.without_voter(node_id), timeout_s)

    async def _propose_voters(self, new: VoterSet, timeout_s: float) -> None:
        """Propose ``new`` until it commits, retrying the refusals that pass (a change in
        flight, no commit in this term yet, a new voter still catching up) for up to
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    await self.driver.propose_voters(new)
                    return
                except MembershipChangeRefused as exc:
                    if not exc.retriable or time.monotonic() >= deadline:
                        raise
                await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        except NotLeaderError as exc:
            hint = exc.leader_hint if exc.leader_hint is not None else NO_LEADER
            raise RaftNotControllerError(str(exc), hint, self.address_of(hint)) from exc

    async def observe(self, node_id: int, address: str, directory_id: str = "") -> None:
        """As leader, replicate to controller ``node_id`` (not a voter) for the next
        OBSERVER_LEASE_S: it follows the log and is caught up when it is added as a voter."""
        now = time.monotonic()
        expired = [i for i, (_, until) in self._observing.items() if until < now]
        changed = bool(expired)
        for i in expired:
            del self._observing[i]
            self._observer_dirs.pop(i, None)
        if node_id not in self.voter_endpoints and node_id != self.node_id:
            changed = changed or self._observing.get(node_id, ("",))[0] != address
            self._observing[node_id] = (address, now + OBSERVER_LEASE_S)
            self._observer_dirs[node_id] = directory_id
        if changed:
            await self._apply_observers()

    async def _observe_loop(self, own_address: str) -> None:
        """On a controller that is not a voter: ask the leader to replicate to it, again and
        again (the leader may change, and forgets observers that stop asking)."""
        while True:
            if self.is_observer:
                hint = self.leader_id
                order = sorted(self.voter_endpoints, key=lambda i: (i != hint, i))
                for voter in order:
                    channel = self.channel_to(voter)
                    if channel is None:
                        continue
                    try:
                        answer = await raft_pb2_grpc.RaftServiceStub(channel).Observe(
                            pb.ObserveRequest(node_id=self.node_id, address=own_address,
                                              cluster_id=self.settings.cluster_id,
                                              directory_id=self.settings.directory_id),
                            timeout=self.settings.rpc_timeout_ms / 1000)
                    except grpc.aio.AioRpcError:
                        continue
                    if answer.accepted:
                        break
            await asyncio.sleep(OBSERVE_INTERVAL_S)

    async def _apply_observers(self) -> None:
        observers = self._all_observers()
        self.driver.set_observers(frozenset(observers) | (
            frozenset({self.node_id}) if self.is_observer else frozenset()))
        set_peers = getattr(self._transport, "set_peers", None)
        if set_peers is not None:
            await set_peers(self._peers())

    def channel_to(self, node_id: int) -> grpc.aio.Channel | None:
        channel = getattr(self._transport, "channel", None)
        return channel(node_id) if channel is not None else None

    async def set_observers(self, observers: Mapping[int, str]) -> None:
        """Change who the leader replicates to without voting (brokers joining/leaving)."""
        if set(observers) & set(self.voter_endpoints):
            raise ValueError("observers must not be voters")
        self._observers = dict(observers)
        await self._apply_observers()

    # ------------------------------------------------------------------ snapshots

    @property
    def snapshot_index(self) -> int:
        return self._snapshot_index

    async def snapshot(self) -> int:
        """Snapshot the image now and compact the log; returns the snapshot's Raft index."""
        if self._snapshot_task is not None and not self._snapshot_task.done():
            await asyncio.shield(self._snapshot_task)
        if self._applied_index <= self._snapshot_index:
            return self._snapshot_index
        return await asyncio.shield(self._start_snapshot())

    def _start_snapshot(self) -> asyncio.Task[int]:
        # Captured synchronously so the image and the Raft index belong together.
        image, index = self.loader.image, self._applied_index
        self._records_since_snapshot = 0
        task = asyncio.get_running_loop().create_task(self._take_snapshot(index, image))
        task.add_done_callback(self._snapshot_done)
        self._snapshot_task = task
        return task

    def _snapshot_done(self, task: asyncio.Task[int]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, DriverStoppedError):
            # The log keeps growing until the next attempt, after another interval.
            log.error("node %d: snapshot failed: %s", self.node_id, exc, exc_info=exc)

    async def _take_snapshot(self, index: int, image: MetadataImage) -> int:
        started = time.monotonic()
        data = await asyncio.to_thread(encode_snapshot_data, image)
        await self.driver.compact(index, data)
        self._snapshot_index = index
        self._snapshot_last_offset = image.offset
        self._snapshot_data = data
        while self._batches and self._batches[0].raft_index <= index:
            self._batches.popleft()
        log.info("node %d: snapshot at index %d, record offset %d (%d bytes, %.0f ms)",
                 self.node_id, index, image.offset, len(data),
                 (time.monotonic() - started) * 1000)
        return index

    # ------------------------------------------------------------------ state machine

    def _apply(self, entry: Entry) -> int:
        self._applied_index = entry.index
        if entry.kind is not EntryKind.NORMAL:
            # NOOP and CONFIG entries belong to Raft itself, not to the metadata records.
            return self._next_offset - 1
        records = decode_batch(entry.data)
        base = self._next_offset
        if self.loader.image.offset != base - 1:
            raise RuntimeError(
                f"the metadata image is at offset {self.loader.image.offset} but the Raft log "
                f"applies records from {base}: something else fed the loader"
            )
        decoded: list[tuple[int, MetadataRecord]] = [
            (base + k, decode_record(data)) for k, data in enumerate(records)]
        self._publish(decoded)
        self._next_offset = base + len(records)
        self._batches.append(_Batch(entry.index, base, tuple(records)))
        self._records_since_snapshot += len(records)
        if (self._records_since_snapshot >= self.settings.snapshot_interval_records
                and (self._snapshot_task is None or self._snapshot_task.done())):
            self._start_snapshot()
        return self._next_offset - 1

    async def _restore(self, snapshot: Snapshot) -> None:
        data = await asyncio.to_thread(decode_snapshot_data, snapshot.data)
        target = MetadataLoader()
        target.handle_commit(data.decoded())
        current = self.loader.image
        if current.offset > data.last_offset:
            raise SnapshotError(
                f"snapshot at record offset {data.last_offset} is older than this node's image "
                f"({current.offset})"
            )
        self._publish(diff_records(current, target.image))
        if self.loader.image != target.image:
            raise SnapshotError("the image rebuilt from the snapshot differs from the snapshot")
        startup = not self.driver.running
        self._next_offset = data.last_offset + 1
        self._applied_index = snapshot.meta.index
        self._snapshot_index = snapshot.meta.index
        self._snapshot_last_offset = data.last_offset
        self._snapshot_data = snapshot.data
        self._batches.clear()
        self._records_since_snapshot = 0
        if not startup:
            self.snapshots_installed += 1
        log.info("node %d: %s snapshot at index %d, record offset %d", self.node_id,
                 "loaded" if startup else "installed the leader's", snapshot.meta.index,
                 data.last_offset)

    def _publish(self, records: list[tuple[int, MetadataRecord]]) -> None:
        try:
            self.loader.handle_commit(records)
        except MetadataListenerError:
            # The image is current; the listener logged its own failure.
            pass

    # ------------------------------------------------------------------ errors, status

    def _not_controller(self) -> RaftNotControllerError:
        driver = self.driver
        if not driver.running:
            why = "Raft is not running" + (f" (failed: {driver.failure})"
                                           if driver.failure else "")
            return RaftNotControllerError(f"node {self.node_id}: {why}")
        lead = self.leader_id
        if self.is_observer:
            msg = f"node {self.node_id} is an observer of the metadata quorum, not a controller"
        elif lead == NO_LEADER:
            msg = (f"node {self.node_id} is not the active controller and no leader is elected "
                   "yet; retry shortly")
        else:
            msg = (f"node {self.node_id} is not the active controller; node {lead} "
                   f"({self.address_of(lead)}) is")
        return RaftNotControllerError(msg, lead, self.address_of(lead))

    def describe(self) -> pb.DescribeQuorumResponse:
        """This node's view of the quorum (complete on the leader)."""
        status = self.driver.status()
        now = time.monotonic()
        resp = pb.DescribeQuorumResponse(
            leader_id=self.leader_id, term=status.term, commit_index=status.commit,
            high_watermark=status.commit + 1, committed_record_offset=self.committed_offset,
            leader_address=self.leader_address or "", answered_by=self.node_id,
            snapshot_index=status.snapshot_index)
        voters = self.voter_endpoints
        observers = {i: a for i, a in self._all_observers().items() if i not in voters}
        # A voter is named by what the voter set records, an observer by what it told.
        observer_dirs = {**self._observer_dirs, self.node_id: self.settings.directory_id}
        voter_dirs = self.driver.node.voter_set.directory_ids
        for ids, dirs, out in ((voters, voter_dirs, resp.voters),
                               (observers, observer_dirs, resp.observers)):
            for nid in sorted(ids):
                replica = out.add(node_id=nid, address=ids[nid], last_contact_ms_ago=-1,
                                  directory_id=dirs.get(nid, ""))
                if nid == self.node_id:
                    replica.log_end_offset = status.last_index + 1
                    replica.last_contact_ms_ago = 0
                    continue
                progress = status.progress.get(nid)
                if progress is not None:
                    replica.log_end_offset = progress.match + 1 if progress.match else 0
                    replica.replication_state = progress.state.value
                heard = self.driver.last_heard.get(nid)
                if heard is not None:
                    replica.last_contact_ms_ago = int((now - heard) * 1000)
        return resp


def _lock_dir(directory: os.PathLike[str]) -> int:
    path = os.path.join(directory, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUseError(
            f"{directory} is in use by another process; stop it or give this node its own "
            "Raft directory"
        ) from None
    return fd

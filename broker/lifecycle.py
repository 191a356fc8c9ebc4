"""A broker's life as the active controller sees it: registration, lease, controlled shutdown;
and, for broker-only nodes, following the committed metadata log.

Node wiring of a broker-only node (a combined node uses its own controller's loader instead
of a MetadataFollower):

    client = ControllerClient(voters)
    follower = MetadataFollower(client, loader)
    await follower.start()
    lifecycle = BrokerLifecycle(client, broker_id, str(uuid.uuid4()), listeners, rack,
                                metadata_offset=lambda: loader.image.offset,
                                previous_shutdown_clean=node.previous_shutdown_clean)
    await lifecycle.start()                 # registered, heartbeating, still fenced
    await lifecycle.wait_unfenced(timeout)  # caught up: leaderships may come
    ...
    await lifecycle.controlled_shutdown(timeout)  # leaderships moved away
    await lifecycle.stop(); await follower.stop(); await client.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import (
    Listener,
    MetadataListenerError,
    MetadataLoader,
    MetadataReplayError,
    decode_record,
)
from odradek.controller.metadata.diff import SnapshotError, diff_records, replay
from odradek.controller.metadata.requests import (
    BrokerLeaseApi,
    ControllerError,
    ControllerUnavailable,
    HeartbeatResult,
    MetadataBatch,
)

log = logging.getLogger(__name__)

# While fenced (starting, catching up) or shutting down, the broker is waiting on the
# controller's next answer, so it asks more often than the steady-state interval: a
# starting broker is usually unfenced by its second heartbeat, and this pause is part of
# every node's start-up time. Only fenced or stopping brokers ask this often.
_EAGER_INTERVAL_MS = 50


class BrokerRegistrationError(Exception):
    """The controller refused the registration for a reason retrying cannot fix."""


class BrokerLifecycle:
    def __init__(
        self,
        client: BrokerLeaseApi,
        broker_id: int,
        incarnation_id: str,
        listeners: Sequence[Listener | tuple[str, str, int]],
        rack: str | None,
        metadata_offset: Callable[[], int],
        heartbeat_interval_ms: int = 2000,
        *,
        registration_retry_ms: int = 500,
        previous_shutdown_clean: bool = True,
    ) -> None:
        """`metadata_offset()`: offset of the last metadata record this broker has applied;
        the controller unfences the broker once it reaches the broker's registration.
        `previous_shutdown_clean`: whether the previous process of this broker stopped
        cleanly; after a crash the controller stops counting on this broker's replicas as
        holders of every committed record (KIP-966)."""
        self._client = client
        self.broker_id = broker_id
        self.incarnation_id = incarnation_id
        self._listeners = list(listeners)
        self._rack = rack
        self._previous_shutdown_clean = previous_shutdown_clean
        self._metadata_offset = metadata_offset
        self._interval = heartbeat_interval_ms / 1000
        # Until the controller says otherwise: Kafka's broker.session.timeout.ms default.
        self._session_timeout = 9.0
        self._retry = registration_retry_ms / 1000
        self.broker_epoch = -1
        self._fenced = True
        self._shutting_down = False
        self._unfenced = asyncio.Event()
        self._may_shutdown = asyncio.Event()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Holds the BrokerLiveness stream of the current registration (see _hold_liveness).
        self._liveness: asyncio.Task[None] | None = None

    @property
    def is_fenced(self) -> bool:
        return self._fenced

    async def start(self) -> None:
        """Register (waiting for a controller, or for our previous incarnation's session to
        expire), then heartbeat in the background."""
        await self._register()
        self._task = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat-{self.broker_id}")

    async def wait_unfenced(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._unfenced.wait()
        except TimeoutError:
            raise TimeoutError(
                f"broker {self.broker_id} still fenced after {timeout:.1f}s: it has not caught up "
                "with the metadata log or cannot reach the active controller"
            ) from None

    async def controlled_shutdown(self, timeout: float) -> bool:
        """Ask the controller to move this broker's leaderships away; True once it says the
        broker may stop, False if it did not say so within `timeout`."""
        self._shutting_down = True
        self._poke.set()
        try:
            async with asyncio.timeout(timeout):
                await self._may_shutdown.wait()
        except TimeoutError:
            log.warning("broker %d: controlled shutdown not confirmed within %.1fs; stopping "
                        "anyway (the controller fences us when the session expires)",
                        self.broker_id, timeout)
            return False
        log.info("broker %d: controlled shutdown complete", self.broker_id)
        return True

    async def stop(self) -> None:
        for task in (self._task, self._liveness):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._liveness = None

    # ----- internals -----

    async def _register(self) -> None:
        waiting_for_old_session = False
        while True:
            try:
                registration = await self._client.register(
                    self.broker_id, self.incarnation_id, self._listeners, self._rack,
                    self._previous_shutdown_clean)
            except ControllerUnavailable as exc:
                log.warning("broker %d: cannot register yet: %s; retrying", self.broker_id, exc)
                await asyncio.sleep(self._retry)
                continue
            result = registration.result
            if result.error_code == ErrorCode.duplicate_broker_registration:
                if not waiting_for_old_session:
                    log.warning(
                        "broker %d: the controller still holds the session of this broker's "
                        "previous process; waiting for it to expire (broker.session.timeout.ms)"
                        " before registering", self.broker_id)
                    waiting_for_old_session = True
                await asyncio.sleep(self._retry)
                continue
            if result.error_code != ErrorCode.none:
                raise BrokerRegistrationError(
                    f"broker {self.broker_id}: registration refused: {result.error_message}")
            if registration.heartbeat_interval_ms > 0:
                # Never slower than the controller expects: it sized the session for that.
                self._interval = min(self._interval, registration.heartbeat_interval_ms / 1000)
            if registration.session_timeout_ms > 0:
                self._session_timeout = registration.session_timeout_ms / 1000
            self.broker_epoch = result.broker_epoch
            # Registering again later (session lost) is not a restart: this process lost
            # nothing, whatever happened to the one before it.
            self._previous_shutdown_clean = True
            self._set_fenced(True)
            log.info("broker %d registered with epoch %d", self.broker_id, self.broker_epoch)
            self._start_liveness()
            return

    def _start_liveness(self) -> None:
        if self._liveness is not None:
            self._liveness.cancel()
        self._liveness = asyncio.create_task(self._hold_liveness(self.broker_epoch),
                                             name=f"liveness-{self.broker_id}")

    async def _hold_liveness(self, epoch: int) -> None:
        """While this process runs, a stream to the active controller stays open: when the
        process dies the kernel closes it, and the controller fences this broker within
        broker.session.disconnect.grace.ms instead of a whole session timeout."""
        try:
            code = await self._client.hold_liveness(self.broker_id, epoch)
        except (ControllerUnavailable, ControllerError) as exc:
            log.warning("broker %d: liveness stream failed: %s; heartbeats alone keep the "
                        "session", self.broker_id, exc)
            return
        # The registration is not current: the heartbeats find out too and register again,
        # which starts a new stream.
        log.info("broker %d: liveness stream refused (%s)", self.broker_id,
                 ErrorCode(code).name)

    def _set_fenced(self, fenced: bool) -> None:
        if fenced != self._fenced:
            log.info("broker %d is now %s", self.broker_id, "fenced" if fenced else "unfenced")
        self._fenced = fenced
        if fenced:
            self._unfenced.clear()
        else:
            self._unfenced.set()

    def _next_delay(self) -> float:
        if self._shutting_down or self._fenced:
            return min(self._interval, _EAGER_INTERVAL_MS / 1000)
        return self._interval

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                hb = await self._client.heartbeat(
                    self.broker_id, self.broker_epoch, self._metadata_offset(),
                    want_shutdown=self._shutting_down, timeout=self._session_timeout)
            except (ControllerUnavailable, ControllerError) as exc:
                log.warning("broker %d: heartbeat failed: %s", self.broker_id, exc)
            else:
                try:
                    await self._handle(hb)
                except BrokerRegistrationError:
                    log.exception("broker %d: cannot register again; heartbeats stop",
                                  self.broker_id)
                    return
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_delay()):
                    await self._poke.wait()

    async def _handle(self, hb: HeartbeatResult) -> None:
        if hb.error_code in (ErrorCode.stale_broker_epoch, ErrorCode.broker_id_not_registered):
            self._set_fenced(True)
            if self._shutting_down:
                # The controller no longer knows this registration: nothing is left to move.
                self._may_shutdown.set()
                return
            log.warning("broker %d: %s; registering again", self.broker_id, hb.error_message)
            await self._register()
            return
        if hb.error_code != ErrorCode.none:
            log.warning("broker %d: heartbeat refused: %s", self.broker_id, hb.error_message)
            return
        self._set_fenced(hb.is_fenced)
        if hb.should_shutdown:
            self._may_shutdown.set()


class MetadataFollowerError(Exception):
    """The follower cannot apply what the controller sent."""


class MetadataFollower:
    """Keeps `loader` current with the controller's committed metadata (broker-only nodes).

    Each batch the controller sends is one loader commit, so listeners never see half of an
    operation. A snapshot batch (the controller's log was compacted past this broker's offset)
    is turned into the records that take the loader's image to the snapshot's
    (controller.raft_runtime.snapshot.diff_records), so listeners still get an ordinary delta
    naming what changed."""

    def __init__(self, client: BrokerLeaseApi, loader: MetadataLoader) -> None:
        self._client = client
        self.loader = loader
        self._applied = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="metadata-follower")
        self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("metadata follower stopped at offset %d: %s", self.loader.image.offset,
                      task.exception())
        # Waiters of wait_for_offset must learn that no more batches will come.
        self._applied.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def failure(self) -> BaseException | None:
        """Why the background follower stopped, if it did."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def run(self) -> None:
        stream = self._client.fetch_metadata(self.loader.image.offset + 1)
        try:
            async for batch in stream:
                self.apply(batch)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def apply(self, batch: MetadataBatch) -> None:
        records = [(offset, decode_record(data)) for offset, data in batch.records]
        if batch.snapshot and self.loader.image.offset >= 0:
            current = self.loader.image
            try:
                target = replay(records)
                if target.offset <= current.offset:
                    return  # nothing newer than what we have
                records = diff_records(current, target)
            except (SnapshotError, MetadataReplayError) as exc:
                raise MetadataFollowerError(
                    f"cannot move this broker's image (offset {current.offset}) to the "
                    f"controller's snapshot at offset {batch.last_offset}: {exc}") from exc
        try:
            self.loader.handle_commit(records)
        except MetadataListenerError:
            pass  # the image is current; the loader logged the listener's failure
        self._applied.set()
        self._applied = asyncio.Event()

    async def wait_for_offset(self, offset: int, timeout: float) -> None:
        """Until the loader's image reaches `offset`."""
        async with asyncio.timeout(timeout):
            while self.loader.image.offset < offset:
                if self._task is None or self._task.done():
                    raise MetadataFollowerError(
                        f"the metadata follower is not running (failure: {self.failure}); the "
                        f"image is at offset {self.loader.image.offset}, below {offset}")
                await self._applied.wait()

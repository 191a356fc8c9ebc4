"""asyncio transport for the Kafka protocol.

One ``KafkaProtocol`` per TCP connection. Bytes go into the sans-I/O ``ServerConnection``,
which cuts them into frames; each frame waits in a per-connection queue served by one task,
which decodes it only when its turn comes, so responses leave in request order (as Kafka
guarantees) while many connections are served concurrently. A connection that breaks the
protocol is closed with a logged reason; nothing it sent reaches a handler.

What one client, or many, can make a node hold is bounded (docs/operations.md, "Limits"):

* a frame larger than ``socket.request.max.bytes`` closes the connection when its size
  prefix arrives;
* frames waiting to be handled, node-wide, reserve at most ``queued.max.request.bytes``;
  a connection whose next frame does not fit stops being read until it does;
* one connection reads ahead at most ``_READ_AHEAD_FRAMES`` frames or
  ``_READ_AHEAD_BYTES`` bytes;
* a client that does not read its responses stops being served (and so read) once the
  transport's write buffer passes its high-water mark;
* ``max.connections`` and ``max.connections.per.ip`` (with overrides) refuse new
  connections, counted in ``odradek_connections_refused_total``;
* ``connections.max.idle.ms`` closes connections with no traffic;
* while connections wait for room in the request budget, one that holds part of it and
  makes no progress (a frame arriving slower than ``_MIN_FRAME_RATE``, or answers it does
  not read) for ``_STALL_TICKS`` seconds is closed: otherwise three connections that send
  a size prefix each, twelve bytes, would stop a node reading anybody's requests,
  replication included, for as long as they trickle a byte now and then.

The Kafka listeners are bound when the node starts but accept connections only once
``start_serving`` is called: the node calls it when it has registered with the controller
and caught up with the cluster metadata, so no client ever sees an empty cluster.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import datetime
import itertools
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.api import ApiSpec, CloseConnection, RequestContext
from odradek.broker.kafka import codec
from odradek.broker.kafka.budget import RequestBudget
from odradek.broker.kafka.connection import (
    FrameReceived,
    ProtocolViolation,
    RequestReceived,
    ServerConnection,
    VersionRejected,
)
from odradek.broker.metrics import NodeMetrics
from odradek.broker.security import tls
from odradek.broker.security.authentication import (
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    Answer,
    Authenticator,
)
from odradek.broker.security.principal_mapping import IDENTITY, NoMatchingRule, PrincipalMapper
from odradek.broker.security.quotas import ConnectionCreationRates
from odradek.broker.security.throttling import (
    FETCH,
    PRODUCE,
    Throttling,
    throttle_ms_of,
    with_throttle,
    without_records,
)
from odradek.broker.splice import Splice
from odradek.storage import RegionChanged

log = logging.getLogger("odradek.server")

_READ_AHEAD_FRAMES = 16
_READ_AHEAD_BYTES = 1 << 20
# Requests whose handling stops when their connection closes. A Fetch may wait up to its
# max_wait (a client may ask for 24 days) for data; kept after the client is gone, such
# waits pile up without bound (a client that opens, fetches and closes in a loop held
# ~9 KiB per iteration). The fetch handler's only suspension point is that wait, which
# cleans up on cancellation. Other handlers are not cancelled: one interrupted half-way
# (a produce between append and bookkeeping, a group join) could leave state behind.
_CANCEL_ON_CLOSE = frozenset({1})
# Pipelined produce: a Produce with acks=all is answered only once its followers have its
# records, a replication round trip (a few ms, far more on a busy machine). Handling a
# connection's requests strictly one after another (as Kafka does, muting the channel until
# the answer is sent) caps a producer's connection at one such round trip per request:
# with linger.ms=1 (about a thousand requests a second) the requests queued and end-to-end
# latency went to p50 0.9 s, p99 1.5 s. Instead, once a Produce's records are appended, the
# connection reads and handles its next request while the first waits, up to this many
# waiting at once. What a client sees does not change: records are appended in request
# order (each Produce is appended before the next request is read), answers go out in
# request order, and any request other than an acks=all Produce first waits for the
# answers before it (a Metadata or Fetch after a Produce sees what the Produce did).
_PIPELINED_PRODUCE_MAX = 16
# Eviction of budget holders that stall while others wait (see the module docstring). A
# frame of the default client max.request.size (1 MiB) arrives in 4 s at this rate; a
# holder is checked each second and closed after this many stalled seconds in a row.
_MIN_FRAME_RATE = 256 * 1024
_STALL_TICKS = 5
# A closed connection's answers already written get this long to reach a peer that does
# not read them; then it is cut off.
_FLUSH_TIMEOUT_S = 5.0
_conn_ids = itertools.count(1)
# Worker threads for zero-copy sends (broker/splice.py). Each call is bounded (at most
# _PUMP_BYTES, and a full socket is waited for at most _POLL_MS there), so a slow reader
# holds one only briefly; two keep both cores of a small machine copying.
_SENDFILE_THREADS = 2


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_request_bytes: int
    queued_max_request_bytes: int = -1
    max_connections: int = 2**31 - 1
    max_connections_per_ip: int = 2**31 - 1
    max_connections_per_ip_overrides: Mapping[str, int] = field(default_factory=dict)
    connections_max_idle_ms: int = 600_000
    # socket.send.buffer.bytes (-1: the OS's autotuned buffer). Kafka's default, 100 KiB,
    # also suits the zero-copy path: the receiver copies the bytes out of a buffer still in
    # the CPU's cache; with loopback's autotuned 4 MiB it does not (1.3 against 1.8 GB/s
    # per connection on the development machine).
    socket_send_buffer_bytes: int = -1
    # Connections on this listener are not counted against max.connections, as in Kafka:
    # replication must not be locked out by clients. Only when it is a listener of its own:
    # when clients share it, exempting it would exempt everybody.
    inter_broker_listener: str = ""
    # max.connection.creation.rate: node-wide (2^31-1: none) and per listener (KIP-612)
    max_connection_creation_rate: int = 2**31 - 1
    listener_connection_creation_rates: Mapping[str, int] = field(default_factory=dict)

    def per_ip_limit(self, host: str) -> int:
        return self.max_connections_per_ip_overrides.get(host, self.max_connections_per_ip)


@dataclass(frozen=True, slots=True)
class ListenerSecurity:
    """How a listener secures its connections: TLS (``ssl`` set) and SASL
    (``authenticator`` makes each connection's state machine)."""

    protocol: str = "PLAINTEXT"
    ssl: ssl.SSLContext | None = None
    authenticator: Callable[[], Authenticator] | None = None
    failed_authentication_delay_s: float = 0.1
    principal_mapper: PrincipalMapper = IDENTITY  # ssl.principal.mapping.rules


# A TLS handshake must finish within this: until it does the connection is not counted
# against max.connections, so it must not linger (asyncio's default is 60 s).
_TLS_HANDSHAKE_TIMEOUT_S = 10.0


class RateLimitedLog:
    """At most one line per ``interval`` seconds per kind; the rest are counted and the
    count is reported with the next line, so a flood of bad connections cannot turn into a
    flood of log I/O."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self._log = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter[str] = collections.Counter()

    def warning(self, kind: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < self._interval:
            self._suppressed[kind] += 1
            return
        self._last[kind] = now
        n = self._suppressed.pop(kind, 0)
        suffix = f" ({n} more like this since the last report)" if n else ""
        self._log.warning(msg + suffix, *args)


class ServedNode(Protocol):
    """What the transport itself uses of the node it serves (the handlers get the whole
    node, typed by the Protocols their modules declare)."""

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def throttling(self) -> Throttling: ...


S = TypeVar("S", bound=ServedNode)
# Requests whose handlers park (a fetch's long poll, a produce waiting for acks=all, a
# rebalance): their wall time is mostly waiting, not event-loop work, so the request quota
# counts only the encoding of their answer.
_PARKING = frozenset({0, 1, 11, 14})


class KafkaProtocol(asyncio.Protocol, Generic[S]):
    def __init__(self, server: KafkaServer[S], listener_name: str,
                 security: ListenerSecurity) -> None:
        self.server = server
        self.node = server.node
        self.listener_name = listener_name
        self.security = security
        # Who the client is: its certificate's subject on TLS, its SASL identity once
        # authenticated, else ANONYMOUS (Kafka's principals).
        self.principal = tls.ANONYMOUS
        self.auth = security.authenticator() if security.authenticator else None
        self.conn = ServerConnection(server.supported, server.limits.max_request_bytes,
                                     server.budget.try_reserve)
        self.conn_id = next(_conn_ids)
        self.frames: collections.deque[FrameReceived] = collections.deque()
        self._frames_bytes = 0
        self._wakeup = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closing = False
        self._lost = False
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.host = "?"
        self.admitted = False
        self.busy = False  # a request is being handled
        self._handling: int | None = None  # its api key
        self._handler: asyncio.Future[Payload | None] | None = None
        self.last_active = time.monotonic()
        self._muted_until = 0.0
        self._reading = True
        self._task: asyncio.Task[None] | None = None
        # Fetch answers on this connection may send records from the page cache (set once
        # connected: plaintext only, see broker/splice.py); the one in progress.
        self.zero_copy = False
        self._splice: Splice | None = None
        # Pipelined produce (_PIPELINED_PRODUCE_MAX): the waiting answers in request order,
        # and the task that writes them as they complete.
        self._pipeline: collections.deque[
            asyncio.Task[bytes | memoryview | codec.SplicedFrame | None]] = collections.deque()
        self._pipeline_writer: asyncio.Task[None] | None = None
        self.bytes_received = 0
        # for the stall check: bytes received at the last check, stalled checks in a row
        self.received_mark = 0
        self.stalled_ticks = 0

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if peer:
            self.host = str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}"
        hold_ms = self.node.throttling.connection_opened(self.host)
        if hold_ms:
            self.server.hold_and_close(self, hold_ms)
            return
        if self.security.ssl is not None:
            try:
                self.principal = tls.principal(transport.get_extra_info("ssl_object"),
                                               self.security.principal_mapper)
            except (ValueError, NoMatchingRule) as e:
                # A certificate the TLS layer accepted but that cannot be parsed or named:
                # refused, as Kafka fails the authentication.
                self.server.bad_peers.warning(
                    "principal", "refusing TLS connection from %s on %s: %s", self.peer,
                    self.listener_name, e)
                self.node.metrics.authentication_failures.labels(
                    listener=self.listener_name).inc()
                transport.close()
                return
        refusal = self.server.admit(self)
        if refusal is not None:
            self.server.bad_peers.warning(
                "refused", "refusing connection from %s on %s: %s", self.peer,
                self.listener_name, refusal)
            transport.close()
            return
        self.admitted = True
        sock = transport.get_extra_info("socket")
        if sock is not None and self.server.limits.socket_send_buffer_bytes > 0:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                self.server.limits.socket_send_buffer_bytes)
            except OSError as e:  # as Kafka, a buffer the OS refuses is not fatal
                log.debug("SO_SNDBUF on %s: %s", self.peer, e)
        self.zero_copy = self.security.ssl is None and sock is not None
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._lost = True
        self._wakeup.set()
        self._writable.set()
        if self._handler is not None and self._handling in _CANCEL_ON_CLOSE:
            self._handler.cancel()  # a long poll: nobody is left to answer
        if self._splice is not None:
            self._splice.abort()  # the peer is gone: stop sending to its socket
        if self.admitted:
            self.admitted = False
            # Give back the reservation of a frame that will never be complete. Whole
            # frames already received are still handled, as Kafka does: an acks=0 producer
            # closes right after sending, and its records must not be lost.
            self.server.budget.release(self.conn.reserved)
            self.server.forget(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self.bytes_received += len(data)
        self._take(self.conn.receive_data(data))

    def pause_writing(self) -> None:
        # The client is not reading what we send: stop serving it until it does.
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- reading ---------------------------------------------------------------------------

    def _take(self, events: list[FrameReceived | ProtocolViolation]) -> None:
        for event in events:
            if isinstance(event, ProtocolViolation):
                self._violation(event.reason)
                return
            self.frames.append(event)
            self._frames_bytes += event.size
        if events:
            self._wakeup.set()
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self._closing:
            return
        want = not self.conn.blocked and not (
            self.frames and (len(self.frames) >= _READ_AHEAD_FRAMES
                             or self._frames_bytes >= _READ_AHEAD_BYTES))
        if self.conn.blocked:
            self.server.wait_for_budget(self)
        if want != self._reading:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    @property
    def budget_held(self) -> int:
        """Bytes of the node's request budget this connection holds."""
        return self.conn.reserved + self._frames_bytes

    def stalled(self) -> bool:
        """Does this connection hold budget without letting it go? Called once a second
        while others wait for room."""
        received = self.bytes_received - self.received_mark
        self.received_mark = self.bytes_received
        if not self.budget_held:
            return False
        if not self._writable.is_set():
            return True  # its frames wait for it to read the answers it was sent
        if self.conn.reserved and self._reading:
            return received < _MIN_FRAME_RATE  # per second: it is checked each second
        return False

    def retry_framing(self) -> None:
        """The request budget has room again: frame what is buffered, read on."""
        if not self._closing:
            self._take(self.conn.receive_data(b""))

    def _violation(self, reason: str) -> None:
        self.server.bad_peers.warning("violation", "closing connection from %s: %s",
                                      self.peer, reason)
        self.node.metrics.protocol_errors.inc()
        # Answers already owed for earlier, valid requests still go out first.
        self._closing = True
        self._wakeup.set()

    # --- serving -----------------------------------------------------------------------

    async def _next_frame(self) -> FrameReceived | None:
        waited = False
        while not self.frames:
            if self._closing:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
            waited = True
        if not waited:
            # Take turns with every other connection: most handlers finish without
            # suspending, and a frame already queued needs no wait, so a client that
            # pipelines thousands of cheap requests (one read can frame 256 KiB of them)
            # would otherwise hold the event loop until all are answered (bystanders saw
            # 0.5 s stalls). A connection that just waited for its frame has had its turn:
            # yielding again would only add a loop iteration to every request's latency.
            await asyncio.sleep(0)
        await self._writable.wait()
        if self._muted_until:
            # Throttled (KIP-219): the answer went out; the next request waits out the
            # throttle time, and reading stops once the read-ahead is full.
            delay = self._muted_until - time.monotonic()
            self._muted_until = 0.0
            if delay > 0:
                await asyncio.sleep(delay)
        if not self.frames:
            return None
        frame = self.frames.popleft()
        self._frames_bytes -= frame.size
        self.server.budget.release(frame.size)
        self.server.budget_released()
        self._update_reading()
        return frame

    async def _serve(self) -> None:
        try:
            while True:
                frame = await self._next_frame()
                if frame is None:
                    break
                if self.auth is not None and self.auth.raw_tokens:
                    if not await self._raw_token(frame.frame):
                        break
                    continue
                event = self.conn.decode(frame.frame)
                pipelined = self._pipelinable(event)
                if self._pipeline and not pipelined:
                    await self._pipeline_drained()  # its answer goes after theirs
                if isinstance(event, ProtocolViolation):
                    self._violation(event.reason)
                    break
                if isinstance(event, VersionRejected):
                    self._write(self._version_rejected(event))
                    continue
                if self.auth is not None:
                    api_key = event.request.api_key
                    refusal = self.auth.refusal(api_key)
                    if refusal is not None:
                        self._refuse(refusal)
                        break
                    if api_key in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
                        if not await self._sasl(event):
                            break
                        continue
                if pipelined:
                    await self._pipeline_produce(event)
                    continue
                self.busy = True
                self._handling = event.request.api_key
                try:
                    out = await self._handle(event)
                finally:
                    self.busy = False
                    self._handling = None
                if not await self._send_answer(out):
                    break
        except Exception:
            log.exception("connection %s failed", self.peer)
        finally:
            try:
                await self._settle_pipeline()
            finally:
                # Frames that will not be handled (after a violation, at shutdown) give
                # their share of the request budget back.
                if self._frames_bytes:
                    self.server.budget.release(self._frames_bytes)
                    self._frames_bytes = 0
                    self.frames.clear()
                    self.server.budget_released()
                self.close()

    # --- pipelined produce (_PIPELINED_PRODUCE_MAX) ---------------------------------------

    def _pipelinable(self, event: object) -> bool:
        # Not under client quotas: a throttled answer mutes the connection before its next
        # request is read (KIP-219), which pipelining would let through.
        return (isinstance(event, RequestReceived) and event.request.api_key == PRODUCE
                and getattr(event.request.body, "acks", 0) == -1
                and not self.node.throttling.active)

    @property
    def pipelined(self) -> int:
        """Produce answers this connection still owes while it reads on."""
        return len(self._pipeline)

    async def _pipeline_produce(self, event: RequestReceived) -> None:
        """Handle an acks=all Produce in a task of its own; return once its records are
        appended (or it is answered), so that the next request is read meanwhile."""
        waiting = [t for t in self._pipeline if not t.done()]
        while len(waiting) >= _PIPELINED_PRODUCE_MAX:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            waiting = [t for t in waiting if not t.done()]
        loop = asyncio.get_running_loop()
        appended: asyncio.Future[None] = loop.create_future()

        def go_on(_: object = None) -> None:
            if not appended.done():
                appended.set_result(None)

        task = loop.create_task(self._handle(event, appended=go_on))
        task.add_done_callback(go_on)  # refused, failed or answered before appending
        self._pipeline.append(task)
        if self._pipeline_writer is None or self._pipeline_writer.done():
            self._pipeline_writer = loop.create_task(self._write_pipelined())
        await appended

    async def _write_pipelined(self) -> None:
        """Write the pipelined answers in request order as they complete."""
        while self._pipeline:
            try:
                out = await self._pipeline[0]
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                out = None  # that handler was cancelled (the node stopping), not this task
            self._pipeline.popleft()
            # A failed send aborted the connection: the answers after it are written to a
            # closing transport, which drops them.
            await self._send_answer(out)

    async def _settle_pipeline(self) -> None:
        """As the connection's task ends: answers owed go out before the close (a
        violation after them, the peer's end of stream; each wait ends within its
        request's timeout), unless the node is stopping."""
        if not self._pipeline:
            return
        task = asyncio.current_task()
        try:
            if task is None or not task.cancelling():
                await self._pipeline_drained()
        except Exception:
            log.exception("connection %s failed", self.peer)
        finally:
            for waiting in self._pipeline:  # cancelled: the node is stopping
                waiting.cancel()

    async def _pipeline_drained(self) -> None:
        while self._pipeline and self._pipeline_writer is not None:
            await self._pipeline_writer

    def _refuse(self, reason: str) -> None:
        self.server.bad_peers.warning("unauthenticated", "closing connection from %s on %s: %s",
                                      self.peer, self.listener_name, reason)
        self.node.metrics.authentication_failures.labels(listener=self.listener_name).inc()
        self._closing = True

    async def _sasl(self, event: RequestReceived) -> bool:
        """Answer SaslHandshake or SaslAuthenticate; False when the connection must close."""
        assert self.auth is not None
        req = event.request
        if req.api_key == SASL_HANDSHAKE:
            answer = self.auth.handshake(str(req.body.mechanism), req.api_version)
            body = codec.build_response(req.api_key, req.api_version, {
                "error_code": answer.error_code, "mechanisms": list(answer.mechanisms)})
        else:
            answer = self.auth.authenticate(bytes(req.body.auth_bytes), req.api_version)
            body = codec.build_response(req.api_key, req.api_version, {
                "error_code": answer.error_code, "error_message": answer.error_message,
                "auth_bytes": answer.auth_bytes,
                # kio's name for session_lifetime_ms (a duration, as all *_ms fields)
                "session_lifetime": datetime.timedelta(
                    milliseconds=answer.session_lifetime_ms)})
        await self._after_step(answer, req.api_key == SASL_AUTHENTICATE)
        self._write(codec.encode_response(req.api_key, req.api_version, req.correlation_id,
                                          body))
        if answer.close:
            self._closing = True
            return False
        return True

    async def _raw_token(self, token: bytes) -> bool:
        """A bare SASL token (after SaslHandshake v0): answered bare, or the connection
        closes, as Kafka does, without an answer when the exchange fails."""
        assert self.auth is not None
        answer = self.auth.authenticate(token, 0)
        await self._after_step(answer, True)
        if answer.close:
            self._closing = True
            return False
        self._write(len(answer.auth_bytes).to_bytes(4, "big") + answer.auth_bytes)
        return True

    async def _after_step(self, answer: Answer, authenticate: bool) -> None:
        """What every SASL step leads to: the principal once authenticated, the metrics,
        and the delay of a failure."""
        assert self.auth is not None
        if answer.error_code == ErrorCode.none and self.auth.authenticated:
            self.principal = self.auth.principal or self.principal
        if answer.failed:
            self.server.bad_peers.warning(
                "authentication", "authentication of %s on %s failed: %s", self.peer,
                self.listener_name, answer.error_message)
            self.node.metrics.authentication_failures.labels(
                listener=self.listener_name).inc()
            # Kafka's connection.failed.authentication.delay.ms: a password guesser waits
            # for each answer. Only this connection waits; its reads stop meanwhile.
            await asyncio.sleep(self.security.failed_authentication_delay_s)
        elif answer.error_code == ErrorCode.none and self.auth.authenticated and authenticate:
            self.node.metrics.authentications.labels(listener=self.listener_name).inc()
            if answer.reauthenticated:
                self.node.metrics.reauthentications.labels(listener=self.listener_name).inc()

    def _write(self, data: bytes | memoryview) -> None:
        if self.transport and not self.transport.is_closing():
            self.last_active = time.monotonic()
            self.transport.write(data)

    async def _send_answer(self, out: bytes | memoryview | codec.SplicedFrame | None
                           ) -> bool:
        """Send a handler's answer (None: none is owed); False when the connection must
        close (a zero-copy frame could not be sent whole)."""
        if isinstance(out, codec.SplicedFrame):
            return await self._send_spliced(out)
        if out is not None:
            self._write(out)
        return True

    async def _send_spliced(self, frame: codec.SplicedFrame) -> bool:
        """Send a frame with records from the page cache (broker/splice.py), after what
        the transport still holds; False when the connection must close (the frame could
        not be sent whole)."""
        t = self.transport
        if t is None or t.is_closing():
            _close_regions(frame)
            return False
        if t.get_write_buffer_size():
            # Limits of zero: the protocol is paused now and resumed once the buffer is
            # empty (both asyncio's and uvloop's transports re-check on the call).
            limits = t.get_write_buffer_limits()
            t.set_write_buffer_limits(high=0, low=0)
            try:
                await self._writable.wait()
            finally:
                if not t.is_closing():
                    t.set_write_buffer_limits(high=limits[1], low=limits[0])
            if t.is_closing() or self._lost or t.get_write_buffer_size():
                _close_regions(frame)
                return False
        try:
            fd = os.dup(t.get_extra_info("socket").fileno())
        except OSError:
            _close_regions(frame)
            return False
        splice = self._splice = Splice(frame, fd)
        loop = asyncio.get_running_loop()
        pumping: asyncio.Future[bool] | None = None
        try:
            while True:
                pumping = loop.run_in_executor(self.server.sendfile_pool, splice.pump)
                done = await pumping
                pumping = None
                self.last_active = time.monotonic()
                if done:
                    self.node.metrics.zero_copy_bytes.inc(
                        sum(len(r) for r in frame.out_of_band()))
                    return True
                # Not writable, as a paused transport is to the stall watch (stalled()).
                self._writable.clear()
                try:
                    await splice.writable(loop)
                finally:
                    self._writable.set()
        except RegionChanged as e:
            log.warning("closing connection from %s: a fetch answer's records changed "
                        "before they were sent (%s)", self.peer, e)
            self.node.metrics.connections_closed.labels(reason="fetch_records_gone").inc()
            self.abort()
            return False
        except (OSError, RuntimeError) as e:
            # The peer went away, the connection was aborted, or (RuntimeError) the node is
            # stopping and its sendfile pool takes no more work.
            log.debug("zero-copy send to %s failed after %d of %d bytes: %s", self.peer,
                      splice.sent, splice.size, e)
            self.abort()
            return False
        finally:
            self._splice = None
            if pumping is not None and not pumping.done():
                # Cancelled while a worker sends: it must finish with the descriptors.
                splice.abort()
                pumping.add_done_callback(lambda _: splice.close())
            else:
                splice.close()

    def _encode(self, req: codec.DecodedRequest, body: Payload
                ) -> memoryview | codec.SplicedFrame:
        if self.zero_copy and req.api_key == FETCH:
            return codec.encode_spliced_response(req.api_key, req.api_version,
                                                 req.correlation_id, body)
        return codec.encode_response(req.api_key, req.api_version, req.correlation_id, body)

    async def _handle(self, event: RequestReceived, appended: Callable[[], None] | None = None
                      ) -> bytes | memoryview | codec.SplicedFrame | None:
        req = event.request
        spec = self.server.apis[req.api_key]
        ctx = RequestContext(
            req.api_key, req.api_version, req.correlation_id, req.client_id,
            self.host, self.conn_id, self.listener_name, self.principal,
            zero_copy=self.zero_copy, appended=appended,
        )
        started = time.perf_counter()
        metrics = self.node.metrics
        call = spec.handler(self.node, ctx, req.body)
        # Only a request that connection_lost may cancel (a fetch's long poll) runs as a
        # task of its own; the others run in this connection's task, which saves every
        # request a loop iteration (a busy loop's iteration is its latency).
        handler = self._handler = (asyncio.ensure_future(call)
                                   if req.api_key in _CANCEL_ON_CLOSE else None)
        try:
            body = await (handler if handler is not None else call)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if handler is not None and handler.cancelled() and self._lost \
                    and not (current and current.cancelling()):
                return None  # cancelled by connection_lost: the next frames still count
            raise
        except CloseConnection as e:
            # No answer is owed (acks=0), but the client must learn that it failed.
            self.server.bad_peers.warning("unanswered", "closing connection from %s: %s",
                                          self.peer, e)
            self.close()
            return None
        except Exception:
            log.exception("handler for api_key=%d v%d failed", req.api_key, req.api_version)
            metrics.request_errors.labels(api=metrics.api_name(req.api_key)).inc()
            # The request cannot be answered meaningfully; closing tells the client to retry.
            self.close()
            return None
        finally:
            self._handler = None
            metrics.observe_request(req.api_key, time.perf_counter() - started, event.size)
        throttling = self.node.throttling
        if not throttling.active or throttling.exempt(req.api_key, req.api_version, req.body):
            if body is None:
                return None
            return self._encode(req, body)
        return self._throttled(event, body, started, throttling)

    def _throttled(self, event: RequestReceived, body: Payload | None, started: float,
                   throttling: Throttling
                   ) -> bytes | memoryview | codec.SplicedFrame | None:
        """The answer under client quotas: usage recorded, ``throttle_time_ms`` set and the
        connection muted when a quota is exceeded (KIP-219)."""
        req = event.request
        client_id = req.client_id or ""
        encode_from = time.perf_counter()
        throttle = 0
        if req.api_key == PRODUCE:
            throttle = throttling.produced(self.principal, client_id, event.size)
        out = None if body is None else self._encode(req, body)
        if req.api_key == FETCH and out is not None:
            fetch_throttle = throttling.fetched(self.principal, client_id, len(out))
            if fetch_throttle:
                body = without_records(body)
                throttle = max(throttle, fetch_throttle)
        now = time.perf_counter()
        loop_s = now - (encode_from if req.api_key in _PARKING else started)
        throttle = max(throttle, throttling.handled(self.principal, client_id, loop_s * 1000),
                       throttle_ms_of(body))  # the handler's own (controller mutations)
        if throttle <= 0:
            return out
        self.node.metrics.throttled_requests.labels(api=self.node.metrics.api_name(
            req.api_key)).inc()
        self._muted_until = time.monotonic() + throttle / 1000
        if isinstance(out, codec.SplicedFrame):
            _close_regions(out)  # replaced: the answer below is encoded again
        if body is None:
            return None  # acks=0: nothing to say, but the connection is held all the same
        return self._encode(req, with_throttle(body, throttle))

    def _version_rejected(self, ev: VersionRejected) -> memoryview:
        body = codec.build_response(
            codec.API_VERSIONS_KEY, 0,
            {"error_code": ErrorCode.unsupported_version,
             "api_keys": self.server.api_versions},
        )
        return codec.encode_response(codec.API_VERSIONS_KEY, 0, ev.correlation_id, body)

    def close(self) -> None:
        """Close once the answers already written are sent. asyncio's close waits for that
        flush without end, so a peer that never reads would keep the connection, its
        buffers and its share of the request budget: after ``_FLUSH_TIMEOUT_S`` it is cut
        off."""
        t = self.transport
        if t is None or t.is_closing():
            return
        t.close()
        if not self._lost and (t.get_write_buffer_size() or self._splice is not None):
            asyncio.get_running_loop().call_later(_FLUSH_TIMEOUT_S, self._cut_off)

    def _cut_off(self) -> None:
        if self.transport is not None and not self._lost:
            self.node.metrics.connections_closed.labels(reason="unread_responses").inc()
            self.abort()

    def abort(self) -> None:
        """Close at once, dropping whatever was not sent yet."""
        if self._splice is not None:
            self._splice.abort()
        if self.transport is not None and not self._lost:
            self.transport.abort()


def _close_regions(frame: codec.SplicedFrame) -> None:
    for region in frame.out_of_band():
        close = getattr(region, "close", None)
        if close is not None:
            close()


class KafkaServer(Generic[S]):
    """All Kafka listeners of one node, and what they share: the request budget, the
    connection counts and limits."""

    def __init__(self, node: S, apis: Mapping[int, ApiSpec[S]], limits: ServerLimits) -> None:
        self.node = node
        self.apis = apis
        self.supported = {k: (s.min_version, s.max_version) for k, s in apis.items()}
        # ApiVersions' list, also for the answer to an ApiVersions at an unknown version.
        self.api_versions = [{"api_key": k, "min_version": lo, "max_version": hi}
                             for k, (lo, hi) in sorted(self.supported.items())]
        self.limits = limits
        self.budget = RequestBudget(limits.queued_max_request_bytes)
        self.servers: list[asyncio.Server] = []
        self.listener_names: set[str] = set()
        self.connections: set[KafkaProtocol[S]] = set()
        self._n_counted = 0  # connections counted against max.connections
        self._per_ip: collections.Counter[str] = collections.Counter()
        self._waiting: collections.deque[KafkaProtocol[S]] = collections.deque()
        self.bad_peers = RateLimitedLog(log)
        self._held: set[asyncio.Transport] = set()  # throttled connections, closed soon
        unlimited = 2**31 - 1
        self.creation_rates = ConnectionCreationRates(
            None if limits.max_connection_creation_rate >= unlimited
            else limits.max_connection_creation_rate,
            {n: r for n, r in limits.listener_connection_creation_rates.items()
             if r < unlimited})
        # Listeners with a connection creation rate accept in a loop of their own.
        self._paced: list[tuple[socket.socket, str, ListenerSecurity]] = []
        self._accept_tasks: list[asyncio.Task[None]] = []
        self._reaper: asyncio.Task[None] | None = None
        self._stall_watch: asyncio.Task[None] | None = None
        self.sendfile_pool = concurrent.futures.ThreadPoolExecutor(
            _SENDFILE_THREADS, thread_name_prefix="sendfile")
        self.serving = False

    async def listen(self, name: str, host: str, port: int,
                     security: ListenerSecurity | None = None) -> int:
        """Bind a listener; it accepts connections only after ``start_serving``."""
        loop = asyncio.get_running_loop()
        sec = security or ListenerSecurity()
        self.listener_names.add(name)
        # Whether the node-wide rate counts this listener is only known once every listener
        # is bound (_counted): a listener any rate may apply to accepts in the paced loop,
        # which decides per connection.
        if self.creation_rates.limited(name, counts_broker_wide=True):
            sock = socket.create_server((host, port), backlog=1024, reuse_port=False)
            sock.setblocking(False)
            self._paced.append((sock, name, sec))
            return int(sock.getsockname()[1])
        server = await loop.create_server(
            lambda: KafkaProtocol[S](self, name, sec), host, port, reuse_address=True,
            backlog=1024, start_serving=False, ssl=sec.ssl,
            ssl_handshake_timeout=_TLS_HANDSHAKE_TIMEOUT_S if sec.ssl else None)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def start_serving(self) -> None:
        for s in self.servers:
            await s.start_serving()
        for sock, name, sec in self._paced:
            self._accept_tasks.append(asyncio.get_running_loop().create_task(
                self._accept_paced(sock, name, sec)))
        self.serving = True
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle())
        self._stall_watch = asyncio.get_running_loop().create_task(self._watch_stalls())

    async def _accept_paced(self, sock: socket.socket, name: str,
                            sec: ListenerSecurity) -> None:
        """Accept on a listener under max.connection.creation.rate, as Kafka's acceptor
        does: each connection is counted as it is accepted, and when that puts a rate over
        its limit nothing more is accepted there for the throttle time (the connection in
        hand waits too); clients that connect meanwhile wait in the kernel's backlog."""
        loop = asyncio.get_running_loop()
        counted = self._counted(name)
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as e:  # out of descriptors, or the like: try again shortly
                self.bad_peers.warning("accept", "accepting on %s failed: %s", name, e)
                await asyncio.sleep(0.1)
                continue
            wait_ms = self.creation_rates.record_and_throttle(name, counted, time.monotonic())
            if wait_ms:
                self.node.metrics.connection_accept_throttled.labels(listener=name).inc(
                    wait_ms / 1000)
                await asyncio.sleep(wait_ms / 1000)
            loop.create_task(self._serve_accepted(conn, name, sec))

    async def _serve_accepted(self, conn: socket.socket, name: str,
                              sec: ListenerSecurity) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: KafkaProtocol[S](self, name, sec), conn, ssl=sec.ssl,
                ssl_handshake_timeout=_TLS_HANDSHAKE_TIMEOUT_S if sec.ssl else None)
        except (OSError, TimeoutError) as e:  # a failed TLS handshake, a peer gone
            log.debug("connection on %s failed before it was served: %s", name, e)
            conn.close()

    # --- connection limits -------------------------------------------------------------

    def _counted(self, listener_name: str) -> bool:
        """Does a connection on this listener count against max.connections? (Kafka's
        ConnectionQuotas.protectedListener: the inter-broker listener is exempt only when
        there is another one for clients.)"""
        return not (listener_name == self.limits.inter_broker_listener
                    and len(self.listener_names) > 1)

    def admit(self, p: KafkaProtocol[S]) -> str | None:
        """Count a new connection in, or say why it is refused."""
        metrics = self.node.metrics
        counted = self._counted(p.listener_name)
        if counted and self._n_counted >= self.limits.max_connections:
            metrics.connections_refused.labels(listener=p.listener_name,
                                               reason="max_connections").inc()
            return f"max.connections={self.limits.max_connections} reached"
        limit = self.limits.per_ip_limit(p.host)
        if self._per_ip[p.host] >= limit:
            metrics.connections_refused.labels(listener=p.listener_name,
                                               reason="max_connections_per_ip").inc()
            return f"max.connections.per.ip={limit} reached for {p.host}"
        self._per_ip[p.host] += 1
        if counted:
            self._n_counted += 1
        self.connections.add(p)
        metrics.connections.labels(listener=p.listener_name).inc()
        return None

    def hold_and_close(self, p: KafkaProtocol[S], hold_ms: int) -> None:
        """A connection over its address's connection_creation_rate (KIP-612): not read,
        closed after ``hold_ms``, as Kafka's acceptor delays closing a throttled socket so
        that the client does not reconnect at once. It costs the node an accept and a close,
        never a request, and does not count against the connection limits."""
        transport = p.transport
        if transport is None:
            return
        transport.pause_reading()
        self.node.metrics.connections_refused.labels(
            listener=p.listener_name, reason="connection_creation_rate").inc()
        self.bad_peers.warning(
            "throttled", "closing connection from %s on %s after %d ms unread: its address "
            "opens connections faster than its connection_creation_rate quota", p.peer,
            p.listener_name, hold_ms)
        self._held.add(transport)

        def close() -> None:
            self._held.discard(transport)
            transport.close()
        asyncio.get_running_loop().call_later(hold_ms / 1000, close)

    def forget(self, p: KafkaProtocol[S]) -> None:
        if p not in self.connections:
            return
        self.connections.discard(p)
        if p in self._waiting:
            self._waiting.remove(p)
        self._per_ip[p.host] -= 1
        if self._per_ip[p.host] <= 0:
            del self._per_ip[p.host]
        if self._counted(p.listener_name):
            self._n_counted -= 1
        self.node.metrics.connections.labels(listener=p.listener_name).dec()
        self.budget_released()

    # --- request budget ----------------------------------------------------------------

    def wait_for_budget(self, p: KafkaProtocol[S]) -> None:
        if p not in self._waiting:
            self._waiting.append(p)

    def budget_released(self) -> None:
        """Let connections that waited for room frame their next request, oldest first."""
        while self._waiting and not self.budget.full:
            p = self._waiting.popleft()
            if not p.admitted:
                continue
            p.retry_framing()
            if p.conn.blocked:
                break  # it is waiting again (at the front would be fairer; rare enough)

    # --- idle connections --------------------------------------------------------------

    async def _reap_idle(self) -> None:
        idle = self.limits.connections_max_idle_ms / 1000
        while True:
            await asyncio.sleep(min(10.0, max(0.05, idle / 4)))
            now = time.monotonic()
            for p in [p for p in self.connections
                      if not p.busy and not p.pipelined and not p.closing
                      and now - p.last_active > idle]:
                log.debug("closing connection from %s: idle for more than %d ms", p.peer,
                          self.limits.connections_max_idle_ms)
                self.node.metrics.connections_closed.labels(reason="idle").inc()
                p.close()

    async def _watch_stalls(self) -> None:
        """Close budget holders that stall while others wait for room."""
        while True:
            await asyncio.sleep(1.0)
            contended = any(p.admitted for p in self._waiting)
            for p in list(self.connections):
                if not contended or p.closing:
                    p.received_mark, p.stalled_ticks = p.bytes_received, 0
                    continue
                p.stalled_ticks = p.stalled_ticks + 1 if p.stalled() else 0
                if p.stalled_ticks >= _STALL_TICKS:
                    self.bad_peers.warning(
                        "stalled", "closing connection from %s: it held %d bytes of "
                        "queued.max.request.bytes for %d s without progress while others "
                        "waited", p.peer, p.budget_held, p.stalled_ticks)
                    self.node.metrics.connections_closed.labels(reason="stalled").inc()
                    p.abort()  # it does not read: what is unsent would never go

    async def close(self) -> None:
        for task in (self._reaper, self._stall_watch, *self._accept_tasks):
            if task is not None:
                task.cancel()
        for sock, _, _ in self._paced:
            sock.close()
        for s in self.servers:
            s.close()
        for c in list(self.connections):
            c.close()
        for t in list(self._held):
            t.close()
        for s in self.servers:
            await s.wait_closed()
        # Splices still running finish their current call (a bounded send) and fail.
        self.sendfile_pool.shutdown(wait=False)

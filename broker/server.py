"""asyncio transport for the Kafka protocol.

One ``KafkaProtocol`` per TCP connection. Bytes go into the sans-I/O
``ServerConnection``; each request becomes an entry in a per-connection queue served by
one task, so responses leave in request order (as Kafka guarantees) while many
connections are served concurrently. A connection that breaks the protocol is closed
with a logged reason; nothing it sent reaches a handler.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from broker.handlers.api import ApiSpec, RequestContext
from broker.kafka import codec
from broker.kafka.connection import (
    ProtocolViolation,
    RequestReceived,
    ServerConnection,
    VersionRejected,
)

log = logging.getLogger("odradek.server")

# Stop reading from a client that has this many requests queued (backpressure).
_MAX_QUEUED = 64
_conn_ids = itertools.count(1)


class KafkaProtocol(asyncio.Protocol):
    def __init__(
        self,
        node: Any,
        apis: Mapping[int, ApiSpec],
        supported: Mapping[int, tuple[int, int]],
        max_request_bytes: int,
        listener_name: str,
        on_close: Callable[[KafkaProtocol], None],
    ) -> None:
        self.node = node
        self.apis = apis
        self.listener_name = listener_name
        self.conn = ServerConnection(supported, max_request_bytes)
        self.conn_id = next(_conn_ids)
        self.queue: asyncio.Queue[RequestReceived | VersionRejected | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._paused = False
        self._task: asyncio.Task[None] | None = None
        self._on_close = on_close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)
        self._on_close(self)

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, ProtocolViolation):
                log.warning("closing connection from %s: %s", self.peer, event.reason)
                self.node.metrics.protocol_errors.inc()
                self.queue.put_nowait(None)
                # Answers already queued for earlier, valid requests still go out first.
                return
            self.queue.put_nowait(event)
        if self.queue.qsize() >= _MAX_QUEUED and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()

    async def _serve(self) -> None:
        try:
            while True:
                event = await self.queue.get()
                if event is None:
                    break
                if self._paused and self.queue.qsize() < _MAX_QUEUED // 2 and self.transport:
                    self._paused = False
                    self.transport.resume_reading()
                if isinstance(event, VersionRejected):
                    self._write(self._version_rejected(event))
                    continue
                out = await self._handle(event)
                if out is not None:
                    self._write(out)
        except Exception:
            log.exception("connection %s failed", self.peer)
        finally:
            if self.transport and not self.transport.is_closing():
                self.transport.close()

    def _write(self, data: bytes) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.write(data)

    async def _handle(self, event: RequestReceived) -> bytes | None:
        req = event.request
        spec = self.apis[req.api_key]
        ctx = RequestContext(
            req.api_key, req.api_version, req.correlation_id, req.client_id,
            self.peer.rsplit(":", 1)[0], self.conn_id, self.listener_name,
        )
        started = time.perf_counter()
        metrics = self.node.metrics
        try:
            body = await spec.handler(self.node, ctx, req.body)
        except Exception:
            log.exception("handler for api_key=%d v%d failed", req.api_key, req.api_version)
            metrics.request_errors.labels(api=metrics.api_name(req.api_key)).inc()
            # The request cannot be answered meaningfully; closing tells the client to retry.
            if self.transport:
                self.transport.close()
            return None
        finally:
            metrics.observe_request(req.api_key, time.perf_counter() - started, event.size)
        if body is None:
            return None
        return codec.encode_response(req.api_key, req.api_version, req.correlation_id, body)

    def _version_rejected(self, ev: VersionRejected) -> bytes:
        from kio.schema.errors import ErrorCode

        body = codec.build_response(
            codec.API_VERSIONS_KEY, 0,
            {"error_code": ErrorCode.unsupported_version,
             "api_keys": self.node.api_versions_list()},
        )
        return codec.encode_response(codec.API_VERSIONS_KEY, 0, ev.correlation_id, body)


class KafkaServer:
    """All listeners of one node."""

    def __init__(self, node: Any, apis: Mapping[int, ApiSpec], max_request_bytes: int) -> None:
        self.node = node
        self.apis = apis
        self.supported = {k: (s.min_version, s.max_version) for k, s in apis.items()}
        self.max_request_bytes = max_request_bytes
        self.servers: list[asyncio.Server] = []
        self.connections: set[KafkaProtocol] = set()

    async def listen(self, name: str, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()

        def factory() -> KafkaProtocol:
            p = KafkaProtocol(self.node, self.apis, self.supported, self.max_request_bytes,
                              name, self.connections.discard)
            self.connections.add(p)
            return p

        server = await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for c in list(self.connections):
            if c.transport:
                c.transport.close()
        for s in self.servers:
            await s.wait_closed()

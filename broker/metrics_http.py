"""The node's HTTP endpoint: ``/metrics`` in Prometheus text format, served by aiohttp.

aiohttp parses HTTP (its C parser bounds request lines and headers) and closes connections
that stay silent or send their headers too slowly (``keepalive_timeout``); on top of that
this endpoint refuses connections beyond ``MAX_CONNECTIONS``, so the port cannot be used to
exhaust a node's memory or descriptors.

The page is built in a thread, one build at a time, shared by the scrapes that arrive
while it is built: with thousands of partitions it takes hundreds of milliseconds, which
on the event loop would delay heartbeats and requests (and a scrape flood would multiply
it). Collectors run beside the loop, so they copy what they iterate (``list(d.values())``
is atomic under the GIL); a collection that still meets a dict changing size is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

log = logging.getLogger("odradek.metrics_http")
# aiohttp logs every malformed request with a traceback at ERROR: anyone could flood the
# node's log through this port. Its own logger is silenced; our handler's failures are
# logged by _handle below.
_aiohttp_log = logging.getLogger("odradek.metrics_http.aiohttp")
_aiohttp_log.propagate = False
_aiohttp_log.setLevel(logging.CRITICAL + 1)

# Prometheus and a few humans: far more than enough, and few enough to be harmless.
MAX_CONNECTIONS = 64
# A collection that meets a dict changing size under it is tried this many times.
COLLECT_ATTEMPTS = 3
# Idle keep-alive connections, and clients that trickle their request, are closed after this.
IDLE_TIMEOUT_S = 5.0


class WithoutCreated:
    """The registry's metrics minus the ``_created`` samples of counters and histograms.

    The text format has no place for them, so prometheus_client writes each as an extra
    gauge family (``odradek_requests_created``...), doubling the series Prometheus stores
    for no use: counter resets are detected anyway. Filtering here, rather than
    prometheus_client.disable_created_metrics(), keeps that library's global switch alone.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for m in self.registry.collect():
            created = m.name + "_created"
            if any(s.name == created for s in m.samples):
                out = Metric(m.name, m.documentation, m.type, m.unit)
                out.samples = [s for s in m.samples if s.name != created]
                m = out
            yield m


class _Refused(asyncio.Protocol):
    """Stands in for the HTTP protocol when the connection limit is reached."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class MetricsServer:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.exposed = WithoutCreated(registry)
        self._http = web.Server(self._handle, access_log=None, logger=_aiohttp_log,
                                keepalive_timeout=IDLE_TIMEOUT_S)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.refused = 0
        self._building: asyncio.Future[bytes] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="metrics")

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._protocol, host, port,
                                               reuse_address=True, backlog=128)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    def _protocol(self) -> asyncio.BaseProtocol:
        if len(self._http.connections) >= MAX_CONNECTIONS:
            self.refused += 1
            return _Refused()
        return self._http()

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self._http.shutdown(1.0)
            await self.server.wait_closed()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _generate(self) -> bytes:
        for attempt in range(COLLECT_ATTEMPTS):
            try:
                return generate_latest(self.exposed)
            except RuntimeError as e:  # "dictionary changed size during iteration"
                if attempt + 1 == COLLECT_ATTEMPTS:
                    raise
                log.debug("metrics collection raced a change (%s); collecting again", e)
        raise AssertionError("unreachable")  # pragma: no cover

    async def page(self) -> bytes:
        """The metrics page, built in the metrics thread; concurrent callers share one build."""
        if self._building is None or self._building.done():
            loop = asyncio.get_running_loop()
            self._building = loop.run_in_executor(self._executor, self._generate)
        return await asyncio.shield(self._building)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path != "/metrics":
            return web.Response(status=404, text="not found: try /metrics\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="only GET and HEAD\n",
                                headers={"Allow": "GET, HEAD"})
        try:
            body = await self.page()
        except Exception:
            log.exception("collecting metrics failed")
            return web.Response(status=500, text="collecting metrics failed; see the node's "
                                "log\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

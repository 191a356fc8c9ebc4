"""A minimal asyncio HTTP endpoint serving ``/metrics`` in Prometheus text format."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric


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


class MetricsServer:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.exposed = WithoutCreated(registry)
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if len(parts) >= 2 and parts[0] in ("GET", "HEAD") and path == "/metrics":
                body = generate_latest(self.exposed)  # type: ignore[arg-type]
                status, ctype = "200 OK", CONTENT_TYPE_LATEST
            else:
                body = b"not found: try /metrics\n"
                status, ctype = "404 Not Found", "text/plain"
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            writer.write(head if parts and parts[0] == "HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

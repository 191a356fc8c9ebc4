"""The console's HTTP side: the page (``static/``) and a JSON API over ``reader`` and the
nodes' metrics. aiohttp, like the nodes' /metrics endpoint.

Every call into the cluster runs on one worker thread (kafka-python is not thread-safe);
metrics are scraped concurrently with aiohttp's client. The page polls the API, so it
follows a failover without reloading.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any, TypeVar

from aiohttp import ClientConnectorError, ClientSession, ClientTimeout, web

from odradek.broker.console.metrics_view import NodeHealth, node_health, quorum, unreachable
from odradek.broker.console.reader import MAX_MESSAGES, ClusterError, ClusterReader
from odradek.broker.console.targets import MetricsTarget

log = logging.getLogger("odradek.console")
T = TypeVar("T")
SCRAPE_TIMEOUT_S = 2.0


def jsonable(value: Any) -> Any:
    """Dataclasses (views) to plain JSON values; tuple keys to "topic-partition" strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {(f"{k[0]}-{k[1]}" if isinstance(k, tuple) else str(k)): jsonable(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class Console:
    """The console's state: the reader (owned by its worker thread) and the metrics
    targets."""

    def __init__(self, bootstrap: str, metrics: list[MetricsTarget]) -> None:
        self.reader = ClusterReader(bootstrap)
        self.metrics = metrics
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-kafka")
        self._http: ClientSession | None = None

    async def on_kafka(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    async def scrape(self) -> list[tuple[MetricsTarget, NodeHealth]]:
        if self._http is None:
            self._http = ClientSession(timeout=ClientTimeout(total=SCRAPE_TIMEOUT_S))
        http = self._http

        async def one(t: MetricsTarget) -> tuple[MetricsTarget, NodeHealth]:
            try:
                async with http.get(t.url) as r:
                    if r.status != 200:
                        return t, unreachable(t.url, f"HTTP {r.status}")
                    return t, node_health(t.url, await r.text())
            except TimeoutError:
                return t, unreachable(t.url, f"no answer within {SCRAPE_TIMEOUT_S:.0f}s")
            except ClientConnectorError as e:
                return t, unreachable(t.url, e.os_error.strerror or str(e.os_error))
            except Exception as e:  # noqa: BLE001 - whatever the node said, it is not healthy
                return t, unreachable(t.url, f"{type(e).__name__}: {e}".rstrip(": "))

        return list(await asyncio.gather(*(one(t) for t in self.metrics)))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        await self.on_kafka(self.reader.close)
        self._worker.shutdown(wait=False)

    # -- views --------------------------------------------------------------------------

    async def overview(self) -> dict[str, Any]:
        scraped_task = asyncio.ensure_future(self.scrape())
        problems: list[str] = []
        try:
            cluster = await self.on_kafka(self.reader.cluster)
            topics = await self.on_kafka(self.reader.topics)
        except ClusterError as e:
            cluster, topics = None, []
            problems.append(str(e))
        scraped = await scraped_task
        by_id = {t.node_id: h for t, h in scraped if t.node_id is not None}
        brokers = []
        if cluster is not None:
            for b in cluster.brokers:
                brokers.append({**jsonable(b), "metrics": jsonable(by_id.get(b.id))})
                if b.fenced:
                    problems.append(f"broker {b.id} is fenced (not heartbeating)")
        known = {b.id for b in cluster.brokers} if cluster else set()
        for t, h in scraped:
            if not h.up:
                who = f"node {t.node_id}" if t.node_id is not None else t.url
                problems.append(f"{who} does not answer on its metrics port ({h.error})")
            elif t.node_id is not None and cluster is not None and t.node_id not in known \
                    and h.partitions_hosted is not None:
                problems.append(f"broker {t.node_id} is not registered with the controller")
        parts = [p for t in topics for p in t.partitions]
        offline = sum(1 for p in parts if p.leader is None)
        under = sum(1 for p in parts if p.under_replicated)
        if offline:
            problems.append(f"{offline} partition(s) offline (no leader)")
        if under:
            problems.append(f"{under} partition(s) under-replicated")
        q = quorum([h for _, h in scraped])
        status = ("unreachable" if cluster is None else "critical" if offline
                  else "degraded" if problems else "healthy")
        return {
            "status": status,
            "problems": problems,
            "cluster_id": cluster.cluster_id if cluster else None,
            "controller_id": cluster.controller_id if cluster else None,
            "brokers": brokers,
            "nodes": [{"node_id": t.node_id, **jsonable(h)} for t, h in scraped],
            "quorum": jsonable(q),
            "topics": sum(1 for t in topics if not t.internal),
            "internal_topics": sum(1 for t in topics if t.internal),
            "partitions": len(parts),
            "under_replicated": under,
            "offline": offline,
            "time_ms": int(time.time() * 1000),
        }

    async def topic_list(self) -> list[dict[str, Any]]:
        topics = await self.on_kafka(self.reader.topics)
        sizes = await self._sizes()
        return [{"name": t.name, "internal": t.internal, "partitions": len(t.partitions),
                 "replication_factor": max((len(p.replicas) for p in t.partitions),
                                           default=0),
                 "under_replicated": sum(1 for p in t.partitions if p.under_replicated),
                 "offline": sum(1 for p in t.partitions if p.leader is None),
                 "size_bytes": sum(sizes.get((t.name, p.partition), 0)
                                   for p in t.partitions)}
                for t in topics]

    async def _sizes(self) -> dict[tuple[str, int], int]:
        """Partition sizes as their replicas report them: the largest replica's (the
        leader's log is never shorter than a follower's that is in sync)."""
        sizes: dict[tuple[str, int], int] = {}
        for _, h in await self.scrape():
            for key, size in h.log_sizes.items():
                sizes[key] = max(size, sizes.get(key, 0))
        return sizes

    async def topic(self, name: str) -> dict[str, Any]:
        (topic,) = await self.on_kafka(lambda: self.reader.topics([name]))
        configs = await self.on_kafka(lambda: self.reader.topic_configs(name))
        offsets = await self.on_kafka(
            lambda: self.reader.offsets(name, [p.partition for p in topic.partitions]))
        sizes = await self._sizes()
        return {
            "name": topic.name, "internal": topic.internal,
            "partitions": [{**jsonable(p), "under_replicated": p.under_replicated,
                            "log_start": offsets[p.partition][0],
                            "log_end": offsets[p.partition][1],
                            "size_bytes": sizes.get((name, p.partition))}
                           for p in topic.partitions],
            "configs": jsonable(configs),
        }


# -- HTTP -------------------------------------------------------------------------------

CONSOLE_KEY = web.AppKey("console", Console)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api(fn: Callable[[Console, web.Request], Awaitable[Any]]) -> Handler:
    """A JSON endpoint: the view, or {"error": ...} with 400 (bad request) or 503 (the
    cluster failed the request; the page shows it and keeps polling)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return web.json_response(jsonable(await fn(request.app[CONSOLE_KEY], request)))
        except ClusterError as e:
            return web.json_response({"error": str(e)}, status=503)
        except (ValueError, KeyError) as e:
            return web.json_response({"error": f"bad request: {e}"}, status=400)

    return handler


def _int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def _bytes(field: dict[str, Any] | None, what: str) -> bytes | None:
    """A key, value or header value the page sends: {"text": ...} or {"base64": ...}."""
    if field is None:
        return None
    if "base64" in field:
        try:
            return base64.b64decode(str(field["base64"]), validate=True)
        except binascii.Error:
            raise ValueError(f"{what} is not valid base64") from None
    return str(field.get("text", "")).encode()


async def _overview(c: Console, r: web.Request) -> Any:
    return await c.overview()


async def _topics(c: Console, r: web.Request) -> Any:
    return await c.topic_list()


async def _topic(c: Console, r: web.Request) -> Any:
    return await c.topic(r.match_info["topic"])


async def _groups(c: Console, r: web.Request) -> Any:
    return await c.on_kafka(c.reader.groups)


async def _group(c: Console, r: web.Request) -> Any:
    group = r.match_info["group"]
    return await c.on_kafka(lambda: c.reader.group(group))


async def _messages(c: Console, r: web.Request) -> Any:
    topic = r.match_info["topic"]
    partition = _int(r, "partition") or 0
    offset, ts, limit = _int(r, "offset"), _int(r, "timestamp"), _int(r, "limit") or 50
    if not 1 <= limit <= MAX_MESSAGES:
        raise ValueError(f"limit must be between 1 and {MAX_MESSAGES}")
    return await c.on_kafka(lambda: c.reader.messages(
        topic, partition, offset=offset, timestamp_ms=ts, limit=limit))


async def _produce(c: Console, r: web.Request) -> Any:
    # Only JSON bodies: a cross-site form post cannot send one without a CORS preflight,
    # which this server never answers.
    if r.content_type != "application/json":
        raise ValueError("send the message as application/json")
    body = await r.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    headers = [(str(h["key"]), _bytes(h.get("value"), "a header value") or b"")
               for h in body.get("headers") or []]
    partition = body.get("partition")
    if partition is not None and not isinstance(partition, int):
        raise ValueError("partition must be a whole number")
    topic = r.match_info["topic"]
    key, value = _bytes(body.get("key"), "the key"), _bytes(body.get("value"), "the value")
    return await c.on_kafka(lambda: c.reader.produce(
        topic, value, key=key, headers=headers, partition=partition))


async def _page(request: web.Request) -> web.StreamResponse:
    return _static_response("index.html")


async def _static(request: web.Request) -> web.StreamResponse:
    return _static_response(request.match_info["name"])


_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".svg": "image/svg+xml"}


def _static_response(name: str) -> web.StreamResponse:
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in _TYPES:
        raise web.HTTPNotFound()
    try:
        body = resources.files(__package__).joinpath("static", name).read_bytes()
    except FileNotFoundError:
        raise web.HTTPNotFound() from None
    return web.Response(body=body, content_type=_TYPES[suffix], charset="utf-8",
                        headers={"Cache-Control": "no-cache",
                                 "Content-Security-Policy": "default-src 'self'",
                                 "X-Content-Type-Options": "nosniff"})


def make_app(bootstrap: str, metrics: list[MetricsTarget]) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    console = Console(bootstrap, metrics)
    app[CONSOLE_KEY] = console

    async def close(app: web.Application) -> None:
        await console.close()

    app.on_cleanup.append(close)
    app.router.add_get("/", _page)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/overview", _api(_overview))
    app.router.add_get("/api/topics", _api(_topics))
    app.router.add_get("/api/topics/{topic}", _api(_topic))
    app.router.add_get("/api/topics/{topic}/messages", _api(_messages))
    app.router.add_post("/api/topics/{topic}/messages", _api(_produce))
    app.router.add_get("/api/groups", _api(_groups))
    app.router.add_get("/api/groups/{group}", _api(_group))
    return app

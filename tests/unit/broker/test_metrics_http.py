"""The /metrics page is built beside the event loop, once for concurrent scrapes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from odradek.broker.metrics_http import MetricsServer


class Slow(Collector):
    """Takes 0.3 s and counts its collections and the threads they ran in."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[str] = set()
        self.races = 0

    def collect(self) -> Iterator[Metric]:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.races:
            self.races -= 1
            raise RuntimeError("dictionary changed size during iteration")
        time.sleep(0.3)
        g = GaugeMetricFamily("odradek_test_slow", "A slow series.")
        g.add_metric([], 1)
        yield g


def test_scrapes_do_not_hold_the_loop_and_share_one_build() -> None:
    asyncio.run(_scrapes_share_one_build())


async def _scrapes_share_one_build() -> None:
    registry = CollectorRegistry()
    slow = Slow()
    registry.register(slow)
    server = MetricsServer(registry)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    pages = await asyncio.gather(*(server.page() for _ in range(5)))
    task.cancel()
    assert all(b"odradek_test_slow 1.0" in p for p in pages)
    assert slow.calls == 1  # five scrapes, one build
    assert slow.threads and threading.main_thread().name not in slow.threads
    assert ticks >= 5  # the loop ran on during the 0.3 s build (on it: at most 1)
    await server.stop()


def test_a_collection_racing_a_change_is_retried() -> None:
    asyncio.run(_retried())


async def _retried() -> None:
    registry = CollectorRegistry()
    slow = Slow()
    slow.races = 1
    registry.register(slow)
    server = MetricsServer(registry)
    assert b"odradek_test_slow 1.0" in await server.page()
    assert slow.calls == 2
    await server.stop()

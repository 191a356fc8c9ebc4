"""The loop watchdog: lag is measured, and a stall is counted once and logged with the
code that held the loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import CollectorRegistry

from odradek.broker.loop_watchdog import LoopWatchdog


def hold_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)


def test_a_stall_is_counted_once_and_names_the_code_holding_the_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()

    async def run() -> None:
        dog = LoopWatchdog(registry, stall_s=0.2)
        dog.start()
        await asyncio.sleep(0.2)  # healthy: ticks
        hold_the_loop_for(0.6)
        await asyncio.sleep(0.2)
        await dog.stop()

    with caplog.at_level(logging.WARNING, logger="odradek.loop"):
        asyncio.run(run())
    # Once for this stall (a loaded machine may starve the loop into others: those name
    # other code).
    stalls = registry.get_sample_value("odradek_event_loop_stalls_total") or 0
    held = [r for r in caplog.records if "hold_the_loop_for" in r.getMessage()]
    assert len(held) == 1 and stalls >= 1
    lags = registry.get_sample_value("odradek_event_loop_lag_seconds_count") or 0
    assert lags >= 4
    # The tick after the stall was about 0.6 s late.
    assert (registry.get_sample_value("odradek_event_loop_lag_seconds_bucket", {"le": "0.25"})
            or 0) < lags


def test_a_stall_report_does_not_keep_the_stalled_codes_locals_alive() -> None:
    import gc
    import weakref

    class Big:
        pass

    registry = CollectorRegistry()
    refs: list[weakref.ref[Big]] = []

    def stall_holding_something() -> None:
        big = Big()
        refs.append(weakref.ref(big))
        time.sleep(0.5)

    async def run() -> None:
        dog = LoopWatchdog(registry, stall_s=0.2)
        dog.start()
        await asyncio.sleep(0.1)
        stall_holding_something()
        await asyncio.sleep(0.3)
        gc.collect()
        assert (registry.get_sample_value("odradek_event_loop_stalls_total") or 0) >= 1
        assert refs[0]() is None, "the watchdog still holds the stalled frame's locals"
        await dog.stop()

    asyncio.run(run())

"""A node's stop that hangs says what it is waiting for."""

from __future__ import annotations

import asyncio
import logging

import pytest

from odradek.broker.node import _report_slow_stop


def test_a_slow_stop_reports_what_it_waits_for(caplog: pytest.LogCaptureFixture) -> None:
    async def waits_forever_for_a_peer() -> None:
        await asyncio.Event().wait()

    async def run() -> None:
        stuck = asyncio.create_task(waits_forever_for_a_peer())
        await _report_slow_stop(7, 0.01)
        stuck.cancel()

    with caplog.at_level(logging.ERROR, logger="odradek.node"):
        asyncio.run(run())
    [record] = caplog.records
    assert "node 7: stopping has taken" in record.message
    assert "waits_forever_for_a_peer" in record.message

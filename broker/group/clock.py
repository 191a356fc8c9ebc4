"""Time for the group coordinator: a wall clock for persisted timestamps and one-shot timers.

The coordinator never calls ``asyncio`` timers or ``time`` directly, so tests (and the
deterministic simulation) can drive session timeouts, rebalance delays and offset
expiry with :class:`ManualClock` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock milliseconds; these end up in records (commit timestamps)."""
        ...

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once, ``delay_ms`` from now, on the event loop thread."""
        ...


class LoopClock:
    """Real time: ``time.time()`` for timestamps, the running loop's timers for delays."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(delay_ms, 0) / 1000, callback)


class _ManualTimer:
    __slots__ = ("due", "seq", "callback", "cancelled")

    def __init__(self, due: int, seq: int, callback: Callable[[], None]) -> None:
        self.due = due
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _ManualTimer) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class ManualClock:
    """A clock that moves only when told to; timers fire synchronously inside advance()."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._timers: list[_ManualTimer] = []
        self._seq = itertools.count()

    def now_ms(self) -> int:
        return self._now

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        timer = _ManualTimer(self._now + max(delay_ms, 0), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def advance(self, ms: int) -> None:
        """Move time forward, firing due timers in order (including ones they schedule)."""
        target = self._now + ms
        while self._timers and self._timers[0].due <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.due)
            timer.callback()
        self._now = target

    def pending(self) -> int:
        return sum(1 for t in self._timers if not t.cancelled)

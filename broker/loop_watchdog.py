"""How long the node's event loop goes without running, and what held it.

Everything a node does for its peers runs on one asyncio loop: heartbeats and liveness,
Raft, follower fetches, client requests. A step that runs long delays all of them, and a
broker whose heartbeats are late enough is fenced although it is alive. The watchdog makes
such steps visible:

* a ticker on the loop wakes every ``TICK_S`` and records how late it woke (the loop's lag,
  ``odradek_event_loop_lag_seconds``);
* a thread checks that the ticker keeps ticking; when the loop has not run for
  ``stall_s`` it logs the loop thread's stack once for that stall (the code holding the
  loop) and how much of the stall the loop thread spent on a CPU (little means the process
  was starved of CPU or blocked in a system call, not computing), and counts it
  (``odradek_event_loop_stalls_total``).

The thread only reads a timestamp and, on a stall, the other thread's frames
(``sys._current_frames``): it costs nothing while the loop is healthy.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger("odradek.loop")

TICK_S = 0.05
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopWatchdog:
    def __init__(self, registry: CollectorRegistry, stall_s: float = 0.5) -> None:
        self.stall_s = stall_s
        self.lag = Histogram(
            "odradek_event_loop_lag_seconds",
            "How late the event loop ran a timer due every 50 ms: time other work held the "
            "loop (heartbeats, Raft and requests waited that long).", buckets=LAG_BUCKETS,
            registry=registry)
        self.stalls = Counter(
            "odradek_event_loop_stalls_total",
            "Times the event loop ran nothing for the stall threshold; each is logged with "
            "the code that held it.", registry=registry)
        self._last_tick = time.monotonic()
        self._last_tick_cpu = 0.0
        self._loop_thread: int | None = None
        self._cpu_clock: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        try:
            self._cpu_clock = time.pthread_getcpuclockid(self._loop_thread)
        except (AttributeError, OSError):  # not on every platform
            self._cpu_clock = None
        self._last_tick = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="loop-ticker")
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _tick(self) -> None:
        while True:
            due = time.monotonic() + TICK_S
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.lag.observe(max(0.0, now - due))
            self._last_tick = now
            self._last_tick_cpu = time.thread_time()

    def _watch(self) -> None:
        reported = False
        while not self._stop.wait(self.stall_s / 4):
            held = time.monotonic() - self._last_tick
            if held < self.stall_s:
                reported = False
                continue
            if reported:
                continue  # one report per stall
            reported = True
            self.stalls.inc()
            stack = self._loop_stack()
            cpu = ""
            if self._cpu_clock is not None:
                on_cpu = time.clock_gettime(self._cpu_clock) - self._last_tick_cpu
                cpu = f", {on_cpu:.2f}s of it on a CPU"
            log.warning("the event loop has not run for %.2fs%s (heartbeats, Raft and requests "
                        "wait meanwhile); it is running:\n%s", held, cpu, stack.rstrip())

    def _loop_stack(self) -> str:
        """The loop thread's stack, as text. The frame objects are dropped before this
        returns: held on to, they would keep the stalled code's locals alive (a 100 MB
        request being refused, say) until the next stall."""
        frame = sys._current_frames().get(self._loop_thread or 0)
        try:
            return "".join(traceback.format_stack(frame)[-12:]) if frame else "(unknown)\n"
        finally:
            del frame

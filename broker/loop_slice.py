"""Long loops over partitions that give the event loop back now and then.

Applying a metadata delta or answering a fetch session can visit thousands of partitions;
done in one go, that holds the loop (heartbeats, Raft, every request) for as long. A
``LoopSlice`` says when ``LOOP_SLICE_S`` of work has passed since the loop last ran, so the
caller can ``await pause()`` there: a cheap check per item, a return to the loop per slice.
"""

from __future__ import annotations

import asyncio
import time

# Longest stretch of such a loop between two returns to the event loop.
LOOP_SLICE_S = 0.005


class LoopSlice:
    def __init__(self, seconds: float = LOOP_SLICE_S) -> None:
        self.seconds = seconds
        self._start = time.perf_counter()

    def due(self) -> bool:
        """The slice is used up: ``await pause()`` before the next item."""
        return time.perf_counter() - self._start >= self.seconds

    async def pause(self) -> None:
        """Let the loop run whatever is ready, then start a new slice."""
        await asyncio.sleep(0)
        self._start = time.perf_counter()

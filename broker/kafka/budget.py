"""The node-wide budget of queued request bytes (Kafka's ``queued.max.request.bytes``).

A connection reserves a frame's whole declared size before reading its body, and gives it
back when the request is taken for handling. Reserving the declared size, not the bytes
received so far, is what makes the bound safe: a frame that got its reservation can always
be completed, so connections waiting for room cannot hold each other's memory hostage.

Pure bookkeeping, one instance per node, used from the event loop only.
"""

from __future__ import annotations


class RequestBudget:
    def __init__(self, limit: int) -> None:
        """``limit`` < 0: no bound (Kafka's -1)."""
        self.limit = limit
        self.used = 0

    def try_reserve(self, size: int) -> bool:
        # An idle budget always grants one frame, so a frame larger than the whole budget
        # (config validation prevents it, but) can never wait forever.
        if self.limit >= 0 and self.used and self.used + size > self.limit:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size
        if self.used < 0:
            raise AssertionError(f"request budget released {-self.used} bytes more than taken")

    @property
    def full(self) -> bool:
        return 0 <= self.limit <= self.used

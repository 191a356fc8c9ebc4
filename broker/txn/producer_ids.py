"""Where the transaction coordinator gets new producer ids."""

from __future__ import annotations

from typing import Protocol


class ProducerIdSource(Protocol):
    async def next_producer_id(self) -> int:
        """A producer id never handed out before, cluster-wide (the broker's block from the
        controller's AllocateProducerIds, as for idempotent producers).

        Raise when none can be had now; an exception with an ``error_code`` attribute (a
        Kafka error code) is passed to the client as is, any other becomes
        COORDINATOR_NOT_AVAILABLE so the client retries."""
        ...

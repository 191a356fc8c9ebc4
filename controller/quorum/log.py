"""The metadata log as the controller sees it.

Single-node mode uses LocalMetadataLog; a Raft-backed log replaces it behind this protocol.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol


class MetadataLog(Protocol):
    # Whether the log hands what it commits to the metadata loader itself (a Raft log: every
    # node applies each committed entry, the leader included, before append returns), or
    # the controller must (a local file). One of the two feeds the loader, never both.
    publishes_commits: bool

    async def append(self, records: Sequence[bytes]) -> int:
        """Append the records as one atomic batch (all or none survive a crash) and return the
        offset of the last one once the batch is committed (durable, or replicated to a
        majority). Offsets are consecutive. May raise NotControllerError."""
        ...

    def read_from(self, offset: int) -> Iterator[tuple[int, bytes]]:
        """Committed records with offset >= `offset`, in order."""
        ...

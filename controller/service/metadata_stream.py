"""Building FetchMetadata's messages from the committed log, without gRPC.

A stream sends everything committed from the broker's offset up to the controller's current
image as one batch, then waits for the image to move and sends the new records as the next
batch. The image only ever moves by whole operations, so batches end on operation boundaries
even though the log's read_from() does not tell them.

When the log no longer holds the requested offset (it was compacted into a Raft snapshot), the
stream first sends the current image as a snapshot batch, from the `SnapshotSource` hook
(default: controller.raft_runtime.snapshot.image_to_records), then the log after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from odradek.controller.metadata import MetadataImage, MetadataRecord, encode_record
from odradek.controller.metadata.diff import image_to_records
from odradek.controller.rpc import controller_pb2 as pb

# (offset of the image, (offset, record) pairs that rebuild it when replayed at those offsets
# into an empty image), as controller.raft_runtime.snapshot.image_to_records gives them.
SnapshotSource = Callable[[], tuple[int, Sequence[tuple[int, MetadataRecord | bytes]]]]

# Below gRPC's default 4 MiB receive limit with room to spare, so no client needs options.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
_ENTRY_OVERHEAD = 16  # tag, length and offset varints of one MetadataEntry, rounded up


class CommittedRecords(Protocol):
    """The part of a MetadataLog the stream reads (LocalMetadataLog, the Raft log)."""

    def read_from(self, offset: int) -> Iterable[tuple[int, bytes]]: ...


class SnapshotUnavailable(Exception):
    """A broker needs records the log no longer holds, and there is no snapshot to send."""


def read_range(log: CommittedRecords, start: int, end: int) -> list[tuple[int, bytes]] | None:
    """Records start..end (inclusive), or None when the log no longer holds `start`."""
    entries: list[tuple[int, bytes]] = []
    expected = start
    try:
        for offset, data in log.read_from(start):
            if offset > end:
                break
            if offset != expected:
                # A Raft log read from 0 starts with its snapshot's records, placed at their
                # replay offsets: not a contiguous stream, so send our own snapshot instead.
                return None
            entries.append((offset, data))
            expected += 1
    except LookupError:
        return None  # the Raft log's OffsetCompactedError: inside its snapshot
    if expected <= end:
        return None
    return entries


def default_snapshot(image_source: Callable[[], MetadataImage]) -> SnapshotSource:
    """A SnapshotSource over the current image, from the Raft runtime's image_to_records()."""

    def source() -> tuple[int, Sequence[tuple[int, MetadataRecord | bytes]]]:
        image = image_source()
        return image.offset, list(image_to_records(image))

    return source


def snapshot_entries(
    offset: int, records: Sequence[tuple[int, MetadataRecord | bytes]]
) -> list[tuple[int, bytes]]:
    """The snapshot's records, encoded, checked to end at the snapshot's offset in increasing
    order (the receiver replays them as they come)."""
    entries = [(o, r if isinstance(r, bytes) else encode_record(r)) for o, r in records]
    offsets = [o for o, _ in entries]
    if not entries or offsets[-1] != offset or offsets != sorted(set(offsets)):
        raise SnapshotUnavailable(
            f"the snapshot at offset {offset} is malformed: its records' offsets must increase "
            f"and end at {offset}; got {offsets[:3]}...{offsets[-3:]}"
        )
    return entries


def to_messages(
    entries: Sequence[tuple[int, bytes]],
    *,
    snapshot: bool = False,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[pb.FetchMetadataResponse]:
    """One batch as messages of at most ~max_bytes each; the last one has batch_end."""
    messages: list[pb.FetchMetadataResponse] = []
    current: list[pb.MetadataEntry] = []
    size = 0
    for offset, data in entries:
        cost = len(data) + _ENTRY_OVERHEAD
        if current and size + cost > max_bytes:
            messages.append(pb.FetchMetadataResponse(entries=current, snapshot=snapshot))
            current, size = [], 0
        current.append(pb.MetadataEntry(offset=offset, record=data))
        size += cost
    messages.append(pb.FetchMetadataResponse(entries=current, snapshot=snapshot))
    messages[-1].batch_end = True
    return messages

"""FetchMetadata's building blocks: reading ranges, snapshots, splitting into messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from odradek.controller.metadata import encode_record
from odradek.controller.metadata.records import no_op_record, topic_record
from odradek.controller.service.metadata_stream import (
    SnapshotUnavailable,
    read_range,
    snapshot_entries,
    to_messages,
)


class FakeLog:
    """Records first..last; reads below `compacted` fail like the Raft log's."""

    def __init__(self, last: int, first: int = 0, compacted: int = -1) -> None:
        self.records = {o: f"r{o}".encode() for o in range(first, last + 1)}
        self.compacted = compacted

    def read_from(self, offset: int) -> Iterator[tuple[int, bytes]]:
        if 0 < offset <= self.compacted:
            raise LookupError(f"offset {offset} is compacted")
        return iter(sorted((o, r) for o, r in self.records.items() if o >= offset))


def test_read_range_is_inclusive_and_contiguous() -> None:
    log = FakeLog(9)
    assert read_range(log, 3, 5) == [(3, b"r3"), (4, b"r4"), (5, b"r5")]
    assert read_range(log, 9, 9) == [(9, b"r9")]


def test_read_range_reports_what_the_log_no_longer_holds() -> None:
    assert read_range(FakeLog(9, first=4), 2, 6) is None  # starts later than asked
    assert read_range(FakeLog(5), 3, 8) is None  # ends before the image
    assert read_range(FakeLog(9, compacted=5), 3, 8) is None  # the Raft log raises
    log = FakeLog(9)
    del log.records[6]
    assert read_range(log, 3, 8) is None  # a hole


def test_snapshot_entries_encode_and_check_offsets() -> None:
    a = topic_record("a", uuid.UUID(int=1))
    entries = snapshot_entries(7, [(2, a), (7, encode_record(no_op_record()))])
    assert entries == [(2, encode_record(a)), (7, encode_record(no_op_record()))]
    for bad in ([(2, a), (6, a)], [(7, a), (7, a)], [(7, a), (3, a)], []):
        with pytest.raises(SnapshotUnavailable, match="malformed"):
            snapshot_entries(7, bad)


def test_to_messages_splits_a_batch_and_marks_its_end() -> None:
    entries = [(o, bytes(100)) for o in range(10)]
    messages = to_messages(entries, max_bytes=350)
    assert [len(m.entries) for m in messages] == [3, 3, 3, 1]
    assert [m.batch_end for m in messages] == [False, False, False, True]
    assert [e.offset for m in messages for e in m.entries] == list(range(10))
    assert all(not m.snapshot for m in messages)
    assert all(m.ByteSize() <= 350 for m in messages)

    snap = to_messages(entries, snapshot=True)
    assert len(snap) == 1 and snap[0].snapshot and snap[0].batch_end

    big = to_messages([(0, bytes(1000)), (1, b"x")], max_bytes=100)
    assert [len(m.entries) for m in big] == [1, 1]  # an oversized record goes alone

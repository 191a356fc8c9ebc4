"""Random appends, reads, reopens, crashes, truncations and deletions against a model."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from odradek.storage import Compression, LogConfig, PartitionLog, parse_batches
from tests.unit.storage.storage_testlib import Clock, crash, make_batch, read_all

CONFIG = LogConfig(segment_bytes=400, index_interval_bytes=90, segment_index_bytes=48)


class LogModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="odradek-model-"))
        self.dir = self.root / "t-0"
        self.clock = Clock()
        self.log = PartitionLog.open(self.dir, CONFIG, now_ms=self.clock)
        # The model: offset -> value for every record in the log, the log start offset,
        # the end offset, and batch boundaries (base, last) for truncation semantics.
        self.records: dict[int, bytes] = {}
        self.batches: list[tuple[int, int]] = []
        self.start = 0
        self.end = 0
        self.counter = 0

    def teardown(self) -> None:
        if not self.log.offline:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _values(self, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            self.counter += 1
            out.append(b"%d" % self.counter * (1 + self.counter % 7))
        return out

    @rule(
        sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
        codec=st.sampled_from([Compression.NONE, Compression.LZ4]),
    )
    def append(self, sizes: list[int], codec: Compression) -> None:
        values = [self._values(n) for n in sizes]
        data = b"".join(make_batch(v, compression=codec, ts=self.clock()) for v in values)
        result = self.log.append(data, leader_epoch=0)
        assert result.base_offset == self.end
        for vs in values:
            self.batches.append((self.end, self.end + len(vs) - 1))
            for v in vs:
                self.records[self.end] = v
                self.end += 1
        assert result.last_offset == self.end - 1
        self.clock.advance(10)

    @rule(data=st.data())
    def read_somewhere(self, data: st.DataObject) -> None:
        if self.end == self.start:
            return
        offset = data.draw(st.integers(self.start, self.end - 1))
        max_bytes = data.draw(st.integers(1, 600))
        result = self.log.read(offset, max_bytes)
        batches = parse_batches(result.records)
        assert batches, "min_one_batch must return a batch"
        assert batches[0].base_offset <= offset <= batches[0].last_offset
        assert len(batches) == 1 or len(result.records) <= max_bytes
        assert result.next_offset == batches[-1].last_offset + 1

    @rule()
    def reopen_clean(self) -> None:
        self.log.close()
        self.log = PartitionLog.open(self.dir, CONFIG, now_ms=self.clock)

    @rule(tear=st.integers(0, 80))
    def crash_and_reopen(self, tear: int) -> None:
        """Kill the process; with ``tear`` a half-written batch is left at the end."""
        crash(self.log)
        if tear:
            active = sorted(self.dir.glob("*.log"))[-1]
            with open(active, "ab") as f:
                f.write(make_batch(self._values(3))[:tear])
        self.log = PartitionLog.open(self.dir, CONFIG, now_ms=self.clock)

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        if self.end == self.start:
            return
        target = data.draw(st.integers(self.start, self.end))
        self.log.truncate_to(target)
        if target == self.end:
            return
        # The batch holding ``target`` goes whole; if that reaches below the log start,
        # the log restarts empty at its start offset.
        cut = next(base for base, last in self.batches if last >= target)
        if cut < self.start:
            self.end = self.start
            self.batches = []
        else:
            self.end = cut
            self.batches = [(b, last) for b, last in self.batches if last < cut]
        self.records = {o: v for o, v in self.records.items() if o < self.end}

    @precondition(lambda self: self.end > self.start)
    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        self.log.high_watermark = self.end
        target = data.draw(st.integers(self.start, self.end))
        assert self.log.delete_records(target) == max(target, self.start)
        self._set_start(max(target, self.start))

    @rule(limit=st.integers(0, 1200))
    def retention_by_size(self, limit: int) -> None:
        self.log.config = replace(CONFIG, retention_bytes=limit)
        self.log.high_watermark = self.end
        self.log.enforce_retention(self.clock())
        self.log.config = CONFIG
        self._set_start(self.log.log_start_offset)

    def _set_start(self, start: int) -> None:
        assert start >= self.start
        self.start = start
        self.records = {o: v for o, v in self.records.items() if o >= start}
        self.batches = [(b, last) for b, last in self.batches if last >= start]

    @invariant()
    def matches_model(self) -> None:
        log = self.log
        assert (log.log_start_offset, log.log_end_offset) == (self.start, self.end)
        got = read_all(log)
        assert got == sorted(self.records.items())
        segs = log.segments
        assert segs[-1].next_offset == self.end
        for a, b in zip(segs, segs[1:], strict=False):
            assert a.next_offset == b.base_offset
        on_disk = sum(os.path.getsize(s.path) for s in segs)
        assert on_disk == log.size_bytes == sum(s.size_bytes for s in segs)


LogModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("MODEL_EXAMPLES", "30")), stateful_step_count=25, deadline=None
)
TestLogModel = LogModel.TestCase

"""Model-based test of log compaction: random writes, tombstones, transactional writes that
commit or abort, segment rolls, cleanings (some cut short by a crash mid-swap), time passing
and crashes against a model of every record written and of every transaction's fate.

After every step: offsets strictly increase; every record read is one that was written at
that offset; nothing at or above the cleaner's point changed (after a crash mid-swap: above
the end of that cleaning, whose swap recovery finished without moving the checkpoint);
below it each key appears at most once and no record of an aborted transaction remains; the
cleaner's point never passes an open transaction; and reading the log as a read_committed
consumer does (below the last stable offset, dropping the aborted transactions the log
names) and replaying it (last writer wins, tombstones delete) gives exactly the model's
latest value of every live key among the plain and committed records below that offset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from odradek.storage import (
    Compression,
    LogConfig,
    PartitionLog,
    Record,
    decode_batches,
    encode_batch,
    parse_marker,
)
from odradek.storage import log as log_module
from odradek.storage.cleaning import run_clean
from tests.unit.storage.storage_testlib import Clock, crash, end_txn

CONFIG = LogConfig(cleanup_policy="compact", segment_bytes=500, index_interval_bytes=100,
                   segment_index_bytes=64, delete_retention_ms=5_000)
KEYS = [b"k%d" % i for i in range(6)]
TRANSACTIONAL = [21, 22]


class Crash(BaseException):
    pass


class CompactionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="odradek-compaction-"))
        self.dir = self.root / "t-0"
        self.clock = Clock()
        self.log = PartitionLog.open(self.dir, CONFIG, now_ms=self.clock)
        self.written: dict[int, tuple[bytes, bytes | None]] = {}  # offset -> (key, value)
        # Offsets of transactional records: pending per producer, then decided.
        self.open_txn: dict[int, list[int]] = {pid: [] for pid in TRANSACTIONAL}
        self.aborted: set[int] = set()
        self.counter = 0
        # The furthest any cleaning reached: a swap cut short by a crash is finished on
        # reopen, but the cleaner's checkpoint is not moved (the next cleaning redoes it).
        self.touched = 0

    def teardown(self) -> None:
        if not self.log.offline:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(batch=st.lists(st.tuples(st.sampled_from(KEYS), st.booleans()), min_size=1,
                         max_size=4),
          codec=st.sampled_from([Compression.NONE, Compression.LZ4, Compression.SNAPPY]))
    def write(self, batch: list[tuple[bytes, bool]], codec: Compression) -> None:
        records = []
        for i, (key, tombstone) in enumerate(batch):
            self.counter += 1
            records.append(Record(i, i, key, None if tombstone else b"v%d" % self.counter))
        data = encode_batch(records, compression=codec, timestamp_ms=self.clock())
        result = self.log.append(data, leader_epoch=0)
        for rec in records:
            self.written[result.base_offset + rec.offset_delta] = (rec.key or b"", rec.value)
        self.log.high_watermark = self.log.log_end_offset

    @rule(pid=st.sampled_from(TRANSACTIONAL),
          batch=st.lists(st.tuples(st.sampled_from(KEYS), st.booleans()), min_size=1,
                         max_size=3))
    def transactional_write(self, pid: int, batch: list[tuple[bytes, bool]]) -> None:
        entry = self.log.producer_state.entry(pid)
        seq = 0 if entry is None or not entry.batches else entry.last_seq + 1
        records = []
        for i, (key, tombstone) in enumerate(batch):
            self.counter += 1
            records.append(Record(i, i, key, None if tombstone else b"t%d" % self.counter))
        data = encode_batch(records, producer_id=pid, producer_epoch=0, base_sequence=seq,
                            is_transactional=True, timestamp_ms=self.clock())
        result = self.log.append(data, leader_epoch=0)
        for rec in records:
            offset = result.base_offset + rec.offset_delta
            self.written[offset] = (rec.key or b"", rec.value)
            self.open_txn[pid].append(offset)
        self.log.high_watermark = self.log.log_end_offset

    @rule(pid=st.sampled_from(TRANSACTIONAL), commit=st.booleans())
    def end_transaction(self, pid: int, commit: bool) -> None:
        end_txn(self.log, pid, commit=commit, ts=self.clock())
        if not commit:
            self.aborted.update(self.open_txn[pid])
        self.open_txn[pid] = []
        self.log.high_watermark = self.log.log_end_offset

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule(ms=st.sampled_from([1, 1_000, 6_000]))
    def time_passes(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule(capacity=st.sampled_from([4, 100]), crash_at=st.none() | st.integers(0, 12),
          horizon_only=st.booleans())
    def clean(self, capacity: int, crash_at: int | None, horizon_only: bool) -> None:
        ticket = self.log.prepare_clean(now_ms=self.clock(), map_capacity=capacity,
                                        io_bytes_per_second=float("inf"),
                                        horizon_only=horizon_only)
        if ticket is None:
            return
        result = run_clean(ticket.job)
        self.touched = max(self.touched, result.end_offset)
        if crash_at is None:
            self.log.swap_cleaned(ticket, result)
            return
        calls = 0
        real_rename, real_fsync = os.rename, log_module.checkpoint.fsync_dir

        def rename(*args: object) -> None:
            nonlocal calls
            calls += 1
            if calls > crash_at:
                raise Crash()
            real_rename(*args)  # type: ignore[arg-type]

        def fsync(*args: object) -> None:
            nonlocal calls
            calls += 1
            if calls > crash_at:
                raise Crash()
            real_fsync(*args)  # type: ignore[arg-type]

        os.rename = rename  # type: ignore[assignment]
        log_module.checkpoint.fsync_dir = fsync  # type: ignore[assignment]
        try:
            self.log.swap_cleaned(ticket, result)
        except Crash:
            pass
        finally:
            os.rename = real_rename
            log_module.checkpoint.fsync_dir = real_fsync
        self._reopen(crashed=True)

    @rule()
    def crash_and_reopen(self) -> None:
        self._reopen(crashed=True)

    @rule()
    def close_and_reopen(self) -> None:
        self._reopen(crashed=False)

    def _reopen(self, crashed: bool) -> None:
        if crashed:
            # Durable up to the last flush only; flush first so that what the model says was
            # written is still there (losing unflushed tails is the recovery model's test).
            self.log.flush()
            crash(self.log)
        else:
            self.log.close()
        self.log = PartitionLog.open(self.dir, CONFIG, now_ms=self.clock)
        self.log.high_watermark = self.log.log_end_offset

    def _read(self) -> list[tuple[int, bytes | None, bytes | None, int, bool]]:
        """(offset, key, value, producer, transactional) of every data record; markers are
        checked to be readable and skipped."""
        out = []
        offset = self.log.log_start_offset
        while offset < self.log.log_end_offset:
            r = self.log.read(offset, 1 << 20)
            if not r.records:
                break
            pos = 0
            for header, records in decode_batches(r.records):
                if header.is_control:
                    assert header.records_count == 0 or parse_marker(
                        header, bytes(r.records), pos) is not None
                else:
                    out.extend((x.offset, x.key, x.value, header.producer_id,
                                header.is_transactional) for x in records)
                pos += header.total_size
            offset = r.next_offset
        return out

    def _read_committed(self) -> list[tuple[int, bytes | None, bytes | None]]:
        """What a read_committed consumer gets: below the LSO, aborted transactions (named
        by the log) dropped, as Kafka's consumer does it with the Fetch answer's list."""
        log = self.log
        lso = log.last_stable_offset
        aborted = sorted(log.aborted_transactions(log.log_start_offset, lso),
                         key=lambda t: t.first_offset)
        active: set[int] = set()
        out = []
        offset = log.log_start_offset
        while offset < lso:
            r = log.read(offset, 1 << 20, max_offset=lso)
            if not r.records:
                break
            pos = 0
            for header, records in decode_batches(r.records):
                while aborted and aborted[0].first_offset <= header.last_offset:
                    active.add(aborted.pop(0).producer_id)
                if header.is_control:
                    marker = parse_marker(header, bytes(r.records), pos)
                    if marker is not None and not marker.commit:
                        active.discard(header.producer_id)
                elif not (header.is_transactional and header.producer_id in active):
                    out.extend((x.offset, x.key, x.value) for x in records)
                pos += header.total_size
            offset = r.next_offset
        return out

    @invariant()
    def cleaned_log_matches_the_model(self) -> None:
        full = self._read()
        got = [(o, k, v) for o, k, v, _, _ in full]
        offsets = [o for o, _, _ in got]
        assert offsets == sorted(set(offsets)), "offsets must strictly increase"
        for offset, key, value in got:
            assert self.written[offset] == (key, value), f"offset {offset} changed"
        point = self.log.cleaner_point
        assert point <= self.touched or point == 0
        reached = max(point, self.touched)
        above = [o for o in offsets if o >= reached]
        assert above == [o for o in sorted(self.written) if o >= reached], (
            "records at or above the cleaner's point must be untouched")
        below_keys = [k for o, k, _ in got if o < point]
        assert len(below_keys) == len(set(below_keys)), "one record per key below the point"
        assert not [o for o in offsets if o < point and o in self.aborted], (
            "no record of an aborted transaction below the cleaner's point")
        open_offsets = [o for pending in self.open_txn.values() for o in pending]
        assert point <= min(open_offsets, default=point), "never clean an open transaction"
        lso = self.log.last_stable_offset
        assert lso == min(open_offsets, default=self.log.log_end_offset)
        replay: dict[bytes, bytes] = {}
        for _, key, value in self._read_committed():
            if value is None:
                replay.pop(key, None)
            else:
                replay[key] = value
        model: dict[bytes, bytes] = {}
        for offset in sorted(self.written):
            if offset >= lso or offset in self.aborted:
                continue
            key, value = self.written[offset]
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        assert replay == model


TestCompactionModel = CompactionModel.TestCase
# 30 examples keep `make test` within its budget; MODEL_EXAMPLES=600 for a long run.
TestCompactionModel.settings = settings(
    max_examples=int(os.environ.get("MODEL_EXAMPLES", "30")), stateful_step_count=40,
    deadline=None)

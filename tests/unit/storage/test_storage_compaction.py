"""Log compaction: the record rules (storage/compaction.py), one cleaning of a log
(storage/cleaning.py + PartitionLog.prepare_clean/swap_cleaned) and crashes mid-swap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from odradek.storage import (
    AbortedTxn,
    Compression,
    CorruptRecordError,
    EndTxnMarker,
    PartitionLog,
    Record,
    TimestampType,
    decode_batch,
    decode_batches,
    encode_batch,
    encode_marker_batch,
    parse_marker,
    read_batch_header,
)
from odradek.storage import log as log_module
from odradek.storage.cleaning import CleanResult, run_clean
from odradek.storage.compaction import (
    DELETE_HORIZON_BIT,
    OffsetMap,
    SegmentShape,
    filter_batch,
    group_segments,
)
from tests.unit.storage.storage_testlib import Clock, crash, end_txn, open_log, read_records

DAY = 24 * 3600 * 1000


def keyed(pairs: list[tuple[bytes, bytes | None]], *, base_offset: int = 0, ts: int = 1000,
          compression: Compression = Compression.NONE, pid: int = -1, seq: int = -1,
          timestamp_type: TimestampType = TimestampType.CREATE_TIME,
          xerial: bool = False) -> bytes:
    return encode_batch([Record(i, i * 10, k, v) for i, (k, v) in enumerate(pairs)],
                        base_offset=base_offset, compression=compression, producer_id=pid,
                        producer_epoch=0 if pid >= 0 else -1, base_sequence=seq,
                        timestamp_ms=ts, timestamp_type=timestamp_type, xerial_snappy=xerial)


def full_map(*pairs: tuple[bytes, int], latest: int) -> OffsetMap:
    m = OffsetMap(100)
    for key, offset in pairs:
        m.put(key, offset)
    m.latest_offset = latest
    return m


def filtered(raw: bytes, m: OffsetMap, *, now: int = 0, keep_empty: bool = False
             ) -> tuple[bytes | None, int]:
    header = read_batch_header(raw)
    out = filter_batch(header, raw, m, now_ms=now, delete_retention_ms=DAY,
                       keep_empty=keep_empty)
    return out.data, out.removed


# --- the record rules ----------------------------------------------------------------------


@pytest.mark.parametrize("codec,xerial", [(Compression.NONE, False), (Compression.GZIP, False),
                                          (Compression.SNAPPY, False), (Compression.SNAPPY, True),
                                          (Compression.LZ4, False), (Compression.ZSTD, False)])
def test_superseded_records_go_and_the_batch_keeps_its_shape(codec: Compression,
                                                             xerial: bool) -> None:
    raw = keyed([(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"c", b"4")], base_offset=100,
                ts=5000, compression=codec, xerial=xerial, pid=7, seq=40)
    m = full_map((b"a", 102), (b"b", 200), (b"c", 103), latest=300)
    data, removed = filtered(raw, m)
    assert data is not None and removed == 2
    header, records = decode_batch(data)  # CRC checked
    old = read_batch_header(raw)
    assert [(r.offset, r.key, r.value, r.timestamp) for r in records] == [
        (102, b"a", b"3", 5020), (103, b"c", b"4", 5030)]
    assert (header.base_offset, header.last_offset, header.producer_id,
            header.base_sequence, header.compression) == (100, 103, 7, 40, codec)
    assert header.max_timestamp == 5030 and old.max_timestamp == 5030
    if xerial:
        assert data[61:69] == b"\x82SNAPPY\x00"


def test_a_batch_with_nothing_to_remove_is_copied_byte_for_byte() -> None:
    raw = keyed([(b"a", b"1"), (b"b", b"2")], base_offset=10)
    assert filtered(raw, full_map((b"a", 10), (b"b", 11), latest=20)) == (raw, 0)
    # Beyond the mapped range: not even decoded.
    assert filtered(raw, full_map((b"a", 99), latest=5)) == (raw, 0)


def test_tombstones_get_a_delete_horizon_then_go_once_it_passed() -> None:
    raw = keyed([(b"a", None), (b"b", b"2")], base_offset=0, ts=1000)
    m = full_map((b"a", 0), (b"b", 1), latest=10)
    stamped, removed = filtered(raw, m, now=50_000)
    assert stamped is not None and removed == 0
    header, records = decode_batch(stamped)
    assert header.attributes & DELETE_HORIZON_BIT
    assert header.base_timestamp == 50_000 + DAY
    # Record timestamps survive the new base timestamp.
    assert [(r.key, r.value, r.timestamp) for r in records] == [(b"a", None, 1000),
                                                               (b"b", b"2", 1010)]
    # Cleaned again before the horizon: unchanged; after it: the tombstone goes.
    assert filtered(stamped, m, now=50_000 + DAY - 1) == (stamped, 0)
    gone, removed = filtered(stamped, m, now=50_000 + DAY)
    assert gone is not None and removed == 1
    header, records = decode_batch(gone)
    assert not header.attributes & DELETE_HORIZON_BIT
    assert [(r.key, r.timestamp) for r in records] == [(b"b", 1010)]


def test_empty_batches_go_unless_they_are_a_producers_last() -> None:
    raw = keyed([(b"a", b"1")], base_offset=5, pid=3, seq=9)
    m = full_map((b"a", 6), latest=6)
    assert filtered(raw, m) == (None, 1)
    data, _ = filtered(raw, m, keep_empty=True)
    assert data is not None
    header, records = decode_batch(data)
    assert records == [] and header.records_count == 0
    assert (header.base_offset, header.last_offset, header.producer_id,
            header.base_sequence) == (5, 5, 3, 9)


def test_keyless_records_are_dropped_and_control_batches_kept() -> None:
    raw = keyed([(b"a", b"1")], base_offset=0)
    keyless = encode_batch([Record(0, 0, None, b"x")], base_offset=1)
    m = full_map((b"a", 0), latest=5)
    assert filtered(keyless, m) == (None, 1)
    control = encode_batch([Record(0, 0, b"\x00\x00\x00\x00", b"")], base_offset=2,
                           producer_id=1, producer_epoch=0, is_control=True,
                           is_transactional=True)
    assert filtered(control, m) == (control, 0)
    assert filtered(raw, m) == (raw, 0)


def test_log_append_time_batches_keep_their_timestamp() -> None:
    raw = keyed([(b"a", b"1"), (b"a", b"2")], timestamp_type=TimestampType.LOG_APPEND_TIME,
                ts=777)
    data, _ = filtered(raw, full_map((b"a", 1), latest=1))
    assert data is not None
    header, records = decode_batch(data)
    assert header.max_timestamp == read_batch_header(raw).max_timestamp
    assert [r.timestamp for r in records] == [header.max_timestamp]


def test_segments_are_grouped_while_the_originals_fit_one_segment() -> None:
    shapes = [SegmentShape(0, 10, 400, 1, 1), SegmentShape(10, 20, 500, 1, 1),
              SegmentShape(20, 30, 200, 1, 1), SegmentShape(30, 2**31 + 40, 10, 1, 1)]
    groups = group_segments(shapes, max_bytes=1000, max_index_entries=10, max_time_entries=10)
    assert [[s.base_offset for s in g] for g in groups] == [[0, 10], [20], [30]]
    groups = group_segments(shapes[:3], max_bytes=10_000, max_index_entries=2,
                            max_time_entries=10)
    assert [[s.base_offset for s in g] for g in groups] == [[0, 10], [20]]


# --- cleaning a log ------------------------------------------------------------------------


def clean(log: PartitionLog, clock: Clock, capacity: int = 10_000,
          horizon_only: bool = False) -> CleanResult | None:
    ticket = log.prepare_clean(now_ms=clock(), map_capacity=capacity,
                               io_bytes_per_second=float("inf"), horizon_only=horizon_only)
    if ticket is None:
        return None
    result = run_clean(ticket.job)
    log.swap_cleaned(ticket, result)
    return result




def write(log: PartitionLog, pairs: list[tuple[bytes, bytes | None]], ts: int = 1000) -> None:
    for k, v in pairs:
        log.append(keyed([(k, v)], ts=ts), leader_epoch=0)
    log.high_watermark = log.log_end_offset


def compacted_log(path: Path, clock: Clock, **config: object) -> PartitionLog:
    settings: dict[str, object] = {"cleanup_policy": "compact", "segment_bytes": 400}
    settings.update(config)
    return open_log(path, clock, **settings)


def test_a_log_is_cleaned_to_the_latest_value_of_each_key(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock)
    write(log, [(b"k%d" % (i % 4), b"v%d" % i) for i in range(40)])
    dirt = log.dirtiness()
    assert dirt.first_dirty == 0 and dirt.ratio == 1.0
    result = clean(log, clock)
    assert result is not None and result.records_removed > 0
    got = read_records(log)
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(set(offsets))
    below = [(k, v) for o, k, v in got if o < log.cleaner_point]
    assert len({k for k, _ in below}) == len(below)  # one record per key below the point
    assert dict((k, v) for _, k, v in got) == {b"k%d" % i: b"v%d" % (36 + i) for i in range(4)}
    # Everything from the cleaner's point on is as written.
    assert [o for o, _, _ in got if o >= log.cleaner_point] == list(
        range(log.cleaner_point, 40))
    assert log.dirtiness().dirty_bytes == 0
    point = log.cleaner_point
    log.close()
    log = compacted_log(tmp_path / "t-0", clock)
    assert log.cleaner_point == point and read_records(log) == got
    # A second cleaning merges the now small segments.
    segments = len(log.segments)
    write(log, [(b"k0", b"new")])
    log.roll()
    write(log, [(b"k1", b"newer")])
    clean(log, clock)
    assert len(log.segments) < segments
    assert dict((k, v) for _, k, v in read_records(log))[b"k0"] == b"new"


def test_nothing_at_or_above_the_high_watermark_or_in_the_active_segment_is_cleaned(
        tmp_path: Path) -> None:
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock)
    write(log, [(b"k", b"v%d" % i) for i in range(30)])
    log.high_watermark = 5
    assert log.dirtiness().first_uncleanable == 5
    clean(log, clock)
    assert [o for o, _, _ in read_records(log)][:1] == [4]
    assert len(read_records(log)) == 26
    log.high_watermark = log.log_end_offset
    clean(log, clock)
    active = log.segments[-1].base_offset
    assert [o for o, _, _ in read_records(log)] == [active - 1, *range(active, 30)]


def test_min_compaction_lag_keeps_young_records(tmp_path: Path) -> None:
    clock = Clock(1_000_000)
    log = compacted_log(tmp_path / "t-0", clock, min_compaction_lag_ms=60_000)
    write(log, [(b"k", b"old%d" % i) for i in range(10)], ts=clock() - 120_000)
    write(log, [(b"k", b"young%d" % i) for i in range(10)], ts=clock())
    clean(log, clock)
    values = [v for _, _, v in read_records(log)]
    assert all(v is not None and v.startswith(b"young") for v in values[-10:])
    assert not any(v is not None and v.startswith(b"old") for v in values[:-11])


def test_max_compaction_lag_makes_a_barely_dirty_log_due(tmp_path: Path) -> None:
    clock = Clock(10 * DAY)
    log = compacted_log(tmp_path / "t-0", clock, max_compaction_lag_ms=DAY)
    write(log, [(b"k%d" % i, b"v") for i in range(20)], ts=clock())
    assert not log.dirtiness().overdue
    clock.advance(DAY + 1)
    assert log.dirtiness().overdue
    # And the active segment rolls once it is older than the lag (KIP-354).
    log.append(keyed([(b"k", b"v")], ts=clock()), leader_epoch=0)
    first = log.segments[-1].base_offset
    clock.advance(DAY + 1)
    log.append(keyed([(b"k", b"v")], ts=clock()), leader_epoch=0)
    assert log.segments[-1].base_offset > first


def test_tombstones_stay_for_delete_retention_then_go(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock, delete_retention_ms=1000)
    write(log, [(b"a", b"1"), (b"b", b"1"), (b"a", None)] * 5)
    write(log, [(b"x", b"%d" % i) for i in range(20)])
    clean(log, clock)
    assert (b"a", None) in [(k, v) for _, k, v in read_records(log)]
    assert log.min_delete_horizon == clock() + 1000
    assert clean(log, clock, horizon_only=True) is not None
    assert (b"a", None) in [(k, v) for _, k, v in read_records(log)]
    clock.advance(1000)
    clean(log, clock, horizon_only=True)
    assert b"a" not in {k for _, k, _ in read_records(log)}
    assert log.min_delete_horizon is None


def test_a_producers_last_batch_survives_as_an_empty_batch(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock)
    for seq in range(20):
        log.append(keyed([(b"k", b"%d" % seq)], pid=9, seq=seq), leader_epoch=0)
    log.append(keyed([(b"z", b"x")] * 1), leader_epoch=0)
    for i in range(20):
        log.append(keyed([(b"k", b"other%d" % i)]), leader_epoch=0)
    log.high_watermark = log.log_end_offset
    clean(log, clock)
    log.close()
    log = compacted_log(tmp_path / "t-0", clock)
    entry = log.producer_state.entry(9)
    assert entry is not None and entry.last_seq == 19
    # The producer's next batch is in sequence; a retry of its last one is a duplicate.
    assert log.append(keyed([(b"k", b"19")], pid=9, seq=19), leader_epoch=0).duplicate


def test_cleaning_is_abandoned_when_the_log_changed_under_it(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock)
    write(log, [(b"k", b"v%d" % i) for i in range(30)])
    ticket = log.prepare_clean(now_ms=clock(), map_capacity=100,
                               io_bytes_per_second=float("inf"))
    assert ticket is not None
    result = run_clean(ticket.job)
    log.truncate_to(3)  # a follower truncating into the cleaned range
    before = read_records(log)
    assert log.swap_cleaned(ticket, result) == 0
    assert read_records(log) == before and log.cleaner_point == 0
    assert not [p for p in os.listdir(log.directory) if p.endswith(".cleaned")]


def test_a_full_offset_map_cleans_in_several_passes(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock)
    write(log, [(b"k%d" % i, b"v") for i in range(30)] + [(b"k%d" % i, b"w") for i in range(30)])
    result = clean(log, clock, capacity=12)
    assert result is not None and result.map_full and log.cleaner_point <= 13
    for _ in range(10):
        if clean(log, clock, capacity=12) is None:
            break
    got = read_records(log)
    assert dict((k, v) for _, k, v in got) == {b"k%d" % i: b"w" for i in range(30)}


@pytest.mark.parametrize("step", range(16))
def test_a_crash_at_any_point_of_the_swap_loses_nothing(tmp_path: Path, step: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill the swap at its n-th file operation (renames, deletions, directory fsyncs), drop
    the log like a killed process, reopen: the log reads as before the cleaning or as after
    it, never a mix with records missing or doubled."""
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock, segment_bytes=300)
    write(log, [(b"k%d" % (i % 3), b"v%d" % i) for i in range(24)])
    before = read_records(log)
    latest = dict((k, v) for _, k, v in before)
    ticket = log.prepare_clean(now_ms=clock(), map_capacity=100,
                               io_bytes_per_second=float("inf"))
    assert ticket is not None and len(ticket.job.groups) >= 2
    result = run_clean(ticket.job)

    class Crash(BaseException):
        pass

    calls = 0

    def counted(real):  # type: ignore[no-untyped-def]
        def op(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls > step:
                raise Crash()
            return real(*args, **kwargs)
        return op

    monkeypatch.setattr(log_module.os, "rename", counted(os.rename))
    monkeypatch.setattr(log_module.checkpoint, "fsync_dir",
                        counted(log_module.checkpoint.fsync_dir))
    try:
        log.swap_cleaned(ticket, result)
    except Crash:
        pass
    else:
        assert calls > 10  # the steps cover every operation of both groups' swaps
    monkeypatch.undo()
    crash(log)
    log = compacted_log(tmp_path / "t-0", clock, segment_bytes=300)
    after = read_records(log)
    offsets = [o for o, _, _ in after]
    assert offsets == sorted(set(offsets))
    assert set(after) <= set(before)
    assert dict((k, v) for _, k, v in after) == latest
    assert not [p for p in os.listdir(log.directory) if p.endswith((".swap", ".cleaned"))]
    # And the next cleaning finishes the job.
    clean(log, clock)
    assert dict((k, v) for _, k, v in read_records(log)) == latest


def test_the_worker_reads_each_byte_once_across_chunk_boundaries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from odradek.storage import cleaning

    monkeypatch.setattr(cleaning, "READ_CHUNK", 100)  # batches straddle every chunk
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock, segment_bytes=10_000)
    for i in range(30):
        log.append(keyed([(b"k%d" % j, b"v" * (i * 7 % 90)) for j in range(1 + i % 3)]),
                   leader_epoch=0)
    log.roll()
    seg = log.segments[0]
    throttle = cleaning.Throttle(float("inf"))
    got = [h.base_offset for h, _ in cleaning.iter_segment(str(seg.path), seg.size_bytes,
                                                           throttle)]
    assert got == sorted(set(got)) and len(got) == 30
    assert throttle.read == seg.size_bytes
    # A segment cut mid-batch is reported, not looped on.
    with pytest.raises(CorruptRecordError, match="truncated|ends early"):
        list(cleaning.iter_segment(str(seg.path), seg.size_bytes + 40, throttle))


def test_compact_delete_logs_are_cleaned_and_retained(tmp_path: Path) -> None:
    clock = Clock(10 * DAY)
    log = compacted_log(tmp_path / "t-0", clock, cleanup_policy="compact,delete",
                        retention_ms=DAY)
    write(log, [(b"k%d" % (i % 3), b"old%d" % i) for i in range(30)], ts=clock() - 2 * DAY)
    write(log, [(b"k%d" % (i % 3), b"new%d" % i) for i in range(30)], ts=clock())
    epochs = log.leader_epochs.entries
    clean(log, clock)
    assert len(read_records(log)) < 60
    # Cleaning keeps the leader-epoch history (offsets never move).
    assert log.leader_epochs.entries == epochs
    # Retention still deletes what is older than retention.ms, compacted or not.
    assert log.enforce_retention(clock()) > 0
    assert all(v is not None and v.startswith(b"new") for _, _, v in read_records(log))
    assert dict((k, v) for _, k, v in read_records(log)) == {
        b"k0": b"new27", b"k1": b"new28", b"k2": b"new29"}


# --- transactions --------------------------------------------------------------------------


def txn_keyed(pid: int, seq: int, pairs: list[tuple[bytes, bytes | None]], ts: int = 1000
              ) -> bytes:
    return encode_batch([Record(i, 0, k, v) for i, (k, v) in enumerate(pairs)],
                        producer_id=pid, producer_epoch=0, base_sequence=seq,
                        is_transactional=True, timestamp_ms=ts)


def batches(log: PartitionLog) -> list[tuple[int, bool, int, list[tuple[bytes | None,
                                                                        bytes | None]]]]:
    """(base offset, is control, attributes, [(key, value)]) of every batch in the log."""
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        r = log.read(offset, 1 << 20)
        if not r.records:
            break
        for header, records in decode_batches(r.records):
            out.append((header.base_offset, header.is_control, header.attributes,
                        [(x.key, x.value) for x in records]))
        offset = r.next_offset
    return out


def test_filtering_a_marker() -> None:
    marker = encode_marker_batch(7, 0, 1, False, 500, base_offset=40)
    m = full_map(latest=100)
    header = read_batch_header(marker)

    def run(raw: bytes, *, now: int, discardable: bool = True, keep_empty: bool = False
            ) -> tuple[bytes | None, int | None]:
        out = filter_batch(read_batch_header(raw), raw, m, now_ms=now, delete_retention_ms=DAY,
                           keep_empty=keep_empty, marker_discardable=discardable)
        return out.data, out.horizon

    assert run(marker, now=0, discardable=False) == (marker, None)
    stamped, horizon = run(marker, now=5000)
    assert stamped is not None and horizon == 5000 + DAY
    h = read_batch_header(stamped)
    assert h.attributes & DELETE_HORIZON_BIT and h.base_timestamp == 5000 + DAY
    assert (h.base_offset, h.is_control, h.producer_id) == (40, True, 7)
    assert parse_marker(h, stamped) == EndTxnMarker(False, 1)  # still readable
    assert run(stamped, now=5000 + DAY - 1) == (stamped, 5000 + DAY)
    assert run(stamped, now=5000 + DAY) == (None, None)
    empty, _ = run(stamped, now=5000 + DAY, keep_empty=True)
    assert empty is not None
    e = read_batch_header(empty)
    assert (e.records_count, e.base_offset, e.is_control, e.producer_epoch) == (0, 40, True, 0)
    assert header.records_count == 1


def test_aborted_batches_go_whole_or_stay_empty_as_a_producers_last() -> None:
    raw = txn_keyed(7, 4, [(b"a", b"1"), (b"b", b"2")])
    m = full_map((b"a", 0), (b"b", 1), latest=50)
    out = filter_batch(read_batch_header(raw), raw, m, now_ms=0, delete_retention_ms=DAY,
                       keep_empty=False, aborted=True)
    assert (out.data, out.removed) == (None, 2)
    out = filter_batch(read_batch_header(raw), raw, m, now_ms=0, delete_retention_ms=DAY,
                       keep_empty=True, aborted=True)
    assert out.data is not None
    h, records = decode_batch(out.data)
    assert records == [] and (h.producer_id, h.base_sequence, h.is_transactional) == (7, 4, True)


def test_the_cleaner_stops_at_the_last_stable_offset(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock)
    write(log, [(b"k", b"v%d" % i) for i in range(10)])  # 0-9
    log.append(txn_keyed(7, 0, [(b"k", b"open")]), leader_epoch=0)  # 10: never decided
    write(log, [(b"k", b"w%d" % i) for i in range(20)])  # 11-30
    assert log.last_stable_offset == 10
    assert log.dirtiness().first_uncleanable == 10
    clean(log, clock)
    assert [o for o, _, _ in read_records(log)] == [9, *range(10, 31)]
    assert log.cleaner_point == 10


def transactional_history(log: PartitionLog) -> None:
    write(log, [(b"a", b"committed")])  # 0
    log.append(txn_keyed(7, 0, [(b"a", b"aborted"), (b"b", b"aborted")]), leader_epoch=0)  # 1-2
    log.append(txn_keyed(8, 0, [(b"c", b"kept")]), leader_epoch=0)  # 3
    assert end_txn(log, 7, commit=False) == 4
    assert end_txn(log, 8, commit=True) == 5
    # Both producers write again, so the transactional batches are not their last.
    log.append(keyed([(b"d", b"later")], pid=7, seq=2), leader_epoch=0)  # 6
    log.append(keyed([(b"e", b"later")], pid=8, seq=1), leader_epoch=0)  # 7
    write(log, [(b"z%d" % (i % 3), b"%d" % i) for i in range(30)])  # 8-37


def test_aborted_records_go_and_markers_follow_their_data(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock, delete_retention_ms=1000)
    transactional_history(log)
    assert log.aborted_transactions(0, 8) == [AbortedTxn(7, 1, 4, 3)]
    clean(log, clock)
    got = batches(log)
    data = {o: recs for o, control, _, recs in got if not control}
    # The aborted batch is gone; the committed key a (offset 0) is not made obsolete by it.
    assert 1 not in data and data[0] == [(b"a", b"committed")] and data[3] == [(b"c", b"kept")]
    markers = {o: attrs for o, control, attrs, _ in got if control}
    # This pass saw the transactions' batches: both markers stay as they were, and the
    # cleaned segment's index keeps the abort.
    assert set(markers) == {4, 5} and not any(a & DELETE_HORIZON_BIT for a in markers.values())
    assert log.aborted_transactions(0, 8) == [AbortedTxn(7, 1, 4, 3)]
    # The next pass finds no batch of the aborted transaction: the abort gets a horizon and
    # leaves the index; the commit stays while its data does.
    clean(log, clock, horizon_only=True)
    markers = {o: attrs for o, control, attrs, _ in batches(log) if control}
    assert markers[4] & DELETE_HORIZON_BIT and not markers[5] & DELETE_HORIZON_BIT
    assert log.aborted_transactions(0, 8) == []
    assert log.min_delete_horizon == clock() + 1000
    clock.advance(1000)
    clean(log, clock, horizon_only=True)
    assert [o for o, control, _, _ in batches(log) if control] == [5]
    # Offsets never moved, and it all survives a restart.
    got = batches(log)
    log.close()
    log = compacted_log(tmp_path / "t-0", clock, delete_retention_ms=1000)
    assert batches(log) == got


def test_a_cleaned_abort_keeps_its_index_entry_across_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted_log(tmp_path / "t-0", clock)
    log.append(txn_keyed(7, 0, [(b"a", b"x")]), leader_epoch=0)  # 0
    end_txn(log, 7, commit=False)  # 1: P7's last data batch stays, empty, and so the marker
    write(log, [(b"z%d" % (i % 3), b"%d" % i) for i in range(30)])
    clean(log, clock)
    got = batches(log)
    assert got[0][:2] == (0, False) and got[0][3] == []
    assert got[1][:2] == (1, True)
    assert log.aborted_transactions(0, 2) == [AbortedTxn(7, 0, 1, 2)]
    log.close()
    log = compacted_log(tmp_path / "t-0", clock)
    assert log.aborted_transactions(0, 2) == [AbortedTxn(7, 0, 1, 2)]
    assert log.producer_state.entry(7).last_seq == 0

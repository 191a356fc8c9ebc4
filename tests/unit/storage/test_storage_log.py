from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from odradek.storage import (
    Compression,
    CorruptRecordError,
    EpochEntry,
    InvalidConfigError,
    InvalidRecordError,
    LogConfig,
    LogOfflineError,
    OffsetOutOfRangeError,
    OffsetOutOfSequenceError,
    PartitionLog,
    Record,
    RecordBatchTooLargeError,
    RecordTooLargeError,
    TimestampType,
    UnsupportedMagicError,
    decode_batches,
    encode_batch,
    parse_batches,
)
from tests.unit.storage.storage_testlib import Clock, crash, make_batch, open_log, read_all


def test_offsets_are_assigned_across_batches_and_survive_reopen(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    r1 = log.append(make_batch(3), leader_epoch=0)
    assert (r1.base_offset, r1.last_offset, r1.record_count) == (0, 2, 3)
    assert r1.log_append_time_ms == -1 and not r1.duplicate and r1.log_start_offset == 0
    r2 = log.append(make_batch(2) + make_batch(4), leader_epoch=0)
    assert (r2.base_offset, r2.last_offset, r2.record_count) == (3, 8, 6)
    assert log.log_end_offset == 9
    batches = parse_batches(log.read(0, 10_000).records)
    assert [(b.base_offset, b.last_offset) for b in batches] == [(0, 2), (3, 4), (5, 8)]
    assert all(b.partition_leader_epoch == 0 for b in batches)
    log.close()
    assert (tmp_path / "t-0" / "clean-shutdown").exists()

    log = open_log(tmp_path / "t-0")
    assert not (tmp_path / "t-0" / "clean-shutdown").exists()
    assert log.log_end_offset == 9
    assert log.append(make_batch(1), leader_epoch=2).base_offset == 9
    assert [o for o, _ in read_all(log)] == list(range(10))
    assert log.leader_epochs.entries == (EpochEntry(0, 0), EpochEntry(2, 9))
    log.close()


def test_log_append_time(tmp_path: Path) -> None:
    clock = Clock(777_000)
    log = open_log(tmp_path / "t-0", clock, message_timestamp_type="LogAppendTime")
    result = log.append(make_batch(2, ts=5), leader_epoch=0)
    assert result.log_append_time_ms == 777_000
    ((header, records),) = decode_batches(log.read(0, 1000).records)
    assert header.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert [r.timestamp for r in records] == [777_000, 777_000]
    assert log.offset_for_timestamp(777_000) == (0, 777_000)


def test_append_validation_leaves_the_log_untouched(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", max_message_bytes=500, segment_bytes=700)
    log.append(make_batch(1), leader_epoch=0)
    with pytest.raises(CorruptRecordError, match="empty record set"):
        log.append(b"", leader_epoch=0)
    with pytest.raises(RecordTooLargeError, match="exceeds max.message.bytes 500"):
        log.append(make_batch([b"x" * 600]), leader_epoch=0)
    bad = bytearray(make_batch(2))
    bad[-3] ^= 1
    with pytest.raises(CorruptRecordError, match="CRC mismatch"):
        log.append(make_batch(1) + bytes(bad), leader_epoch=0)
    legacy = bytearray(make_batch(1))
    legacy[16] = 1
    with pytest.raises(UnsupportedMagicError):
        log.append(bytes(legacy), leader_epoch=0)
    with pytest.raises(InvalidRecordError, match="control"):
        log.append(encode_batch([Record(0)], is_control=True), leader_epoch=0)
    with pytest.raises(InvalidRecordError, match="no records"):
        log.append(encode_batch([]), leader_epoch=0)
    with pytest.raises(InvalidRecordError, match="spans 3 offsets"):
        log.append(encode_batch([Record(0), Record(2)]), leader_epoch=0)
    with pytest.raises(InvalidRecordError, match="no sequence"):
        log.append(make_batch(1, pid=5, epoch=0, seq=-1), leader_epoch=0)
    assert log.log_end_offset == 1 and len(log.segments) == 1
    big = PartitionLog.open(tmp_path / "t-1", LogConfig(segment_bytes=100, max_message_bytes=500))
    with pytest.raises(RecordBatchTooLargeError, match="segment.bytes 100"):
        big.append(make_batch([b"y" * 200]), leader_epoch=0)


def test_roll_by_size(tmp_path: Path) -> None:
    one = len(make_batch(1))
    log = open_log(tmp_path / "t-0", segment_bytes=3 * one)
    for _ in range(10):
        log.append(make_batch(1), leader_epoch=0)
    segs = log.segments
    assert [s.base_offset for s in segs] == [0, 3, 6, 9]
    assert all(s.size_bytes <= 3 * one for s in segs)
    assert [s.next_offset for s in segs] == [3, 6, 9, 10]
    names = sorted(p.name for p in (tmp_path / "t-0").glob("*.log"))
    assert names[1] == "00000000000000000003.log"
    assert log.size_bytes == 10 * one
    # A multi-batch append bigger than a segment is split at batch boundaries.
    log.append(b"".join(make_batch(1) for _ in range(7)), leader_epoch=0)
    assert all(s.size_bytes <= 3 * one for s in log.segments)
    assert [o for o, _ in read_all(log)] == list(range(17))


def test_roll_by_time_with_injected_clock(tmp_path: Path) -> None:
    clock = Clock()
    log = open_log(tmp_path / "t-0", clock, segment_ms=1000)
    log.append(make_batch(1), leader_epoch=0)
    clock.advance(1000)
    log.append(make_batch(1), leader_epoch=0)
    assert len(log.segments) == 1
    clock.advance(1)
    log.append(make_batch(1), leader_epoch=0)
    assert [s.base_offset for s in log.segments] == [0, 2]
    clock.advance(500)
    log.append(make_batch(1), leader_epoch=0)
    assert len(log.segments) == 2
    log.close()
    # After a reopen the age counts from the first batch's timestamp (or now).
    log = open_log(tmp_path / "t-0", clock, segment_ms=1000)
    clock.advance(600)
    log.append(make_batch(1), leader_epoch=0)
    assert [s.base_offset for s in log.segments] == [0, 2, 4]


def test_roll_when_index_is_full(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", index_interval_bytes=0, segment_index_bytes=24)
    for _ in range(8):
        log.append(make_batch(1), leader_epoch=0)
    # 24 bytes hold 3 offset entries (2 time entries); the first batch is never indexed.
    assert len(log.segments) > 1
    assert [o for o, _ in read_all(log)] == list(range(8))


def _log_with_batches(path: Path, sizes: list[int], **config: object) -> PartitionLog:
    log = open_log(path, **config)
    for n in sizes:
        log.append(make_batch(n), leader_epoch=0)
    return log


def test_read_returns_whole_batches_within_max_bytes(tmp_path: Path) -> None:
    log = _log_with_batches(tmp_path / "t-0", [1] * 6)
    one = len(make_batch(1))
    r = log.read(0, 2 * one + one // 2)
    assert len(r.records) == 2 * one and (r.first_batch_offset, r.next_offset) == (0, 2)
    r = log.read(2, 3 * one)
    assert len(r.records) == 3 * one and r.next_offset == 5
    # Smaller than a batch: still one batch with min_one_batch, nothing without.
    r = log.read(1, 10)
    assert len(r.records) == one and r.next_offset == 2
    r = log.read(1, 10, min_one_batch=False)
    assert (r.records, r.first_batch_offset, r.next_offset) == (b"", -1, 1)
    r = log.read(0, 0)
    assert len(r.records) == one


def test_read_honours_max_offset(tmp_path: Path) -> None:
    log = _log_with_batches(tmp_path / "t-0", [2, 2, 2])
    r = log.read(0, 10_000, max_offset=4)
    assert [b.base_offset for b in parse_batches(r.records)] == [0, 2] and r.next_offset == 4
    # A batch reaching max_offset is left out entirely.
    r = log.read(0, 10_000, max_offset=3)
    assert [b.base_offset for b in parse_batches(r.records)] == [0]
    assert log.read(4, 10_000, max_offset=4).records == b""
    assert log.read(0, 10_000, max_offset=0).records == b""
    # min_one_batch never crosses max_offset.
    assert log.read(2, 1, max_offset=3).records == b""


def test_read_from_the_middle_of_a_batch(tmp_path: Path) -> None:
    log = _log_with_batches(tmp_path / "t-0", [3, 5, 2])
    r = log.read(6, 10_000)
    assert r.first_batch_offset == 3 and r.next_offset == 10
    assert [b.base_offset for b in parse_batches(r.records)] == [3, 8]


def test_read_out_of_range_and_at_end(tmp_path: Path) -> None:
    log = _log_with_batches(tmp_path / "t-0", [2, 2])
    with pytest.raises(OffsetOutOfRangeError, match="log start offset 0, log end offset 4"):
        log.read(5, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100)
    r = log.read(4, 100)
    assert (r.records, r.next_offset) == (b"", 4)


def test_read_every_offset_through_the_index(tmp_path: Path) -> None:
    sizes = [1, 3, 2, 7, 1, 1, 4, 2] * 6
    log = _log_with_batches(tmp_path / "t-0", sizes, index_interval_bytes=150, segment_bytes=4000)
    assert len(log.segments) > 1
    starts = []
    offset = 0
    for n in sizes:
        starts.append(offset)
        offset += n
    for target in range(offset):
        expected = max(s for s in starts if s <= target)
        r = log.read(target, 1)
        assert r.first_batch_offset == expected, target
    log.close()
    log = open_log(tmp_path / "t-0", index_interval_bytes=150, segment_bytes=4000)
    assert log.read(offset - 1, 1).first_batch_offset == starts[-1]


def test_offset_for_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", index_interval_bytes=100, segment_bytes=400)
    stamps = [100, 300, 200, 200, 500, 400, 900, 600, 700, 800, 50, 1000]
    for ts in stamps:  # one record per batch, out of order on purpose
        log.append(make_batch(1, ts=ts), leader_epoch=0)
    log.append(make_batch(3, ts=1100), leader_epoch=0)  # records at 1100, 1101, 1102
    assert len(log.segments) > 2

    def brute(target: int) -> tuple[int, int] | None:
        everything = list(enumerate(stamps)) + [(12, 1100), (13, 1101), (14, 1102)]
        hits = [(o, t) for o, t in everything if t >= target and o >= log.log_start_offset]
        return hits[0] if hits else None

    for target in [0, 50, 100, 101, 200, 250, 450, 600, 850, 1000, 1001, 1101, 1102, 1103]:
        assert log.offset_for_timestamp(target) == brute(target), target
    log.high_watermark = log.log_end_offset
    log.delete_records(5)
    for target in [0, 200, 950]:
        assert log.offset_for_timestamp(target) == brute(target), target
    assert log.max_timestamp_offset() == (14, 1102)


def test_max_timestamp_offset(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=200)
    assert log.max_timestamp_offset() is None
    for ts in [10, 90, 30, 90, 20]:
        log.append(make_batch(1, ts=ts), leader_epoch=0)
    assert log.max_timestamp_offset() == (1, 90)
    log.high_watermark = 5
    log.delete_records(2)
    assert log.max_timestamp_offset() == (3, 90)


def test_retention_by_time(tmp_path: Path) -> None:
    clock = Clock(10_000)
    one = len(make_batch(1))
    log = open_log(tmp_path / "t-0", clock, segment_bytes=2 * one, retention_ms=1000)
    for ts in [1000, 2000, 5000, 6000, 9000, 9500]:
        log.append(make_batch(1, ts=ts), leader_epoch=0)
    assert [s.base_offset for s in log.segments] == [0, 2, 4]
    # Nothing is deleted above the high watermark.
    assert log.enforce_retention(clock()) == 0
    log.high_watermark = log.log_end_offset
    assert log.enforce_retention(clock()) == 2  # max timestamps 2000 and 6000 expired
    assert log.log_start_offset == 4
    assert not (tmp_path / "t-0" / "00000000000000000000.log").exists()
    assert not list((tmp_path / "t-0").glob("*.deleted"))
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1, 100)
    # The active segment expires too: it is rolled, then deleted.
    clock.advance(100_000)
    assert log.enforce_retention(clock()) == 1
    assert log.log_start_offset == log.log_end_offset == 6
    assert [s.base_offset for s in log.segments] == [6]
    assert log.enforce_retention(clock()) == 0  # the empty active segment stays
    assert log.append(make_batch(1, ts=clock()), leader_epoch=0).base_offset == 6
    log.close()
    log = open_log(tmp_path / "t-0", clock)
    assert (log.log_start_offset, log.log_end_offset) == (6, 7)


def test_retention_by_size(tmp_path: Path) -> None:
    one = len(make_batch(1))
    log = open_log(tmp_path / "t-0", segment_bytes=2 * one, retention_bytes=3 * one)
    for _ in range(7):
        log.append(make_batch(1), leader_epoch=0)
    log.high_watermark = 7
    # 7 batches: deleting a 2-batch segment must leave >= 3 batches.
    assert log.enforce_retention(0) == 2
    assert log.log_start_offset == 4 and log.size_bytes == 3 * one
    assert log.enforce_retention(0) == 0


def test_compact_only_policy_is_not_retained_by_time(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=200, retention_ms=0, cleanup_policy="compact")
    for _ in range(5):
        log.append(make_batch(1, ts=1, key=b"k"), leader_epoch=0)
    log.high_watermark = 5
    assert log.enforce_retention(10**12) == 0


def test_compacted_log_refuses_records_without_a_key(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", cleanup_policy="compact")
    with pytest.raises(InvalidRecordError, match="without a key"):
        log.append(make_batch(2), leader_epoch=0)
    assert log.log_end_offset == 0
    log.append(make_batch(2, key=b"k"), leader_epoch=0)
    # Replicated batches were checked by their leader.
    log.append_as_follower(make_batch(1, base_offset=2))
    assert log.log_end_offset == 3


def test_delete_records(tmp_path: Path) -> None:
    one = len(make_batch(1))
    log = open_log(tmp_path / "t-0", segment_bytes=2 * one)
    for _ in range(7):
        log.append(make_batch(1), leader_epoch=0)
    with pytest.raises(OffsetOutOfRangeError, match="above the high watermark 0"):
        log.delete_records(3)
    log.high_watermark = 6
    assert log.delete_records(3) == 3
    assert [s.base_offset for s in log.segments] == [2, 4, 6]
    assert log.delete_records(1) == 3  # never moves back
    with pytest.raises(OffsetOutOfRangeError, match="log start offset 3"):
        log.read(2, 100)
    assert log.read(3, 100).first_batch_offset == 3
    assert [o for o, _ in read_all(log)] == [3, 4, 5, 6]
    assert log.delete_records(-1) == 6  # -1: up to the high watermark
    crash(log)
    log = open_log(tmp_path / "t-0", segment_bytes=2 * one)
    assert log.log_start_offset == 6
    assert log.high_watermark == 6


def test_truncate_to(tmp_path: Path) -> None:
    one = len(make_batch(2))
    log = open_log(tmp_path / "t-0", segment_bytes=2 * one)
    for epoch in [1, 1, 2, 2, 3]:
        log.append(make_batch(2), leader_epoch=epoch)
    assert log.log_end_offset == 10
    log.high_watermark = 9
    assert not log.truncate_to(10)
    assert log.truncate_to(7)  # mid-batch: the whole batch [6, 7] goes
    assert log.log_end_offset == 6 and log.high_watermark == 6
    assert [s.base_offset for s in log.segments] == [0, 4]
    assert log.leader_epochs.entries == (EpochEntry(1, 0), EpochEntry(2, 4))
    assert log.truncate_to(4)  # exactly a segment base: that segment becomes empty
    assert [s.base_offset for s in log.segments] == [0, 4]
    assert log.log_end_offset == 4 and log.leader_epochs.latest_epoch == 1
    assert log.append(make_batch(1), leader_epoch=5).base_offset == 4
    assert [o for o, _ in read_all(log)] == [0, 1, 2, 3, 4]
    log.close()
    log = open_log(tmp_path / "t-0", segment_bytes=2 * one)
    assert log.log_end_offset == 5
    assert log.leader_epochs.entries == (EpochEntry(1, 0), EpochEntry(5, 4))


def test_truncate_below_log_start_and_fully(tmp_path: Path) -> None:
    log = _log_with_batches(tmp_path / "t-0", [2, 2, 2], segment_bytes=300)
    log.high_watermark = 6
    log.delete_records(4)
    assert log.truncate_to(2)  # below the log start: start over at 2
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (2, 2, 2)
    assert log.append(make_batch(1), leader_epoch=0).base_offset == 2
    log.truncate_fully_and_start_at(100)
    assert (log.log_start_offset, log.log_end_offset) == (100, 100)
    assert [s.base_offset for s in log.segments] == [100]
    assert log.leader_epochs.entries == ()
    log.append(make_batch(1), leader_epoch=0)
    log.close()
    log = open_log(tmp_path / "t-0")
    assert (log.log_start_offset, log.log_end_offset) == (100, 101)


def test_follower_append(tmp_path: Path) -> None:
    one = len(make_batch(1))
    log = open_log(tmp_path / "t-0", segment_bytes=3 * one)
    data = b"".join(make_batch(1, base_offset=i, leader_epoch=1 if i < 4 else 3) for i in range(8))
    result = log.append_as_follower(data)
    assert (result.base_offset, result.last_offset, result.record_count) == (0, 7, 8)
    assert all(s.size_bytes <= 3 * one for s in log.segments)
    assert log.leader_epochs.entries == (EpochEntry(1, 0), EpochEntry(3, 4))
    with pytest.raises(OffsetOutOfSequenceError, match="starts at offset 7"):
        log.append_as_follower(make_batch(1, base_offset=7))
    with pytest.raises(OffsetOutOfSequenceError, match="does not follow"):
        log.append_as_follower(make_batch(2, base_offset=8) + make_batch(1, base_offset=9))
    # Batches keep the leader's bytes exactly.
    assert log.read(0, 1000).records[:one] == make_batch(1, base_offset=0, leader_epoch=1)
    assert log.log_end_offset == 8
    # After the log end: the leader's cleaner removed offset 8 (a compacted topic).
    log.append_as_follower(make_batch(1, base_offset=9))
    assert log.log_end_offset == 10
    assert log.read(8, 1000).first_batch_offset == 9


def test_high_watermark_is_clamped_and_persisted(tmp_path: Path) -> None:
    log = _log_with_batches(tmp_path / "t-0", [1] * 5)
    log.high_watermark = 99
    assert log.high_watermark == 5
    log.high_watermark = -3
    assert log.high_watermark == 0
    log.high_watermark = 3
    log.flush()
    assert (tmp_path / "t-0" / "high-watermark-checkpoint").read_text() == "0\n3\n"
    log.high_watermark = 4
    log.checkpoint_high_watermark()
    crash(log)
    log = open_log(tmp_path / "t-0")
    assert log.high_watermark == 4
    log.truncate_to(2)
    log.close()
    (tmp_path / "t-0" / "high-watermark-checkpoint").write_text("0\n1000\n")
    assert open_log(tmp_path / "t-0").high_watermark == 2


def test_flush_policy(tmp_path: Path) -> None:
    clock = Clock()
    log = open_log(tmp_path / "t-0", clock, flush_messages=5, flush_ms=1000)
    log.append(make_batch(3), leader_epoch=0)
    assert log.unflushed_messages == 3 and log.recovery_point == 0
    log.append(make_batch(2), leader_epoch=0)
    assert log.unflushed_messages == 0 and log.recovery_point == 5
    log.append(make_batch(1), leader_epoch=0)
    assert not log.maybe_flush(clock.now + 999)
    assert log.maybe_flush(clock.now + 1000)
    assert log.unflushed_messages == 0
    assert (tmp_path / "t-0" / "recovery-point-checkpoint").read_text() == "0\n6\n"
    assert not log.maybe_flush(clock.now + 5000)  # nothing pending


def test_config_from_kafka_configs() -> None:
    cfg = LogConfig.from_kafka_configs(
        {
            "segment.bytes": "1048576",
            "retention.ms": "-1",
            "retention.bytes": "1000",
            "message.timestamp.type": "LogAppendTime",
            "cleanup.policy": "compact, delete",
            "min.insync.replicas": "2",  # a topic config the log does not use
        }
    )
    assert cfg.segment_bytes == 1048576 and cfg.retention_ms == -1
    assert cfg.log_append_time and cfg.deletes_by_retention
    assert cfg.cleanup_policy == "compact,delete"
    assert LogConfig.from_kafka_configs(cfg.to_kafka_configs()) == cfg
    assert LogConfig.from_kafka_configs({"flush.ms": "5"}, base=cfg).flush_ms == 5
    assert LogConfig().max_message_bytes == 1048588


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("segment.bytes", "ten", r"invalid value 'ten' for segment.bytes: expected an integer"),
        ("segment.bytes", "10", r"segment.bytes: expected an integer in \[14, 2147483647\]"),
        ("retention.ms", "-2", "retention.ms"),
        ("flush.messages", "0", "flush.messages"),
        ("message.timestamp.type", "Now", "CreateTime, LogAppendTime"),
        ("cleanup.policy", "forever", "cleanup.policy"),
        ("segment.byte", "1", "unknown topic config 'segment.byte'"),
    ],
)
def test_config_validation(key: str, value: str, message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        LogConfig.from_kafka_configs({key: value})


def test_closed_and_deleted(tmp_path: Path) -> None:
    log = _log_with_batches(tmp_path / "t-0", [1])
    log.close()
    log.close()  # idempotent
    assert log.offline
    with pytest.raises(LogOfflineError, match="closed"):
        log.append(make_batch(1), leader_epoch=0)
    log = open_log(tmp_path / "t-0")
    log.close_for_delete()  # topic deletion: closed without a clean marker or a flush
    assert log.offline and not (tmp_path / "t-0" / "clean-shutdown").exists()


def test_compressed_batches_are_stored_as_received(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    for codec in Compression:
        log.append(make_batch([b"z" * 300] * 4, compression=codec), leader_epoch=0)
    assert [v for _, v in read_all(log)] == [b"z" * 300] * 20
    codecs = [h.compression for h in parse_batches(log.read(0, 1 << 20).records)]
    assert codecs == list(Compression)


def test_files_on_disk(tmp_path: Path) -> None:
    log = _log_with_batches(tmp_path / "t-0", [1, 1], index_interval_bytes=0)
    log.close()
    d = tmp_path / "t-0"
    names = sorted(os.listdir(d))
    assert names == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
        "00000000000000000000.txnindex",  # empty: no transaction aborted
        "00000000000000000002.snapshot",  # producer state at the close
        "clean-shutdown",
        "high-watermark-checkpoint",
        "leader-epoch-checkpoint",
        "recovery-point-checkpoint",  # no log-start-offset-checkpoint: absent means 0
    ]
    index = (d / "00000000000000000000.index").read_bytes()
    assert struct.unpack(">II", index) == (1, len(make_batch(1)))
    assert (d / "00000000000000000000.txnindex").read_bytes() == b""


def test_one_write_per_append_and_preads_for_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path / "t-0", index_interval_bytes=0)
    log.append(make_batch(1), leader_epoch=0)
    calls: list[str] = []
    real_write, real_pread = os.write, os.pread

    def write(fd: int, data: bytes) -> int:
        calls.append("write")
        return real_write(fd, data)

    def pread(fd: int, n: int, pos: int) -> bytes:
        calls.append("pread")
        return real_pread(fd, n, pos)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "pread", pread)
    log.append(make_batch(2) + make_batch(3) + make_batch(1), leader_epoch=0)
    assert calls == ["write"]
    calls.clear()
    log.read(3, 10_000)
    assert set(calls) == {"pread"}


def test_batches_without_timestamps(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", index_interval_bytes=0, segment_bytes=300)
    for _ in range(6):
        log.append(make_batch(2, ts=-1), leader_epoch=0)
    assert log.offset_for_timestamp(1) is None  # records at -1 and 0
    log.close()
    log = open_log(tmp_path / "t-0", index_interval_bytes=0, segment_bytes=300)
    assert [o for o, _ in read_all(log)] == list(range(12))


def test_truncation_reactivates_an_old_segment(tmp_path: Path) -> None:
    clock = Clock()
    one = len(make_batch(1))
    log = open_log(tmp_path / "t-0", clock, segment_bytes=2 * one, segment_ms=1000)
    for _ in range(4):
        log.append(make_batch(1, ts=clock()), leader_epoch=0)
    log.close()
    log = open_log(tmp_path / "t-0", clock, segment_bytes=2 * one, segment_ms=1000)
    log.truncate_to(1)
    assert [s.base_offset for s in log.segments] == [0]
    clock.advance(1001)
    log.append(make_batch(1, ts=clock()), leader_epoch=0)
    assert [s.base_offset for s in log.segments] == [0, 1]


def test_truncate_at_the_log_end_drops_an_epoch_that_holds_no_record(tmp_path: Path) -> None:
    # A replica led epoch 1 without writing, then follows a leader whose log agrees up to
    # its end: truncating "to the end" must still forget epoch 1 (Kafka does the same).
    from odradek.storage import LogConfig, PartitionLog
    from odradek.storage.records import Record, encode_batch

    log = PartitionLog.open(tmp_path / "p", LogConfig())
    log.append(encode_batch([Record(0, value=b"a")]), leader_epoch=0)
    log.leader_epochs.assign(1, log.log_end_offset)
    assert log.leader_epochs.latest_epoch == 1
    assert log.truncate_to(log.log_end_offset) is False
    assert log.leader_epochs.latest_epoch == 0
    log.close()


def test_a_follower_write_over_several_segments_indexes_aborts_where_their_markers_are(
        tmp_path: Path) -> None:
    from odradek.storage import AbortedTxn, AppendOrigin, encode_marker_batch
    from tests.unit.storage.storage_testlib import txn_batch

    leader = open_log(tmp_path / "leader")
    leader.append(txn_batch(5, 0, 3), leader_epoch=0)  # 0-2
    for _ in range(6):
        leader.append(make_batch(2), leader_epoch=0)  # 3-14
    leader.append(encode_marker_batch(5, 0, 1, False, 0), leader_epoch=0,
                  origin=AppendOrigin.COORDINATOR)  # 15
    follower = open_log(tmp_path / "follower", segment_bytes=300)
    follower.append_as_follower(leader.read(0, 1 << 20).records)
    bases = [s.base_offset for s in follower.segments]
    assert len(bases) > 2
    holder = max(b for b in bases if b <= 15)
    assert follower.aborted_transactions(0, 16) == [AbortedTxn(5, 0, 15, 16)]
    found = [(seg.base_offset, t.last_offset)
             for seg in follower._segments for t in seg.txn_index.entries]
    assert found == [(holder, 15)]

"""Helpers shared by the storage tests (a plain module: tests/ has no packages)."""

from __future__ import annotations

from pathlib import Path

from odradek.storage import (
    Compression,
    LogConfig,
    PartitionLog,
    Record,
    decode_batches,
    encode_batch,
)


class Clock:
    """Injected wall clock in ms, advanced by hand."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def make_batch(
    values: list[bytes] | int = 1,
    *,
    ts: int = 1_000_000,
    pid: int = -1,
    epoch: int = -1,
    seq: int = -1,
    compression: Compression = Compression.NONE,
    base_offset: int = 0,
    leader_epoch: int = -1,
    key: bytes | None = None,
) -> bytes:
    if isinstance(values, int):
        values = [f"v{i}".encode() for i in range(values)]
    records = [Record(i, i, key, v) for i, v in enumerate(values)]
    return encode_batch(
        records,
        base_offset=base_offset,
        compression=compression,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        partition_leader_epoch=leader_epoch,
        timestamp_ms=ts,
    )


def open_log(path: Path, clock: Clock | None = None, **config: object) -> PartitionLog:
    return PartitionLog.open(path, LogConfig(**config), now_ms=clock or Clock())  # type: ignore[arg-type]


def read_all(log: PartitionLog, start: int | None = None) -> list[tuple[int, bytes | None]]:
    """Every (offset, value) from ``start`` (default: log start) to the log end."""
    out: list[tuple[int, bytes | None]] = []
    offset = log.log_start_offset if start is None else start
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 20)
        assert result.records, f"no progress at {offset}"
        for _, records in decode_batches(result.records):
            out.extend((r.offset, r.value) for r in records if r.offset >= offset)
        offset = result.next_offset
    return out


def crash(log: PartitionLog) -> None:
    """Drop a log like a killed process would: files closed, nothing flushed or marked."""
    log._release()


def read_records(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every (offset, key, value) from the log start to the log end, across the gaps a
    compacted log has."""
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        r = log.read(offset, 1 << 20)
        if not r.records:
            break
        for _, records in decode_batches(r.records):
            out.extend((x.offset, x.key, x.value) for x in records)
        offset = r.next_offset
    return out


def txn_batch(pid: int, seq: int, n: int = 2, *, epoch: int = 0, key: bytes = b"k",
              value: bytes = b"v", ts: int = 1_000_000) -> bytes:
    """A transactional batch of ``n`` records by producer ``pid``."""
    return encode_batch([Record(i, i, key, value) for i in range(n)], producer_id=pid,
                        producer_epoch=epoch, base_sequence=seq, is_transactional=True,
                        timestamp_ms=ts)


def end_txn(log: PartitionLog, pid: int, *, commit: bool, epoch: int = 0,
            coordinator_epoch: int = 0, ts: int = 1_000_000) -> int:
    """Write a transaction marker as the transaction coordinator does; returns its offset."""
    from odradek.storage import AppendOrigin, encode_marker_batch

    marker = encode_marker_batch(pid, epoch, coordinator_epoch, commit, ts)
    return log.append(marker, leader_epoch=0, origin=AppendOrigin.COORDINATOR).base_offset

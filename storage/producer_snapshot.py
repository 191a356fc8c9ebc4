"""Producer-state snapshots: ``<offset, 20 digits>.snapshot``, the producer state of the log
below ``offset`` (Kafka's ProducerStateManager snapshot files).

Without them a log rebuilds producer state by reading every batch header at open, and even
that cannot recover what retention deleted: the first offset of a transaction that began
in a deleted segment, or the sequences of a producer whose last batches went. The partition
log writes one when it rolls a segment (at the new base offset), when it closes cleanly (at
the log end), and when retention forgets a producer (at the log end, after a flush), and
loads the newest one it can use on open and after truncation, replaying the batches after
it (storage/log.py says which and why).

Layout, big-endian. The frame is Kafka's (version int16, then the CRC-32C of everything after
the CRC field); the body is ours, because Kafka's keeps one batch per producer and we keep
the five a retrying producer may resend, the offset of its last marker, and the completed
transactions whose markers are not yet replicated (the last stable offset waits for them)::

    version int16 = 1 | crc uint32 | flags int8 (bit 0: written because retention forgot a
    producer; the log keeps such a snapshot longer, see storage/log.py)
    producer count int32, then per producer:
        producer_id int64 | epoch int16 | coordinator_epoch int32 |
        current_txn_first_offset int64 (-1: none) | last_offset int64 (data or marker) |
        last_timestamp int64 | batch count int8, then per batch (oldest first):
            first_seq int32 | last_seq int32 | first_offset int64 | last_offset int64 |
            timestamp int64
    completed-transaction count int32, then per transaction:
        producer_id int64 | first_offset int64 | last_offset int64 | aborted int8

A file that is short, long, of another version or fails its CRC is corrupt: the log deletes
it and uses an older one or reads the batches instead, never a part of it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import crc32c

from odradek.storage.errors import SnapshotCorruptError
from odradek.storage.producer_state import BatchMetadata, CompletedTxn, ProducerEntry

SUFFIX = ".snapshot"
VERSION = 1

_HEADER = struct.Struct(">hI")
_FLAGS = struct.Struct(">b")
FLAG_FORGOT = 0x01
_COUNT = struct.Struct(">i")
_ENTRY = struct.Struct(">qhiqqqb")
_BATCH = struct.Struct(">iiqqq")
_TXN = struct.Struct(">qqqb")


def file_name(offset: int) -> str:
    return f"{offset:020d}{SUFFIX}"


def parse_file_name(name: str) -> int | None:
    stem, _, rest = name.partition(".")
    if "." + rest != SUFFIX or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


def list_offsets(directory: Path) -> list[int]:
    """Offsets of the snapshot files in ``directory``, ascending."""
    found = []
    for path in directory.iterdir():
        offset = parse_file_name(path.name)
        if offset is not None:
            found.append(offset)
    return sorted(found)


def encode(producers: Iterable[ProducerEntry], unreplicated: Iterable[CompletedTxn], *,
           forgot: bool = False) -> bytes:
    body = bytearray(_FLAGS.pack(FLAG_FORGOT if forgot else 0))
    entries = sorted(producers, key=lambda e: e.producer_id)
    body += _COUNT.pack(len(entries))
    for e in entries:
        txn = -1 if e.current_txn_first_offset is None else e.current_txn_first_offset
        body += _ENTRY.pack(e.producer_id, e.epoch, e.coordinator_epoch, txn, e.last_offset,
                            e.last_timestamp, len(e.batches))
        for b in e.batches:
            body += _BATCH.pack(b.first_seq, b.last_seq, b.first_offset, b.last_offset,
                                b.timestamp)
    txns = sorted(unreplicated, key=lambda t: t.first_offset)
    body += _COUNT.pack(len(txns))
    for t in txns:
        body += _TXN.pack(t.producer_id, t.first_offset, t.last_offset, int(t.is_aborted))
    return _HEADER.pack(VERSION, crc32c.crc32c(bytes(body))) + bytes(body)


def decode(data: bytes, what: str = "snapshot") -> tuple[list[ProducerEntry], list[CompletedTxn]]:
    """Raises SnapshotCorruptError unless ``data`` is a whole, intact snapshot."""
    if len(data) < _HEADER.size:
        raise SnapshotCorruptError(f"{what} has {len(data)} bytes, too short for a header")
    version, crc = _HEADER.unpack_from(data)
    if version != VERSION:
        raise SnapshotCorruptError(f"{what} has version {version}, expected {VERSION}")
    body = data[_HEADER.size:]
    computed = crc32c.crc32c(body)
    if computed != crc:
        raise SnapshotCorruptError(f"{what} fails its CRC: stored 0x{crc:08x}, computed "
                                   f"0x{computed:08x}")
    try:
        pos = _FLAGS.size
        (count,) = _COUNT.unpack_from(body, pos)
        pos += _COUNT.size
        if count < 0:
            raise SnapshotCorruptError(f"{what} has a negative producer count {count}")
        producers = []
        for _ in range(count):
            pid, epoch, coord, txn, last, ts, nbatches = _ENTRY.unpack_from(body, pos)
            pos += _ENTRY.size
            batches = []
            for _ in range(nbatches):
                batches.append(BatchMetadata(*_BATCH.unpack_from(body, pos)))
                pos += _BATCH.size
            producers.append(ProducerEntry(pid, epoch, batches, last, coord,
                                           None if txn < 0 else txn, ts))
        (count,) = _COUNT.unpack_from(body, pos)
        pos += _COUNT.size
        if count < 0:
            raise SnapshotCorruptError(f"{what} has a negative transaction count {count}")
        txns = []
        for _ in range(count):
            pid, first, last, aborted = _TXN.unpack_from(body, pos)
            pos += _TXN.size
            txns.append(CompletedTxn(pid, first, last, bool(aborted)))
    except struct.error as e:
        raise SnapshotCorruptError(f"{what} ends early: {e}") from e
    if pos != len(body):
        raise SnapshotCorruptError(f"{what} has {len(body) - pos} bytes after its entries")
    return producers, txns


def read_flags(path: Path) -> int:
    """The flags of a snapshot, unchecked (0 for a file too short to hold them): enough to
    decide whether to keep it; loading it checks everything."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER.size + _FLAGS.size)
    except OSError:
        return 0
    if len(head) < _HEADER.size + _FLAGS.size:
        return 0
    return int(_FLAGS.unpack_from(head, _HEADER.size)[0])


def read(path: Path) -> tuple[list[ProducerEntry], list[CompletedTxn]]:
    """Raises SnapshotCorruptError (also for an unreadable file) or FileNotFoundError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise SnapshotCorruptError(f"cannot read {path}: {e}") from e
    return decode(data, str(path))

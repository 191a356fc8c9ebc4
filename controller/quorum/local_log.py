"""The metadata log of a single-node cluster: one append-only file, fsynced per batch.

File layout, a sequence of batch frames (big-endian):

    u32 body length | u32 CRC32C of body | body
    body = i64 base offset | u32 record count | count x (u32 length | record bytes)

One frame holds all records of one controller operation, so a crash keeps all or none of
them: a half-applied operation (a topic without its partitions) can never be replayed. On open,
frames are checked in order and the file is cut at the first incomplete or corrupt one, which
after a crash is the batch whose append never returned.
"""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import logging
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import crc32c

from odradek.storage.checkpoint import fsync_dir

log = logging.getLogger(__name__)

LOG_FILE_NAME = "metadata.log"
_FRAME = struct.Struct(">II")
_BODY = struct.Struct(">qI")
_LEN = struct.Struct(">I")


class MetadataLogError(Exception):
    """The log cannot be used: another process holds it, or an earlier write failed."""


def _encode_frame(base_offset: int, records: Sequence[bytes]) -> bytes:
    parts = [_BODY.pack(base_offset, len(records))]
    for record in records:
        parts.append(_LEN.pack(len(record)))
        parts.append(record)
    body = b"".join(parts)
    return _FRAME.pack(len(body), crc32c.crc32c(body)) + body


def _decode_body(body: memoryview) -> tuple[int, list[bytes]] | None:
    """(base offset, records), or None when the body is not well-formed."""
    if len(body) < _BODY.size:
        return None
    base_offset, count = _BODY.unpack_from(body)
    records = []
    pos = _BODY.size
    for _ in range(count):
        if pos + _LEN.size > len(body):
            return None
        (length,) = _LEN.unpack_from(body, pos)
        pos += _LEN.size
        if pos + length > len(body):
            return None
        records.append(bytes(body[pos : pos + length]))
        pos += length
    if pos != len(body) or count == 0:
        return None
    return base_offset, records


def _scan(data: memoryview) -> Iterator[tuple[int, int, list[bytes]]]:
    """(file position, base offset, records) of each valid frame, stopping at the first bad
    one; frames must carry consecutive offsets from 0."""
    pos = 0
    next_offset = 0
    while pos + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + length
        if end > len(data):
            return
        body = data[pos + _FRAME.size : end]
        if crc32c.crc32c(body) != crc:
            return
        decoded = _decode_body(body)
        if decoded is None or decoded[0] != next_offset:
            return
        yield pos, decoded[0], decoded[1]
        next_offset += len(decoded[1])
        pos = end


class LocalMetadataLog:
    """MetadataLog over a file in `directory`; one process at a time (enforced by a lock)."""

    # The QuorumController replays what it appended: a file has no one else to do it.
    publishes_commits = False

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / LOG_FILE_NAME
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise MetadataLogError(
                f"{self.path} is in use by another process; stop it or use another data dir"
            ) from None
        if created:
            # The new file's directory entry must survive a crash too.
            fsync_dir(self.directory)
        # Base offset and file position of every batch, for read_from().
        self._bases: list[int] = []
        self._positions: list[int] = []
        self._next_offset = 0
        self._size = 0
        self._failure: BaseException | None = None
        self._append_lock = asyncio.Lock()
        self._recover()

    def _recover(self) -> None:
        with open(self._fd, "rb", closefd=False) as f:
            data = memoryview(f.read())
        end = 0
        for pos, base_offset, records in _scan(data):
            self._bases.append(base_offset)
            self._positions.append(pos)
            self._next_offset = base_offset + len(records)
            end = pos + _FRAME.size + _FRAME.unpack_from(data, pos)[0]
        if end < len(data):
            # Expected after a crash during an append that therefore never returned; anything
            # else (corruption in the middle) also loses the records after it, hence the warning.
            log.warning(
                "metadata log %s: dropping %d bytes after offset %d (torn or corrupt tail)",
                self.path,
                len(data) - end,
                self._next_offset - 1,
            )
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        self._size = end

    @property
    def next_offset(self) -> int:
        return self._next_offset

    async def append(self, records: Sequence[bytes]) -> int:
        if not records:
            raise ValueError("append needs at least one record")
        async with self._append_lock:
            # The blocking write and fsync run in a thread so the event loop keeps serving.
            return await asyncio.to_thread(self._append_sync, list(records))

    def _append_sync(self, records: list[bytes]) -> int:
        if self._failure is not None:
            raise MetadataLogError(
                f"metadata log {self.path} failed earlier ({self._failure}); restart the node"
            ) from self._failure
        frame = _encode_frame(self._next_offset, records)
        try:
            written = 0
            while written < len(frame):
                written += os.write(self._fd, frame[written:])
            os.fsync(self._fd)
        except BaseException as exc:
            # After a failed write or fsync the file's durable content is unknown; only a
            # reopen (recovery) can tell what survived.
            self._failure = exc
            raise
        self._bases.append(self._next_offset)
        self._positions.append(self._size)
        self._size += len(frame)
        self._next_offset += len(records)
        return self._next_offset - 1

    def read_from(self, offset: int) -> Iterator[tuple[int, bytes]]:
        index = max(bisect.bisect_right(self._bases, max(offset, 0)) - 1, 0)
        if index >= len(self._positions):
            return
        start, end = self._positions[index], self._size
        with open(self.path, "rb") as f:
            f.seek(start)
            data = memoryview(f.read(end - start))
        pos = 0
        while pos < len(data):
            length, _ = _FRAME.unpack_from(data, pos)
            decoded = _decode_body(data[pos + _FRAME.size : pos + _FRAME.size + length])
            assert decoded is not None, "frames were validated on open or written by us"
            base_offset, records = decoded
            for i, record in enumerate(records):
                if base_offset + i >= offset:
                    yield base_offset + i, record
            pos += _FRAME.size + length

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the flock
            self._fd = -1

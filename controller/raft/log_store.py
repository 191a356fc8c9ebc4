"""Durable, file-backed Raft storage for one controller node.

Layout of the directory::

    hardstate                    term, vote, commit; replaced atomically (tmp, fsync, rename)
    snapshot                     latest snapshot; replaced atomically
    log-<first index>.seg        append-only segments of framed entries

A segment starts with an 8-byte magic and holds records ``[u32 length][u32 crc32c][payload]``,
payload ``[u64 term][u64 index][u8 kind][data]``. Every write is fsynced before ``persist``
returns, so the only damage a crash can leave is a torn record at the end of the last segment;
recovery cuts it off. Anything else that fails its checksum is real corruption and refuses to
start, because silently dropping acknowledged entries would break Raft's guarantees.

Blocking file I/O only; an asyncio driver should call ``persist`` from a worker thread.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from crc32c import crc32c

from odradek.controller.raft.messages import Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from odradek.controller.raft.storage import RaftStorageView
from odradek.storage.checkpoint import fsync_dir

if TYPE_CHECKING:
    from odradek.controller.raft.node import Ready

SEGMENT_MAGIC = b"ODRLOG01"
SNAPSHOT_MAGIC = b"ODRSNP01"
# Version 2 adds the snapshot's voter set (SnapshotMeta.config). Written only when there is
# one, so a cluster that never changed its voters keeps files older versions can read.
SNAPSHOT_MAGIC_V2 = b"ODRSNP02"
HARDSTATE_MAGIC = b"ODRHST01"
_FRAME = struct.Struct(">II")
_ENTRY_HEADER = struct.Struct(">QQB")
_HARDSTATE = struct.Struct(">QQQ")
_SNAP_HEADER = struct.Struct(">QQ")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# A length above this cannot be ours; treat it as garbage rather than allocating it.
_MAX_RECORD = 1 << 30


class CorruptLogError(Exception):
    """Storage is damaged in a way a crash cannot explain."""


@dataclass
class _Segment:
    first_index: int
    path: Path
    offsets: list[int] = field(default_factory=list)  # byte offset of each record
    terms: list[int] = field(default_factory=list)
    size: int = len(SEGMENT_MAGIC)

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.offsets) - 1


def encode_entry(entry: Entry) -> bytes:
    payload = _ENTRY_HEADER.pack(entry.term, entry.index, int(entry.kind)) + entry.data
    return _FRAME.pack(len(payload), crc32c(payload)) + payload


def _decode_entry(payload: bytes) -> Entry:
    term, index, kind = _ENTRY_HEADER.unpack_from(payload)
    return Entry(term, index, payload[_ENTRY_HEADER.size :], EntryKind(kind))


def _read_records(buf: bytes) -> tuple[list[tuple[int, Entry]], int]:
    """Parse framed records; returns them with the offset where valid data ends."""
    out: list[tuple[int, Entry]] = []
    pos = len(SEGMENT_MAGIC)
    while pos + _FRAME.size <= len(buf):
        length, crc = _FRAME.unpack_from(buf, pos)
        start = pos + _FRAME.size
        if length < _ENTRY_HEADER.size or length > _MAX_RECORD or start + length > len(buf):
            break
        payload = buf[start : start + length]
        if crc32c(payload) != crc:
            break
        try:
            entry = _decode_entry(payload)
        except ValueError:
            break
        out.append((pos, entry))
        pos = start + length
    return out, pos


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    # The rename itself is only durable once the directory is.
    fsync_dir(path.parent)


def _checked_payload(raw: bytes, magic: bytes, what: Path) -> bytes:
    head = len(magic) + _FRAME.size
    if len(raw) < head or raw[: len(magic)] != magic:
        raise CorruptLogError(f"{what}: bad header; the file is not Odradek Raft state")
    length, crc = _FRAME.unpack_from(raw, len(magic))
    payload = raw[head : head + length]
    if len(payload) != length or crc32c(payload) != crc:
        # Written via rename after fsync, so a crash cannot produce this.
        raise CorruptLogError(f"{what}: checksum mismatch; the file is damaged")
    return payload


def _framed(magic: bytes, payload: bytes) -> bytes:
    return magic + _FRAME.pack(len(payload), crc32c(payload)) + payload


def encode_snapshot(snapshot: Snapshot) -> bytes:
    meta = snapshot.meta
    parts = [_SNAP_HEADER.pack(meta.index, meta.term)]
    for ids in (meta.voters, meta.observers):
        parts.append(_U32.pack(len(ids)))
        parts.extend(_U64.pack(i) for i in sorted(ids))
    if meta.config:
        parts.append(_U32.pack(len(meta.config)))
        parts.append(meta.config)
    parts.append(snapshot.data)
    return _framed(SNAPSHOT_MAGIC_V2 if meta.config else SNAPSHOT_MAGIC, b"".join(parts))


def decode_snapshot(raw: bytes, what: Path) -> Snapshot:
    v2 = raw[: len(SNAPSHOT_MAGIC_V2)] == SNAPSHOT_MAGIC_V2
    payload = _checked_payload(raw, SNAPSHOT_MAGIC_V2 if v2 else SNAPSHOT_MAGIC, what)
    index, term = _SNAP_HEADER.unpack_from(payload)
    pos = _SNAP_HEADER.size
    sets: list[frozenset[int]] = []
    for _ in range(2):
        (n,) = _U32.unpack_from(payload, pos)
        pos += _U32.size
        sets.append(frozenset(_U64.unpack_from(payload, pos + 8 * k)[0] for k in range(n)))
        pos += 8 * n
    config = b""
    if v2:
        (n,) = _U32.unpack_from(payload, pos)
        pos += _U32.size
        config = payload[pos : pos + n]
        pos += n
    return Snapshot(SnapshotMeta(index, term, sets[0], sets[1], config), payload[pos:])


class FileLogStore:
    def __init__(self, directory: str | os.PathLike[str], segment_bytes: int = 16 << 20) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self._segments: list[_Segment] = []
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self._recover()

    # ------------------------------------------------------------------ reading

    @property
    def first_index(self) -> int:
        """First entry still on disk (entries the snapshot covers may linger until compacted)."""
        return self._segments[0].first_index if self._segments else self._base_index() + 1

    @property
    def last_index(self) -> int:
        return self._segments[-1].last_index if self._segments else self._base_index()

    def term(self, index: int) -> int | None:
        t = self._stored_term(index)
        if t is None and self.snapshot is not None and index == self.snapshot.meta.index:
            return self.snapshot.meta.term
        return t

    def _stored_term(self, index: int) -> int | None:
        for seg in self._segments:
            if seg.first_index <= index <= seg.last_index:
                return seg.terms[index - seg.first_index]
        return None

    def load(self) -> RaftStorageView:
        entries: list[Entry] = []
        for seg in self._segments:
            records, _ = _read_records(seg.path.read_bytes())
            entries.extend(e for _, e in records[: len(seg.offsets)])
        return RaftStorageView(self.hard_state, tuple(entries), self.snapshot)

    # ------------------------------------------------------------------ writing

    def persist(self, ready: Ready) -> None:
        """Make a Ready's state durable, in the order the core's contract requires."""
        if ready.snapshot_to_persist is not None:
            self.save_snapshot(ready.snapshot_to_persist)
        if ready.entries_to_persist:
            self.append(ready.entries_to_persist)
        if ready.hard_state is not None:
            self.save_hard_state(ready.hard_state)

    def save_hard_state(self, hs: HardState) -> None:
        payload = _HARDSTATE.pack(hs.term, hs.vote or 0, hs.commit)
        _write_atomically(self.dir / "hardstate", _framed(HARDSTATE_MAGIC, payload))
        self.hard_state = hs

    def save_snapshot(self, snapshot: Snapshot) -> None:
        if self.snapshot is not None and snapshot.meta.index <= self.snapshot.meta.index:
            return
        _write_atomically(self.dir / "snapshot", encode_snapshot(snapshot))
        self.snapshot = snapshot
        self._reconcile_with_snapshot()

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        if first <= self.last_index:
            self.truncate_suffix(first)
        if self._segments and first != self.last_index + 1:
            raise ValueError(f"gap: appending {first} after last index {self.last_index}")
        f: BinaryIO | None = None
        try:
            for e in entries:
                seg = self._segments[-1] if self._segments else None
                if seg is None or seg.size >= self.segment_bytes:
                    if f is not None:
                        self._sync_file(f)
                        f.close()
                    seg = self._new_segment(e.index)
                    f = open(seg.path, "ab")
                elif f is None:
                    f = open(seg.path, "ab")
                record = encode_entry(e)
                f.write(record)
                seg.offsets.append(seg.size)
                seg.terms.append(e.term)
                seg.size += len(record)
        finally:
            if f is not None:
                self._sync_file(f)
                f.close()

    def truncate_suffix(self, index: int) -> None:
        """Delete entries with index >= ``index`` (a new leader overwrote them)."""
        changed_dir = False
        while self._segments and self._segments[-1].first_index >= index:
            self._segments.pop().path.unlink()
            changed_dir = True
        if self._segments and self._segments[-1].last_index >= index:
            seg = self._segments[-1]
            keep = index - seg.first_index
            seg.size = seg.offsets[keep]
            del seg.offsets[keep:]
            del seg.terms[keep:]
            with open(seg.path, "r+b") as f:
                f.truncate(seg.size)
                f.flush()
                os.fsync(f.fileno())
        if changed_dir:
            fsync_dir(self.dir)

    def compact(self, index: int) -> None:
        """Delete whole segments holding only entries <= ``index`` (covered by a snapshot)."""
        changed = False
        while self._segments and self._segments[0].last_index <= index:
            self._segments.pop(0).path.unlink()
            changed = True
        if changed:
            fsync_dir(self.dir)

    # ------------------------------------------------------------------ internals

    def _base_index(self) -> int:
        return self.snapshot.meta.index if self.snapshot is not None else 0

    @staticmethod
    def _sync_file(f: BinaryIO) -> None:
        f.flush()
        os.fsync(f.fileno())

    def _new_segment(self, first_index: int) -> _Segment:
        seg = _Segment(first_index, self.dir / f"log-{first_index:020d}.seg")
        with open(seg.path, "wb") as f:
            f.write(SEGMENT_MAGIC)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(self.dir)
        self._segments.append(seg)
        return seg

    def _reconcile_with_snapshot(self) -> None:
        """Raft section 7: keep the log after the snapshot only if it holds the snapshot's tail."""
        assert self.snapshot is not None
        meta = self.snapshot.meta
        if self._stored_term(meta.index) == meta.term:
            self.compact(meta.index)
        elif self._segments and self.first_index == meta.index + 1:
            pass  # already compacted exactly up to the snapshot
        else:
            self.truncate_suffix(0)

    def _recover(self) -> None:
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink()  # an interrupted atomic write; the previous version is still in place
        hs_path = self.dir / "hardstate"
        if hs_path.exists():
            payload = _checked_payload(hs_path.read_bytes(), HARDSTATE_MAGIC, hs_path)
            term, vote, commit = _HARDSTATE.unpack(payload)
            self.hard_state = HardState(term, vote or None, commit)
        snap_path = self.dir / "snapshot"
        if snap_path.exists():
            self.snapshot = decode_snapshot(snap_path.read_bytes(), snap_path)

        paths = sorted(self.dir.glob("log-*.seg"))
        for n, path in enumerate(paths):
            last = n == len(paths) - 1
            raw = path.read_bytes()
            first_index = int(path.stem.split("-")[1])
            if len(raw) < len(SEGMENT_MAGIC) or raw[: len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
                if last and SEGMENT_MAGIC.startswith(raw):
                    path.unlink()  # crashed while creating it
                    fsync_dir(self.dir)
                    continue
                raise CorruptLogError(f"{path}: bad segment header")
            records, valid_end = _read_records(raw)
            seg = _Segment(first_index, path, size=valid_end)
            for k, (offset, e) in enumerate(records):
                if e.index != first_index + k:
                    raise CorruptLogError(
                        f"{path}: entry {k} has index {e.index}, expected {first_index + k}"
                    )
                seg.offsets.append(offset)
                seg.terms.append(e.term)
            if valid_end != len(raw):
                if not last:
                    raise CorruptLogError(
                        f"{path}: damaged record at byte {valid_end} in a sealed segment; "
                        "restore the data directory or wipe it so the node rejoins from a snapshot"
                    )
                # Torn tail: the write was never acknowledged (persist had not returned).
                with open(path, "r+b") as f:
                    f.truncate(valid_end)
                    f.flush()
                    os.fsync(f.fileno())
            if not seg.offsets and last:
                path.unlink()  # crashed before its first record was durable
                fsync_dir(self.dir)
                continue
            if self._segments and first_index != self._segments[-1].last_index + 1:
                raise CorruptLogError(
                    f"{path}: starts at {first_index} but the previous segment ends at "
                    f"{self._segments[-1].last_index}"
                )
            self._segments.append(seg)
        if self.snapshot is not None:
            self._reconcile_with_snapshot()
        last_index = self.last_index
        if self.hard_state.commit > max(last_index, self._base_index()):
            raise CorruptLogError(
                f"{self.dir}: hard state commit {self.hard_state.commit} is beyond the last "
                f"stored entry {last_index}; acknowledged entries are missing"
            )

"""FileRegion: whole record batches of a segment, to be sent to a socket by the kernel
(``os.sendfile``) instead of being read into Python first.

A region is made under the log's lock, from what the log holds at that moment; it is sent
later, possibly after the log changed. What keeps its bytes right meanwhile:

* its own descriptor (a ``dup`` of the segment's): retention, DeleteRecords, the cleaner's
  swap and the deletion of the partition close and unlink the segment file, which would
  otherwise leave the region reading a closed descriptor, or a recycled one (another
  file's bytes, the reason reads hold the log's lock); a dup keeps the unlinked file's
  bytes readable until the region is closed;
* the segment's ``rewrites`` count, taken with it: the one change that alters bytes
  already written is a truncation (a leader becoming follower cuts its log, and may append
  other batches at the same positions). Each ``send`` holds the log's lock and first checks
  the count, so no truncation can happen between that check and the copy; a region whose
  segment was truncated raises ``RegionChanged`` and the caller must give up the response
  (closing the connection: a response whose size was promised cannot be cut short);
* a short file (sendfile copies nothing before the region's end) raises ``RegionChanged``
  too, never a wait.

The lock is held for one non-blocking ``sendfile`` at a time: at most what the socket's
send buffer takes, a copy within the page cache.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol


class RegionChanged(Exception):
    """The bytes a region promised are no longer in its file: its response cannot be sent."""


class _Segment(Protocol):
    @property
    def rewrites(self) -> int: ...


class FileRegion:
    """``length`` bytes at ``position`` of a segment file. ``len()`` is its length, so a
    response codec can encode its size without reading it. Closed explicitly once sent;
    a region dropped unsent (a response replaced by a throttled one) closes its descriptor
    when collected."""

    __slots__ = ("fd", "position", "length", "_segment", "_rewrites", "_lock", "_close",
                 "__weakref__")

    def __init__(self, fd: int, position: int, length: int, segment: _Segment,
                 lock: threading.RLock) -> None:
        """Takes ``fd`` (a dup, owned by the region from now on)."""
        self.fd = fd
        self.position = position
        self.length = length
        self._segment = segment
        self._rewrites = segment.rewrites
        self._lock = lock
        self._close = weakref.finalize(self, os.close, fd)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"FileRegion(fd={self.fd}, position={self.position}, length={self.length})"

    def read(self) -> bytes:
        """The region's bytes (for tests and for transports that cannot send a file)."""
        with self._lock:
            self._check()
            data = os.pread(self.fd, self.length, self.position)
        if len(data) != self.length:
            raise RegionChanged(f"{self}: the file ends {self.length - len(data)} bytes early")
        return data

    def send(self, out_fd: int, start: int, count: int) -> int:
        """``os.sendfile`` of up to ``count`` bytes from ``start`` (within the region) to
        the non-blocking socket ``out_fd``: bytes sent. Raises BlockingIOError when the
        socket takes nothing now, RegionChanged when the bytes are gone, and OSError
        from the socket."""
        count = min(count, self.length - start)
        if count <= 0:
            return 0
        with self._lock:
            self._check()
            n = os.sendfile(out_fd, self.fd, self.position + start, count)
        if n == 0:
            raise RegionChanged(f"{self}: the file ends at {start} bytes into the region")
        return n

    def _check(self) -> None:
        if not self._close.alive:
            raise RegionChanged(f"{self} is closed")
        if self._segment.rewrites != self._rewrites:
            raise RegionChanged(f"{self}: its segment was truncated after it was read")

    def close(self) -> None:
        self._close()

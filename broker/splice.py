"""Sending a response whose record bytes stay in the page cache (zero-copy Fetch).

A Fetch answer on a plaintext connection carries its larger record sets as FileRegions
(storage/file_region.py); the codec encodes their lengths and leaves them out of the bytes
(codec.SplicedFrame). ``Splice`` sends such a frame: the encoded pieces with ``os.write``
and each region with ``os.sendfile`` from its segment file to the socket, so the records
never enter Python.

Why not the event loop's own means: uvloop does not implement ``loop.sendfile`` (it
inherits AbstractEventLoop's NotImplementedError), and asyncio's would fall back to reading
the file into Python on any transport it does not know. So the transport stands aside:

* the connection writes nothing else while a splice is under way (its task awaits it, and
  every answer goes through that task), and the splice starts only once the transport's
  write buffer is empty, so the bytes reach the socket in request order;
* it writes on its own ``dup`` of the socket, so that the transport closing its descriptor
  (the peer going away, a close) never leaves it writing to a recycled descriptor number;
  ``abort`` shuts that socket down, which fails a send in progress at once;
* the sends run in a worker thread: ``sendfile`` does not honour O_NONBLOCK for the file
  side, so a page that is not cached would hold the event loop for a disk read. Each call
  (``pump``) sends until the socket is full or ``_PUMP_BYTES`` went, then gives the thread
  back; a full socket is waited for there only briefly (``_POLL_MS``), then by the event
  loop (``add_writer`` on the dup), so a client that stops reading holds no thread for
  long and no other connection;
* the whole frame's size was promised in its size prefix: when a region's bytes are gone
  (RegionChanged) or the socket fails, the connection must be closed, never given fewer
  or other bytes.

TLS connections (SSL, SASL_SSL listeners) keep the copying path: the kernel would send the
file's plaintext bytes, and the record bytes must go through the TLS layer's encryption in
Python's ssl module (kernel TLS offload is not used).
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
from typing import Protocol

from odradek.broker.kafka.codec import SplicedFrame

# What one worker call sends at most before giving its thread back: with a few MiB per
# turn, connections sharing the pool take turns every few milliseconds, and a fast reader
# still moves its whole socket buffer (a few MiB on loopback) per call.
_PUMP_BYTES = 8 << 20
# How long a worker waits for a full socket to take more before it gives the thread back
# and the event loop waits instead. A reading client empties a loopback socket buffer in
# well under this; going back to the loop at every full buffer (add_writer, a wake-up, a
# new executor turn: two thread switches on a busy machine) held the bench's raw fetch at
# 1.4 GB/s with the node mostly idle. A client that does not read holds a worker this long
# per turn, and gets a turn only when its socket takes bytes again.
_POLL_MS = 10


class Region(Protocol):
    """What a splice needs of an out-of-band value (storage.FileRegion is one)."""

    def __len__(self) -> int: ...

    def send(self, out_fd: int, start: int, count: int) -> int: ...

    def close(self) -> None: ...


class Splice:
    """One SplicedFrame on its way to a socket (a dup the splice owns)."""

    def __init__(self, frame: SplicedFrame, sock_fd: int) -> None:
        self.fd = sock_fd
        self.parts = frame.parts
        self.size = frame.size
        self.sent = 0
        self._part = 0
        self._offset = 0  # within parts[_part]
        self._watching = False
        self._closed = False

    def pump(self) -> bool:
        """Send what the socket takes now, up to ``_PUMP_BYTES`` (in a worker thread):
        True once the whole frame is sent. Raises OSError from the socket, RegionChanged
        from a region."""
        budget = _PUMP_BYTES
        poller: select.poll | None = None
        while self._part < len(self.parts) and budget > 0:
            part = self.parts[self._part]
            try:
                if isinstance(part, memoryview):
                    n = os.write(self.fd, part[self._offset:self._offset + budget])
                else:
                    region: Region = part  # type: ignore[assignment]  # see Region
                    n = region.send(self.fd, self._offset, budget)
            except BlockingIOError:
                if poller is None:
                    poller = select.poll()
                    poller.register(self.fd, select.POLLOUT)
                if not poller.poll(_POLL_MS):
                    return False
                continue
            self._offset += n
            self.sent += n
            budget -= n
            if self._offset >= len(part):
                self._part += 1
                self._offset = 0
        return self._part >= len(self.parts)

    async def writable(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the socket takes more bytes (or fails: the next pump says how)."""
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_writer(self.fd, ready)
        self._watching = True
        try:
            await fut
        finally:
            loop.remove_writer(self.fd)
            self._watching = False

    def abort(self) -> None:
        """Fail the splice from the event loop: a send in progress or the next one fails,
        and a wait for the socket ends (a shut-down socket is writable)."""
        if not self._closed:
            try:
                _shutdown(self.fd)
            except OSError:
                pass  # not connected any more: the sends fail already

    def close(self) -> None:
        """Release the socket dup and the regions (never while a pump runs)."""
        if self._closed:
            return
        self._closed = True
        for part in self.parts:
            if not isinstance(part, memoryview):
                region: Region = part  # type: ignore[assignment]
                region.close()
        os.close(self.fd)


def _shutdown(fd: int) -> None:
    s = socket.socket(fileno=fd)
    try:
        s.shutdown(socket.SHUT_RDWR)
    finally:
        s.detach()  # the descriptor stays the splice's

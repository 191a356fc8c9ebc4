"""Sans-I/O Kafka server connection: bytes in, events out; responses in, bytes out.

The transport (asyncio in broker/server.py) feeds whatever it read into ``receive_data``
and acts on the events it gets back; it never parses bytes itself.

Framing and decoding are two steps. ``receive_data`` only cuts frames: a size prefix larger
than ``max_request_bytes`` is refused as soon as its four bytes arrive, and before the body
of a frame is read its size must be granted by ``reserve`` (the node-wide budget of queued
request bytes, Kafka's ``queued.max.request.bytes``). When the budget says no, framing
stops with ``blocked`` set and the transport stops reading until the budget has room; bytes
already received stay buffered here. ``decode`` turns a frame into a request when the
transport is ready to handle it, so at most one decoded request per connection exists at a
time: a queue of frames costs its bytes, not the objects a hostile frame could expand into.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from odradek.broker.kafka import codec

_SIZE = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """One whole request frame (size prefix removed), not yet decoded."""

    frame: bytes

    @property
    def size(self) -> int:
        return len(self.frame)


@dataclass(frozen=True, slots=True)
class RequestReceived:
    request: codec.DecodedRequest
    size: int


@dataclass(frozen=True, slots=True)
class VersionRejected:
    """A known API at a version we do not serve. ApiVersions gets an error answer (KIP-511)."""

    api_key: int
    api_version: int
    correlation_id: int


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke the framing or sent garbage; the connection must be closed."""

    reason: str


Event = FrameReceived | ProtocolViolation
Decoded = RequestReceived | VersionRejected | ProtocolViolation


def _always(size: int) -> bool:
    return True


class ServerConnection:
    def __init__(self, supported: Mapping[int, tuple[int, int]], max_request_bytes: int,
                 reserve: Callable[[int], bool] = _always) -> None:
        """``reserve(size)``: may a frame of ``size`` bytes be read now? The caller gives
        the bytes back when it takes the frame (FrameReceived) for handling."""
        self._supported = supported
        self._max = max_request_bytes
        self._reserve = reserve
        self._buf = bytearray()
        self._need: int | None = None  # body size of the frame being read (reserved)
        self.closed = False
        # A frame's size is known but the budget has no room for it yet: call
        # receive_data(b"") again once it may have.
        self.blocked = False

    @property
    def buffered(self) -> int:
        """Bytes received and held here (an incomplete frame, or ones not yet framed)."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed:
            return []
        if data:
            self._buf += data
        events: list[Event] = []
        self.blocked = False
        while True:
            if self._need is None:
                if len(self._buf) < 4:
                    break
                (size,) = _SIZE.unpack_from(self._buf, 0)
                if size < 8 or size > self._max:
                    self.closed = True
                    self._buf.clear()
                    limit = f"socket.request.max.bytes={self._max}"
                    what = "too small to hold a header" if size < 8 else f"larger than {limit}"
                    events.append(ProtocolViolation(f"request size {size} is {what}"))
                    return events
                if not self._reserve(size):
                    self.blocked = True
                    break
                self._need = size
                del self._buf[:4]
            if len(self._buf) < self._need:
                break
            # One copy, through a view: slicing the bytearray first would make two, and a
            # frame may be socket.request.max.bytes (100 MiB) large.
            with memoryview(self._buf) as view:
                frame = bytes(view[: self._need])
            del self._buf[: self._need]
            self._need = None
            events.append(FrameReceived(frame))
        return events

    def decode(self, frame: bytes) -> Decoded:
        """The request in ``frame``, or why the connection must be closed."""
        try:
            return RequestReceived(codec.decode_request(frame, self._supported), len(frame))
        except codec.UnsupportedVersion as e:
            if e.api_key == codec.API_VERSIONS_KEY:
                return VersionRejected(e.api_key, e.api_version, e.correlation_id)
            return ProtocolViolation(
                f"api_key={e.api_key} version {e.api_version} is not supported "
                f"(served: {self._supported[e.api_key]})"
            )
        except codec.UnknownApiKey as e:
            return ProtocolViolation(f"unknown or unsupported api_key {e.api_key}")
        except codec.MalformedRequest as e:
            return ProtocolViolation(str(e))

    @property
    def reserved(self) -> int:
        """Bytes granted by ``reserve`` for the frame being read, not yet handed out."""
        return self._need or 0

"""Sans-I/O Kafka server connection: bytes in, events out; responses in, bytes out.

The transport (asyncio in broker/server.py) feeds whatever it read into
``receive_data`` and acts on the events it gets back; it never parses bytes itself.
A size prefix larger than ``max_request_bytes`` is refused as soon as its four bytes
arrive, before any buffer for the body is allocated.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from broker.kafka import codec

_SIZE = struct.Struct(">i")


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


Event = RequestReceived | VersionRejected | ProtocolViolation


class ServerConnection:
    def __init__(self, supported: Mapping[int, tuple[int, int]], max_request_bytes: int) -> None:
        self._supported = supported
        self._max = max_request_bytes
        self._buf = bytearray()
        self._need: int | None = None  # body size of the frame being read
        self.closed = False

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed:
            return []
        self._buf += data
        events: list[Event] = []
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
                self._need = size
                del self._buf[:4]
            if len(self._buf) < self._need:
                break
            frame = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            size, self._need = self._need, None
            event = self._decode(frame, size)
            events.append(event)
            if isinstance(event, ProtocolViolation):
                self.closed = True
                self._buf.clear()
                break
        return events

    def _decode(self, frame: bytes, size: int) -> Event:
        try:
            return RequestReceived(codec.decode_request(frame, self._supported), size)
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

    @staticmethod
    def send_response(req: codec.DecodedRequest, body: object) -> bytes:
        return codec.encode_response(req.api_key, req.api_version, req.correlation_id, body)

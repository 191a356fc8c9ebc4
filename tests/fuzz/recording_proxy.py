"""A TCP proxy that records every request frame clients send through it.

Client to server, it cuts the byte stream into Kafka frames (a 4-byte size, then that many
bytes) and keeps each whole frame, size prefix included, under the label of the workload
running at the time. The node behind it
advertises the proxy's address, so clients send every request, not only the bootstrap
ones, through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.integration.proxy import FramingProxy


@dataclass(frozen=True, slots=True)
class Recorded:
    label: str
    connection: int
    frame: bytes  # size prefix included: exactly what the client wrote


class RecordingProxy(FramingProxy):
    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.label = "unlabelled"
        self.frames: list[Recorded] = []
        super().__init__(upstream, port)

    def on_request(self, conn: int, frame: bytes) -> bool:
        with self._lock:
            self.frames.append(Recorded(self.label, conn, frame))
        return True

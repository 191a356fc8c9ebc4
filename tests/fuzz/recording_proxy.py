"""A TCP proxy that records every request frame clients send through it.

Client to server, it cuts the byte stream into Kafka frames (a 4-byte size, then that many
bytes) and keeps each whole frame, size prefix included, under the label of the workload
running at the time. The node behind it
advertises the proxy's address, so clients send every request, not only the bootstrap
ones, through it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from odradek.broker.kafka import codec
from tests.integration.harness import NodeProcess, free_port
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


class ExchangeRecorder(RecordingProxy):
    """The recording proxy, also keeping the responses, to pair each request of an API with
    its answer (tests that check which versions clients send, and what they are told)."""

    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.responses: dict[tuple[int, int], bytes] = {}  # (connection, correlation id)
        super().__init__(upstream, port)

    def on_response(self, conn: int, frame: bytes) -> bool:
        with self._lock:
            self.responses[(conn, struct.unpack_from(">i", frame, 4)[0])] = frame
        return True

    def exchanges(self, label: str, api_key: int,
                  versions: tuple[int, int]) -> list[tuple[int, Any, Any]]:
        """(version, request, response or None) of each ``api_key`` request sent under
        ``label``; ``versions``: the range the node serves (the decoder's bounds)."""
        with self._lock:
            frames = [r for r in self.frames if r.label == label]
            responses = dict(self.responses)
        out = []
        for r in frames:
            key, version, correlation_id = struct.unpack_from(">hhi", r.frame, 4)
            if key != api_key:
                continue
            request = codec.decode_request(r.frame[4:], {api_key: versions}).body
            answer = responses.get((r.connection, correlation_id))
            response = codec.decode_response(answer[4:], api_key, version)[1] \
                if answer is not None else None
            out.append((version, request, response))
        return out


R = TypeVar("R", bound=RecordingProxy)


@contextmanager
def node_behind(recorder: type[R], base: Path, overrides: dict[str, object] | None = None
                ) -> Iterator[tuple[str, R]]:
    """A single node in ``base`` (with node config ``overrides``) advertising the address of
    a ``recorder`` proxy in front of it, so that clients send every request through the
    proxy: (bootstrap, proxy). The node's log is printed when the block fails."""
    port = free_port()
    node = NodeProcess(base, overrides={"advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
                                        "offsets.topic.replication.factor": 1,
                                        **(overrides or {})})
    proxy = recorder(("127.0.0.1", node.kafka_port), port=port)
    try:
        node.start()
        yield f"127.0.0.1:{port}", proxy
    except BaseException:
        print(node.logs())
        raise
    finally:
        proxy.close()
        node.kill()

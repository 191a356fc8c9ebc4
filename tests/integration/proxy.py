"""TCP proxies that understand Kafka framing: a base that forwards whole frames both ways
and lets a subclass see (and drop) each one, and a proxy that loses chosen responses."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

from tests.helpers import read_exact


class FramingProxy:
    """Forwards connections to ``upstream`` frame by frame (a 4-byte size, then that many
    bytes). ``on_request`` and ``on_response`` see each whole frame, size prefix included,
    and return False to cut the connection instead of forwarding it."""

    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = int(self.listener.getsockname()[1])
        self._lock = threading.Lock()
        self._connections = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def on_request(self, conn: int, frame: bytes) -> bool:
        return True

    def on_response(self, conn: int, frame: bytes) -> bool:
        return True

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += 1
                conn = self._connections
            for src, dst, hook in ((client, server, self.on_request),
                                   (server, client, self.on_response)):
                threading.Thread(target=self._pipe, args=(src, dst, conn, hook, client, server),
                                 daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, conn: int,
              hook: Callable[[int, bytes], bool], *both: socket.socket) -> None:
        while True:
            head = read_exact(src, 4)
            if head is None:
                break
            (size,) = struct.unpack(">i", head)
            body = read_exact(src, size) if size >= 0 else None
            if body is None or not hook(conn, head + body):
                break
            try:
                dst.sendall(head + body)
            except OSError:
                break
        for s in both:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class DroppingProxy(FramingProxy):
    """When ``should_drop(api_key)`` says so for a response, the response is swallowed and
    the client connection cut, as if the network failed after the broker had done the work.
    The client must then retry."""

    def __init__(self, upstream: tuple[str, int], should_drop: Callable[[int], bool],
                 port: int = 0) -> None:
        self.should_drop = should_drop
        self.dropped = 0
        self._inflight: dict[tuple[int, int], int] = {}  # (connection, correlation) -> api
        super().__init__(upstream, port)

    def on_request(self, conn: int, frame: bytes) -> bool:
        api_key, _, correlation = struct.unpack_from(">hhi", frame, 4)
        with self._lock:
            self._inflight[(conn, correlation)] = api_key
        return True

    def on_response(self, conn: int, frame: bytes) -> bool:
        (correlation,) = struct.unpack_from(">i", frame, 4)
        with self._lock:
            api_key = self._inflight.pop((conn, correlation), -1)
            drop = self.should_drop(api_key)
            if drop:
                self.dropped += 1
        return not drop

"""A TCP proxy that understands Kafka framing well enough to lose chosen responses."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

from tests.helpers import read_exact


class DroppingProxy:
    """Forwards to ``upstream``; when ``should_drop(api_key)`` says so for a response, the
    response is swallowed and the client connection cut, as if the network failed after
    the broker had done the work. The client must then retry."""

    def __init__(self, upstream: tuple[str, int], should_drop: Callable[[int], bool],
                 port: int = 0) -> None:
        self.upstream = upstream
        self.should_drop = should_drop
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.dropped = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self.listener.close()

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
            inflight: dict[int, int] = {}
            threading.Thread(target=self._up, args=(client, server, inflight),
                             daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, inflight),
                             daemon=True).start()

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _up(self, client: socket.socket, server: socket.socket, inflight: dict[int, int]
            ) -> None:
        while True:
            head = read_exact(client, 4)
            if head is None:
                break
            (size,) = struct.unpack(">i", head)
            body = read_exact(client, size)
            if body is None:
                break
            api_key, _, correlation = struct.unpack_from(">hhi", body)
            inflight[correlation] = api_key
            try:
                server.sendall(head + body)
            except OSError:
                break
        self._close(client, server)

    def _down(self, server: socket.socket, client: socket.socket, inflight: dict[int, int]
              ) -> None:
        while True:
            head = read_exact(server, 4)
            if head is None:
                break
            (size,) = struct.unpack(">i", head)
            body = read_exact(server, size)
            if body is None:
                break
            (correlation,) = struct.unpack_from(">i", body)
            api_key = inflight.pop(correlation, -1)
            with self._lock:
                drop = self.should_drop(api_key)
                if drop:
                    self.dropped += 1
            if drop:
                break
            try:
                client.sendall(head + body)
            except OSError:
                break
        self._close(client, server)

"""A TCP proxy that records every request frame clients send through it.

Client to server, it cuts the byte stream into Kafka frames (a 4-byte size, then that many
bytes) and keeps each whole frame, size prefix included, under the label of the workload
running at the time; server to client it copies bytes as they come. The node behind it
advertises the proxy's address, so clients send every request, not only the bootstrap
ones, through it.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

from tests.helpers import read_exact


@dataclass(frozen=True, slots=True)
class Recorded:
    label: str
    connection: int
    frame: bytes  # size prefix included: exactly what the client wrote


class RecordingProxy:
    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = int(self.listener.getsockname()[1])
        self.label = "unlabelled"
        self.frames: list[Recorded] = []
        self._lock = threading.Lock()
        self._connections = 0
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
            with self._lock:
                self._connections += 1
                conn = self._connections
            threading.Thread(target=self._up, args=(client, server, conn), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _up(self, client: socket.socket, server: socket.socket, conn: int) -> None:
        while True:
            head = read_exact(client, 4)
            if head is None:
                break
            (size,) = struct.unpack(">i", head)
            body = read_exact(client, size) if size >= 0 else None
            if body is None:
                break
            with self._lock:
                self.frames.append(Recorded(self.label, conn, head + body))
            try:
                server.sendall(head + body)
            except OSError:
                break
        self._close(client, server)

    def _down(self, server: socket.socket, client: socket.socket) -> None:
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                break
            if not data:
                break
            try:
                client.sendall(data)
            except OSError:
                break
        self._close(client, server)

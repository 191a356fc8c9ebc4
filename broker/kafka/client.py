"""A small blocking Kafka client over our codec, for admin tooling and protocol tests."""

from __future__ import annotations

import itertools
import socket
import struct
from typing import Any

from odradek.broker.kafka import codec
from odradek.broker.security.sasl_client import ClientSecurity, SaslClientError, exchange

_SIZE = struct.Struct(">i")


class ConnectionClosed(Exception):
    pass


class AuthenticationFailed(Exception):
    """The broker refused this client's SASL credentials (or mechanism)."""


class KafkaConnection:
    def __init__(self, host: str, port: int, *, client_id: str = "odradek-cli",
                 timeout: float = 30.0, security: ClientSecurity | None = None) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = raw
        self.client_id = client_id
        self._ids = itertools.count(1)
        security = security or ClientSecurity()
        try:
            if security.ssl is not None:
                self.sock = security.ssl.wrap_socket(raw, server_hostname=host)
            if security.sasl is not None:
                self._authenticate(*security.sasl)
        except BaseException:
            self.sock.close()
            raise

    def _authenticate(self, mechanism: str, username: str, password: str) -> None:
        steps = exchange(mechanism, username, password)
        try:
            request = next(steps)
            while True:
                request = steps.send(self.request(*request))
        except StopIteration:
            return
        except SaslClientError as e:
            raise AuthenticationFailed(str(e)) from None

    @classmethod
    def to(cls, address: str, **kw: Any) -> KafkaConnection:
        host, _, port = address.strip().rpartition(":")
        return cls(host.strip("[]"), int(port), **kw)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> KafkaConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> bytes:
        size = _SIZE.unpack(self._read_exact(4))[0]
        return self._read_exact(size)

    def _read_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionClosed("the broker closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def request(self, api_key: int, version: int, data: dict[str, Any]) -> Any:
        """Send one request and return the decoded response body."""
        body = codec.build_request(api_key, version, data)
        correlation_id = next(self._ids)
        self.send_raw(codec.encode_request(body, correlation_id, self.client_id))
        got_id, response = codec.decode_response(self.read_frame(), api_key, version)
        if got_id != correlation_id:
            raise ConnectionClosed(f"response {got_id} does not answer request {correlation_id}")
        return response

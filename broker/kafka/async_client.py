"""An asyncio Kafka connection over our codec, used for broker-to-broker requests
(follower fetches). One request at a time per connection, like Kafka's replica fetcher."""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from odradek.broker.kafka import codec
from odradek.broker.security.sasl_client import ClientSecurity, SaslClientError, exchange

_SIZE = struct.Struct(">i")
CLOSE_TIMEOUT_S = 1.0


class BrokerConnectionError(Exception):
    pass


class AsyncKafkaConnection:
    def __init__(self, host: str, port: int, *, client_id: str,
                 max_response_bytes: int = 256 << 20,
                 security: ClientSecurity | None = None) -> None:
        self.host = host
        self.port = port
        self.security = security or ClientSecurity()
        self.client_id = client_id
        self.max_response_bytes = max_response_bytes
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        # Size of the last request frame sent (the follower fetchers count their bytes).
        self.last_request_bytes = 0
        # The peer's ApiVersions, asked once per connection (a peer restarted at the same
        # address may serve other versions).
        self._versions: dict[int, tuple[int, int]] | None = None
        # Connections opened so far: a caller keeping per-connection state on the peer
        # (a fetch session) starts over when this changes.
        self.connections = 0

    async def connect(self, timeout: float = 5.0) -> None:
        context = self.security.ssl
        try:
            async with asyncio.timeout(timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, limit=1 << 20, ssl=context,
                    server_hostname=self.host if context is not None else None)
        except (OSError, TimeoutError) as e:
            raise BrokerConnectionError(f"cannot connect to {self.host}:{self.port}: {e}") from e
        self.connections += 1
        if self.security.sasl is not None:
            await self._authenticate(*self.security.sasl, timeout=10.0)

    async def _authenticate(self, mechanism: str, username: str, password: str,
                            timeout: float) -> None:
        steps = exchange(mechanism, username, password)
        try:
            request = next(steps)
            while True:
                request = steps.send(await self._exchange(*request, timeout))
        except StopIteration:
            return
        except SaslClientError as e:
            await self.close()
            raise BrokerConnectionError(
                f"SASL {mechanism} authentication as {username} to {self.host}:{self.port} "
                f"failed: {e}") from None

    @property
    def connected(self) -> bool:
        # A peer that closed while the connection sat unused (a broker restarted while a
        # follower had nothing to fetch from it) shows only as end-of-file on the reader:
        # the next request on it would fail, and its caller would back off for nothing.
        return self._writer is not None and not self._writer.is_closing() \
            and self._reader is not None and not self._reader.at_eof()

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Close the connection; after ``timeout`` the socket is dropped without waiting for
        unsent bytes (a peer that stopped reading must not hold a broker's stop)."""
        writer = self._writer
        self._reader = self._writer = None
        self._versions = None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(timeout):
                await writer.wait_closed()
        except (OSError, ConnectionError):
            pass
        except TimeoutError:
            writer.transport.abort()

    async def api_versions(self, timeout: float = 10.0) -> Mapping[int, tuple[int, int]]:
        """(min, max) version of each API the peer serves, by API key."""
        if self._versions is None or not self.connected:
            self._versions = None
            response = await self.request(codec.API_VERSIONS_KEY, 0, {}, timeout)
            if response.error_code != ErrorCode.none:
                await self.close()
                raise BrokerConnectionError(
                    f"{self.host}:{self.port} refused ApiVersions: {response.error_code.name}")
            self._versions = {int(k.api_key): (int(k.min_version), int(k.max_version))
                              for k in response.api_keys}
        return self._versions

    async def request(self, api_key: int, version: int, data: dict[str, Any],
                      timeout: float) -> Any:
        """Send one request and return the decoded response body."""
        async with self._lock:
            if not self.connected:
                self._versions = None  # a new connection may reach another process
                if self._writer is not None:
                    self._writer.transport.abort()  # the dead one
                    self._reader = self._writer = None
                await self.connect()
            return await self._exchange(api_key, version, data, timeout)

    async def _exchange(self, api_key: int, version: int, data: dict[str, Any],
                        timeout: float) -> Any:
        """One request and its response on the open connection (the caller holds the
        lock, or is connecting)."""
        if self._reader is None or self._writer is None:
            raise BrokerConnectionError(f"not connected to {self.host}:{self.port}")
        correlation_id = next(self._ids)
        body = codec.build_request(api_key, version, data)
        try:
            frame_out = codec.encode_request(body, correlation_id, self.client_id)
            self.last_request_bytes = len(frame_out)
            self._writer.write(frame_out)
            await self._writer.drain()
            async with asyncio.timeout(timeout):
                head = await self._reader.readexactly(4)
            (size,) = _SIZE.unpack(head)
            if not 0 < size <= self.max_response_bytes:
                raise BrokerConnectionError(f"response size {size} out of bounds")
            async with asyncio.timeout(timeout):
                frame = await self._reader.readexactly(size)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as e:
            await self.close()
            raise BrokerConnectionError(
                f"request to {self.host}:{self.port} failed: {e!r}") from e
        try:
            got_id, response = codec.decode_response(frame, api_key, version)
        except codec.MalformedResponse as e:
            await self.close()
            raise BrokerConnectionError(f"{self.host}:{self.port}: {e}") from None
        if got_id != correlation_id:
            await self.close()
            raise BrokerConnectionError(
                f"response {got_id} does not answer request {correlation_id}")
        return response

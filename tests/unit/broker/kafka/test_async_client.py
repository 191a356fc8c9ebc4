"""The broker-to-broker connection never lets a peer hold its owner's stop."""

from __future__ import annotations

import asyncio
import socket
import time

from odradek.broker.kafka.async_client import AsyncKafkaConnection


def test_close_does_not_wait_for_a_peer_that_stopped_reading() -> None:
    # A peer that accepted the connection and reads nothing: unsent bytes pile up, and a
    # graceful close would wait for them to drain forever.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    host, port = server.getsockname()

    async def run() -> float:
        conn = AsyncKafkaConnection(host, port, client_id="t")
        await conn.connect()
        assert conn._writer is not None
        conn._writer.write(b"x" * (64 << 20))  # far more than the socket buffers hold
        started = time.monotonic()
        await conn.close(timeout=0.2)
        assert not conn.connected
        return time.monotonic() - started

    try:
        took = asyncio.run(asyncio.wait_for(run(), 10))
    finally:
        server.close()
    assert took < 5

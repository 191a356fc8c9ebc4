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


def test_a_connection_the_peer_closed_while_idle_is_replaced_before_the_next_request(
) -> None:
    # A follower's fetcher keeps its connection to a broker it has nothing to fetch from;
    # that broker restarts (closing it). The next request must go out on a new connection,
    # not fail on the dead one (its owner would back off for half a second).
    from kio.schema.errors import ErrorCode

    from odradek.broker.kafka import codec

    async def run() -> tuple[int, int]:
        served = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal served
            size = int.from_bytes(await reader.readexactly(4), "big")
            req = codec.decode_request(await reader.readexactly(size), {18: (0, 0)})
            writer.write(codec.encode_response(18, 0, req.correlation_id, codec.build_response(
                18, 0, {"error_code": ErrorCode.none, "api_keys": []})))
            await writer.drain()
            served += 1
            writer.close()  # one answer per connection, then the "restart"

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        conn = AsyncKafkaConnection(host, port, client_id="t")
        try:
            await conn.request(18, 0, {}, timeout=5)
            for _ in range(100):  # until the close has reached the client
                if not conn.connected:
                    break
                await asyncio.sleep(0.01)
            await conn.request(18, 0, {}, timeout=5)  # on a new connection, no error
            return served, conn.connections
        finally:
            await conn.close()
            server.close()

    served, connections = asyncio.run(asyncio.wait_for(run(), 10))
    assert (served, connections) == (2, 2)

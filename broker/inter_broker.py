"""Connections from this broker to the others over the inter-broker listener, for the
requests brokers send each other besides follower fetches (transaction markers, the
partition leaders' transaction verification): one connection per broker, replaced when the
broker's address changes."""

from __future__ import annotations

import asyncio
from typing import Protocol

from odradek.broker.kafka.async_client import AsyncKafkaConnection, BrokerConnectionError
from odradek.broker.security.sasl_client import ClientSecurity
from odradek.controller.metadata import MetadataImage


class InterBrokerNode(Protocol):
    @property
    def node_id(self) -> int: ...

    @property
    def image(self) -> MetadataImage: ...

    @property
    def inter_broker_listener(self) -> str: ...

    @property
    def inter_broker_security(self) -> ClientSecurity: ...


class BrokerConnections:
    def __init__(self, node: InterBrokerNode, purpose: str) -> None:
        self._node = node
        self._client_id = f"odradek-{purpose}-{node.node_id}"
        self._conns: dict[int, AsyncKafkaConnection] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def get(self, broker_id: int) -> AsyncKafkaConnection:
        """The connection to ``broker_id`` (connected on its first request). Raises
        BrokerConnectionError when the broker has no address (fenced, unknown) or this
        node is stopping."""
        if self._closed:
            raise BrokerConnectionError("this node is stopping")
        ep = self._node.image.endpoint(broker_id, self._node.inter_broker_listener)
        if ep is None:
            raise BrokerConnectionError(
                f"broker {broker_id} has no address on listener "
                f"{self._node.inter_broker_listener} (fenced or unknown)")
        conn = self._conns.get(broker_id)
        if conn is None or (conn.host, conn.port) != (ep.host, ep.port):
            if conn is not None:  # the broker moved: the old connection goes
                task = asyncio.get_running_loop().create_task(conn.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            conn = AsyncKafkaConnection(ep.host, ep.port, client_id=self._client_id,
                                        security=self._node.inter_broker_security)
            self._conns[broker_id] = conn
        return conn

    async def close(self) -> None:
        self._closed = True
        conns, self._conns = list(self._conns.values()), {}
        await asyncio.gather(*(c.close() for c in conns), *self._closing,
                             return_exceptions=True)

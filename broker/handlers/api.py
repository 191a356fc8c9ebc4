"""What every request handler sees: the request context and the spec it registers under.

A handler is ``async def handle_x(node, ctx, req)``. ``node`` is typed by a Protocol that
each handler module declares (``MetaNode``, ``ProduceNode``, ...), naming exactly what those
handlers use of the node; ``odradek.broker.node.Node`` satisfies all of them. ``req`` is the
decoded kio request: one class per API version, so it is typed ``Any`` and each handler reads
the fields of the versions it serves (``getattr`` with a default for fields newer versions
added). The answer is a kio response entity (``ctx.respond``), or None for no answer at all
(Produce with acks=0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kio.static.protocol import Payload

from odradek.broker.kafka.codec import build_response

N = TypeVar("N", contravariant=True)


@dataclass(frozen=True, slots=True)
class RequestContext:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    client_host: str
    connection_id: int
    listener_name: str = "PLAINTEXT"
    # The authenticated client: "User:<name>" (SASL), "User:<certificate subject>"
    # (mutual TLS) or "User:ANONYMOUS".
    principal: str = "User:ANONYMOUS"
    # The answer may carry records as regions of segment files, sent from the page cache
    # (a plaintext connection: broker/splice.py).
    zero_copy: bool = False
    # Called by a handler whose request's effects are in place but whose answer waits (a
    # Produce with acks=all, once its records are appended): the connection may then read
    # and handle its next request meanwhile (broker/server.py, "pipelined produce").
    appended: Callable[[], None] | None = None

    def respond(self, data: dict[str, Any]) -> Payload:
        """The response entity for this request's API and version, built from plain data."""
        return build_response(self.api_key, self.api_version, data)


class CloseConnection(Exception):  # noqa: N818 - an instruction, not an error
    """Raised by a handler whose request gets no answer but must not fail unnoticed: the
    transport closes the connection once what was already written is sent. Kafka does
    this for an acks=0 produce that failed (KafkaApis.handleProduceRequest), so that the
    producer notices and refreshes its metadata. The message says why, for the log."""


# From Fetch v15 a follower names itself in replica_state, with its broker epoch (KIP-903).
FETCH_REPLICA_STATE_VERSION = 15


def fetch_replica(req: Any, version: int) -> tuple[int, int]:
    """(replica id, broker epoch) of a follower's Fetch, (-1, -1) for a consumer's: the
    fetch handler serves by it, and the transport's quotas exempt followers by it."""
    if version >= FETCH_REPLICA_STATE_VERSION:
        state = req.replica_state
        return int(state.replica_id), int(state.replica_epoch)
    return int(getattr(req, "replica_id", -1)), -1


@dataclass(frozen=True, slots=True)
class ApiSpec(Generic[N]):
    """One API the broker serves, with exactly the versions it implements, and its handler,
    which needs a node with the services ``N`` names."""

    api_key: int
    min_version: int
    max_version: int
    handler: Callable[[N, RequestContext, Any], Awaitable[Payload | None]]
    # The first version Kafka's own brokers mark unstable (its message JSON's
    # "latestVersionUnstable"): served and advertised only with unstable.api.versions.enable,
    # as Kafka does, since its schema may still change in a later Kafka.
    unstable_from: int | None = None

    def stable(self) -> ApiSpec[N]:
        """This API without its unstable versions."""
        if self.unstable_from is None or self.unstable_from > self.max_version:
            return self
        return dataclasses.replace(self, max_version=self.unstable_from - 1,
                                   unstable_from=None)

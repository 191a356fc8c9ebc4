"""What every request handler sees: the request context and the spec it registers under."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from odradek.broker.kafka.codec import build_response


@dataclass(frozen=True, slots=True)
class RequestContext:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    client_host: str
    connection_id: int
    listener_name: str = "PLAINTEXT"

    def respond(self, data: dict[str, Any]) -> Any:
        """The response entity for this request's API and version, built from plain data."""
        return build_response(self.api_key, self.api_version, data)


# handler(node, ctx, request_body) -> response body (or None: no response, e.g. acks=0)
Handler = Callable[[Any, RequestContext, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """One API the broker serves, with exactly the versions it implements."""

    api_key: int
    min_version: int
    max_version: int
    handler: Handler

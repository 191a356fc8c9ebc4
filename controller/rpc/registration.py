"""Registering gRPC servicers so that undecodable requests are refused quietly.

When a request's bytes are not the method's protobuf message, grpc's aio server answers
UNKNOWN and logs the DecodeError with a traceback at ERROR level, once per request: anyone
who reaches the controller port could flood a node's log. Registered through ``register``,
a method's request is decoded by a deserializer that cannot raise; the servicer is not
called for bytes that do not decode, and the caller gets INVALID_ARGUMENT naming the message
type instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError


@dataclass(frozen=True, slots=True)
class _Undecodable:
    message_type: str
    error: str


def _safe(deserializer: Callable[[bytes], Any], message_type: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as e:
            return _Undecodable(message_type, str(e))

    return deserialize


async def _refuse(context: grpc.aio.ServicerContext, bad: _Undecodable) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"the request is not a valid {bad.message_type}: {bad.error}")


def _guard_unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            await _refuse(context, request)
        return await behavior(request, context)

    return unary


def _guard_stream(behavior: Callable[..., AsyncIterator[Any]]
                  ) -> Callable[..., AsyncIterator[Any]]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if isinstance(request, _Undecodable):
            await _refuse(context, request)
        async for item in behavior(request, context):
            yield item

    return stream


def _guarded(service: str, handlers: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, h in handlers.items():
        if h.request_streaming:
            raise NotImplementedError(f"{service}/{name}: client streaming is not guarded")
        message_type = f"{service}/{name} request"
        deserialize = _safe(h.request_deserializer, message_type)
        if h.response_streaming:
            out[name] = h._replace(request_deserializer=deserialize,
                                   unary_stream=_guard_stream(h.unary_stream))
        else:
            out[name] = h._replace(request_deserializer=deserialize,
                                   unary_unary=_guard_unary(h.unary_unary))
    return out


class _Capture:
    """Stands in for the server while a generated ``add_*_to_server`` runs."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # rebuilt from the registered handlers below

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        guarded = _guarded(service, handlers)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, guarded),))
        self._server.add_registered_method_handlers(service, guarded)


def register(server: grpc.aio.Server, add_to_server: Callable[[Any, Any], None],
             servicer: object) -> None:
    """``add_to_server(servicer, server)`` (a generated ``add_*Servicer_to_server``), with
    every method's request decoding guarded."""
    add_to_server(servicer, _Capture(server))

"""SaslHandshake and SaslAuthenticate where no SASL exchange is due.

On SASL listeners the transport answers both itself, before any handler runs (the
connection's authentication state lives there: broker/security/authentication.py). These
handlers see only what reaches a node outside that: a SASL request on a PLAINTEXT or SSL
listener, answered as Kafka's KafkaApis does, with ILLEGAL_SASL_STATE.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.api import ApiSpec, RequestContext


async def handle_sasl_handshake(node: object, ctx: RequestContext, req: Any) -> Payload:
    return ctx.respond({"error_code": ErrorCode.illegal_sasl_state, "mechanisms": []})


async def handle_sasl_authenticate(node: object, ctx: RequestContext, req: Any) -> Payload:
    return ctx.respond({"error_code": ErrorCode.illegal_sasl_state,
                        "error_message": f"listener {ctx.listener_name} does not use SASL",
                        "auth_bytes": b""})


APIS: list[ApiSpec[object]] = [
    ApiSpec(17, 0, 1, handle_sasl_handshake),
    ApiSpec(36, 0, 2, handle_sasl_authenticate),
]

"""What every SASL mechanism's server side has in common: the step interface the transport
drives, the value one step yields and the one error a failed exchange raises.

The mechanisms are sans-I/O state machines (``plain.PlainServer``, ``scram.ScramServer``):
the transport feeds each SaslAuthenticate request's ``auth_bytes`` to ``step`` and sends
the returned challenge back. A ``SaslFailure`` becomes a SaslAuthenticate response with
error code SASL_AUTHENTICATION_FAILED and the failure's message; Kafka then closes the
connection, and so should the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# The mechanisms this broker can serve, in the order SaslHandshake lists them.
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")

# SaslAuthenticate's error code for every SaslFailure (Kafka's SASL_AUTHENTICATION_FAILED).
SASL_AUTHENTICATION_FAILED = 58


class SaslFailure(Exception):
    """The exchange failed; ``str(failure)`` is sent to the client as the SaslAuthenticate
    error message.

    Messages are written for the client to read, so they never say whether the user exists
    or the password was wrong: a credential failure has one generic message per mechanism.
    A malformed or unsupported request may say what is wrong with it, since that depends
    on the client's bytes alone.
    """


@dataclass(frozen=True)
class SaslStep:
    """What one step yields: the bytes to send back (SaslAuthenticate ``auth_bytes``, empty
    when the mechanism has nothing to say) and, once the client is authenticated, its
    principal ("User:alice"); None while the exchange goes on."""

    challenge: bytes
    principal: str | None
    # How long the credential stays valid (ms), when it expires (an OAUTHBEARER token):
    # the session ends then at the latest (KIP-368).
    lifetime_ms: int | None = None

    @property
    def complete(self) -> bool:
        return self.principal is not None


class SaslServer(Protocol):
    """The server side of one authentication exchange on one connection.

    ``step`` raises ``SaslFailure`` when the client's response is refused, and on every
    call after the exchange has completed or failed: a server is used once.
    """

    mechanism: str

    def step(self, response: bytes) -> SaslStep: ...

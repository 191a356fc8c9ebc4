"""One connection's SASL authentication, as a state machine (Kafka's
SaslServerAuthenticator), without I/O: the transport asks it whether each request may be
served and hands it SaslHandshake and SaslAuthenticate; it answers with what to send.

Kafka's rules, which clients rely on:

* Before authentication only ApiVersions, SaslHandshake and SaslAuthenticate are served;
  anything else closes the connection (Kafka: "Unexpected Kafka request of type ... during
  SASL handshake").
* SaslHandshake v1 names the mechanism; the tokens then travel in SaslAuthenticate
  requests. After SaslHandshake v0 they travel bare, each a size-prefixed frame without a
  Kafka header, both ways (``raw_tokens``); older librdkafka (kcat) still speaks it. An
  unknown mechanism is answered UNSUPPORTED_SASL_MECHANISM with the enabled ones, and the
  connection is closed.
* A failed exchange is answered SASL_AUTHENTICATION_FAILED and the connection closed,
  after ``connection.failed.authentication.delay.ms``.
* With ``connections.max.reauth.ms`` the session lasts that long (KIP-368): SaslAuthenticate
  v1+ tells the client, which re-authenticates on the same connection with the same
  mechanism and principal before it ends; a connection whose session has ended is closed
  at its next request other than the re-authentication's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from odradek.broker.security.sasl import SaslFailure, SaslServer

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
API_VERSIONS = 18
_BEFORE_AUTHENTICATION = frozenset({API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE})


class State(enum.Enum):
    HANDSHAKE = "waiting for SaslHandshake"
    AUTHENTICATE = "waiting for SaslAuthenticate"
    AUTHENTICATED = "authenticated"
    REAUTH_AUTHENTICATE = "re-authenticating"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send back, and whether to close the connection afterwards (delayed by
    ``connection.failed.authentication.delay.ms`` when ``failed``)."""

    error_code: ErrorCode
    error_message: str | None = None
    auth_bytes: bytes = b""
    session_lifetime_ms: int = 0
    mechanisms: tuple[str, ...] = ()
    close: bool = False
    failed: bool = False
    # A session renewed on its connection (KIP-368), not a first login.
    reauthenticated: bool = False


class Authenticator:
    def __init__(self, mechanisms: Sequence[str], new_server: Callable[[str], SaslServer],
                 reauth_ms: int, clock: Callable[[], float]) -> None:
        self.mechanisms = tuple(mechanisms)
        self._new_server = new_server
        self._reauth_ms = reauth_ms
        self._clock = clock
        self.state = State.HANDSHAKE
        self.principal: str | None = None
        self.mechanism: str | None = None
        self._server: SaslServer | None = None
        self._expires_at: float | None = None  # monotonic seconds; None = never
        # After SaslHandshake v0: the next frames are bare SASL tokens.
        self.raw_tokens = False

    @property
    def authenticated(self) -> bool:
        return self.principal is not None

    def refusal(self, api_key: int) -> str | None:
        """Why the connection must close rather than serve this request, if it must."""
        if api_key in _BEFORE_AUTHENTICATION:
            return None
        if self.state in (State.HANDSHAKE, State.AUTHENTICATE, State.FAILED) \
                and self.principal is None:
            return (f"request (api key {api_key}) before SASL authentication completed; "
                    "configure the client's security.protocol and sasl.mechanism")
        if self.state is State.REAUTH_AUTHENTICATE:
            return f"request (api key {api_key}) in the middle of a re-authentication"
        if self._expires_at is not None and self._clock() >= self._expires_at:
            return ("the SASL session expired (connections.max.reauth.ms) and the client "
                    "did not re-authenticate")
        return None

    def handshake(self, mechanism: str, version: int = 1) -> Answer:
        if self.state is State.AUTHENTICATED:
            if version == 0:
                self.state = State.FAILED
                return Answer(ErrorCode.illegal_sasl_state,
                              "re-authentication needs SaslHandshake v1", close=True)
            # KIP-368: a re-authentication starts with a new handshake.
            if mechanism != self.mechanism:
                self.state = State.FAILED
                return Answer(ErrorCode.illegal_sasl_state,
                              f"re-authentication must use {self.mechanism}, not "
                              f"{mechanism}", close=True, failed=True)
            self._server = self._new_server(mechanism)
            self.state = State.REAUTH_AUTHENTICATE
            return Answer(ErrorCode.none, mechanisms=self.mechanisms)
        if self.state is not State.HANDSHAKE:
            self.state = State.FAILED
            return Answer(ErrorCode.illegal_sasl_state,
                          f"unexpected SaslHandshake while {self.state.value}", close=True)
        if mechanism not in self.mechanisms:
            self.state = State.FAILED
            return Answer(ErrorCode.unsupported_sasl_mechanism,
                          f"mechanism {mechanism} is not enabled on this listener "
                          f"(enabled: {', '.join(self.mechanisms)})",
                          mechanisms=self.mechanisms, close=True)
        self.mechanism = mechanism
        self._server = self._new_server(mechanism)
        self.state = State.AUTHENTICATE
        self.raw_tokens = version == 0
        return Answer(ErrorCode.none, mechanisms=self.mechanisms)

    def authenticate(self, auth_bytes: bytes, version: int) -> Answer:
        if self.state not in (State.AUTHENTICATE, State.REAUTH_AUTHENTICATE) \
                or self._server is None:
            was = self.state
            self.state = State.FAILED
            message = ("SaslAuthenticate request received after successful authentication"
                       if was is State.AUTHENTICATED
                       else f"unexpected SaslAuthenticate while {was.value}")
            return Answer(ErrorCode.illegal_sasl_state, message, close=True)
        try:
            step = self._server.step(auth_bytes)
        except SaslFailure as e:
            self.state = State.FAILED
            self._server = None
            return Answer(ErrorCode.sasl_authentication_failed, str(e), close=True,
                          failed=True)
        if step.principal is None:
            return Answer(ErrorCode.none, auth_bytes=step.challenge)
        if self.state is State.REAUTH_AUTHENTICATE and step.principal != self.principal:
            self.state = State.FAILED
            return Answer(ErrorCode.sasl_authentication_failed,
                          "re-authentication must keep the principal "
                          f"{self.principal}", close=True, failed=True)
        renewed = self.state is State.REAUTH_AUTHENTICATE
        self.principal = step.principal
        self.state = State.AUTHENTICATED
        self._server = None
        self.raw_tokens = False
        lifetime = 0
        # The session ends with connections.max.reauth.ms, or with the credential if it
        # expires sooner (an OAUTHBEARER token), as Kafka's SaslServerAuthenticator does.
        limits = [ms for ms in (self._reauth_ms if self._reauth_ms > 0 else None,
                                step.lifetime_ms) if ms is not None]
        if limits:
            session_ms = min(limits)
            self._expires_at = self._clock() + session_ms / 1000
            # A client too old to re-authenticate (SaslAuthenticate v0) cannot be told;
            # its connection is closed at its first request after the session ends.
            lifetime = session_ms if version >= 1 else 0
        return Answer(ErrorCode.none, auth_bytes=step.challenge, session_lifetime_ms=lifetime,
                      reauthenticated=renewed)

"""The server side of SASL/OAUTHBEARER (RFC 7628) with unsecured JSON Web Tokens, as
Kafka's OAuthBearerSaslServer and OAuthBearerUnsecuredValidatorCallbackHandler do it: the
mode Kafka ships for development, where tokens are not signed (``alg: none``) and anybody
can claim to be anybody. It authenticates nothing; it lets applications written for an
OAuth-secured Kafka run against a development cluster. Production OAuth (a JWKS endpoint,
signed tokens) is not supported.

The client's first message is ``n,[a=<authzid>],`` then ``\\x01``-separated ``key=value``
pairs, one of them ``auth=Bearer <token>``, ending ``\\x01\\x01``. The token is
``base64url(header).base64url(claims).`` with no signature. It is valid when its header
says ``alg: none``, its claims name the principal (``sub``, or the claim the JAAS option
``unsecuredValidatorPrincipalClaimName`` names), ``exp`` is in the future and ``iat`` not
in the future (both within ``unsecuredValidatorAllowableClockSkewMs``), and its ``scope``
holds every scope of ``unsecuredValidatorRequiredScope``. A refused token gets Kafka's
error challenge (``{"status":"invalid_token"}``); the client answers ``\\x01`` and the
exchange fails with the reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from odradek.broker.security.sasl import SaslFailure, SaslStep

MECHANISM = "OAUTHBEARER"
_KVSEP = "\x01"
# Kafka's OAuthBearerClientInitialResponse: the GS2 header, then the key/value pairs.
_RESPONSE = re.compile(r"n,(a=(?P<authzid>[^,]*))?,\x01(?P<kvpairs>.*)\x01\x01", re.DOTALL)
_AUTH = re.compile(r"(?P<scheme>[\w]+)[ ]+(?P<token>[-_.a-zA-Z0-9]+)")
_KEY = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class UnsecuredValidatorOptions:
    """The JAAS options of Kafka's unsecured validator (OAuthBearerLoginModule's entry in
    ``listener.name.<listener>.oauthbearer.sasl.jaas.config``)."""

    principal_claim: str = "sub"
    required_scope: tuple[str, ...] = ()
    clock_skew_ms: int = 0

    @classmethod
    def from_jaas(cls, options: Mapping[str, str]) -> UnsecuredValidatorOptions:
        """Raises ValueError naming the option that is not valid."""
        claim = options.get("unsecuredValidatorPrincipalClaimName", "sub").strip() or "sub"
        scope = tuple(s for s in re.split(r"[ ,]+",
                                          options.get("unsecuredValidatorRequiredScope", ""))
                      if s)
        skew_text = options.get("unsecuredValidatorAllowableClockSkewMs", "0")
        try:
            skew = int(skew_text)
        except ValueError:
            raise ValueError(f"unsecuredValidatorAllowableClockSkewMs: {skew_text!r} is not a "
                             "whole number of milliseconds") from None
        if skew < 0:
            raise ValueError("unsecuredValidatorAllowableClockSkewMs must not be negative")
        return cls(claim, scope, skew)


@dataclass(frozen=True, slots=True)
class ValidToken:
    principal: str
    expires_at_ms: int  # epoch ms


class OAuthBearerServer:
    """One SASL/OAUTHBEARER exchange. ``clock_ms`` is wall-clock time in epoch ms (tokens
    carry epoch seconds)."""

    mechanism = MECHANISM

    def __init__(self, options: UnsecuredValidatorOptions,
                 clock_ms: Callable[[], float]) -> None:
        self._options = options
        self._clock_ms = clock_ms
        self._error: str | None = None  # the reason of a refused token, told at the end
        self._done = False
        self.expires_at_ms: int | None = None  # the token's, once authenticated

    def step(self, response: bytes) -> SaslStep:
        if self._done:
            raise SaslFailure("Authentication failed: the SASL/OAUTHBEARER exchange is over; "
                              "reconnect to authenticate again")
        if self._error is not None:
            # The client acknowledged the error challenge (RFC 7628 3.2.3): now fail.
            self._done = True
            if response != _KVSEP.encode():
                raise SaslFailure("Authentication failed: expected the client's \\x01 after "
                                  f"an error challenge; {self._error}")
            raise SaslFailure(f"Authentication failed: {self._error}")
        try:
            token = self._validate(_parse_initial_response(response))
        except _InvalidToken as e:
            self._error = str(e)
            return SaslStep(challenge=json.dumps(e.challenge, separators=(",", ":")).encode(),
                            principal=None)
        self._done = True
        self.expires_at_ms = token.expires_at_ms
        return SaslStep(challenge=b"", principal=f"User:{token.principal}",
                        lifetime_ms=max(0, math.floor(token.expires_at_ms - self._clock_ms())))

    def _validate(self, jws: str) -> ValidToken:
        header, claims = _decode_unsecured_jws(jws)
        if header.get("alg") != "none":
            raise _InvalidToken("the token is signed (alg is not none); this broker "
                                "validates unsecured tokens only")
        now = self._clock_ms()
        skew = self._options.clock_skew_ms
        exp = _number_claim(claims, "exp")
        if exp is None:
            raise _InvalidToken("the token has no exp (expiration) claim")
        if exp * 1000 + skew <= now:
            raise _InvalidToken(f"the token expired at {exp:.0f} (epoch seconds)")
        iat = _number_claim(claims, "iat")
        if iat is not None and iat * 1000 - skew > now:
            raise _InvalidToken("the token is issued in the future (iat)")
        principal = claims.get(self._options.principal_claim)
        if not isinstance(principal, str) or not principal.strip():
            raise _InvalidToken(f"the token has no {self._options.principal_claim!r} claim "
                                "naming the principal")
        missing = [s for s in self._options.required_scope if s not in _scopes(claims)]
        if missing:
            raise _InvalidToken(f"the token lacks the required scope {' '.join(missing)}",
                                scope=" ".join(self._options.required_scope))
        return ValidToken(principal.strip(), math.floor(exp * 1000))


class _InvalidToken(Exception):
    def __init__(self, reason: str, scope: str | None = None) -> None:
        super().__init__(reason)
        # Kafka's error challenge (OAuthBearerSaslServer.jsonErrorResponse).
        self.challenge: dict[str, str] = {"status": "invalid_token"}
        if scope is not None:
            self.challenge["scope"] = scope


def _parse_initial_response(response: bytes) -> str:
    """The token of the client's first message; SaslFailure when the message is not one."""
    try:
        text = response.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslFailure("Authentication failed: the SASL/OAUTHBEARER message is not valid "
                          "UTF-8") from None
    m = _RESPONSE.fullmatch(text)
    if m is None:
        raise SaslFailure("Authentication failed: invalid SASL/OAUTHBEARER client first "
                          "message: expected n,[a=authzid],\\x01auth=Bearer <token>\\x01\\x01")
    pairs: dict[str, str] = {}
    for kv in m.group("kvpairs").split(_KVSEP):
        key, sep, value = kv.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise SaslFailure(f"Authentication failed: invalid SASL/OAUTHBEARER key/value "
                              f"pair {kv[:40]!r}")
        pairs[key] = value
    auth = _AUTH.fullmatch(pairs.get("auth", ""))
    if auth is None or auth.group("scheme").lower() != "bearer":
        raise SaslFailure("Authentication failed: the SASL/OAUTHBEARER message has no "
                          "auth=Bearer <token> pair")
    return auth.group("token")


def _b64url(part: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested deeper than the parser goes, which only a hostile
        # token does.
        raise _InvalidToken("the token is not base64url-encoded JSON") from None


def _decode_unsecured_jws(jws: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = jws.split(".")
    if len(parts) != 3:
        raise _InvalidToken("the token is not a JWS (three dot-separated parts)")
    if parts[2]:
        raise _InvalidToken("the token is signed; this broker validates unsecured tokens only")
    header, claims = _b64url(parts[0]), _b64url(parts[1])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _InvalidToken("the token's header and claims must be JSON objects")
    return header, claims


def _number_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _InvalidToken(f"the token's {name} claim is not a number")
    return float(value)


def _scopes(claims: Mapping[str, Any]) -> set[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return set(scope.split())
    if isinstance(scope, list):
        return {s for s in scope if isinstance(s, str)}
    return set()


def unsecured_jws(claims: Mapping[str, Any]) -> str:
    """An unsecured token with these claims (what Kafka's unsecured login module and
    librdkafka's unsecure JWT make): for tests and tools."""
    def part(obj: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part(dict(claims))}."

"""The client side of SASL PLAIN and SCRAM, for this node's own connections to other
brokers (replication, transaction markers) and for the admin CLI. Sans-I/O: ``first()``
is the first SaslAuthenticate token; ``step(challenge)`` answers each server message and
returns None when the exchange is complete."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from odradek.broker.security.scram import random_nonce
from odradek.controller.metadata.scram import MIN_ITERATIONS


@dataclass(frozen=True, slots=True)
class ClientSecurity:
    """How to connect to a broker's listener: TLS (``ssl`` set) and SASL
    (``sasl`` = mechanism, username, password)."""

    ssl: ssl.SSLContext | None = None
    sasl: tuple[str, str, str] | None = None


class SaslClientError(Exception):
    """The server's messages do not add up (a wrong server signature: not the broker the
    credential was made with)."""


class PlainClient:
    def __init__(self, username: str, password: str) -> None:
        self._token = b"\0" + username.encode() + b"\0" + password.encode()

    def first(self) -> bytes:
        return self._token

    def step(self, challenge: bytes) -> bytes | None:
        return None


def _escape(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    def __init__(self, mechanism: str, username: str, password: str,
                 nonce: str | None = None) -> None:
        self._hash = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
        self._password = password.encode()
        self._nonce = nonce or random_nonce()
        self._first_bare = f"n={_escape(username)},r={self._nonce}"
        self._server_signature: bytes | None = None

    def first(self) -> bytes:
        return ("n,," + self._first_bare).encode()

    def step(self, challenge: bytes) -> bytes | None:
        if self._server_signature is None:
            return self._final(challenge.decode())
        attrs = dict(part.split("=", 1) for part in challenge.decode().split(",") if "=" in part)
        if "e" in attrs:
            raise SaslClientError(f"the broker refused the authentication: {attrs['e']}")
        if not hmac.compare_digest(base64.b64decode(attrs.get("v", "")), self._server_signature):
            raise SaslClientError("the broker's SCRAM signature is wrong: it does not hold "
                                  "this user's credential")
        return None

    def _final(self, server_first: str) -> bytes:
        attrs = dict(part.split("=", 1) for part in server_first.split(",") if "=" in part)
        nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self._nonce) or iterations < MIN_ITERATIONS:
            raise SaslClientError("the broker's SCRAM challenge is invalid")
        salted = hashlib.pbkdf2_hmac(self._hash, self._password, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", self._hash)
        stored_key = hashlib.new(self._hash, client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, self._hash)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", self._hash)
        self._server_signature = hmac.digest(server_key, auth_message, self._hash)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def client_for(mechanism: str, username: str, password: str) -> PlainClient | ScramClient:
    if mechanism == "PLAIN":
        return PlainClient(username, password)
    return ScramClient(mechanism, username, password)


# (api key, version, request data) to send, answered with the decoded response.
SaslRequest = tuple[int, int, dict[str, object]]


def exchange(mechanism: str, username: str, password: str
             ) -> Generator[SaslRequest, Any, None]:
    """A whole SASL login as the requests to send, for a client of either kind (blocking or
    asyncio) to drive: SaslHandshake v1, then SaslAuthenticate v2 until the mechanism is
    done. Each ``yield`` takes the decoded response; a refusal raises SaslClientError."""
    handshake = yield 17, 1, {"mechanism": mechanism}
    if handshake.error_code != 0:
        raise SaslClientError(
            f"the broker refused SASL mechanism {mechanism} ({handshake.error_code.name}; "
            f"it enables {', '.join(handshake.mechanisms)})")
    client = client_for(mechanism, username, password)
    token: bytes | None = client.first()
    while token is not None:
        answer = yield 36, 2, {"auth_bytes": token}
        if answer.error_code != 0:
            raise SaslClientError(answer.error_message or answer.error_code.name)
        token = client.step(bytes(answer.auth_bytes))

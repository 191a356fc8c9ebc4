"""The server side of SASL/PLAIN (RFC 4616), as Kafka's PlainSaslServer does it.

One round: the client sends ``[authzid] NUL username NUL password`` in UTF-8, the server
answers with an empty challenge and the client is ``User:<username>``. The passwords come
from the caller (on a Kafka broker, the ``user_<name>`` options of the PlainLoginModule
entry in ``sasl.jaas.config``, see ``jaas.plain_users``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from odradek.broker.security.sasl import SaslFailure, SaslStep

# Kafka's own messages, so clients and operators see what they would see with Kafka.
INVALID_CREDENTIALS = "Authentication failed: Invalid username or password"
AUTHZID_MISMATCH = ("Authentication failed: Client requested an authorization id that is "
                    "different from username")
LOOKUP_FAILED = "Authentication failed: credentials for user could not be verified"


class PlainServer:
    """One SASL/PLAIN exchange. ``lookup`` gives a user's configured password, or None
    when there is no such user."""

    mechanism = "PLAIN"

    def __init__(self, lookup: Callable[[str], str | None]) -> None:
        self._lookup = lookup
        self._used = False

    def step(self, response: bytes) -> SaslStep:
        if self._used:
            raise SaslFailure("Authentication failed: the SASL/PLAIN exchange is already over; "
                              "reconnect to authenticate again")
        # PLAIN has a single round: whatever happens, the next call is out of turn.
        self._used = True
        authzid, username, password = _parse(response)
        self._verify(username, password)
        # Checked after the password, as Kafka does, so it tells nothing to whoever does
        # not know the password.
        if authzid and authzid != username:
            raise SaslFailure(AUTHZID_MISMATCH)
        return SaslStep(challenge=b"", principal=f"User:{username}")

    def _verify(self, username: str, password: str) -> None:
        try:
            expected = self._lookup(username)
        except Exception as exc:
            raise SaslFailure(LOOKUP_FAILED) from exc
        given = password.encode("utf-8")
        # An unknown user costs the same comparison as a known one.
        known = expected is not None
        reference = expected.encode("utf-8") if expected is not None else given
        if not (hmac.compare_digest(given, reference) and known):
            raise SaslFailure(INVALID_CREDENTIALS)


def _parse(response: bytes) -> tuple[str, str, str]:
    """``[authzid] NUL authcid NUL passwd`` -> (authzid, username, password)."""
    try:
        text = response.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslFailure(
            "Authentication failed: the SASL/PLAIN message is not valid UTF-8") from None
    parts = text.split("\0")
    if len(parts) != 3:
        raise SaslFailure("Authentication failed: invalid SASL/PLAIN message: expected "
                          "[authzid] NUL username NUL password")
    authzid, username, password = parts
    if not username:
        raise SaslFailure("Authentication failed: username not specified")
    if not password:
        raise SaslFailure("Authentication failed: password not specified")
    return authzid, username, password

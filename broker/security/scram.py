"""The server side of SASL/SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka's
ScramSaslServer does it, and the credentials it checks against.

Two rounds::

    client-first   n,[a=authzid],n=<user>,r=<client nonce>[,<extensions>]
    server-first   r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
    client-final   c=<base64 gs2 header>,r=<nonce>[,<extensions>],p=<base64 proof>
    server-final   v=<base64 server signature>

The server keeps only ``ScramCredential`` (salt, StoredKey, ServerKey, iterations), never
the password. As in Kafka: no channel binding, no SASLprep (the password's UTF-8 bytes are
hashed as they are, so credentials made by Kafka's tools or clients match), an unknown
user fails at the first message, and delegation tokens (the ``tokenauth`` extension) are
refused because this broker has none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from odradek.broker.security.sasl import SaslFailure, SaslStep
from odradek.controller.metadata import scram as stored_scram
from odradek.controller.metadata.scram import MAX_ITERATIONS, MIN_ITERATIONS

# The key derivation and the bounds are the metadata layer's: the controller derives the
# stored keys when a credential is altered, and logins must check against the same thing.
SCRAM_MECHANISMS = tuple(stored_scram.MECHANISM_CODES)


@dataclass(frozen=True)
class ScramCredential:
    """What the server stores for one user and mechanism. The keys stay out of ``repr``:
    with a captured exchange, StoredKey gives away the ClientKey."""

    salt: bytes
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    iterations: int


def _hash_name(mechanism: str) -> str:
    return stored_scram.hash_name(mechanism)


def check_iterations(iterations: int) -> None:
    """Raise ValueError unless ``iterations`` is within Kafka's bounds."""
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"SCRAM iterations must be between {MIN_ITERATIONS} and "
                         f"{MAX_ITERATIONS}, got {iterations}")


def credential_from_salted_password(mechanism: str, salted_password: bytes, salt: bytes,
                                    iterations: int) -> ScramCredential:
    """The credential for a SaltedPassword, which is what AlterUserScramCredentials
    carries (the client derives it; the password never reaches the broker)."""
    check_iterations(iterations)
    stored = stored_scram.credential_from_salted_password(mechanism, salted_password, salt,
                                                          iterations)
    return ScramCredential(stored.salt, stored.stored_key, stored.server_key, stored.iterations)


def derive_credential(mechanism: str, password: str, salt: bytes,
                      iterations: int) -> ScramCredential:
    """The credential for a password: SaltedPassword = Hi(password, salt, iterations),
    Hi being PBKDF2 with the mechanism's HMAC."""
    check_iterations(iterations)
    salted = stored_scram.salted_password(mechanism, password, salt, iterations)
    return credential_from_salted_password(mechanism, salted, salt, iterations)


def random_nonce() -> str:
    """A server nonce: 192 random bits in URL-safe base64, whose characters are all
    printable and never a comma, as a SCRAM nonce must be."""
    return secrets.token_urlsafe(24)


def invalid_credentials(mechanism: str) -> str:
    """The one message every credential failure gets (Kafka's, word for word)."""
    return ("Authentication failed during authentication due to invalid credentials with "
            f"SASL mechanism {mechanism}")


AUTHZID_MISMATCH = ("Authentication failed: Client requested an authorization id that is "
                    "different from username")
TOKEN_AUTH_REFUSED = ("Authentication failed: delegation tokens (SCRAM extension "
                      "tokenauth=true) are not supported by this broker; authenticate with "
                      "a SCRAM user's username and password")


def _malformed(what: str) -> SaslFailure:
    return SaslFailure(f"Authentication failed: invalid SCRAM message: {what}")


@dataclass(frozen=True)
class _ClientFirst:
    gs2_header: str
    bare: str  # client-first-message-bare, part of the AuthMessage as sent
    username: str
    nonce: str


@dataclass(frozen=True)
class _ClientFinal:
    channel_binding: bytes
    nonce: str
    proof: bytes
    without_proof: str  # client-final-message-without-proof, part of the AuthMessage


def _decode(response: bytes) -> str:
    try:
        text = response.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("not valid UTF-8") from None
    if "\0" in text:
        raise _malformed("NUL character")
    return text


def _sasl_name(value: str, what: str) -> str:
    """RFC 5802's saslname: ',' and '=' travel as '=2C' and '=3D', any other '=' is
    malformed."""
    if not value:
        raise _malformed(f"empty {what}")
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] != "=":
            out.append(value[i])
            i += 1
        elif value[i + 1:i + 3] == "2C":
            out.append(",")
            i += 3
        elif value[i + 1:i + 3] == "3D":
            out.append("=")
            i += 3
        else:
            raise _malformed(f"{what} has '=' not followed by 2C or 3D")
    return "".join(out)


def _printable(nonce: str) -> bool:
    return bool(nonce) and all("\x21" <= c <= "\x7e" and c != "," for c in nonce)


def _attribute(part: str, name: str, message: str) -> str:
    if not part.startswith(name + "="):
        raise _malformed(f"{message}: expected '{name}=' here (RFC 5802 fixes the order of "
                         "the attributes)")
    return part[len(name) + 1:]


def _extensions(parts: list[str], message: str) -> dict[str, str]:
    """``name=value`` attributes after the nonce; names are letters (Kafka's ``tokenauth``
    is longer than RFC 5802's one-letter attributes)."""
    extensions: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if not (sep and value and name.isascii() and name.isalpha()):
            raise _malformed(f"{message} has a malformed extension")
        extensions[name] = value
    return extensions


def _parse_client_first(text: str) -> _ClientFirst:
    if text.startswith(("y,", "p=")):
        raise SaslFailure("Authentication failed: SCRAM channel binding is not supported; "
                          "use SCRAM without channel binding (gs2 header 'n,,')")
    if not text.startswith("n,"):
        raise _malformed("the client-first message must start with the gs2 header 'n,'")
    authz_end = text.find(",", 2)
    if authz_end < 0:
        raise _malformed("the client-first message has no username")
    authz = text[2:authz_end]
    authzid = (_sasl_name(_attribute(authz, "a", "the gs2 header"), "authorization id")
               if authz else "")
    gs2_header, bare = text[:authz_end + 1], text[authz_end + 1:]
    parts = bare.split(",")
    if parts[0].startswith("m="):
        raise _malformed("mandatory extensions (m=) are not supported")
    if len(parts) < 2:
        raise _malformed("the client-first message must carry n=<username>,r=<nonce>")
    username = _sasl_name(_attribute(parts[0], "n", "the client-first message"), "username")
    nonce = _attribute(parts[1], "r", "the client-first message")
    if not _printable(nonce):
        raise _malformed("the client nonce must be printable ASCII without ','")
    extensions = _extensions(parts[2:], "the client-first message")
    # Before any lookup, so that neither answer depends on whether the user exists.
    if authzid and authzid != username:
        raise SaslFailure(AUTHZID_MISMATCH)
    if extensions.get("tokenauth", "").lower() == "true":
        raise SaslFailure(TOKEN_AUTH_REFUSED)
    return _ClientFirst(gs2_header=gs2_header, bare=bare, username=username, nonce=nonce)


def _base64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not valid base64") from None


def _parse_client_final(text: str) -> _ClientFinal:
    parts = text.split(",")
    if len(parts) < 3:
        raise _malformed("the client-final message must carry c=<binding>,r=<nonce>,p=<proof>")
    message = "the client-final message"
    channel_binding = _base64(_attribute(parts[0], "c", message), "the channel binding")
    nonce = _attribute(parts[1], "r", message)
    _extensions(parts[2:-1], message)
    proof = _base64(_attribute(parts[-1], "p", message), "the client proof")
    return _ClientFinal(channel_binding=channel_binding, nonce=nonce, proof=proof,
                        without_proof=",".join(parts[:-1]))


class _State(Enum):
    CLIENT_FIRST = "client-first"
    CLIENT_FINAL = "client-final"
    COMPLETE = "complete"
    FAILED = "failed"


class ScramServer:
    """One SCRAM exchange. ``lookup`` gives a user's credential for this mechanism, or None
    when there is none; ``nonce`` makes the server's part of the nonce (tests inject it).
    """

    def __init__(self, mechanism: str, lookup: Callable[[str], ScramCredential | None],
                 nonce: Callable[[], str] = random_nonce) -> None:
        self.mechanism = mechanism
        self._hash = _hash_name(mechanism)
        self._lookup = lookup
        self._nonce = nonce
        self._state = _State.CLIENT_FIRST
        self._first: _ClientFirst | None = None
        self._nonce_sent = ""
        self._server_first = ""
        self._credential: ScramCredential | None = None

    def step(self, response: bytes) -> SaslStep:
        state, self._state = self._state, _State.FAILED
        try:
            if state is _State.CLIENT_FIRST:
                return self._on_client_first(response)
            if state is _State.CLIENT_FINAL:
                return self._on_client_final(response)
        finally:
            # Whether the exchange failed or completed, the secrets are no longer needed.
            if self._state is not _State.CLIENT_FINAL:
                self._first, self._credential = None, None
        self._state = state
        raise SaslFailure(f"Authentication failed: the {self.mechanism} exchange has already "
                          f"{'completed' if state is _State.COMPLETE else 'failed'}; "
                          "reconnect to authenticate again")

    def _on_client_first(self, response: bytes) -> SaslStep:
        first = _parse_client_first(_decode(response))
        try:
            credential = self._lookup(first.username)
        except Exception as exc:
            raise SaslFailure(invalid_credentials(self.mechanism)) from exc
        # Too few iterations is the server's misconfiguration, but Kafka refuses it the
        # same way as a missing user rather than hash with a weak credential.
        if credential is None or credential.iterations < MIN_ITERATIONS:
            raise SaslFailure(invalid_credentials(self.mechanism))
        salt = base64.b64encode(credential.salt).decode("ascii")
        self._nonce_sent = first.nonce + self._nonce()
        self._server_first = f"r={self._nonce_sent},s={salt},i={credential.iterations}"
        self._first, self._credential = first, credential
        self._state = _State.CLIENT_FINAL
        return SaslStep(challenge=self._server_first.encode("utf-8"), principal=None)

    def _on_client_final(self, response: bytes) -> SaslStep:
        first, credential = self._first, self._credential
        assert first is not None and credential is not None
        final = _parse_client_final(_decode(response))
        if final.channel_binding != first.gs2_header.encode("utf-8"):
            raise SaslFailure("Authentication failed: the channel binding (c=) of the SCRAM "
                              "client-final message does not match the gs2 header of the "
                              "client-first message")
        # Kafka's check (ScramSaslServer): the nonce must *end with* the one sent, not
        # equal it. librdkafka up to 2.x sends its client nonce again in front of the
        # combined one, and Kafka accepts that; the proof still covers the whole
        # client-final message, so nothing is weaker for it.
        if not final.nonce.endswith(self._nonce_sent):
            raise SaslFailure("Authentication failed: invalid nonce in the SCRAM "
                              "client-final message")
        auth_message = f"{first.bare},{self._server_first},{final.without_proof}".encode()
        if not self._proof_valid(credential, auth_message, final.proof):
            raise SaslFailure(invalid_credentials(self.mechanism))
        signature = hmac.digest(credential.server_key, auth_message, self._hash)
        self._state = _State.COMPLETE
        return SaslStep(challenge=b"v=" + base64.b64encode(signature),
                        principal=f"User:{first.username}")

    def _proof_valid(self, credential: ScramCredential, auth_message: bytes,
                     proof: bytes) -> bool:
        """ClientKey = proof XOR HMAC(StoredKey, AuthMessage); valid when H(ClientKey) is
        the StoredKey."""
        signature = hmac.digest(credential.stored_key, auth_message, self._hash)
        if len(proof) != len(signature):
            return False
        client_key = bytes(p ^ s for p, s in zip(proof, signature, strict=True))
        stored_key = hashlib.new(self._hash, client_key).digest()
        return hmac.compare_digest(stored_key, credential.stored_key)

"""SCRAM credentials as the metadata log stores them: the mechanisms, their Kafka type codes,
the iteration bounds and the derivation of StoredKey and ServerKey (RFC 5802).

The controller derives the keys from the SaltedPassword that AlterUserScramCredentials
carries (the client salts and hashes the password; the password never leaves it), and the
broker's SASL/SCRAM server (odradek.broker.security.scram) checks logins against them. Both
use this module, so the two cannot disagree about what a stored credential means.
"""

from __future__ import annotations

import hashlib
import hmac

from odradek.controller.metadata.image import ScramCredentialInfo

# Kafka's bounds for a credential's iteration count (ScramMechanism.minIterations and
# ScramControlManager.MAX_ITERATIONS).
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384

# Kafka's ScramMechanism type codes, as AlterUserScramCredentials, DescribeUserScramCredentials
# and UserScramCredentialRecord carry them; 0 is UNKNOWN.
UNKNOWN_MECHANISM = 0
MECHANISM_CODES: dict[str, int] = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
MECHANISM_NAMES: dict[int, str] = {code: name for name, code in MECHANISM_CODES.items()}
# mechanism -> hashlib name of its hash function.
_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


def hash_name(mechanism: str) -> str:
    try:
        return _HASHES[mechanism]
    except KeyError:
        raise ValueError(f"unknown SCRAM mechanism {mechanism!r}: use one of "
                         f"{', '.join(_HASHES)}") from None


def mechanism_name(code: int) -> str | None:
    """The mechanism a type code names; None for UNKNOWN or a code this version lacks."""
    return MECHANISM_NAMES.get(code)


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword = Hi(password, salt, iterations), Hi being PBKDF2 with the mechanism's
    HMAC: what a client sends in AlterUserScramCredentials. As in Kafka, the password's UTF-8
    bytes are used as they are (no SASLprep)."""
    return hashlib.pbkdf2_hmac(hash_name(mechanism), password.encode("utf-8"), salt,
                               iterations)


def credential_from_salted_password(mechanism: str, salted: bytes, salt: bytes,
                                    iterations: int) -> ScramCredentialInfo:
    """StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword,
    "Server Key"). Iterations are not checked here: the callers check them with their own
    error (UNACCEPTABLE_CREDENTIAL, or a refused login)."""
    name = hash_name(mechanism)
    client_key = hmac.digest(salted, b"Client Key", name)
    return ScramCredentialInfo(
        salt=salt,
        stored_key=hashlib.new(name, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", name),
        iterations=iterations,
    )

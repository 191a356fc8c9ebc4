"""One connection's SASL state machine (broker/security/authentication.py): Kafka's
SaslServerAuthenticator rules, driven without sockets."""

from __future__ import annotations

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.security.authentication import Authenticator, State
from odradek.broker.security.plain import PlainServer
from odradek.broker.security.sasl import SaslServer
from odradek.broker.security.sasl_client import ScramClient
from odradek.broker.security.scram import ScramServer, derive_credential

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
SCRAM = {"carol": derive_credential("SCRAM-SHA-512", "carol-secret", b"salt" * 4, 4096)}
PRODUCE, METADATA, API_VERSIONS = 0, 3, 18


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def servers(mechanism: str) -> SaslServer:
    if mechanism == "PLAIN":
        return PlainServer(USERS.get)
    return ScramServer(mechanism, SCRAM.get)


def auth(reauth_ms: int = 0, clock: Clock | None = None) -> Authenticator:
    return Authenticator(("PLAIN", "SCRAM-SHA-512"), servers, reauth_ms, clock or Clock())


def plain(user: str, password: str) -> bytes:
    return b"\0" + user.encode() + b"\0" + password.encode()


def test_only_versions_and_sasl_before_authentication() -> None:
    a = auth()
    assert a.refusal(API_VERSIONS) is None
    assert a.refusal(17) is None and a.refusal(36) is None
    assert "before SASL authentication" in (a.refusal(METADATA) or "")
    assert a.handshake("PLAIN").error_code == ErrorCode.none
    assert a.refusal(PRODUCE) is not None  # still not authenticated
    done = a.authenticate(plain("alice", "alice-secret"), 2)
    assert done.error_code == ErrorCode.none and not done.close
    assert a.principal == "User:alice" and a.state is State.AUTHENTICATED
    assert a.refusal(PRODUCE) is None


def test_unknown_mechanism_lists_the_enabled_ones_and_closes() -> None:
    answer = auth().handshake("GSSAPI")
    assert answer.error_code == ErrorCode.unsupported_sasl_mechanism
    assert answer.mechanisms == ("PLAIN", "SCRAM-SHA-512") and answer.close


@pytest.mark.parametrize("user,password", [("alice", "nope"), ("mallory", "x")])
def test_failed_login_is_delayed_and_closes(user: str, password: str) -> None:
    a = auth()
    a.handshake("PLAIN")
    answer = a.authenticate(plain(user, password), 2)
    assert answer.error_code == ErrorCode.sasl_authentication_failed
    assert answer.failed and answer.close
    assert answer.error_message == "Authentication failed: Invalid username or password"
    assert a.principal is None and a.refusal(PRODUCE) is not None


def test_scram_takes_two_rounds() -> None:
    a = auth()
    a.handshake("SCRAM-SHA-512")
    client = ScramClient("SCRAM-SHA-512", "carol", "carol-secret")
    first = a.authenticate(client.first(), 2)
    assert first.error_code == ErrorCode.none and a.principal is None
    final = a.authenticate(client.step(first.auth_bytes) or b"", 2)
    assert final.error_code == ErrorCode.none and a.principal == "User:carol"
    assert client.step(final.auth_bytes) is None  # the server proved it holds the key


def test_authenticate_without_handshake_or_twice_is_illegal() -> None:
    a = auth()
    answer = a.authenticate(plain("alice", "alice-secret"), 2)
    assert answer.error_code == ErrorCode.illegal_sasl_state and answer.close
    b = auth()
    b.handshake("PLAIN")
    b.authenticate(plain("alice", "alice-secret"), 2)
    again = b.authenticate(plain("alice", "alice-secret"), 2)
    assert again.error_code == ErrorCode.illegal_sasl_state
    assert "after successful authentication" in (again.error_message or "")


def test_v0_handshake_switches_to_bare_tokens_until_authenticated() -> None:
    a = auth()
    a.handshake("PLAIN", version=0)
    assert a.raw_tokens
    a.authenticate(plain("bob", "bob-secret"), 0)
    assert a.principal == "User:bob" and not a.raw_tokens


def test_sessions_expire_and_are_renewed_on_the_same_connection() -> None:
    clock = Clock()
    a = auth(reauth_ms=10_000, clock=clock)
    a.handshake("PLAIN")
    done = a.authenticate(plain("alice", "alice-secret"), 2)
    assert done.session_lifetime_ms == 10_000
    clock.now += 9
    assert a.refusal(PRODUCE) is None
    # KIP-368: a new handshake and authenticate on the same connection, same principal.
    assert a.handshake("PLAIN").error_code == ErrorCode.none
    assert a.refusal(PRODUCE) is not None  # nothing else in the middle of it
    assert a.authenticate(plain("alice", "alice-secret"), 2).error_code == ErrorCode.none
    clock.now += 9
    assert a.refusal(PRODUCE) is None  # renewed
    clock.now += 2
    assert "expired" in (a.refusal(PRODUCE) or "")


def test_reauthentication_keeps_mechanism_and_principal() -> None:
    a = auth(reauth_ms=1000)
    a.handshake("PLAIN")
    a.authenticate(plain("alice", "alice-secret"), 2)
    assert a.handshake("SCRAM-SHA-512").error_code == ErrorCode.illegal_sasl_state
    b = auth(reauth_ms=1000)
    b.handshake("PLAIN")
    b.authenticate(plain("alice", "alice-secret"), 2)
    b.handshake("PLAIN")
    other = b.authenticate(plain("bob", "bob-secret"), 2)
    assert other.error_code == ErrorCode.sasl_authentication_failed and other.close


def test_old_clients_are_not_told_of_a_lifetime() -> None:
    a = auth(reauth_ms=5000)
    a.handshake("PLAIN")
    assert a.authenticate(plain("alice", "alice-secret"), 0).session_lifetime_ms == 0


def test_an_oauthbearer_token_ends_the_session_when_it_expires() -> None:
    """Kafka's SaslServerAuthenticator: the session lifetime is the token's remaining life,
    or connections.max.reauth.ms if that is shorter; with re-authentication off (0) the
    token's expiry still ends the session."""
    from odradek.broker.security.oauthbearer import (
        OAuthBearerServer,
        UnsecuredValidatorOptions,
        unsecured_jws,
    )

    wall_ms = 1_800_000_000_000.0

    def oauth(mechanism: str) -> SaslServer:
        return OAuthBearerServer(UnsecuredValidatorOptions(), lambda: wall_ms)

    token = unsecured_jws({"sub": "alice", "exp": wall_ms / 1000 + 30})
    first = f"n,,\x01auth=Bearer {token}\x01\x01".encode()
    for reauth_ms, lifetime in ((0, 30_000), (60_000, 30_000), (10_000, 10_000)):
        clock = Clock()
        a = Authenticator(("OAUTHBEARER",), oauth, reauth_ms, clock)
        assert a.handshake("OAUTHBEARER").error_code == ErrorCode.none
        done = a.authenticate(first, 2)
        assert done.error_code == ErrorCode.none and a.principal == "User:alice"
        assert done.session_lifetime_ms == lifetime, reauth_ms
        clock.now += lifetime / 1000
        assert a.refusal(PRODUCE) is not None  # the session is over

"""SASL/PLAIN's server side (broker/security/plain.py) and the shared SASL interface
(broker/security/sasl.py): Kafka's messages, no hint whether a user exists, one round only,
and nothing but SaslFailure out of hostile bytes."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.net.sasl.plain import SaslMechanismPlain

from odradek.broker.security import plain
from odradek.broker.security.plain import PlainServer
from odradek.broker.security.sasl import MECHANISMS, SaslFailure, SaslServer, SaslStep

USERS = {"alice": "alice-secret", "admin": "admin-secret", "zoë": "pässwörd"}


def server() -> PlainServer:
    return PlainServer(USERS.get)


def test_mechanism_names() -> None:
    s: SaslServer = server()
    assert s.mechanism == "PLAIN"
    assert MECHANISMS == ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


def test_success_without_authzid() -> None:
    step = server().step(b"\0alice\0alice-secret")
    assert step == SaslStep(challenge=b"", principal="User:alice")
    assert step.complete


def test_success_with_authzid_equal_to_username() -> None:
    assert server().step(b"alice\0alice\0alice-secret").principal == "User:alice"


def test_kafka_python_client_message() -> None:
    client = SaslMechanismPlain(sasl_plain_username="admin", sasl_plain_password="admin-secret")
    step = server().step(client.auth_bytes())
    client.receive(step.challenge)
    assert client.is_authenticated()
    assert step.principal == "User:admin"


def test_utf8_username_and_password() -> None:
    message = "\0zoë\0pässwörd".encode()
    assert server().step(message).principal == "User:zoë"


def test_wrong_password_and_unknown_user_get_the_same_message() -> None:
    with pytest.raises(SaslFailure) as wrong:
        server().step(b"\0alice\0not-her-password")
    with pytest.raises(SaslFailure) as unknown:
        server().step(b"\0mallory\0alice-secret")
    assert str(wrong.value) == "Authentication failed: Invalid username or password"
    assert str(unknown.value) == str(wrong.value)


def test_password_is_case_and_length_sensitive() -> None:
    for password in (b"Alice-secret", b"alice-secret ", b"alice-secre", b"alice-secret\xc3\xa9"):
        with pytest.raises(SaslFailure):
            server().step(b"\0alice\0" + password)


def test_authzid_different_from_username() -> None:
    with pytest.raises(SaslFailure) as failure:
        server().step(b"admin\0alice\0alice-secret")
    assert str(failure.value) == plain.AUTHZID_MISMATCH
    assert "authorization id that is different from username" in str(failure.value)


def test_authzid_mismatch_with_a_wrong_password_says_only_invalid_credentials() -> None:
    with pytest.raises(SaslFailure) as failure:
        server().step(b"admin\0alice\0wrong")
    assert str(failure.value) == plain.INVALID_CREDENTIALS


@pytest.mark.parametrize("message, reason", [
    (b"\0\0alice-secret", "username not specified"),
    (b"\0alice\0", "password not specified"),
    (b"alice-secret", "expected [authzid] NUL username NUL password"),
    (b"\0alice", "expected [authzid] NUL username NUL password"),
    (b"\0alice\0alice-secret\0", "expected [authzid] NUL username NUL password"),
    (b"\0alice\0alice\0secret", "expected [authzid] NUL username NUL password"),
    (b"", "expected [authzid] NUL username NUL password"),
    (b"\0alice\0\xff\xfe", "not valid UTF-8"),
])
def test_malformed_messages(message: bytes, reason: str) -> None:
    with pytest.raises(SaslFailure) as failure:
        server().step(message)
    assert reason in str(failure.value)
    assert str(failure.value).startswith("Authentication failed: ")


def test_calls_after_success_fail() -> None:
    s = server()
    s.step(b"\0alice\0alice-secret")
    with pytest.raises(SaslFailure, match="already over"):
        s.step(b"\0alice\0alice-secret")


def test_calls_after_failure_fail_even_with_good_credentials() -> None:
    s = server()
    with pytest.raises(SaslFailure):
        s.step(b"\0alice\0wrong")
    with pytest.raises(SaslFailure, match="already over"):
        s.step(b"\0alice\0alice-secret")


def test_lookup_error_is_an_authentication_failure() -> None:
    def broken(username: str) -> str | None:
        raise RuntimeError("credential store unavailable")

    with pytest.raises(SaslFailure) as failure:
        PlainServer(broken).step(b"\0alice\0alice-secret")
    assert str(failure.value) == plain.LOOKUP_FAILED
    assert "unavailable" not in str(failure.value)


def test_comparison_is_constant_time_for_known_and_unknown_users(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(plain.hmac, "compare_digest", spy)
    with pytest.raises(SaslFailure):
        server().step(b"\0alice\0wrong")
    with pytest.raises(SaslFailure):
        server().step(b"\0mallory\0wrong")
    assert calls == [(b"wrong", b"alice-secret"), (b"wrong", b"wrong")]


@given(st.binary(max_size=80))
def test_arbitrary_bytes_never_raise_anything_but_sasl_failure(message: bytes) -> None:
    s = server()
    try:
        step = s.step(message)
    except SaslFailure:
        pass
    else:
        assert step.principal in {f"User:{u}" for u in USERS}
    with pytest.raises(SaslFailure):
        s.step(message)


@given(st.lists(st.sampled_from(["\0", "alice", "admin", "alice-secret", "é", ""]),
                max_size=6))
def test_fragments_never_raise_anything_but_sasl_failure(parts: list[str]) -> None:
    message = "".join(parts).encode()
    try:
        step = server().step(message)
    except SaslFailure:
        return
    authzid, username, password = message.decode().split("\0")
    assert USERS[username] == password and authzid in ("", username)
    assert step.principal == f"User:{username}"

"""SASL/OAUTHBEARER with unsecured tokens as Kafka's OAuthBearerSaslServer and unsecured
validator answer: the client first message's grammar, the token checks and their error
challenge, the principal claim, scopes, clock skew, and the token's expiry for KIP-368."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.broker.security.oauthbearer import (
    OAuthBearerServer,
    UnsecuredValidatorOptions,
    unsecured_jws,
)
from odradek.broker.security.sasl import SaslFailure

NOW_MS = 1_800_000_000_000


def server(**options: str) -> OAuthBearerServer:
    return OAuthBearerServer(UnsecuredValidatorOptions.from_jaas(options), lambda: NOW_MS)


def first_message(token: str, authzid: str = "", extra: str = "") -> bytes:
    a = f"a={authzid}" if authzid else ""
    return f"n,{a},\x01auth=Bearer {token}\x01{extra}\x01".encode()


def token(**claims: Any) -> str:
    base = {"sub": "alice", "iat": NOW_MS / 1000 - 10, "exp": NOW_MS / 1000 + 3600}
    base.update(claims)
    return unsecured_jws({k: v for k, v in base.items() if v is not None})


def test_a_valid_token_names_the_principal_and_its_expiry() -> None:
    s = server()
    step = s.step(first_message(token()))
    assert step.complete and step.principal == "User:alice" and step.challenge == b""
    assert s.expires_at_ms == NOW_MS + 3_600_000
    with pytest.raises(SaslFailure):
        s.step(b"again")  # one exchange per server


def test_extensions_and_an_authzid_are_accepted() -> None:
    step = server().step(first_message(token(), authzid="alice", extra="traceId=abc\x01"))
    assert step.principal == "User:alice"


def refused(s: OAuthBearerServer, message: bytes) -> tuple[dict[str, str], str]:
    """The error challenge, then the failure after the client's \\x01."""
    step = s.step(message)
    assert not step.complete
    challenge = json.loads(step.challenge)
    with pytest.raises(SaslFailure) as e:
        s.step(b"\x01")
    return challenge, str(e.value)


@pytest.mark.parametrize(("claims", "reason"), [
    ({"exp": NOW_MS / 1000 - 1}, "expired"),
    ({"exp": None}, "no exp"),
    ({"iat": NOW_MS / 1000 + 60}, "issued in the future"),
    ({"sub": None}, "no 'sub' claim"),
    ({"exp": "tomorrow"}, "exp claim is not a number"),
])
def test_invalid_tokens_get_kafkas_error_challenge(claims: dict[str, Any], reason: str) -> None:
    challenge, failure = refused(server(), first_message(token(**claims)))
    assert challenge == {"status": "invalid_token"}
    assert reason in failure


def test_signed_and_garbled_tokens_are_refused() -> None:
    signed = token()[:-1] + ".c2lnbmF0dXJl"
    assert "signed" in refused(server(), first_message(signed.replace("..", ".")))[1]
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256"}).encode()).decode().rstrip("=")
    hs256 = header + "." + token().split(".")[1] + "."
    assert "alg is not none" in refused(server(), first_message(hs256))[1]
    assert "base64url" in refused(server(), first_message("bm90.anNvbg."))[1]


def test_required_scope_principal_claim_and_skew_options() -> None:
    s = server(unsecuredValidatorRequiredScope="read write")
    challenge, failure = refused(s, first_message(token(scope="read")))
    assert challenge == {"status": "invalid_token", "scope": "read write"}
    assert "write" in failure
    assert server(unsecuredValidatorRequiredScope="read write").step(
        first_message(token(scope=["write", "read", "x"]))).principal == "User:alice"
    assert server(unsecuredValidatorPrincipalClaimName="client_id").step(
        first_message(token(client_id="svc"))).principal == "User:svc"
    late = token(exp=NOW_MS / 1000 - 1)
    assert server(unsecuredValidatorAllowableClockSkewMs="5000").step(
        first_message(late)).complete
    with pytest.raises(ValueError, match="ClockSkew"):
        UnsecuredValidatorOptions.from_jaas({"unsecuredValidatorAllowableClockSkewMs": "x"})


@pytest.mark.parametrize("message", [
    b"", b"\xff\xfe", b"n,,auth=Bearer x\x01\x01", b"y,,\x01auth=Bearer x\x01\x01",
    b"n,,\x01auth=Basic abc\x01\x01", b"n,,\x01noequals\x01\x01", b"n,,\x01\x01\x01",
])
def test_malformed_first_messages_fail_at_once(message: bytes) -> None:
    with pytest.raises(SaslFailure):
        server().step(message)


def test_a_client_that_does_not_acknowledge_the_error_fails_too() -> None:
    s = server()
    s.step(first_message(token(exp=1)))
    with pytest.raises(SaslFailure, match="expected the client"):
        s.step(b"something else")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.builds(lambda t: first_message(t).replace(b"Bearer", b"bearer"),
                           st.text(alphabet="-_.abcXYZ019", max_size=80)),
                 st.builds(lambda b: b"n,,\x01auth=Bearer " + b + b"\x01\x01",
                           st.binary(max_size=120))))
def test_hostile_messages_only_ever_fail_the_exchange(message: bytes) -> None:
    """Whatever a client sends, the exchange fails or goes on; nothing else escapes."""
    s = server(unsecuredValidatorRequiredScope="kafka")
    try:
        step = s.step(message)
    except SaslFailure:
        return
    if not step.complete:
        with pytest.raises(SaslFailure):
            s.step(b"\x01")


def test_a_deeply_nested_token_is_refused_not_a_crash() -> None:
    nested = base64.urlsafe_b64encode(b"[" * 200_000).decode().rstrip("=")
    challenge, failure = refused(server(), first_message(f"{nested}.{nested}."))
    assert challenge == {"status": "invalid_token"} and "base64url" in failure

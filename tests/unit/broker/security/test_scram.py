"""SASL/SCRAM's server side (broker/security/scram.py): RFC 7677's test vector byte for
byte, full exchanges against kafka-python's client, every way a client can get it wrong,
and nothing but SaslFailure out of hostile bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.net.sasl.scram import ScramClient

from odradek.broker.security import scram
from odradek.broker.security.sasl import SaslFailure, SaslServer
from odradek.broker.security.scram import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    ScramCredential,
    ScramServer,
    credential_from_salted_password,
    derive_credential,
)

# RFC 7677 section 3.
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

SHA256 = "SCRAM-SHA-256"
SHA512 = "SCRAM-SHA-512"
SALT = b"0123456789abcdef"
# Derived once: PBKDF2 is the slow part, every exchange below reuses these.
CREDENTIALS = {
    (mechanism, user): derive_credential(mechanism, password, SALT, MIN_ITERATIONS)
    for mechanism in (SHA256, SHA512)
    for user, password in (("alice", "alice-secret"), ("a,b=c", "odd-name-secret"))
}
RFC_CREDENTIAL = derive_credential(SHA256, "pencil", RFC_SALT, 4096)


def lookup(mechanism: str) -> Callable[[str], ScramCredential | None]:
    return lambda user: CREDENTIALS.get((mechanism, user))


def rfc_server() -> ScramServer:
    return ScramServer(SHA256, {"user": RFC_CREDENTIAL}.get, nonce=lambda: RFC_SERVER_NONCE)


def generic(mechanism: str) -> str:
    return ("Authentication failed during authentication due to invalid credentials with "
            f"SASL mechanism {mechanism}")


def client_final(mechanism: str, password: str, gs2_header: str, first_bare: str,
                 server_first: bytes, extensions: str = "", nonce_prefix: str = "") -> bytes:
    """A client-final message computed straight from RFC 5802's formulas, for the messages
    kafka-python cannot make (authzid, escaped names, extensions)."""
    name = {SHA256: "sha256", SHA512: "sha512"}[mechanism]
    fields = dict(f.split("=", 1) for f in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(name, password.encode(), base64.b64decode(fields["s"]),
                                 int(fields["i"]))
    client_key = hmac.digest(salted, b"Client Key", name)
    binding = base64.b64encode(gs2_header.encode()).decode()
    without_proof = f"c={binding},r={nonce_prefix}{fields['r']}{extensions}"
    auth = f"{first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.digest(hashlib.new(name, client_key).digest(), auth, name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def exchange(mechanism: str, user_field: str, password: str, gs2_header: str = "n,,",
             extensions: str = "") -> str | None:
    """A whole exchange with the RFC-formula client; the principal it ends with."""
    s = ScramServer(mechanism, lookup(mechanism))
    bare = f"n={user_field},r=clientnonce{extensions}"
    server_first = s.step(f"{gs2_header}{bare}".encode()).challenge
    return s.step(client_final(mechanism, password, gs2_header, bare, server_first)).principal


# --- RFC 7677 ---------------------------------------------------------------------------


def test_rfc7677_vector_byte_for_byte() -> None:
    s = rfc_server()
    first = s.step(RFC_CLIENT_FIRST)
    assert first.challenge == RFC_SERVER_FIRST
    assert first.principal is None and not first.complete
    final = s.step(RFC_CLIENT_FINAL)
    assert final.challenge == RFC_SERVER_FINAL
    assert final.principal == "User:user"


def test_rfc7677_formula_client_matches_the_vector() -> None:
    bare = f"n=user,r={RFC_CLIENT_NONCE}"
    assert client_final(SHA256, "pencil", "n,,", bare, RFC_SERVER_FIRST) == RFC_CLIENT_FINAL


# --- kafka-python's client --------------------------------------------------------------


@pytest.mark.parametrize("mechanism", [SHA256, SHA512])
def test_full_exchange_with_kafka_python_client(mechanism: str) -> None:
    client = ScramClient("alice", "alice-secret", mechanism)
    s: SaslServer = ScramServer(mechanism, lookup(mechanism))
    assert s.mechanism == mechanism
    first = s.step(client.first_message())
    assert first.principal is None
    client.process_server_first_message(first.challenge)
    final = s.step(client.final_message())
    # kafka-python raises when the server signature is not the one it computed.
    client.process_server_final_message(final.challenge)
    assert final.principal == "User:alice"


@pytest.mark.parametrize("mechanism", [SHA256, SHA512])
def test_kafka_python_client_with_wrong_password(mechanism: str) -> None:
    client = ScramClient("alice", "not-her-password", mechanism)
    s = ScramServer(mechanism, lookup(mechanism))
    client.process_server_first_message(s.step(client.first_message()).challenge)
    with pytest.raises(SaslFailure) as failure:
        s.step(client.final_message())
    assert str(failure.value) == generic(mechanism)


def test_sha256_credential_does_not_serve_sha512() -> None:
    wrong = ScramServer(SHA512, {"alice": CREDENTIALS[(SHA256, "alice")]}.get)
    client = ScramClient("alice", "alice-secret", SHA512)
    client.process_server_first_message(wrong.step(client.first_message()).challenge)
    with pytest.raises(SaslFailure):
        wrong.step(client.final_message())


# --- credentials ------------------------------------------------------------------------


def test_unknown_user_fails_at_the_first_message_with_the_generic_message() -> None:
    with pytest.raises(SaslFailure) as unknown:
        ScramServer(SHA256, lookup(SHA256)).step(b"n,,n=mallory,r=abc")
    assert str(unknown.value) == generic(SHA256)
    # A known user with a wrong proof hears exactly the same.
    s = _after_first()
    with pytest.raises(SaslFailure) as bad_proof:
        s.step(b"c=biws,r=abcsrv,p=" + base64.b64encode(b"\0" * 32))
    assert str(bad_proof.value) == str(unknown.value)


def test_lookup_gets_the_decoded_username_once() -> None:
    seen: list[str] = []

    def recording(user: str) -> ScramCredential | None:
        seen.append(user)
        return CREDENTIALS.get((SHA256, user))

    s = ScramServer(SHA256, recording)
    s.step(b"n,,n=a=2Cb=3Dc,r=abc")
    assert seen == ["a,b=c"]


def test_escaped_username_round_trip() -> None:
    assert exchange(SHA256, "a=2Cb=3Dc", "odd-name-secret") == "User:a,b=c"


def test_lookup_error_is_the_generic_failure() -> None:
    def broken(user: str) -> ScramCredential | None:
        raise OSError("credential store unavailable")

    with pytest.raises(SaslFailure) as failure:
        ScramServer(SHA256, broken).step(b"n,,n=alice,r=abc")
    assert str(failure.value) == generic(SHA256)


def test_credential_below_minimum_iterations_is_refused() -> None:
    weak = ScramCredential(salt=SALT, stored_key=b"k" * 32, server_key=b"k" * 32,
                           iterations=MIN_ITERATIONS - 1)
    with pytest.raises(SaslFailure) as failure:
        ScramServer(SHA256, {"alice": weak}.get).step(b"n,,n=alice,r=abc")
    assert str(failure.value) == generic(SHA256)


@pytest.mark.parametrize("iterations", [0, MIN_ITERATIONS - 1, MAX_ITERATIONS + 1])
def test_derive_refuses_iterations_out_of_kafka_bounds(iterations: int) -> None:
    with pytest.raises(ValueError, match="between 4096 and 16384"):
        derive_credential(SHA256, "pw", SALT, iterations)
    with pytest.raises(ValueError, match="between 4096 and 16384"):
        credential_from_salted_password(SHA256, b"s" * 32, SALT, iterations)


def test_derive_at_the_bounds() -> None:
    assert derive_credential(SHA512, "pw", SALT, MAX_ITERATIONS).iterations == MAX_ITERATIONS
    assert MIN_ITERATIONS == 4096 and MAX_ITERATIONS == 16384


def test_credential_from_salted_password_matches_derive() -> None:
    for mechanism, name in ((SHA256, "sha256"), (SHA512, "sha512")):
        salted = hashlib.pbkdf2_hmac(name, b"alice-secret", SALT, MIN_ITERATIONS)
        assert (credential_from_salted_password(mechanism, salted, SALT, MIN_ITERATIONS)
                == CREDENTIALS[(mechanism, "alice")])
        assert len(CREDENTIALS[(mechanism, "alice")].stored_key) == hashlib.new(name).digest_size


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "PLAIN", "scram-sha-256", ""])
def test_unknown_mechanism_is_refused(mechanism: str) -> None:
    with pytest.raises(ValueError, match="SCRAM-SHA-256, SCRAM-SHA-512"):
        ScramServer(mechanism, lookup(SHA256))
    with pytest.raises(ValueError, match="unknown SCRAM mechanism"):
        derive_credential(mechanism, "pw", SALT, MIN_ITERATIONS)


def test_credential_repr_hides_the_keys() -> None:
    text = repr(CREDENTIALS[(SHA256, "alice")])
    assert "stored_key" not in text and "server_key" not in text
    assert "iterations=4096" in text


# --- authorization id, channel binding, extensions --------------------------------------


def test_authzid_equal_to_username_succeeds() -> None:
    assert exchange(SHA256, "alice", "alice-secret", gs2_header="n,a=alice,") == "User:alice"


def test_escaped_authzid_is_compared_decoded() -> None:
    assert exchange(SHA256, "a=2Cb=3Dc", "odd-name-secret",
                    gs2_header="n,a=a=2Cb=3Dc,") == "User:a,b=c"


@pytest.mark.parametrize("user", ["alice", "mallory"])
def test_authzid_different_from_username(user: str) -> None:
    # The same answer whether the user exists or not: it is checked before the lookup.
    with pytest.raises(SaslFailure) as failure:
        ScramServer(SHA256, lookup(SHA256)).step(f"n,a=admin,n={user},r=abc".encode())
    assert str(failure.value) == scram.AUTHZID_MISMATCH


@pytest.mark.parametrize("header", ["y,,", "p=tls-unique,,", "y,a=alice,"])
def test_channel_binding_flags_are_refused(header: str) -> None:
    with pytest.raises(SaslFailure, match="channel binding is not supported"):
        ScramServer(SHA256, lookup(SHA256)).step(f"{header}n=alice,r=abc".encode())


@pytest.mark.parametrize("value", ["true", "TRUE", "True"])
def test_delegation_token_extension_is_refused(value: str) -> None:
    with pytest.raises(SaslFailure) as failure:
        ScramServer(SHA256, lookup(SHA256)).step(
            f"n,,n=alice,r=abc,tokenauth={value}".encode())
    assert str(failure.value) == scram.TOKEN_AUTH_REFUSED
    assert "delegation tokens" in str(failure.value)


def test_other_extensions_are_ignored_but_signed() -> None:
    assert exchange(SHA256, "alice", "alice-secret",
                    extensions=",tokenauth=false,foo=bar") == "User:alice"


def test_mandatory_extension_is_refused() -> None:
    with pytest.raises(SaslFailure, match="mandatory extensions"):
        ScramServer(SHA256, lookup(SHA256)).step(b"n,,m=ext,n=alice,r=abc")


def _after_first() -> ScramServer:
    """A server that has answered alice's client-first message with nonce "abcsrv"."""
    s = ScramServer(SHA256, lookup(SHA256), nonce=lambda: "srv")
    s.step(b"n,,n=alice,r=abc")
    return s


def _good_final() -> bytes:
    return client_final(SHA256, "alice-secret", "n,,", "n=alice,r=abc",
                        b"r=abcsrv,s=" + base64.b64encode(SALT) + b",i=4096")


def test_good_final_is_accepted() -> None:
    s = _after_first()
    assert s.step(_good_final()).principal == "User:alice"


def test_librdkafka_2_0s_doubled_client_nonce_is_accepted_as_kafka_accepts_it() -> None:
    """librdkafka up to 2.x (Debian's kcat) sends r=<client nonce><client nonce><server
    nonce>; Kafka's ScramSaslServer checks that the nonce ends with the one it sent, and
    the proof over the whole message is what authenticates."""
    s = _after_first()
    doubled = client_final(SHA256, "alice-secret", "n,,", "n=alice,r=abc",
                           b"r=abcsrv,s=" + base64.b64encode(SALT) + b",i=4096",
                           nonce_prefix="abc")
    assert b"r=abcabcsrv," in doubled
    assert s.step(doubled).principal == "User:alice"


@pytest.mark.parametrize("binding", [
    b"c=eSws",  # "y,,"
    b"c=bixhPWFsaWNlLA==",  # "n,a=alice,"
    b"c=",
    b"c=biwsAA==",
])
def test_tampered_channel_binding_is_refused(binding: bytes) -> None:
    s = _after_first()
    tampered = binding + _good_final()[len(b"c=biws"):]
    with pytest.raises(SaslFailure, match="channel binding"):
        s.step(tampered)


@pytest.mark.parametrize("nonce", [b"r=abcsrX", b"r=abc", b"r=abcsrvx", b"r=Xbcsrv"])
def test_tampered_nonce_is_refused(nonce: bytes) -> None:
    s = _after_first()
    tampered = _good_final().replace(b"r=abcsrv", nonce)
    with pytest.raises(SaslFailure, match="nonce"):
        s.step(tampered)


def test_tampered_proof_is_refused() -> None:
    good = _good_final()
    head, proof = good.split(b",p=")
    flipped = bytearray(base64.b64decode(proof))
    flipped[0] ^= 1
    s = _after_first()
    with pytest.raises(SaslFailure) as failure:
        s.step(head + b",p=" + base64.b64encode(bytes(flipped)))
    assert str(failure.value) == generic(SHA256)


@pytest.mark.parametrize("proof_length", [0, 31, 33, 64])
def test_proof_of_the_wrong_length_is_refused(proof_length: int) -> None:
    s = _after_first()
    with pytest.raises(SaslFailure):
        s.step(b"c=biws,r=abcsrv,p=" + base64.b64encode(b"\1" * proof_length))


def test_extensions_in_the_final_message_are_signed() -> None:
    s = _after_first()
    head, proof = _good_final().split(b",p=")
    with pytest.raises(SaslFailure) as failure:
        s.step(head + b",x=y,p=" + proof)
    assert str(failure.value) == generic(SHA256)


# --- state machine ----------------------------------------------------------------------


def test_calls_after_completion_fail() -> None:
    s = rfc_server()
    s.step(RFC_CLIENT_FIRST)
    s.step(RFC_CLIENT_FINAL)
    for message in (RFC_CLIENT_FINAL, RFC_CLIENT_FIRST, b""):
        with pytest.raises(SaslFailure, match="already completed"):
            s.step(message)


def test_calls_after_failure_fail_even_when_well_formed() -> None:
    s = rfc_server()
    s.step(RFC_CLIENT_FIRST)
    with pytest.raises(SaslFailure):
        s.step(RFC_CLIENT_FINAL.replace(b"p=dHzb", b"p=dHzc"))
    for message in (RFC_CLIENT_FINAL, RFC_CLIENT_FIRST):
        with pytest.raises(SaslFailure, match="already failed"):
            s.step(message)


def test_failure_at_the_first_message_is_final() -> None:
    s = rfc_server()
    with pytest.raises(SaslFailure):
        s.step(b"garbage")
    with pytest.raises(SaslFailure, match="already failed"):
        s.step(RFC_CLIENT_FIRST)


def test_replayed_final_message_fails_in_a_new_exchange() -> None:
    # A captured final message is bound to the server nonce of its own exchange.
    s = ScramServer(SHA256, {"user": RFC_CREDENTIAL}.get)
    s.step(RFC_CLIENT_FIRST)
    with pytest.raises(SaslFailure, match="nonce"):
        s.step(RFC_CLIENT_FINAL)


def test_final_message_first_is_refused() -> None:
    with pytest.raises(SaslFailure, match="gs2 header"):
        rfc_server().step(RFC_CLIENT_FINAL)


def test_default_nonce_is_fresh_and_printable() -> None:
    nonces = set()
    for _ in range(20):
        s = ScramServer(SHA256, lookup(SHA256))
        challenge = s.step(b"n,,n=alice,r=abc").challenge.decode()
        nonce = challenge.split(",")[0][len("r=abc"):]
        assert len(nonce) >= 24
        assert all("\x21" <= c <= "\x7e" and c != "," for c in nonce)
        nonces.add(nonce)
    assert len(nonces) == 20


# --- malformed messages -----------------------------------------------------------------


@pytest.mark.parametrize("message", [
    b"", b"n", b"n,", b"n,,", b"n,,n=alice", b"n,,n=alice,", b"n,,r=abc,n=alice",
    b"n,,n=,r=abc", b"n,,n=alice,r=", b"n,,n=alice,r=a,b", b"n,,n=alice,r=a b",
    b"n,,n=al=41ice,r=abc", b"n,,n=alice=,r=abc", b"n,,n=alice=2,r=abc",
    b"n,a=,n=alice,r=abc", b"n,b=alice,n=alice,r=abc", b"n,,n=alice,r=abc,=x",
    b"n,,n=alice,r=abc,x=", b"n,,n=alice,r=abc,1=x", b"n,,n=alice,r=abc,x",
    b"n,,n=al\x00ice,r=abc", b"n,,n=\xff,r=abc", b"x,,n=alice,r=abc", b"N,,n=alice,r=abc",
    b"n,,n=alice,r=ab\xc3\xa9",
])
def test_malformed_client_first(message: bytes) -> None:
    with pytest.raises(SaslFailure) as failure:
        ScramServer(SHA256, lookup(SHA256)).step(message)
    assert str(failure.value).startswith("Authentication failed")


@pytest.mark.parametrize("message", [
    b"", b"c=biws", b"c=biws,r=abcsrv", b"r=abcsrv,c=biws,p=AAAA", b"c=biws,p=AAAA,r=abcsrv",
    b"c=biw,r=abcsrv,p=AAAA", b"c=biws,r=abcsrv,p=AAA", b"c=biws,r=abcsrv,p=!!!!",
    b"c=biws,r=abcsrv,x,p=AAAA", b"c=biws,r=abcsrv,p=AAAA,", b"\xff",
])
def test_malformed_client_final(message: bytes) -> None:
    s = _after_first()
    with pytest.raises(SaslFailure):
        s.step(message)


def test_utf8_username_is_accepted() -> None:
    seen: list[str] = []

    def recording(user: str) -> ScramCredential | None:
        seen.append(user)
        return None

    with pytest.raises(SaslFailure):
        ScramServer(SHA256, recording).step("n,,n=zoë,r=abc".encode())
    assert seen == ["zoë"]


FUZZ_SERVER_NONCE = "srv"
FRAGMENTS = ["n", "y", "p", "a", "m", "c", "r", "s", "i", ",", "=", "=2C", "=3D", "alice",
             "abc", "srv", "biws", "tokenauth", "true", "AAAA", "\x00", "é", " ", "n,,",
             "n=alice,r=abc", "c=biws,r=abcsrv,p=", "\x7f"]


def _fuzz_server() -> ScramServer:
    return ScramServer(SHA256, lookup(SHA256), nonce=lambda: FUZZ_SERVER_NONCE)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_arbitrary_first_message_raises_only_sasl_failure(message: bytes) -> None:
    s = _fuzz_server()
    try:
        s.step(message)
    except SaslFailure:
        return


@settings(max_examples=300)
@given(st.binary(max_size=160))
def test_arbitrary_final_message_raises_only_sasl_failure(message: bytes) -> None:
    s = _fuzz_server()
    s.step(b"n,,n=alice,r=abc")
    with pytest.raises(SaslFailure):
        s.step(message)
    with pytest.raises(SaslFailure):
        s.step(message)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12),
       st.lists(st.sampled_from(FRAGMENTS), max_size=12))
def test_fragment_exchanges_raise_only_sasl_failure(first: list[str],
                                                    final: list[str]) -> None:
    s = _fuzz_server()
    try:
        step = s.step("".join(first).encode())
    except SaslFailure:
        return
    assert step.challenge.startswith(b"r=")
    with pytest.raises(SaslFailure):
        # Without the password no fragment list can forge the proof.
        s.step("".join(final).encode())

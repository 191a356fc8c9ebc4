"""TLS for Kafka listeners and for this node's own connections to other brokers.

Built from Kafka's ``ssl.*`` settings, PEM only: a key store is a PEM file with the private
key and the certificate chain (``ssl.keystore.location``) or the two as PEM text
(``ssl.keystore.key``, ``ssl.keystore.certificate.chain``); a trust store is a PEM file or
text of CA certificates. Python's ``ssl`` loads keys and chains only from files, so PEM
text is written to a private temporary file for the moment it is loaded, then removed.

The principal of a TLS connection is ``User:`` and the client certificate's subject in RFC
2253 form named by ``ssl.principal.mapping.rules`` (principal_mapping.py; by default the
subject itself, ``User:CN=alice,OU=eng,O=Example``), or ``User:ANONYMOUS`` without a client
certificate.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from odradek.broker.config import ConfigError
from odradek.broker.security.principal_mapping import IDENTITY, PrincipalMapper

ANONYMOUS = "User:ANONYMOUS"


class TlsConfigError(ConfigError):
    """Key store or trust store unusable; the message names the setting and the cause."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    keystore_location: str = ""
    keystore_certificate_chain: str = ""
    keystore_key: str = ""
    key_password: str = ""
    truststore_location: str = ""
    truststore_certificates: str = ""
    client_auth: str = "none"  # none, requested, required
    enabled_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    cipher_suites: str = ""
    endpoint_identification: str = "https"

    @property
    def has_keystore(self) -> bool:
        return bool(self.keystore_location
                    or (self.keystore_certificate_chain and self.keystore_key))

    @property
    def has_truststore(self) -> bool:
        return bool(self.truststore_location or self.truststore_certificates)


_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def server_context(s: TlsSettings, what: str) -> ssl.SSLContext:
    """The context of a TLS listener; ``what`` names it in errors ("listener SSL")."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(ctx, s, what)
    if not s.has_keystore:
        raise TlsConfigError(f"{what}: no certificate (set ssl.keystore.location)")
    _load_keystore(ctx, s, what)
    if s.client_auth != "none":
        _load_truststore(ctx, s, what)
        ctx.verify_mode = (ssl.CERT_REQUIRED if s.client_auth == "required"
                           else ssl.CERT_OPTIONAL)
    return ctx


def client_context(s: TlsSettings, what: str) -> ssl.SSLContext:
    """The context this node uses to reach another broker's TLS listener: it checks the
    peer against the trust store (the system's CAs if none) and, with
    ``ssl.endpoint.identification.algorithm=https``, the host name; it presents its own
    certificate when it has one (for brokers that require client certificates)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _common(ctx, s, what)
    if s.has_truststore:
        _load_truststore(ctx, s, what)
    else:
        ctx.load_default_certs()
    ctx.check_hostname = s.endpoint_identification == "https"
    if s.has_keystore:
        _load_keystore(ctx, s, what)
    return ctx


def _common(ctx: ssl.SSLContext, s: TlsSettings, what: str) -> None:
    versions = sorted(_VERSIONS[v] for v in s.enabled_protocols)
    if not versions:
        raise TlsConfigError(f"{what}: ssl.enabled.protocols is empty")
    ctx.minimum_version, ctx.maximum_version = versions[0], versions[-1]
    if s.cipher_suites:
        try:
            ctx.set_ciphers(s.cipher_suites)
        except ssl.SSLError as e:
            raise TlsConfigError(
                f"{what}: ssl.cipher.suites {s.cipher_suites!r} names no usable cipher "
                f"({e.reason})") from None
    # Session tickets would let a resumed session skip client-certificate checks done at
    # the full handshake; Kafka's Java TLS does not resume across connections either.
    ctx.options |= ssl.OP_NO_TICKET


def _load_keystore(ctx: ssl.SSLContext, s: TlsSettings, what: str) -> None:
    password = s.key_password or None
    try:
        if s.keystore_location:
            ctx.load_cert_chain(s.keystore_location, password=password)
        else:
            with _pem_file(s.keystore_key + "\n" + s.keystore_certificate_chain) as path:
                ctx.load_cert_chain(path, password=password)
    except FileNotFoundError:
        raise TlsConfigError(
            f"{what}: ssl.keystore.location {s.keystore_location} does not exist") from None
    except (ssl.SSLError, OSError) as e:
        where = (f"ssl.keystore.location {s.keystore_location}" if s.keystore_location
                 else "ssl.keystore.key/ssl.keystore.certificate.chain")
        raise TlsConfigError(
            f"{what}: cannot load the private key and certificate chain from {where} "
            f"({_reason(e)}); it must be PEM with the key and the chain, and "
            "ssl.key.password must open an encrypted key") from None


def _load_truststore(ctx: ssl.SSLContext, s: TlsSettings, what: str) -> None:
    try:
        if s.truststore_location:
            ctx.load_verify_locations(cafile=s.truststore_location)
        else:
            ctx.load_verify_locations(cadata=s.truststore_certificates)
    except FileNotFoundError:
        raise TlsConfigError(
            f"{what}: ssl.truststore.location {s.truststore_location} does not exist"
        ) from None
    except (ssl.SSLError, OSError) as e:
        raise TlsConfigError(
            f"{what}: cannot load the trusted certificates ({_reason(e)}); the trust store "
            "must be PEM certificates") from None


def _reason(e: Exception) -> str:
    return str(getattr(e, "reason", None) or e)


@contextlib.contextmanager
def _pem_file(text: str) -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix="odradek-key-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp's file is private (0600)
            f.write(text)
        yield path
    finally:
        os.unlink(path)


def principal(ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
              mapper: PrincipalMapper = IDENTITY) -> str:
    """The Kafka principal of a TLS connection: its client certificate's subject, named by
    ``mapper`` (ssl.principal.mapping.rules; NoMatchingRule when no rule applies), or
    ANONYMOUS when it sent none."""
    if ssl_object is None:
        return ANONYMOUS
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return ANONYMOUS
    return "User:" + mapper.name(subject_name(der))


def subject_name(der: bytes) -> str:
    """A certificate's subject as RFC 2253 text (Java's X500Principal.getName(), which
    Kafka's default principal builder uses): most specific name first."""
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def grpc_material(s: TlsSettings, what: str) -> tuple[bytes, bytes, bytes]:
    """(CA certificates, private key, certificate chain) as gRPC takes them: PEM, the key
    unencrypted (gRPC has no key password), read from the same stores as a listener's."""
    from cryptography.hazmat.primitives import serialization

    try:
        if s.keystore_location:
            keystore = Path(s.keystore_location).read_bytes()
        else:
            keystore = (s.keystore_key + "\n" + s.keystore_certificate_chain).encode()
        roots = (Path(s.truststore_location).read_bytes() if s.truststore_location
                 else s.truststore_certificates.encode())
    except OSError as e:
        raise TlsConfigError(f"{what}: cannot read {e.filename}: {e.strerror}") from None
    key_pem = _pem_blocks(keystore, b"PRIVATE KEY")
    chain = _pem_blocks(keystore, b"CERTIFICATE")
    if not key_pem or not chain:
        raise TlsConfigError(f"{what}: the key store must hold a private key and a "
                             "certificate chain, PEM")
    try:
        key = serialization.load_pem_private_key(
            key_pem[0], password=s.key_password.encode() or None)
    except (ValueError, TypeError) as e:
        raise TlsConfigError(f"{what}: cannot open the private key ({e}); check "
                             "ssl.key.password") from None
    plain = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    return roots, plain, b"".join(chain)


def _pem_blocks(data: bytes, kind: bytes) -> list[bytes]:
    """The PEM blocks of ``data`` whose label ends with ``kind`` ("ENCRYPTED PRIVATE KEY",
    "EC PRIVATE KEY" and "PRIVATE KEY" all end with PRIVATE KEY)."""
    out, rest = [], data
    while (start := rest.find(b"-----BEGIN ")) >= 0:
        label_end = rest.find(b"-----", start + 11)
        label = rest[start + 11:label_end]
        end_marker = b"-----END " + label + b"-----"
        end = rest.find(end_marker, label_end)
        if label_end < 0 or end < 0:
            break
        if label.endswith(kind):
            out.append(rest[start:end + len(end_marker)] + b"\n")
        rest = rest[end + len(end_marker):]
    return out

"""``--command-config``: how the admin commands connect to a secured cluster, from a Kafka
client properties file, the same one Kafka's tools take (``kafka-topics.sh
--command-config``):

    security.protocol=SASL_SSL
    sasl.mechanism=SCRAM-SHA-512
    sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\
        username="admin" password="admin-secret";
    ssl.truststore.type=PEM
    ssl.truststore.location=/etc/odradek/ca.pem

For mutual TLS add ``ssl.keystore.type=PEM`` and ``ssl.keystore.location`` (a PEM file with
the client's key and certificate), and ``ssl.key.password`` for an encrypted key. Other keys
are refused by name rather than ignored: a setting that silently did nothing would leave
the command talking to the cluster in a way its user did not ask for.
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odradek.broker.cli.common import CliError
from odradek.broker.security.jaas import client_credentials, parse_jaas_config
from odradek.broker.security.sasl_client import ClientSecurity

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_KEYS = frozenset({
    "security.protocol", "sasl.mechanism", "sasl.jaas.config", "ssl.truststore.type",
    "ssl.truststore.location", "ssl.keystore.type", "ssl.keystore.location",
    "ssl.key.password", "ssl.endpoint.identification.algorithm",
})


@dataclass(frozen=True)
class ClientConfig:
    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: str = ""
    cafile: str = ""
    keystore: str = ""
    key_password: str = ""
    check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def kafka_python(self) -> dict[str, Any]:
        """kafka-python's keyword arguments for the same connection."""
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            out.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                       sasl_plain_password=self.password)
        if self.tls:
            out.update(ssl_check_hostname=self.check_hostname)
            if self.cafile:
                out["ssl_cafile"] = self.cafile
            if self.keystore:
                out.update(ssl_certfile=self.keystore, ssl_keyfile=self.keystore)
                if self.key_password:
                    out["ssl_password"] = self.key_password
        return out

    def security(self) -> ClientSecurity:
        """Our own client's settings (odradek.broker.kafka.client) for the same connection."""
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=self.cafile or None)
            context.check_hostname = self.check_hostname
            if self.keystore:
                context.load_cert_chain(self.keystore, password=self.key_password or None)
        sasl = (self.mechanism, self.username, self.password) if self.sasl else None
        return ClientSecurity(context, sasl)


def parse_properties(text: str) -> dict[str, str]:
    """Java properties as Kafka's tools write them: key=value (or key: value) lines, '#'
    and '!' comments, a trailing backslash continuing a line."""
    out: dict[str, str] = {}
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical += line[:-1]
            continue
        logical += line
        key, sep, value = logical.partition("=")
        if not sep:
            key, sep, value = logical.partition(":")
        if not sep:
            raise CliError(f"--command-config: {logical!r} is not key=value")
        out[key.strip()] = value.strip()
        logical = ""
    return out


def load(path: str) -> ClientConfig:
    try:
        props = parse_properties(Path(path).read_text())
    except OSError as e:
        raise CliError(f"--command-config: cannot read {path}: {e.strerror}") from None
    unknown = sorted(set(props) - _KEYS)
    if unknown:
        raise CliError(f"--command-config {path}: {', '.join(unknown)} not supported here "
                       f"(supported: {', '.join(sorted(_KEYS))})")
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in _PROTOCOLS:
        raise CliError(f"--command-config: security.protocol {protocol} is not one of "
                       f"{', '.join(_PROTOCOLS)}")
    for key in ("ssl.truststore.type", "ssl.keystore.type"):
        if props.get(key, "PEM").upper() != "PEM":
            raise CliError(f"--command-config: {key} must be PEM (convert a Java key store "
                           "with keytool and openssl)")
    config = ClientConfig(
        protocol=protocol,
        cafile=props.get("ssl.truststore.location", ""),
        keystore=props.get("ssl.keystore.location", ""),
        key_password=props.get("ssl.key.password", ""),
        check_hostname=props.get("ssl.endpoint.identification.algorithm", "https") != "")
    if config.sasl:
        mechanism = props.get("sasl.mechanism", "GSSAPI").upper()
        if mechanism not in _MECHANISMS:
            raise CliError(f"--command-config: sasl.mechanism {mechanism} is not supported "
                           f"(use {', '.join(_MECHANISMS)})")
        try:
            credentials = client_credentials(parse_jaas_config(props.get("sasl.jaas.config",
                                                                         "")))
        except ValueError as e:
            raise CliError(f"--command-config: {e}") from None
        if credentials is None:
            raise CliError("--command-config: sasl.jaas.config needs username=\"...\" and "
                           "password=\"...\"")
        config = ClientConfig(config.protocol, mechanism, *credentials, config.cafile,
                              config.keystore, config.key_password, config.check_hostname)
    return config


def of(args: argparse.Namespace) -> ClientConfig:
    """The command's client configuration (plaintext without --command-config)."""
    path = getattr(args, "command_config", None)
    cached = getattr(args, "_client_config", None)
    if cached is None:
        cached = load(path) if path else ClientConfig()
        args._client_config = cached
    return cached

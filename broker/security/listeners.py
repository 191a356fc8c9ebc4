"""What each listener of a node needs to secure its connections, built from the node's
configuration (Kafka's keys, listener-scoped ones over global ones): the TLS context of SSL
and SASL_SSL listeners and the SASL authenticator of SASL_PLAINTEXT and SASL_SSL ones,
and the same for this broker's own connections to the others' inter-broker listener."""

from __future__ import annotations

import time
from collections.abc import Callable

from odradek.broker.config import NodeConfig
from odradek.broker.security import tls
from odradek.broker.security.authentication import Authenticator
from odradek.broker.security.oauthbearer import OAuthBearerServer
from odradek.broker.security.plain import PlainServer
from odradek.broker.security.principal_mapping import PrincipalMapper
from odradek.broker.security.sasl import SaslServer
from odradek.broker.security.sasl_client import ClientSecurity
from odradek.broker.security.scram import ScramCredential, ScramServer
from odradek.broker.server import ListenerSecurity

# (user, mechanism) -> the user's stored SCRAM credential, from the cluster metadata.
ScramLookup = Callable[[str, str], ScramCredential | None]


def tls_settings(config: NodeConfig, listener: str) -> tls.TlsSettings:
    def get(key: str) -> str:
        return str(config.listener_value(listener, key))

    return tls.TlsSettings(
        keystore_location=get("ssl.keystore.location"),
        keystore_certificate_chain=get("ssl.keystore.certificate.chain"),
        keystore_key=get("ssl.keystore.key"),
        key_password=get("ssl.key.password"),
        truststore_location=get("ssl.truststore.location"),
        truststore_certificates=get("ssl.truststore.certificates"),
        client_auth=get("ssl.client.auth"),
        enabled_protocols=tuple(config.listener_value(listener, "ssl.enabled.protocols")),
        cipher_suites=get("ssl.cipher.suites"),
        endpoint_identification=str(config["ssl.endpoint.identification.algorithm"]),
    )


def listener_security(config: NodeConfig, listener: str,
                      scram: ScramLookup) -> ListenerSecurity:
    """Raises ``tls.TlsConfigError`` when the listener's key or trust store is unusable."""
    protocol = config.security_protocol(listener)
    context = (tls.server_context(tls_settings(config, listener), f"listener {listener}")
               if protocol in ("SSL", "SASL_SSL") else None)
    authenticator = None
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        mechanisms = tuple(config.listener_value(listener, "sasl.enabled.mechanisms"))
        plain_users = config.plain_users(listener)
        reauth_ms = int(config.listener_value(listener, "connections.max.reauth.ms"))
        oauth = config.oauthbearer_options(listener) if "OAUTHBEARER" in mechanisms else None

        def new_server(mechanism: str) -> SaslServer:
            if mechanism == "PLAIN":
                return PlainServer(plain_users.get)
            if mechanism == "OAUTHBEARER":
                assert oauth is not None
                return OAuthBearerServer(oauth, lambda: time.time() * 1000)
            return ScramServer(mechanism, lambda user: scram(user, mechanism))

        def make() -> Authenticator:
            return Authenticator(mechanisms, new_server, reauth_ms, time.monotonic)

        authenticator = make
    return ListenerSecurity(
        protocol, context, authenticator,
        config["connection.failed.authentication.delay.ms"] / 1000,
        PrincipalMapper.of(str(config.listener_value(listener,
                                                     "ssl.principal.mapping.rules"))))


def inter_broker_client(config: NodeConfig) -> ClientSecurity:
    listener = config.inter_broker_listener
    protocol = config.security_protocol(listener)
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = tls.client_context(tls_settings(config, listener),
                                     f"inter-broker listener {listener}")
    sasl = None
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        credentials = config.inter_broker_credentials()
        assert credentials is not None  # the configuration check demands them
        sasl = (str(config["sasl.mechanism.inter.broker.protocol"]), *credentials)
    return ClientSecurity(context, sasl)


def check(config: NodeConfig) -> None:
    """Build every listener's TLS context and the inter-broker client's once, so that an
    unusable key or trust store stops the node before it starts (``TlsConfigError``)."""
    for li in config.listeners:
        listener_security(config, li.name, lambda user, mechanism: None)
    if "broker" in config.roles:
        inter_broker_client(config)

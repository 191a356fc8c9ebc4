"""How the controllers' gRPC listener is secured: plaintext, or TLS with mutual
authentication (every peer, controller or broker, presents a certificate its CA trust
store holds, and checks the server's against the same store).

One value, made once per node, opens every gRPC channel and binds the listener, so Raft
traffic, broker registration and heartbeats, and the metadata stream all go the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class GrpcSecurity:
    """``tls`` is None for plaintext, else (CA certificates, private key, certificate
    chain), all PEM."""

    tls: tuple[bytes, bytes, bytes] | None = None

    @property
    def protocol(self) -> str:
        return "SSL" if self.tls is not None else "PLAINTEXT"

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = ()
                ) -> grpc.aio.Channel:
        if self.tls is None:
            return grpc.aio.insecure_channel(address, options=options)
        roots, key, chain = self.tls
        return grpc.aio.secure_channel(
            address, grpc.ssl_channel_credentials(roots, key, chain), options=options)

    def sync_channel(self, address: str) -> grpc.Channel:
        if self.tls is None:
            return grpc.insecure_channel(address)
        roots, key, chain = self.tls
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(roots, key, chain))

    def add_port(self, server: grpc.aio.Server, address: str) -> int:
        """Bind the listener; 0 when the address cannot be bound."""
        if self.tls is None:
            return int(server.add_insecure_port(address))
        roots, key, chain = self.tls
        return int(server.add_secure_port(address, grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=roots, require_client_auth=True)))


PLAINTEXT = GrpcSecurity()

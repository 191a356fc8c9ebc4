"""Client quotas as the metadata log and the controller hold them (Kafka's ClientQuotaRecord):
entity -> {quota key: value}.

An entity is its components as the protocol carries them, ``(entity type, name)`` with
``None`` naming the type's default entity, sorted by type so that one entity has one key
however a request ordered it. The broker's quota model (odradek.broker.security.quotas:
validation with Kafka's messages, describe filters, precedence) is built from these values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

USER = "user"
CLIENT_ID = "client-id"
IP = "ip"  # connection_creation_rate per address (KIP-612), never with the other two
IP_KEY = "connection_creation_rate"  # the one key of ip entities, and theirs alone
ENTITY_TYPES = frozenset({USER, CLIENT_ID, IP})

# ((entity type, name or None for the default entity), ...), sorted by type.
QuotaEntityKey = tuple[tuple[str, str | None], ...]


def entity_key(components: Iterable[tuple[str, str | None]]) -> QuotaEntityKey:
    return tuple(sorted(components, key=lambda c: c[0]))


@dataclass(frozen=True, slots=True)
class ClientQuotaChange:
    """Set ``key`` of ``entity`` to ``value``, or remove it (``value`` None)."""

    entity: QuotaEntityKey
    key: str
    value: float | None

    def is_storable(self) -> bool:
        """One user and/or one client-id component, or one ip component, a key, and a
        positive finite value: what the controller requires before writing (the broker
        checks first, with Kafka's messages), so that no broker meets a quota it cannot use
        in the log."""
        types = [t for t, _ in self.entity]
        return (bool(types) and len(set(types)) == len(types) and set(types) <= ENTITY_TYPES
                and (IP not in types or len(types) == 1)
                # connection_creation_rate is set on ip entities only, and they take no
                # other key; a removal of any key is harmless (Kafka removes whatever is
                # named, if set)
                and (self.value is None or (self.key == IP_KEY) == (IP in types))
                and all(name != "" for _, name in self.entity) and bool(self.key)
                and (self.value is None or (math.isfinite(self.value) and self.value > 0)))

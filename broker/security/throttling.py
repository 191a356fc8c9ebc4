"""Client quotas applied to requests (KIP-13, KIP-124, KIP-219): what the transport asks
after a handler answered, and how it changes the answer.

Per client (the principal's name as Kafka's quota ``user``, and the request's client id)
the node measures produced bytes (``producer_byte_rate``), bytes fetched by consumers
(``consumer_byte_rate``) and event-loop time spent on its requests (``request_percentage``)
against the quotas in the cluster metadata (``quotas.QuotaConfigs``). A client over a quota
gets its answer at once with ``throttle_time_ms`` set, and its connection is not read for
that long (KIP-219: clients that honour the field wait the same time; others are held
anyway). A throttled consumer fetch is answered without records, and its bytes are taken
back, as Kafka does.

Exempt, as in Kafka: follower fetches and WriteTxnMarkers (brokers' own traffic), and the
requests that come before any quota can apply (ApiVersions, SASL).

Before any request, a new connection is counted against its address's
``connection_creation_rate`` (KIP-612, ``connection_opened``); over it, the transport holds
the connection unread and closes it.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable
from typing import Any

from odradek.broker.handlers.api import fetch_replica
from odradek.broker.security.quotas import (
    ClientQuotaManager,
    ConnectionRateQuotas,
    QuotaConfigs,
)

PRODUCE, FETCH, API_VERSIONS, WRITE_TXN_MARKERS = 0, 1, 18, 27
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
_EXEMPT = frozenset({API_VERSIONS, WRITE_TXN_MARKERS, SASL_HANDSHAKE, SASL_AUTHENTICATE})


def quota_user(principal: str) -> str:
    """Kafka's quota ``user`` of a principal: its name ("User:alice" -> "alice")."""
    return principal.partition(":")[2] or principal


class Throttling:
    def __init__(self, configs: Callable[[], QuotaConfigs],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._configs = configs
        self._clock = clock
        self.produce = ClientQuotaManager("produce", configs)
        self.fetch = ClientQuotaManager("fetch", configs)
        self.request = ClientQuotaManager("request", configs)
        self.connections = ConnectionRateQuotas(configs)

    @property
    def active(self) -> bool:
        """Whether any user/client-id quota exists: without one no request is measured
        (the common case costs one check per request)."""
        return self._configs().has_client_quotas

    def connection_opened(self, address: str) -> int:
        """Count a new connection from ``address`` against its connection_creation_rate:
        0 to serve it, else the ms to hold it unread before closing it (KIP-612)."""
        return self.connections.record_and_throttle(address, self._clock())

    def exempt(self, api_key: int, version: int, request: Any) -> bool:
        return api_key in _EXEMPT or (
            api_key == FETCH and fetch_replica(request, version)[0] >= 0)

    def produced(self, principal: str, client_id: str, request_bytes: int) -> int:
        return self.produce.record_and_throttle(quota_user(principal), client_id,
                                                request_bytes, self._clock())

    def fetched(self, principal: str, client_id: str, response_bytes: int) -> int:
        """Record a consumer fetch's bytes; when that throttles, take them back (the
        answer goes out without records) and return the throttle."""
        user, now = quota_user(principal), self._clock()
        throttle = self.fetch.record_and_throttle(user, client_id, response_bytes, now)
        if throttle:
            self.fetch.unrecord(user, client_id, response_bytes, now)
        return throttle

    def handled(self, principal: str, client_id: str, loop_ms: float) -> int:
        return self.request.record_and_throttle(quota_user(principal), client_id, loop_ms,
                                                self._clock())

    def expire_idle(self) -> None:
        now = self._clock()
        for manager in (self.produce, self.fetch, self.request, self.connections):
            manager.expire_idle(now)


def throttle_ms_of(body: Any) -> int:
    """The throttle time a handler put in its answer (0 when none)."""
    value = getattr(body, "throttle_time", None)
    return int(value.total_seconds() * 1000) if isinstance(value, datetime.timedelta) else 0


def with_throttle(body: Any, throttle_ms: int) -> Any:
    """The response with ``throttle_time_ms`` set (kio names it ``throttle_time``), for
    every response that has the field."""
    if not hasattr(body, "throttle_time"):
        return body
    return dataclasses.replace(body, throttle_time=datetime.timedelta(
        milliseconds=throttle_ms))


def without_records(fetch_response: Any) -> Any:
    """A Fetch response with every partition's records left out (empty, not null: clients
    such as kafka-python cannot read null records): what a throttled consumer gets. Its partitions (high watermarks, errors) stay, so a fetch session's view of what
    the client was told stays true; the client fetches the records again afterwards."""
    return dataclasses.replace(fetch_response, responses=tuple(
        dataclasses.replace(topic, partitions=tuple(
            dataclasses.replace(p, records=b"") for p in topic.partitions))
        for topic in fetch_response.responses))

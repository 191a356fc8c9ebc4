"""Prometheus metrics of one node (its own registry: no global state).

Names follow Prometheus conventions: ``odradek_`` prefix, ``_total`` counters, base
units (seconds, bytes). docs/metrics.md lists them.
"""

from __future__ import annotations

from kio.schema.index import api_key_map
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                    10, 30)


class NodeMetrics:
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter("odradek_requests_total", "Kafka requests handled, per API.",
                                ["api"], registry=r)
        self.request_errors = Counter(
            "odradek_request_errors_total", "Requests whose handler failed, per API.", ["api"],
            registry=r)
        self.request_latency = Histogram(
            "odradek_request_latency_seconds", "Time to handle a request, per API.", ["api"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.request_bytes = Counter("odradek_request_bytes_total",
                                     "Bytes of request frames received.", registry=r)
        self.protocol_errors = Counter(
            "odradek_protocol_errors_total",
            "Connections closed for malformed, oversize or unsupported requests.", registry=r)
        self.connections = Gauge("odradek_connections", "Open Kafka client connections.",
                                 ["listener"], registry=r)
        self.connections_refused = Counter(
            "odradek_connections_refused_total",
            "Kafka connections closed at once because a connection limit was reached.",
            ["listener", "reason"], registry=r)
        self.connection_accept_throttled = Counter(
            "odradek_connection_accept_throttled_seconds_total",
            "Time a listener accepted nothing because max.connection.creation.rate was "
            "reached (KIP-612): new clients waited that long in the backlog.",
            ["listener"], registry=r)
        self.connections_closed = Counter(
            "odradek_connections_closed_total",
            "Kafka connections the node closed on its own, per reason: idle (no traffic for "
            "connections.max.idle.ms), stalled (held request budget without progress while "
            "others waited), unread_responses (cut off after not reading its answers), "
            "fetch_records_gone (a zero-copy Fetch answer's records were truncated away "
            "before they were sent).",
            ["reason"], registry=r)
        for reason in ("idle", "stalled", "unread_responses", "fetch_records_gone"):
            self.connections_closed.labels(reason=reason)
        self.zero_copy_bytes = Counter(
            "odradek_zero_copy_bytes_total",
            "Record bytes of Fetch answers (consumers' and followers') sent from segment "
            "files by the kernel (sendfile) instead of through the process.", registry=r)
        self.throttled_requests = Counter(
            "odradek_throttled_requests_total",
            "Requests answered with a throttle time because their client exceeded a quota "
            "(produce, fetch or request rate), per API.", ["api"], registry=r)
        self.authentications = Counter(
            "odradek_authentications_total",
            "Successful SASL authentications (re-authentications included), per listener.",
            ["listener"], registry=r)
        self.reauthentications = Counter(
            "odradek_reauthentications_total",
            "SASL sessions renewed on their connection before they expired (KIP-368, "
            "connections.max.reauth.ms), per listener; also counted in "
            "odradek_authentications_total.", ["listener"], registry=r)
        self.authentication_failures = Counter(
            "odradek_authentication_failures_total",
            "Connections closed for failed SASL authentication or for requests sent before "
            "it completed, per listener.", ["listener"], registry=r)
        self.request_queue_bytes = Gauge(
            "odradek_request_queue_bytes",
            "Bytes of received requests waiting to be handled (bounded by "
            "queued.max.request.bytes).", registry=r)
        self.messages_in = Counter("odradek_messages_in_total",
                                   "Records appended by producers, per topic.", ["topic"],
                                   registry=r)
        self.bytes_in = Counter("odradek_bytes_in_total",
                                "Record batch bytes appended by producers, per topic.",
                                ["topic"], registry=r)
        self.bytes_out = Counter("odradek_bytes_out_total",
                                 "Record batch bytes sent to consumers, per topic.", ["topic"],
                                 registry=r)
        self.messages_out = Counter(
            "odradek_messages_out_total",
            "Record offsets sent to consumers past their fetch position, per topic.", ["topic"],
            registry=r)
        self.isr_changes = Counter(
            "odradek_isr_changes_total",
            "ISR shrinks and expands of partitions this node leads, as the metadata applies "
            "them (asked for by this leader, or made by the controller when it fences a "
            "broker).", ["kind"], registry=r)
        for kind in ("shrink", "expand"):  # both series exist from the start, at 0
            self.isr_changes.labels(kind=kind)
        self.produce_purgatory = Gauge("odradek_produce_purgatory_size",
                                       "Produce requests waiting for replication.", registry=r)
        self.fetch_purgatory = Gauge("odradek_fetch_purgatory_size",
                                     "Fetch requests waiting for data (long poll).", registry=r)
        self.fetch_sessions = Gauge(
            "odradek_fetch_sessions",
            "Incremental fetch sessions (KIP-227) this broker holds for consumers and "
            "followers.", registry=r)
        self.fetch_session_partitions = Gauge(
            "odradek_fetch_session_partitions",
            "Partitions cached in this broker's fetch sessions.", registry=r)
        self.fetch_session_evictions = Counter(
            "odradek_fetch_session_evictions_total",
            "Fetch sessions evicted to make room for new ones (the cache holds "
            "max.incremental.fetch.session.cache.slots).", registry=r)
        self.replica_fetch_requests = Counter(
            "odradek_replica_fetch_requests_total",
            "Fetch requests this broker's follower fetchers sent, per kind: full (every "
            "followed partition named) or incremental (a fetch session: only changes).",
            ["kind"], registry=r)
        self.replica_fetch_partitions = Counter(
            "odradek_replica_fetch_partitions_total",
            "Partitions named (fetched or forgotten) in the follower fetch requests, per "
            "kind of request.", ["kind"], registry=r)
        self.replica_fetch_request_bytes = Counter(
            "odradek_replica_fetch_request_bytes_total",
            "Bytes of the follower fetch requests sent, per kind of request.", ["kind"],
            registry=r)
        self.replication_throttled_bytes = Counter(
            "odradek_replication_throttled_bytes_total",
            "Record bytes of throttled replicas (KIP-73: the topic's "
            "leader/follower.replication.throttled.replicas name them) that this broker sent "
            "to followers (role leader) or fetched from leaders (role follower), as counted "
            "against its replication throttle.", ["role"], registry=r)
        self.replication_throttled_skips = Counter(
            "odradek_replication_throttled_partitions_skipped_total",
            "Partitions left out of a follower fetch because the replication throttle of "
            "the role was exceeded: answered without records (leader) or not asked for "
            "(follower).", ["role"], registry=r)
        for role in ("leader", "follower"):
            self.replication_throttled_bytes.labels(role=role)
            self.replication_throttled_skips.labels(role=role)
        for kind in ("full", "incremental"):
            self.replica_fetch_requests.labels(kind=kind)
            self.replica_fetch_partitions.labels(kind=kind)
            self.replica_fetch_request_bytes.labels(kind=kind)

    def export_apis(self, api_keys: list[int]) -> None:
        """Request and error counters of every API the node serves exist from the start, at
        0: ``rate()`` over them sees a series on an idle node, and an alert on errors sees
        the first one as an increase. (The latency histograms appear with an API's first
        request: 16 buckets for each of some 60 APIs would be mostly empty series.)"""
        for key in api_keys:
            name = self.api_name(key)
            self.requests.labels(api=name)
            self.request_errors.labels(api=name)
            self.throttled_requests.labels(api=name)

    def export_topic(self, topic: str) -> None:
        """A topic's traffic counters exist, at 0, from when this node leads a partition of
        it (they count on leaders)."""
        for counter in (self.messages_in, self.bytes_in, self.messages_out, self.bytes_out):
            counter.labels(topic=topic)

    def export_listeners(self, names: list[str]) -> None:
        """Connection series of every listener exist from the start, at 0."""
        for name in names:
            self.connections.labels(listener=name)
            for reason in ("max_connections", "max_connections_per_ip",
                           "connection_creation_rate"):
                self.connections_refused.labels(listener=name, reason=reason)
            self.authentications.labels(listener=name)
            self.connection_accept_throttled.labels(listener=name)
            self.reauthentications.labels(listener=name)
            self.authentication_failures.labels(listener=name)

    @staticmethod
    def api_name(api_key: int) -> str:
        return api_key_map.get(api_key, str(api_key))

    def observe_request(self, api_key: int, seconds: float, size: int) -> None:
        name = self.api_name(api_key)
        self.requests.labels(api=name).inc()
        self.request_latency.labels(api=name).observe(seconds)
        self.request_bytes.inc(size)

    def add_collector(self, collector: object) -> None:
        """Register a custom collector (gauges computed at scrape time)."""
        self.registry.register(collector)  # type: ignore[arg-type]

"""Prometheus series of the broker sessions an active controller keeps: the
``odradek_controller_broker_*`` series (docs/metrics.md).

Heartbeat gaps are observed where fencing is decided, on the active controller, so they show
how close each broker came to its session timeout: a broker whose loop stalls on bulk work,
or a controller too busy to take heartbeats, shows up here before anyone is fenced.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from odradek.controller.service.sessions import GAP_BUCKETS, BrokerSessions

FENCING_REASONS = ("session_timeout", "process_gone")


class SessionsCollector(Collector):
    def __init__(self, sessions: BrokerSessions) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        gaps = self.sessions.gaps
        hist = HistogramMetricFamily(
            "odradek_controller_broker_heartbeat_gap_seconds",
            "Time between consecutive heartbeats of a broker as the active controller "
            "received them (compare with broker.heartbeat.interval.ms and "
            "broker.session.timeout.ms).", labels=["broker"])
        longest = GaugeMetricFamily(
            "odradek_controller_broker_heartbeat_gap_max_seconds",
            "Longest time between two heartbeats of a broker seen by this controller while "
            "active.", labels=["broker"])
        for broker_id in sorted(list(gaps.buckets)):  # read from the metrics thread
            counts = list(gaps.buckets[broker_id])
            hist.add_metric(
                [str(broker_id)],
                [(_bound(b), float(c)) for b, c in zip(GAP_BUCKETS, counts, strict=True)],
                gaps.total[broker_id])
            longest.add_metric([str(broker_id)], gaps.longest[broker_id])
        yield hist
        yield longest
        fenced = CounterMetricFamily(
            "odradek_controller_brokers_fenced",
            "Brokers this controller fenced, by reason: session_timeout (no heartbeat within "
            "broker.session.timeout.ms) or process_gone (its liveness stream closed and did "
            "not reopen within broker.session.disconnect.grace.ms).", labels=["reason"])
        for reason in FENCING_REASONS:
            fenced.add_metric([reason], dict(self.sessions.fenced_by_reason).get(reason, 0))
        yield fenced


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)

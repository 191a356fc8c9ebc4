"""Gauges of the transactions this node coordinates, computed when Prometheus scrapes.

The transaction coordinator answers for the transactional ids of the ``__transaction_state``
partitions this node leads, so each series covers this node's share; summed over the
cluster they cover every id. What an operator watches: transactions stuck in a state (a
rising ``prepare_commit`` count means markers are not getting written), the age of the
oldest open transaction (a transaction older than ``transaction.max.timeout.ms`` should
have been aborted by the coordinator: look for hanging ones with ``odradek transactions
find-hanging``), and partitions of ``__transaction_state`` still loading after a failover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from odradek.broker.txn.coordinator import TransactionCoordinator
from odradek.broker.txn.metadata import TxnState

# Every state a listed transaction can be in (Dead ids are never listed), with its label:
# every state gets a series, 0 included, so a rate or an alert sees it from the start.
STATE_LABELS = {s.state_name: s.name.lower() for s in TxnState if s is not TxnState.DEAD}
# States whose transaction is open: the partitions it wrote to hold their last stable
# offset back until its markers are written.
OPEN_STATES = ("Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence")


class TxnCollector(Collector):
    def __init__(self, coordinator: Callable[[], TransactionCoordinator | None],
                 now_ms: Callable[[], int]) -> None:
        """``coordinator``: the node's transaction coordinator (None before it starts);
        ``now_ms``: the coordinator's clock (wall time, as transaction start times are)."""
        self.coordinator = coordinator
        self.now_ms = now_ms

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "odradek_transactions",
            "Transactional ids this node coordinates, by the state of their transaction.",
            labels=["state"])
        oldest = GaugeMetricFamily(
            "odradek_transaction_oldest_open_seconds",
            "Age of the oldest open (Ongoing or Prepare*) transaction this node "
            "coordinates; 0 when none is open.")
        owned = GaugeMetricFamily(
            "odradek_transaction_coordinator_partitions",
            "__transaction_state partitions whose transactional ids this node coordinates.")
        loading = GaugeMetricFamily(
            "odradek_transaction_coordinator_loading_partitions",
            "__transaction_state partitions this node is still loading (their ids get "
            "COORDINATOR_LOAD_IN_PROGRESS meanwhile).")
        completed = CounterMetricFamily(
            "odradek_transactions_completed",
            "Transactions this node's coordinator completed (markers written, Complete* "
            "record durable) since it started, by result.", labels=["result"])
        timeouts = CounterMetricFamily(
            "odradek_transaction_timeout_aborts",
            "Transactions this node's coordinator aborted because they ran past their "
            "transaction.timeout.ms, since it started.")
        coord = self.coordinator()
        counts = dict.fromkeys(STATE_LABELS.values(), 0)
        age_ms = 0
        if coord is not None:
            owned.add_metric([], len(coord.owned_partitions()))
            loading.add_metric([], len(coord.loading_partitions()))
            listing = coord.list_transactions()
            for t in listing.transactions:
                label = STATE_LABELS.get(t.state)
                if label is not None:
                    counts[label] += 1
            age_ms = self._oldest_open_ms(coord, [t.transactional_id
                                                  for t in listing.transactions
                                                  if t.state in OPEN_STATES])
        else:
            owned.add_metric([], 0)
            loading.add_metric([], 0)
        for result in ("commit", "abort"):
            completed.add_metric([result], coord.completed[result] if coord else 0)
        timeouts.add_metric([], coord.timeout_aborts if coord else 0)
        for label, n in counts.items():
            by_state.add_metric([label], n)
        oldest.add_metric([], age_ms / 1000)
        yield from (by_state, oldest, owned, loading, completed, timeouts)

    def _oldest_open_ms(self, coord: TransactionCoordinator, open_ids: list[str]) -> int:
        starts = [d.transaction_start_time_ms for d in coord.describe_transactions(open_ids)
                  if d.transaction_start_time_ms >= 0]
        return max(0, self.now_ms() - min(starts)) if starts else 0

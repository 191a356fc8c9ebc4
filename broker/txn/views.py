"""Read-only views of the transactions this node coordinates: ListTransactions (KIP-664,
KIP-994 duration filter, KIP-1152 id pattern) and DescribeTransactions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from odradek.broker.txn.metadata import TxnState
from odradek.broker.txn.registry import TxnRegistry


@dataclass(frozen=True, slots=True)
class TransactionListing:
    transactional_id: str
    producer_id: int
    state: str


@dataclass(frozen=True, slots=True)
class ListTransactionsResult:
    error: ErrorCode
    # State names of the filter that are no state at all (the response says which).
    unknown_state_filters: tuple[str, ...] = ()
    transactions: tuple[TransactionListing, ...] = ()


@dataclass(frozen=True, slots=True)
class TransactionDescription:
    transactional_id: str
    error: ErrorCode
    state: str = ""
    producer_id: int = -1
    producer_epoch: int = -1
    transaction_timeout_ms: int = 0
    transaction_start_time_ms: int = -1
    # topic -> partitions of the transaction, sorted.
    topics: dict[str, tuple[int, ...]] = field(default_factory=dict)


def list_transactions(
    registry: TxnRegistry,
    now_ms: int,
    state_filters: Iterable[str] = (),
    producer_id_filters: Iterable[int] = (),
    duration_filter_ms: int = -1,
    transactional_id_pattern: str | None = None,
) -> ListTransactionsResult:
    """Kafka's rules: state names are exact (``Ongoing``); with state filters given, only
    those states match, and unknown names are reported back; a duration filter >= 0
    keeps transactions that started more than that long ago (Empty ones, never started,
    always qualify, as in Kafka). Dead ids are never listed."""
    if not registry.active:
        return ListTransactionsResult(ErrorCode.coordinator_not_available)
    if registry.loading_partitions():
        return ListTransactionsResult(ErrorCode.coordinator_load_in_progress)
    names = list(dict.fromkeys(state_filters))
    states = {s for s in (TxnState.from_name(n) for n in names) if s is not None}
    unknown = tuple(n for n in names if TxnState.from_name(n) is None)
    pids = set(producer_id_filters)
    pattern: re.Pattern[str] | None = None
    if transactional_id_pattern:
        try:
            pattern = re.compile(transactional_id_pattern)
        except re.error:
            return ListTransactionsResult(ErrorCode.invalid_regular_expression)
    out = []
    for _, md in registry.transactions():
        if md.state is TxnState.DEAD:
            continue
        if pids and md.producer_id not in pids:
            continue
        if names and md.state not in states:
            continue
        if duration_filter_ms >= 0 and now_ms - md.txn_start_timestamp <= duration_filter_ms:
            continue
        if pattern is not None and pattern.fullmatch(md.transactional_id) is None:
            continue
        out.append(TransactionListing(md.transactional_id, md.producer_id, md.state.state_name))
    out.sort(key=lambda t: t.transactional_id)
    return ListTransactionsResult(ErrorCode.none, unknown, tuple(out))


def describe_transaction(registry: TxnRegistry, transactional_id: str) -> TransactionDescription:
    if not registry.active:
        return TransactionDescription(transactional_id, ErrorCode.coordinator_not_available)
    if not transactional_id:
        return TransactionDescription(transactional_id, ErrorCode.invalid_request)
    err, _, md = registry.get(transactional_id)
    if err is not None:
        return TransactionDescription(transactional_id, err)
    if md is None or md.state is TxnState.DEAD:
        return TransactionDescription(transactional_id, ErrorCode.transactional_id_not_found)
    topics: dict[str, list[int]] = {}
    for topic, partition in sorted(md.partitions):
        topics.setdefault(topic, []).append(partition)
    return TransactionDescription(
        transactional_id,
        ErrorCode.none,
        state=md.state.state_name,
        producer_id=md.producer_id,
        producer_epoch=md.producer_epoch,
        transaction_timeout_ms=md.txn_timeout_ms,
        transaction_start_time_ms=md.txn_start_timestamp,
        topics={t: tuple(ps) for t, ps in topics.items()},
    )

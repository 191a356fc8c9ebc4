"""``odradek transactions list|describe|describe-producers|find-hanging|abort``: what
Kafka's ``kafka-transactions.sh`` does, over the Kafka protocol (KIP-664).

A *hanging* transaction is one a partition still holds open (its last stable offset cannot
pass it, so read_committed consumers stall) although its coordinator no longer knows it, for
instance after a lost marker or a producer state that outlived its transactional id. The
coordinator cannot finish it, so an operator aborts it on the partition: ``find-hanging``
finds them and ``abort`` writes the abort marker (WriteTxnMarkers to the partition leader,
with the producer id, epoch and coordinator epoch the partition reports).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from odradek.broker.cli.common import (
    CliError,
    admin_client,
    common_options,
    guard,
    print_json,
    retry,
    server_error,
    table,
)
from odradek.broker.cli.topics import describe_topics

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

T = TypeVar("T")

# Kafka's tool asks DescribeProducers for at most this many partitions at a time, so a
# search over a big cluster does not send one giant request.
MAX_BATCH = 500
# Kafka's default transaction.max.timeout.ms, in minutes: older open transactions than
# this cannot be running normally.
DEFAULT_MAX_TIMEOUT_MIN = 15
_NOT_FOUND_HINT = ("not known to its coordinator: never used, or expired after "
                   "transactional.id.expiration.ms; `odradek transactions list` shows the ids")


@dataclass(frozen=True, slots=True)
class TxnListing:
    transactional_id: str
    coordinator: int
    producer_id: int
    state: str


@dataclass(frozen=True, slots=True)
class TxnView:
    transactional_id: str
    coordinator: int
    producer_id: int
    producer_epoch: int
    state: str
    timeout_ms: int
    # None for a transaction not started (Empty, or never used).
    start_time_ms: int | None
    duration_ms: int | None
    partitions: list[str]


@dataclass(frozen=True, slots=True)
class ProducerView:
    producer_id: int
    producer_epoch: int
    # -1 while no marker was written for the producer on the partition.
    coordinator_epoch: int
    last_sequence: int
    last_timestamp: int
    # None when the producer has no open transaction on the partition.
    current_txn_start_offset: int | None


@dataclass(frozen=True, slots=True)
class OpenTxn:
    topic: str
    partition: int
    producer: ProducerView

    def row(self, now_ms: int) -> dict[str, Any]:
        p = self.producer
        return {"topic": self.topic, "partition": self.partition,
                "producer_id": p.producer_id, "producer_epoch": p.producer_epoch,
                "coordinator_epoch": p.coordinator_epoch,
                "start_offset": p.current_txn_start_offset,
                "last_timestamp": p.last_timestamp,
                "duration_min": (now_ms - p.last_timestamp) // 60_000}


def now_ms() -> int:
    return int(time.time() * 1000)


def _ask(what: str, func: Callable[[], T]) -> T:
    """``func()``, retried while the server answers a retriable error; another Kafka error
    becomes one line saying what failed and what to do."""
    from kafka.errors import KafkaError

    try:
        return retry(func)
    except KafkaError as e:
        code = getattr(e, "errno", None)
        if code is None:
            raise
        raise server_error(what, int(code)) from None


def _tp_name(tp: Any) -> str:
    return f"{tp.topic}-{tp.partition}"


def _producer_view(p: Any) -> ProducerView:
    start = p.current_transaction_start_offset
    return ProducerView(p.producer_id, p.producer_epoch, p.coordinator_epoch, p.last_sequence,
                        p.last_timestamp, None if start is None or start < 0 else start)


def _state_name(state: Any) -> str:
    return str(getattr(state, "value", state))


# --- list -----------------------------------------------------------------------------------

def list_transactions(admin: KafkaAdminClient, states: Sequence[str] = (),
                      producer_ids: Sequence[int] = (),
                      duration_ms: int | None = None) -> list[TxnListing]:
    """Every broker's transactions (each coordinates the ids of the ``__transaction_state``
    partitions it leads), by id."""
    by_broker = _ask("cannot list transactions", lambda: admin.list_transactions(
        state_filters=list(states) or None, producer_id_filters=list(producer_ids) or None,
        duration_filter_ms=duration_ms))
    out = [TxnListing(t.transactional_id, broker, t.producer_id, _state_name(t.state))
           for broker, listings in by_broker.items() for t in listings]
    return sorted(out, key=lambda t: (t.transactional_id, t.coordinator))


@guard
def transactions_list(args: argparse.Namespace) -> int:
    admin = admin_client(args)
    try:
        listing = list_transactions(admin, args.state or (), args.producer_id or (),
                                    args.duration_filter)
    finally:
        admin.close()
    if args.json:
        print_json(listing)
    else:
        table(["TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"],
              [[t.transactional_id, t.coordinator, t.producer_id, t.state] for t in listing])
    return 0


# --- describe -------------------------------------------------------------------------------

def describe_transaction(admin: KafkaAdminClient, transactional_id: str) -> TxnView | None:
    """The transaction of an id, asked of its coordinator; None when the coordinator does
    not know the id."""
    from kafka.errors import TransactionalIdNotFoundError

    def ask() -> dict[str, Any]:
        try:
            return dict(admin.describe_transactions([transactional_id]))
        except TransactionalIdNotFoundError:
            return {}

    d = _ask(f"cannot describe transactional id {transactional_id!r}", ask).get(transactional_id)
    if d is None:
        return None
    start = d.transaction_start_time_ms if d.transaction_start_time_ms >= 0 else None
    return TxnView(
        transactional_id, d.coordinator_id, d.producer_id, d.producer_epoch,
        _state_name(d.state), d.transaction_timeout_ms, start,
        None if start is None else now_ms() - start,
        sorted(_tp_name(tp) for tp in d.topic_partitions))


@guard
def transactions_describe(args: argparse.Namespace) -> int:
    admin = admin_client(args)
    try:
        view = describe_transaction(admin, args.transactional_id)
    finally:
        admin.close()
    if view is None:
        raise CliError(f"transactional id {args.transactional_id!r} is {_NOT_FOUND_HINT}")
    if args.json:
        print_json(view)
        return 0
    table(["COORDINATOR", "TRANSACTIONAL-ID", "PRODUCER-ID", "PRODUCER-EPOCH", "STATE",
           "TIMEOUT-MS", "START-TIME-MS", "DURATION-MS", "PARTITIONS"],
          [[view.coordinator, view.transactional_id, view.producer_id, view.producer_epoch,
            view.state, view.timeout_ms, _or_none(view.start_time_ms),
            _or_none(view.duration_ms), ",".join(view.partitions) or "-"]])
    return 0


def _or_none(value: int | None) -> object:
    return "None" if value is None else value


# --- describe-producers ----------------------------------------------------------------------

def describe_producers(admin: KafkaAdminClient, tps: Sequence[Any], broker_id: int | None = None
                       ) -> dict[tuple[str, int], list[ProducerView]]:
    """The active producers of each partition, as its leader (or ``broker_id``'s replica)
    knows them; asked ``MAX_BATCH`` partitions at a time."""
    out: dict[tuple[str, int], list[ProducerView]] = {}
    where = "its leader" if broker_id is None else f"broker {broker_id}"
    for batch in _batches(list(tps), MAX_BATCH):
        what = (f"cannot describe the producers of {_tp_name(batch[0])} on {where}"
                if len(batch) == 1 else
                f"cannot describe the producers of {len(batch)} partitions on {where}")
        got = _ask(what, functools.partial(admin.describe_producers, batch,
                                           broker_id=broker_id))
        for tp, state in got.items():
            out[(tp.topic, tp.partition)] = sorted(
                (_producer_view(p) for p in state.active_producers),
                key=lambda v: v.producer_id)
    return out


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@guard
def transactions_describe_producers(args: argparse.Namespace) -> int:
    from kafka import TopicPartition

    admin = admin_client(args)
    try:
        found = describe_producers(admin, [TopicPartition(args.topic, args.partition)],
                                   args.broker_id)
    finally:
        admin.close()
    producers = found.get((args.topic, args.partition), [])
    if args.json:
        print_json({"topic": args.topic, "partition": args.partition, "producers": producers})
        return 0
    table(["PRODUCER-ID", "PRODUCER-EPOCH", "COORDINATOR-EPOCH", "LAST-SEQUENCE",
           "LAST-TIMESTAMP", "CURRENT-TXN-START-OFFSET"],
          [[p.producer_id, p.producer_epoch, p.coordinator_epoch, p.last_sequence,
            p.last_timestamp, _or_none(p.current_txn_start_offset)] for p in producers])
    return 0


# --- find-hanging ----------------------------------------------------------------------------

def _partitions_to_search(admin: KafkaAdminClient, topic: str | None, partition: int | None,
                          broker_id: int | None) -> list[Any]:
    from kafka import TopicPartition

    if topic is not None and partition is not None:
        return [TopicPartition(topic, partition)]
    described = describe_topics(admin, [topic] if topic is not None else None)
    tps = []
    for t in described:
        if topic is None and t.get("is_internal"):
            continue  # as Kafka's tool: internal topics only when named
        for p in t["partitions"]:
            if broker_id is None or broker_id in (p.get("replica_nodes") or ()):
                tps.append(TopicPartition(t["name"], p["partition_index"]))
    return sorted(tps, key=lambda tp: (tp.topic, tp.partition))


def hanging_transactions(admin: KafkaAdminClient, tps: Sequence[Any], max_timeout_ms: int,
                         broker_id: int | None = None) -> list[OpenTxn]:
    """Kafka's rule: a transaction open on a partition for longer than the longest
    transaction timeout (measured from the producer's last write there) is hanging when its
    producer id maps to no transactional id, its id is unknown to the coordinator, or the
    coordinator's transaction does not include the partition (the coordinator has moved on
    and will write no marker there)."""
    now = now_ms()
    candidates = [OpenTxn(topic, partition, p)
                  for (topic, partition), producers in describe_producers(admin, tps,
                                                                          broker_id).items()
                  for p in producers
                  if p.current_txn_start_offset is not None
                  and now - p.last_timestamp > max_timeout_ms]
    if not candidates:
        return []
    pids = sorted({c.producer.producer_id for c in candidates})
    ids = {t.producer_id: t.transactional_id for t in list_transactions(admin, producer_ids=pids)
           if t.producer_id in pids}
    descriptions = {tid: describe_transaction(admin, tid) for tid in sorted(set(ids.values()))}
    hanging = []
    for c in candidates:
        tid = ids.get(c.producer.producer_id)
        d = None if tid is None else descriptions.get(tid)
        if d is None or f"{c.topic}-{c.partition}" not in d.partitions:
            hanging.append(c)
    return sorted(hanging, key=lambda c: (c.topic, c.partition, c.producer.producer_id))


@guard
def transactions_find_hanging(args: argparse.Namespace) -> int:
    if args.partition is not None and args.topic is None:
        raise CliError("--partition needs --topic")
    if args.max_transaction_timeout <= 0:
        raise CliError("--max-transaction-timeout is a number of minutes above 0 (the "
                       "brokers' transaction.max.timeout.ms; Kafka's default is 15)")
    admin = admin_client(args)
    try:
        tps = _partitions_to_search(admin, args.topic, args.partition, args.broker_id)
        hanging = hanging_transactions(admin, tps, args.max_transaction_timeout * 60_000,
                                       args.broker_id)
    finally:
        admin.close()
    now = now_ms()
    rows = [h.row(now) for h in hanging]
    if args.json:
        print_json(rows)
        return 0
    table(["TOPIC", "PARTITION", "PRODUCER-ID", "PRODUCER-EPOCH", "COORDINATOR-EPOCH",
           "START-OFFSET", "LAST-TIMESTAMP", "DURATION-MIN"],
          [list(r.values()) for r in rows])
    return 0


# --- abort ------------------------------------------------------------------------------------

def abort_transaction(admin: KafkaAdminClient, topic: str, partition: int, start_offset: int
                      ) -> ProducerView:
    """Write an abort marker for the transaction open at ``start_offset`` on the partition,
    for the producer id, epoch and coordinator epoch its leader reports; the producer."""
    from kafka import TopicPartition
    from kafka.admin._transactions import AbortTransactionSpec

    tp = TopicPartition(topic, partition)
    producers = describe_producers(admin, [tp]).get((topic, partition), [])
    found = next((p for p in producers if p.current_txn_start_offset == start_offset), None)
    if found is None:
        open_at = sorted(p.current_txn_start_offset for p in producers
                         if p.current_txn_start_offset is not None)
        raise CliError(
            f"no open transaction starts at offset {start_offset} on {topic}-{partition} "
            f"(open ones start at: {', '.join(map(str, open_at)) or 'none'}); "
            f"`odradek transactions describe-producers --topic {topic} --partition "
            f"{partition}` shows them")
    # A producer whose first transaction never got a marker here reports coordinator epoch
    # -1; Kafka's tool sends 0 then, which no leader epoch is below.
    spec = AbortTransactionSpec(tp, found.producer_id, found.producer_epoch,
                                max(found.coordinator_epoch, 0))
    _ask(f"cannot abort the transaction of producer {found.producer_id} at offset "
         f"{start_offset} on {topic}-{partition}", lambda: admin.abort_transaction(spec))
    return found


@guard
def transactions_abort(args: argparse.Namespace) -> int:
    admin = admin_client(args)
    try:
        producer = abort_transaction(admin, args.topic, args.partition, args.start_offset)
    finally:
        admin.close()
    if args.json:
        print_json({"topic": args.topic, "partition": args.partition,
                    "start_offset": args.start_offset, "producer_id": producer.producer_id,
                    "producer_epoch": producer.producer_epoch,
                    "coordinator_epoch": max(producer.coordinator_epoch, 0), "aborted": True})
    else:
        print(f"aborted the transaction of producer {producer.producer_id} (epoch "
              f"{producer.producer_epoch}) open since offset {args.start_offset} on "
              f"{args.topic}-{args.partition}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``transactions`` and its actions."""
    common = common_options()
    txns = sub.add_parser("transactions",
                          help="list and describe transactions, find and abort hanging ones")
    tsub = txns.add_subparsers(dest="transactions_command", required=True, metavar="ACTION")
    p = tsub.add_parser("list", parents=[common],
                        help="transactional ids of every coordinator, with their state")
    p.add_argument("--state", action="append", metavar="STATE",
                   help="only this state (Empty, Ongoing, PrepareCommit, PrepareAbort, "
                        "CompleteCommit, CompleteAbort, PrepareEpochFence); repeatable")
    p.add_argument("--producer-id", action="append", type=int, metavar="ID",
                   help="only this producer id; repeatable")
    p.add_argument("--duration-filter", type=int, metavar="MS",
                   help="only transactions running for longer than MS milliseconds")
    p.set_defaults(func=transactions_list)
    p = tsub.add_parser("describe", parents=[common],
                        help="a transactional id's state, producer and partitions")
    p.add_argument("--transactional-id", required=True)
    p.set_defaults(func=transactions_describe)
    p = tsub.add_parser("describe-producers", parents=[common],
                        help="the active producers of a partition and their open transactions")
    p.add_argument("--topic", required=True)
    p.add_argument("--partition", type=int, required=True)
    p.add_argument("--broker-id", type=int,
                   help="ask this broker's replica instead of the leader")
    p.set_defaults(func=transactions_describe_producers)
    p = tsub.add_parser("find-hanging", parents=[common],
                        help="open transactions older than the longest transaction timeout "
                             "that their coordinator will not finish")
    p.add_argument("--topic", help="only this topic (default: every non-internal topic)")
    p.add_argument("--partition", type=int, help="only this partition of --topic")
    p.add_argument("--broker-id", type=int,
                   help="only partitions with a replica on this broker, as it knows them")
    p.add_argument("--max-transaction-timeout", type=int, default=DEFAULT_MAX_TIMEOUT_MIN,
                   metavar="MIN",
                   help="the brokers' transaction.max.timeout.ms, in minutes (default 15): "
                        "open transactions idle for longer are candidates")
    p.set_defaults(func=transactions_find_hanging)
    p = tsub.add_parser("abort", parents=[common],
                        help="abort the transaction open at an offset of a partition "
                             "(writes an abort marker on the partition's leader)")
    p.add_argument("--topic", required=True)
    p.add_argument("--partition", type=int, required=True)
    p.add_argument("--start-offset", type=int, required=True,
                   help="first offset of the transaction (find-hanging's START-OFFSET)")
    p.set_defaults(func=transactions_abort)

"""The client side of a verification run: producers, consumers, readers and the final read,
all through independent client libraries (confluent-kafka/librdkafka and kafka-python),
recording every step into the run's history (history.py).

Producers write unique values ``<client>-<key>-<seq>`` to explicit partitions (a key's
partition is a stable hash of it), so a value names exactly one send. Which producers run:

=========  ===============  ===================================================================
client     library          settings
=========  ===============  ===================================================================
ckidem     confluent-kafka  enable.idempotence=true, acks=all (retries until the message times
                            out; the broker drops duplicates)
kpidem     kafka-python     enable_idempotence=True, acks=all
kpplain    kafka-python     idempotence off, retries=0: exactly one attempt per record
ckplain    confluent-kafka  idempotence off, message.send.max.retries=0 (only with acks=1,
                            where idempotence is impossible; it replaces ckidem and kpidem)
=========  ===============  ===================================================================

A non-idempotent producer that retries may legitimately write a record twice under Kafka's
semantics, so a non-idempotent producer must make one attempt only. librdkafka cannot be
made to: it retries leader-change errors (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, ...)
without counting them against message.send.max.retries, assuming nothing was appended, but
a leader that loses its leadership while an acks=all write waits for followers answers
NOT_LEADER_OR_FOLLOWER after the append (Kafka does the same). A verification run caught
exactly that duplicate, so with acks=all the non-idempotent producer is kafka-python's,
which honours retries=0; ckplain runs only in acks=1 runs (negative controls), where
duplicates are not what is looked for.

A failure is recorded as ``definite`` only when the record certainly was not appended: the
broker refused it before appending (not enough replicas, unknown partition, no leader) on
the only attempt of a producer that does not retry (kpplain), or the library refused the
send outright. Everything else (timeouts, lost connections, errors after retries,
NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER, any librdkafka failure) leaves the
outcome unknown, and a later read of the value is allowed.

librdkafka's idempotent producer has a known bug of the same origin
(confluentinc/librdkafka#4953, open): a write answered NOT_LEADER_OR_FOLLOWER after its
append is marked "not persisted"; when a request behind it then gets
OUT_OF_ORDER_SEQUENCE_NUMBER, librdkafka bumps the producer epoch and sends the record again
under the new epoch, where no broker can recognise it: a duplicate. A verification run
reproduced it against Odradek, which answers as Kafka does (a preferred-leader election moved
a partition to a node paused a second before, while an acks=all write waited on the old
leader). ckidem therefore keeps one request in flight per connection, which leaves no request
behind the failed one to trigger the epoch bump; kpidem keeps kafka-python's default of five,
so pipelined idempotent writes are still exercised.

An acknowledgement may come without an offset: librdkafka's idempotent producer acknowledges
a request whose answer was lost (a timeout) once a later request of the same producer
succeeds, since the broker must then have appended it ("implicit ack"). It is recorded with
offset -1: acknowledged, offset unknown.

Consumers: one group consumer per library in one group (range assignor, so the libraries
can share it), recording an ``Assign`` on every rebalance and a ``Poll`` for every record;
and one reader per library with manual assignment of every partition from the beginning,
which records a new ``Assign`` whenever it has to start a partition over.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from odradek.broker.verify.history import Ack, Assign, Event, Fail, FinalRead, Poll, Send

Record = Callable[[Event], None]
Clock = Callable[[], float]

# Broker errors returned only before anything is appended (Kafka error codes).
# NOT_LEADER_OR_FOLLOWER is not among them: a leader that loses leadership while an acks=all
# write waits for its followers answers it after the append (Kafka does too), and the new
# leader may well hold the record.
DEFINITE_CODES = {3: "UNKNOWN_TOPIC_OR_PARTITION", 5: "LEADER_NOT_AVAILABLE",
                  19: "NOT_ENOUGH_REPLICAS"}
# librdkafka's own log lines (disconnects during faults, mostly): the runner sends them to a
# file in the run directory rather than the terminal.
CLIENT_LOG = logging.getLogger("odradek.verify.clients")
MAX_IN_FLIGHT = 2000  # per producer: stop handing out values while this many are unresolved


@dataclass
class WorkloadConfig:
    bootstrap: str
    topic: str
    partitions: int
    acks: str = "all"  # "all" or "1"
    rate: float = 150.0  # messages per second over all producers
    keys_per_partition: int = 3
    group: str = "odradek-verify"
    reader_group: str = "odradek-verify-readers"  # librdkafka needs one; never committed
    client_debug: str = ""  # librdkafka `debug` contexts for the producers (e.g. "eos,msg")


def partition_of(key: str, partitions: int) -> int:
    """A key's partition: a stable hash (CRC-32 of its UTF-8 bytes) modulo the count."""
    return zlib.crc32(key.encode()) % partitions


def make_keys(partitions: int, per_partition: int) -> list[str]:
    """Keys ``k0, k1, ...`` until every partition has ``per_partition`` of them."""
    keys: list[str] = []
    counts = Counter[int]()
    i = 0
    while min((counts[p] for p in range(partitions)), default=0) < per_partition:
        key = f"k{i}"
        i += 1
        p = partition_of(key, partitions)
        if counts[p] < per_partition:
            counts[p] += 1
            keys.append(key)
    return keys


@dataclass
class ClientStats:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    definite: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    restarts: int = 0

    @property
    def unresolved(self) -> int:
        return self.sent - self.acked - self.failed


# --- producers --------------------------------------------------------------------------


class Producer:
    """A thread handing out unique values at ``rate`` per second, round-robin over keys."""

    library = ""

    def __init__(self, name: str, cfg: WorkloadConfig, record: Record, clock: Clock,
                 rate: float, *, idempotent: bool, log: Callable[[str], None]) -> None:
        self.name = name
        self.cfg = cfg
        self.record = record
        self.clock = clock
        self.rate = rate
        self.idempotent = idempotent
        self.log = log
        self.keys = make_keys(cfg.partitions, cfg.keys_per_partition)
        self.seq: Counter[str] = Counter()
        self.stats = ClientStats()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"producer-{name}", daemon=True)

    # library hooks
    def open(self) -> None: ...
    def send(self, key: str, partition: int, value: str) -> None: ...
    def service(self, timeout: float) -> None: ...
    def drain(self, timeout: float) -> None: ...
    def close(self) -> None: ...
    def broken(self) -> bool:
        return False

    def start(self) -> Producer:
        self._thread.start()
        return self

    def stop(self, drain_timeout: float = 20.0) -> None:
        """Hand out no more values; wait up to ``drain_timeout`` for outstanding ones."""
        self.drain_timeout = drain_timeout
        self._stopping.set()
        self._thread.join(drain_timeout + 30)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        i = 0
        next_at = time.monotonic()
        opened = False
        while not self._stopping.is_set():
            try:
                if not opened:
                    self.open()
                    opened = True
                elif self.broken():
                    self.log(f"{self.name}: producer is unusable, re-creating it")
                    self.stats.restarts += 1
                    with contextlib.suppress(Exception):
                        self.close()
                    opened = False
                    continue
            except Exception as e:  # noqa: BLE001 - e.g. no broker reachable yet
                self.stats.errors[f"open: {type(e).__name__}"] += 1
                self._stopping.wait(1.0)
                continue
            if self.stats.unresolved >= MAX_IN_FLIGHT:
                self.service(0.1)
                continue
            key = self.keys[i % len(self.keys)]
            i += 1
            self.seq[key] += 1
            value = f"{self.name}-{key}-{self.seq[key]}"
            partition = partition_of(key, self.cfg.partitions)
            self.record(Send(self.clock(), self.name, self.cfg.topic, partition, key, value))
            with self._lock:
                self.stats.sent += 1
            try:
                self.send(key, partition, value)
            except Exception as e:  # noqa: BLE001 - refused by the library: never left it
                self.failed(partition, value, f"{type(e).__name__}: {e}", definite=True)
            next_at += interval
            while not self._stopping.is_set():
                delay = next_at - time.monotonic()
                if delay <= 0:
                    break
                self.service(min(delay, 0.1))
            if time.monotonic() - next_at > 1.0:
                next_at = time.monotonic()  # fell behind (e.g. a GC pause): do not burst
        if opened:
            try:
                self.drain(getattr(self, "drain_timeout", 20.0))
            except Exception as e:  # noqa: BLE001
                self.stats.errors[f"drain: {type(e).__name__}"] += 1
            with contextlib.suppress(Exception):
                self.close()

    # outcomes (called from library threads)
    def acked(self, partition: int, value: str, offset: int) -> None:
        self.record(Ack(self.clock(), self.name, self.cfg.topic, partition, value, offset))
        with self._lock:
            self.stats.acked += 1

    def failed(self, partition: int, value: str, error: str, *, definite: bool) -> None:
        self.record(Fail(self.clock(), self.name, self.cfg.topic, partition, value, error,
                         definite))
        with self._lock:
            self.stats.failed += 1
            self.stats.definite += definite
            self.stats.errors[error.split(":")[0]] += 1


class ConfluentProducer(Producer):
    library = "confluent-kafka"

    def open(self) -> None:
        from confluent_kafka import Producer as CKProducer

        self._fatal = False
        conf: dict[str, Any] = {
            "bootstrap.servers": self.cfg.bootstrap, "client.id": self.name,
            "logger": CLIENT_LOG,
            "acks": self.cfg.acks, "enable.idempotence": self.idempotent,
            "linger.ms": 5, "message.timeout.ms": 30000, "request.timeout.ms": 10000,
            "retry.backoff.ms": 100, "topic.metadata.refresh.interval.ms": 5000,
            "error_cb": self._error,
        }
        if self.cfg.client_debug:
            conf["debug"] = self.cfg.client_debug
        if self.idempotent:
            # One request in flight: with several, librdkafka can write a record twice during
            # a leader change (confluentinc/librdkafka#4953, see the module docstring).
            conf["max.in.flight.requests.per.connection"] = 1
        else:
            conf["message.send.max.retries"] = 0
        self._p = CKProducer(conf)

    def _error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = True
        self.stats.errors[f"client: {err.name()}"] += 1

    def broken(self) -> bool:
        return self._fatal

    def send(self, key: str, partition: int, value: str) -> None:
        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                # None: an implicit ack (see the module docstring), offset unknown.
                offset = msg.offset()
                self.acked(msg.partition(), value, -1 if offset is None else offset)
            else:
                # Never definite: librdkafka may have retried (see the module docstring).
                self.failed(partition, value, f"{err.name()}: {err.str()}", definite=False)

        while True:
            try:
                self._p.produce(self.cfg.topic, value=value.encode(), key=key.encode(),
                                partition=partition, on_delivery=delivered)
                return
            except BufferError:
                self._p.poll(0.1)

    def service(self, timeout: float) -> None:
        self._p.poll(timeout)

    def drain(self, timeout: float) -> None:
        self._p.flush(timeout)

    def close(self) -> None:
        # Whatever is still queued or in flight fails as purged: its outcome is unknown.
        self._p.purge(in_queue=True, in_flight=True, blocking=False)
        self._p.poll(0)
        self._p.close()
        del self._p


class KafkaPythonProducer(Producer):
    library = "kafka-python"

    def open(self) -> None:
        from kafka import KafkaProducer

        self._fatal = False
        kw: dict[str, Any] = {
            "bootstrap_servers": self.cfg.bootstrap.split(","), "client_id": self.name,
            "acks": "all" if self.cfg.acks == "all" else int(self.cfg.acks),
            "enable_idempotence": self.idempotent, "linger_ms": 5,
            "request_timeout_ms": 10000, "delivery_timeout_ms": 30000,
            "retry_backoff_ms": 100, "metadata_max_age_ms": 5000, "max_block_ms": 5000,
        }
        if not self.idempotent:
            kw["retries"] = 0
        self._p = KafkaProducer(**kw)

    def send(self, key: str, partition: int, value: str) -> None:
        from kafka.errors import KafkaError

        def ok(md: Any) -> None:
            self.acked(md.partition, value, md.offset)

        def err(exc: BaseException) -> None:
            definite = not self.idempotent and getattr(exc, "errno", None) in DEFINITE_CODES
            self.failed(partition, value, f"{type(exc).__name__}: {exc}", definite=definite)

        try:
            future = self._p.send(self.cfg.topic, key=key.encode(), value=value.encode(),
                                  partition=partition)
        except KafkaError as e:
            # A timeout waiting for metadata or buffer space is passing; anything else (closed,
            # a fatal idempotence state) needs a new producer.
            self._fatal = type(e).__name__ != "KafkaTimeoutError"
            raise
        future.add_callback(ok)
        future.add_errback(err)

    def broken(self) -> bool:
        return self._fatal

    def service(self, timeout: float) -> None:
        time.sleep(timeout)  # kafka-python delivers on its own sender thread

    def drain(self, timeout: float) -> None:
        from kafka.errors import KafkaTimeoutError

        with contextlib.suppress(KafkaTimeoutError):
            self._p.flush(timeout)

    def close(self) -> None:
        self._p.close(timeout=2)


# --- consumers and readers -----------------------------------------------------------------


class Reader:
    """A consumer thread that records what it polls."""

    def __init__(self, name: str, cfg: WorkloadConfig, record: Record, clock: Clock,
                 log: Callable[[str], None]) -> None:
        self.name = name
        self.cfg = cfg
        self.record = record
        self.clock = clock
        self.log = log
        self.polled = 0
        self.positions: dict[int, int] = {}  # partition -> next offset, from what was polled
        self.errors: Counter[str] = Counter()
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{name}", daemon=True)

    def start(self) -> Reader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(30)

    def polled_record(self, partition: int, offset: int, value: bytes | None) -> None:
        text = value.decode(errors="replace") if value is not None else ""
        self.record(Poll(self.clock(), self.name, self.cfg.topic, partition, offset, text))
        self.positions[partition] = offset + 1
        self.polled += 1

    def assigned(self, partitions: list[int], group: str | None) -> None:
        self.record(Assign(self.clock(), self.name, self.cfg.topic, sorted(partitions), group))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.session()
            except Exception as e:  # noqa: BLE001 - recorded; the reader starts over
                self.errors[f"{type(e).__name__}: {str(e)[:120]}"] += 1
                self.restarts += 1
                self._stopping.wait(1.0)

    def session(self) -> None:
        raise NotImplementedError


class ConfluentGroupConsumer(Reader):
    def session(self) -> None:
        from confluent_kafka import Consumer

        c = Consumer({
            "bootstrap.servers": self.cfg.bootstrap, "logger": CLIENT_LOG,
            "group.id": self.cfg.group,
            "client.id": self.name, "auto.offset.reset": "earliest",
            "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
            "partition.assignment.strategy": "range",
            "topic.metadata.refresh.interval.ms": 5000,
        })
        c.subscribe([self.cfg.topic],
                    on_assign=lambda _c, ps: self.assigned([p.partition for p in ps],
                                                           self.cfg.group))
        try:
            while not self._stopping.is_set():
                msg = c.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    self.errors[msg.error().name()] += 1
                    continue
                self.polled_record(msg.partition(), msg.offset(), msg.value())
        finally:
            c.close()


class KafkaPythonGroupConsumer(Reader):
    def session(self) -> None:
        from kafka import ConsumerRebalanceListener, KafkaConsumer
        from kafka.coordinator.assignors.range import RangePartitionAssignor

        reader = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                reader.assigned([tp.partition for tp in assigned], reader.cfg.group)

        c = KafkaConsumer(
            bootstrap_servers=self.cfg.bootstrap.split(","), group_id=self.cfg.group,
            client_id=self.name, auto_offset_reset="earliest", enable_auto_commit=True,
            auto_commit_interval_ms=1000, session_timeout_ms=6000,
            heartbeat_interval_ms=1000, request_timeout_ms=15000,
            partition_assignment_strategy=[RangePartitionAssignor],
            metadata_max_age_ms=5000)
        c.subscribe([self.cfg.topic], listener=Listener())
        try:
            while not self._stopping.is_set():
                batches = c.poll(timeout_ms=500, max_records=500)
                for tp, msgs in batches.items():
                    for m in msgs:
                        self.polled_record(tp.partition, m.offset, m.value)
        finally:
            c.close(autocommit=False)


class ConfluentManualReader(Reader):
    """Reads every partition from the beginning with manual assignment. Offset resets are
    errors (auto.offset.reset=error): a reader is never moved silently; the partition starts
    over from the beginning as a new session instead."""

    def session(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        c = Consumer({
            "bootstrap.servers": self.cfg.bootstrap, "logger": CLIENT_LOG,
            "group.id": self.cfg.reader_group,
            "client.id": self.name, "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": "error",
            "topic.metadata.refresh.interval.ms": 5000,
        })

        def assign(fresh: list[int]) -> None:
            if fresh:
                self.assigned(fresh, None)
            c.assign([TopicPartition(self.cfg.topic, p, self.positions.get(p, OFFSET_BEGINNING))
                      for p in range(self.cfg.partitions)])

        try:
            assign([p for p in range(self.cfg.partitions)])
            while not self._stopping.is_set():
                msg = c.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err:
                    self.errors[err.name()] += 1
                    if err.code() in (KafkaError._AUTO_OFFSET_RESET,
                                      KafkaError.OFFSET_OUT_OF_RANGE) \
                            and msg.partition() is not None and msg.partition() >= 0:
                        p = msg.partition()
                        self.log(f"{self.name}: partition {p} offset out of range at "
                                 f"{self.positions.get(p)}; reading it again from the start")
                        self.positions.pop(p, None)
                        assign([p])
                    continue
                self.polled_record(msg.partition(), msg.offset(), msg.value())
        finally:
            c.close()


class KafkaPythonManualReader(Reader):
    """kafka-python's reader with manual assignment (auto_offset_reset='none')."""

    def session(self) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

        c = KafkaConsumer(bootstrap_servers=self.cfg.bootstrap.split(","), group_id=None,
                          client_id=self.name, enable_auto_commit=False,
                          auto_offset_reset="none", request_timeout_ms=15000,
                          metadata_max_age_ms=5000)
        tps = {p: TopicPartition(self.cfg.topic, p) for p in range(self.cfg.partitions)}

        def position(p: int) -> None:
            if p in self.positions:
                c.seek(tps[p], self.positions[p])
            else:
                c.seek_to_beginning(tps[p])

        try:
            c.assign(list(tps.values()))
            self.assigned(list(tps), None)
            for p in tps:
                position(p)
            while not self._stopping.is_set():
                try:
                    batches = c.poll(timeout_ms=500, max_records=500)
                except (OffsetOutOfRangeError, NoOffsetForPartitionError) as e:
                    self.errors[type(e).__name__] += 1
                    arg = e.args[0] if e.args else None
                    bad = ([tp.partition for tp in arg] if isinstance(arg, dict)
                           else [arg.partition] if hasattr(arg, "partition") else list(tps))
                    self.log(f"{self.name}: {type(e).__name__} on {bad}; reading them again "
                             "from the start")
                    for p in bad:
                        self.positions.pop(p, None)
                        position(p)
                    self.assigned(bad, None)
                    continue
                for tp, msgs in batches.items():
                    for m in msgs:
                        self.polled_record(tp.partition, m.offset, m.value)
        finally:
            c.close(autocommit=False)


# --- cluster views ------------------------------------------------------------------------


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "logger": CLIENT_LOG,
                        "socket.timeout.ms": 5000})


def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int,
                 min_insync: int, timeout: float = 60.0) -> bool:
    """Create the topic unless it exists; True if created here."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        fut = admin.create_topics([NewTopic(topic, partitions, replication_factor, config={
            "min.insync.replicas": str(min_insync)})], operation_timeout=15)[topic]
        try:
            fut.result(20)
            return True
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return False
            if time.monotonic() > deadline or not err.retriable():
                raise RuntimeError(f"cannot create topic {topic}: {err.str()}") from e
        time.sleep(1)


def partition_states(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas, isr) as one broker reports it."""
    md = _admin(bootstrap).list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        raise RuntimeError(f"topic {topic}: {t.error if t else 'missing'}")
    return {p.id: (p.leader, sorted(p.replicas), sorted(p.isrs))
            for p in t.partitions.values()}


def wait_healthy(bootstrap: str, topic: str, partitions: int, timeout: float,
                 log: Callable[[str], None] = print) -> str | None:
    """Wait until every partition has a leader and its whole replica set in sync, twice in
    a row; None when it is, else a message saying what was still wrong."""
    deadline = time.monotonic() + timeout
    good = 0
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            states = partition_states(bootstrap, topic)
            bad = {p: s for p, s in states.items() if s[0] < 0 or s[2] != s[1]}
            if len(states) < partitions:
                last = f"only {len(states)} of {partitions} partitions known"
            elif bad:
                last = "; ".join(f"partition {p}: leader {s[0]} replicas {s[1]} isr {s[2]}"
                                 for p, s in sorted(bad.items()))
            else:
                good += 1
                if good >= 2:
                    return None
                time.sleep(0.5)
                continue
        except Exception as e:  # noqa: BLE001 - a node may still be starting
            last = f"{type(e).__name__}: {e}"
        good = 0
        time.sleep(0.5)
    msg = f"cluster not healthy after {timeout:.0f}s: {last}"
    log(msg)
    return msg


def end_offsets(bootstrap: str, topic: str, partitions: int, group: str,
                timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """partition -> (log start, high watermark)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "logger": CLIENT_LOG,
                  "group.id": group, "enable.auto.commit": False})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout,
                                           cached=False) for p in range(partitions)}
    finally:
        c.close()


def final_read(bootstrap: str, topic: str, partitions: int, record: Record, clock: Clock,
               group: str, timeout: float = 90.0) -> list[str]:
    """Read every partition from its log start to its high watermark (manual assignment),
    retrying until the read reaches the high watermark; record one FinalRead each. Returns
    the partitions it could not read completely (as messages)."""
    from confluent_kafka import Consumer, TopicPartition

    problems = []
    deadline = time.monotonic() + timeout
    for p in range(partitions):
        done = False
        last = ""
        while not done and time.monotonic() < deadline:
            c = Consumer({"bootstrap.servers": bootstrap, "logger": CLIENT_LOG,
                          "group.id": group,
                          "enable.auto.commit": False, "enable.partition.eof": True,
                          "auto.offset.reset": "error"})
            try:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                 cached=False)
                records: list[list[Any]] = []
                if hi > lo:
                    c.assign([TopicPartition(topic, p, lo)])
                    next_offset = lo
                    stall = time.monotonic() + 20
                    while next_offset < hi and time.monotonic() < min(stall, deadline):
                        msg = c.poll(0.5)
                        if msg is None:
                            continue
                        if msg.error():
                            last = msg.error().name()
                            continue
                        value = msg.value()
                        records.append([msg.offset(), value.decode(errors="replace")
                                        if value is not None else None])
                        next_offset = msg.offset() + 1
                        stall = time.monotonic() + 20
                    if next_offset < hi:
                        last = f"reached offset {next_offset} of high watermark {hi} ({last})"
                        continue
                record(FinalRead(clock(), topic, p, records, hi, lo))
                done = True
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                last = f"{type(e).__name__}: {e}"
                time.sleep(1)
            finally:
                c.close()
        if not done:
            problems.append(f"final read of partition {p} incomplete: {last}")
    return problems


# --- the whole workload ----------------------------------------------------------------------


class Workload:
    """Producers, group consumers and manual readers against one topic."""

    def __init__(self, cfg: WorkloadConfig, record: Record, clock: Clock,
                 log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.record = record
        self.clock = clock
        self.log = log
        specs: list[tuple[str, type[Producer], bool]]
        if cfg.acks == "all":
            specs = [("ckidem", ConfluentProducer, True), ("kpidem", KafkaPythonProducer, True),
                     ("kpplain", KafkaPythonProducer, False)]
        else:
            specs = [("ckplain", ConfluentProducer, False),
                     ("kpplain", KafkaPythonProducer, False)]
        rate = cfg.rate / len(specs)
        self.producers: list[Producer] = [cls(name, cfg, record, clock, rate, idempotent=idem,
                                              log=log) for name, cls, idem in specs]
        self.readers: list[Reader] = [
            ConfluentGroupConsumer("ckgroup", cfg, record, clock, log),
            KafkaPythonGroupConsumer("kpgroup", cfg, record, clock, log),
            ConfluentManualReader("ckreader", cfg, record, clock, log),
            KafkaPythonManualReader("kpreader", cfg, record, clock, log),
        ]

    def start(self) -> None:
        for r in self.readers:
            r.start()
        for p in self.producers:
            p.start()

    def stop_producers(self, drain_timeout: float = 20.0) -> None:
        threads = [threading.Thread(target=p.stop, args=(drain_timeout,))
                   for p in self.producers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def catch_up(self, ends: dict[int, tuple[int, int]], timeout: float) -> bool:
        """Wait until the manual readers have polled up to ``ends``' high watermarks."""
        deadline = time.monotonic() + timeout
        manual = [r for r in self.readers if isinstance(r, (ConfluentManualReader,
                                                             KafkaPythonManualReader))]
        while time.monotonic() < deadline:
            if all(r.positions.get(p, 0) >= hw for r in manual
                   for p, (_, hw) in ends.items() if hw > 0):
                return True
            time.sleep(0.5)
        return False

    def stop_readers(self) -> None:
        for r in self.readers:
            r._stopping.set()
        for r in self.readers:
            r.stop()

    def abandon(self) -> None:
        """Stop every client and wait for its thread to close it, without draining (cleanup
        after an error; quick once the run stopped them in order). Clients must be gone
        before the cluster's network is: a client left running would keep dialling the
        nodes' addresses after their routes are removed."""
        for c in [*self.producers, *self.readers]:
            if isinstance(c, Producer):
                c.drain_timeout = 0.0
            c._stopping.set()
        for p in self.producers:
            p.stop(drain_timeout=0.0)
        for r in self.readers:
            r.stop()

    def summary(self) -> dict[str, Any]:
        return {
            "producers": {p.name: {"library": p.library, "idempotent": p.idempotent,
                                   "sent": p.stats.sent, "acked": p.stats.acked,
                                   "failed": p.stats.failed, "definite": p.stats.definite,
                                   "restarts": p.stats.restarts,
                                   "errors": dict(p.stats.errors.most_common(8))}
                          for p in self.producers},
            "readers": {r.name: {"polled": r.polled, "restarts": r.restarts,
                                 "errors": dict(r.errors.most_common(8))}
                        for r in self.readers},
        }

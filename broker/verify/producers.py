"""The workload's producers: threads that hand out unique values ``<client>-<key>-<seq>`` to
explicit partitions (a key's partition is a stable hash of it, clients.partition_of), so a
value names exactly one send, and record every send and its outcome. Which producers run:

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

The client libraries are imported when a producer opens, so importing this module needs
neither (they come with the ``verify`` extra).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from odradek.broker.verify.clients import (
    CLIENT_LOG,
    ClientThread,
    Clock,
    Log,
    Record,
    WorkloadConfig,
    make_keys,
    partition_of,
)
from odradek.broker.verify.history import Ack, Fail, Send

# Broker errors returned only before anything is appended (Kafka error codes).
# NOT_LEADER_OR_FOLLOWER is not among them: a leader that loses leadership while an acks=all
# write waits for its followers answers it after the append (Kafka does too), and the new
# leader may well hold the record.
DEFINITE_CODES = {3: "UNKNOWN_TOPIC_OR_PARTITION", 5: "LEADER_NOT_AVAILABLE",
                  19: "NOT_ENOUGH_REPLICAS"}
MAX_IN_FLIGHT = 2000  # per producer: stop handing out values while this many are unresolved


class Drainable(Protocol):
    def stop(self, drain_timeout: float) -> None: ...


def stop_all(producers: Sequence[Drainable], drain_timeout: float) -> None:
    """Stop every producer at once: each drains what it has in flight (up to
    ``drain_timeout``) while the others do."""
    threads = [threading.Thread(target=p.stop, args=(drain_timeout,)) for p in producers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


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


class Producer(ClientThread):
    """A thread handing out unique values at ``rate`` per second, round-robin over keys."""

    library = ""

    def __init__(self, name: str, cfg: WorkloadConfig, record: Record, clock: Clock,
                 rate: float, *, idempotent: bool, log: Log) -> None:
        super().__init__(name, cfg, record, clock, log, thread_name=f"producer-{name}")
        self.rate = rate
        self.idempotent = idempotent
        self.keys = make_keys(cfg.partitions, cfg.keys_per_partition)
        self.seq: Counter[str] = Counter()
        self.stats = ClientStats()
        self.drain_timeout = 20.0  # how long outstanding values may take once stopping
        self._lock = threading.Lock()

    # library hooks
    def open(self) -> None: ...
    def send(self, key: str, partition: int, value: str) -> None: ...
    def service(self, timeout: float) -> None: ...
    def drain(self, timeout: float) -> None: ...
    def close(self) -> None: ...
    def broken(self) -> bool:
        return False

    def stop(self, drain_timeout: float = 20.0) -> None:
        """Hand out no more values; wait up to ``drain_timeout`` for outstanding ones."""
        self.drain_timeout = drain_timeout
        self.request_stop()
        self.join(drain_timeout + 30)

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
                self.drain(self.drain_timeout)
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

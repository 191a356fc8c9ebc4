"""The transactional workload (``odradek verify --workload txn``): transactional producers,
read_committed readers, a read_uncommitted control reader, an LSO probe and a read_committed
final read, all recorded into the run's history for txn_checker.py.

Writers (confluent-kafka, ``transactional.id`` one per writer) each run transactions of 2 to
5 records to distinct keys, so a transaction spans several partitions and sometimes holds
two records of one partition. A record's value is ``<writer>-<n>-<i>-<count>``: transaction
``<writer>-<n>``, record ``i`` of ``count``, so any reader can tell which transaction a record
belongs to and how big it is. Each transaction ends one of three ways, drawn from the seed:

- commit (most): ``commit_transaction``; retried while librdkafka calls the error retriable;
  an abortable error is aborted; anything else leaves the outcome unknown.
- abort (``ABORT_SHARE``): the records are flushed to the log first, so aborted data really
  is there to be (wrongly) read, then ``abort_transaction``.
- fence (``FENCE_SHARE``): the records are flushed, then a new producer instance with the same
  ``transactional.id`` calls ``init_transactions``, which must abort the open transaction and
  fence the old instance; the old one then tries to commit. Its commit must fail: if it is
  acknowledged the history says committed, and the missing records show as ``lost``.

Faults add transactions whose producer failed mid-way (aborted by the next instance's
``init_transactions``, or by the coordinator's timeout) and commits without an answer
(``unknown``). Every transaction ends with a ``TxnEnd`` event (history.py).

The negative control (``misread``) makes the readers and the final read use
read_uncommitted while the history says read_committed: a real workload bug (a consumer
configured without ``isolation.level=read_committed``) that the checker must catch as
``aborted_read`` and ``uncommitted_read``.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from typing import Any

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
from odradek.broker.verify.consumers import (
    ConfluentGroupConsumer,
    ConfluentManualReader,
    KafkaPythonManualReader,
    Reader,
)
from odradek.broker.verify.history import Ack, Fail, FinalRead, Lso, Send, TxnEnd
from odradek.broker.verify.producers import ClientStats, stop_all

ABORT_SHARE = 0.15
FENCE_SHARE = 0.05
MIN_RECORDS, MAX_RECORDS = 2, 5
# Short, so a transaction left open by a producer that died is aborted by the coordinator
# within the run rather than holding every read_committed reader back for a minute.
TRANSACTION_TIMEOUT_MS = 10000
END_DEADLINE = 30.0  # seconds to keep retrying a commit or abort librdkafka calls retriable
# Node settings the transactional workload needs: timed-out transactions are looked for
# every second (Kafka's default is 10 s).
NODE_OVERRIDES: dict[str, Any] = {
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
}
WRITERS = 3
READ_COMMITTED, READ_UNCOMMITTED = "read_committed", "read_uncommitted"


class TxnWriter(ClientThread):
    """One transactional producer, run as a sequence of transactions (module docstring)."""

    library = "confluent-kafka"
    idempotent = True
    drain_timeout = 20.0

    def __init__(self, name: str, cfg: WorkloadConfig, record: Record, clock: Clock,
                 rate: float, seed: int, log: Log) -> None:
        super().__init__(name, cfg, record, clock, log, thread_name=f"txn-writer-{name}")
        self.rate = rate  # records per second
        self.rng = random.Random(f"{seed}-{name}")
        self.keys = make_keys(cfg.partitions, cfg.keys_per_partition)
        self.transactional_id = f"{cfg.group}-{name}"
        self.stats = ClientStats()
        self.outcomes: Counter[str] = Counter()
        self.n = 0
        self._p: Any = None
        self._lock = threading.Lock()

    def stop(self, drain_timeout: float = 20.0) -> None:
        """Start no new transaction; the one under way ends as it would have."""
        self.request_stop()
        self.join(drain_timeout + END_DEADLINE + 30)

    # -- the producer -----------------------------------------------------------------------

    def _open(self) -> Any:
        from confluent_kafka import Producer as CKProducer

        conf: dict[str, Any] = {
            "bootstrap.servers": self.cfg.bootstrap, "client.id": self.name,
            "logger": CLIENT_LOG, "transactional.id": self.transactional_id,
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "message.timeout.ms": TRANSACTION_TIMEOUT_MS, "linger.ms": 5,
            "request.timeout.ms": 5000, "retry.backoff.ms": 100,
            "topic.metadata.refresh.interval.ms": 5000,
            "error_cb": lambda err: self._count(f"client: {err.name()}"),
        }
        if self.cfg.client_debug:
            conf["debug"] = self.cfg.client_debug
        p = CKProducer(conf)
        try:
            # Fences any earlier instance and aborts its open transaction.
            p.init_transactions(30)
        except Exception:
            self._close(p)
            raise
        return p

    def _close(self, p: Any) -> None:
        with contextlib.suppress(Exception):
            p.purge(in_queue=True, in_flight=True, blocking=False)
            p.poll(0)
            p.close()

    def _drop(self) -> None:
        """Give up on the current instance; the next one's init_transactions fences it."""
        if self._p is not None:
            self._close(self._p)
            self._p = None
            self.stats.restarts += 1

    def _count(self, error: str) -> None:
        with self._lock:
            self.stats.errors[error] += 1

    def _run(self) -> None:
        interval = (MIN_RECORDS + MAX_RECORDS) / 2 / self.rate
        next_at = time.monotonic()
        while not self._stopping.is_set():
            if self._p is None:
                try:
                    self._p = self._open()
                except Exception as e:  # noqa: BLE001 - no coordinator yet: try again
                    self._count(f"open: {type(e).__name__}: {str(e)[:80]}")
                    self._stopping.wait(1.0)
                    continue
            self._transaction()
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            self._stopping.wait(max(0.0, next_at - time.monotonic()))
        if self._p is not None:
            self._close(self._p)
            self._p = None

    # -- one transaction --------------------------------------------------------------------

    def _transaction(self) -> None:
        from confluent_kafka import KafkaException

        p = self._p
        try:
            p.begin_transaction()
        except KafkaException as e:
            self._count(f"begin: {e.args[0].name()}")
            self._drop()
            return
        self.n += 1
        txn = f"{self.name}-{self.n}"
        count = self.rng.randint(MIN_RECORDS, MAX_RECORDS)
        keys = self.rng.sample(self.keys, count)
        records: list[list[Any]] = []
        try:
            for i, key in enumerate(keys):
                partition = partition_of(key, self.cfg.partitions)
                value = f"{txn}-{i}-{count}"
                records.append([self.cfg.topic, partition, value])
                self._produce(key, partition, value)
        except KafkaException as e:
            # Commit never requested: the next instance's init_transactions aborts it.
            self._end(txn, "aborted", records, None, f"produce failed: {e.args[0].name()}")
            self._drop()
            return
        draw = self.rng.random()
        if draw < FENCE_SHARE:
            self._fence(txn, records)
        elif draw < FENCE_SHARE + ABORT_SHARE:
            self._p.flush(5)  # the records reach the log before they are aborted
            if self._abort():
                self._end(txn, "aborted", records, None, "aborted on purpose")
            else:
                self._end(txn, "aborted", records, None, "abort failed; producer replaced")
                self._drop()
        else:
            self._commit(txn, records)

    def _produce(self, key: str, partition: int, value: str) -> None:
        topic = self.cfg.topic

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                offset = msg.offset()
                self.record(Ack(self.clock(), self.name, topic, partition, value,
                                -1 if offset is None else offset))
                with self._lock:
                    self.stats.acked += 1
            else:
                self.record(Fail(self.clock(), self.name, topic, partition, value,
                                 f"{err.name()}: {err.str()}", False))
                with self._lock:
                    self.stats.failed += 1
                    self.stats.errors[err.name()] += 1

        self.record(Send(self.clock(), self.name, topic, partition, key, value))
        with self._lock:
            self.stats.sent += 1
        while True:
            try:
                self._p.produce(topic, value=value.encode(), key=key.encode(),
                                partition=partition, on_delivery=delivered)
                return
            except BufferError:
                self._p.poll(0.1)

    def _commit(self, txn: str, records: list[list[Any]]) -> None:
        from confluent_kafka import KafkaException

        commit_t = self.clock()
        deadline = time.monotonic() + END_DEADLINE
        while True:
            try:
                self._p.commit_transaction(10)
                self._end(txn, "committed", records, commit_t)
                return
            except KafkaException as e:
                err = e.args[0]
                self._count(f"commit: {err.name()}")
                if err.retriable() and time.monotonic() < deadline:
                    continue
                if err.txn_requires_abort() and self._abort():
                    # An abort is refused once a commit is prepared, so this one never was.
                    self._end(txn, "aborted", records, commit_t,
                              f"commit failed ({err.name()}), aborted")
                    return
                self._end(txn, "unknown", records, commit_t, f"commit failed: {err.name()}")
                self._drop()
                return

    def _abort(self) -> bool:
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + END_DEADLINE
        while True:
            try:
                self._p.abort_transaction(10)
                return True
            except KafkaException as e:
                err = e.args[0]
                self._count(f"abort: {err.name()}")
                if not (err.retriable() and time.monotonic() < deadline):
                    return False

    def _fence(self, txn: str, records: list[list[Any]]) -> None:
        """A new instance fences this one mid-transaction; the zombie then tries to commit."""
        from confluent_kafka import KafkaException

        zombie = self._p
        zombie.flush(5)
        try:
            successor = self._open()
        except Exception as e:  # noqa: BLE001 - no fence happened: end it as an abort
            self._count(f"fence: {type(e).__name__}")
            ok = self._abort()
            self._end(txn, "aborted", records, None,
                      "fence could not start; aborted" if ok else "fence and abort failed")
            if not ok:
                self._drop()
            return
        commit_t = self.clock()
        try:
            zombie.commit_transaction(10)
            self._end(txn, "committed", records, commit_t,
                      "the fenced instance's commit was acknowledged")
        except KafkaException as e:
            self._end(txn, "aborted", records, None,
                      f"fenced by a new instance; the old one's commit failed: "
                      f"{e.args[0].name()}")
        self._close(zombie)
        self._p = successor

    def _end(self, txn: str, outcome: str, records: list[list[Any]],
             commit_t: float | None, detail: str = "") -> None:
        self.record(TxnEnd(self.clock(), self.name, txn, outcome, records, commit_t, detail))
        with self._lock:
            self.outcomes[outcome] += 1


class LsoProbe(ClientThread):
    """Asks every partition's leader for its last stable offset (ListOffsets LATEST under
    READ_COMMITTED, which answers with the leader epoch) a few times a second, and records
    each change as an ``Lso`` event."""

    def __init__(self, name: str, cfg: WorkloadConfig, record: Record, clock: Clock,
                 log: Log, period: float = 0.25) -> None:
        super().__init__(name, cfg, record, clock, log, thread_name=f"lso-{name}")
        self.period = period
        self.answers = 0
        self.errors: Counter[str] = Counter()

    def stop(self) -> None:
        self.request_stop()
        self.join(30)

    def _run(self) -> None:
        from confluent_kafka import IsolationLevel, TopicPartition
        from confluent_kafka.admin import AdminClient, OffsetSpec

        admin = AdminClient({"bootstrap.servers": self.cfg.bootstrap, "logger": CLIENT_LOG,
                             "client.id": self.name})
        last: dict[int, tuple[int, int]] = {}
        request = {TopicPartition(self.cfg.topic, p): OffsetSpec.latest()
                   for p in range(self.cfg.partitions)}
        while not self._stopping.wait(self.period):
            try:
                futures = admin.list_offsets(request, request_timeout=5,
                                             isolation_level=IsolationLevel.READ_COMMITTED)
            except Exception as e:  # noqa: BLE001 - asked again next period
                self.errors[f"{type(e).__name__}: {str(e)[:100]}"] += 1
                continue
            for tp, future in futures.items():
                try:
                    info = future.result(timeout=15)
                except Exception as e:  # noqa: BLE001 - a fault: asked again next period
                    self.errors[f"{type(e).__name__}: {str(e)[:100]}"] += 1
                    continue
                self.answers += 1
                seen = (info.offset, info.leader_epoch if info.leader_epoch is not None
                        else -1)
                if info.offset >= 0 and last.get(tp.partition) != seen:
                    last[tp.partition] = seen
                    self.record(Lso(self.clock(), self.name, self.cfg.topic, tp.partition,
                                    seen[0], seen[1]))


class TxnWorkload:
    """Transactional writers, read_committed readers, a read_uncommitted control reader
    and the LSO probe against one topic (the same surface as workload.Workload)."""

    def __init__(self, cfg: WorkloadConfig, record: Record, clock: Clock, log: Log = print,
                 *, seed: int = 0, misread: bool = False) -> None:
        self.cfg = cfg
        self.misread = misread
        rc = READ_UNCOMMITTED if misread else READ_COMMITTED
        self.producers: list[TxnWriter] = [
            TxnWriter(f"tx{i}", cfg, record, clock, cfg.rate / WRITERS, seed, log)
            for i in range(1, WRITERS + 1)]
        self.readers: list[Reader] = [
            ConfluentManualReader("ckrc", cfg, record, clock, log, isolation=rc,
                                  claimed=READ_COMMITTED),
            KafkaPythonManualReader("kprc", cfg, record, clock, log, isolation=rc,
                                    claimed=READ_COMMITTED),
            ConfluentGroupConsumer("ckgrouprc", cfg, record, clock, log, isolation=rc,
                                   claimed=READ_COMMITTED),
            ConfluentManualReader("ckru", cfg, record, clock, log,
                                  isolation=READ_UNCOMMITTED),
        ]
        self.probe = LsoProbe("lsoprobe", cfg, record, clock, log)

    def start(self) -> None:
        for r in self.readers:
            r.start()
        self.probe.start()
        for p in self.producers:
            p.start()

    def stop_producers(self, drain_timeout: float = 20.0) -> None:
        stop_all(self.producers, drain_timeout)

    def catch_up(self, ends: dict[int, int], timeout: float) -> bool:
        """Wait until the manual readers have polled up to ``ends`` (partition -> the offset
        after the final read's last record; markers may follow it)."""
        deadline = time.monotonic() + timeout
        manual = [r for r in self.readers if r.manual]
        while time.monotonic() < deadline:
            if all(r.positions.get(p, 0) >= end for r in manual
                   for p, end in ends.items() if end > 0):
                return True
            time.sleep(0.5)
        return False

    def stop_readers(self) -> None:
        self.probe.request_stop()
        for r in self.readers:
            r.request_stop()
        for r in self.readers:
            r.stop()
        self.probe.stop()

    def abandon(self) -> None:
        for c in [*self.producers, *self.readers, self.probe]:
            c.request_stop()
        for p in self.producers:
            p.stop(drain_timeout=0.0)
        for r in self.readers:
            r.stop()
        self.probe.stop()

    def summary(self) -> dict[str, Any]:
        return {
            "producers": {p.name: {"library": p.library, "idempotent": True,
                                   "transactional_id": p.transactional_id,
                                   "transactions": dict(p.outcomes),
                                   "sent": p.stats.sent, "acked": p.stats.acked,
                                   "failed": p.stats.failed, "definite": 0,
                                   "restarts": p.stats.restarts,
                                   "errors": dict(p.stats.errors.most_common(8))}
                          for p in self.producers},
            "readers": {r.name: {"polled": r.polled, "restarts": r.restarts,
                                 "isolation": r.isolation, "recorded_as": r.claimed,
                                 "errors": dict(r.errors.most_common(8))}
                        for r in self.readers},
            "lso_probe": {"answers": self.probe.answers,
                          "errors": dict(self.probe.errors.most_common(8))},
        }


def txn_final_read(bootstrap: str, topic: str, partitions: int, record: Record, clock: Clock,
                   group: str, *, misread: bool = False,
                   timeout: float = 90.0) -> tuple[list[str], dict[int, int]]:
    """Read every partition read_committed from its log start to its last stable offset,
    once that offset has caught up with the high watermark (no transaction open: the
    producers have stopped, and the coordinator aborts what a dead producer left open within
    the transaction timeout). Records one FinalRead each; returns the partitions it could not
    read (as messages) and, per partition, the offset after the last record read."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    isolation = READ_UNCOMMITTED if misread else READ_COMMITTED
    problems: list[str] = []
    ends: dict[int, int] = {}
    deadline = time.monotonic() + timeout

    def consumer(level: str) -> Any:
        return Consumer({"bootstrap.servers": bootstrap, "logger": CLIENT_LOG,
                         "group.id": group, "isolation.level": level,
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "auto.offset.reset": "error"})

    for p in range(partitions):
        tp = TopicPartition(topic, p)
        done, last = False, ""
        while not done and time.monotonic() < deadline:
            c, hw_reader = consumer(isolation), consumer(READ_UNCOMMITTED)
            try:
                lo, stable = c.get_watermark_offsets(tp, timeout=10, cached=False)
                _, hw = hw_reader.get_watermark_offsets(tp, timeout=10, cached=False)
                if stable < hw:
                    last = f"last stable offset {stable} below high watermark {hw}"
                    time.sleep(1)
                    continue
                records: list[list[Any]] = []
                if stable > lo:
                    c.assign([TopicPartition(topic, p, lo)])
                    at_end = False
                    stall = time.monotonic() + 20
                    while not at_end and time.monotonic() < min(stall, deadline):
                        msg = c.poll(0.5)
                        if msg is None:
                            continue
                        err = msg.error()
                        if err is not None:
                            at_end = (err.code() == KafkaError._PARTITION_EOF
                                      and (msg.offset() or 0) >= stable)
                            last = err.name()
                            continue
                        offset, value = msg.offset(), msg.value()
                        assert offset is not None, "a message without an error has an offset"
                        records.append([offset, value.decode(errors="replace")
                                        if value is not None else None])
                        stall = time.monotonic() + 20
                    if not at_end:
                        last = f"no end of partition at {stable} ({last})"
                        continue
                record(FinalRead(clock(), topic, p, records, stable, lo, READ_COMMITTED))
                ends[p] = records[-1][0] + 1 if records else 0
                done = True
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                last = f"{type(e).__name__}: {e}"
                time.sleep(1)
            finally:
                c.close()
                hw_reader.close()
        if not done:
            problems.append(f"final read of partition {p} incomplete: {last}")
    return problems, ends

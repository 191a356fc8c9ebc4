"""The workload's consumers, which record what they are assigned and every record they poll:
one group consumer per library in one group (range assignor, so the libraries can share
it), recording an ``Assign`` on every rebalance and a ``Poll`` for every record; and one
reader per library with manual assignment of every partition from the beginning, which
records a new ``Assign`` whenever it has to start a partition over.

The client libraries are imported when a consumer session starts, so importing this module
needs neither (they come with the ``verify`` extra).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from odradek.broker.verify.clients import (
    CLIENT_LOG,
    ClientThread,
    Clock,
    Log,
    Record,
    WorkloadConfig,
)
from odradek.broker.verify.history import Assign, Poll

if TYPE_CHECKING:
    from confluent_kafka import Message

class Reader(ClientThread):
    """A consumer thread that records what it polls."""

    manual = False  # reads every partition by manual assignment (not in a group)
    default_isolation = "read_uncommitted"  # the library's default isolation.level

    def __init__(self, name: str, cfg: WorkloadConfig, record: Record, clock: Clock,
                 log: Log, *, isolation: str | None = None, claimed: str | None = None) -> None:
        """``isolation`` is the isolation.level to read with (None: the library's default);
        ``claimed`` is the one recorded in the history, normally the same: only the
        transactional workload's negative control records another (transactions.py)."""
        super().__init__(name, cfg, record, clock, log, thread_name=f"reader-{name}")
        self.isolation = isolation or self.default_isolation
        self.claimed = claimed or self.isolation
        self.polled = 0
        self.positions: dict[int, int] = {}  # partition -> next offset, from what was polled
        self.errors: Counter[str] = Counter()
        self.restarts = 0
        # When its thread last came back from the library (see beat and stalls.py).
        self.last_beat = time.monotonic()
        self.stall_reported = False

    def stop(self) -> None:
        self.request_stop()
        self.join(30)

    def beat(self) -> None:
        """The thread is back from a poll: not stuck inside the library."""
        self.last_beat = time.monotonic()
        self.stall_reported = False

    def polled_record(self, partition: int, offset: int, value: bytes | None) -> None:
        text = value.decode(errors="replace") if value is not None else ""
        self.record(Poll(self.clock(), self.name, self.cfg.topic, partition, offset, text))
        self.positions[partition] = offset + 1
        self.polled += 1

    def polled_message(self, msg: Message) -> None:
        """A confluent-kafka message without an error (so with a partition and offset)."""
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None, "a message without an error"
        self.polled_record(partition, offset, msg.value())

    def assigned(self, partitions: list[int], group: str | None) -> None:
        self.record(Assign(self.clock(), self.name, self.cfg.topic, sorted(partitions), group,
                           self.claimed))

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
    default_isolation = "read_committed"  # librdkafka's default

    def session(self) -> None:
        from confluent_kafka import Consumer

        c = Consumer({
            "bootstrap.servers": self.cfg.bootstrap, "logger": CLIENT_LOG,
            "group.id": self.cfg.group, "isolation.level": self.isolation,
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
                self.beat()
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    self.errors[err.name()] += 1
                    continue
                self.polled_message(msg)
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
            isolation_level=self.isolation,
            auto_commit_interval_ms=1000, session_timeout_ms=6000,
            heartbeat_interval_ms=1000, request_timeout_ms=15000,
            partition_assignment_strategy=[RangePartitionAssignor],
            metadata_max_age_ms=5000)
        c.subscribe([self.cfg.topic], listener=Listener())
        # Known partitions before the join: otherwise the member rejoins once it learns
        # them, and kafka-python 3.0 can lose that SyncGroup's answer (see cli/consume.py).
        c.partitions_for_topic(self.cfg.topic)
        try:
            while not self._stopping.is_set():
                batches = c.poll(timeout_ms=500, max_records=500)
                self.beat()
                for tp, msgs in batches.items():
                    for m in msgs:
                        self.polled_record(tp.partition, m.offset, m.value)
        finally:
            c.close(autocommit=False)


class ConfluentManualReader(Reader):
    """Reads every partition from the beginning with manual assignment. Offset resets are
    errors (auto.offset.reset=error): a reader is never moved silently; the partition starts
    over from the beginning as a new session instead."""

    manual = True
    default_isolation = "read_committed"  # librdkafka's default

    def session(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        c = Consumer({
            "bootstrap.servers": self.cfg.bootstrap, "logger": CLIENT_LOG,
            "group.id": self.cfg.reader_group, "isolation.level": self.isolation,
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
                self.beat()
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    self.errors[err.name()] += 1
                    p = msg.partition()
                    if err.code() in (KafkaError._AUTO_OFFSET_RESET,
                                      KafkaError.OFFSET_OUT_OF_RANGE) \
                            and p is not None and p >= 0:
                        self.log(f"{self.name}: partition {p} offset out of range at "
                                 f"{self.positions.get(p)}; reading it again from the start")
                        self.positions.pop(p, None)
                        assign([p])
                    continue
                self.polled_message(msg)
        finally:
            c.close()


class KafkaPythonManualReader(Reader):
    """kafka-python's reader with manual assignment (auto_offset_reset='none')."""

    manual = True

    def session(self) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

        c = KafkaConsumer(bootstrap_servers=self.cfg.bootstrap.split(","), group_id=None,
                          client_id=self.name, enable_auto_commit=False,
                          isolation_level=self.isolation,
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
                    self.beat()
                except (OffsetOutOfRangeError, NoOffsetForPartitionError) as e:
                    self.errors[type(e).__name__] += 1
                    arg: Any = e.args[0] if e.args else None
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

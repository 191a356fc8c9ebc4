"""What the exactly-once tests of stream processors share (Kafka Streams in
tests/compat/test_streams.py, Quix Streams in tests/integration/test_stream_processor.py):
input that keeps arriving while nodes die, the transaction coordinator of an id, and freezing
an application while its transaction has written output, so killing it leaves that
transaction to be aborted."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.harness import wait_for


class Trickle(threading.Thread):
    """Produces ``records`` (key, value), ``per_second``, from a thread (acks=all and
    idempotent: a broker dying on the way neither loses nor duplicates input)."""

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[bytes, bytes]],
                 per_second: int = 50) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.records = bootstrap, topic, records
        self.per_second = per_second
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", retries=20,
                                     enable_idempotence=True)
            try:
                for i in range(0, len(self.records), 5):
                    for key, value in self.records[i:i + 5]:
                        producer.send(self.topic, key=key, value=value)
                    time.sleep(5 / self.per_second)
                producer.flush(30)
            finally:
                producer.close()
        except BaseException as e:  # noqa: BLE001 - reported by done()
            self.error = e

    def done(self) -> None:
        """Wait until every record is acknowledged; fail if producing failed."""
        self.join(60)
        assert not self.is_alive() and self.error is None, \
            f"producing the input failed: {self.error!r}"


def transaction_coordinator(bootstrap: str, transactional_id: str) -> int:
    """The node id of ``transactional_id``'s transaction coordinator (FindCoordinator)."""
    return coordinator(bootstrap, transactional_id, key_type=1)


def group_coordinator(bootstrap: str, group: str) -> int:
    """The node id of consumer group ``group``'s coordinator (FindCoordinator)."""
    return coordinator(bootstrap, group, key_type=0)


def coordinator(bootstrap: str, key: str, key_type: int) -> int:
    from odradek.broker.kafka.client import KafkaConnection

    def find() -> Any:
        with KafkaConnection.to(bootstrap.split(",")[0]) as c:
            found = c.request(10, 4, {"key_type": key_type, "coordinator_keys": [key]})
            return found.coordinators[0] if found.coordinators[0].error_code == 0 else None
    return int(wait_for(find, 20, f"the coordinator of {key}").node_id)


class Ends:
    """Where the partitions of a topic end for read_committed (the last stable offset) and
    for read_uncommitted (the high watermark), with one consumer of each, kept."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumers = {isolation: KafkaConsumer(bootstrap_servers=bootstrap,
                                                   isolation_level=isolation)
                          for isolation in ("read_committed", "read_uncommitted")}

    def open_transaction(self) -> bool:
        """Whether an open transaction has records in the topic: a partition's last stable
        offset is below its high watermark."""
        committed = self.consumers["read_committed"].end_offsets(self.tps)
        written = self.consumers["read_uncommitted"].end_offsets(self.tps)
        return any(committed[tp] < written[tp] for tp in self.tps)

    def close(self) -> None:
        for c in self.consumers.values():
            c.close()


def freeze_mid_transaction(proc: subprocess.Popen[bytes], bootstrap: str, topic: str,
                           partitions: int) -> None:
    """SIGSTOP ``proc`` at a moment its transaction has written to ``topic``. Frozen, it can
    no longer commit it: the records stay uncommitted until the transaction is aborted. A
    commit already on its way completes in the wait before the check; then the process is
    let go and frozen again a little later."""
    ends = Ends(bootstrap, topic, partitions)

    def frozen_open() -> bool:
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        if ends.open_transaction():
            return True
        proc.send_signal(signal.SIGCONT)
        time.sleep(random.uniform(0.05, 0.3))
        return False
    try:
        wait_for(frozen_open, 30, "the application frozen with an open transaction",
                 interval=0)
    finally:
        ends.close()

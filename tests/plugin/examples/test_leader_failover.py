"""Failure injection: the partition leader is killed (SIGKILL) while the application is
consuming and a producer keeps writing. The application must carry on by itself and
end up having processed every record the cluster acknowledged."""

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer


class OrderProcessor:
    """The application under test: a consumer-group member that processes orders in a
    thread of its own, as a service would."""

    def __init__(self, bootstrap, topic, group):
        self.processed = set()
        self._stop = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group,
            "auto.offset.reset": "earliest", "enable.auto.commit": True,
            "session.timeout.ms": 6000})
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            message = self._consumer.poll(0.1)
            if message is not None and message.error() is None:
                self.processed.add(message.value())

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.odradek_cluster(nodes=3)
def test_consumer_recovers_when_the_leader_dies(odradek_cluster, odradek_bootstrap,
                                                odradek_topic, odradek_group):
    odradek_cluster.create_topic(odradek_topic, partitions=1, replication_factor=3)
    odradek_cluster.wait_for_full_isr(odradek_topic)
    app = OrderProcessor(odradek_bootstrap, odradek_topic, odradek_group).start()

    acknowledged = set()
    producer = Producer({"bootstrap.servers": odradek_bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})

    def on_delivery(err, message):
        if err is None:
            acknowledged.add(message.value())

    def produce(first, count):
        for i in range(first, first + count):
            producer.produce(odradek_topic, f"order-{i}".encode(), on_delivery=on_delivery)
            producer.poll(0)
            time.sleep(0.002)

    try:
        produce(0, 200)
        producer.flush(30)
        wait_until(lambda: len(app.processed) >= 100, 30, "the application to start")

        leader = odradek_cluster.leader_of(odradek_topic, 0)
        odradek_cluster.kill(leader)
        produce(200, 300)  # keeps writing through the failover
        new_leader = odradek_cluster.wait_for_leader(odradek_topic, 0, not_on=leader)
        produce(500, 100)
        assert producer.flush(60) == 0, "the producer could not deliver everything"

        wait_until(lambda: acknowledged <= app.processed, 60,
                   "the application to process every acknowledged record")
    finally:
        app.stop()

    assert new_leader.node_id != leader.node_id
    assert len(acknowledged) == 600
    # Nothing acknowledged was lost from the log either.
    in_log = {r.value for r in odradek_cluster.read_to_end(odradek_topic)}
    assert acknowledged <= in_log

    odradek_cluster.restart(leader)
    odradek_cluster.wait_for_full_isr(odradek_topic)

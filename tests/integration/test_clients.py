"""Produce and consume with every client library we claim to support."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from tests.helpers import unique_name
from tests.integration.harness import NodeProcess
from tests.requirements import require_tool

pytestmark = pytest.mark.integration



def test_kafka_python_round_trip(shared_node: NodeProcess) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = unique_name("kp")
    producer = KafkaProducer(bootstrap_servers=shared_node.bootstrap, acks="all")
    futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                             headers=[("h", b"x")]) for i in range(200)]
    producer.flush()
    offsets = [f.get(timeout=10).offset for f in futures]
    assert offsets == list(range(200))
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=shared_node.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = [(m.offset, m.key, m.value, m.headers) for m in consumer]
    consumer.close()
    assert [g[0] for g in got] == list(range(200))
    assert got[7][1:] == (b"k7", b"v7", [("h", b"x")])


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_confluent_compression_round_trip(shared_node: NodeProcess, codec: str) -> None:
    from confluent_kafka import Consumer, Producer

    topic = unique_name(f"cf-{codec}")
    p = Producer({"bootstrap.servers": shared_node.bootstrap, "compression.type": codec,
                  "linger.ms": 20, "enable.idempotence": True})
    values = [f"{codec}-value-{i}-".encode() * 20 for i in range(500)]
    acked = []
    for v in values:
        p.produce(topic, v, on_delivery=lambda err, msg: acked.append((err, msg.offset())))
    assert p.flush(30) == 0
    assert all(err is None for err, _ in acked)
    assert sorted(o for _, o in acked) == list(range(500))

    c = Consumer({"bootstrap.servers": shared_node.bootstrap, "group.id": topic,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    for _ in range(100):
        for m in c.consume(500, timeout=0.5):
            assert m.error() is None, m.error()
            got.append(m.value())
        if len(got) >= len(values):
            break
    c.close()
    assert got == values


def test_aiokafka_round_trip(shared_node: NodeProcess) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = unique_name("aio")

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=shared_node.bootstrap,
                                    enable_idempotence=True, compression_type="gzip")
        await producer.start()
        try:
            for i in range(50):
                await producer.send_and_wait(topic, f"aio-{i}".encode(), key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=shared_node.bootstrap,
                                    group_id=topic, auto_offset_reset="earliest")
        await consumer.start()
        got: list[bytes] = []
        try:
            while len(got) < 50:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 20)
                for msgs in batch.values():
                    got.extend(m.value for m in msgs)
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(run()) == [f"aio-{i}".encode() for i in range(50)]


def _kcat() -> str:
    return require_tool("kcat", "apt-get install kcat")


def test_kcat_produce_and_consume(shared_node: NodeProcess) -> None:
    kcat = _kcat()
    topic = unique_name("kcat")
    lines = "\n".join(f"line-{i}" for i in range(100)) + "\n"
    subprocess.run([kcat, "-b", shared_node.bootstrap, "-P", "-t", topic, "-z", "lz4"],
                   input=lines.encode(), check=True, timeout=30)
    out = subprocess.run([kcat, "-b", shared_node.bootstrap, "-C", "-t", topic, "-o",
                          "beginning", "-e", "-q"], capture_output=True, check=True, timeout=30)
    assert out.stdout.decode().splitlines() == [f"line-{i}" for i in range(100)]
    meta = subprocess.run([kcat, "-b", shared_node.bootstrap, "-L", "-t", topic],
                          capture_output=True, check=True, timeout=30)
    assert f'topic "{topic}" with 1 partitions' in meta.stdout.decode()


def test_acks_zero_and_acks_one(shared_node: NodeProcess) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = unique_name("acks")
    for acks in (0, 1):
        producer = KafkaProducer(bootstrap_servers=shared_node.bootstrap, acks=acks,
                                 enable_idempotence=False)
        for i in range(50):
            producer.send(topic, f"a{acks}-{i}".encode())
        producer.flush()
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=shared_node.bootstrap, consumer_timeout_ms=3000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = [m.value.decode() for m in consumer]
    consumer.close()
    assert got == [f"a{a}-{i}" for a in (0, 1) for i in range(50)]

"""The Python snippets of the seed documents, run verbatim against a node on localhost:9092."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, NodeProcess, wait_port

pytestmark = pytest.mark.integration

# Seed 000, as printed (only the indentation the blog lost is restored).
PRODUCER_000 = """\
from kafka import KafkaProducer
producer = KafkaProducer(bootstrap_servers='localhost:9092')
producer.send('order_topic', b'Order ID 12345 placed')
producer.flush()
"""
CONSUMER_000 = """\
from kafka import KafkaConsumer
consumer = KafkaConsumer('order_topic', bootstrap_servers='localhost:9092')
for message in consumer:
    print(f"Received: {message.value.decode()}")
"""
# Seed 004.
PRODUCER_004 = """\
from kafka import KafkaProducer
producer = KafkaProducer(
bootstrap_servers='localhost:9092'
)
producer.send(
'orders',
b'New order created'
)
producer.flush()
"""
CONSUMER_004 = """\
from kafka import KafkaConsumer
consumer = KafkaConsumer(
'orders',
bootstrap_servers='localhost:9092'
)
for message in consumer:
    print(message.value.decode())
"""


@pytest.fixture(scope="module")
def localhost_9092(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    try:
        wait_port("127.0.0.1", 9092, timeout=0.2)
    except TimeoutError:
        pass
    else:
        pytest.fail("port 9092 is already in use; the seed snippets need it")
    node = NodeProcess(tmp_path_factory.mktemp("seeds"), host="localhost", kafka_port=9092)
    node.start()
    yield node
    node.kill()


def _run_snippets(producer: str, consumer: str, expected: str, tmp: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out_path = tmp / "consumer.out"
    with open(out_path, "wb") as out:
        cons = subprocess.Popen([sys.executable, "-c", consumer], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        # The consumer starts at the end of the log (auto_offset_reset='latest'), so keep
        # running the producer snippet until the consumer, once positioned, prints a record.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            subprocess.run([sys.executable, "-c", producer], check=True, timeout=60, env=env)
            time.sleep(1.0)
            if expected in out_path.read_text(errors="replace"):
                return
            assert cons.poll() is None, out_path.read_text()
        pytest.fail(f"consumer never printed {expected!r}:\n{out_path.read_text()}")
    finally:
        cons.kill()
        cons.wait()


def test_seed_000_order_topic(localhost_9092: NodeProcess, tmp_path: Path) -> None:
    _run_snippets(PRODUCER_000, CONSUMER_000, "Received: Order ID 12345 placed", tmp_path)


def test_seed_004_orders(localhost_9092: NodeProcess, tmp_path: Path) -> None:
    _run_snippets(PRODUCER_004, CONSUMER_004, "New order created", tmp_path)

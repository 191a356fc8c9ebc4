"""Idempotent producers: retried batches are not appended twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.kafka.client import KafkaConnection
from odradek.storage.records import Record, encode_batch
from tests.helpers import produce_raw, unique_name
from tests.integration.harness import NodeProcess, free_port
from tests.integration.proxy import DroppingProxy

pytestmark = pytest.mark.integration


def test_sequence_checks_at_protocol_level(shared_node: NodeProcess) -> None:
    topic = unique_name("idem")
    with KafkaConnection.to(shared_node.bootstrap) as c:
        c.request(19, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                      "replication_factor": 1}], "timeout": 5000})
        pid = c.request(22, 4, {"transactional_id": None, "transaction_timeout": 60000,
                                "producer_id": -1, "producer_epoch": -1})
        assert pid.error_code == ErrorCode.none and pid.producer_id >= 0

        def batch(seq: int, n: int = 2) -> bytes:
            return encode_batch([Record(i, value=f"s{seq + i}".encode()) for i in range(n)],
                                producer_id=pid.producer_id, producer_epoch=pid.producer_epoch,
                                base_sequence=seq)

        first = produce_raw(c, topic, batch(0))
        assert (first.error_code, first.base_offset) == (ErrorCode.none, 0)
        again = produce_raw(c, topic, batch(0))  # a retry of the same batch
        assert (again.error_code, again.base_offset) == (ErrorCode.none, 0)
        gap = produce_raw(c, topic, batch(5))
        assert gap.error_code == ErrorCode.out_of_order_sequence_number
        nxt = produce_raw(c, topic, batch(2))
        assert (nxt.error_code, nxt.base_offset) == (ErrorCode.none, 2)
        lo = c.request(2, 7, {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}]})
        assert lo.topics[0].partitions[0].offset == 4


def test_real_client_retries_do_not_duplicate(tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer

    proxy_port = free_port()
    drops = {"left": 5}

    def should_drop(api_key: int) -> bool:
        if api_key == 0 and drops["left"] > 0:
            drops["left"] -= 1
            return True
        return False

    # Clients learn the proxy's address from the node, so every request goes through it.
    node = NodeProcess(tmp_path / "idem", overrides={
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy_port}"}).start()
    proxy = DroppingProxy(("127.0.0.1", node.kafka_port), should_drop, port=proxy_port)
    try:
        topic = "idempotent"
        p = Producer({"bootstrap.servers": f"127.0.0.1:{proxy_port}",
                      "enable.idempotence": True, "linger.ms": 5,
                      "retry.backoff.ms": 50, "message.timeout.ms": 60000})
        errors = []
        for i in range(300):
            p.produce(topic, f"v{i}".encode(),
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
            if i % 30 == 0:
                p.flush(30)
        assert p.flush(60) == 0
        assert errors == []
        assert proxy.dropped == 5, "the proxy never lost a produce response"

        c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "check",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        got = []
        for _ in range(60):
            for m in c.consume(500, timeout=0.5):
                assert m.error() is None
                got.append(m.value().decode())
            if len(got) >= 300:
                break
        # Let any duplicate show up before judging.
        got += [m.value().decode() for m in c.consume(500, timeout=1.0) if m.error() is None]
        c.close()
        assert got == [f"v{i}" for i in range(300)]
    finally:
        proxy.close()
        node.kill()

"""Last replica standing (KIP-966) with real processes.

RF 3, min.insync.replicas 2, dedicated controllers (so the quorum outlives the brokers):

1. acks=all writes while the ISR is {1, 2, 3}; broker 3 dies; more acks=all writes with the
   ISR {1, 2}: only brokers 1 and 2 hold those.
2. Broker 2 stops cleanly: the ISR shrinks below min ISR to {1}, broker 2 becomes an eligible
   leader replica (it holds every acknowledged record: the high watermark is frozen now).
3. Broker 1, the last ISR member, is SIGKILLed and loses the tail of its log (the segment
   file is cut, as an unflushed page cache lost in a power cut would leave it).
4. Broker 1 comes back first. It registers as unclean: it must not lead, since leading with
   its short log would make broker 2 truncate the acknowledged records away when it returns.
5. Broker 2 comes back and leads; broker 1 catches up from it; every acknowledged record is
   readable.

Without KIP-966, step 4 elects broker 1 (the last ISR member) and step 5 loses records.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import TypeVar

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kio.schema.errors import ErrorCode

from odradek.broker.kafka.client import KafkaConnection
from odradek.storage.records import Record, encode_batch
from tests.helpers import unique_name
from tests.integration.harness import Cluster, NodeProcess, wait_for

pytestmark = pytest.mark.integration

T = TypeVar("T")
_BATCH_HEAD = struct.Struct(">qi")  # base offset, batch length (bytes after this field)




def partition_state(node: NodeProcess, topic: str) -> tuple[int, int, list[int]]:
    """(error code, leader, isr) of partition 0 as `node` sees it."""
    with KafkaConnection.to(node.bootstrap, timeout=5) as c:
        r = c.request(3, 1, {"topics": [{"name": topic}]})
    p = r.topics[0].partitions[0]
    return p.error_code, p.leader_id, sorted(p.isr_nodes)


def produce(node: NodeProcess, topic: str, value: bytes) -> int:
    with KafkaConnection.to(node.bootstrap, timeout=10) as c:
        r = c.request(0, 9, {"acks": -1, "timeout": 5000, "topic_data": [
            {"name": topic, "partition_data": [
                {"index": 0, "records": encode_batch([Record(0, value=value)])}]}]})
    return r.responses[0].partition_responses[0].error_code


def cut_segment(partition_dir: Path, keep_batches: int) -> int:
    """Cut the partition's last segment after its first `keep_batches` batches; returns
    the number of bytes removed."""
    segment = max(partition_dir.glob("*.log"))
    data = segment.read_bytes()
    pos = 0
    for _ in range(keep_batches):
        _, length = _BATCH_HEAD.unpack_from(data, pos)
        pos += _BATCH_HEAD.size + length
    with segment.open("r+b") as f:
        f.truncate(pos)
    return len(data) - pos


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        return [m.value for m in consumer]
    finally:
        consumer.close()


def test_unclean_last_isr_member_does_not_lead_over_an_eligible_replica(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "lrs", 3, dedicated_controllers=3, overrides={
        "auto.leader.rebalance.enable": False}).start()
    try:
        _scenario(cluster)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.kill_all()


def _scenario(cluster: Cluster) -> None:
    a, b, c = cluster.node(1), cluster.node(2), cluster.node(3)
    topic = unique_name("lrs", 6)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    admin.create_topics([NewTopic(topic, -1, -1, replica_assignments={0: [1, 2, 3]},
                                  topic_configs={"min.insync.replicas": "2"})])
    admin.close()
    wait_for(lambda: partition_state(a, topic) == (0, 1, [1, 2, 3]), 20, "leader 1, ISR 1,2,3")

    first = [f"three-{i}".encode() for i in range(20)]
    for value in first:
        assert produce(a, topic, value) == ErrorCode.none

    c.kill()
    wait_for(lambda: partition_state(a, topic) == (0, 1, [1, 2]), 30, "ISR 1,2 without 3")
    second = [f"two-{i}".encode() for i in range(20)]
    for value in second:
        assert produce(a, topic, value) == ErrorCode.none
    acknowledged = first + second

    assert b.stop() == 0
    assert (b.base / "node-2" / ".clean-shutdown").exists()
    wait_for(lambda: partition_state(a, topic) == (0, 1, [1]), 30, "ISR 1 alone")
    # Below min ISR: acks=all is refused, nothing more is acknowledged.
    assert produce(a, topic, b"refused") in (ErrorCode.not_enough_replicas,
                                             ErrorCode.not_enough_replicas_after_append)

    a.kill()
    removed = cut_segment(a.base / "node-1" / "logs" / f"{topic}-0", len(first))
    assert removed > 0

    a.start(timeout=60)
    # Registered, unfenced, and still the partition has no leader: broker 1 may have lost
    # acknowledged records (it did), broker 2 holds them but is down.
    for _ in range(10):
        code, leader, _isr = partition_state(a, topic)
        assert leader == -1 and code == ErrorCode.leader_not_available, (code, leader)
        time.sleep(0.2)

    b.start(timeout=60)
    wait_for(lambda: partition_state(b, topic)[1] == 2, 30, "broker 2 to lead")
    # Broker 1 catches up from broker 2 and rejoins: the high watermark moves again.
    wait_for(lambda: partition_state(b, topic) == (0, 2, [1, 2]), 60, "ISR 1,2 under leader 2")
    live = f"{a.bootstrap},{b.bootstrap}"
    values = wait_for(lambda: (lambda v: v if len(v) >= len(acknowledged) else None)(
        read_all(live, topic)), 30, "every acknowledged record")
    assert values[: len(acknowledged)] == acknowledged
    # And acks=all works again with two replicas in sync.
    assert produce(b, topic, b"after") == ErrorCode.none

"""Small helpers that tests of every kind share: unique names, Prometheus text, raw sockets
and raw Kafka requests. (Node processes and waits are in tests/integration/harness.py.)"""

from __future__ import annotations

import socket
import uuid
from typing import Any

from odradek.broker.kafka.client import KafkaConnection


def unique_name(prefix: str, length: int = 8) -> str:
    """``<prefix>-<random hex>``: a topic or group name no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:length]}"


def metric_sum(text: str, name: str, labels: str = "") -> float | None:
    """Sum of a metric's samples whose label set contains ``labels`` (Prometheus text);
    None when there is no such sample."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        metric = sample.split("{", 1)[0]
        if metric != name or (labels and labels not in sample):
            continue
        total += float(value)
        found = True
    return total if found else None


def read_exact(sock: socket.socket, n: int) -> bytes | None:
    """Exactly ``n`` bytes from ``sock``, or None if it closes or fails first."""
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> bytes:
    """One size-prefixed Kafka frame from ``sock``, without its size. Raises
    ConnectionError when the socket closes, fails or times out first."""
    head = read_exact(sock, 4)
    frame = None if head is None else read_exact(sock, int.from_bytes(head, "big",
                                                                       signed=True))
    if frame is None:
        raise ConnectionError("the connection closed or failed before a whole frame came")
    return frame


def produce_raw(c: KafkaConnection, topic: str, records: bytes, acks: int = -1,
                partition: int = 0) -> Any:
    """One Produce (v9) of an encoded record batch to one partition; its partition
    response (error_code, base_offset, error_message, ...)."""
    r = c.request(0, 9, {"acks": acks, "timeout": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": partition, "records": records}]}]})
    return r.responses[0].partition_responses[0]

"""A full disk takes the partition offline with a clear error and corrupts nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.kafka.client import KafkaConnection
from odradek.storage.records import Record, decode_batches, encode_batch
from tests.helpers import produce_raw
from tests.integration.harness import NodeProcess
from tests.tmpfs import small_tmpfs

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", "3m") as mnt:
        yield mnt


def _produce(c: KafkaConnection, topic: str, value: bytes) -> tuple[ErrorCode, int, str]:
    p = produce_raw(c, topic, encode_batch([Record(0, value=value)]))
    return p.error_code, p.base_offset, p.error_message or ""


def _read_all(c: KafkaConnection, topic: str) -> list[bytes]:
    values: list[bytes] = []
    offset = 0
    while True:
        r = c.request(1, 12, {"replica_id": -1, "max_wait": 0, "min_bytes": 0,
                              "max_bytes": 50 << 20, "isolation_level": 0, "topics": [
                                  {"topic": topic, "partitions": [
                                      {"partition": 0, "fetch_offset": offset,
                                       "partition_max_bytes": 10 << 20}]}]})
        p = r.responses[0].partitions[0]
        assert p.error_code == ErrorCode.none, p.error_code
        if not p.records:
            return values
        for _, recs in decode_batches(p.records):
            for rec in recs:
                values.append(rec.value)
                offset = rec.offset + 1


def test_disk_full_goes_offline_without_losing_acknowledged_data(small_disk: Path) -> None:
    node = NodeProcess(small_disk, overrides={"offsets.topic.num.partitions": 1,
                                              "log.segment.bytes": 8 << 20}).start()
    try:
        topic = "fills-the-disk"
        acked: list[bytes] = []
        with KafkaConnection.to(node.bootstrap) as c:
            r = c.request(19, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                              "replication_factor": 1, "configs": [
                                                  {"name": "segment.index.bytes",
                                                   "value": "4096"}]}],
                                  "timeout": 5000})
            assert r.topics[0].error_code == ErrorCode.none
            failure = None
            for i in range(200):
                value = f"{i:06d}".encode() * 5000  # ~30 KB
                code, offset, message = _produce(c, topic, value)
                if code != ErrorCode.none:
                    failure = (code, message)
                    break
                assert offset == len(acked)
                acked.append(value)
            assert failure is not None, "the 3 MiB disk never filled up"
            assert failure[0] == ErrorCode.kafka_storage_error, failure
            assert "No space left on device" in failure[1] or "ENOSPC" in failure[1], failure
            assert len(acked) > 10
            # The partition stays offline; the broker keeps serving everything else.
            assert _produce(c, topic, b"more")[0] == ErrorCode.kafka_storage_error
            assert c.request(18, 3, {}).error_code == ErrorCode.none
        # Give the disk room again and restart: every acknowledged record is there, intact.
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        node.restart()
        with KafkaConnection.to(node.bootstrap) as c:
            assert _read_all(c, topic) == acked
            code, offset, _ = _produce(c, topic, b"after")
            assert (code, offset) == (ErrorCode.none, len(acked))
    finally:
        node.kill()

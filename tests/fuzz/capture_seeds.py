"""Capture the fuzzer's seed corpus from the real clients the tests use.

    python -m tests.fuzz.capture_seeds [--out tests/fuzz/corpus/seeds] [--keep]

Starts a real single node (tests/integration/harness.py) behind a recording proxy
(recording_proxy.py), the node advertising the proxy's address so that every request goes
through it, then runs short real workloads with kafka-python, confluent-kafka, aiokafka and
kcat: topic create/list/describe, produce (acks 0, 1 and all, idempotent, gzip, snappy, lz4
and zstd), consume standalone and in a group with commits, admin describe/list of groups and
configs, deletes. Each distinct request frame, size prefix included (a seed is the byte
stream a client writes, which is what a fuzzer input is), is written to ``--out`` named by
the SHA-1 of its content, as libFuzzer names corpus files. The first frames of each
client's first connections are also kept as multi-frame streams.

The corpus stays small: frames that differ only in their correlation id are one, at most
``PER_API_VERSION`` frames are kept per client, API and version, none over ``MAX_LEN``. The
output directory is replaced (``--keep`` adds to it instead).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.fuzz.decode_fuzzer import MAX_LEN, SEEDS
from tests.fuzz.recording_proxy import Recorded, RecordingProxy
from tests.helpers import unique_name
from tests.integration.harness import NodeProcess, free_port

PER_API_VERSION = 6
STREAM_FRAMES = 4
STREAMS_PER_CLIENT = 3
KCAT = shutil.which("kcat") or "/usr/bin/kcat"



# --- workloads ------------------------------------------------------------------------------


def kafka_python(bootstrap: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import (
        ConfigResource,
        ConfigResourceType,
        KafkaAdminClient,
        NewPartitions,
        NewTopic,
    )

    topic, group = unique_name("kp", 6), unique_name("kp-group", 6)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1, topic_configs={"retention.ms": "600000"})])
    admin.list_topics()
    admin.describe_topics([topic])
    admin.describe_cluster()
    admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic),
                            ConfigResource(ConfigResourceType.BROKER, "1")])
    for incremental in (False, True):
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                            configs={"retention.ms": "700000"})],
                            incremental=incremental)
    admin.create_partitions({topic: NewPartitions(3)})
    for acks, idempotent, compression in ((0, False, None), (1, False, "gzip"),
                                          ("all", True, None)):
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks=acks,
                                 enable_idempotence=idempotent, compression_type=compression,
                                 linger_ms=5)
        for i in range(20):
            producer.send(topic, key=f"k{i % 3}".encode(), value=f"v{i}".encode(),
                          headers=[("h", b"x")], partition=i % 3)
        producer.flush()
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1500)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    list(consumer)
    consumer.offsets_for_times({tp: int(time.time() * 1000) - 60_000})
    consumer.end_offsets([tp])
    consumer.beginning_offsets([tp])
    consumer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    list(consumer)
    consumer.commit()
    consumer.close()
    admin.list_groups()
    admin.describe_groups([group])
    admin.list_group_offsets({group: None})
    admin.delete_group_offsets(group, [tp])
    admin.delete_records({tp: 5})
    admin.delete_groups([group])
    admin.delete_topics([topic])
    admin.close()


def confluent(bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
    )

    topic, group = unique_name("cf", 6), unique_name("cf-group", 6)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 2, 1, config={"cleanup.policy": "delete"})]
                                 ).values():
        f.result(10)
    admin.list_topics(timeout=10)
    admin.describe_cluster().result(10)
    res = ConfigResource("topic", topic)
    for f in admin.describe_configs([res, ConfigResource("broker", "1")]).values():
        f.result(10)
    for f in admin.incremental_alter_configs([ConfigResource("topic", topic, incremental_configs=[
            ConfigEntry("retention.ms", "900000",
                        incremental_operation=AlterConfigOpType.SET)])]).values():
        f.result(10)
    for f in admin.create_partitions([NewPartitions(topic, 3)]).values():
        f.result(10)
    for acks, codec, idempotent in (("0", "snappy", False), ("1", "lz4", False),
                                    ("all", "zstd", True), ("all", "gzip", True)):
        p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "compression.type": codec,
                      "enable.idempotence": idempotent, "linger.ms": 10})
        for i in range(30):
            p.produce(topic, f"{codec}-{i}-".encode() * 5, key=f"k{i}".encode(),
                      headers=[("h", b"1")])
        p.flush(15)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 15
    while got < 60 and time.monotonic() < deadline:
        got += len(c.consume(100, timeout=0.5))
    c.commit(asynchronous=False)
    c.committed([TopicPartition(topic, 0)], timeout=10)
    c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.offsets_for_times([TopicPartition(topic, 0, int(time.time() * 1000) - 60_000)],
                        timeout=10)
    c.close()
    standalone = Consumer({"bootstrap.servers": bootstrap, "group.id": group + "-solo",
                           "enable.auto.commit": False})
    # An offset with its leader epoch makes librdkafka validate it (OffsetForLeaderEpoch).
    standalone.assign([TopicPartition(topic, 1, 2, leader_epoch=0)])
    standalone.consume(50, timeout=2)
    standalone.close()
    admin.list_consumer_groups().result(10)
    for f in admin.describe_consumer_groups([group]).values():
        f.result(10)
    from confluent_kafka import ConsumerGroupTopicPartitions
    for f in admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)]).values():
        f.result(10)
    for f in admin.delete_records([TopicPartition(topic, 0, 3)]).values():
        f.result(10)
    for f in admin.delete_consumer_groups([group]).values():
        f.result(10)
    for f in admin.delete_topics([topic]).values():
        f.result(10)


def aiokafka(bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic, group = unique_name("aio", 6), unique_name("aio-group", 6)

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 2, 1)])
            await admin.list_topics()
            await admin.describe_topics([topic])
            await admin.describe_cluster()
            for acks, codec, idempotent in ((1, "gzip", False), ("all", "lz4", True),
                                            (0, "zstd", False)):
                producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=acks,
                                            compression_type=codec,
                                            enable_idempotence=idempotent)
                await producer.start()
                try:
                    for i in range(10):
                        await producer.send_and_wait(topic, f"aio-{i}".encode(), key=b"k")
                finally:
                    await producer.stop()
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                        auto_offset_reset="earliest",
                                        enable_auto_commit=False)
            await consumer.start()
            try:
                got = 0
                deadline = time.monotonic() + 15
                while got < 20 and time.monotonic() < deadline:
                    batch = await consumer.getmany(timeout_ms=500)
                    got += sum(len(v) for v in batch.values())
                await consumer.commit()
            finally:
                await consumer.stop()
            await admin.list_consumer_groups()
            await admin.describe_consumer_groups([group])
            await admin.list_consumer_group_offsets(group)
            await admin.delete_topics([topic])
        finally:
            await admin.close()

    asyncio.run(run())


def kcat(bootstrap: str) -> None:
    topic, group = unique_name("kcat", 6), unique_name("kcat-group", 6)
    lines = "".join(f"line-{i}\n" for i in range(30)).encode()
    for codec in ("snappy", "lz4", "zstd", "gzip"):
        subprocess.run([KCAT, "-b", bootstrap, "-P", "-t", topic, "-z", codec, "-K", ":"],
                       input=lines, check=True, timeout=30, capture_output=True)
    subprocess.run([KCAT, "-b", bootstrap, "-P", "-t", topic, "-X", "acks=0"], input=lines,
                   check=True, timeout=30, capture_output=True)
    subprocess.run([KCAT, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q"],
                   check=True, timeout=30, capture_output=True)
    subprocess.run([KCAT, "-b", bootstrap, "-L"], check=True, timeout=30, capture_output=True)
    subprocess.run([KCAT, "-b", bootstrap, "-Q", "-t", f"{topic}:0:-1"], check=True,
                   timeout=30, capture_output=True)
    # A balanced (group) consumer: JoinGroup/SyncGroup/Heartbeat/OffsetCommit/LeaveGroup.
    subprocess.run([KCAT, "-b", bootstrap, "-G", group, "-o", "beginning", "-e", "-q", topic,
                    "-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=100"],
                   timeout=60, capture_output=True)


WORKLOADS: dict[str, Callable[[str], None]] = {
    "kafka-python": kafka_python,
    "confluent-kafka": confluent,
    "aiokafka": aiokafka,
    "kcat": kcat,
}


# --- choosing and writing seeds -----------------------------------------------------------


def _normalized(frame: bytes) -> bytes:
    # The correlation id (bytes 8..12 after the size) differs in every request.
    return frame[:8] + b"\0\0\0\0" + frame[12:]


def select_seeds(frames: list[Recorded]) -> list[bytes]:
    """Distinct single frames, capped per client/API/version, plus a few multi-frame
    streams: the first frames of each client's first connections."""
    seen: set[bytes] = set()
    per_key: collections.Counter[tuple[str, int, int]] = collections.Counter()
    out: list[bytes] = []
    for r in frames:
        if len(r.frame) > MAX_LEN or len(r.frame) < 12:
            continue
        norm = _normalized(r.frame)
        if norm in seen:
            continue
        api_key, api_version = struct.unpack_from(">hh", r.frame, 4)
        key = (r.label, api_key, api_version)
        if per_key[key] >= PER_API_VERSION:
            continue
        seen.add(norm)
        per_key[key] += 1
        out.append(r.frame)
    by_conn: dict[tuple[str, int], list[bytes]] = collections.defaultdict(list)
    for r in frames:
        by_conn[(r.label, r.connection)].append(r.frame)
    streams_per_label: collections.Counter[str] = collections.Counter()
    for (label, _), conn_frames in sorted(by_conn.items()):
        stream = b"".join(conn_frames[:STREAM_FRAMES])
        if len(conn_frames) < 2 or len(stream) > MAX_LEN:
            continue
        if streams_per_label[label] >= STREAMS_PER_CLIENT:
            continue
        streams_per_label[label] += 1
        out.append(stream)
    return out


def write_seeds(seeds: list[bytes], out: Path, keep: bool) -> int:
    if out.exists() and not keep:
        for f in out.iterdir():
            if f.is_file() and f.suffix != ".md":
                f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for seed in seeds:
        path = out / hashlib.sha1(seed).hexdigest()
        if not path.exists():
            path.write_bytes(seed)
            written += 1
    return written


def capture(out: Path, keep: bool = False) -> int:
    base = Path(tempfile.mkdtemp(prefix="odradek-capture-"))
    proxy_port = free_port()
    node = NodeProcess(base, overrides={
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy_port}",
        "offsets.topic.replication.factor": 1})
    proxy = RecordingProxy(("127.0.0.1", node.kafka_port), port=proxy_port)
    bootstrap = f"127.0.0.1:{proxy.port}"
    failures = []
    try:
        node.start()
        for label, workload in WORKLOADS.items():
            proxy.label = label
            started = time.monotonic()
            try:
                workload(bootstrap)
            except Exception as e:  # noqa: BLE001 - report it, keep what was captured
                failures.append(f"{label}: {e!r}")
            print(f"{label}: {sum(r.label == label for r in proxy.frames)} frames in "
                  f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    finally:
        proxy.close()
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
    seeds = select_seeds(list(proxy.frames))
    written = write_seeds(seeds, out, keep)
    apis = collections.Counter(struct.unpack_from(">h", s, 4)[0] for s in seeds)
    print(f"{len(proxy.frames)} frames recorded, {len(seeds)} seeds ({written} new) in {out}, "
          f"{sum(map(len, seeds))} bytes; frames per api key: {dict(sorted(apis.items()))}",
          file=sys.stderr)
    for f in failures:
        print(f"workload failed: {f}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.capture_seeds",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SEEDS)
    parser.add_argument("--keep", action="store_true",
                        help="add to the existing seeds instead of replacing them")
    args = parser.parse_args(argv)
    return capture(args.out, args.keep)


if __name__ == "__main__":
    sys.exit(main())

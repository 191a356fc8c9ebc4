"""Single-broker benchmarks: produce/consume throughput and produce latency.

Figures are printed beside the raw sequential disk write bandwidth measured in the same
run, so they mean something on a noisy shared machine. Not pass/fail: prints a table and
one JSON line. Load comes from confluent-kafka (librdkafka) in separate processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.integration.harness import NodeProcess

RECORD = 1024


def raw_disk_write_mb_s(directory: Path, total_mb: int = 512) -> float:
    """Sequential 1 MiB writes then fsync, like a log append path without any framing."""
    path = directory / "disk-probe.bin"
    block = os.urandom(1 << 20)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(total_mb):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    path.unlink()
    return total_mb / elapsed


def _producer(bootstrap: str, topic: str, seconds: float, acks: str, q: mp.Queue) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                  "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 20,
                  "enable.idempotence": False, "compression.type": "none"})
    payload = os.urandom(RECORD)
    sent = 0
    delivered = [0]

    def done(err: object, msg: object) -> None:
        if err is None:
            delivered[0] += 1

    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            p.produce(topic, payload, on_delivery=done)
            sent += 1
        except BufferError:
            p.poll(0.01)
        if sent % 1000 == 0:
            p.poll(0)
    p.flush(60)
    q.put((delivered[0], time.perf_counter() - start))


def produce_throughput(bootstrap: str, topic: str, seconds: float, procs: int, acks: str
                       ) -> float:
    q: mp.Queue = mp.Queue()
    ps = [mp.Process(target=_producer, args=(bootstrap, topic, seconds, acks, q))
          for _ in range(procs)]
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
    total = sum(n for n, _ in results)
    elapsed = max(t for _, t in results)
    return total * RECORD / elapsed / 1e6


def _consumer(bootstrap: str, topic: str, partitions: list[int], q: mp.Queue) -> None:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{os.getpid()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 50 << 20,
                  "max.partition.fetch.bytes": 10 << 20, "fetch.wait.max.ms": 100})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions}
    total = sum(ends.values())
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    got = nbytes = 0
    start = time.perf_counter()
    while got < total and time.perf_counter() - start < 120:
        msgs = c.consume(10000, timeout=1.0)
        got += len(msgs)
        nbytes += sum(len(m) for m in msgs)
    q.put((got, nbytes, time.perf_counter() - start))
    c.close()


def consume_throughput(bootstrap: str, topic: str, partitions: int, procs: int
                       ) -> tuple[float, int]:
    """Several consumer processes, each reading its share of the partitions from offset 0."""
    q: mp.Queue = mp.Queue()
    shares = [list(range(i, partitions, procs)) for i in range(procs)]
    ps = [mp.Process(target=_consumer, args=(bootstrap, topic, share, q))
          for share in shares if share]
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
    got = sum(r[0] for r in results)
    return sum(r[1] for r in results) / max(r[2] for r in results) / 1e6, got


def produce_latency(bootstrap: str, topic: str, rate: int, seconds: float
                    ) -> tuple[float, float]:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0})
    lat: list[float] = []
    payload = os.urandom(RECORD)
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        p.produce(topic, payload, on_delivery=lambda e, m, t0=t0: lat.append(
            time.perf_counter() - t0))
        n += 1
        p.poll(0)
        sleep = start + n * interval - time.perf_counter()
        if sleep > 0:
            time.sleep(sleep)
    p.flush(30)
    lat.sort()
    return (statistics.median(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args()
    from kafka.admin import KafkaAdminClient, NewTopic

    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        disk = raw_disk_write_mb_s(Path(tmp))
        node = NodeProcess(Path(tmp) / "bench").start()
        try:
            admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
            admin.create_topics([NewTopic("bench", args.partitions, 1),
                                 NewTopic("latency", 1, 1)])
            admin.close()
            produce = produce_throughput(node.bootstrap, "bench", args.seconds,
                                         args.producers, "1")
            consume, count = consume_throughput(node.bootstrap, "bench", args.partitions,
                                                args.producers)
            p50, p99 = produce_latency(node.bootstrap, "latency", 1000, min(args.seconds, 10))
        finally:
            node.stop()
    rows = [
        ("raw disk write (1 MiB blocks + fsync)", f"{disk:.1f} MB/s"),
        (f"produce acks=1, {args.producers} procs, 1 KiB", f"{produce:.1f} MB/s "
         f"({produce / disk * 100:.0f}% of disk; target 50%)"),
        (f"consume {count} records", f"{consume:.1f} MB/s "
         f"({consume / disk * 100:.0f}% of disk; target 100%)"),
        ("produce latency at 1000 msg/s", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({"disk_write_mb_s": round(disk, 1), "produce_mb_s": round(produce, 1),
                      "consume_mb_s": round(consume, 1), "produce_p50_ms": round(p50, 2),
                      "produce_p99_ms": round(p99, 2), "produce_vs_disk": round(produce / disk, 3),
                      "consume_vs_disk": round(consume / disk, 3)}))


if __name__ == "__main__":
    main()

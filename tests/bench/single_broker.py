"""Single-broker benchmarks: produce/consume throughput and produce latency.

Figures are printed beside the raw sequential disk write bandwidth measured in the same
run, so they mean something on a noisy shared machine. Load comes from confluent-kafka
(librdkafka) in separate processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.bench.common import (
    SPAWN,
    Compared,
    Report,
    bench_dir,
    stop_node,
    stop_processes,
)
from tests.bench.raw_fetch import raw_fetch_mb_s
from tests.integration.harness import NodeProcess

if TYPE_CHECKING:
    from tests.bench.kafka_peer import KafkaPeer

RECORD = 1024
RAW_PASSES = 3


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
    q: mp.Queue = SPAWN.Queue()
    ps = [SPAWN.Process(target=_producer, args=(bootstrap, topic, seconds, acks, q))
          for _ in range(procs)]
    try:
        for p in ps:
            p.start()
        results = [q.get(timeout=seconds + 120) for _ in ps]
    finally:
        stop_processes(ps)
    total = sum(n for n, _ in results)
    elapsed = max(t for _, t in results)
    return total * RECORD / elapsed / 1e6


def _consumer(conf: dict[str, Any], topic: str, partitions: list[int], q: mp.Queue) -> None:
    from confluent_kafka import Consumer, TopicPartition

    # fetch.queue.backoff.ms: librdkafka (2.4+) stops fetching a partition for this long
    # (default 1 s) whenever its prefetch queue is full (queued.max.messages.kbytes, 64 MiB).
    # A broker that serves faster than this Python loop reads fills the queue at once, and
    # the loop then empties it in a fraction of that second and waits the rest: with the
    # default, a faster fetch path measured lower (a zero-copy node 221-318 MB/s against
    # 363-529 for the copying one; 650-698 against 516-574 with 5 ms). The client's own
    # advice for "long (~1s) delays between messages" is to lower it.
    c = Consumer({"group.id": f"bench-{os.getpid()}", "enable.auto.commit": False,
                  "fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 10 << 20,
                  "fetch.wait.max.ms": 100, "fetch.queue.backoff.ms": 10, **conf})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions}
    total = sum(ends.values())
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    got = nbytes = 0
    start = time.perf_counter()
    while got < total and time.perf_counter() - start < 120:
        msgs = c.consume(10000, timeout=1.0)
        got += len(msgs)
        nbytes += sum(len(m) for m in msgs if m.error() is None)
    q.put((got, nbytes, time.perf_counter() - start))
    c.close()


def consume_throughput(bootstrap: str, topic: str, partitions: int, procs: int,
                       conf: dict[str, Any] | None = None) -> tuple[float, int]:
    """Several consumer processes, each reading its share of the partitions from offset 0;
    ``conf`` adds client settings (a secured listener's)."""
    q: mp.Queue = SPAWN.Queue()
    shares = [list(range(i, partitions, procs)) for i in range(procs)]
    settings = {"bootstrap.servers": bootstrap, **(conf or {})}
    ps = [SPAWN.Process(target=_consumer, args=(settings, topic, share, q))
          for share in shares if share]
    try:
        for p in ps:
            p.start()
        results = [q.get(timeout=180) for _ in ps]
    finally:
        stop_processes(ps)
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


@dataclass
class SingleBrokerArgs:
    seconds: float = 15
    producers: int = 2
    partitions: int = 4


# Shown beside the same figures measured on the peer (--peer kafka).
COMPARED = (
    Compared("produce_mb_s", "produce acks=1, 1 KiB", "MB/s"),
    Compared("consume_mb_s", "consume", "MB/s"),
    Compared("fetch_raw_mb_s", "fetch, raw protocol client", "MB/s"),
    Compared("produce_p50_ms", "produce latency at 1000 msg/s, p50", "ms", 2),
    Compared("produce_p99_ms", "produce latency at 1000 msg/s, p99", "ms", 2),
)


def run(args: SingleBrokerArgs, workdir: Path, report: Report, disk: float,
        peer: KafkaPeer | None = None) -> None:
    """One Odradek node, or with ``peer`` one Kafka node with the same settings."""
    from kafka.admin import KafkaAdminClient, NewTopic

    report.section("single broker: one node, RF=1")
    with bench_dir(workdir, "single") as tmp:
        node: Any = (NodeProcess(tmp / "bench") if peer is None
                     else peer.cluster(tmp / "bench", 1).nodes[0])
        try:
            node.start()
            admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
            admin.create_topics([NewTopic("bench", args.partitions, 1),
                                 NewTopic("latency", 1, 1)])
            admin.close()
            produce = produce_throughput(node.bootstrap, "bench", args.seconds,
                                         args.producers, "1")
            consume, count = consume_throughput(node.bootstrap, "bench", args.partitions,
                                                args.producers)
            # What the broker's fetch path serves (tests/bench/raw_fetch.py): the median
            # of three passes over the whole topic, each from offset 0.
            raw = sorted(raw_fetch_mb_s(node.bootstrap, "bench", args.partitions,
                                        args.producers)[0] for _ in range(RAW_PASSES))
            fetch_raw = raw[len(raw) // 2]
            p50, p99 = produce_latency(node.bootstrap, "latency", 1000, min(args.seconds, 10))
        except BaseException:
            print(f"single-broker benchmark failed; node log:\n{node.logs()}",
                  file=sys.stderr)
            raise
        finally:
            stop_node(node)
    report.row(f"produce acks=1, {args.producers} procs, 1 KiB", f"{produce:.1f} MB/s "
               f"({produce / disk * 100:.0f}% of disk; target 50%)")
    report.row(f"consume {count} records", f"{consume:.1f} MB/s "
               f"({consume / disk * 100:.0f}% of disk; target 100%)")
    report.row(f"fetch, raw protocol client, {args.producers} procs",
               f"{fetch_raw:.1f} MB/s ({fetch_raw / disk * 100:.0f}% of disk; target 100%; "
               f"passes {', '.join(f'{r:.0f}' for r in raw)})")
    report.row("produce latency at 1000 msg/s", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    for key, value in {"produce_mb_s": produce, "consume_mb_s": consume,
                       "fetch_raw_mb_s": fetch_raw, "fetch_raw_vs_disk": fetch_raw / disk,
                       "produce_p50_ms": p50, "produce_p99_ms": p99,
                       "produce_vs_disk": produce / disk,
                       "consume_vs_disk": consume / disk}.items():
        report.figure(key, round(value, 3 if key.endswith("vs_disk") else 2))

"""Transactions on three combined nodes, RF=3 acks=all: what committing every 100 ms costs.

Three phases on one cluster, each on its own fresh topic, each with one confluent-kafka
producer process sending 1 KiB records with the same settings (acks=all, idempotence on,
linger.ms=5, 1 MiB batches):

- idempotent: as fast as it can, no transactions. This is the limit the transactional
  figure is read against, measured in the same run on the same cluster.
- transactional: as fast as it can, committing every ``commit_ms``: MB/s, its ratio to the
  idempotent MB/s (goal >= 70 %), and commit_transaction() latency. A commit includes the
  flush of the records still in the producer's queue, as in Kafka's client.
- end-to-end: the transactional producer at a fixed rate (not flat out, so the figure is
  the transaction's delay rather than a producer queue's), read by a read_committed
  consumer; latency from the produce() call to the consumer's poll() returning the record.
  A record waits for its transaction's commit, so half a commit interval on average is the
  floor.

The phases only add load on the cluster; the consumer runs in the last phase alone.
"""

from __future__ import annotations

import os
import struct
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
    cpu_seconds,
    percentile,
    stop_processes,
    unfenced_brokers,
)
from tests.bench.single_broker import RECORD
from tests.integration.harness import Cluster, wait_for

if TYPE_CHECKING:
    from tests.bench.kafka_peer import KafkaPeer

STAMP = struct.Struct(">qq")  # produce() time (CLOCK_MONOTONIC ns, shared by processes), seq
GOAL_RATIO = 0.70


@dataclass
class TransactionsArgs:
    seconds: float = 15  # each throughput phase, split over the rounds
    rounds: int = 2
    warmup: float = 10  # untimed transactional producing first: __transaction_state, JIT
    partitions: int = 6
    commit_ms: float = 100.0
    e2e_mb_s: float = 10.0
    e2e_seconds: float = 10.0
    e2e_warmup: float = 2.0


def producer_config(bootstrap: str, transactional_id: str | None) -> dict[str, Any]:
    """The same settings for both modes; only the transactional id differs."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
        "linger.ms": 5, "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 20,
        "compression.type": "none", "log_level": 3}
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
    return conf


def _producer(bootstrap: str, topic: str, seconds: float, transactional_id: str | None,
              commit_ms: float, rate: float, q: Any) -> None:
    """Produce for ``seconds`` (flat out, or ``rate`` records/s when > 0); with a
    transactional id, begin/commit a transaction every ``commit_ms``."""
    from confluent_kafka import Producer

    p = Producer(producer_config(bootstrap, transactional_id))
    txn = transactional_id is not None
    if txn:
        p.init_transactions(120)  # the first one creates __transaction_state: not timed
    pad = bytes(RECORD - STAMP.size)
    state = {"delivered": 0, "errors": 0}
    commits: list[float] = []  # commit_transaction() latency, ms

    def done(err: Any, msg: Any) -> None:
        state["errors" if err is not None else "delivered"] += 1

    sent = 0
    behind = 0.0
    start = time.monotonic()
    cpu0 = time.process_time()  # this process: Python's loop and librdkafka's threads
    while time.monotonic() - start < seconds:
        if txn:
            p.begin_transaction()
        opened = time.monotonic()
        while True:
            now = time.monotonic()
            if now - start >= seconds or (txn and (now - opened) * 1000 >= commit_ms):
                break
            # Flat out: a burst between polls. Paced: what is due by now.
            due = sent + 1000 if rate <= 0 else int((now - start) * rate)
            if rate > 0 and due - sent > 1:
                behind = max(behind, (due - sent) / rate)
            while sent < due:
                try:
                    p.produce(topic, STAMP.pack(time.monotonic_ns(), sent) + pad,
                              on_delivery=done)
                    sent += 1
                except BufferError:
                    p.poll(0.001)
                    break
            p.poll(0)
            if rate > 0:
                time.sleep(0.0005)
        if txn:
            t0 = time.monotonic()
            p.commit_transaction(60)
            commits.append((time.monotonic() - t0) * 1000)
    p.flush(60)
    elapsed = time.monotonic() - start
    out: dict[str, Any] = {"sent": sent, "delivered": state["delivered"],
                           "errors": state["errors"], "elapsed": elapsed,
                           "cpu_s": time.process_time() - cpu0, "behind_s": behind,
                           "commits": commits}
    q.put(_derived(out))


def _derived(r: dict[str, Any]) -> dict[str, Any]:
    """Rates and percentiles from a run's (or several runs') totals."""
    commits = r["commits"]
    r.update(mb_s=r["delivered"] * RECORD / r["elapsed"] / 1e6, transactions=len(commits),
             cpu_cores=r["cpu_s"] / r["elapsed"])
    if "wall" in r:
        r.update(nodes_cpu_cores=r["nodes_cpu_s"] / r["wall"],
                 machine_cpu_cores=r["machine_cpu_s"] / r["wall"])
    if commits:
        r.update(commit_p50=percentile(commits, 50), commit_p99=percentile(commits, 99),
                 commit_max=max(commits), commit_share=sum(commits) / 1000 / r["elapsed"])
    return r


def _nodes_cpu(nodes: Any) -> float:
    return sum(cpu_seconds(n.proc.pid) for n in nodes if n.alive() and n.proc)


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting on I/O)."""
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return sum(int(v) for i, v in enumerate(cpu[:8]) if i not in (3, 4)) / os.sysconf(
        "SC_CLK_TCK")


def produce_phase(bootstrap: str, topic: str, seconds: float, transactional_id: str | None,
                  commit_ms: float, nodes: Any = ()) -> dict[str, Any]:
    """One producer process flat out; MB/s over its whole time including the final flush,
    and the CPU (in cores) the nodes used meanwhile: on two shared cores, with the
    producer's own share, that says whether the machine was the limit."""
    q = SPAWN.Queue()
    proc = SPAWN.Process(target=_producer, args=(bootstrap, topic, seconds, transactional_id,
                                                 commit_ms, 0.0, q))
    try:
        proc.start()
        # From the producer's start, so its init_transactions() is counted too.
        cpu0, busy0, t0 = _nodes_cpu(nodes), _machine_busy(), time.monotonic()
        r: dict[str, Any] = q.get(timeout=seconds + 240)
        r.update(wall=time.monotonic() - t0, nodes_cpu_s=_nodes_cpu(nodes) - cpu0,
                 machine_cpu_s=_machine_busy() - busy0, load_average=os.getloadavg()[0])
    finally:
        stop_processes([proc])
    return _derived(r)


def alternate(bootstrap: str, args: TransactionsArgs, nodes: Any
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Idempotent and transactional runs, ``rounds`` of each, ``seconds`` in all for each,
    in the order ABBA...: the machine's other users come and go and a JVM peer still warms
    up, and alternating spreads that drift over both figures rather than landing it on
    whichever phase came first. Each run has its own topic."""
    runs: dict[str, list[dict[str, Any]]] = {"idem": [], "txn": []}
    each = args.seconds / args.rounds
    for i in range(args.rounds):
        for kind in ("idem", "txn") if i % 2 == 0 else ("txn", "idem"):
            tid = "bench-txn" if kind == "txn" else None
            runs[kind].append(produce_phase(bootstrap, f"{kind}-{i}", each, tid,
                                            args.commit_ms, nodes))
    return _merge(runs["idem"]), _merge(runs["txn"])


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: sum(r[k] for r in runs) for k in (
        "delivered", "errors", "elapsed", "cpu_s", "wall", "nodes_cpu_s", "machine_cpu_s")}
    out.update(commits=[c for r in runs for c in r["commits"]],
               load_average=max(r["load_average"] for r in runs),
               runs_mb_s=[round(r["mb_s"], 1) for r in runs])
    return _derived(out)


def _committed_consumer(bootstrap: str, topic: str, partitions: int, skip_below_seq: int,
                        expected: Any, ready: Any, deadline_s: float, q: Any) -> None:
    """read_committed from offset 0; per record, poll() return time - produce() time, ms."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-txn-e2e",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "log_level": 3})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    c.consume(1, timeout=1.0)  # connected and fetching before the producer starts
    ready.set()
    lat: list[float] = []
    got = 0
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if 0 <= expected.value <= got:
            break
        # poll(), not consume(n): consume waits to fill its batch, adding to the latency.
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        now = time.monotonic_ns()
        got += 1
        sent_ns, seq = STAMP.unpack_from(m.value())
        if seq >= skip_below_seq:
            lat.append((now - sent_ns) / 1e6)
    c.close()
    out: dict[str, Any] = {"received": got, "measured": len(lat)}
    if lat:
        out.update(p50=percentile(lat, 50), p99=percentile(lat, 99), max=max(lat))
    q.put(out)


def e2e_phase(bootstrap: str, topic: str, args: TransactionsArgs, transactional_id: str
              ) -> dict[str, Any]:
    rate = args.e2e_mb_s * 1e6 / RECORD
    skip = int(rate * args.e2e_warmup)
    q = SPAWN.Queue()
    expected = SPAWN.Value("q", -1)
    ready = SPAWN.Event()
    consumer = SPAWN.Process(target=_committed_consumer, args=(
        bootstrap, topic, args.partitions, skip, expected, ready, args.e2e_seconds + 150, q))
    producer = SPAWN.Process(target=_producer, args=(
        bootstrap, topic, args.e2e_seconds, transactional_id, args.commit_ms, rate, q))
    try:
        consumer.start()
        if not ready.wait(60):
            raise RuntimeError("read_committed consumer did not start")
        producer.start()
        prod: dict[str, Any] = q.get(timeout=args.e2e_seconds + 240)
        expected.value = prod["delivered"]
        cons: dict[str, Any] = q.get(timeout=150)
    finally:
        stop_processes([producer, consumer])
    delivered_mb_s = prod["delivered"] * RECORD / 1e6 / args.e2e_seconds
    sustained = (delivered_mb_s >= 0.95 * args.e2e_mb_s and prod["behind_s"] < 1.0
                 and prod["elapsed"] - args.e2e_seconds < 1.0
                 and cons["received"] >= 0.99 * prod["delivered"])
    return {"delivered_mb_s": delivered_mb_s, "sustained": sustained,
            **{f"producer_{k}": v for k, v in prod.items()}, **cons}


# Shown beside the same figures measured on the peer (--peer kafka).
COMPARED = (
    Compared("idempotent_mb_s", "idempotent produce RF=3 acks=all, 1 KiB, 1 producer", "MB/s"),
    Compared("txn_mb_s", "transactional produce, commit every 100 ms", "MB/s"),
    Compared("txn_vs_idempotent", "  transactional / idempotent (goal >= 0.70)", "", 2),
    Compared("txn_commit_p50_ms", "  commit_transaction p50", "ms"),
    Compared("txn_commit_p99_ms", "  commit_transaction p99", "ms"),
    Compared("txn_e2e_target_mb_s", "read_committed end-to-end measured at", "MB/s",
             ratio=False),
    Compared("txn_e2e_p50_ms", "read_committed end-to-end p50", "ms", same="txn_e2e_target_mb_s"),
    Compared("txn_e2e_p99_ms", "read_committed end-to-end p99", "ms", same="txn_e2e_target_mb_s"),
    Compared("txn_e2e_commit_p99_ms", "  commit_transaction p99 at that rate", "ms",
             same="txn_e2e_target_mb_s"),
)


def _create(admin: Any, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic(topic, partitions, 3)], request_timeout=30)[topic].result()


def _cpu_row(report: Report, name: str, r: dict[str, Any]) -> None:
    """Who used the machine meanwhile: on two shared cores, other users' work is the first
    thing that moves these figures."""
    rest = max(0.0, r["machine_cpu_cores"] - r["nodes_cpu_cores"] - r["cpu_cores"])
    report.row(f"  CPU during it (cores of {os.cpu_count()}): nodes / producer process / "
               "rest of the machine",
               f"{r['nodes_cpu_cores']:.2f} / {r['cpu_cores']:.2f} / {rest:.2f}; load "
               f"average {r['load_average']:.1f} at the end")
    report.figure(f"{name}_nodes_cpu_cores", r["nodes_cpu_cores"])
    report.figure(f"{name}_producer_cpu_cores", r["cpu_cores"])
    report.figure(f"{name}_other_cpu_cores", rest)
    report.figure(f"{name}_load_average", r["load_average"])


def _throughput_rows(report: Report, idem: dict[str, Any], txn: dict[str, Any], disk: float,
                     args: TransactionsArgs) -> None:
    report.row(f"idempotent produce RF=3 acks=all, 1 producer, 1 KiB, {args.partitions} "
               "partitions", f"{idem['mb_s']:.1f} MB/s ({idem['mb_s'] / disk * 100:.0f}% of "
               f"disk; runs {idem['runs_mb_s']}; {idem['errors']} failed deliveries)")
    _cpu_row(report, "idempotent", idem)
    ratio = txn["mb_s"] / idem["mb_s"] if idem["mb_s"] else 0.0
    report.row(f"transactional, commit every {args.commit_ms:g} ms, same settings",
               f"{txn['mb_s']:.1f} MB/s = {ratio * 100:.0f}% of idempotent (goal >= "
               f"{GOAL_RATIO * 100:.0f}%); {txn['transactions']} transactions, one every "
               f"{txn['elapsed'] / max(txn['transactions'], 1) * 1000:.0f} ms (open "
               f"{args.commit_ms:g} ms, then the commit flushes), "
               f"{txn['delivered'] / max(txn['transactions'], 1):,.0f} records each; runs "
               f"{txn['runs_mb_s']}; "
               f"{txn['errors']} failed deliveries")
    if "commit_p50" in txn:
        report.row("  commit_transaction() latency (includes flushing the queue)",
                   f"p50 {txn['commit_p50']:.1f} ms, p99 {txn['commit_p99']:.1f} ms, "
                   f"max {txn['commit_max']:.0f} ms; the producer spent "
                   f"{txn['commit_share'] * 100:.0f}% of the phase in it, not producing")
        report.figure("txn_commit_share", txn["commit_share"])
        report.figure("txn_commit_p50_ms", txn["commit_p50"])
        report.figure("txn_commit_p99_ms", txn["commit_p99"])
    _cpu_row(report, "transactional", txn)
    report.figure("idempotent_mb_s", idem["mb_s"])
    report.figure("txn_mb_s", txn["mb_s"])
    report.figure("txn_vs_idempotent", ratio)
    report.figure("txn_transactions", txn["transactions"])
    report.figure("txn_commit_ms", args.commit_ms)


def _e2e_rows(report: Report, r: dict[str, Any], args: TransactionsArgs) -> None:
    label = (f"read_committed end-to-end at {args.e2e_mb_s:g} MB/s, commit every "
             f"{args.commit_ms:g} ms")
    report.figure("txn_e2e_target_mb_s", args.e2e_mb_s)
    report.figure("txn_e2e_sustained", r["sustained"])
    if "p50" not in r:
        report.row(label, f"no records measured ({r['received']} received)")
        return
    verdict = ("sustained" if r["sustained"] else
               f"NOT sustained (delivered {r['delivered_mb_s']:.1f} MB/s, producer up to "
               f"{r['producer_behind_s']:.1f} s behind)")
    report.row(label, f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.0f} ms "
                      f"over {r['measured']} records; {verdict}")
    report.figure("txn_e2e_p50_ms", r["p50"])
    report.figure("txn_e2e_p99_ms", r["p99"])
    if "producer_commit_p50" in r:
        report.row("  commit_transaction() latency at that rate",
                   f"p50 {r['producer_commit_p50']:.1f} ms, p99 {r['producer_commit_p99']:.1f} "
                   "ms")
        report.figure("txn_e2e_commit_p99_ms", r["producer_commit_p99"])


def run(args: TransactionsArgs, workdir: Path, report: Report, disk: float,
        peer: KafkaPeer | None = None) -> None:
    """Three combined Odradek nodes, or with ``peer`` three combined Kafka nodes with the
    same settings."""
    report.section(f"transactions: 3 combined nodes, RF=3 acks=all, commit every "
                   f"{args.commit_ms:g} ms")
    with bench_dir(workdir, "transactions") as base:
        c: Any = Cluster(base, 3) if peer is None else peer.cluster(base, 3)
        try:
            c.start()
            wait_for(lambda: len(unfenced_brokers(c.bootstrap)) >= 3, 60,
                     "3 unfenced brokers")
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": c.bootstrap, "log_level": 3})
            for topic in ("warmup", "txn-e2e", *(f"{kind}-{i}" for i in range(args.rounds)
                                                 for kind in ("idem", "txn"))):
                _create(admin, topic, args.partitions)
            # Untimed: creates __transaction_state (50 partitions RF=3) and warms Kafka's
            # JIT, so neither lands in whichever measured phase comes first.
            produce_phase(c.bootstrap, "warmup", args.warmup, "bench-warmup", args.commit_ms)
            idem, txn = alternate(c.bootstrap, args, c.nodes)
            _throughput_rows(report, idem, txn, disk, args)
            e2e = e2e_phase(c.bootstrap, "txn-e2e", args, "bench-txn-e2e")
            _e2e_rows(report, e2e, args)
        except BaseException:
            print(f"transactions benchmark failed; node logs:\n{c.logs()}", file=sys.stderr)
            raise
        finally:
            c.kill_all()

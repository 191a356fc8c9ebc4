"""Replication benchmarks on a three-node cluster with default settings: RF=3 acks=all
ingress, end-to-end latency at a fixed rate, and the unavailability window when a
partition leader dies (SIGKILL) or shuts down cleanly (SIGTERM).

Issue targets on a 2-core machine: >= 50 MB/s ingress, p99 end-to-end < 10 ms at 10 MB/s,
failover < 2 s (SIGKILL) and < 0.5 s (controlled shutdown). Limits from the same run: the
raw disk write bandwidth (all three replicas share this one disk, so a third of it is the
ceiling for replicated ingress that reaches the disk) and the broker session timeout (a
dead leader is only noticed when its session expires).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.bench.common import (
    SPAWN,
    Compared,
    Report,
    bench_dir,
    config_default,
    median,
    percentile,
    quorum_views,
    stop_processes,
    unfenced_brokers,
    wait_for,
)
from tests.bench.single_broker import RECORD, produce_throughput
from tests.integration.harness import Cluster

if TYPE_CHECKING:
    from tests.bench.kafka_peer import KafkaPeer

STAMP = struct.Struct(">qq")  # send time (CLOCK_MONOTONIC ns, shared by all processes), seq


@dataclass
class ReplicationArgs:
    seconds: float = 15
    producers: int = 3
    partitions: int = 6
    latency_mb_s: float = 10.0
    latency_seconds: float = 10.0
    latency_warmup: float = 2.0
    latency_linger_ms: float = 5.0  # librdkafka's default
    latency_short_linger_ms: float = 1.0  # < 0: skip that run
    failover_trials: int = 3


# --- end-to-end latency -----------------------------------------------------------------


def _latency_producer(bootstrap: str, topic: str, rate: float, seconds: float,
                      skip_below_seq: int, linger_ms: float, q: Any) -> None:
    """Send ``rate`` 1 KiB records/s on a fixed schedule, each stamped with its send time."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": linger_ms,
                  "enable.idempotence": False, "compression.type": "none"})
    pad = bytes(RECORD - STAMP.size)
    state = {"delivered": 0, "errors": 0}
    acks: list[float] = []  # send -> acknowledgement, ms: the produce side of the total

    def done(err: Any, msg: Any) -> None:
        if err is not None:
            state["errors"] += 1
            return
        state["delivered"] += 1
        sent_ns, seq = STAMP.unpack_from(msg.value())
        if seq >= skip_below_seq:
            acks.append((time.monotonic_ns() - sent_ns) / 1e6)

    sent = 0
    behind = 0.0
    start = time.monotonic()
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        if due - sent > 1:
            behind = max(behind, (due - sent) / rate)
        while sent < due:
            try:
                p.produce(topic, STAMP.pack(time.monotonic_ns(), sent) + pad, on_delivery=done)
                sent += 1
            except BufferError:
                p.poll(0.001)
                break
        p.poll(0)
        time.sleep(0.0005)
    left = p.flush(60)
    out: dict[str, Any] = {"sent": sent, "delivered": state["delivered"],
                           "errors": state["errors"], "unflushed": left,
                           "elapsed": time.monotonic() - start, "behind_s": behind}
    if acks:
        out.update(ack_p50=percentile(acks, 50), ack_p99=percentile(acks, 99))
    q.put(out)


def _latency_consumer(bootstrap: str, topic: str, partitions: int, skip_below_seq: int,
                      expected: Any, ready: Any, deadline_s: float, q: Any) -> None:
    """Receive from offset 0 and record receipt - send time per record, in ms."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-e2e",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    c.consume(1, timeout=1.0)  # connected and fetching before the producer starts
    ready.set()
    lat: list[float] = []
    got = 0
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if expected.value >= 0 and got >= expected.value:
            break
        # poll(), not consume(n): consume waits to fill its batch, which would add up to
        # its timeout to every record's latency.
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
        out.update(p50=percentile(lat, 50), p99=percentile(lat, 99),
                   p999=percentile(lat, 99.9), max=max(lat))
    q.put(out)


def e2e_latency(bootstrap: str, topic: str, partitions: int, mb_s: float, seconds: float,
                warmup: float, linger_ms: float = 1.0) -> dict[str, Any]:
    rate = mb_s * 1e6 / RECORD
    q = SPAWN.Queue()
    expected = SPAWN.Value("q", -1)
    ready = SPAWN.Event()
    consumer = SPAWN.Process(target=_latency_consumer, args=(
        bootstrap, topic, partitions, int(rate * warmup), expected, ready, seconds + 90, q))
    producer = SPAWN.Process(target=_latency_producer, args=(
        bootstrap, topic, rate, seconds, int(rate * warmup), linger_ms, q))
    try:
        consumer.start()
        if not ready.wait(60):
            raise RuntimeError("latency consumer did not start")
        producer.start()
        prod = q.get(timeout=seconds + 90)
        expected.value = prod["delivered"]
        cons = q.get(timeout=120)
    finally:
        stop_processes([producer, consumer])
    delivered_mb_s = prod["delivered"] * RECORD / 1e6 / seconds
    # Kept up: on schedule, everything read back, and no backlog left for the final flush.
    sustained = (delivered_mb_s >= 0.95 * mb_s and prod["behind_s"] < 1.0
                 and prod["elapsed"] - seconds < 1.0
                 and cons["received"] >= 0.99 * prod["delivered"])
    return {"target_mb_s": mb_s, "seconds": seconds, "delivered_mb_s": delivered_mb_s,
            "sustained": sustained,
            **{f"producer_{k}": v for k, v in prod.items()}, **cons}


def _latency_row(report: Report, r: dict[str, Any], linger_ms: float) -> None:
    label = (f"end-to-end RF=3 acks=all at {r['target_mb_s']:.2f} MB/s, 3 partitions, "
             f"linger.ms={linger_ms:g}")
    if "p50" not in r:
        report.row(label, f"no records measured ({r['received']} received)")
        return
    verdict = ("sustained" if r["sustained"] else
               f"NOT sustained (delivered {r['delivered_mb_s']:.1f} MB/s, producer up to "
               f"{r['producer_behind_s']:.1f} s behind, final flush "
               f"{r['producer_elapsed'] - r['seconds']:.1f} s)")
    report.row(label, f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, p99.9 {r['p999']:.1f} ms, "
                      f"max {r['max']:.0f} ms over {r['measured']} records; {verdict} "
                      "(target p99 < 10 ms at 10 MB/s)")
    if "producer_ack_p50" in r:
        report.row("  send -> acks=all acknowledgement (producer side)",
                   f"p50 {r['producer_ack_p50']:.1f} ms, p99 {r['producer_ack_p99']:.1f} ms")


def latency_runs(bootstrap: str, admin: Any, args: ReplicationArgs, report: Report) -> None:
    """At the target rate with the client's default linger; halve the rate (up to twice)
    while the cluster cannot keep up. Then the sustained rate again with a shorter linger,
    which shows what many small acks=all requests cost."""
    from confluent_kafka.admin import NewTopic

    n = 0

    def run_once(mb_s: float, linger_ms: float) -> dict[str, Any]:
        nonlocal n
        topic = f"e2e-{n}"
        n += 1
        admin.create_topics([NewTopic(topic, 3, 3)], request_timeout=30)[topic].result()
        r = e2e_latency(bootstrap, topic, 3, mb_s, args.latency_seconds, args.latency_warmup,
                        linger_ms)
        _latency_row(report, r, linger_ms)
        return r

    rate = args.latency_mb_s
    attempts = []
    for _ in range(3):
        r = run_once(rate, args.latency_linger_ms)
        attempts.append(r)
        if r["sustained"]:
            break
        rate /= 2
    best = attempts[-1]
    report.figure("e2e_linger_ms", args.latency_linger_ms)
    report.figure("e2e_target_mb_s", best["target_mb_s"])
    report.figure("e2e_delivered_mb_s", best["delivered_mb_s"])
    report.figure("e2e_sustained", best["sustained"])
    for key in ("p50", "p99", "p999", "max", "producer_ack_p50", "producer_ack_p99"):
        if key in best:
            report.figure(f"e2e_{key}_ms", best[key])
    if len(attempts) > 1:
        report.figure("e2e_attempts", [
            {"target_mb_s": a["target_mb_s"], "sustained": a["sustained"],
             "p99_ms": round(a.get("p99", -1), 2)} for a in attempts])
    if args.latency_short_linger_ms >= 0:
        r = run_once(best["target_mb_s"], args.latency_short_linger_ms)
        report.figure("e2e_short_linger_ms", args.latency_short_linger_ms)
        report.figure("e2e_short_linger_sustained", r["sustained"])
        for key in ("p50", "p99", "producer_ack_p50", "producer_ack_p99"):
            if key in r:
                report.figure(f"e2e_short_linger_{key}_ms", r[key])


# --- leader failover --------------------------------------------------------------------


@dataclass
class Probe:
    """A producer writing a small stamped record every few ms and noting each ack."""

    bootstrap: str
    topic: str
    interval: float = 0.002
    sent_at: list[float] = field(default_factory=list)
    acked_at: dict[int, float] = field(default_factory=dict)
    failed: int = 0

    def __post_init__(self) -> None:
        from confluent_kafka import Producer

        self._stop = threading.Event()
        # Client defaults (acks=all, retries, metadata refresh); only our own logs quieter.
        self._p = Producer({"bootstrap.servers": self.bootstrap, "log_level": 3})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _done(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            return
        self.acked_at[STAMP.unpack_from(msg.value())[1]] = time.perf_counter()

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            self.sent_at.append(time.perf_counter())
            self._p.produce(self.topic, STAMP.pack(0, seq) + bytes(84), on_delivery=self._done)
            seq += 1
            self._p.poll(self.interval)
        self._p.flush(60)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)


def _epochs(bootstrap: str, topic: str) -> dict[int, int]:
    """seq -> leader epoch of the batch that holds it, read back from the partition."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-epochs",
                  "enable.auto.commit": False, "log_level": 3})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        out: dict[int, int] = {}
        seen = 0
        deadline = time.monotonic() + 30
        while seen < high and time.monotonic() < deadline:
            for m in c.consume(10000, timeout=1.0):
                if m.error():
                    continue
                seen += 1
                out[STAMP.unpack_from(m.value())[1]] = m.leader_epoch()
        return out
    finally:
        c.close()


@dataclass
class FailoverTrial:
    kind: str
    victim: int
    window_s: float | None  # signal -> first ack of a record the new leader appended
    max_gap_s: float  # longest pause between acknowledgements around the event
    exited_s: float | None
    failed: int
    epochs: str


def _active_controller(c: Any) -> int:
    return wait_for(lambda: next((v.leader_id for v in quorum_views(c.nodes, local_only=False)
                                  if v.leader_id > 0), None), 60, "an active controller")


def _live_brokers(c: Any, expected: int) -> bool:
    live = ",".join(n.bootstrap for n in c.nodes if n.alive())
    return len(unfenced_brokers(live)) >= expected


def failover_trial(c: Any, kind: str, trial: int) -> FailoverTrial:
    """Leader of a fresh RF=3 partition is a node that is not the active controller (so
    only a partition leader moves); stop it with SIGKILL or SIGTERM while a probe writes."""
    from confluent_kafka.admin import AdminClient, NewTopic

    controller = _active_controller(c)
    candidates = [n for n in c.nodes if n.node_id != controller]
    victim = candidates[trial % len(candidates)]
    others = [n.node_id for n in c.nodes if n is not victim]
    topic = f"failover-{kind}-{trial}"
    admin = AdminClient({"bootstrap.servers": c.bootstrap, "log_level": 3})
    admin.create_topics([NewTopic(topic, 1, replica_assignment=[[victim.node_id, *others]])],
                        request_timeout=30)[topic].result()

    def leader_is_victim() -> bool:
        md = admin.list_topics(topic, timeout=5).topics[topic]
        return md.partitions[0].leader == victim.node_id and len(md.partitions[0].isrs) == 3

    wait_for(leader_is_victim, 30, f"{topic} led by node {victim.node_id} with a full ISR")
    probe = Probe(c.bootstrap, topic)
    probe.start()
    try:
        wait_for(lambda: len(probe.acked_at) > 200, 30, "the probe producer to get acks")
        t0 = time.perf_counter()
        before = [s for s, t in enumerate(probe.sent_at[:]) if t < t0]
        exited = None
        if kind == "kill":
            victim.kill()
            exited = time.perf_counter() - t0
        else:
            try:
                victim.stop(timeout=60)  # controlled shutdown: leaderships move first
                exited = time.perf_counter() - t0
            except subprocess.TimeoutExpired:
                exited = None  # stop() fell back to SIGKILL
        # Let writes run on the new leader for a while before stopping the probe.
        wait_for(lambda: any(t > t0 + 0.5 for t in list(probe.acked_at.values())), 60,
                 "acknowledged writes after the leader stopped", interval=0.05)
        time.sleep(0.5)
    finally:
        probe.stop()
    survivors = ",".join(n.bootstrap for n in c.nodes if n.alive())
    epochs = _epochs(survivors, topic)
    old_epochs = {epochs[s] for s in before if s in epochs and probe.acked_at.get(s, 1e18) < t0}
    old = max(old_epochs) if old_epochs else -1
    new_acks = [t for s, t in probe.acked_at.items() if epochs.get(s, -1) > old]
    window = (min(new_acks) - t0) if new_acks else None
    acks = sorted(probe.acked_at.values())
    gaps = [b - a for a, b in zip(acks, acks[1:], strict=False) if b > t0 - 1]
    return FailoverTrial(kind, victim.node_id, window, max(gaps) if gaps else 0.0, exited,
                         probe.failed, f"{old}->{max(epochs.values()) if epochs else '?'}")


# Shown beside the same figures measured on the peer (--peer kafka).
COMPARED = (
    Compared("rf3_produce_mb_s", "produce RF=3 acks=all, 1 KiB", "MB/s"),
    Compared("e2e_target_mb_s", "end-to-end latency measured at", "MB/s", ratio=False),
    Compared("e2e_p50_ms", "end-to-end RF=3 acks=all p50", "ms", same="e2e_target_mb_s"),
    Compared("e2e_p99_ms", "end-to-end RF=3 acks=all p99", "ms", same="e2e_target_mb_s"),
    Compared("e2e_p999_ms", "end-to-end RF=3 acks=all p99.9", "ms", same="e2e_target_mb_s"),
    Compared("e2e_producer_ack_p99_ms", "  send -> acks=all acknowledgement p99", "ms",
             same="e2e_target_mb_s"),
    Compared("e2e_short_linger_p99_ms", "end-to-end p99, shorter linger.ms", "ms",
             same="e2e_target_mb_s"),
    Compared("failover_kill_ms", "leader SIGKILL -> first write on new leader, median", "ms",
             0, "median"),
    Compared("failover_kill_max_ack_gap_ms", "  longest pause between acks", "ms", 0),
    Compared("failover_term_ms", "leader SIGTERM -> first write on new leader, median", "ms",
             0, "median"),
    Compared("failover_term_max_ack_gap_ms", "  longest pause between acks", "ms", 0),
    Compared("broker_session_timeout_ms", "broker session timeout (configured)", "ms", 0,
             ratio=False),
)


def run(args: ReplicationArgs, workdir: Path, report: Report, disk: float,
        peer: KafkaPeer | None = None) -> None:
    """Three combined Odradek nodes, or with ``peer`` three combined Kafka nodes with the
    same settings."""
    session_ms = (config_default("broker.session.timeout.ms") if peer is None
                  else peer.setting(3, "broker.session.timeout.ms"))
    report.section("replication: 3 combined nodes, default settings, RF=3")
    with bench_dir(workdir, "replication") as base:
        c: Any = Cluster(base, 3) if peer is None else peer.cluster(base, 3)
        try:
            c.start()
            wait_for(lambda: _live_brokers(c, 3), 60, "3 unfenced brokers")
            from confluent_kafka.admin import AdminClient, NewTopic

            admin = AdminClient({"bootstrap.servers": c.bootstrap, "log_level": 3})
            admin.create_topics([NewTopic("rf3", args.partitions, 3)],
                                request_timeout=30)["rf3"].result()
            ingress = produce_throughput(c.bootstrap, "rf3", args.seconds, args.producers,
                                         "all")
            report.row(f"produce RF=3 acks=all, {args.producers} procs, 1 KiB, "
                       f"{args.partitions} partitions",
                       f"{ingress:.1f} MB/s ({ingress / disk * 100:.0f}% of disk, "
                       f"{ingress * 3 / disk * 100:.0f}% counting 3 replicas on it; "
                       "target 50 MB/s)")
            report.figure("rf3_produce_mb_s", ingress)
            report.figure("rf3_produce_vs_disk", ingress / disk)

            latency_runs(c.bootstrap, admin, args, report)

            trials: list[FailoverTrial] = []
            for kind in ("kill", "term"):
                for i in range(args.failover_trials):
                    t = failover_trial(c, kind, i)
                    trials.append(t)
                    victim = next(n for n in c.nodes if n.node_id == t.victim)
                    victim.start(timeout=120)
                    wait_for(lambda: _live_brokers(c, 3), 120, "the stopped node to rejoin",
                             interval=0.5)
        except BaseException:
            print(f"replication benchmark failed; node logs:\n{c.logs()}", file=sys.stderr)
            raise
        finally:
            c.kill_all()

    for kind, label, target in (("kill", "SIGKILL", 2.0), ("term", "SIGTERM (controlled)", 0.5)):
        ts = [t for t in trials if t.kind == kind]
        windows = [t.window_s for t in ts if t.window_s is not None]
        detail = "; ".join(
            f"node {t.victim}: {t.window_s * 1000:.0f} ms" if t.window_s is not None
            else f"node {t.victim}: no new-leader write" for t in ts)
        summary = (f"median {median(windows) * 1000:.0f} ms, max {max(windows) * 1000:.0f} ms"
                   if windows else "no write reached a new leader")
        exits = [t.exited_s for t in ts if t.exited_s is not None]
        limit = (f"session timeout {session_ms} ms" if kind == "kill" else
                 f"process exited after {median(exits) * 1000:.0f} ms" if exits else
                 "process did not exit within 60 s")
        report.row(f"leader {label}: signal -> first write acked by new leader",
                   f"{summary} ({detail}; target < {target * 1000:.0f} ms; {limit})")
        report.row("  longest pause between acks / failed deliveries",
                   f"{max(t.max_gap_s for t in ts) * 1000:.0f} ms / "
                   f"{sum(t.failed for t in ts)}; epochs {', '.join(t.epochs for t in ts)}")
        report.figure(f"failover_{kind}_ms",
                      [round(t.window_s * 1000) if t.window_s is not None else None
                       for t in ts])
        report.figure(f"failover_{kind}_max_ack_gap_ms", round(max(t.max_gap_s for t in ts)
                                                               * 1000))
    report.figure("broker_session_timeout_ms", session_ms)

"""Security benchmarks (issue 15): what TLS costs, what a password-guessing storm does to
the other clients of a node, and whether client quotas hold.

One node with four listeners: PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL (SASL PLAIN),
key store and CA made by tests.certs. All in the same run, so the ratios mean something on
a noisy shared machine:

1. TLS beside plaintext: produce throughput (acks=1, 1 KiB records, librdkafka producer
   processes, as single_broker.produce_throughput) then consume throughput of what was
   produced, over PLAINTEXT, SSL and SASL_SSL, a fresh topic each (same layout, deleted
   after its run). MB/s, the ratio to PLAINTEXT, and the node's CPU (/proc/<pid>/stat)
   during each run, also per MB moved.
2. Failed-authentication storm: one correctly authenticated PLAIN producer on
   SASL_PLAINTEXT (acks=1, 1000 msg/s, linger.ms=0, as single_broker.produce_latency)
   measured alone, then while other processes open connection after connection to the same
   listener and fail SASL PLAIN (SaslHandshake v1, SaslAuthenticate with a wrong password),
   then alone again (how much the machine moved). The node delays each failure by
   connection.failed.authentication.delay.ms (100 ms), so the storm keeps many connections
   in flight. It goes on until the target number of failed attempts is reached and the
   latency window is over. Figures: p50/p99 alone and under the storm, their ratio
   (issue 15: at most +20 %), failed attempts per second, the time the target took, and the
   node's odradek_authentication_failures_total, to show the attempts were real. Beside each
   window, where the time went: the node's own view (event-loop lag histogram, Produce
   handling time, how long its loop thread waited for a CPU, from /proc/<pid>/schedstat)
   and librdkafka's (request round trip vs time records waited in the client).
3. Client quotas, when the node serves AlterClientQuotas (API key 49; else the run says
   "quota run skipped: AlterClientQuotas not served"): producer_byte_rate for client id
   "limited" set over the wire, then "free" flat out alone, "limited" and "free" flat out
   started together, "free" alone again: the limited client's MB/s beside its quota (taken
   over whole periods of the sawtooth a windowed rate makes, see quota_rate), the free
   one's beside the mean of its two runs alone.

The storm's processes run at nice 10: on a real deployment the guessers are other
machines, and here they share two cores with the node and the measured client.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.common import (
    SPAWN,
    Report,
    bench_dir,
    cpu_seconds,
    percentile,
    stop_node,
    stop_processes,
)
from tests.bench.single_broker import consume_throughput
from tests.integration.harness import NodeProcess, free_port, metric

RECORD = 1024
KEY_PASSWORD = "bench-key-pass"
USER = ("alice", "alice-secret")
# The storm's guess: a real user, a wrong password (the node must not say which).
GUESS = ("alice", "wrong")
LISTENERS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_AUTHENTICATION_FAILED = 58
ALTER_CLIENT_QUOTAS = 49


@dataclass
class SecurityArgs:
    seconds: float = 8.0  # each throughput run
    producers: int = 2
    partitions: int = 4
    tls_listeners: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_SSL")
    latency_rate: int = 1000
    latency_seconds: float = 12.0  # each latency window (alone, storm, alone again)
    storm_attempts: int = 10_000
    storm_connections: int = 150  # in flight at once, over storm_procs processes
    storm_procs: int = 2
    # connection_creation_rate (per address, KIP-612) for the second storm; 0: no such run
    storm_ip_quota: int = 20
    # max.connection.creation.rate of a second SASL listener for a third storm; 0: none
    storm_listener_rate: int = 20
    quota_mb_s: float = 2.0
    quota_seconds: float = 30.0  # the limited producer: two periods of its sawtooth
    free_seconds: float = 6.0  # the free producer: alone, beside the limited one, alone
    quota_warmup: float = 1.0  # not counted in the free producer's MB/s (connecting)


@dataclass
class SecuredNode:
    node: NodeProcess
    ports: dict[str, int]
    ca_file: Path

    def conf(self, listener: str) -> dict[str, Any]:
        """librdkafka's settings for a listener of the node."""
        protocol = "SASL_PLAINTEXT" if listener == PACED else listener
        conf: dict[str, Any] = {"bootstrap.servers": f"127.0.0.1:{self.ports[listener]}",
                                "security.protocol": protocol}
        if "SSL" in protocol:
            conf["ssl.ca.location"] = str(self.ca_file)
        if protocol.startswith("SASL"):
            conf.update({"sasl.mechanisms": "PLAIN", "sasl.username": USER[0],
                         "sasl.password": USER[1]})
        return conf


def _jaas(users: dict[str, str]) -> str:
    options = " ".join(f'user_{u}="{p}"' for u, p in users.items())
    return f"org.apache.kafka.common.security.plain.PlainLoginModule required {options};"


PACED = "SASL_PACED"  # SASL_PLAINTEXT too, with listener.name.sasl_paced.max.connection.creation.rate


def secured_node(base: Path, paced_rate: int = 0) -> SecuredNode:
    """A node (not started) with every security protocol on its own listener, and with
    ``paced_rate``, a second SASL_PLAINTEXT listener, SASL_PACED, that accepts that many
    connections a second (max.connection.creation.rate, KIP-612)."""
    from tests.certs import CertificateAuthority

    ca = CertificateAuthority(base / "certs")
    server = ca.issue("broker", server=True, key_password=KEY_PASSWORD)
    ports = {name: free_port() for name in (*LISTENERS, *([PACED] if paced_rate else []))}
    jaas = _jaas({USER[0]: USER[1]})
    protocols = {n: n for n in LISTENERS} | ({PACED: "SASL_PLAINTEXT"} if paced_rate else {})
    overrides: dict[str, Any] = {
        # PLAINTEXT first: the node's own (inter-broker) listener.
        "listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
        "listener.security.protocol.map": ",".join(f"{n}:{p}" for n, p in protocols.items()),
        "inter.broker.listener.name": "PLAINTEXT",
        "ssl.keystore.location": str(server.pem),
        "ssl.key.password": KEY_PASSWORD,
        "ssl.truststore.location": str(ca.ca_file),
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
    }
    if paced_rate:
        overrides["listener.name.sasl_paced.plain.sasl.jaas.config"] = jaas
        overrides["listener.name.sasl_paced.max.connection.creation.rate"] = paced_rate
    node = NodeProcess(base / "node", kafka_port=ports["PLAINTEXT"], overrides=overrides)
    return SecuredNode(node, ports, ca.ca_file)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return sum(int(v) for i, v in enumerate(cpu[:8]) if i not in (3, 4)) / os.sysconf(
        "SC_CLK_TCK")


class CpuWindow:
    """CPU used by some processes and by the machine between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.cores: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        out = {"machine": machine_busy_s()}
        for name, pid in self.pids.items():
            try:
                out[name] = cpu_seconds(pid)
            except OSError:
                out[name] = 0.0
        return out

    def start(self) -> CpuWindow:
        self._t0, self._c0 = time.monotonic(), self._sample()
        return self

    def stop(self) -> CpuWindow:
        c1, wall = self._sample(), time.monotonic() - self._t0
        self.seconds = {k: c1[k] - self._c0[k] for k in c1}
        self.cores = {k: v / wall for k, v in self.seconds.items()}
        return self


# --- 1. throughput over each listener ------------------------------------------------------


def _producer(conf: dict[str, Any], topic: str, seconds: float, warmup: float,
              flush: bool, q: mp.Queue) -> None:
    """Flat out. With ``flush`` every record sent is counted (single_broker's way: the
    elapsed time includes the final flush); without it only those delivered between
    ``warmup`` and ``seconds``, and the rest is purged (a throttled client would take
    minutes to drain its queue). Puts (records, seconds, records delivered in each second)."""
    from confluent_kafka import Producer

    p = Producer({"acks": "1", "linger.ms": 5, "batch.size": 1 << 20,
                  "queue.buffering.max.kbytes": (1 << 20) if flush else 32 << 10,
                  "enable.idempotence": False, "compression.type": "none", **conf})
    payload = os.urandom(RECORD)
    per_s = [0] * (int(seconds) + 1)
    start = time.perf_counter()

    def done(err: object, msg: object) -> None:
        if err is None:
            per_s[min(len(per_s) - 1, int(time.perf_counter() - start))] += 1

    sent = 0
    while time.perf_counter() - start < seconds:
        try:
            p.produce(topic, payload, on_delivery=done)
            sent += 1
        except BufferError:
            p.poll(0.01)
        if sent % 1000 == 0:
            p.poll(0)
    if flush:
        p.flush(120)
        q.put((sum(per_s), time.perf_counter() - start, per_s))
        return
    p.poll(0)
    counted = sum(per_s[int(warmup):int(seconds)])
    p.purge()
    p.flush(10)
    q.put((counted, int(seconds) - int(warmup), per_s[:int(seconds)]))


def produce_mb_s(confs: list[dict[str, Any]], topic: str, seconds: float, warmup: float = 0.0,
                 flush: bool = True) -> list[tuple[float, float]]:
    """One producer process per conf at the same time; their MB/s and MB counted (in no
    order)."""
    q: mp.Queue = SPAWN.Queue()
    ps = [SPAWN.Process(target=_producer, args=(c, topic, seconds, warmup, flush, q))
          for c in confs]
    try:
        for p in ps:
            p.start()
        results = [q.get(timeout=seconds + 180) for _ in ps]
    finally:
        stop_processes(ps)
    return [(n * RECORD / elapsed / 1e6, n * RECORD / 1e6) for n, elapsed, _ in results]


def consume_mb_s(conf: dict[str, Any], topic: str, partitions: int, procs: int
                 ) -> tuple[float, int]:
    """single_broker's consumers, with this listener's settings (``conf``)."""
    return consume_throughput(conf["bootstrap.servers"], topic, partitions, procs, conf)


def _admin(sn: SecuredNode) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=sn.node.bootstrap)


def _with_topic(sn: SecuredNode, topic: str, partitions: int, create: bool) -> None:
    """Create or delete a topic (deleted as soon as a run is done: its files, dirty pages
    included, go with it, so the next run does not wait for their writeback)."""
    from kafka.admin import NewTopic

    admin = _admin(sn)
    try:
        if create:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        else:
            admin.delete_topics([topic])
    finally:
        admin.close()


def tls_beside_plaintext(args: SecurityArgs, sn: SecuredNode, report: Report) -> None:
    assert sn.node.pid is not None
    results: dict[str, dict[str, float]] = {}
    for listener in args.tls_listeners:
        topic = f"tput-{listener.lower().replace('_', '-')}"
        _with_topic(sn, topic, args.partitions, True)
        conf = sn.conf(listener)
        cpu = CpuWindow({"node": sn.node.pid}).start()
        each = produce_mb_s([conf] * args.producers, topic, args.seconds)
        produce, produced_mb = sum(r for r, _ in each), sum(mb for _, mb in each)
        cpu.stop()
        cpu_c = CpuWindow({"node": sn.node.pid}).start()
        consume, count = consume_mb_s(conf, topic, args.partitions, args.producers)
        cpu_c.stop()
        _with_topic(sn, topic, args.partitions, False)  # the next run: the same empty disk
        r = results[listener] = {
            "produce_mb_s": produce, "consume_mb_s": consume, "consumed_records": count,
            "produce_node_cores": cpu.cores["node"], "consume_node_cores": cpu_c.cores["node"],
            "produce_machine_cores": cpu.cores["machine"],
            "consume_machine_cores": cpu_c.cores["machine"],
            # Node CPU per MB moved: TLS's cost without the throughput it reached.
            "produce_node_ms_per_mb": (cpu.seconds["node"] * 1000 / produced_mb
                                       if produced_mb else 0.0),
        }
        consumed_mb = count * RECORD / 1e6
        r["consume_node_ms_per_mb"] = (cpu_c.seconds["node"] * 1000 / consumed_mb
                                       if consumed_mb else 0.0)
    base = results.get("PLAINTEXT")
    report.section(f"security: TLS beside plaintext (1 node, {args.partitions} partitions, "
                   f"acks=1, 1 KiB, {args.producers} procs)")
    for listener, r in results.items():
        key = listener.lower()
        for what in ("produce", "consume"):
            versus = ""
            if base and listener != "PLAINTEXT" and base[f"{what}_mb_s"]:
                ratio = r[f"{what}_mb_s"] / base[f"{what}_mb_s"]
                report.figure(f"{key}_vs_plaintext_{what}", round(ratio, 3))
                versus = f", {ratio:.2f}x PLAINTEXT"
            report.row(f"{what} over {listener}",
                       f"{r[f'{what}_mb_s']:.1f} MB/s{versus}; node CPU "
                       f"{r[f'{what}_node_cores']:.2f} cores "
                       f"({r[f'{what}_node_ms_per_mb']:.1f} ms/MB), machine "
                       f"{r[f'{what}_machine_cores']:.2f} of {os.cpu_count()}")
        for k, v in r.items():
            report.figure(f"{key}_{k}", round(v, 3) if isinstance(v, float) else v)


# --- 2. failed-authentication storm --------------------------------------------------------


def _kafka_string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _sasl_request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """A request frame with header v1 (SaslHandshake v1 and SaslAuthenticate v1 are not
    flexible): written out by hand, since the benchmarks treat the product as a black box
    and use no Odradek code."""
    frame = (api_key.to_bytes(2, "big") + version.to_bytes(2, "big")
             + correlation_id.to_bytes(4, "big", signed=True) + _kafka_string(b"storm")
             + body)
    return len(frame).to_bytes(4, "big") + frame


def _error_code(response_frame: bytes) -> int:
    """The error code that opens both responses' bodies, after the correlation id."""
    return int.from_bytes(response_frame[4:6], "big", signed=True)


def _storm(port: int, source: str, connections: int, target: int, counter: Any, held: Any,
           reached_at: Any, go: Any, stop: Any, ready: Any, q: mp.Queue) -> None:
    """``connections`` coroutines, each trying SASL PLAIN with a wrong password over a fresh
    connection from address ``source``, again and again, until ``target`` attempts are
    counted (by all processes) and ``stop`` is set. An attempt ends in a failed login
    (``counter``) or, when the node holds the connection unread and closes it
    (connection_creation_rate, KIP-612), in a ``held`` one; the attacker then reconnects at
    once."""
    os.nice(10)
    handshake = _sasl_request(17, 1, 1, _kafka_string(b"PLAIN"))
    token = b"\0" + GUESS[0].encode() + b"\0" + GUESS[1].encode()
    authenticate = _sasl_request(36, 1, 2, len(token).to_bytes(4, "big") + token)
    other: dict[str, int] = {}

    async def read_frame(reader: asyncio.StreamReader) -> bytes:
        size = int.from_bytes(await reader.readexactly(4), "big")
        return await reader.readexactly(size)

    async def attempt() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
        try:
            writer.write(handshake)
            code = _error_code(await read_frame(reader))
            if code != 0:
                return code
            writer.write(authenticate)
            return _error_code(await read_frame(reader))
        finally:
            writer.close()

    def count(value: Any) -> None:
        with value.get_lock():
            value.value += 1
        if counter.value + held.value == target:
            reached_at.value = time.monotonic()

    async def loop() -> None:
        while not (counter.value + held.value >= target and stop.is_set()):
            try:
                async with asyncio.timeout(30):
                    code = await attempt()
            except asyncio.IncompleteReadError:  # closed unanswered: held by the quota
                count(held)
                continue
            except Exception as e:  # noqa: BLE001 - counted; the storm goes on
                name = type(e).__name__
                other[name] = other.get(name, 0) + 1
                await asyncio.sleep(0.05)
                continue
            if code != SASL_AUTHENTICATION_FAILED:
                other[f"error_code {code}"] = other.get(f"error_code {code}", 0) + 1
                continue
            count(counter)

    async def main() -> None:
        await asyncio.gather(*(loop() for _ in range(connections)))

    ready.release()
    go.wait()
    asyncio.run(main())
    q.put(other)


@dataclass
class Storm:
    """The storm's processes, from start() to finish()."""

    port: int
    connections: int
    procs: int
    target: int
    source: str = "127.0.0.2"  # the attacker's address: another host, as it would be

    def start(self) -> Storm:
        self.counter = SPAWN.Value("q", 0)
        self.held = SPAWN.Value("q", 0)
        self.reached_at = SPAWN.Value("d", 0.0)
        self.go, self.stop_event = SPAWN.Event(), SPAWN.Event()
        ready = SPAWN.Semaphore(0)
        self.q: mp.Queue = SPAWN.Queue()
        per = [self.connections // self.procs + (i < self.connections % self.procs)
               for i in range(self.procs)]
        self.ps = [SPAWN.Process(target=_storm, args=(
            self.port, self.source, n, self.target, self.counter, self.held, self.reached_at,
            self.go, self.stop_event, ready, self.q)) for n in per if n]
        for p in self.ps:
            p.start()
        for _ in self.ps:  # imports done: the storm starts at once on go
            if not ready.acquire(timeout=60):
                raise RuntimeError("storm processes did not start within 60 s")
        self.started = time.monotonic()
        self.go.set()
        return self

    @property
    def attempts(self) -> int:
        return int(self.counter.value + self.held.value)

    @property
    def pids(self) -> dict[str, int]:
        return {f"storm{i}": p.pid for i, p in enumerate(self.ps) if p.pid is not None}

    def finish(self, timeout: float) -> tuple[int, float, dict[str, int]]:
        """Let it reach its target, then stop: (failed logins, seconds, other outcomes)."""
        self.stop_event.set()
        other: dict[str, int] = {}
        try:
            for _ in self.ps:
                for k, v in self.q.get(timeout=timeout).items():
                    other[k] = other.get(k, 0) + v
        finally:
            ended = time.monotonic()
            stop_processes(self.ps)
        return int(self.counter.value), ended - self.started, other


def _latency_window(producer: Any, topic: str, rate: int, seconds: float) -> list[float]:
    """Send at a fixed rate for ``seconds``; each record's time to its acknowledgement."""
    lat: list[float] = []
    payload = os.urandom(RECORD)
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        producer.produce(topic, payload, on_delivery=lambda e, m, t0=t0: lat.append(
            time.perf_counter() - t0) if e is None else None)
        n += 1
        producer.poll(0)
        sleep = start + n * interval - time.perf_counter()
        if sleep > 0:
            time.sleep(sleep)
    producer.flush(30)
    return lat


LAG_BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1")


def _node_view(sn: SecuredNode) -> dict[str, float]:
    """What the node says about its own loop: the watchdog's lag histogram (a tick every
    50 ms), Produce handling time, and how long its loop thread waited for a CPU."""
    from tests.helpers import metric_sum
    from tests.integration.harness import scrape

    page = scrape(sn.node)
    out = {f"lag_le_{le}": metric_sum(page, "odradek_event_loop_lag_seconds_bucket",
                                      f'le="{le}"') or 0.0 for le in (*LAG_BUCKETS, "+Inf")}
    out["produce_handled"] = metric_sum(page, "odradek_request_latency_seconds_count",
                                        'api="produce"') or 0.0
    out["produce_handling_s"] = metric_sum(page, "odradek_request_latency_seconds_sum",
                                           'api="produce"') or 0.0
    # /proc/<pid>/schedstat is the main thread's (the event loop): ns on a CPU, ns waiting
    # for one while runnable.
    run_ns, wait_ns, _ = Path(f"/proc/{sn.node.pid}/schedstat").read_text().split()
    out["loop_run_s"], out["loop_runq_wait_s"] = int(run_ns) / 1e9, int(wait_ns) / 1e9
    return out


def _node_delta(before: dict[str, float], after: dict[str, float], seconds: float
                ) -> dict[str, float]:
    d = {k: after[k] - before[k] for k in before}
    ticks = d["lag_le_+Inf"] or 1.0
    out = {f"loop_lag_over_{le}_s_share": 1 - d[f"lag_le_{le}"] / ticks
           for le in ("0.01", "0.025")}
    out["loop_ticks"] = d["lag_le_+Inf"]
    out["node_produce_handling_ms"] = (d["produce_handling_s"] * 1000 / d["produce_handled"]
                                       if d["produce_handled"] else 0.0)
    out["loop_runq_wait_share"] = d["loop_runq_wait_s"] / seconds
    out["loop_busy_share"] = d["loop_run_s"] / seconds
    return out


def _stats(lat: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "p999_ms": percentile(lat, 99.9) * 1000, "max_ms": max(lat) * 1000,
            "acked": len(lat)}


def failed_auth_storm(args: SecurityArgs, sn: SecuredNode, report: Report) -> None:
    from confluent_kafka import Producer

    assert sn.node.pid is not None
    topic = "latency"
    _with_topic(sn, topic, 1, True)
    listener = "SASL_PLAINTEXT"
    # librdkafka's own view each second: the round trip of its Produce requests (sent to
    # answered) apart from the time records wait in the client. Where the latency is.
    rtts: list[tuple[float, float]] = []

    def on_stats(text: str) -> None:
        for b in json.loads(text)["brokers"].values():
            if b.get("nodeid", -1) >= 0 and b["rtt"]["cnt"]:
                rtts.append((b["rtt"]["p99"] / 1000, b["int_latency"]["p99"] / 1000))

    def well_behaved(on: str) -> Any:
        p = Producer({**sn.conf(on), "acks": "1", "linger.ms": 0,
                      "client.id": "well-behaved", "statistics.interval.ms": 1000,
                      "stats_cb": on_stats})
        for _ in range(100):  # connected, authenticated, metadata known, before any window
            p.produce(topic, b"warm-up")
        p.flush(30)
        return p

    producer = well_behaved(listener)
    # The same client on the paced listener, connected before any storm.
    paced_producer = well_behaved(PACED) if PACED in sn.ports else None
    runs: dict[str, dict[str, float]] = {}

    def window(name: str, pids: dict[str, int], producer: Any = producer) -> None:
        cpu = CpuWindow({"node": sn.node.pid or 0, **pids}).start()
        view0, t0 = _node_view(sn), time.monotonic()
        rtts.clear()
        lat = _latency_window(producer, topic, args.latency_rate, args.latency_seconds)
        cpu.stop()
        node = _node_delta(view0, _node_view(sn), time.monotonic() - t0)
        # The first report of a window covers the second before it.
        client = {"client_rtt_p99_worst_s_ms": max((r for r, _ in rtts[1:]), default=0.0),
                  "client_queue_p99_worst_s_ms": max((q for _, q in rtts[1:]), default=0.0)}
        runs[name] = {**_stats(lat), **{f"{k}_cores": v for k, v in cpu.cores.items()},
                      **node, **client}

    storms: dict[str, dict[str, Any]] = {}

    def storm_window(name: str, on: str = listener, producer: Any = producer,
                     target: int = args.storm_attempts) -> None:
        """A storm on listener ``on`` until ``target`` attempts are made and the window
        is over (target 0: the window only)."""
        labels = f'listener="{on}"'
        failures0 = metric(sn.node, "odradek_authentication_failures_total", labels)
        logins0 = metric(sn.node, "odradek_authentications_total", labels)
        storm = Storm(sn.ports[on], args.storm_connections, args.storm_procs,
                      target).start()
        try:
            # The window opens once the storm is in full swing: every connection has
            # failed (or been held) once.
            deadline = time.monotonic() + (30 if target else 5)
            while storm.attempts < args.storm_connections and time.monotonic() < deadline:
                time.sleep(0.05)
            at_window, held_at_window = storm.attempts, storm.held.value
            window(name, storm.pids, producer)
            in_window = storm.attempts - at_window
            held_in_window = storm.held.value - held_at_window
            failed, storm_s, other = storm.finish(
                timeout=max(120.0, args.storm_attempts / 50))
        finally:
            stop_processes(storm.ps)
        reached = storm.reached_at.value - storm.started if storm.reached_at.value else None
        storms[name] = {
            "on": on, "target": target, "failed": failed, "held": int(storm.held.value), "seconds": storm_s,
            "reached": reached, "other": other, "in_window": in_window,
            "held_in_window": held_in_window,
            "failures_metric": metric(sn.node, "odradek_authentication_failures_total",
                                      labels) - failures0,
            "logins_metric": metric(sn.node, "odradek_authentications_total", labels) - logins0}

    window("alone", {})
    storm_window("storm")
    if args.storm_ip_quota:
        # The defence Kafka has for it (KIP-612): connections per second per address.
        # On the default ip entity, as an operator would set it; the producer's one
        # connection is long open, and the attacker is another address.
        _alter_quota(sn, ("--ip", "<default>"), "connection_creation_rate",
                     args.storm_ip_quota)
        try:
            storm_window("storm, ip quota")
        finally:
            _delete_quota(sn, ("--ip", "<default>"))
    if paced_producer is not None:
        # KIP-612's listener-wide limit: the listener accepts args.storm_listener_rate
        # connections a second and no more; the producer there has long been connected.
        # The listener lets through only that many attempts a second: the storm lasts its
        # window, not 10,000 attempts (which would take storm_attempts / rate seconds).
        storm_window("storm, paced listener", PACED, paced_producer, target=0)
        paced_producer.flush(10)
    window("alone again", {})
    producer.flush(10)

    alone = runs["alone"]
    report.section(f"security: failed-authentication storm on {listener} (PLAIN; "
                   f"{args.latency_rate} msg/s acks=1 linger.ms=0, {args.latency_seconds:.0f} s "
                   f"windows; the attacker at 127.0.0.2, {args.storm_connections} connections "
                   f"in flight from {args.storm_procs} procs at nice 10)")
    for name, r in runs.items():
        extra = ""
        if name in storms:
            storm_cores = sum(v for k, v in r.items() if k.startswith("storm"))
            st = storms[name]
            extra = (f", storm procs {storm_cores:.2f}; {st['in_window'] / args.latency_seconds:,.0f}"
                     f" attempts/s in the window ({st['held_in_window'] / args.latency_seconds:,.0f}"
                     "/s held and closed unanswered)")
        report.row(f"produce latency, {name}",
                   f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, p99.9 "
                   f"{r['p999_ms']:.2f} ms, max {r['max_ms']:.1f} ms; CPU node "
                   f"{r['node_cores']:.2f}{extra}, machine {r['machine_cores']:.2f} of "
                   f"{os.cpu_count()} cores")
        report.row("  the node's loop meanwhile",
                   f"busy {r['loop_busy_share'] * 100:.0f}%, waited for a CPU "
                   f"{r['loop_runq_wait_share'] * 100:.1f}% of the time; ticks late > 10 ms "
                   f"{r['loop_lag_over_0.01_s_share'] * 100:.1f}%, > 25 ms "
                   f"{r['loop_lag_over_0.025_s_share'] * 100:.1f}% (of {r['loop_ticks']:.0f});"
                   f" Produce handled in {r['node_produce_handling_ms']:.2f} ms on average")
        report.row("  librdkafka's view, worst second",
                   f"request round trip p99 {r['client_rtt_p99_worst_s_ms']:.1f} ms, records "
                   f"queued in the client p99 {r['client_queue_p99_worst_s_ms']:.1f} ms")
    for name, st in storms.items():
        key, quota = {
            "storm": ("auth_storm", "no connection quota"),
            "storm, ip quota": ("auth_storm_ip_quota",
                                f"connection_creation_rate={args.storm_ip_quota} on the "
                                "default ip entity"),
            "storm, paced listener": ("auth_storm_paced",
                                      f"max.connection.creation.rate="
                                      f"{args.storm_listener_rate} on its listener"),
        }[name]
        ratio = runs[name]["p99_ms"] / alone["p99_ms"]
        report.row(f"p99 {name} / alone ({quota})",
                   f"{ratio:.2f}x (target <= 1.20x); alone again: "
                   f"{runs['alone again']['p99_ms'] / alone['p99_ms']:.2f}x")
        attempts = st["failed"] + st["held"]
        report.row(f"  attempts of the {name}",
                   f"{attempts:,} in {st['seconds']:.1f} s = {attempts / st['seconds']:,.0f}/s: "
                   f"{st['failed']:,} failed logins, {st['held']:,} held and closed "
                   "unanswered; "
                   + ("the window only (the listener paces them)" if not st["target"] else
                      f"target {st['target']:,} attempts reached after "
                      + (f"{st['reached']:.1f} s" if st["reached"] is not None
                         else "- (not reached)"))
                   + (f"; other outcomes {st['other']}" if st["other"] else ""))
        report.row("  node's odradek_authentication_failures_total",
                   f"+{st['failures_metric']:,.0f} on {st['on']} (logins that succeeded: "
                   f"+{st['logins_metric']:,.0f})")
        report.figure(f"{key}_p99_ratio", round(ratio, 3))
        report.figure(f"{key}_attempts", attempts)
        report.figure(f"{key}_failed_logins", st["failed"])
        report.figure(f"{key}_held", st["held"])
        report.figure(f"{key}_seconds", round(st["seconds"], 2))
        report.figure(f"{key}_attempts_per_s", round(attempts / st["seconds"], 1))
        report.figure(f"{key}_attempts_per_s_in_window",
                      round(st["in_window"] / args.latency_seconds, 1))
        report.figure(f"{key}_target_seconds",
                      round(st["reached"], 2) if st["reached"] else None)
        report.figure(f"{key}_other_outcomes", st["other"])
        report.figure(f"{key}_failures_metric", st["failures_metric"])
    for name, r in runs.items():
        for k, v in r.items():
            report.figure(f"auth_storm_{name.replace(' ', '_').replace(',', '')}_{k}",
                          round(v, 3))


# --- 3. client quotas ----------------------------------------------------------------------


def _serves(sn: SecuredNode, api_key: int) -> bool:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=sn.node.bootstrap)
    try:
        return api_key in admin.api_versions()
    finally:
        admin.close()


def _odradek_quotas(sn: SecuredNode, *args: str) -> None:
    """``odradek quotas ...`` (the CLI, as an operator would)."""
    r = subprocess.run([str(Path(sys.executable).with_name("odradek")), "quotas", *args,
                        "--bootstrap", sn.node.bootstrap], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"odradek quotas {' '.join(args)}: {r.stderr}")


def _alter_quota(sn: SecuredNode, entity: tuple[str, ...], key: str, value: float) -> None:
    _odradek_quotas(sn, "set", *entity, "--config", f"{key}={value}")
    time.sleep(1.0)  # the node applies it with its next metadata


def _delete_quota(sn: SecuredNode, entity: tuple[str, ...]) -> None:
    _odradek_quotas(sn, "delete", *entity)
    time.sleep(1.0)


def quota_rate(per_s: list[int], quota_mb_s: float) -> tuple[float, int, str]:
    """The limited client's MB/s, and how it was taken from its per-second deliveries.

    A windowed rate (Kafka's, quota.window.num 11 x 1 s, measured over at least 10 s)
    lets a flat-out client send about quota x 10 s at once whenever its earlier bytes have
    left the window, then throttles it below the quota until they leave again: a sawtooth
    with a period of about 13 s here. Its rate is taken over whole periods, from the start
    of one burst to the start of the last: from the second burst when there are three or
    more (the first one is larger: everything pipelined before the first throttled answer
    gets in), else from the first; with fewer than two bursts, over the whole run."""
    mb = [n * RECORD / 1e6 for n in per_s]
    starts = [i for i, v in enumerate(mb)
              if v > 3 * quota_mb_s and (i == 0 or mb[i - 1] <= 3 * quota_mb_s)]
    if len(starts) >= 2 and starts[0] <= 1:
        first = starts[1] if len(starts) >= 3 else starts[0]
        end = starts[-1]
        which = "second" if first != starts[0] else "first"
        return (sum(mb[first:end]) / (end - first), len(starts),
                f"over {end - first} s from the {which} burst to the last")
    return sum(mb) / len(mb), len(starts), f"over the whole {len(mb)} s"


def client_quotas(args: SecurityArgs, sn: SecuredNode, report: Report) -> None:
    report.section("security: client quotas (producer_byte_rate, client id \"limited\", "
                   "PLAINTEXT)")
    if not _serves(sn, ALTER_CLIENT_QUOTAS):
        print("quota run skipped: AlterClientQuotas not served", flush=True)
        report.row("quota run skipped", "AlterClientQuotas not served")
        report.figure("quota_skipped", "AlterClientQuotas not served")
        return
    _alter_quota(sn, ("--client-id", "limited"), "producer_byte_rate", args.quota_mb_s * 1e6)
    base = sn.conf("PLAINTEXT")
    free_conf = {**base, "client.id": "free"}

    def free_alone(topic: str) -> float:
        _with_topic(sn, topic, args.partitions, True)
        try:
            return produce_mb_s([free_conf], topic, args.free_seconds, args.quota_warmup,
                                flush=False)[0][0]
        finally:
            _with_topic(sn, topic, args.partitions, False)

    # Alone before and after the run beside the limited client: a flat-out producer's
    # MB/s moves with the shared machine and the disk's writeback, so it is bracketed.
    before = free_alone("free-before")
    throttled0 = metric(sn.node, "odradek_throttled_requests_total")
    runs = {"limited": ({**base, "client.id": "limited"}, "quota-limited", args.quota_seconds),
            "free": (free_conf, "free-beside", args.free_seconds)}
    for _, topic, _ in runs.values():
        _with_topic(sn, topic, args.partitions, True)
    # Started together; a queue each, so that the two results cannot be confused.
    qs = {name: SPAWN.Queue() for name in runs}
    ps = {name: SPAWN.Process(target=_producer, args=(
        conf, topic, seconds, args.quota_warmup, False, qs[name]))
        for name, (conf, topic, seconds) in runs.items()}
    try:
        for p in ps.values():
            p.start()
        got = {name: qs[name].get(timeout=args.quota_seconds + 120) for name in runs}
    finally:
        stop_processes(list(ps.values()))
    throttled = metric(sn.node, "odradek_throttled_requests_total") - throttled0
    for _, topic, _ in runs.values():
        _with_topic(sn, topic, args.partitions, False)
    after = free_alone("free-after")
    alone = (before + after) / 2
    n, elapsed, _ = got["free"]
    free = n * RECORD / elapsed / 1e6
    per_s = got["limited"][2]
    limited, bursts, how = quota_rate(per_s, args.quota_mb_s)
    after_warmup = got["limited"][0] * RECORD / got["limited"][1] / 1e6
    report.row("limited, flat out (free beside it for the first "
               f"{args.free_seconds:.0f} s)",
               f"{limited:.2f} MB/s vs quota {args.quota_mb_s:.2f} MB/s "
               f"({limited / args.quota_mb_s:.2f}x; target within 10 %), {how}")
    report.row("  its sawtooth",
               f"{bursts} bursts of up to {max(per_s) * RECORD / 1e6:.1f} MB in a second; "
               f"{after_warmup:.2f} MB/s from {args.quota_warmup:.0f} s on; node throttled "
               f"{throttled:.0f} requests")
    report.row("free beside limited / free alone",
               f"{free:.1f} / {alone:.1f} MB/s ({free / alone:.2f}x; target unaffected); "
               f"alone {before:.1f} before, {after:.1f} after ({args.free_seconds:.0f} s runs "
               f"from {args.quota_warmup:.0f} s on)")
    for key, value in {"quota_mb_s": args.quota_mb_s, "quota_limited_mb_s": limited,
                       "quota_limited_vs_quota": limited / args.quota_mb_s,
                       "quota_limited_after_warmup_mb_s": after_warmup,
                       "quota_free_mb_s": free, "quota_free_alone_mb_s": alone,
                       "quota_free_alone_before_mb_s": before,
                       "quota_free_alone_after_mb_s": after,
                       "quota_free_vs_alone": free / alone}.items():
        report.figure(key, round(value, 3))
    report.figure("quota_limited_mb_per_s", [round(v * RECORD / 1e6, 2) for v in per_s])
    report.figure("quota_throttled_requests", throttled)


def run(args: SecurityArgs, workdir: Path, report: Report) -> None:
    with bench_dir(workdir, "security") as tmp:
        sn = secured_node(tmp, args.storm_listener_rate)
        node = sn.node
        try:
            node.start()
            report.row("security node", "1 node; listeners " + ", ".join(
                f"{n} :{p}" for n, p in sn.ports.items()))
            tls_beside_plaintext(args, sn, report)
            failed_auth_storm(args, sn, report)
            client_quotas(args, sn, report)
        except BaseException:
            print(f"security benchmark failed; node log:\n{node.logs()}", file=sys.stderr)
            raise
        finally:
            stop_node(node)

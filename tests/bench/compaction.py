"""Log compaction benchmarks: the cleaner's throughput on its own, and what a cleaner that
never stops costs the produce latency of a compacted topic.

1. In isolation: a compacted partition log is written straight to disk with PartitionLog
   (1 KiB incompressible values over a fixed set of keys, realistic segment.bytes), its
   pages are dropped from the page cache, then one cleaning is timed as the broker does
   it: ``run_clean(ticket.job)`` (what a cleaner worker process runs) plus
   ``swap_cleaned``. Twice: the first cleaning of a log that is dirty from its start, and
   a steady-state one after appending until the dirty ratio reaches 0.5 (Kafka's default
   min.cleanable.dirty.ratio), where the clean head is read and recopied too. Figures: MB/s
   of dirty log cleaned (bytes of the dirty section / seconds), dirty records/s, and the
   recopy ratio, beside the raw disk write bandwidth of the same run. The recopy ratio is
   given as Kafka's cleaner-recopy-percent defines it (bytes written / bytes of the
   segments copied) and as odradek_log_cleaner_recopy_ratio reports it (bytes written /
   all bytes read, the offset map's pass over the dirty section included).
2. Produce latency: a fresh cluster (1 node, then 3) with a compacted topic of small
   segments and min.cleanable.dirty.ratio 0.01, a keyed 1 KiB producer at a fixed rate
   with acks=all, once with log.cleaner.enable=false and once with the cleaner on. The
   cleaner's counters are read at the start and end of the measured window, so the
   comparison shows how much cleaning actually happened while latency was measured.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.common import (
    SPAWN,
    Report,
    bench_dir,
    percentile,
    stop_node,
    stop_processes,
)

MB = 1024 * 1024
# Records per batch when building the log: a 64 KiB batch, what a busy producer sends.
BUILD_BATCH = 64


@dataclass
class CompactionArgs:
    log_mb: int = 384  # size of the log cleaned in isolation
    segment_mb: int = 64  # its segment.bytes
    keys: int = 100_000  # distinct keys in that log
    value_bytes: int = 1024
    rate: int = 3000  # records/s of the latency runs
    seconds: float = 20.0  # measured window of each latency run
    warmup: float = 5.0  # before the window: segments fill and the cleaner gets going
    # Cluster sizes of the latency runs (RF = nodes): 1 shows the cleaner's own cost, 3
    # adds acks=all replication with every replica cleaning its own log on the same cores.
    nodes: tuple[int, ...] = (1, 3)
    produce_keys: int = 5000  # keys of the latency runs (each rewritten every ~2 s)
    topic_segment_bytes: int = MB  # small, so segments seal and the cleaner has work
    linger_ms: float = 5.0  # librdkafka's default


# --- 1. cleaner throughput in isolation ----------------------------------------------------


def _drop_page_cache(directory: Path) -> None:
    """Ask the kernel to forget the log's pages (they were fsynced when their segments
    rolled), so the cleaner reads from the disk as it would a log written hours ago rather
    than from memory. Best effort: a VM's host may still cache them."""
    for path in directory.iterdir():
        if not path.is_file():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _append(plog: Any, nbytes: int, keys: int, value_bytes: int, rng: random.Random) -> int:
    """Append about ``nbytes`` of keyed records (keys drawn uniformly); returns records."""
    from odradek.storage import Record, encode_batch

    # One random value per batch: incompressible, and cheaper to make than one per record.
    per_record = value_bytes + 30  # value, key and record framing
    records = 0
    while records * per_record < nbytes:
        value = os.urandom(value_bytes)
        batch = [Record(i, 0, b"key-%09d" % rng.randrange(keys), value)
                 for i in range(BUILD_BATCH)]
        plog.append(encode_batch(batch), leader_epoch=0)
        records += BUILD_BATCH
    # Seal the last segment (fsync) so the whole log is cleanable, as it is once a live
    # log has rolled past it and its records are below the high watermark.
    plog.roll()
    plog.high_watermark = plog.log_end_offset
    plog.flush()
    return records


def _clean_once(plog: Any) -> dict[str, Any]:
    """One cleaning, as the broker runs it: the job built under the log's lock, the worker's
    run_clean, then the swap. Timed together (the swap is a few renames and fsyncs)."""
    from odradek.storage import compaction
    from odradek.storage.cleaning import run_clean

    _drop_page_cache(plog.directory)
    dirt = plog.dirtiness()
    cpu0, t0 = time.process_time(), time.perf_counter()
    ticket = plog.prepare_clean(
        now_ms=int(time.time() * 1000),
        map_capacity=compaction.map_capacity(128 * MB),  # the default dedupe buffer
        io_bytes_per_second=float("inf"))
    if ticket is None:
        raise RuntimeError(f"nothing to clean in {plog.directory}: {dirt}")
    result = run_clean(ticket.job)
    t1 = time.perf_counter()
    swapped = plog.swap_cleaned(ticket, result)
    t2 = time.perf_counter()
    if swapped != len(result.groups):
        raise RuntimeError(f"only {swapped} of {len(result.groups)} cleaned groups swapped")
    seconds = t2 - t0
    copied = sum(ref.size for group in ticket.job.groups
                 if group[0].base_offset < result.end_offset for ref in group)
    # With a full offset map only part of the dirty section is cleaned; count that part.
    dirty_records = result.end_offset - ticket.job.first_dirty
    return {
        "dirty_mb": dirt.dirty_bytes / 1e6, "clean_mb": dirt.clean_bytes / 1e6,
        "dirty_ratio": dirt.ratio, "dirty_records": dirty_records,
        "seconds": seconds, "swap_seconds": t2 - t1,
        "cpu_seconds": time.process_time() - cpu0,
        "dirty_mb_s": dirt.dirty_bytes / 1e6 / seconds,
        "records_s": dirty_records / seconds,
        "read_mb": result.bytes_read / 1e6, "written_mb": result.bytes_written / 1e6,
        "recopy_ratio": result.bytes_written / copied if copied else 0.0,
        "metric_recopy_ratio": (result.bytes_written / result.bytes_read
                                if result.bytes_read else 0.0),
        "removed": result.records_removed, "map_full": result.map_full,
        "groups": len(result.groups), "size_after_mb": plog.size_bytes / 1e6,
    }


def _clean_row(report: Report, label: str, r: dict[str, Any], disk: float) -> None:
    report.row(label, f"{r['dirty_mb_s']:.1f} MB/s of dirty log ({r['dirty_mb_s'] / disk * 100:.0f}"
               f"% of disk write), {r['records_s'] / 1000:.0f}k records/s")
    report.row("  what it did",
               f"{r['dirty_mb']:.0f} MB dirty + {r['clean_mb']:.0f} MB clean in "
               f"{r['seconds']:.1f} s ({r['cpu_seconds']:.1f} s CPU, swap "
               f"{r['swap_seconds'] * 1000:.0f} ms); read {r['read_mb']:.0f} MB, wrote "
               f"{r['written_mb']:.0f} MB: recopy ratio {r['recopy_ratio']:.2f} (as Kafka's; "
               f"the metric's {r['metric_recopy_ratio']:.2f}), "
               f"{r['removed']} records removed, log now {r['size_after_mb']:.0f} MB"
               + ("; OFFSET MAP FULL: cleaned part of the dirty section" if r["map_full"]
                  else ""))


def clean_in_isolation(args: CompactionArgs, workdir: Path, report: Report, disk: float
                       ) -> None:
    from odradek.storage import LogConfig, PartitionLog

    rng = random.Random(14)
    with bench_dir(workdir, "clean") as tmp:
        plog = PartitionLog.open(tmp / "compacted-0", LogConfig(
            cleanup_policy="compact", segment_bytes=args.segment_mb * MB))
        try:
            t0 = time.perf_counter()
            n = _append(plog, args.log_mb * MB, args.keys, args.value_bytes, rng)
            built = time.perf_counter() - t0
            segments = len(plog.segments) - 1
            first = _clean_once(plog)
            _clean_row(report, f"first cleaning: {args.log_mb} MiB, {n} records over "
                       f"{args.keys} keys, {segments} segments of {args.segment_mb} MiB",
                       first, disk)
            # Steady state: as much new data as the clean head holds, so the dirty ratio is
            # 0.5 and the default min.cleanable.dirty.ratio would start this cleaning.
            _append(plog, int(first["size_after_mb"] * 1e6), args.keys, args.value_bytes, rng)
            steady = _clean_once(plog)
            _clean_row(report, f"steady state: dirty ratio {steady['dirty_ratio']:.2f}",
                       steady, disk)
        finally:
            plog.close()
    report.note(f"compaction: the {args.log_mb} MiB log was written in {built:.1f} s; its pages "
                "were dropped from the page cache before each cleaning (posix_fadvise)")
    for name, r in (("first", first), ("steady", steady)):
        for key in ("dirty_mb_s", "records_s", "recopy_ratio", "metric_recopy_ratio",
                    "seconds", "dirty_mb"):
            report.figure(f"clean_{name}_{key}", round(r[key], 3 if "ratio" in key else 1))
    report.figure("clean_first_vs_disk", round(first["dirty_mb_s"] / disk, 3))


# --- 2. produce latency with the cleaner on and off ---------------------------------------


def _keyed_producer(bootstrap: str, topic: str, rate: int, warmup: float, seconds: float,
                    keys: int, value_bytes: int, linger_ms: float, window_start: Any,
                    window_end: Any, q: Any) -> None:
    """Keyed records on a fixed schedule with acks=all. Latency runs from a record's due
    time (not the moment produce() was called), so a producer held up by a busy machine
    does not hide the delay from the figures (coordinated omission)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": linger_ms,
                  # A batch must fit the topic's small segments (segment.bytes).
                  "batch.size": 256 * 1024, "enable.idempotence": False,
                  "compression.type": "none"})
    rng = random.Random(os.getpid())
    values = [os.urandom(value_bytes) for _ in range(64)]
    lat: list[float] = []
    errors = [0]
    measure_from = int(rate * warmup)
    total = int(rate * (warmup + seconds))

    def done(err: Any, msg: Any, due: float, seq: int) -> None:
        if err is not None:
            errors[0] += 1
        elif seq >= measure_from:
            lat.append((time.monotonic() - due) * 1000)

    start = time.monotonic()
    sent = 0
    behind = 0.0
    while sent < total:
        now = time.monotonic()
        due_n = min(total, int((now - start) * rate))
        behind = max(behind, (due_n - sent) / rate)
        while sent < due_n:
            if sent == measure_from:
                window_start.set()
            due = start + sent / rate
            try:
                p.produce(topic, values[sent % 64], key=b"key-%06d" % rng.randrange(keys),
                          on_delivery=lambda e, m, due=due, seq=sent: done(e, m, due, seq))
            except BufferError:
                p.poll(0.001)
                break
            sent += 1
        p.poll(0)
        time.sleep(0.0005)
    window_end.set()
    left = p.flush(60)
    q.put({"sent": sent, "errors": errors[0], "unflushed": left, "behind_s": behind,
           "elapsed": time.monotonic() - start, "measured": len(lat),
           **({"p50": percentile(lat, 50), "p99": percentile(lat, 99),
               "p999": percentile(lat, 99.9), "max": max(lat)} if lat else {})})


CLEANER_COUNTERS = ("cleanings_total", "read_bytes_total", "written_bytes_total",
                    "removed_records_total", "failures_total")


def _cleaner_counters(nodes: list[Any]) -> dict[str, float]:
    """The cleaner's counters summed over the nodes (every replica cleans its own log)."""
    from tests.helpers import metric_sum
    from tests.integration.harness import scrape

    pages = [scrape(n) for n in nodes]
    return {c: sum(metric_sum(p, f"odradek_log_cleaner_{c}") or 0.0 for p in pages)
            for c in CLEANER_COUNTERS}


def _cpu_snapshot(node_pids: set[int]) -> dict[str, float]:
    """CPU seconds used so far by the nodes, by their child processes (the cleaner's
    workers), and by the whole machine: the machine is shared, so the comparison needs to
    show who had the cores during the window."""
    tick = os.sysconf("SC_CLK_TCK")
    nodes = children = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(entry.name) in node_pids:
            nodes += used
        elif int(fields[1]) in node_pids:
            children += used
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    # user nice system idle iowait irq softirq steal: everything but idle and iowait.
    busy = sum(int(v) for i, v in enumerate(cpu[:8]) if i not in (3, 4)) / tick
    return {"nodes": nodes, "children": children, "machine": busy}


def _latency_run(args: CompactionArgs, workdir: Path, nodes: int, cleaner: bool
                 ) -> dict[str, Any]:
    from kafka.admin import KafkaAdminClient, NewTopic

    from tests.helpers import metric_sum
    from tests.integration.harness import Cluster as LocalCluster
    from tests.integration.harness import scrape

    name = "on" if cleaner else "off"
    with bench_dir(workdir, f"cleaner-{nodes}-{name}") as tmp:
        cluster = LocalCluster(tmp, n=nodes, overrides={
            "log.cleaner.enable": cleaner,
            # The pause between looks when nothing is dirty enough; with Kafka's 15 s the
            # cleaner would sit idle for most of a 20 s window.
            "log.cleaner.backoff.ms": 100,
            "offsets.topic.num.partitions": 1,
        })
        procs: list[Any] = []
        try:
            cluster.start()
            admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
            admin.create_topics([NewTopic("compacted", 1, nodes, topic_configs={
                "cleanup.policy": "compact",
                "segment.bytes": str(args.topic_segment_bytes),
                "min.cleanable.dirty.ratio": "0.01"})])
            admin.close()
            q = SPAWN.Queue()
            window_start, window_end = SPAWN.Event(), SPAWN.Event()
            producer = SPAWN.Process(target=_keyed_producer, args=(
                cluster.bootstrap, "compacted", args.rate, args.warmup, args.seconds,
                args.produce_keys, args.value_bytes, args.linger_ms, window_start,
                window_end, q))
            procs.append(producer)
            producer.start()
            if not window_start.wait(args.warmup + 60):
                raise RuntimeError("the producer did not reach its measured window")
            pids = {n.pid for n in cluster.nodes if n.pid is not None}
            before, cpu0, t0 = (_cleaner_counters(cluster.nodes), _cpu_snapshot(pids),
                                time.monotonic())
            if not window_end.wait(args.seconds + 60):
                raise RuntimeError("the producer did not finish its measured window")
            cpu1, t1 = _cpu_snapshot(pids), time.monotonic()
            after = _cleaner_counters(cluster.nodes)
            out: dict[str, Any] = q.get(timeout=90)
            pages = [scrape(n) for n in cluster.nodes]
            out["log_mb"] = max(metric_sum(p, "odradek_log_size_bytes", 'topic="compacted"')
                                or 0.0 for p in pages) / 1e6
            out["max_dirty_ratio"] = max(
                metric_sum(p, "odradek_log_cleaner_max_dirty_ratio") or 0.0 for p in pages)
            out.update({f"window_{c}": after[c] - before[c] for c in CLEANER_COUNTERS})
            out.update({f"cores_{k}": (cpu1[k] - cpu0[k]) / (t1 - t0) for k in cpu0})
            return out
        except BaseException:
            print(f"compaction latency run (cleaner {name}) failed; node logs:\n"
                  f"{cluster.logs()[-20000:]}")
            raise
        finally:
            stop_processes(procs)
            for node in reversed(cluster.nodes):
                stop_node(node)


def _latency_row(report: Report, args: CompactionArgs, cleaner: bool, r: dict[str, Any]
                 ) -> None:
    label = f"  log cleaner {'on' if cleaner else 'off'}"
    if "p50" not in r:
        report.row(label, f"no records measured ({r['errors']} errors)")
        return
    flush = r["elapsed"] - args.warmup - args.seconds
    kept_up = r["behind_s"] < 1.0 and flush < 1.0
    report.row(label, f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, p99.9 {r['p999']:.1f} "
               f"ms, max {r['max']:.0f} ms over {r['measured']} records"
               + ("" if kept_up else f"; NOT sustained (producer up to {r['behind_s']:.1f} s "
                  f"behind, final flush {flush:.1f} s)")
               + (f"; {r['errors']} delivery errors" if r["errors"] else ""))
    window_mb = args.rate * args.seconds * args.value_bytes / 1e6
    report.row("    cleaner during the window",
               f"{r['window_cleanings_total']:.0f} cleanings, read "
               f"{r['window_read_bytes_total'] / 1e6:.0f} MB, wrote "
               f"{r['window_written_bytes_total'] / 1e6:.0f} MB, removed "
               f"{r['window_removed_records_total']:.0f} records "
               f"(produced {window_mb:.0f} MB); log {r['log_mb']:.1f} MB at the end"
               + (f", dirty ratio {r['max_dirty_ratio']:.2f} at its last look" if cleaner
                  else "")
               + (f", {r['window_failures_total']:.0f} FAILED" if r["window_failures_total"]
                  else ""))
    other = r["cores_machine"] - r["cores_nodes"] - r["cores_children"]
    report.row("    CPU during the window (cores)",
               f"nodes {r['cores_nodes']:.2f}, their child processes (cleaner workers) "
               f"{r['cores_children']:.2f}, rest of the machine (producer, other users) "
               f"{other:.2f}, of {os.cpu_count()}")


def latency_with_cleaner(args: CompactionArgs, workdir: Path, report: Report,
                         nodes: int) -> None:
    report.row(f"produce latency, compacted topic, {nodes} node{'s' if nodes > 1 else ''} "
               f"RF={nodes} acks=all, {args.rate} x {args.value_bytes} B keyed records/s "
               f"over {args.produce_keys} keys, linger.ms={args.linger_ms:g}",
               f"{args.seconds:g} s after {args.warmup:g} s warm-up; segment.bytes "
               f"{args.topic_segment_bytes}, min.cleanable.dirty.ratio 0.01; fresh cluster each")
    for cleaner in (False, True):
        r = _latency_run(args, workdir, nodes, cleaner)
        _latency_row(report, args, cleaner, r)
        tag = f"{nodes}n_cleaner_{'on' if cleaner else 'off'}"
        for key in ("p50", "p99", "p999", "max"):
            if key in r:
                report.figure(f"compacted_produce_{key}_ms_{tag}", round(r[key], 2))
        report.figure(f"{tag}_window_cleanings", int(r["window_cleanings_total"]))
        report.figure(f"{tag}_window_cleaner_read_mb",
                      round(r["window_read_bytes_total"] / 1e6, 1))
        for key in ("nodes", "children", "machine"):
            report.figure(f"{tag}_cores_{key}", round(r[f"cores_{key}"], 2))


def run(args: CompactionArgs, workdir: Path, report: Report, disk: float) -> None:
    report.section("compaction: the log cleaner")
    clean_in_isolation(args, workdir, report, disk)
    for nodes in args.nodes:
        latency_with_cleaner(args, workdir, report, nodes)
    report.note("compaction: the latency runs are the cleaner's worst case on purpose: with "
                "1 MiB segments and min.cleanable.dirty.ratio 0.01 every sealed segment starts "
                "a cleaning that recopies the whole clean head, so it never rests")

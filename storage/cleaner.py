"""The log cleaner: picks the dirtiest compacted logs and cleans them in worker processes.

A scheduler thread looks at every compacted log every ``log.cleaner.backoff.ms`` (and when
woken), picks the dirtiest ones whose dirty ratio reached ``min.cleanable.dirty.ratio`` (or
whose oldest dirty record passed ``max.compaction.lag.ms``, or whose tombstones' delete
horizon passed), and hands each to a worker. Workers are processes, not threads
(``log.cleaner.threads`` of them, started on first use, scheduled SCHED_IDLE): decoding
and re-encoding records is Python work that would otherwise hold the interpreter lock the
broker's event loop needs. The worker writes the cleaned copies (storage/cleaning.py); this
thread swaps them in under the log's lock (PartitionLog.swap_cleaned), a few renames.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from odradek.storage import cleaning, compaction
from odradek.storage.errors import StorageError
from odradek.storage.log import CleanTicket, PartitionLog, wall_clock_ms

log = logging.getLogger("odradek.storage.cleaner")


@dataclass(frozen=True, slots=True)
class CleanerConfig:
    """The broker's log.cleaner.* settings (Kafka's names and defaults)."""

    enable: bool = True  # log.cleaner.enable
    threads: int = 1  # log.cleaner.threads: worker processes
    io_max_bytes_per_second: float = float("inf")  # log.cleaner.io.max.bytes.per.second
    dedupe_buffer_size: int = 128 * 1024 * 1024  # log.cleaner.dedupe.buffer.size
    backoff_ms: int = 15_000  # log.cleaner.backoff.ms


@dataclass
class CleanerStats:
    """What the cleaner did so far; metrics read it (one writer: the scheduler thread)."""

    cleanings: int = 0
    failures: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    records_removed: int = 0
    last_clean_seconds: float = 0.0
    max_clean_seconds: float = 0.0
    last_recopy_ratio: float = 0.0  # share of the bytes read that was written again
    max_dirty_ratio: float = 0.0  # over the compacted logs at the last scan
    max_compaction_delay_s: float = 0.0  # how far past max.compaction.lag.ms, at worst
    uncleanable: dict[str, str] = field(default_factory=dict)  # log name -> why


def _worker_init() -> None:
    # Second to the broker for the CPU: cleaning can wait, requests cannot. SCHED_IDLE gives
    # the worker almost no share while its broker (in the same autogroup) wants the core;
    # nice alone does not (it ranks within the group). Several brokers on one host compete
    # as groups, so there log.cleaner.io.max.bytes.per.second is what bounds the cleaners.
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except OSError:
            pass


class LogCleaner:
    def __init__(self, config: CleanerConfig, *,
                 now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        self.now_ms = now_ms
        self.stats = CleanerStats()
        self._logs: dict[str, PartitionLog] = {}
        self._in_progress: dict[str, tuple[CleanTicket, cf.Future[cleaning.CleanResult]]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: cf.ProcessPoolExecutor | None = None

    # --- registry (any thread) -----------------------------------------------------------

    def add(self, name: str, plog: PartitionLog) -> None:
        with self._lock:
            self._logs[name] = plog
            self.stats.uncleanable.pop(name, None)

    def remove(self, name: str) -> None:
        with self._lock:
            self._logs.pop(name, None)
            self.stats.uncleanable.pop(name, None)

    def wake(self) -> None:
        """Look at the logs now rather than after the backoff (configs changed, tests)."""
        self._wake.set()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if not self.config.enable or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="log-cleaner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop at once: a cleaning in progress is abandoned (its copies are discarded now
        or, if the process dies first, when the log is next opened)."""
        self._stopping.set()
        self._wake.set()
        # Killing the workers first ends the scheduler's wait for their results at once.
        self._stop_pool()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._stop_pool()

    def _stop_pool(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        # A cleaning can take minutes; nothing it wrote is live until swapped in.
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            if p.is_alive():
                p.terminate()
        for p in processes:
            p.join(timeout=5)

    # --- the scheduler thread ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._round()
            except Exception:  # keep cleaning other logs whatever one of them did
                log.exception("log cleaner round failed")
            if self._in_progress:
                self._collect(timeout=self.config.backoff_ms / 1000)
            else:
                self._wake.wait(self.config.backoff_ms / 1000)
                self._wake.clear()

    def _round(self) -> None:
        self._collect(timeout=0)
        now = self.now_ms()
        with self._lock:
            logs = [(n, lg) for n, lg in self._logs.items()
                    if n not in self._in_progress and n not in self.stats.uncleanable]
        candidates: list[tuple[int, float, str, PartitionLog, bool]] = []
        max_ratio = 0.0
        max_delay = 0.0
        for name, plog in logs:
            cfg = plog.config
            if not cfg.compacts or plog.offline:
                continue
            try:
                dirt = plog.dirtiness(now)
            except StorageError:
                continue
            max_ratio = max(max_ratio, dirt.ratio)
            horizon = plog.min_delete_horizon
            horizon_due = horizon is not None and horizon <= now
            if dirt.oldest_dirty_ms is not None:
                late = now - dirt.oldest_dirty_ms - cfg.max_compaction_lag_ms
                max_delay = max(max_delay, late / 1000)
            if dirt.dirty_bytes and (dirt.overdue or dirt.ratio >= cfg.min_cleanable_dirty_ratio):
                candidates.append((0 if dirt.overdue else 1, -dirt.ratio, name, plog, False))
            elif horizon_due:
                candidates.append((2, 0.0, name, plog, True))
        self.stats.max_dirty_ratio = max_ratio
        self.stats.max_compaction_delay_s = max_delay
        candidates.sort(key=lambda c: (c[0], c[1]))
        free = max(0, self.config.threads - len(self._in_progress))
        for _, _, name, plog, horizon_only in candidates[:free]:
            self._submit(name, plog, now, horizon_only)

    def _submit(self, name: str, plog: PartitionLog, now: int, horizon_only: bool) -> None:
        try:
            ticket = plog.prepare_clean(
                now_ms=now, map_capacity=compaction.map_capacity(self.config.dedupe_buffer_size),
                io_bytes_per_second=self.config.io_max_bytes_per_second,
                horizon_only=horizon_only)
        except StorageError as e:
            log.warning("cannot clean %s now: %s", name, e)
            return
        if ticket is None:
            return
        with self._lock:
            if self._stopping.is_set():
                return
            if self._pool is None:
                self._pool = cf.ProcessPoolExecutor(
                    max_workers=self.config.threads, initializer=_worker_init,
                    mp_context=multiprocessing.get_context("spawn"))
            future = self._pool.submit(cleaning.run_clean, ticket.job)
        self._in_progress[name] = (ticket, future)

    def _collect(self, timeout: float) -> None:
        """Swap in the cleanings that finished (waiting up to ``timeout`` for one)."""
        if not self._in_progress:
            return
        futures = {fut: name for name, (_, fut) in self._in_progress.items()}
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        if not done and self._wake.is_set():
            self._wake.clear()
        for fut in done:
            name = futures[fut]
            ticket, _ = self._in_progress.pop(name)
            with self._lock:
                plog = self._logs.get(name)
            self._finish(name, plog, ticket, fut)

    def _finish(self, name: str, plog: PartitionLog | None, ticket: CleanTicket,
                fut: cf.Future[cleaning.CleanResult]) -> None:
        directory = ticket.job.directory
        try:
            result = fut.result()
        except BrokenProcessPool:
            cleaning.discard_cleaned(Path(directory))
            if self._stopping.is_set():
                return
            # The worker died (killed, out of memory): start a new one next time.
            log.error("the log cleaner's worker died while cleaning %s; retrying later", name)
            self.stats.failures += 1
            self._stop_pool()
            return
        except (FileNotFoundError, cf.CancelledError):
            return  # a segment went away under it (retention, deletion): try again later
        except Exception as e:
            self.stats.failures += 1
            self.stats.uncleanable[name] = str(e)
            log.error("cleaning %s failed, it stays uncompacted until the broker restarts: %s",
                      name, e)
            cleaning.discard_cleaned(Path(directory))
            return
        if plog is None or plog is not self._logs.get(name):
            cleaning.discard_cleaned(Path(directory))
            return
        swapped = plog.swap_cleaned(ticket, result)
        s = self.stats
        s.cleanings += 1
        s.bytes_read += result.bytes_read
        s.bytes_written += result.bytes_written
        s.records_removed += result.records_removed
        s.last_clean_seconds = result.elapsed_s
        s.max_clean_seconds = max(s.max_clean_seconds, result.elapsed_s)
        # Kafka's cleaner-recopy-percent: bytes written over bytes read by the copy pass.
        s.last_recopy_ratio = (result.bytes_written / result.copy_bytes_read
                               if result.copy_bytes_read else 0.0)
        log.info("cleaned %s up to offset %d: %d of %d groups swapped, %d records removed, "
                 "%.1f MB read, %.1f MB written in %.2f s", name, result.end_offset, swapped,
                 len(result.groups), result.records_removed, result.bytes_read / 1e6,
                 result.bytes_written / 1e6, result.elapsed_s)

"""What every client of the workload shares: the run's settings, the hooks it records
history events through, the key-to-partition map, and the thread it runs on."""

from __future__ import annotations

import logging
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from odradek.broker.verify.history import Event

Record = Callable[[Event], None]
Clock = Callable[[], float]
Log = Callable[[str], None]

# librdkafka's own log lines (disconnects during faults, mostly): the runner sends them to a
# file in the run directory rather than the terminal.
CLIENT_LOG = logging.getLogger("odradek.verify.clients")


@dataclass
class WorkloadConfig:
    bootstrap: str
    topic: str
    partitions: int
    acks: str = "all"  # "all" or "1"
    rate: float = 150.0  # messages per second over all producers
    keys_per_partition: int = 3
    group: str = "odradek-verify"
    reader_group: str = "odradek-verify-readers"  # librdkafka needs one; never committed
    client_debug: str = ""  # librdkafka `debug` contexts for the producers (e.g. "eos,msg")


def partition_of(key: str, partitions: int) -> int:
    """A key's partition: a stable hash (CRC-32 of its UTF-8 bytes) modulo the count."""
    return zlib.crc32(key.encode()) % partitions


def make_keys(partitions: int, per_partition: int) -> list[str]:
    """Keys ``k0, k1, ...`` until every partition has ``per_partition`` of them."""
    keys: list[str] = []
    counts = Counter[int]()
    i = 0
    while min((counts[p] for p in range(partitions)), default=0) < per_partition:
        key = f"k{i}"
        i += 1
        p = partition_of(key, partitions)
        if counts[p] < per_partition:
            counts[p] += 1
            keys.append(key)
    return keys


class ClientThread:
    """A client that runs on a thread of its own (``_run``) until asked to stop."""

    def __init__(self, name: str, cfg: WorkloadConfig, record: Record, clock: Clock,
                 log: Log, thread_name: str) -> None:
        self.name = name
        self.cfg = cfg
        self.record = record
        self.clock = clock
        self.log = log
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to finish; ``join`` waits for it."""
        self._stopping.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

"""The client side of a verification run: producers, consumers, readers and the final read,
all through independent client libraries (confluent-kafka/librdkafka and kafka-python),
recording every step into the run's history (history.py).

==============  ==========================================================================
module          holds
==============  ==========================================================================
clients.py      the run's client settings, the history hooks, the key-to-partition map
producers.py    the producers (which ones run, and what a definite failure is)
consumers.py    group consumers and manually assigned readers
topic_admin.py  the topic: create it, its leaders and ISR, healthy or not, its offsets
final_read.py   the read of every partition once the cluster has healed
==============  ==========================================================================

This module starts and stops them together (``Workload``); the runner (runner.py) creates
the topic, waits for it to be healthy and does the final read.
"""

from __future__ import annotations

import time
from typing import Any

from odradek.broker.verify.clients import Clock, Log, Record, WorkloadConfig
from odradek.broker.verify.consumers import (
    ConfluentGroupConsumer,
    ConfluentManualReader,
    KafkaPythonGroupConsumer,
    KafkaPythonManualReader,
    Reader,
)
from odradek.broker.verify.producers import (
    ConfluentProducer,
    KafkaPythonProducer,
    Producer,
    stop_all,
)


class Workload:
    """Producers, group consumers and manual readers against one topic."""

    def __init__(self, cfg: WorkloadConfig, record: Record, clock: Clock,
                 log: Log = print) -> None:
        self.cfg = cfg
        self.record = record
        self.clock = clock
        self.log = log
        specs: list[tuple[str, type[Producer], bool]]
        if cfg.acks == "all":
            specs = [("ckidem", ConfluentProducer, True), ("kpidem", KafkaPythonProducer, True),
                     ("kpplain", KafkaPythonProducer, False)]
        else:
            specs = [("ckplain", ConfluentProducer, False),
                     ("kpplain", KafkaPythonProducer, False)]
        rate = cfg.rate / len(specs)
        self.producers: list[Producer] = [cls(name, cfg, record, clock, rate, idempotent=idem,
                                              log=log) for name, cls, idem in specs]
        self.readers: list[Reader] = [
            ConfluentGroupConsumer("ckgroup", cfg, record, clock, log),
            KafkaPythonGroupConsumer("kpgroup", cfg, record, clock, log),
            ConfluentManualReader("ckreader", cfg, record, clock, log),
            KafkaPythonManualReader("kpreader", cfg, record, clock, log),
        ]

    def start(self) -> None:
        for r in self.readers:
            r.start()
        for p in self.producers:
            p.start()

    def stop_producers(self, drain_timeout: float = 20.0) -> None:
        stop_all(self.producers, drain_timeout)

    def catch_up(self, ends: dict[int, tuple[int, int]], timeout: float) -> bool:
        """Wait until the manual readers have polled up to ``ends``' high watermarks."""
        deadline = time.monotonic() + timeout
        manual = [r for r in self.readers if r.manual]
        while time.monotonic() < deadline:
            if all(r.positions.get(p, 0) >= hw for r in manual
                   for p, (_, hw) in ends.items() if hw > 0):
                return True
            time.sleep(0.5)
        return False

    def stop_readers(self) -> None:
        for r in self.readers:
            r.request_stop()
        for r in self.readers:
            r.stop()

    def abandon(self) -> None:
        """Stop every client and wait for its thread to close it, without draining (cleanup
        after an error; quick once the run stopped them in order). Clients must be gone
        before the cluster's network is: a client left running would keep dialling the
        nodes' addresses after their routes are removed."""
        for p in self.producers:
            p.drain_timeout = 0.0
        for c in [*self.producers, *self.readers]:
            c.request_stop()
        for p in self.producers:
            p.stop(drain_timeout=0.0)
        for r in self.readers:
            r.stop()

    def summary(self) -> dict[str, Any]:
        return {
            "producers": {p.name: {"library": p.library, "idempotent": p.idempotent,
                                   "sent": p.stats.sent, "acked": p.stats.acked,
                                   "failed": p.stats.failed, "definite": p.stats.definite,
                                   "restarts": p.stats.restarts,
                                   "errors": dict(p.stats.errors.most_common(8))}
                          for p in self.producers},
            "readers": {r.name: {"polled": r.polled, "restarts": r.restarts,
                                 "errors": dict(r.errors.most_common(8))}
                        for r in self.readers},
        }

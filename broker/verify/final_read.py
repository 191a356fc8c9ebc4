"""The final read of a run: once the cluster has healed, every partition from its log start
to its high watermark, recorded as one ``FinalRead`` each, which the checker judges loss
and skipped reads against."""

from __future__ import annotations

import time
from typing import Any

from odradek.broker.verify.clients import CLIENT_LOG, Clock, Record
from odradek.broker.verify.history import FinalRead


def final_read(bootstrap: str, topic: str, partitions: int, record: Record, clock: Clock,
               group: str, timeout: float = 90.0) -> list[str]:
    """Read every partition from its log start to its high watermark (manual assignment),
    retrying until the read reaches the high watermark; record one FinalRead each. Returns
    the partitions it could not read completely (as messages)."""
    from confluent_kafka import Consumer, TopicPartition

    problems: list[str] = []
    deadline = time.monotonic() + timeout
    for p in range(partitions):
        done = False
        last = ""
        while not done and time.monotonic() < deadline:
            c = Consumer({"bootstrap.servers": bootstrap, "logger": CLIENT_LOG,
                          "group.id": group,
                          "enable.auto.commit": False, "enable.partition.eof": True,
                          "auto.offset.reset": "error"})
            try:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                 cached=False)
                records: list[list[Any]] = []
                if hi > lo:
                    c.assign([TopicPartition(topic, p, lo)])
                    next_offset = lo
                    stall = time.monotonic() + 20
                    while next_offset < hi and time.monotonic() < min(stall, deadline):
                        msg = c.poll(0.5)
                        if msg is None:
                            continue
                        err = msg.error()
                        if err is not None:
                            last = err.name()
                            continue
                        offset, value = msg.offset(), msg.value()
                        assert offset is not None, "a message without an error has an offset"
                        records.append([offset, value.decode(errors="replace")
                                        if value is not None else None])
                        next_offset = offset + 1
                        stall = time.monotonic() + 20
                    if next_offset < hi:
                        last = f"reached offset {next_offset} of high watermark {hi} ({last})"
                        continue
                record(FinalRead(clock(), topic, p, records, hi, lo))
                done = True
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                last = f"{type(e).__name__}: {e}"
                time.sleep(1)
            finally:
                c.close()
        if not done:
            problems.append(f"final read of partition {p} incomplete: {last}")
    return problems

"""What a broker's fetch path serves, without a client's per-record work in the way.

confluent-kafka's consumer makes a Python ``Message`` per record, and at 1 KiB records that
costs more than the broker spends serving them (the ``consume`` figure is about the same
for Odradek and Kafka: it measures the client). Here each process speaks the Kafka protocol
itself: Fetch v4 (the oldest version Kafka 4 serves, and the simplest to parse) for its
share of the partitions from offset 0 with large ``max_bytes``, each answer read with
``recv_into`` into one reused buffer. Records are not decoded: only the batch headers are
walked (base offset, length, last offset delta) to find the next offset of each partition,
so a partial batch at the end of an answer (Kafka cuts at ``max_bytes`` mid-batch) is
fetched again, and the bytes counted are those of whole batches, each once.

Run on its own against a running broker::

    python -m tests.bench.raw_fetch --bootstrap 127.0.0.1:9092 --topic bench --partitions 4
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import struct
import time
from typing import Any

FETCH, LIST_OFFSETS = 1, 2
FETCH_VERSION = 4
LIST_OFFSETS_VERSION = 1
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_BATCH_HEAD = struct.Struct(">qi")  # base offset, batch length (after these 12 bytes)
_LAST_DELTA_POS = 23
_CLIENT = b"raw-fetch"


def _string(s: bytes) -> bytes:
    return _I16.pack(len(s)) + s


def _request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    head = struct.pack(">hhi", api_key, version, correlation_id) + _string(_CLIENT)
    return _I32.pack(len(head) + len(body)) + head + body


class Conn:
    """One blocking connection; answers land in one buffer reused for every answer."""

    def __init__(self, address: str, buffer_bytes: int) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(buffer_bytes)
        self.view = memoryview(self.buf)
        self.correlation = 0

    def call(self, api_key: int, version: int, body: bytes) -> memoryview:
        self.correlation += 1
        self.sock.sendall(_request(api_key, version, self.correlation, body))
        self._fill(0, 4)
        (size,) = _I32.unpack_from(self.buf, 0)
        if size > len(self.buf):
            self.buf = bytearray(size)
            self.view = memoryview(self.buf)
        self._fill(0, size)
        (correlation,) = _I32.unpack_from(self.buf, 0)
        if correlation != self.correlation:
            raise RuntimeError(f"answer {correlation} to request {self.correlation}")
        return self.view[4:size]  # the body, after the correlation id

    def _fill(self, start: int, n: int) -> None:
        got = 0
        while got < n:
            k = self.sock.recv_into(self.view[start + got:start + n])
            if not k:
                raise ConnectionError("broker closed the connection")
            got += k

    def close(self) -> None:
        self.sock.close()


def high_watermarks(conn: Conn, topic: str, partitions: list[int]) -> dict[int, int]:
    """ListOffsets v1, LATEST (-1) for each partition."""
    parts = b"".join(struct.pack(">iq", p, -1) for p in partitions)
    body = (_I32.pack(-1) + _I32.pack(1) + _string(topic.encode())
            + _I32.pack(len(partitions)) + parts)
    r = conn.call(LIST_OFFSETS, LIST_OFFSETS_VERSION, body)
    pos = 4  # topics array length
    (n_topics,) = _I32.unpack_from(r, 0)
    ends: dict[int, int] = {}
    for _ in range(n_topics):
        (name_len,) = _I16.unpack_from(r, pos)
        pos += 2 + name_len
        (n_parts,) = _I32.unpack_from(r, pos)
        pos += 4
        for _ in range(n_parts):
            p, err, _ts, offset = struct.unpack_from(">ihqq", r, pos)
            pos += 22
            if err:
                raise RuntimeError(f"ListOffsets error {err} for partition {p}")
            ends[p] = offset
    return ends


def _fetch_body(topic: bytes, offsets: dict[int, int], max_bytes: int,
                partition_max_bytes: int) -> bytes:
    parts = b"".join(struct.pack(">iqi", p, o, partition_max_bytes)
                     for p, o in offsets.items())
    return (struct.pack(">iiiib", -1, 500, 1, max_bytes, 0)  # replica, wait, min, max, isolation
            + _I32.pack(1) + _string(topic) + _I32.pack(len(offsets)) + parts)


def walk_batches(records: memoryview) -> tuple[int, int]:
    """(next offset after the last whole batch or -1, bytes of whole batches)."""
    pos, n, nxt = 0, len(records), -1
    while pos + 12 <= n:
        base, length = _BATCH_HEAD.unpack_from(records, pos)
        end = pos + 12 + length
        if end > n or pos + _LAST_DELTA_POS + 4 > n:
            break  # a partial batch: fetched again from its start next time
        nxt = base + _I32.unpack_from(records, pos + _LAST_DELTA_POS)[0] + 1
        pos = end
    return nxt, pos


def parse_fetch(r: memoryview, offsets: dict[int, int]) -> int:
    """Advance ``offsets`` past the whole batches of a Fetch v4 answer; bytes of them."""
    total = 0
    pos = 4  # throttle_time_ms
    (n_topics,) = _I32.unpack_from(r, pos)
    pos += 4
    for _ in range(n_topics):
        (name_len,) = _I16.unpack_from(r, pos)
        pos += 2 + name_len
        (n_parts,) = _I32.unpack_from(r, pos)
        pos += 4
        for _ in range(n_parts):
            p, err = struct.unpack_from(">ih", r, pos)
            pos += 6 + 16  # high watermark, last stable offset
            (n_aborted,) = _I32.unpack_from(r, pos)
            pos += 4 + max(0, n_aborted) * 16
            (size,) = _I32.unpack_from(r, pos)
            pos += 4
            if err:
                raise RuntimeError(f"Fetch error {err} for partition {p}")
            if size > 0:
                nxt, whole = walk_batches(r[pos:pos + size])
                if nxt > offsets[p]:
                    offsets[p] = nxt
                total += whole
                pos += size
    return total


def fetch_all(address: str, topic: str, partitions: list[int], max_bytes: int,
              partition_max_bytes: int, deadline_s: float = 120.0) -> tuple[int, float, int]:
    """Fetch ``partitions`` from offset 0 to their high watermarks as of the start:
    (record bytes, seconds, fetches)."""
    conn = Conn(address, max_bytes + (1 << 20))
    try:
        ends = {p: e for p, e in high_watermarks(conn, topic, partitions).items() if e > 0}
        offsets = dict.fromkeys(ends, 0)
        name = topic.encode()
        nbytes = fetches = 0
        start = time.perf_counter()
        while offsets:
            if time.perf_counter() - start > deadline_s:
                raise TimeoutError(f"offsets {offsets} not at {ends} after {deadline_s} s")
            r = conn.call(FETCH, FETCH_VERSION,
                          _fetch_body(name, offsets, max_bytes, partition_max_bytes))
            nbytes += parse_fetch(r, offsets)
            fetches += 1
            for p in [p for p, o in offsets.items() if o >= ends[p]]:
                del offsets[p]
        return nbytes, time.perf_counter() - start, fetches
    finally:
        conn.close()


def _worker(address: str, topic: str, partitions: list[int], max_bytes: int,
            partition_max_bytes: int, go: Any, q: Any) -> None:
    go.wait()
    q.put(fetch_all(address, topic, partitions, max_bytes, partition_max_bytes))


def raw_fetch_mb_s(address: str, topic: str, partitions: int, procs: int,
                   max_bytes: int = 50 << 20, partition_max_bytes: int = 16 << 20
                   ) -> tuple[float, int, int]:
    """``procs`` processes each fetch their share of the partitions from offset 0, all
    starting together: (MB/s of record bytes over the slowest process's time, bytes,
    fetches)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    go = ctx.Event()
    shares = [list(range(i, partitions, procs)) for i in range(procs)]
    ps = [ctx.Process(target=_worker, args=(address, topic, s, max_bytes,
                                            partition_max_bytes, go, q))
          for s in shares if s]
    try:
        for p in ps:
            p.start()
        time.sleep(0.5)  # let every process import before the clock starts
        go.set()
        results = [q.get(timeout=180) for _ in ps]
    finally:
        for p in ps:
            p.join(5)
            if p.is_alive():
                p.kill()
    nbytes = sum(r[0] for r in results)
    return nbytes / max(r[1] for r in results) / 1e6, nbytes, sum(r[2] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="bench")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    for _ in range(args.passes):
        mb_s, nbytes, fetches = raw_fetch_mb_s(args.bootstrap, args.topic, args.partitions,
                                               args.procs)
        print(f"{mb_s:.1f} MB/s ({nbytes / 1e6:.0f} MB in {fetches} fetches)")


if __name__ == "__main__":
    main()

"""Network fuzzer: hostile traffic against a live 3-node cluster, then check it is whole.

    python -m tests.fuzz.network_fuzzer --duration 300 [--seed N] [--connections 50]
        [--idle 2000] [--out DIR] [--bootstrap h:p,h:p,h:p]

Unless ``--bootstrap`` is given it starts its own cluster (three combined-mode nodes, via
tests/integration/harness.py, in a temporary directory). For ``--duration`` seconds an
asyncio load generator then sends, over many concurrent connections:

* mutated real request frames (bit flips, 0xff / 0x7fffffff / varint overwrites, wrong size
  prefixes, random api key and version, truncation, splices of two frames, appended garbage,
  random bytes), several per connection, with valid requests interleaved and pipelined;
* size prefixes above ``socket.request.max.bytes``; prefixes just below it followed by a
  trickle of bytes; now and then a whole frame just below the limit;
* frames trickled one byte every 100-500 ms;
* thousands of idle connections, opened at the start and held;
* connections that send Metadata and Fetch requests and never read the answers;
* bystanders: one well-behaved client per node whose request latency is recorded.

For every frame the node must refuse (the same decoder the node runs says so), it measures
the time from the last byte sent until the node closed the connection or answered.
Afterwards it checks, and prints, the pass criteria: every node process alive; a real client
(confluent-kafka) creates a topic with replication factor 3, produces 100 acks=all records
and consumes them back; no node log holds a traceback or an ERROR line; each node's RSS grew
by less than 64 MiB from after start-up to the end (after closing every fuzz connection and
a settle); every bad frame was closed or answered within 1 s; the request budget and the
connection gauge went back to their baseline. Exit code 0 only when all hold.

Frame contents come from the seed corpus (tests/fuzz/corpus/seeds/, one frame per file, with
or without its size prefix) when it exists, plus requests built with the codec for every API
and version the node serves. Each worker draws from its own ``random.Random`` derived from
``--seed``, so a seed replays the same frames (the interleaving of connections is up to the
scheduler).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import random
import re
import resource
import shutil
import struct
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odradek.broker.kafka import codec
from odradek.broker.node import handler_table
from odradek.storage.records import Record, encode_batch
from tests.helpers import metric_sum, unique_name

# Real client frames (tests/fuzz/capture_seeds.py) and the decode fuzzer's regressions.
CORPUS_DIRS = tuple(Path(__file__).resolve().parent / "corpus" / d
                    for d in ("seeds", "regressions"))
SUPPORTED: dict[int, tuple[int, int]] = {
    k: (s.min_version, s.max_version) for k, s in handler_table().items()}

REACTION_BOUND_S = 1.0
RSS_GROWTH_BOUND = 64 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024  # socket.request.max.bytes' default
FUZZ_TOPIC = "fuzz-data"
FUZZ_GROUP = "fuzz-group"
# Valid requests that change the cluster's shape (create, delete, reconfigure topics,
# move partitions, unregister brokers, add or remove controller voters) or how it treats
# clients (client and connection quotas, feature levels): a mutation that happens to decode as one is not sent unless --side-effects,
# because it could delete the fuzzer's own topic, ask for two billion partitions, take a
# broker's leadership away or throttle the fuzzer's own connections, and the checks after
# the run would then measure that rather than the transport.
SIDE_EFFECT_APIS = frozenset({19, 20, 21, 33, 37, 43, 44, 45, 49, 57, 64, 80, 81})
# Requests a node answers at once (no long poll, no rebalance wait): the valid frames
# interleaved with mutated ones, so that a reaction time measures the bad frame only.
QUICK_APIS = frozenset({1, 2, 3, 9, 10, 15, 16, 18, 23, 32, 60})
# How long to wait for an answer to a mutated frame that decodes as a valid request (it may
# be a Fetch with a 24-day max_wait): not bounded, only reported.
VALID_WAIT_S = 5.0

_SIZE = struct.Struct(">i")
_LOG_FAILURE = re.compile(r"Traceback|\b(ERROR|CRITICAL)\b|memory allocation of|panicked at")
_PATTERNS = (b"\xff", b"\xff\xff", b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff",
             b"\x80\x00\x00\x00", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff\x0f",
             b"\x80\x80\x80\x80\x80\x01", b"\xfe\xff\xff\xff\x07", b"\x7f\xff")


# --- seeds -------------------------------------------------------------------------------


def _rich_request_data() -> dict[int, dict[str, Any]]:
    """Field values that make built requests look like a real client's (they name our
    topic and group), so mutations reach past the first empty array."""
    batch = encode_batch([Record(i, key=b"k%d" % i, value=b"fuzz" * 8) for i in range(3)])
    part = {"partition_index": 0, "partition": 0, "index": 0, "fetch_offset": 0,
            "partition_max_bytes": 65536, "timestamp": -1, "current_leader_epoch": -1,
            "leader_epoch": 0, "committed_offset": 0, "records": batch}
    topic = {"name": FUZZ_TOPIC, "topic": FUZZ_TOPIC, "partitions": [part],
             "partition_data": [part], "partition_indexes": [0]}
    return {
        0: {"acks": 1, "timeout": 1000, "topic_data": [topic]},
        1: {"replica_id": -1, "max_wait": 0, "min_bytes": 1, "max_bytes": 1 << 20,
            "session_epoch": -1, "topics": [topic]},
        2: {"replica_id": -1, "topics": [topic]},
        3: {"topics": [{"name": FUZZ_TOPIC}], "allow_auto_topic_creation": False},
        8: {"group_id": FUZZ_GROUP, "generation_id_or_member_epoch": -1, "member_id": "",
            "topics": [topic]},
        9: {"group_id": FUZZ_GROUP, "topics": [topic],
            "groups": [{"group_id": FUZZ_GROUP, "topics": [topic]}]},
        10: {"key": FUZZ_GROUP, "key_type": 0, "coordinator_keys": [FUZZ_GROUP]},
        11: {"group_id": FUZZ_GROUP, "session_timeout_ms": 10000,
             "rebalance_timeout_ms": 10000, "member_id": "", "protocol_type": "consumer",
             "protocols": [{"name": "range", "metadata": b"\0\1\0\0\0\0"}]},
        12: {"group_id": FUZZ_GROUP, "generation_id": 1, "member_id": "m"},
        13: {"group_id": FUZZ_GROUP, "member_id": "m", "members": [{"member_id": "m"}]},
        14: {"group_id": FUZZ_GROUP, "generation_id": 1, "member_id": "m",
             "assignments": [{"member_id": "m", "assignment": b"\0\1"}]},
        15: {"groups": [FUZZ_GROUP]},
        18: {"client_software_name": "netfuzz", "client_software_version": "1.0"},
        19: {"topics": [{"name": "fuzz-created", "num_partitions": 1,
                         "replication_factor": 1}], "timeout": 1000},
        20: {"topic_names": ["fuzz-created"], "topics": [{"name": "fuzz-created"}],
             "timeout": 1000},
        22: {"transactional_id": None, "transaction_timeout_ms": 60000, "producer_id": -1,
             "producer_epoch": -1},
        23: {"replica_id": -1, "topics": [topic]},
        32: {"resources": [{"resource_type": 2, "resource_name": FUZZ_TOPIC,
                            "configuration_keys": None}]},
        42: {"groups_names": [FUZZ_GROUP]},
        47: {"group_id": FUZZ_GROUP, "topics": [topic]},
    }


def built_seeds() -> list[bytes]:
    """One request frame (size prefix removed) for every API and version served."""
    rich = _rich_request_data()
    out = []
    for key, (lo, hi) in sorted(SUPPORTED.items()):
        for version in range(lo, hi + 1):
            body = None
            for data in (rich.get(key, {}), {}):
                try:
                    body = codec.build_request(key, version, data)
                    frame = codec.encode_request(body, 1, "netfuzz")
                    break
                except Exception:  # noqa: BLE001 - a field value this version cannot carry
                    body = None
            if body is not None:
                out.append(frame[4:])
    return out


def _split_frames(data: bytes) -> list[bytes] | None:
    """The frames of a byte stream of size-prefixed frames, or None if it is not one."""
    frames, pos = [], 0
    while pos + 4 <= len(data):
        (size,) = _SIZE.unpack_from(data, pos)
        if size < 8 or pos + 4 + size > len(data):
            return None
        frames.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return frames if pos == len(data) and frames else None


def corpus_seeds(directories: Sequence[Path] = CORPUS_DIRS) -> list[bytes]:
    """Frames of the seed corpus (tests/fuzz/corpus: each file the byte stream a client
    sent, size prefixes included, one frame or several); a file that is not such a stream
    is taken as one frame body. Notes (*.md) are not seeds."""
    paths = [p for d in directories if d.is_dir() for p in sorted(d.rglob("*"))
             if p.is_file() and p.suffix != ".md"]
    out = []
    for path in paths:
        data = path.read_bytes()
        frames = _split_frames(data)
        out += [f for f in (frames if frames is not None else [data]) if len(f) >= 8]
    return out


def api_name(api_key: int | None) -> str:
    from kio.schema.index import api_key_map

    return str(api_key_map.get(api_key, api_key)) if api_key is not None else "?"


def classify(body: bytes | None) -> tuple[str, int | None]:
    """What the node must do with this frame: ``close`` it, ``answer`` it (ApiVersions at an
    unknown version, KIP-511) or handle it as a ``valid`` request; and its api key."""
    if body is None:
        return "close", None
    try:
        req = codec.decode_request(body, SUPPORTED)
    except codec.UnsupportedVersion as e:
        return ("answer" if e.api_key == codec.API_VERSIONS_KEY else "close"), e.api_key
    except (codec.UnknownApiKey, codec.MalformedRequest):
        return "close", None
    return "valid", req.api_key


@dataclass
class SeedPool:
    frames: list[bytes]
    quick: list[bytes]  # valid frames of QUICK_APIS, answered at once
    small: list[bytes]  # short frames, for trickling
    warm: list[bytes]  # valid requests answered at once, Produce included
    from_corpus: int

    @classmethod
    def load(cls) -> SeedPool:
        corpus = corpus_seeds()
        built = built_seeds()
        frames = built + corpus
        quick, warm = [], []
        for f in built:
            verdict, key = classify(f)
            if verdict == "valid" and key in QUICK_APIS | {0}:
                warm.append(f)
                if key in QUICK_APIS:
                    quick.append(f)
        small = [f for f in frames if len(f) <= 48] or sorted(frames, key=len)[:20]
        return cls(frames, quick, small, warm, len(corpus))


# --- mutations ---------------------------------------------------------------------------


def _rand_bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def with_correlation_id(body: bytes, cid: int) -> bytes:
    return body[:4] + _SIZE.pack(cid) + body[8:]


def mutate_body(body: bytes, rng: random.Random, seeds: Sequence[bytes]) -> tuple[str, bytes]:
    """One mutation of a frame body (the size prefix is added by the caller)."""
    kind = rng.choices(
        ("bitflip", "overwrite", "header", "truncate", "splice", "append", "random", "multi"),
        weights=(20, 20, 10, 12, 10, 8, 5, 15))[0]
    b = bytearray(body)
    if kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(b))
            b[pos] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        for _ in range(rng.randint(1, 3)):
            pat = rng.choice(_PATTERNS)
            pos = rng.randrange(len(b))
            b[pos:pos + len(pat)] = pat
    elif kind == "header":
        key = rng.choice([rng.choice(list(SUPPORTED)), rng.randint(-32768, 32767), -1, 32767,
                          rng.randint(0, 80)])
        lo, hi = SUPPORTED.get(key, (0, 0))
        version = rng.choice([rng.randint(-1, 20), lo - 1, hi + 1, rng.randint(lo, hi),
                              32767, -32768])
        b[:4] = struct.pack(">hh", key, version)
    elif kind == "truncate":
        del b[rng.randrange(len(b)):]
    elif kind == "splice":
        other = rng.choice(seeds)
        b = b[:rng.randrange(len(b) + 1)] + other[rng.randrange(len(other) + 1):]
    elif kind == "append":
        b += rng.choice(_PATTERNS) * rng.randint(1, 8) + _rand_bytes(rng, rng.randint(0, 64))
    elif kind == "random":
        keep = rng.choice((0, 4, 8))  # sometimes a real header, so decoding gets further
        b = b[:keep] + _rand_bytes(rng, rng.randint(8, 256))
    else:  # several small mutations stacked
        for _ in range(rng.randint(2, 4)):
            _, b2 = mutate_body(bytes(b) or body, rng, seeds)
            b = bytearray(b2)
        return kind, bytes(b)
    return kind, bytes(b)


@dataclass(frozen=True, slots=True)
class BadFrame:
    kind: str
    wire: bytes  # what is sent, size prefix(es) included
    first: bytes | None  # the first frame the node will cut from it (None: refused by size)
    breaks_framing: bool  # bytes after the first frame do not start a real frame


def make_bad_frame(rng: random.Random, seeds: SeedPool, max_request: int) -> BadFrame:
    base = rng.choice(seeds.frames)
    roll = rng.random()
    if roll < 0.08:  # a size prefix that disagrees with the frame
        choice = rng.randrange(4)
        if choice == 0 and len(base) > 8:  # too small: the rest becomes the next "frame"
            size = rng.randint(8, len(base) - 1)
            return BadFrame("size_short", _SIZE.pack(size) + base, base[:size], True)
        if choice == 1:  # too large: the node reads on into garbage (sent, so it completes)
            pad = _rand_bytes(rng, rng.choice((1, 3, 16, rng.randint(1, 4096))))
            body = base + pad
            return BadFrame("size_long", _SIZE.pack(len(body)) + body, body, False)
        size = rng.choice((0, 1, 7, -1, -8, -(2**31)))
        return BadFrame("size_invalid", _SIZE.pack(size) + base, None, True)
    if roll < 0.12:  # above socket.request.max.bytes: refused on the prefix alone
        size = rng.choice((max_request + 1, max_request + rng.randint(2, 1 << 20), 2**31 - 1,
                           rng.randint(max_request + 1, 2**31 - 1)))
        return BadFrame("oversize", _SIZE.pack(size) + base[:rng.randint(0, 16)], None, True)
    kind, body = mutate_body(base, rng, seeds.frames)
    if len(body) < 8:
        return BadFrame(kind, _SIZE.pack(len(body)) + body, None, True)
    return BadFrame(kind, _SIZE.pack(len(body)) + body, body, False)


# --- statistics --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def summary(values: Sequence[float]) -> dict[str, float | int]:
    return {"count": len(values), "max_s": round(max(values, default=0.0), 4),
            "p99_s": round(percentile(values, 0.99), 4),
            "p50_s": round(percentile(values, 0.50), 4)}


@dataclass
class Stats:
    sent: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    reaction: list[float] = field(default_factory=list)  # frames the node must refuse
    reaction_by_kind: dict[str, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list))
    valid_latency: list[float] = field(default_factory=list)  # interleaved valid requests
    mutated_valid_latency: list[float] = field(default_factory=list)
    bystander_latency: list[float] = field(default_factory=list)
    bystander_failures: int = 0
    connections_opened: int = 0
    connect_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    closes_observed: int = 0  # connections the node closed
    idle_open: int = 0
    idle_closed_by_node: int = 0
    nonreader_requests: int = 0
    slow: list[dict[str, Any]] = field(default_factory=list)  # over the bound, with the frame
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    skipped_side_effects: int = 0
    valid_by_api: collections.Counter[str] = field(default_factory=collections.Counter)
    loop_lag: float = 0.0  # the fuzzer's own event loop, worst delay seen
    # last frames sent to each node: what to look at if one dies
    recent: dict[int, collections.deque[tuple[float, str, str]]] = field(
        default_factory=lambda: collections.defaultdict(lambda: collections.deque(maxlen=40)))

    def record_reaction(self, kind: str, latency: float, frame: BadFrame, node: int,
                        outcome: str) -> None:
        self.reaction.append(latency)
        self.reaction_by_kind[kind].append(latency)
        if latency > REACTION_BOUND_S and len(self.slow) < 50:
            self.slow.append({"kind": kind, "node": node, "outcome": outcome,
                              "latency_s": round(latency, 3), "frame": frame.wire[:512].hex()})

    def anomaly(self, what: str, **info: Any) -> None:
        self.outcomes[f"anomaly:{what}"] += 1
        if len(self.anomalies) < 50:
            self.anomalies.append({"what": what, **info})


# --- connections -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    node_id: int
    host: str
    port: int


class Conn:
    """One client connection: send frames, read answers in order, notice the close."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.owed = 0  # answers owed for valid frames sent and not read yet
        self.closed_by_node = False

    @classmethod
    async def open(cls, target: Target, stats: Stats) -> Conn | None:
        try:
            async with asyncio.timeout(10):
                r, w = await asyncio.open_connection(target.host, target.port, limit=1 << 22)
        except (OSError, TimeoutError) as e:
            stats.connect_errors[type(e).__name__] += 1
            return None
        stats.connections_opened += 1
        return cls(r, w)

    async def send(self, data: bytes | memoryview) -> bool:
        try:
            self.writer.write(data)
            await self.writer.drain()
            return True
        except (ConnectionError, OSError):
            self.closed_by_node = True
            return False

    async def react(self, timeout: float) -> tuple[str, float]:
        """Wait for the answer to the last frame sent (after the ``owed`` ones) or for the
        close: ("answered" | "closed" | "timeout", seconds waited)."""
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    (n,) = _SIZE.unpack(await self.reader.readexactly(4))
                    await self.reader.readexactly(n)
                    if self.owed:
                        self.owed -= 1
                        continue
                    return "answered", time.monotonic() - t0
        except TimeoutError:  # first: it is an OSError too
            return "timeout", time.monotonic() - t0
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            self.closed_by_node = True
            return "closed", time.monotonic() - t0

    def abort(self) -> None:
        # abort, not close: a fuzz connection never waits for its buffer to drain
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


# --- the load generator ------------------------------------------------------------------


@dataclass
class Options:
    duration: float
    seed: int
    connections: int = 50
    idle: int = 2000
    trickles: int = 6
    nonreaders: int = 3
    big_frame_interval: float = 30.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    side_effects: bool = False


class Fuzzer:
    def __init__(self, targets: Sequence[Target], opts: Options, seeds: SeedPool) -> None:
        self.targets = list(targets)
        self.opts = opts
        self.seeds = seeds
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.cids = iter(range(1, 2**31))
        # near-max trickles reserve their declared size of the node's request budget; one
        # per node at a time leaves room for everything else under the default budget
        self.near_max_busy: set[int] = set()
        self.idle_conns: list[Conn] = []
        self.open_conns: set[Conn] = set()

    def rng(self, stream: str, index: int) -> random.Random:
        return random.Random(f"{self.opts.seed}:{stream}:{index}")

    async def _open(self, target: Target) -> Conn | None:
        c = await Conn.open(target, self.stats)
        if c is not None:
            self.open_conns.add(c)
        return c

    def _done(self, c: Conn) -> None:
        if c.closed_by_node:
            self.stats.closes_observed += 1
        c.abort()
        self.open_conns.discard(c)

    def _valid(self, rng: random.Random) -> bytes:
        body = with_correlation_id(rng.choice(self.seeds.quick), next(self.cids))
        return _SIZE.pack(len(body)) + body

    # mutated frames, several per connection, valid ones interleaved
    async def mutation_worker(self, index: int) -> None:
        rng = self.rng("mutate", index)
        while not self.stop.is_set():
            target = rng.choice(self.targets)
            c = await self._open(target)
            if c is None:
                await asyncio.sleep(0.1)
                continue
            try:
                await self._mutation_session(c, target, rng)
            finally:
                self._done(c)

    async def _mutation_session(self, c: Conn, target: Target, rng: random.Random) -> None:
        st = self.stats
        for _ in range(rng.randint(1, 8)):
            if self.stop.is_set():
                return
            if rng.random() < 0.3:
                st.sent["valid"] += 1
                if not await c.send(self._valid(rng)):
                    st.anomaly("valid request refused by a closed connection", node=target.node_id)
                    return
                outcome, waited = await c.react(VALID_WAIT_S)
                if outcome != "answered":
                    st.anomaly(f"valid request {outcome}", node=target.node_id)
                    return
                st.valid_latency.append(waited)
                continue
            bad = make_bad_frame(rng, self.seeds, self.opts.max_request_bytes)
            expect, api_key = classify(bad.first)
            if expect == "valid" and api_key in SIDE_EFFECT_APIS and not self.opts.side_effects:
                st.skipped_side_effects += 1
                continue
            wire = bad.wire
            if rng.random() < 0.25:  # pipelined behind a valid request in the same write
                wire = self._valid(rng) + wire
                c.owed += 1
                st.sent["valid"] += 1
                st.sent["pipelined"] += 1
            st.sent[bad.kind] += 1
            st.recent[target.node_id].append((time.time(), bad.kind, bad.wire[:256].hex()))
            if not await c.send(wire):
                # the node closed on an earlier frame while we were writing: the reaction
                # to that one was measured already
                st.outcomes[f"{expect}:closed_during_send"] += 1
                return
            outcome, waited = await c.react(VALID_WAIT_S if expect == "valid"
                                            else 10 * REACTION_BOUND_S)
            st.outcomes[f"{expect}:{outcome}"] += 1
            if expect == "valid":
                # which APIs go unanswered for long: a long poll or a join may wait, a
                # Produce with acks=0 is never answered; anything else would be a bug
                st.valid_by_api[f"{api_name(api_key)}:{outcome}"] += 1
                if outcome == "answered":
                    st.mutated_valid_latency.append(waited)
                if outcome != "answered" or bad.breaks_framing:
                    return
                continue
            st.record_reaction(bad.kind, waited, bad, target.node_id, outcome)
            if outcome == "timeout":
                st.anomaly(f"no reaction to a frame expected to {expect}", kind=bad.kind,
                           node=target.node_id, frame=bad.wire[:256].hex())
                return
            if expect == "close" and outcome == "answered":
                st.anomaly("a frame that should be refused was answered", kind=bad.kind,
                           node=target.node_id, frame=bad.wire[:256].hex())
            if outcome == "closed" or bad.breaks_framing:
                return

    # one byte every 100-500 ms
    async def trickle_worker(self, index: int) -> None:
        rng = self.rng("trickle", index)
        while not self.stop.is_set():
            target = rng.choice(self.targets)
            roll = rng.random()
            near_max = roll < 0.2 and target.node_id not in self.near_max_busy
            if near_max:  # taken before the first await, so no other worker takes it too
                self.near_max_busy.add(target.node_id)
            try:
                c = await self._open(target)
                if c is None:
                    await asyncio.sleep(0.5)
                    continue
                try:
                    if near_max:
                        await self._trickle_near_max(c, target, rng)
                    else:
                        await self._trickle_frame(c, target, rng, valid=roll > 0.8)
                finally:
                    self._done(c)
            finally:
                if near_max:
                    self.near_max_busy.discard(target.node_id)

    async def _trickle(self, c: Conn, data: bytes, rng: random.Random) -> bool:
        for i in range(len(data)):
            if self.stop.is_set() or not await c.send(data[i:i + 1]):
                return False
            if i == len(data) - 1:
                break  # what comes now is the reaction, measured by the caller
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            # a node that closes early (a bad prefix) is noticed here; an answer is left
            # in the buffer for the caller
            if c.reader.at_eof():
                c.closed_by_node = True
                return False
        return True

    async def _trickle_frame(self, c: Conn, target: Target, rng: random.Random,
                             valid: bool) -> None:
        st = self.stats
        if valid:
            body = with_correlation_id(rng.choice([f for f in self.seeds.quick if len(f) <= 48]
                                                  or self.seeds.quick), next(self.cids))
            bad = BadFrame("trickle_valid", _SIZE.pack(len(body)) + body, body, False)
        else:
            base = rng.choice(self.seeds.small)
            kind, body = mutate_body(base, rng, self.seeds.small)
            body = body[:64]
            bad = BadFrame("trickle_" + kind, _SIZE.pack(len(body)) + body,
                           body if len(body) >= 8 else None, False)
        expect, _ = classify(bad.first)
        st.sent[bad.kind] += 1
        st.recent[target.node_id].append((time.time(), bad.kind, bad.wire.hex()))
        if not await self._trickle(c, bad.wire, rng):
            if c.closed_by_node:
                st.outcomes[f"trickle:{expect}:closed_early"] += 1
            return
        outcome, waited = await c.react(VALID_WAIT_S if expect == "valid"
                                        else 10 * REACTION_BOUND_S)
        st.outcomes[f"trickle:{expect}:{outcome}"] += 1
        if expect == "valid":
            if outcome != "answered":
                st.anomaly(f"trickled valid request {outcome}", node=target.node_id)
            else:
                st.valid_latency.append(waited)
            return
        st.record_reaction(bad.kind, waited, bad, target.node_id, outcome)

    async def _trickle_near_max(self, c: Conn, target: Target, rng: random.Random) -> None:
        """A size prefix just below socket.request.max.bytes, then a trickle: the node holds
        a reservation of that size but must not allocate it, nor stop serving others."""
        st = self.stats
        size = self.opts.max_request_bytes - rng.randint(0, 1000)
        st.sent["near_max_trickle"] += 1
        head = _SIZE.pack(size) + struct.pack(">hhi", 3, 12, next(self.cids))
        deadline = time.monotonic() + rng.uniform(10, 30)
        if not await c.send(head):
            st.anomaly("near-max prefix refused", node=target.node_id)
            return
        while time.monotonic() < deadline and not self.stop.is_set():
            if not await self._trickle(c, _rand_bytes(rng, 4), rng):
                break
        if c.closed_by_node:
            st.anomaly("node closed a trickling near-max frame", node=target.node_id)

    # a whole frame just below socket.request.max.bytes, now and then
    async def big_frame_worker(self) -> None:
        rng = self.rng("big", 0)
        st = self.stats
        size = self.opts.max_request_bytes - rng.randint(1, 4096)
        # a Metadata v12 header, then garbage where the topics array should be; built once,
        # off the event loop (100 MiB of bytes would stall every measurement for a while)
        header = struct.pack(">ihhih", size, 3, 12, 1, -1) + b"\0"
        filler = _rand_bytes(rng, 1 << 16)
        wire = await asyncio.to_thread(
            lambda: header + (filler * (size // len(filler) + 1))[:size + 4 - len(header)])
        bad = BadFrame("near_max_full", b"", None, False)
        i = 0
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.opts.big_frame_interval):
                    await self.stop.wait()
            if self.stop.is_set():
                return
            target = self.targets[i % len(self.targets)]
            i += 1
            c = await self._open(target)
            if c is None:
                continue
            try:
                st.sent[bad.kind] += 1
                st.recent[target.node_id].append((time.time(), bad.kind, wire[:64].hex()))
                view = memoryview(wire)
                sent = True
                for off in range(0, len(wire), 1 << 20):  # chunks keep the loop responsive
                    if self.stop.is_set() or not await c.send(view[off:off + (1 << 20)]):
                        sent = False
                        break
                if not sent:
                    st.outcomes["near_max_full:not_sent"] += 1
                    continue
                outcome, waited = await c.react(10 * REACTION_BOUND_S)
                st.outcomes[f"near_max_full:{outcome}"] += 1
                st.record_reaction(bad.kind, waited, bad, target.node_id, outcome)
            finally:
                self._done(c)

    # how late the fuzzer's own loop runs: reaction times include it
    async def lag_monitor(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            await asyncio.sleep(0.05)
            self.stats.loop_lag = max(self.stats.loop_lag, time.monotonic() - t0 - 0.05)

    # connections opened and held
    async def open_idle(self) -> None:
        rng = self.rng("idle", 0)
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                if self.stop.is_set():
                    return
                c = await Conn.open(self.targets[i % len(self.targets)], self.stats)
                if c is None:
                    return
                if rng.random() < 0.5:  # half of them were used once before going idle
                    self.stats.sent["idle_first_request"] += 1
                    await c.send(self._valid(rng))
                    outcome, _ = await c.react(VALID_WAIT_S)
                    if outcome != "answered":
                        self.stats.anomaly(f"idle connection's first request {outcome}")
                        c.abort()
                        return
                self.idle_conns.append(c)

        await asyncio.gather(*(one(i) for i in range(self.opts.idle)))
        self.stats.idle_open = len(self.idle_conns)

    def close_idle(self) -> None:
        for c in self.idle_conns:
            if c.reader.at_eof() or c.writer.transport.is_closing():
                self.stats.idle_closed_by_node += 1
            c.abort()
        self.idle_conns.clear()

    # clients that never read their answers
    async def nonreader_worker(self, index: int) -> None:
        rng = self.rng("nonreader", index)
        target = self.targets[index % len(self.targets)]
        metadata = codec.build_request(3, 12, {"topics": None,
                                               "allow_auto_topic_creation": False})
        fetch = codec.build_request(1, 12, {
            "replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": 4 << 20,
            "session_epoch": -1, "topics": [{"topic": FUZZ_TOPIC, "partitions": [
                {"partition": p, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
                for p in range(3)]}]})
        while not self.stop.is_set():
            c = await self._open(target)
            if c is None:
                await asyncio.sleep(0.5)
                continue
            try:
                until = time.monotonic() + rng.uniform(10, 30)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(until - time.monotonic()):
                        while not self.stop.is_set():
                            req = metadata if rng.random() < 0.5 else fetch
                            frame = codec.encode_request(req, next(self.cids), "never-reads")
                            if not await c.send(frame):
                                self.stats.anomaly("node closed a client that does not read",
                                                   node=target.node_id)
                                break
                            self.stats.nonreader_requests += 1
                            self.stats.sent["nonreader"] += 1
                            # drain() does not yield while the kernel takes the bytes (MBs
                            # on loopback): without this the loop would stall for seconds
                            await asyncio.sleep(0)
            finally:
                self._done(c)

    # a well-behaved client per node: is everybody else still served?
    async def bystander(self, target: Target) -> None:
        rng = self.rng("bystander", target.node_id)
        c = None
        while not self.stop.is_set():
            if c is None:
                c = await self._open(target)
                if c is None:
                    self.stats.bystander_failures += 1
                    await asyncio.sleep(0.5)
                    continue
            t0 = time.monotonic()
            ok = await c.send(self._valid(rng))
            outcome, _ = await c.react(10.0) if ok else ("closed", 0.0)
            if outcome != "answered":
                self.stats.bystander_failures += 1
                self.stats.anomaly(f"bystander request {outcome}", node=target.node_id)
                self._done(c)
                c = None
            else:
                self.stats.bystander_latency.append(time.monotonic() - t0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.stop.wait()
        if c is not None:
            self._done(c)

    async def run(self) -> float:
        """Run the load for the duration; returns the seconds it actually ran."""
        started = time.monotonic()
        idle = asyncio.create_task(self.open_idle())
        tasks = [asyncio.create_task(self.mutation_worker(i))
                 for i in range(self.opts.connections)]
        tasks += [asyncio.create_task(self.trickle_worker(i)) for i in range(self.opts.trickles)]
        tasks += [asyncio.create_task(self.nonreader_worker(i))
                  for i in range(self.opts.nonreaders)]
        tasks += [asyncio.create_task(self.bystander(t)) for t in self.targets]
        tasks.append(asyncio.create_task(self.lag_monitor()))
        if self.opts.big_frame_interval > 0:
            tasks.append(asyncio.create_task(self.big_frame_worker()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.opts.duration):
                await self.stop.wait()
        self.stop.set()
        ran = time.monotonic() - started
        await idle
        # workers end at their next step; give them a moment, then cut what is left
        _, pending = await asyncio.wait(tasks, timeout=12)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in tasks:
            if not t.cancelled() and t.exception() is not None:
                self.stats.anomaly(f"fuzzer worker failed: {t.exception()!r}")
        self.close_idle()
        for c in list(self.open_conns):
            self._done(c)
        return ran


# --- cluster, measurements, checks -------------------------------------------------------


@dataclass
class NodeInfo:
    node_id: int
    target: Target
    pid: int | None = None
    log_path: Path | None = None
    metrics_url: str | None = None
    proc: Any = None  # the harness's NodeProcess when we started it

    def alive(self) -> bool | None:
        if self.proc is not None:
            return bool(self.proc.alive())
        if self.pid is not None:
            return Path(f"/proc/{self.pid}").exists()
        return None

    def rss(self) -> int | None:
        if self.pid is not None:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        value = self.metric("process_resident_memory_bytes")
        return int(value) if value is not None else None

    def metrics_text(self) -> str | None:
        if not self.metrics_url:
            return None
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return None

    def metric(self, name: str, labels: str = "") -> float | None:
        text = self.metrics_text()
        return None if text is None else metric_sum(text, name, labels)


def raise_fd_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        new = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def kafka_request(target: Target, api_key: int, version: int, data: dict[str, Any]) -> Any:
    from odradek.broker.kafka.client import KafkaConnection

    with KafkaConnection(target.host, target.port, client_id="netfuzz-setup") as c:
        return c.request(api_key, version, data)


def prepare_topic(targets: Sequence[Target]) -> None:
    """The topic fuzzed requests name, with some data so Fetch answers are not empty."""
    from tests.integration.harness import wait_for

    wait_for(lambda: kafka_request(targets[0], 19, 7, {"topics": [
        {"name": FUZZ_TOPIC, "num_partitions": 3, "replication_factor": min(3, len(targets))}],
        "timeout": 10000}).topics[0].error_code in (0, 36), 60, "fuzz topic created")
    batch = encode_batch([Record(i, value=os.urandom(1024)) for i in range(64)])

    def produced() -> bool:
        meta = kafka_request(targets[0], 3, 12, {"topics": [{"name": FUZZ_TOPIC}]})
        leaders = {p.partition_index: p.leader_id for p in meta.topics[0].partitions}
        by_id = {t.node_id: t for t in targets}
        for part, leader in leaders.items():
            r = kafka_request(by_id.get(leader, targets[0]), 0, 9, {
                "acks": -1, "timeout": 10000, "topic_data": [
                    {"name": FUZZ_TOPIC, "partition_data": [{"index": part,
                                                             "records": batch}]}]})
            if r.responses[0].partition_responses[0].error_code != 0:
                return False
        return len(leaders) == 3

    wait_for(produced, 60, "data in the fuzz topic", interval=0.5)


async def warm_up(targets: Sequence[Target], seeds: SeedPool) -> None:
    """Every valid seed once on every node, so the RSS baseline includes the code and caches
    that any client's first requests load."""
    for t in targets:
        c = await Conn.open(t, Stats())
        if c is None:
            continue
        for body in seeds.warm:
            await c.send(_SIZE.pack(len(body)) + body)
            outcome, _ = await c.react(VALID_WAIT_S)
            if outcome != "answered":
                c.abort()
                c = await Conn.open(t, Stats())
                if c is None:
                    break
        if c is not None:
            c.abort()


def warm_inter_broker(bootstrap: str) -> None:
    """One committed transaction per ``__transaction_state`` partition, each writing to every
    partition of the fuzz topic: every node then holds the connections brokers keep to each
    other for transactions (markers from coordinators to leaders, verification from leaders
    to coordinators), so the connection baseline includes them and a mutated transactional
    request during the run cannot look like a leak by opening one."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from odradek.broker.group.partitioning import partition_for

    def one(txn_id: str) -> None:
        p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
        p.init_transactions(30)
        p.begin_transaction()
        for i in range(3):
            p.produce(FUZZ_TOPIC, value=b"warm", partition=i)
        p.commit_transaction(30)

    one("fuzz-warm")  # creates __transaction_state
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics
    n = len(topics["__transaction_state"].partitions)
    wanted: dict[int, str] = {}
    i = 0
    while len(wanted) < n:
        txn_id = f"fuzz-warm-{i}"
        wanted.setdefault(partition_for(txn_id, n), txn_id)
        i += 1
    for txn_id in wanted.values():
        one(txn_id)


def produce_consume_check(bootstrap: str) -> tuple[bool, str]:
    """A real client still works: a new topic with RF=3, 100 acks=all records, read back."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique_name("after-fuzz")
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)],
                            operation_timeout=30)[topic].result(60)
        delivered: list[int] = []
        errors: list[str] = []

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                delivered.append(msg.offset())

        p = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                      "message.timeout.ms": 60000})
        for i in range(100):
            while True:
                try:
                    p.produce(topic, value=f"value-{i}".encode(), key=f"k{i}".encode(),
                              on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.1)
        left = p.flush(60)
        if left or errors or sorted(delivered) != list(range(100)):
            return False, f"produce: {left} undelivered, errors {errors[:3]}, " \
                          f"{len(delivered)} delivered"
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < 100 and time.monotonic() < deadline:
            for m in c.consume(100, timeout=1.0):
                if m.error() is None:
                    got.append(m.value())
        c.close()
        want = [f"value-{i}".encode() for i in range(100)]
        if got != want:
            return False, f"consumed {len(got)} records, not the 100 produced in order"
        return True, f"topic {topic}: 100 records produced with acks=all and consumed back"
    except (KafkaException, Exception) as e:  # noqa: BLE001 - any failure is the verdict
        return False, f"{type(e).__name__}: {e}"


def count_closes_logged(path: Path | None) -> dict[str, int]:
    """Connections the node says it closed or refused, by reason (its WARNING lines are
    rate limited, so these are lines, not connections)."""
    out: collections.Counter[str] = collections.Counter()
    if path is None or not path.exists():
        return {}
    with open(path, errors="replace") as f:
        for line in f:
            if "odradek.server" not in line or "WARNING" not in line:
                continue
            if "without progress" in line:
                out["stalled budget holder"] += 1
            elif "refusing connection" in line:
                out["refused"] += 1
            else:
                out["protocol violation"] += 1
    return dict(out)


def scan_log(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    bad = []
    with open(path, errors="replace") as f:
        for line in f:
            if _LOG_FAILURE.search(line):
                bad.append(line.rstrip()[:400])
    return bad


@dataclass
class Criterion:
    name: str
    ok: bool | None  # None: could not be checked (say why in detail)
    detail: str


def check_criteria(report: dict[str, Any], nodes: Sequence[NodeInfo], pc: tuple[bool, str],
                   stats: Stats, reaction_bound_s: float = REACTION_BOUND_S
                   ) -> list[Criterion]:
    out = []
    alive = {n.node_id: n.alive() for n in nodes}
    if any(v is None for v in alive.values()):
        out.append(Criterion("nodes alive", None, "no process to check (--bootstrap)"))
    else:
        out.append(Criterion("nodes alive", all(alive.values()), f"{alive}"))
    out.append(Criterion("produce and consume", pc[0], pc[1]))
    logs = report["log_problems"]
    if all(n.log_path is None for n in nodes):
        out.append(Criterion("clean logs", None, "no node logs to read (--bootstrap)"))
    else:
        n_bad = sum(len(v) for v in logs.values())
        out.append(Criterion("clean logs", n_bad == 0,
                             f"{n_bad} traceback/ERROR lines" + (
                                 f", first: {next(ln for v in logs.values() for ln in v)}"
                                 if n_bad else "")))
    growth = {}
    for n in nodes:
        r = report["rss"].get(str(n.node_id), {})
        if r.get("before") is not None and r.get("after") is not None:
            growth[n.node_id] = r["after"] - r["before"]
    if len(growth) < len(nodes):
        out.append(Criterion("RSS growth < 64 MiB", None, "RSS not measurable for every node"))
    else:
        out.append(Criterion(
            "RSS growth < 64 MiB", all(g < RSS_GROWTH_BOUND for g in growth.values()),
            ", ".join(f"node {k}: {v / 2**20:+.1f} MiB" for k, v in growth.items())))
    worst = max(stats.reaction, default=0.0)
    timeouts = sum(v for k, v in stats.outcomes.items()
                   if k.endswith(":timeout") and "valid" not in k)
    out.append(Criterion(
        f"bad frames closed or answered within {reaction_bound_s:g} s",
        bool(stats.reaction) and worst <= reaction_bound_s and timeouts == 0,
        f"{len(stats.reaction)} measured, max {worst:.3f} s, "
        f"p99 {percentile(stats.reaction, 0.99):.3f} s, {timeouts} without reaction"))
    queue = report["after_metrics"]
    if queue:
        leaks = {k: v for k, v in queue.items()
                 if (v.get("request_queue_bytes") or 0) != 0
                 or (v.get("connections") or 0) > (report["before_metrics"].get(k, {})
                                                   .get("connections") or 0)}
        out.append(Criterion("request budget and connection count back to baseline",
                             not leaks, f"{queue}"))
    return out


async def sample_rss(nodes: Sequence[NodeInfo], peak: dict[int, int],
                     stop: asyncio.Event) -> None:
    while not stop.is_set():
        for n in nodes:
            r = n.rss()
            if r is not None:
                peak[n.node_id] = max(peak.get(n.node_id, 0), r)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await stop.wait()


def node_metrics(n: NodeInfo) -> dict[str, float | None]:
    text = n.metrics_text()
    if text is None:
        return {}
    return {
        "connections": metric_sum(text, "odradek_connections"),
        "request_queue_bytes": metric_sum(text, "odradek_request_queue_bytes"),
        "protocol_errors": metric_sum(text, "odradek_protocol_errors_total"),
        "connections_refused": metric_sum(text, "odradek_connections_refused_total"),
        "idle_connections_closed": metric_sum(text, "odradek_connections_closed_total",
                                             'reason="idle"'),
        "fetch_purgatory": metric_sum(text, "odradek_fetch_purgatory_size"),
        "open_fds": metric_sum(text, "process_open_fds"),
    }


def print_report(report: dict[str, Any], criteria: Sequence[Criterion]) -> None:
    p = print
    p("\n=== network fuzzer report ===")
    p(f"seed {report['seed']}, ran {report['ran_s']:.1f} s against {report['bootstrap']}")
    p(f"seeds: {report['seeds']['frames']} frames ({report['seeds']['from_corpus']} from the "
      "corpus)")
    p(f"frames sent: {report['frames_total']} ({report['frames_per_s']:.1f}/s; without the "
      f"non-readers' requests, which mostly wait unread in socket buffers: "
      f"{report['frames_per_s_read']:.1f}/s)")
    for kind, n in sorted(report["sent"].items(), key=lambda kv: -kv[1]):
        p(f"  {kind:24} {n}")
    p(f"connections opened: {report['connections_opened']} (+{report['idle_open']} idle held), "
      f"closed by the nodes: {report['closes_observed']}, connect errors: "
      f"{report['connect_errors']}")
    p(f"idle connections closed by a node during the run: {report['idle_closed_by_node']}")
    p(f"the fuzzer's own event loop lagged by up to {report['loop_lag_s']:.3f} s")
    p(f"requests sent by clients that never read: {report['nonreader_requests']}")
    r = report["reaction"]
    p(f"reaction to bad frames: {r['count']} measured, max {r['max_s']} s, p99 {r['p99_s']} s, "
      f"p50 {r['p50_s']} s")
    for kind, s in sorted(report["reaction_by_kind"].items()):
        p(f"  {kind:24} n={s['count']:<6} max {s['max_s']:<8} p99 {s['p99_s']}")
    v = report["valid_latency"]
    b = report["bystander_latency"]
    p(f"valid requests interleaved: n={v['count']} max {v['max_s']} s p99 {v['p99_s']} s; "
      f"bystanders: n={b['count']} max {b['max_s']} s p99 {b['p99_s']} s, "
      f"failures {report['bystander_failures']}")
    p(f"mutated frames that decoded as valid requests: {report['mutated_valid']['count']} "
      f"answered; {report['skipped_side_effects']} with side effects not sent")
    p("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(report["outcomes"].items())))
    p("mutated frames decoded as valid, by api: " + ", ".join(
        f"{k}={v}" for k, v in sorted(report["mutated_valid_by_api"].items())))
    for node, rss in sorted(report["rss"].items()):
        def mib(x: int | None) -> str:
            return "?" if x is None else f"{x / 2**20:.1f} MiB"
        p(f"node {node} RSS: before {mib(rss.get('before'))}, peak {mib(rss.get('peak'))}, "
          f"after {mib(rss.get('after'))}")
    for node, m in sorted(report["after_metrics"].items()):
        p(f"node {node} metrics after: {m}")
    for node, m in sorted(report.get("closes_logged", {}).items()):
        p(f"node {node} closes logged (rate-limited lines): {m}")
    for a in report["anomalies"][:10]:
        p(f"anomaly: {a}")
    for s in report["slow"][:10]:
        p(f"slow: {s}")
    for node, lines in report["log_problems"].items():
        for ln in lines[:5]:
            p(f"node {node} log: {ln}")
    p("--- criteria ---")
    for c in criteria:
        mark = "PASS" if c.ok else ("SKIP" if c.ok is None else "FAIL")
        p(f"{mark}  {c.name}: {c.detail}")


async def fuzz(nodes: Sequence[NodeInfo], opts: Options, bootstrap: str,
               seeds: SeedPool) -> tuple[dict[str, Any], Stats]:
    targets = [n.target for n in nodes]
    await warm_up(targets, seeds)
    await asyncio.to_thread(warm_inter_broker, bootstrap)
    await asyncio.sleep(2)
    before_metrics = {str(n.node_id): node_metrics(n) for n in nodes}
    rss_before = {n.node_id: n.rss() for n in nodes}
    fuzzer = Fuzzer(targets, opts, seeds)
    peak: dict[int, int] = {}
    sampler_stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(nodes, peak, sampler_stop))
    ran = await fuzzer.run()
    sampler_stop.set()
    await sampler
    # settle: every fuzz connection is closed; let the nodes notice and finish up
    await asyncio.sleep(2)
    rss_after = {n.node_id: n.rss() for n in nodes}
    after_metrics = {str(n.node_id): node_metrics(n) for n in nodes}
    st = fuzzer.stats
    total = sum(v for k, v in st.sent.items() if k not in ("pipelined",))
    report: dict[str, Any] = {
        "seed": opts.seed, "ran_s": ran, "bootstrap": bootstrap,
        "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
        "seeds": {"frames": len(seeds.frames), "from_corpus": seeds.from_corpus},
        "sent": dict(st.sent), "frames_total": total, "frames_per_s": total / max(ran, 1e-9),
        # the non-readers' requests mostly wait in kernel buffers, unread by design
        "frames_per_s_read": (total - st.sent["nonreader"]) / max(ran, 1e-9),
        "connections_opened": st.connections_opened, "idle_open": st.idle_open,
        "closes_observed": st.closes_observed, "connect_errors": dict(st.connect_errors),
        "idle_closed_by_node": st.idle_closed_by_node, "loop_lag_s": st.loop_lag,
        "nonreader_requests": st.nonreader_requests,
        "reaction": summary(st.reaction),
        "reaction_by_kind": {k: summary(v) for k, v in st.reaction_by_kind.items()},
        "valid_latency": summary(st.valid_latency),
        "mutated_valid": summary(st.mutated_valid_latency),
        "bystander_latency": summary(st.bystander_latency),
        "bystander_failures": st.bystander_failures,
        "skipped_side_effects": st.skipped_side_effects,
        "outcomes": dict(st.outcomes), "anomalies": st.anomalies, "slow": st.slow,
        "mutated_valid_by_api": dict(st.valid_by_api),
        "rss": {str(n.node_id): {"before": rss_before.get(n.node_id),
                                 "peak": peak.get(n.node_id),
                                 "after": rss_after.get(n.node_id)} for n in nodes},
        "before_metrics": before_metrics, "after_metrics": after_metrics,
    }
    return report, st


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.network_fuzzer",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, required=True, help="seconds of fuzzing")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--reaction-bound", type=float, default=REACTION_BOUND_S,
                    help="seconds within which every bad frame must be closed or answered")
    ap.add_argument("--connections", type=int, default=50,
                    help="concurrent connections sending mutated frames")
    ap.add_argument("--idle", type=int, default=2000, help="idle connections held")
    ap.add_argument("--trickles", type=int, default=6, help="concurrent byte-by-byte senders")
    ap.add_argument("--nonreaders", type=int, default=3,
                    help="concurrent clients that never read their answers")
    ap.add_argument("--big-frame-interval", type=float, default=30.0,
                    help="seconds between whole frames just below the size limit (0: none)")
    ap.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                    help="the cluster's socket.request.max.bytes (with --bootstrap)")
    ap.add_argument("--side-effects", action="store_true",
                    help="also send mutated frames that decode as valid topic/config changes")
    ap.add_argument("--out", type=Path, help="directory for report.json (and logs on failure)")
    ap.add_argument("--bootstrap", help="fuzz this cluster instead of starting one")
    ap.add_argument("--metrics", default="",
                    help="with --bootstrap: the nodes' metrics URLs, comma separated")
    ap.add_argument("--keep", action="store_true", help="keep the cluster's directory")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    opts = Options(duration=args.duration, seed=seed, connections=args.connections,
                   idle=args.idle, trickles=args.trickles, nonreaders=args.nonreaders,
                   big_frame_interval=args.big_frame_interval,
                   max_request_bytes=args.max_request_bytes, side_effects=args.side_effects)
    soft, _ = raise_fd_limit()
    need = opts.idle + 4 * opts.connections + 256
    print(f"network fuzzer: seed {seed}, fd limit {soft}", flush=True)
    if soft < need:
        print(f"fd limit {soft} is below the {need} this run needs: fewer idle connections",
              flush=True)
        opts.idle = max(0, soft - 4 * opts.connections - 256)
    seeds = SeedPool.load()

    cluster = None
    base: Path | None = None
    nodes: list[NodeInfo] = []
    if args.bootstrap:
        urls = [u for u in args.metrics.split(",") if u]
        for i, addr in enumerate(a for a in args.bootstrap.split(",") if a):
            host, _, port = addr.rpartition(":")
            nodes.append(NodeInfo(i + 1, Target(i + 1, host, int(port)),
                                  metrics_url=urls[i] if i < len(urls) else None))
        bootstrap = args.bootstrap
    else:
        from tests.integration.harness import Cluster

        base = Path(tempfile.mkdtemp(prefix="odradek-netfuzz-"))
        # No auto-creation: a mutated Metadata request naming a random topic would otherwise
        # create one (as it should), and thousands of new topics would be what the RSS
        # check measures.
        cluster = Cluster(base, n=3, overrides={"auto.create.topics.enable": False,
                                                "socket.request.max.bytes":
                                                    opts.max_request_bytes}).start()
        for n in cluster.nodes:
            assert n.proc is not None
            nodes.append(NodeInfo(n.node_id, Target(n.node_id, n.host, n.kafka_port),
                                  pid=n.proc.pid, log_path=n.log_path,
                                  metrics_url=f"http://127.0.0.1:{n.metrics_port}/metrics",
                                  proc=n))
        bootstrap = cluster.bootstrap
        print(f"cluster up in {base}: {bootstrap}", flush=True)
    ok = False
    try:
        prepare_topic([n.target for n in nodes])
        try:
            import uvloop  # the nodes run on uvloop; so does the load, to keep up with them

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
        report, stats = runner(fuzz(nodes, opts, bootstrap, seeds))
        pc = produce_consume_check(bootstrap)
        report["log_problems"] = {str(n.node_id): scan_log(n.log_path) for n in nodes}
        report["closes_logged"] = {str(n.node_id): count_closes_logged(n.log_path)
                                   for n in nodes}
        report["recent_frames"] = {
            str(k): list(v) for k, v in stats.recent.items()
            if any(n.node_id == k and n.alive() is False for n in nodes)}
        criteria = check_criteria(report, nodes, pc, stats, args.reaction_bound)
        report["criteria"] = [c.__dict__ for c in criteria]
        ok = all(c.ok is not False for c in criteria)
        report["passed"] = ok
        print_report(report, criteria)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        print(f"\nnetwork fuzzer: {'PASSED' if ok else 'FAILED'}", flush=True)
    finally:
        if cluster is not None:
            for n in cluster.nodes:
                with contextlib.suppress(Exception):
                    n.stop(timeout=20)
            if not ok and args.out and base is not None:
                for n in cluster.nodes:
                    with contextlib.suppress(OSError):
                        shutil.copy(n.log_path, args.out / n.log_path.name)
            if base is not None and not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

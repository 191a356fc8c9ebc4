"""Each limit on what clients can make a node hold, against a real node process.

docs/operations.md, "Limits", describes the keys; broker/server.py enforces them.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.kafka import codec
from odradek.broker.kafka.client import KafkaConnection
from odradek.storage.records import Record, encode_batch
from tests.fuzz.network_fuzzer import scan_log
from tests.helpers import metric_sum, produce_raw, read_frame, unique_name
from tests.integration.harness import NodeProcess, free_port, metric, scrape, wait_for

pytestmark = pytest.mark.integration

MiB = 1 << 20


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[object]:
    """Start a node with the given config overrides (killed after the test)."""
    started: list[NodeProcess] = []

    def start(**overrides: object) -> NodeProcess:
        node = NodeProcess(tmp_path / f"n{len(started)}", overrides=dict(overrides)).start()
        started.append(node)
        return node

    yield start
    for n in started:
        n.kill()
    # whatever the test did, nothing it sent may make a node log an error
    problems = [ln for n in started for ln in scan_log(n.log_path)]
    assert not problems, "\n".join(problems[:20])


def rss(node: NodeProcess) -> int:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def connect(node: NodeProcess, port: int | None = None) -> socket.socket:
    s = socket.create_connection((node.host, port or node.kafka_port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def api_versions_frame(correlation_id: int = 1, padding: int = 0) -> bytes:
    """An ApiVersions v3 request; ``padding`` trailing bytes, which a broker ignores, make it
    as large as a test needs."""
    body = codec.build_request(18, 3, {"client_software_name": "limits",
                                       "client_software_version": "1"})
    frame = codec.encode_request(body, correlation_id, "limits")[4:] + b"\0" * padding
    return struct.pack(">i", len(frame)) + frame


def answers(s: socket.socket, correlation_id: int = 7) -> bool:
    """Does this connection still get an ApiVersions request answered?"""
    try:
        s.sendall(api_versions_frame(correlation_id))
        cid, body = codec.decode_response(read_frame(s), 18, 3)
        return cid == correlation_id and body.error_code == ErrorCode.none
    except OSError:
        return False


def closed_within(s: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closed ``s`` (None: still open after ``seconds``)."""
    start = time.monotonic()
    s.settimeout(seconds)
    try:
        while True:
            if not s.recv(65536):
                return time.monotonic() - start
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - start
    except TimeoutError:
        return None


def test_max_connections_per_ip(start_node: object) -> None:
    node = start_node(**{"max.connections.per.ip": 4})  # type: ignore[operator]
    label = 'reason="max_connections_per_ip"'
    kept = [connect(node) for _ in range(4)]
    assert all(answers(s) for s in kept)
    extra = [connect(node) for _ in range(3)]
    for s in extra:
        # closed at once, before it could send anything
        waited = closed_within(s, 2.0)
        assert waited is not None and waited < 1.0
        s.close()
    assert metric(node, "odradek_connections_refused_total", label) == 3
    assert metric(node, "odradek_connections") == 4
    # the connections admitted before the limit was reached keep working
    assert all(answers(s, 100 + i) for i, s in enumerate(kept))
    # a slot given back is a slot a new connection may take
    kept.pop().close()
    wait_for(lambda: metric(node, "odradek_connections") == 3, 5, "the close counted")
    again = connect(node)
    assert answers(again)
    for s in [*kept, again]:
        s.close()


def test_max_connections_per_ip_override(start_node: object) -> None:
    node = start_node(**{"max.connections.per.ip": 1,  # type: ignore[operator]
                         "max.connections.per.ip.overrides": "127.0.0.1:3"})
    kept = [connect(node) for _ in range(3)]
    assert all(answers(s) for s in kept)
    extra = connect(node)
    assert closed_within(extra, 2.0) is not None
    assert metric(node, "odradek_connections_refused_total",
                  'reason="max_connections_per_ip"') == 1
    for s in [*kept, extra]:
        s.close()


def test_max_connections(start_node: object) -> None:
    """With one listener, every connection counts (as in Kafka: only a separate
    inter-broker listener is exempt, so that replication cannot be locked out)."""
    node = start_node(**{"max.connections": 5})  # type: ignore[operator]
    kept = [connect(node) for _ in range(5)]
    assert all(answers(s) for s in kept)
    extra = connect(node)
    waited = closed_within(extra, 2.0)
    assert waited is not None and waited < 1.0
    assert metric(node, "odradek_connections_refused_total", 'reason="max_connections"') == 1
    assert all(answers(s, 50 + i) for i, s in enumerate(kept))
    for s in [*kept, extra]:
        s.close()


def test_max_connections_spares_a_separate_inter_broker_listener(start_node: object) -> None:
    port, internal = free_port(), free_port()
    node = start_node(**{  # type: ignore[operator]
        "max.connections": 2,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL"})
    kept = [connect(node, port) for _ in range(2)]
    assert all(answers(s) for s in kept)
    refused = connect(node, port)
    assert closed_within(refused, 2.0) is not None
    # brokers still get in on their own listener, and do not use up the clients' slots
    brokers = [connect(node, internal) for _ in range(3)]
    assert all(answers(s) for s in brokers)
    assert metric(node, "odradek_connections_refused_total",
                  'listener="PLAINTEXT",reason="max_connections"') == 1
    for s in [*kept, refused, *brokers]:
        s.close()


def test_idle_connection_closed_busy_one_kept(start_node: object) -> None:
    node = start_node(**{"connections.max.idle.ms": 1000})  # type: ignore[operator]
    idle, busy = connect(node), connect(node)
    assert answers(idle) and answers(busy)
    opened = time.monotonic()
    stop = threading.Event()
    busy_ok: list[bool] = []

    def keep_busy() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            busy_ok.append(answers(busy, i))
            time.sleep(0.2)

    t = threading.Thread(target=keep_busy)
    t.start()
    try:
        waited = closed_within(idle, 5.0)
    finally:
        time.sleep(1.5)  # the busy one outlives the idle limit by far
        stop.set()
        t.join()
    assert waited is not None, "the idle connection was not closed"
    # not before the limit (its last traffic was the answer just before `opened`), and not
    # long after it: the reaper looks every quarter of the limit
    assert 0.9 <= waited <= 2.0, (waited, time.monotonic() - opened)
    assert busy_ok and all(busy_ok), busy_ok
    assert answers(busy, 999)
    assert metric(node, "odradek_connections_closed_total", 'reason="idle"') >= 1
    idle.close()
    busy.close()


def test_queued_max_request_bytes(start_node: object) -> None:
    """Frames waiting to be handled reserve their declared size of the node-wide budget.
    Two connections that each declare a ~1 MiB frame and stall hold the 2 MiB budget; a
    third connection's frame is not read until one of them goes away, then it is answered;
    the node never holds more than the budget."""
    budget, limit = 2 * MiB, 1 * MiB
    node = start_node(**{"socket.request.max.bytes": limit,  # type: ignore[operator]
                         "queued.max.request.bytes": budget})
    assert metric(node, "odradek_request_queue_bytes") == 0
    declared = limit - 1000
    stalled = []
    for _ in range(2):
        s = connect(node)
        # a size prefix and the start of a header: the rest never comes
        s.sendall(struct.pack(">ihh", declared, 18, 3))
        stalled.append(s)
    wait_for(lambda: metric(node, "odradek_request_queue_bytes") == 2 * declared, 5,
             "both stalled frames reserved")
    room = budget - 2 * declared
    waiting = connect(node)
    # this frame does not fit in what is left; many more behind it are not read either
    frame = api_versions_frame(1, padding=room + 100)
    waiting.setblocking(False)
    pushed = 0
    rss_before = rss(node)
    try:
        for _ in range(20_000):
            pushed += waiting.send(frame)
    except BlockingIOError:
        pass
    waiting.setblocking(True)
    assert pushed < 32 * MiB, "the node kept reading a connection that waits for budget"
    time.sleep(1.0)
    waiting.settimeout(0.5)
    with pytest.raises(TimeoutError):
        waiting.recv(1)  # not answered: not even read while the budget is full
    assert metric(node, "odradek_request_queue_bytes") == 2 * declared
    assert rss(node) - rss_before < 16 * MiB
    # one stalled connection goes away: its reservation is given back, the waiting frame
    # is read and answered
    stalled.pop().close()
    waiting.settimeout(5)
    released = time.monotonic()
    cid, body = codec.decode_response(read_frame(waiting), 18, 3)
    assert (cid, body.error_code) == (1, ErrorCode.none)
    assert time.monotonic() - released < 1.0
    assert metric(node, "odradek_request_queue_bytes") <= budget
    for s in [*stalled, waiting]:
        s.close()
    wait_for(lambda: metric(node, "odradek_request_queue_bytes") == 0, 10,
             "the budget given back once every connection is gone")


def _produce(node: NodeProcess, topic: str, total: int) -> None:
    with KafkaConnection.to(node.bootstrap) as c:
        r = c.request(19, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                          "replication_factor": 1}], "timeout": 10000})
        assert r.topics[0].error_code == ErrorCode.none
        value = b"x" * 10_000
        for _ in range(total // (100 * len(value))):
            batch = encode_batch([Record(i, value=value) for i in range(100)])
            assert produce_raw(c, topic, batch, acks=1).error_code == ErrorCode.none


def test_client_that_never_reads(start_node: object) -> None:
    """Thousands of Fetch (1 MiB answers) and Metadata requests from a client that reads
    nothing: the node stops serving it when its write buffer is full, so what it holds
    for the client stays bounded, and everybody else is served as usual."""
    node = start_node()  # type: ignore[operator]
    topic = unique_name("never-read", 6)
    _produce(node, topic, 4 * MiB)
    fetch = codec.encode_request(codec.build_request(1, 12, {
        "replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": 2 * MiB,
        "session_epoch": -1, "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "fetch_offset": 0, "partition_max_bytes": MiB}]}]}), 1, "nr")
    metadata = codec.encode_request(codec.build_request(3, 12, {"topics": None}), 2, "nr")
    bystander = connect(node)
    assert answers(bystander)
    rss_before = rss(node)
    hog = connect(node)
    # small kernel buffers on our side, so that it is the node that has to hold back
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    hog.setblocking(False)
    sent = {"fetch": 0, "metadata": 0}
    pending = bytearray()  # a frame the socket took only part of
    latencies = []
    deadline = time.monotonic() + 10
    peak = rss_before
    while time.monotonic() < deadline:
        if not pending:
            kind = "fetch" if sent["fetch"] < sent["metadata"] else "metadata"
            pending += fetch if kind == "fetch" else metadata
            sent[kind] += 1
        try:
            del pending[:hog.send(pending)]
        except BlockingIOError:
            # the node stopped reading us: check on everyone else meanwhile
            start = time.monotonic()
            assert answers(bystander, len(latencies))
            latencies.append(time.monotonic() - start)
            peak = max(peak, rss(node))
            time.sleep(0.05)
    assert sent["fetch"] >= 1000 and sent["metadata"] >= 1000, sent
    assert len(latencies) >= 10, "the node never stopped reading the client"
    peak = max(peak, rss(node))
    # without backpressure every fetch would be ~1 MiB held for the client
    handled = metric_sum(scrape(node), "odradek_requests_total", 'api="fetch"') or 0
    assert handled < 100, f"{handled} fetches of {sent['fetch']} answered to a client that " \
                          "reads nothing"
    assert peak - rss_before < 64 * MiB, (peak - rss_before) / MiB
    assert max(latencies) < 0.3, latencies
    hog.close()
    assert answers(bystander, 424242)
    bystander.close()


def test_pipelining_client_does_not_stall_others(start_node: object) -> None:
    """One read can frame 256 KiB of small pipelined requests; the node answers them in
    turn with everybody else's, not all at once (each took the event loop for ~0.5 s)."""
    node = start_node()  # type: ignore[operator]
    metadata = codec.encode_request(codec.build_request(3, 1, {"topics": None}), 1, "burst")
    burst = metadata * (256 * 1024 // len(metadata))
    bystander = connect(node)
    assert answers(bystander)
    stop = threading.Event()
    answered = [0]

    def pipeline() -> None:
        with connect(node) as s:
            s.settimeout(30)
            while not stop.is_set():
                s.sendall(burst)
                for _ in range(len(burst) // len(metadata)):
                    read_frame(s)
                    answered[0] += 1

    t = threading.Thread(target=pipeline, daemon=True)
    t.start()
    latencies = []
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            start = time.monotonic()
            assert answers(bystander, len(latencies))
            latencies.append(time.monotonic() - start)
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(30)
    assert answered[0] > 1000
    assert max(latencies) < 0.3, sorted(latencies)[-5:]
    bystander.close()


def test_long_poll_ends_with_its_connection(start_node: object) -> None:
    """A Fetch may wait 24 days for data; once its client is gone the wait ends too, or a
    client that opens, fetches and closes in a loop would pile them up (~9 KiB each)."""
    node = start_node()  # type: ignore[operator]
    topic = unique_name("long-poll", 6)
    _produce(node, topic, 0)
    fetch = codec.encode_request(codec.build_request(1, 12, {
        "replica_id": -1, "max_wait": 2**31 - 1, "min_bytes": 1, "max_bytes": MiB,
        "session_epoch": -1, "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "fetch_offset": 0, "partition_max_bytes": MiB}]}]}), 1, "lp")
    polls = []
    for _ in range(200):
        s = connect(node)
        s.sendall(fetch)
        polls.append(s)
    wait_for(lambda: metric(node, "odradek_fetch_purgatory_size") == 200, 10,
             "every fetch waiting for data")
    rss_waiting = rss(node)
    for s in polls:
        s.close()
    wait_for(lambda: metric(node, "odradek_fetch_purgatory_size") == 0, 5,
             "the waits of closed connections ended")
    # and the node is none the worse for it
    with connect(node) as s:
        assert answers(s)
    assert rss(node) - rss_waiting < 8 * MiB


def test_stalled_budget_holders_closed_while_others_wait(start_node: object) -> None:
    """Size prefixes alone (twelve bytes) must not stop a node reading everybody's requests
    for as long as their senders trickle a byte now and then: while others wait for room,
    a holder that stalls for 5 s is closed."""
    node = start_node(**{"socket.request.max.bytes": MiB,  # type: ignore[operator]
                         "queued.max.request.bytes": 2 * MiB})
    stalled = []
    for _ in range(2):
        s = connect(node)
        s.sendall(struct.pack(">i", MiB - 100))
        stalled.append(s)
    wait_for(lambda: metric(node, "odradek_request_queue_bytes") == 2 * (MiB - 100), 5,
             "both stalled frames reserved")
    # Without anybody waiting, a slow frame harms nobody and is left alone.
    time.sleep(6)
    assert all(closed_within(s, 0.01) is None for s in stalled)
    waiting = connect(node)
    waiting.sendall(api_versions_frame(1, padding=1000))
    started = time.monotonic()
    stop = threading.Event()

    def trickle(s: socket.socket) -> None:  # a byte a second: "alive", but no progress
        while not stop.wait(1.0):
            with contextlib.suppress(OSError):
                s.send(b"\0")

    threads = [threading.Thread(target=trickle, args=(s,)) for s in stalled]
    for t in threads:
        t.start()
    try:
        waiting.settimeout(15)
        cid, body = codec.decode_response(read_frame(waiting), 18, 3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert (cid, body.error_code) == (1, ErrorCode.none)
    assert 3.5 <= time.monotonic() - started <= 9.0
    assert any(closed_within(s, 2.0) is not None for s in stalled)
    assert metric(node, "odradek_connections_closed_total", 'reason="stalled"') >= 1
    for s in [*stalled, waiting]:
        s.close()


def test_client_not_reading_answers_loses_its_budget_while_others_wait(
        start_node: object) -> None:
    """Complete frames of a client that does not read its answers stay queued, holding
    their budget: while others wait for it, such a client is closed after 5 s."""
    node = start_node(**{"socket.request.max.bytes": MiB,  # type: ignore[operator]
                         "queued.max.request.bytes": 2 * MiB})
    topic = unique_name("hold", 6)
    _produce(node, topic, 4 * MiB)
    fetch = codec.encode_request(codec.build_request(1, 12, {
        "replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": MiB,
        "session_epoch": -1, "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "fetch_offset": 0, "partition_max_bytes": MiB}]}]}), 1, "hog")
    hog = connect(node)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    # enough 1 MiB answers to fill every buffer between the node and us, then large
    # requests that stay queued behind them
    # (fewer than the 16 frames a connection reads ahead, so the large ones are read too)
    hog.sendall(fetch * 12)
    big = api_versions_frame(2, padding=MiB - MiB // 10)
    hog.settimeout(5)
    with contextlib.suppress(TimeoutError):
        for _ in range(4):
            hog.sendall(big)
    wait_for(lambda: metric(node, "odradek_request_queue_bytes") > MiB, 10,
             "the hog's queued frames holding budget")
    waiting = connect(node)
    waiting.sendall(api_versions_frame(1, padding=MiB - 1000))
    started = time.monotonic()
    waiting.settimeout(15)
    cid, body = codec.decode_response(read_frame(waiting), 18, 3)
    assert (cid, body.error_code) == (1, ErrorCode.none)
    assert 3.5 <= time.monotonic() - started <= 9.0
    hog.close()
    waiting.close()


def test_idle_client_that_does_not_read_is_closed(start_node: object) -> None:
    """Closing waits for the answers already written to be sent, but not forever: an idle
    client that reads nothing is gone, with its buffers, within seconds of the idle limit."""
    node = start_node(**{"connections.max.idle.ms": 1000})  # type: ignore[operator]
    topic = unique_name("unread", 6)
    _produce(node, topic, 4 * MiB)
    fetch = codec.encode_request(codec.build_request(1, 12, {
        "replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": MiB,
        "session_epoch": -1, "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "fetch_offset": 0, "partition_max_bytes": MiB}]}]}), 1, "hog")
    hog = connect(node)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    hog.sendall(fetch * 12)
    started = time.monotonic()
    wait_for(lambda: metric(node, "odradek_connections") == 0, 15,
             "the idle client that does not read closed")
    assert time.monotonic() - started < 1 + 5 + 2
    assert metric(node, "odradek_connections_closed_total", 'reason="idle"') == 1
    hog.close()


def _api_versions_round_trip(port: int) -> float:
    """Connect, ask ApiVersions, read the answer: seconds it took."""
    started = time.monotonic()
    with KafkaConnection("127.0.0.1", port) as c:
        assert c.request(18, 0, {}).error_code == ErrorCode.none
    return time.monotonic() - started


def test_max_connection_creation_rate_paces_a_listener(tmp_path: Path) -> None:
    """KIP-612's listener-wide limit: listener.name.paced.max.connection.creation.rate=2
    lets a burst of about 20 connections in (2/s over Kafka's 10-window minimum), then
    accepts about two a second; the node's other listener is not held back, and the wait
    is counted."""
    plain, paced = free_port(), free_port()
    node = NodeProcess(tmp_path / "paced", kafka_port=plain, overrides={
        "listeners": f"PLAINTEXT://127.0.0.1:{plain},PACED://127.0.0.1:{paced}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,PACED:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.name.paced.max.connection.creation.rate": 2}).start()
    try:
        burst = [_api_versions_round_trip(paced) for _ in range(20)]
        assert max(burst) < 1.0, burst
        started = time.monotonic()
        paced_times: list[float] = []
        thread = threading.Thread(target=lambda: paced_times.extend(
            _api_versions_round_trip(paced) for _ in range(4)))
        thread.start()
        # Meanwhile the other listener accepts at once.
        assert _api_versions_round_trip(plain) < 1.0
        thread.join(30)
        took = time.monotonic() - started
        assert len(paced_times) == 4
        assert 1.0 < took < 10, (took, paced_times)  # ~0.5 s each beyond the burst
        assert metric(node, "odradek_connection_accept_throttled_seconds_total",
                      'listener="PACED"') >= 1.0
    finally:
        node.kill()

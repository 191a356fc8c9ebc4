"""The node's other ports survive hostile bytes too: the controller's gRPC port and the
metrics HTTP port. Afterwards the node is alive, still serves, and logged no traceback."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.kafka.client import KafkaConnection
from odradek.broker.metrics_http import IDLE_TIMEOUT_S, MAX_CONNECTIONS
from odradek.controller.raft_runtime.transport import MAX_MESSAGE_BYTES
from odradek.controller.rpc import controller_pb2, raft_pb2
from tests.integration.harness import Cluster, NodeProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one_voter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node that is its own one-voter Raft quorum: it has a gRPC controller port."""
    cluster = Cluster(tmp_path_factory.mktemp("hostile"), n=1).start()
    yield cluster.nodes[0]
    cluster.kill_all()


def _address(node: NodeProcess, key: str) -> tuple[str, int]:
    import yaml

    text = yaml.safe_load(node.config_path.read_text())[key]
    host, _, port = str(text).rpartition(":")
    return host, int(port)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def _http(node: NodeProcess, request: bytes) -> bytes:
    with socket.create_connection(_address(node, "metrics.listener"), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out and request.startswith(b"HEAD"):
                break
        return out


def _healthy(node: NodeProcess) -> None:
    assert node.alive(), node.logs()
    with KafkaConnection.to(node.bootstrap) as c:
        r = c.request(18, 3, {"client_software_name": "t", "client_software_version": "1"})
        assert r.error_code == ErrorCode.none
    reply = _http(node, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200") and b"odradek_requests_total" in reply
    text = node.log_path.read_text(errors="replace")
    assert "Traceback" not in text and "Exception calling application" not in text, text[-4000:]


# --- metrics HTTP port ---------------------------------------------------------------


def test_metrics_port_answers_only_metrics(one_voter: NodeProcess) -> None:
    assert _http(one_voter, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                 ).startswith(b"HTTP/1.1 404")
    assert _http(one_voter, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                 b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 405")
    head = _http(one_voter, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("garbage", [
    b"\x00\xff" * 500 + b"\r\n\r\n",
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"y" * 100_000 + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(5000)) + b"\r\n",
    b"GET /metrics HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"GET /metrics HTTP/9.9\r\n\r\n",
])
def test_metrics_port_refuses_malformed_requests(one_voter: NodeProcess,
                                                 garbage: bytes) -> None:
    with socket.create_connection(_address(one_voter, "metrics.listener"), timeout=10) as s:
        try:
            s.sendall(garbage)
        except (ConnectionResetError, BrokenPipeError):
            pass
        reply = b""
        try:
            reply = s.recv(100)
        except ConnectionResetError:
            pass
        assert not reply or reply[:10] in (b"HTTP/1.0 4", b"HTTP/1.1 4"), reply
        assert _closed_within(s, 2)
    _healthy(one_voter)


def test_metrics_port_closes_trickling_and_idle_clients(one_voter: NodeProcess) -> None:
    addr = _address(one_voter, "metrics.listener")
    idle = socket.create_connection(addr, timeout=10)
    slow = socket.create_connection(addr, timeout=10)
    started = time.monotonic()
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")

    def trickle() -> None:
        for _ in range(int(IDLE_TIMEOUT_S * 4)):
            try:
                slow.sendall(b"X-A: b\r\n")
            except OSError:
                return
            time.sleep(0.5)

    t = threading.Thread(target=trickle)
    t.start()
    assert _closed_within(idle, IDLE_TIMEOUT_S + 3)
    assert _closed_within(slow, IDLE_TIMEOUT_S + 3)
    assert time.monotonic() - started < IDLE_TIMEOUT_S + 4
    t.join()
    idle.close()
    slow.close()
    _healthy(one_voter)


def test_metrics_port_bounds_connections(one_voter: NodeProcess) -> None:
    addr = _address(one_voter, "metrics.listener")
    held = [socket.create_connection(addr, timeout=10) for _ in range(MAX_CONNECTIONS + 40)]
    try:
        # The ones past the limit are closed at once; the first ones are still open.
        assert all(_closed_within(s, 2) for s in held[-20:])
        held[0].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        held[0].settimeout(5)
        assert held[0].recv(20).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
    time.sleep(0.5)
    _healthy(one_voter)


# --- controller gRPC port --------------------------------------------------------------


@pytest.mark.parametrize("garbage", [
    bytes(random.Random(7).getrandbits(8) for _ in range(5000)),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00" + b"\xff" * 18
    + b"\xff\xff\xff\x01\x05\x00\x00\x00\x01" + b"\x00" * 64,
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x7f\xff\xff\x00\x00\x00\x00\x00\x00",
])
def test_grpc_port_closes_garbage(one_voter: NodeProcess, garbage: bytes) -> None:
    with socket.create_connection(_address(one_voter, "controller.listener"), timeout=10) as s:
        try:
            s.sendall(garbage)
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert _closed_within(s, 5)
    _healthy(one_voter)


def _methods() -> list[str]:
    out = []
    for module in (raft_pb2, controller_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            out += [f"/{service.full_name}/{m.name}" for m in service.methods]
    return out


def test_grpc_methods_refuse_garbage_payloads(one_voter: NodeProcess) -> None:
    """Random bytes as the serialized request of every method: an error status each time,
    never a crash or a traceback in the node's log."""
    host, port = _address(one_voter, "controller.listener")
    rng = random.Random(11)
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        for method in _methods():
            call = channel.unary_stream(method) if method.endswith("FetchMetadata") \
                else channel.unary_unary(method)
            for _ in range(30):
                payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300)))
                try:
                    reply = call(payload, timeout=5)
                    if method.endswith("FetchMetadata"):
                        next(iter(reply), None)
                except grpc.RpcError as e:
                    # Bytes that are not the method's message: INVALID_ARGUMENT
                    # (controller/rpc/registration.py), never grpc's UNKNOWN + traceback.
                    assert e.code() != grpc.StatusCode.UNKNOWN, (method, e.details())
    _healthy(one_voter)


def test_grpc_oversized_message_is_refused(one_voter: NodeProcess) -> None:
    host, port = _address(one_voter, "controller.listener")
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(f"{host}:{port}", options=options) as channel:
        send = channel.unary_unary("/odradek.raft.RaftService/Send")
        with pytest.raises(grpc.RpcError) as e:
            send(b"\x0a" + b"\xff" * 9 + b"x" * (MAX_MESSAGE_BYTES + 10), timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _healthy(one_voter)


def test_cluster_still_works_after(one_voter: NodeProcess, tmp_path: Path) -> None:
    with KafkaConnection.to(one_voter.bootstrap) as c:
        r = c.request(19, 7, {"topics": [{"name": "after-hostile", "num_partitions": 1,
                                          "replication_factor": 1}], "timeout": 5000})
        assert r.topics[0].error_code == ErrorCode.none
    _healthy(one_voter)

"""The benchmarks' Kafka peer (`python -m tests.bench.run --peer kafka`) without Java: the
server.properties each Kafka node gets (same settings as the Odradek cluster of that size,
KRaft layout, ports on 127.0.0.1), the JVM command lines, the run plan and the arguments
handed to each suite's process, the side-by-side rows, and the DescribeQuorum/CreateTopics
requests the suites send to Kafka nodes (against a fake node on a socket)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bench import run
from tests.bench.common import Compared, Report, compare_rows, config_default
from tests.bench.kafka_peer import (
    KafkaPeer,
    create_topic_at,
    describe_quorum_at,
    odradek_settings,
    parse_overrides,
    random_cluster_id,
    render_properties,
)
from tests.integration.harness import Cluster


@pytest.fixture
def peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KafkaPeer:
    """A peer whose jars directory and java exist only as names: nothing is run."""
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    (java_home / "bin" / "java").touch()
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    return KafkaPeer(tmp_path / "lib")


def _parse(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_combined_nodes_get_the_settings_of_the_odradek_cluster(peer: KafkaPeer,
                                                                tmp_path: Path) -> None:
    c = peer.cluster(tmp_path / "k", 3)
    odradek = Cluster(tmp_path / "o", 3).nodes[0].overrides
    assert [n.node_id for n in c.nodes] == [1, 2, 3] and c.controllers == []
    voters = {n.node_id: n.controller_port for n in c.nodes}
    for n in c.nodes:
        props = _parse(n.config_path.read_text())
        assert props == n.properties
        assert props["process.roles"] == "broker,controller"
        assert props["node.id"] == str(n.node_id)
        assert props["controller.quorum.voters"] == ",".join(
            f"{i}@127.0.0.1:{p}" for i, p in voters.items())
        assert props["listeners"] == (f"PLAINTEXT://127.0.0.1:{n.kafka_port},"
                                      f"CONTROLLER://127.0.0.1:{n.controller_port}")
        assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{n.kafka_port}"
        assert Path(props["log.dirs"]) == n.data_dir and n.data_dir.parent == tmp_path / "k"
        assert n.bootstrap == f"127.0.0.1:{n.kafka_port}"
        # The topic settings the issue names, as the Odradek cluster of the suite has them.
        assert props["default.replication.factor"] == str(odradek["default.replication.factor"])
        assert props["offsets.topic.replication.factor"] == str(
            odradek["offsets.topic.replication.factor"])
        assert props["min.insync.replicas"] == str(config_default("min.insync.replicas"))
        assert props["num.partitions"] == str(config_default("num.partitions"))
        # What the harness's nodes set over the defaults, and the liveness limits.
        for key in ("offsets.topic.num.partitions", "group.initial.rebalance.delay.ms",
                    "group.min.session.timeout.ms"):
            assert props[key] == str(odradek_settings(3)[key]), key
        for key in ("broker.session.timeout.ms", "broker.heartbeat.interval.ms",
                    "controller.quorum.election.timeout.ms"):
            assert props[key] == str(config_default(key)), key
    assert len({c.cluster_id} | {n.cluster_id for n in c.nodes}) == 1
    ports = [p for n in c.nodes for p in (n.kafka_port, n.controller_port)]
    assert len(set(ports)) == len(ports)
    assert c.bootstrap == ",".join(n.bootstrap for n in c.nodes)


def test_one_node_fits_the_internal_topics_to_one_broker(peer: KafkaPeer,
                                                         tmp_path: Path) -> None:
    props = peer.cluster(tmp_path, 1).nodes[0].properties
    assert props["controller.quorum.voters"].count("@") == 1
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
                "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "1", key


def test_dedicated_controllers(peer: KafkaPeer, tmp_path: Path) -> None:
    c = peer.cluster(tmp_path, 3, dedicated_controllers=3)
    assert [n.node_id for n in c.controllers] == [101, 102, 103]
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in c.controllers)
    for n in c.nodes:
        assert n.properties["process.roles"] == "broker"
        assert n.properties["listeners"] == f"PLAINTEXT://127.0.0.1:{n.kafka_port}"
        assert n.properties["controller.quorum.voters"] == voters
        assert n.controller_address is None
    for n in c.controllers:
        assert n.properties["process.roles"] == "controller"
        assert n.properties["listeners"] == f"CONTROLLER://127.0.0.1:{n.controller_port}"
        assert "advertised.listeners" not in n.properties
    assert c.bootstrap == ",".join(n.bootstrap for n in c.nodes)


def test_overrides_win_and_malformed_ones_are_refused(tmp_path: Path,
                                                      peer: KafkaPeer) -> None:
    pairs = parse_overrides(["broker.session.timeout.ms=9000", " num.io.threads = 4 "])
    assert pairs == (("broker.session.timeout.ms", "9000"), ("num.io.threads", "4"))
    props = KafkaPeer(peer.lib, overrides=pairs).cluster(tmp_path, 3).nodes[0].properties
    assert props["broker.session.timeout.ms"] == "9000" and props["num.io.threads"] == "4"
    for bad in ("no-equals", "=5"):
        with pytest.raises(ValueError):
            parse_overrides([bad])
    assert render_properties({"a": "1", "b.c": "x=y"}) == "a=1\nb.c=x=y\n"


def test_jvm_command_lines(peer: KafkaPeer, tmp_path: Path) -> None:
    n = peer.cluster(tmp_path, 3).nodes[1]
    argv = n.argv()
    assert argv[0] == str(tmp_path / "jdk" / "bin" / "java")
    assert "-Xmx1g" in argv and "-Xms1g" in argv and "-XX:+UseG1GC" in argv
    assert argv[argv.index("-cp") + 1] == f"{peer.lib}/*"
    assert argv[-2:] == ["kafka.Kafka", str(n.config_path)]
    assert f"-Dlog4j2.configurationFile={n.log4j_path}" in argv
    assert "rootLogger.level = INFO" in n.log4j_path.read_text()
    fmt = n.format_argv()
    assert fmt[fmt.index("kafka.tools.StorageTool"):] == [
        "kafka.tools.StorageTool", "format", "--cluster-id", n.cluster_id,
        "--config", str(n.config_path)]


def test_cluster_ids_read_as_kafka_prints_them() -> None:
    import base64

    for _ in range(50):
        cid = random_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_plan_and_budget() -> None:
    args = run.parse_args(["--suite", "single,startup"])
    assert args.peer is None and args.budget == run.BUDGET_S
    assert run.plan(args.suites, args.peer) == [run.Step("single"), run.Step("startup")]

    args = run.parse_args(["--suite", "single,startup,controller-dedicated,compaction",
                           "--peer", "kafka", "--kafka-config", "num.io.threads=4"])
    assert args.budget == run.PEER_BUDGET_S
    assert args.kafka_overrides == (("num.io.threads", "4"),)
    steps = run.plan(args.suites, args.peer)
    assert [s.label for s in steps] == [
        "single", "single on kafka", "startup", "controller-dedicated",
        "controller-dedicated on kafka", "compaction"]
    assert [s.key for s in steps[3:5]] == ["controller_dedicated",
                                            "kafka_controller_dedicated"]
    assert run.parse_args(["--peer", "kafka", "--budget", "60"]).budget == 60
    with pytest.raises(SystemExit):
        run.parse_args(["--peer", "redpanda"])
    with pytest.raises(SystemExit):
        run.parse_args(["--peer", "kafka", "--kafka-config", "oops"])


def test_suite_process_arguments(tmp_path: Path) -> None:
    argv = ["--suite", "single", "--peer", "kafka"]
    lib = tmp_path / "lib"
    cmd = run.child_argv(run.Step("single", "kafka"), argv, tmp_path, 400.0, 900.0,
                         tmp_path / "o.json", lib)
    args = run.parse_args(cmd[3:])
    assert (args.child, args.child_peer, Path(args.kafka_lib)) == ("single", "kafka", lib)
    peer = run.kafka_peer(args)
    assert peer.lib == lib and peer.version == run.KAFKA_VERSION
    plain = run.parse_args(run.child_argv(run.Step("single"), argv, tmp_path, 1, 1,
                                          tmp_path / "o.json")[3:])
    assert plain.child_peer is None
    assert set(run.NO_PEER) == {"startup", "compaction", "security"}
    for name in ("single", "replication", "controller", "controller-dedicated"):
        assert run.compared(name), name


def test_peer_report_and_side_by_side_rows(tmp_path: Path) -> None:
    child = Report(sink=tmp_path / "k.json", figure_prefix="kafka_",
                   section_suffix=" on apache kafka 4.1.1")
    child.section("single broker")
    child.figure("produce_mb_s", 300.0)
    child.figure("failover_kill_ms", [900, None, 1100, 1300])
    child.figure("rss_mib", {"1": 400.0, "2": 500.0})
    parent = Report()
    parent.figure("produce_mb_s", 120.0)
    parent.figure("failover_kill_ms", [400, 600])
    parent.figure("rss_mib", {"1": 90.0, "2": 110.0})
    parent.figure("timeout_ms", 2000)
    parent.figure("records", 12106)
    child.figure("records", 12150)
    parent.figure("rate", 10.0)
    child.figure("rate", 5.0)
    parent.figure("p99_ms", 20.0)
    child.figure("p99_ms", 40.0)
    assert parent.merge_file(tmp_path / "k.json")
    assert parent.rows == [("[single broker on apache kafka 4.1.1]", "")]
    specs = [Compared("produce_mb_s", "produce", "MB/s"),
             Compared("failover_kill_ms", "failover", "ms", 0, "median"),
             Compared("rss_mib", "RSS", "MiB", 0, "sum"),
             Compared("timeout_ms", "timeout", "ms", 0, ratio=False),
             Compared("records", "records", "", 0, ratio=False),
             Compared("p99_ms", "p99", "ms", same="rate"),
             Compared("never_measured", "nothing", "s")]
    ratios = compare_rows(parent, "single: odradek vs kafka", specs, parent.figures)
    assert parent.rows[1:] == [
        ("[single: odradek vs kafka]", ""),
        ("produce", "odradek 120.0 MB/s | kafka 300.0 MB/s (0.40x)"),
        ("failover", "odradek 500 ms | kafka 1,100 ms (0.45x)"),
        ("RSS", "odradek 200 MiB | kafka 900 MiB (0.22x)"),
        ("timeout", "odradek 2,000 ms | kafka -"),
        ("records", "odradek 12,106 | kafka 12,150"),
        ("p99", "odradek 20.0 ms | kafka 40.0 ms (no ratio: rate differs)"),
    ]
    assert ratios == {"produce_mb_s": 0.4, "failover_kill_ms": 0.455, "rss_mib": 0.222}


@pytest.fixture
def fake_node() -> Iterator[tuple[int, list[Any]]]:
    """A socket that answers DescribeQuorum and CreateTopics as a Kafka node would; the
    requests it decoded are in the list."""
    from kafka.protocol.admin.cluster import DescribeQuorumRequest, DescribeQuorumResponse
    from kafka.protocol.admin.topics import CreateTopicsRequest, CreateTopicsResponse

    seen: list[Any] = []
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer(conn: socket.socket) -> None:
        with conn:
            size = int.from_bytes(conn.recv(4, socket.MSG_WAITALL), "big")
            data = conn.recv(size, socket.MSG_WAITALL)
            api_key, version = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big")
            if api_key == DescribeQuorumRequest.API_KEY:
                req = DescribeQuorumRequest.decode(data, version=version, header=True)
                part = DescribeQuorumResponse.TopicData.PartitionData(
                    partition_index=0, error_code=0, leader_id=2, leader_epoch=7,
                    high_watermark=42, current_voters=[], observers=[])
                resp: Any = DescribeQuorumResponse(error_code=0, topics=[
                    DescribeQuorumResponse.TopicData(topic_name="__cluster_metadata",
                                                     partitions=[part])])
            else:
                req = CreateTopicsRequest.decode(data, version=version, header=True)
                resp = CreateTopicsResponse(throttle_time_ms=0, topics=[
                    CreateTopicsResponse.CreatableTopicResult(
                        name=req.topics[0].name, error_code=36, num_partitions=-1,
                        replication_factor=-1, configs=[])])
            seen.append(req)
            resp.API_VERSION = version
            resp.with_header(correlation_id=req.header.correlation_id)
            conn.sendall(resp.encode(header=True, framed=True))

    stop = threading.Event()
    server.settimeout(0.05)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, seen
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_describe_quorum_and_create_topics_requests(fake_node: tuple[int, list[Any]]) -> None:
    port, seen = fake_node
    assert describe_quorum_at("127.0.0.1", port, timeout=5) == (2, 7, 42)
    q = seen[-1]
    assert q.topics[0].topic_name == "__cluster_metadata"
    assert q.topics[0].partitions[0].partition_index == 0
    assert create_topic_at(f"127.0.0.1:{port}", "probe-1", 1, 1, 5) == 36
    t = seen[-1].topics[0]
    assert (t.name, t.num_partitions, t.replication_factor) == ("probe-1", 1, 1)
    assert seen[-1].timeout_ms == 5000

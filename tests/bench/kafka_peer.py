"""Apache Kafka 4.x in KRaft mode as the benchmarks' peer (`python -m tests.bench.run --peer
kafka`): the same workloads against N Kafka processes on this machine, in the same run.

A ``KafkaCluster`` has the surface the suites use from the harness's ``Cluster``: a
bootstrap string, ``nodes`` (and ``controllers`` when the quorum is dedicated) with
``node_id``, ``proc``, ``pid``, ``kill()``, ``stop()``, ``start()``, ``alive()``, ``logs()``,
and ``start()``, ``kill_all()``, ``logs()`` on the cluster. Each node is one
``java -cp '<lib>/*' kafka.Kafka server.properties`` with Kafka's own default JVM options
(1 GiB heap, G1), ports free on 127.0.0.1, and a data dir formatted by Kafka's storage tool
with one cluster id. The jars come from Maven Central through tests/compat/fetch_kafka.sh.

Settings: every key Kafka shares with Odradek is taken from the Odradek cluster the suite
starts with as many nodes (its node's configuration file over the node's defaults): topic
defaults (replication factor, min.insync.replicas, partitions), the offsets topic, segment,
retention and flush settings, group settings, and the liveness timeouts (broker session and
heartbeat, Raft election), so failover figures compare the same configured limits.
``--kafka-config KEY=VALUE`` overrides any server property.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from tests.bench.common import QuorumView, config_defaults, unfenced_brokers
from tests.helpers import read_frame
from tests.integration.harness import REPO, Cluster, NodeProcess, free_port, in_parallel

KAFKA_VERSION = "4.1.1"
FETCH_SCRIPT = REPO / "tests" / "compat" / "fetch_kafka.sh"

# kafka-server-start.sh's heap and kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS: the
# broker runs as its own scripts would start it.
JVM_OPTS = ("-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true")
DEFAULT_HEAP = "1g"

# Server properties with the same name and meaning in Odradek's node configuration.
SHARED_KEYS = (
    "num.partitions", "default.replication.factor", "min.insync.replicas",
    "auto.create.topics.enable", "message.max.bytes",
    "log.segment.bytes", "log.retention.ms", "log.retention.bytes",
    "log.flush.interval.messages", "log.flush.interval.ms",
    "offsets.topic.num.partitions", "offsets.topic.replication.factor",
    "offsets.topic.segment.bytes", "offsets.retention.minutes",
    "group.initial.rebalance.delay.ms", "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "broker.session.timeout.ms", "broker.heartbeat.interval.ms",
    "controller.quorum.election.timeout.ms",
)

# Kafka's log4j2.yaml logs at INFO with the request loggers at WARN; here to one stream
# (the node's log file), without the separate files.
LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.channel.name = kafka.network.RequestChannel$
logger.channel.level = WARN
"""


def fetch_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory of the broker's jars (downloaded once, then cached under
    .ci/cache/kafka-broker-<version>/lib)."""
    if shutil.which("mvn") is None and not (REPO / ".ci" / "cache" /
                                             f"kafka-broker-{version}" / ".complete").exists():
        raise RuntimeError("Maven (mvn) is needed to fetch the Kafka broker's jars "
                           "(apt-get install maven)")
    out = subprocess.run(["bash", str(FETCH_SCRIPT), "broker"], capture_output=True, text=True,
                         env={**os.environ, "KAFKA_TOOLS_VERSION": version}, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{FETCH_SCRIPT.name} broker failed ({out.returncode}): "
                           f"{out.stderr.strip()[-1500:]}")
    lib = Path(out.stdout.strip().splitlines()[-1])
    if not any(lib.glob("kafka_2.13-*.jar")):
        raise RuntimeError(f"no kafka_2.13 jar in {lib}")
    return lib


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise RuntimeError("java (17 or later) is needed to run Kafka: install a JDK or set "
                           "JAVA_HOME")
    return java


def random_cluster_id() -> str:
    """What `kafka-storage random-uuid` prints: 16 random bytes, URL-safe base64 without
    padding, never starting with '-' (Kafka rerolls those too: they read as options)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@functools.cache
def odradek_settings(n: int) -> dict[str, Any]:
    """Node 1's settings in the Odradek cluster a suite starts with ``n`` nodes (a lone
    NodeProcess for one node, the harness's Cluster for more), over the node's defaults.

    Read from the configuration file the harness writes (nothing is started), so the
    Kafka peer follows whatever the harness sets."""
    with tempfile.TemporaryDirectory(prefix="odradek-bench-settings-") as tmp:
        node = NodeProcess(Path(tmp)) if n == 1 else Cluster(Path(tmp), n).nodes[0]
        written = yaml.safe_load(node.config_path.read_text())
    return {**config_defaults(), **written}


def _prop(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def shared_settings(n: int, odradek: Mapping[str, Any]) -> dict[str, str]:
    """Kafka server properties for ``n`` brokers from Odradek's settings ``odradek``."""
    out = {k: _prop(odradek[k]) for k in SHARED_KEYS if odradek.get(k) is not None}
    # A node caps the offsets topic's replication factor at the brokers it has (Odradek
    # does at creation time); Kafka would refuse to create it, so cap it here.
    out["offsets.topic.replication.factor"] = str(
        min(int(odradek["offsets.topic.replication.factor"]), n))
    # Kafka's other internal topics (not used by the workloads) must fit n brokers too.
    rf = min(3, n)
    out.update({"transaction.state.log.replication.factor": str(rf),
                "transaction.state.log.min.isr": str(min(2, rf)),
                "share.coordinator.state.topic.replication.factor": str(rf),
                "share.coordinator.state.topic.min.isr": str(min(2, rf))})
    return out


def parse_overrides(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` strings (--kafka-config) as pairs; a malformed one is an error."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--kafka-config expects KEY=VALUE, got {item!r}")
        out.append((key.strip(), value.strip()))
    return tuple(out)


@dataclass(frozen=True)
class KafkaPeer:
    """How the suites start Kafka: its jars, heap and server property overrides."""

    lib: Path
    version: str = KAFKA_VERSION
    heap: str = DEFAULT_HEAP
    overrides: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"apache kafka {self.version}"

    def settings(self, n: int) -> dict[str, str]:
        """The settings every node of an ``n``-broker cluster gets (ports aside)."""
        return {**shared_settings(n, odradek_settings(n)), **dict(self.overrides)}

    def setting(self, n: int, key: str) -> int:
        return int(self.settings(n)[key])

    def cluster(self, base: Path, n: int = 3, dedicated_controllers: int = 0) -> KafkaCluster:
        return KafkaCluster(base, n, self, dedicated_controllers=dedicated_controllers)


def server_properties(node_id: int, roles: str, kafka_port: int | None,
                      controller_port: int | None, voters: Mapping[int, int],
                      log_dir: Path, settings: Mapping[str, str],
                      host: str = "127.0.0.1") -> dict[str, str]:
    """One node's server.properties (KRaft, static voters, PLAINTEXT on ``host``)."""
    listeners = []
    if "broker" in roles:
        assert kafka_port, "a broker needs a Kafka port"
        listeners.append(f"PLAINTEXT://{host}:{kafka_port}")
    if "controller" in roles:
        assert controller_port, "a controller needs a controller port"
        listeners.append(f"CONTROLLER://{host}:{controller_port}")
    props = {
        "process.roles": roles,
        "node.id": str(node_id),
        "controller.quorum.voters": ",".join(f"{i}@{host}:{p}" for i, p in voters.items()),
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join(listeners),
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
    }
    if "broker" in roles:
        props["advertised.listeners"] = f"PLAINTEXT://{host}:{kafka_port}"
        props["inter.broker.listener.name"] = "PLAINTEXT"
    props.update(settings)
    return props


def render_properties(props: Mapping[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in props.items())


_live: weakref.WeakSet[KafkaNode] = weakref.WeakSet()


@atexit.register
def kill_started_nodes() -> None:
    """SIGKILL every Kafka process this process started and has not stopped. (In a
    benchmark run the suite's process group is killed at its end as well: the JVMs stay
    in it.)"""
    for node in list(_live):
        node.kill()


@dataclass(eq=False)
class KafkaNode:
    """One Kafka process: its server.properties, data dir, log file and process."""

    base: Path
    node_id: int
    roles: str
    peer: KafkaPeer
    cluster_id: str
    voters: dict[int, int]
    settings: dict[str, str]
    controller_port: int | None = None
    kafka_port: int = 0
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if "broker" in self.roles and not self.kafka_port:
            self.kafka_port = free_port()
        self.data_dir = self.base / f"kafka-{self.node_id}"
        self.config_path = self.base / f"kafka-{self.node_id}.properties"
        self.log_path = self.base / f"kafka-{self.node_id}.log"
        self.log4j_path = self.base / "kafka-log4j2.properties"
        self.properties = server_properties(
            self.node_id, self.roles, self.kafka_port or None, self.controller_port,
            self.voters, self.data_dir, self.settings, self.host)
        self.config_path.write_text(render_properties(self.properties))
        self.log4j_path.write_text(LOG4J2)

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def controller_address(self) -> str | None:
        return f"{self.host}:{self.controller_port}" if self.controller_port else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _java(self, heap: str) -> list[str]:
        return [java_binary(), f"-Xmx{heap}", f"-Xms{heap}", *JVM_OPTS,
                f"-Dlog4j2.configurationFile={self.log4j_path}",
                "-cp", f"{self.peer.lib}/*"]

    def argv(self) -> list[str]:
        return [*self._java(self.peer.heap), "kafka.Kafka", str(self.config_path)]

    def format_argv(self) -> list[str]:
        # kafka-storage.sh runs with kafka-run-class.sh's default 256 MiB heap.
        return [*self._java("256m"), "kafka.tools.StorageTool", "format",
                "--cluster-id", self.cluster_id, "--config", str(self.config_path)]

    def format(self) -> None:
        """`kafka-storage format` once: the data dir gets the cluster id and its
        meta.properties (a node restarted later keeps its data)."""
        if (self.data_dir / "meta.properties").exists():
            return
        out = subprocess.run(self.format_argv(), capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"kafka-storage format of node {self.node_id} failed "
                               f"({out.returncode}):\n{(out.stdout + out.stderr)[-3000:]}")

    def start(self, timeout: float = 120.0) -> KafkaNode:
        """Start the process and wait until it serves: a broker until it is registered and
        unfenced (as it answers DescribeCluster itself), a controller-only node until its
        controller listener accepts."""
        self.format()
        start_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            # Not a new session: the JVM stays in the suite's process group, which the
            # benchmark runner kills at the suite's end whatever happens to this process.
            self.proc = _spawn(self.argv(), log)
        _live.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafka node {self.node_id} exited with "
                                   f"{self.proc.returncode}:\n{self.logs(since=start_at)}")
            if self.ready():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"kafka node {self.node_id} not ready after {timeout:.0f} s:\n"
                           f"{self.logs(since=start_at)}")

    def ready(self) -> bool:
        if not self.is_broker:
            return _accepts(self.host, self.controller_port or 0)
        if not _accepts(self.host, self.kafka_port):
            return False
        try:
            return self.node_id in unfenced_brokers(self.bootstrap, timeout=5)
        except Exception:  # noqa: BLE001 - not serving yet
            return False

    def logs(self, tail: int = 8000, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")[-tail:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        _live.discard(self)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: Kafka's controlled shutdown (leaderships moved first)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
            finally:
                _live.discard(self)
        return self.proc.returncode if self.proc else 0

    def quorum_view(self, timeout: float = 1.0) -> QuorumView | None:
        """The metadata quorum as this node's controller listener describes it: only the
        active controller answers DescribeQuorum (others: NOT_LEADER_OR_FOLLOWER)."""
        if not self.controller_port or not self.alive():
            return None
        try:
            part = describe_quorum_at(self.host, self.controller_port, timeout)
        except (OSError, ValueError, EOFError):
            return None
        if part is None:
            return None
        leader, epoch, hw = part
        # Offsets of the metadata log count records (Odradek's committed_record_offset is
        # the last one applied); the high watermark is one past the last committed.
        return QuorumView(leader, epoch, hw, hw - 1, self.node_id)


def _spawn(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def _accepts(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def request(host: str, port: int, req: Any, response: Any, version: int,
            timeout: float) -> Any:
    """Send one request to the node at host:port over a connection of its own and decode
    the answer (kafka-python's codec). Client libraries pick the node themselves (the
    "controller" of their metadata); here the caller does."""
    req.API_VERSION = version
    req.with_header(correlation_id=1, client_id="odradek-bench")
    data = req.encode(version=version, header=True, framed=True)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(data)
        return response.decode(read_frame(s), version=version, header=True)


def describe_quorum_at(host: str, port: int, timeout: float = 1.0
                       ) -> tuple[int, int, int] | None:
    """(leader id, leader epoch, high watermark) of __cluster_metadata from the
    DescribeQuorum (API key 55) answer of the controller at host:port; None when it is not
    the leader."""
    from kafka.protocol.admin.cluster import DescribeQuorumRequest, DescribeQuorumResponse

    topic = DescribeQuorumRequest.TopicData
    resp = request(host, port, DescribeQuorumRequest(topics=[topic(
        topic_name="__cluster_metadata", partitions=[topic.PartitionData(partition_index=0)])]),
        DescribeQuorumResponse, 1, timeout)
    if resp.error_code:
        return None
    part = resp.topics[0].partitions[0]
    if part.error_code:
        return None
    return part.leader_id, part.leader_epoch, part.high_watermark


def create_topic_at(address: str, name: str, partitions: int, replication_factor: int,
                    timeout: float) -> int:
    """CreateTopics for one topic sent to the broker at ``address`` (host:port), which
    forwards it to the active controller; the topic's error code (0: committed)."""
    from kafka.protocol.admin.topics import CreateTopicsRequest, CreateTopicsResponse

    host, _, port = address.rpartition(":")
    topic = CreateTopicsRequest.CreatableTopic
    resp = request(host, int(port), CreateTopicsRequest(
        topics=[topic(name=name, num_partitions=partitions,
                      replication_factor=replication_factor, assignments=[], configs=[])],
        timeout_ms=int(timeout * 1000), validate_only=False),
        CreateTopicsResponse, 5, timeout + 1)
    return int(resp.topics[0].error_code)


class KafkaCluster:
    """N Kafka nodes in KRaft mode: combined broker+controller nodes (ids 1..n), or with
    ``dedicated_controllers`` that many controller-only nodes (ids 101, ...) and n brokers,
    as the harness's Cluster lays them out."""

    def __init__(self, base: Path, n: int, peer: KafkaPeer, dedicated_controllers: int = 0,
                 host: str = "127.0.0.1") -> None:
        self.base = base
        self.peer = peer
        self.cluster_id = random_cluster_id()
        controller_ids = ([101 + i for i in range(dedicated_controllers)]
                          if dedicated_controllers else [i + 1 for i in range(n)])
        voters = {i: free_port() for i in controller_ids}
        settings = peer.settings(n)
        roles = "broker" if dedicated_controllers else "broker,controller"

        def node(node_id: int, roles: str) -> KafkaNode:
            return KafkaNode(base, node_id, roles, peer, self.cluster_id, voters, settings,
                             controller_port=voters.get(node_id) if "controller" in roles
                             else None, host=host)

        self.nodes = [node(i + 1, roles) for i in range(n)]
        self.controllers = [node(i, "controller") for i in controller_ids
                            if dedicated_controllers]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def all_nodes(self) -> list[KafkaNode]:
        return self.controllers + self.nodes

    def node(self, node_id: int) -> KafkaNode:
        for n in self.all_nodes():
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id} in this cluster")

    def start(self, timeout: float = 180.0) -> KafkaCluster:
        """Format and start every node at once (brokers wait for the controller quorum) and
        wait until every broker is registered and unfenced."""
        in_parallel(lambda n: n.start(timeout), self.all_nodes(), on_error=self.kill_all)
        deadline = time.monotonic() + timeout
        want = {n.node_id for n in self.nodes}
        seen: set[int] = set()
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                seen = unfenced_brokers(self.bootstrap, timeout=5)
                if want <= seen:
                    return self
            time.sleep(0.2)
        self.kill_all()
        raise TimeoutError(f"kafka brokers {sorted(want - seen)} not unfenced after "
                           f"{timeout:.0f} s:\n{self.logs()}")

    def kill_all(self) -> None:
        for n in self.all_nodes():
            n.kill()

    def stop_all(self, timeout: float = 30.0) -> None:
        for n in reversed(self.nodes):
            n.stop(timeout)
        for n in self.controllers:
            n.stop(timeout)

    def logs(self) -> str:
        return "\n".join(f"--- kafka node {n.node_id} ---\n{n.logs()}" for n in self.all_nodes())

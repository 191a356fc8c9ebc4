"""A real Odradek cluster for an application's tests: start it, break it, read from it.

``OdradekCluster`` runs ordinary ``odradek node`` processes on 127.0.0.1 (the same ones
``odradek cluster up`` runs), so the application under test talks to the real Kafka protocol
with its real client library. The helpers go through the Kafka protocol as well (kafka-python,
which Odradek installs anyway), so what they see is what any client sees.

Usable with or without pytest::

    with OdradekCluster(nodes=3) as cluster:
        cluster.create_topic("orders", partitions=3)
        run_my_app(bootstrap=cluster.bootstrap)

Every node is a child of this process: SIGKILLed when it exits (atexit) or is sent SIGTERM,
and stopping on its own within about a second if this process dies without a chance to
clean up (SIGKILL), so an interrupted test run leaves no node behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from odradek.broker.local_cluster import LocalCluster, NodeProcess, kill_started_nodes

__all__ = ["ClusterSpec", "NodeProcess", "OdradekCluster", "OdradekClusterError",
           "PartitionState", "Record", "unique_name"]

T = TypeVar("T")

# Kafka's rule for topic names; group ids may hold anything, the same shape keeps them
# readable in logs and CLI output.
_NOT_LEGAL = re.compile(r"[^a-zA-Z0-9._-]+")


def unique_name(prefix: str, max_len: int = 200) -> str:
    """``prefix`` made a legal topic name plus a random suffix: two tests, two runs or two
    pytest-xdist workers sharing one cluster never see each other's topics or groups."""
    base = _NOT_LEGAL.sub("_", prefix).strip("_.") or "odradek"
    return f"{base[:max_len]}-{uuid.uuid4().hex[:8]}"


class OdradekClusterError(RuntimeError):
    """The cluster could not do what a test asked (start, elect a leader, ...); the message
    says what happened and ends with the tail of the node logs that explain it."""


@dataclass(frozen=True)
class ClusterSpec:
    """What a cluster looks like: equal specs share one running cluster in a test session.

    ``config`` holds node configuration keys (docs/configuration.md) applied to every node;
    it is kept as sorted pairs so a spec can be a dictionary key. ``data_dir``: where the
    nodes' data and logs go (each cluster in a fresh subdirectory, kept after the run);
    None puts them in a temporary directory that is removed when the cluster stops."""

    nodes: int = 1
    config: tuple[tuple[str, Any], ...] = ()
    data_dir: str | None = None

    @classmethod
    def of(cls, nodes: int = 1, config: Mapping[str, Any] | None = None,
           data_dir: str | os.PathLike[str] | None = None) -> ClusterSpec:
        if not isinstance(nodes, int) or nodes < 1:
            raise ValueError(f"an Odradek cluster needs at least one node, not {nodes!r}")
        return cls(nodes, tuple(sorted((config or {}).items())),
                   str(data_dir) if data_dir is not None else None)

    @property
    def config_dict(self) -> dict[str, Any]:
        return dict(self.config)

    @property
    def id(self) -> str:
        """Short label for test ids: ``odradek-3n`` or ``odradek-1n-<hash of the config>``."""
        label = f"odradek-{self.nodes}n"
        if self.config or self.data_dir:
            label += f"-{abs(hash((self.config, self.data_dir))) % 10**6:06d}"
        return label


@dataclass(frozen=True)
class Record:
    """One record as a consumer sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = -1


@dataclass(frozen=True)
class PartitionState:
    """A partition as the cluster's metadata shows it to clients (-1: no leader)."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def isr_full(self) -> bool:
        return self.leader >= 0 and set(self.isr) == set(self.replicas)


@dataclass
class _Owned:
    """What stop() must undo: the temporary directory this object created, if any."""

    temp_dir: Path | None = None
    admin: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class OdradekCluster:
    """``nodes`` combined controller+broker nodes (ids 1..n) on 127.0.0.1 with free ports.

    ``config`` adds node configuration keys to every node, on top of defaults that suit tests
    (a consumer group's first rebalance without the 3 s wait, short minimum session
    timeouts, few ``__consumer_offsets`` and ``__transaction_state`` partitions, replication factor min(3, nodes)).
    ``data_dir``: the nodes' data and logs go into a fresh subdirectory of it, kept
    afterwards for inspection; by default a temporary directory, removed by stop().
    ``clean_stop``: whether stop() shuts nodes down cleanly (SIGTERM: logs flushed,
    leaderships handed over) rather than killing them; by default only with a ``data_dir``.
    """

    TEST_DEFAULTS: Mapping[str, Any] = {
        "group.initial.rebalance.delay.ms": 0,
        "group.min.session.timeout.ms": 500,
        "offsets.topic.num.partitions": 5,
        "transaction.state.log.num.partitions": 5,
    }

    def __init__(self, nodes: int = 1, config: Mapping[str, Any] | None = None,
                 data_dir: str | os.PathLike[str] | None = None, *,
                 start_timeout: float = 60.0, clean_stop: bool | None = None) -> None:
        self.spec = ClusterSpec.of(nodes, config, data_dir)
        self.start_timeout = start_timeout
        self.clean_stop = data_dir is not None if clean_stop is None else clean_stop
        self._owned = _Owned()
        if data_dir is None:
            self._owned.temp_dir = Path(tempfile.mkdtemp(prefix="odradek-test-"))
            self.base = self._owned.temp_dir
        else:
            parent = Path(data_dir)
            parent.mkdir(parents=True, exist_ok=True)
            # A fresh subdirectory: never reuse (or delete) what is already there.
            self.base = Path(tempfile.mkdtemp(prefix=f"cluster-{nodes}n-", dir=parent))
        self._overrides = {**self.TEST_DEFAULTS, **(config or {})}
        self._local = LocalCluster(self.base, n=nodes, overrides=self._overrides)
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> OdradekCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> OdradekCluster:
        """Start every node and return once all serve Kafka clients (a node's Kafka port
        opens only once it has joined the cluster, so a client connecting now can produce)."""
        if self._started:
            return self
        _kill_nodes_on_sigterm()
        error: BaseException | None = None
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._local.start(self.start_timeout)
                self._started = True
                return self
            except (RuntimeError, TimeoutError, OSError) as e:
                self._local.kill_all()
                error = e
            # Free ports are drawn at random and checked, but another process (another xdist
            # worker) may bind one before the node does: start over on new ports, in a
            # directory of its own (the first attempt's quorum knows the old addresses).
            logs = self._local.logs().lower()
            if attempt == _START_ATTEMPTS or not any(
                    s in logs for s in ("address already in use", "failed to bind")):
                break
            self._local = LocalCluster(self.base / f"attempt-{attempt + 1}",
                                       n=self.spec.nodes, overrides=self._overrides)
        raise OdradekClusterError(
            f"the Odradek cluster ({self.spec.nodes} node(s), data in {self.base}) did not "
            f"start: {_first_line(error) if error else 'no reason given'}\nIf the machine is "
            "very slow, raise the start timeout (--odradek-start-timeout, or "
            "OdradekCluster(start_timeout=...)); otherwise the node logs below say why.\n"
            f"{self.logs()}") from error

    def stop(self) -> None:
        """Stop every node: cleanly or by SIGKILL (``clean_stop``); a temporary data
        directory is removed, a ``data_dir`` stays."""
        with self._owned.lock:
            if self._owned.admin is not None:
                with contextlib.suppress(Exception):
                    self._owned.admin.close()
                self._owned.admin = None
        if self.clean_stop and self._started:
            try:
                self._local.stop_all(timeout=15)
            except Exception:  # noqa: BLE001 - a node that will not stop is killed below
                pass
        self._local.kill_all()
        self._started = False
        if self._owned.temp_dir is not None:
            shutil.rmtree(self._owned.temp_dir, ignore_errors=True)

    # ------------------------------------------------------------------ nodes

    @property
    def bootstrap(self) -> str:
        """``host:port,host:port,...`` of every node: what a client's bootstrap.servers
        wants."""
        return self._local.bootstrap

    @property
    def nodes(self) -> list[NodeProcess]:
        return list(self._local.nodes)

    def node(self, node: int | NodeProcess) -> NodeProcess:
        """The node with this id (1..n), or the node itself."""
        if isinstance(node, NodeProcess):
            return node
        return self._local.node(node)

    def kill(self, node: int | NodeProcess) -> NodeProcess:
        """SIGKILL the node, as in a crash: no controlled shutdown. The cluster notices
        when its session times out (``broker.session.timeout.ms``, 2 s by default) and
        moves its leaderships; ``wait_for_leader(..., not_on=node)`` waits for that."""
        n = self.node(node)
        n.kill()
        return n

    def pause(self, node: int | NodeProcess) -> NodeProcess:
        """SIGSTOP the node: it hangs with its connections open (a long GC pause, a stuck
        disk), which clients see as timeouts rather than refused connections."""
        n = self.node(node)
        n.pause()
        return n

    def resume(self, node: int | NodeProcess) -> NodeProcess:
        """SIGCONT a paused node."""
        n = self.node(node)
        n.resume()
        return n

    def stop_node(self, node: int | NodeProcess) -> NodeProcess:
        """SIGTERM the node: a clean shutdown, its leaderships handed over first."""
        n = self.node(node)
        n.stop()
        return n

    def restart(self, node: int | NodeProcess) -> NodeProcess:
        """Start a killed or stopped node again with its data (kills it first if it is
        running), and wait until it serves clients."""
        n = self.node(node)
        try:
            return n.restart(self.start_timeout)
        except (RuntimeError, TimeoutError) as e:
            raise OdradekClusterError(f"node {n.node_id} did not start again: "
                                      f"{_first_line(e)}\n{self._node_log(n)}") from e

    def revive(self) -> list[NodeProcess]:
        """Resume paused nodes and restart dead ones: what a test that breaks nodes leaves
        behind is repaired before the next test gets the shared cluster. Returns the nodes
        it touched."""
        touched = []
        for n in self._local.nodes:
            if not self._started:
                break
            if n.paused:
                n.resume()
                touched.append(n)
            elif not n.alive():
                self.restart(n)
                touched.append(n)
        return touched

    # ------------------------------------------------------------------ topics

    def admin(self) -> Any:
        """A kafka-python ``KafkaAdminClient`` on this cluster, shared and closed by stop()."""
        with self._owned.lock:
            if self._owned.admin is None:
                KafkaAdminClient = _kafka().admin.KafkaAdminClient
                self._owned.admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, client_id="odradek-testing",
                    request_timeout_ms=10_000)
            return self._owned.admin

    def create_topic(self, name: str, partitions: int = 1,
                     replication_factor: int | None = None,
                     config: Mapping[str, str] | None = None, *,
                     timeout: float = 30.0) -> str:
        """Create a topic with CreateTopics, as an application's admin client would, and wait
        until every partition has a leader (before that, produce requests would be refused
        with retriable errors). ``replication_factor`` defaults to min(3, nodes)."""
        self.create_topics({name: partitions}, replication_factor, config, timeout=timeout)
        return name

    def create_topics(self, topics: Mapping[str, int] | Iterable[str],
                      replication_factor: int | None = None,
                      config: Mapping[str, str] | None = None, *,
                      timeout: float = 30.0) -> list[str]:
        """Create several topics at once (``{name: partitions}``, or names for one partition
        each) and wait until each partition has a leader."""
        NewTopic = _kafka().admin.NewTopic
        wanted = dict(topics) if isinstance(topics, Mapping) else {t: 1 for t in topics}
        rf = replication_factor or min(3, self.spec.nodes)
        new = [NewTopic(name, n, rf, topic_configs=dict(config or {}))
               for name, n in wanted.items()]
        response = _retry(lambda: self.admin().create_topics(new, raise_errors=False),
                          timeout, "CreateTopics to answer")
        for name, code, message in _topic_errors(response):
            # 36: TOPIC_ALREADY_EXISTS (a retry of a request whose answer was lost).
            if code not in (0, 36):
                raise OdradekClusterError(f"cannot create topic {name!r}: error {code} "
                                          f"{message or ''}".rstrip())
        for name, n in wanted.items():
            for p in range(n):
                self.wait_for_leader(name, p, timeout=timeout)
        return list(wanted)

    def partitions(self, topic: str) -> list[PartitionState]:
        """Leader, replicas and ISR of each partition, from a fresh Metadata request."""
        (described,) = self.admin().describe_topics([topic])
        if described.get("error_code", 0) not in (0, None):
            raise OdradekClusterError(f"topic {topic!r}: error {described['error_code']} "
                                      "(does it exist? create_topic() makes it)")
        return sorted((PartitionState(topic, p["partition_index"], p["leader_id"],
                                      tuple(p["replica_nodes"]), tuple(p["isr_nodes"]))
                       for p in described["partitions"]), key=lambda s: s.partition)

    def partition(self, topic: str, partition: int = 0) -> PartitionState:
        for state in self.partitions(topic):
            if state.partition == partition:
                return state
        raise OdradekClusterError(f"topic {topic!r} has no partition {partition}")

    def leader_of(self, topic: str, partition: int = 0) -> NodeProcess | None:
        """The node the metadata names leader of the partition now, None if none. Right
        after a SIGKILL this is still the dead node until its session expires: use
        ``wait_for_leader(..., not_on=...)`` to wait for the move."""
        leader = self.partition(topic, partition).leader
        return self.node(leader) if leader >= 0 else None

    def wait_for_leader(self, topic: str, partition: int = 0, *, timeout: float = 30.0,
                        not_on: int | NodeProcess | None = None) -> NodeProcess:
        """Wait until the partition has a leader that is a running node (and is not
        ``not_on``, e.g. the node just killed) and return it."""
        avoid = self.node(not_on).node_id if not_on is not None else None

        def check() -> NodeProcess | None:
            leader = self.leader_of(topic, partition)
            if leader is None or leader.node_id == avoid or not leader.alive() or leader.paused:
                return None
            return leader

        return self._wait(check, timeout, f"a leader of {topic}-{partition}"
                          + (f" other than node {avoid}" if avoid is not None else ""))

    def wait_for_full_isr(self, topic: str, partition: int | None = None, *,
                          timeout: float = 60.0) -> list[PartitionState]:
        """Wait until every replica of the partition (of every partition, if None) is in
        sync again, e.g. after a killed node has been restarted and caught up."""
        def check() -> list[PartitionState] | None:
            states = [s for s in self.partitions(topic)
                      if partition is None or s.partition == partition]
            return states if states and all(s.isr_full for s in states) else None

        where = topic if partition is None else f"{topic}-{partition}"
        return self._wait(check, timeout, f"every replica of {where} in sync")

    # ------------------------------------------------------------------ data

    def produce(self, topic: str, values: Iterable[bytes | str], *, key: bytes | None = None,
                timeout: float = 30.0) -> list[tuple[int, int]]:
        """Write records with acks=all and return their (partition, offset)s, in order."""
        KafkaProducer = _kafka().KafkaProducer
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                 retries=2**31 - 1, max_in_flight_requests_per_connection=1,
                                 request_timeout_ms=int(timeout * 1000))
        try:
            futures = [producer.send(topic, v.encode() if isinstance(v, str) else v, key=key)
                       for v in values]
            producer.flush(timeout)
            out = []
            for f in futures:
                md = f.get(timeout)
                out.append((md.partition, md.offset))
            return out
        finally:
            producer.close(timeout=5)

    def read_to_end(self, topic: str, *, timeout: float = 30.0) -> list[Record]:
        """Every record of the topic from the start to its end *now* (each partition's
        high watermark when called), ordered by partition and offset. No consumer group is
        involved, so nothing is committed."""
        kafka = _kafka()
        KafkaConsumer, TopicPartition = kafka.KafkaConsumer, kafka.TopicPartition
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 consumer_timeout_ms=int(timeout * 1000))
        try:
            parts = self._wait(lambda: consumer.partitions_for_topic(topic), timeout,
                               f"the partitions of {topic}")
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            records: list[Record] = []
            deadline = time.monotonic() + timeout
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    behind = {f"{tp.topic}-{tp.partition}": (consumer.position(tp), ends[tp])
                              for tp in tps if consumer.position(tp) < ends[tp]}
                    raise OdradekClusterError(
                        f"read_to_end({topic!r}) timed out after {timeout:.0f}s; still "
                        f"behind (position, end): {behind}")
                for tp, batch in consumer.poll(timeout_ms=200).items():
                    for m in batch:
                        if m.offset < ends[tp]:
                            records.append(Record(
                                m.topic, m.partition, m.offset, m.key, m.value,
                                tuple((k, v) for k, v in (m.headers or ())), m.timestamp))
            return sorted(records, key=lambda r: (r.partition, r.offset))
        finally:
            consumer.close()

    # ------------------------------------------------------------------ diagnostics

    def logs(self, tail: int = 3000) -> str:
        """The end of every node's log, to attach to a failure message."""
        return "\n".join(self._node_log(n, tail) for n in self._local.all_nodes())

    def _node_log(self, n: NodeProcess, tail: int = 3000) -> str:
        return f"--- node {n.node_id} ({n.log_path}) ---\n{n.logs(tail)}"

    def _wait(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                result = check()
                if result:
                    return result
            except Exception as e:  # noqa: BLE001 - mid-failover errors mean "not yet"
                last = e
            if time.monotonic() > deadline:
                raise OdradekClusterError(
                    f"timed out after {timeout:.0f}s waiting for {what}"
                    + (f" (last error: {last!r})" if last else "") + f"\n{self.logs()}")
            time.sleep(0.05)

    def __repr__(self) -> str:
        return f"OdradekCluster(nodes={self.spec.nodes}, bootstrap={self.bootstrap!r})"


def _kafka() -> Any:
    """kafka-python, imported without its DeprecationWarnings (it loads its protocol schemas
    with importlib.resources.read_text, deprecated in Python 3.11): they would land in the
    warnings summary of every user's test run that uses a helper."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import kafka
        import kafka.admin

    return kafka


def _retry(fn: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception as e:
            if time.monotonic() > deadline:
                raise OdradekClusterError(f"timed out after {timeout:.0f}s waiting for "
                                          f"{what}: {e!r}") from e
            time.sleep(0.1)


def _topic_errors(response: Any) -> Iterator[tuple[str, int, str | None]]:
    """(name, error code, message) per topic of kafka-python's CreateTopics answer."""
    for entry in response["topics"]:
        yield entry["name"], entry["error_code"], entry.get("error_message")


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


_START_ATTEMPTS = 3
_sigterm_lock = threading.Lock()


def _kill_nodes_on_sigterm() -> None:
    """Python's default SIGTERM ends the process without atexit handlers, which would leave
    the nodes running until they notice (within a second) that their starter is gone. Kill
    them first, then die of SIGTERM as before. Only where nobody else handles SIGTERM, and
    only from the main thread (where Python runs signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _sigterm_lock:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            kill_started_nodes()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)

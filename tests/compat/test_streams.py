"""A stateful Kafka Streams application (Kafka Streams 4.1, tests/compat/streams/SumApp.java)
on a 3-node cluster: it restores its RocksDB store from its changelog topic on Odradek after
its local state is wiped and a broker is killed; and with exactly_once_v2 it writes each input
record's update exactly once through a broker kill and its own SIGKILL.

SumApp keeps, per lower-cased key, the count and the sum of the numbers of an input topic in a
persistent store with a changelog topic, and writes every update of that table to an output
topic. Lower-casing re-keys the stream, so Streams also goes through a repartition topic
(CreateTopics with configs, DeleteRecords). Under exactly_once_v2 the changelog, repartition
and output records and the input offsets of each commit go in one transaction.

Run by hand without a JDK or Maven, the test skips and says what is missing; in CI (.ci/run
installs both and fetches the jars first) a missing piece fails it (tests/requirements.py).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from tests.compat.java_app import SOURCES, JavaApp, compile_app
from tests.compat.kafka_tools import FETCH
from tests.compat.txn_checks import Trickle, freeze_mid_transaction, transaction_coordinator
from tests.helpers import unique_name
from tests.integration.harness import REPO, Cluster, NodeProcess, wait_for
from tests.requirements import require, require_tool

pytestmark = pytest.mark.integration

SOURCE = SOURCES / "SumApp.java"
STORE = "sums"  # SumApp.STORE
REPARTITION = "by-key"  # SumApp's Grouped name


def streams_lib() -> Path:
    """Kafka Streams' jars (tests/compat/fetch_kafka.sh streams), fetched first when Maven is
    there and they are not yet."""
    version = os.environ.get("KAFKA_TOOLS_VERSION", "4.1.1")
    cache = REPO / ".ci" / "cache" / f"kafka-streams-{version}"
    if not (cache / ".complete").exists():
        require_tool("mvn", "apt-get install maven; or run tests/compat/fetch_kafka.sh streams")
        p = subprocess.run(["bash", str(FETCH), "streams"], capture_output=True, text=True,
                           timeout=900)
        require(p.returncode == 0,
                f"tests/compat/fetch_kafka.sh streams could not fetch Kafka Streams: "
                f"{p.stderr[-2000:]}")
    lib = cache / "lib"
    require(any(lib.glob("kafka-streams-*.jar")),
            f"no kafka-streams jar in {lib} (run tests/compat/fetch_kafka.sh streams)")
    return lib


@pytest.fixture(scope="module")
def app() -> JavaApp:
    """SumApp compiled against the Streams jars, before any node starts (a machine without a
    JDK skips at once)."""
    return compile_app(SOURCE, streams_lib())


@pytest.fixture(scope="module")
def cluster(app: JavaApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("streams"), n=3).start()
    yield c
    c.kill_all()


class RunningApp:
    """One SumApp process; its stdout and stderr go to files the test reads."""

    def __init__(self, app: JavaApp, bootstrap: str, app_id: str, source: str, sink: str,
                 state_dir: Path, logs: Path, guarantee: str = "at_least_once") -> None:
        self.out = logs.with_suffix(".out")
        self.err = logs.with_suffix(".err")
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                app.argv(bootstrap, app_id, source, sink, str(state_dir), guarantee),
                stdin=subprocess.PIPE, stdout=out, stderr=err)

    def lines(self) -> list[str]:
        return self.out.read_text(errors="replace").splitlines()

    def report(self) -> str:
        return (f"--- SumApp stdout ---\n{self.out.read_text(errors='replace')[-4000:]}"
                f"--- SumApp stderr ---\n{self.err.read_text(errors='replace')[-8000:]}")

    def wait_running(self, timeout: float) -> None:
        def running() -> bool:
            assert self.proc.poll() is None, f"SumApp exited early\n{self.report()}"
            return "STATE RUNNING" in self.lines()
        wait_for(running, timeout, "SumApp to reach RUNNING")

    def stop(self, timeout: float = 45) -> None:
        """A clean stop: stdin's EOF makes SumApp close Streams (last commit, store flushed)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"SumApp did not stop in {timeout}s\n{self.report()}") from None
        assert code == 0 and "CLOSED" in self.lines(), f"exit {code}\n{self.report()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def produce(bootstrap: str, topic: str, records: list[tuple[str, int]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=10)
    try:
        for key, value in records:
            producer.send(topic, key=key.encode(), value=str(value).encode())
        producer.flush(30)
    finally:
        producer.close()


def encode(records: list[tuple[str, int]]) -> list[tuple[bytes, bytes]]:
    return [(key.encode(), str(value).encode()) for key, value in records]


def aggregates(records: list[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    """SumApp's table over ``records``: lower-cased key -> (count, sum)."""
    table: dict[str, tuple[int, int]] = {}
    for key, value in records:
        count, total = table.get(key.lower(), (0, 0))
        table[key.lower()] = (count + 1, total + value)
    return table


class Output:
    """The output topic as read so far, from its beginning, by one consumer."""

    def __init__(self, bootstrap: str, topic: str, partitions: int,
                 isolation: str = "read_uncommitted") -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                      enable_auto_commit=False, isolation_level=isolation)
        self.consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        # (partition, offset, key, (count, sum)) in the order read.
        self.records: list[tuple[int, int, str, tuple[int, int]]] = []

    def poll(self) -> None:
        for batch in self.consumer.poll(timeout_ms=500).values():
            for r in batch:
                count, total = r.value.decode().split(",")
                self.records.append((r.partition, r.offset, r.key.decode(),
                                     (int(count), int(total))))

    def latest(self) -> dict[str, tuple[int, int]]:
        """The table as the output topic says it now: the last update of each key."""
        return {key: agg for _, _, key, agg in self.records}

    def wait_for_table(self, want: dict[str, tuple[int, int]], timeout: float,
                       running: RunningApp) -> None:
        def done() -> bool:
            assert running.proc.poll() is None, f"SumApp exited\n{running.report()}"
            self.poll()
            return self.latest() == want
        try:
            wait_for(done, timeout, "SumApp's output to hold the aggregates of all input",
                     interval=0.1)
        except AssertionError as e:
            raise AssertionError(f"{e}\nwanted {want}\ngot {self.latest()}\n"
                                 f"{running.report()}") from None

    def drain(self) -> None:
        """Read up to the topic's end as it is now (after a stop: every update written)."""
        partitions = list(self.consumer.assignment())
        ends = self.consumer.end_offsets(partitions)

        def at_end() -> bool:
            self.poll()
            return all(self.consumer.position(tp) >= ends[tp] for tp in partitions)
        wait_for(at_end, 20, "the output topic read to its end", interval=0)

    def close(self) -> None:
        self.consumer.close()


def leaders(admin: KafkaAdminClient, topic: str) -> dict[int, int]:
    [t] = admin.describe_topics([topic])
    return {p["partition_index"]: p["leader_id"] for p in t["partitions"]}


def test_state_restored_from_changelog_after_state_wipe_and_broker_kill(
        app: JavaApp, cluster: Cluster, tmp_path: Path) -> None:
    """SumApp runs over a first batch and stops cleanly; its state dir is wiped, a second
    batch is produced, the broker leading the busiest changelog partition is killed -9, and
    SumApp starts again with nothing on disk. It must rebuild its store from the changelog on
    Odradek and carry on from its committed input offsets.

    What is asserted, and why it holds exactly:
    - the output's last update per key equals the aggregates over both batches;
    - run 2 wrote exactly one update per second-batch record, and key k's counts in them are
      count1(k)+1 .. count1(k)+n2(k): the first batch was neither recomputed (a lost store
      would restart counts at 1) nor processed twice (a rewound input offset would add to
      the restored counts). at_least_once may process a record twice only after a crash or
      a failed commit; run 1 ends with a clean close (its last commit follows the flush of
      store and changelog) and run 2 starts after the kill, with the leaders already moved,
      so neither happens here;
    - Streams' restore listener reported restoring the store from the changelog topic, with
      records: at least one per distinct first-batch key (a compacted changelog keeps the
      latest value of each) and no more than the first batch's updates (no record cache, so
      one changelog record per update);
    - Streams purged its repartition topic (DeleteRecords moved a log start offset);
    - the changelog Streams created is cleanup.policy=compact, the repartition topic delete
      with retention.ms=-1: the configs it sent with CreateTopics (DescribeConfigs).
    """
    bootstrap = cluster.bootstrap
    app_id = unique_name("sums")
    source, sink = unique_name("streams-in"), unique_name("streams-out")
    changelog = f"{app_id}-{STORE}-changelog"
    repartition = f"{app_id}-{REPARTITION}-repartition"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    admin.create_topics([NewTopic(source, 3, 3), NewTopic(sink, 3, 3)])
    rng = random.Random(7)
    # Keys differing only in case go to different input partitions and meet in one
    # partition of the repartition topic.
    keys = ["apple", "Apple", "APPLE", "pear", "Pear", "fig", "plum", "kiwi", "Kiwi", "lime"]
    first = [(rng.choice(keys), rng.randint(-50, 100)) for _ in range(150)]
    second = [(rng.choice(keys), rng.randint(-50, 100)) for _ in range(100)]
    produce(bootstrap, source, first)

    state_dir = tmp_path / "state"
    output = Output(bootstrap, sink, 3)
    running: RunningApp | None = None
    try:
        running = RunningApp(app, bootstrap, app_id, source, sink, state_dir, tmp_path / "run1")
        output.wait_for_table(aggregates(first), 60, running)
        running.stop()
        output.drain()
        # Streams reports the (empty) changelog partitions "restored" with nothing in them.
        restored1 = [line for line in running.lines() if line.startswith("RESTORED ")]
        assert all(line.endswith(" 0") for line in restored1), running.report()
        run1_records = len(output.records)
        assert run1_records == len(first), "one update per input record (no record cache)"

        shutil.rmtree(state_dir)
        produce(bootstrap, source, second)

        # The broker leading the changelog partition with the most records dies.
        sizes = {tp.partition: n for tp, n in output.consumer.end_offsets(
            [TopicPartition(changelog, p) for p in range(3)]).items()}
        assert sum(sizes.values()) == len(first), sizes
        busiest = max(sizes, key=lambda p: sizes[p])
        victim: NodeProcess = cluster.node(leaders(admin, changelog)[busiest])
        victim.kill()
        survivors = ",".join(n.bootstrap for n in cluster.nodes if n is not victim)
        admin.close()
        admin = KafkaAdminClient(bootstrap_servers=survivors, request_timeout_ms=15_000)
        wait_for(lambda: all(leader not in (-1, victim.node_id)
                             for t in (changelog, source, sink)
                             for leader in leaders(admin, t).values()),
                 30, f"partitions led by the killed node {victim.node_id} to move")

        running = RunningApp(app, survivors, app_id, source, sink, state_dir, tmp_path / "run2")
        output.wait_for_table(aggregates(first + second), 60, running)
        # Streams purges what it has consumed of its repartition topic (DeleteRecords).
        repartitioned = [TopicPartition(repartition, p) for p in range(3)]
        wait_for(lambda: sum(output.consumer.beginning_offsets(repartitioned).values()) > 0,
                 20, f"Streams to purge {repartition} with DeleteRecords")
        lines = running.lines()
        running.stop()
        output.drain()
    finally:
        if running is not None:
            running.kill()
        output.close()

    restored = [line.split()[1:] for line in lines if line.startswith("RESTORED ")]
    assert restored, f"Streams restored nothing\n{running.report()}"
    assert all(store == STORE and topic == changelog for store, topic, _, _ in restored), \
        restored
    total = sum(int(n) for *_, n in restored)
    assert len(aggregates(first)) <= total <= len(first), restored
    # The busiest partition, whose leader was killed, was restored from its new leader.
    assert any(int(p) == busiest and int(n) > 0 for *_, p, n in restored), restored

    # Run 2's updates: only the second batch, on top of the restored counts.
    run2 = output.records[run1_records:]
    assert len(run2) == len(second), run2
    count1 = {k: c for k, (c, _) in aggregates(first).items()}
    n2 = Counter(k.lower() for k, _ in second)
    for key, n in n2.items():
        counts = sorted(agg[0] for _, _, k, agg in run2 if k == key)
        assert counts == list(range(count1.get(key, 0) + 1, count1.get(key, 0) + n + 1)), \
            (key, counts)

    # The topic configs Streams asked for in CreateTopics.
    try:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog),
                                      ConfigResource(ConfigResourceType.TOPIC, repartition)])
    finally:
        admin.close()
    assert res["topic"][changelog]["cleanup.policy"]["value"] == "compact"
    assert res["topic"][changelog]["cleanup.policy"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert res["topic"][repartition]["cleanup.policy"]["value"] == "delete"
    assert res["topic"][repartition]["retention.ms"]["value"] == "-1"


@pytest.fixture
def eos_cluster(app: JavaApp, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of its own: the test kills a node, and the module's cluster has lost one
    already (two dead of three would leave no controller quorum)."""
    c = Cluster(tmp_path / "eos", n=3).start()
    yield c
    c.kill_all()


def test_exactly_once_v2_through_a_broker_kill_and_an_app_crash(
        app: JavaApp, eos_cluster: Cluster, tmp_path: Path) -> None:
    """SumApp with processing.guarantee=exactly_once_v2, while input keeps arriving:
    1. the broker coordinating its transactions is killed -9 under it; it carries on;
    2. SumApp itself is frozen while its transaction has written output, then SIGKILLed,
       and started again (same state dir, so the same transactional id: its InitProducerId
       fences the dead instance and aborts that transaction; Streams, finding no clean
       checkpoint under EOS, restores its store from the changelog, read_committed).
    At-least-once would process again, and write again, the records of step 2 whose
    offsets were not committed; exactly once must not.

    What a read_committed reader of the output then sees, asserted exactly:
    - one update per input record, no more: for each key, in offset order, counts 1..n
      each once, and the sum steps from one update to the next are that key's input values
      (each input record counted exactly once; the order across input partitions is free);
    - the last update of each key is its aggregate over all input;
    - the output holds more records under read_uncommitted: the killed transaction's
      output is there, aborted, and filtered out (the test exercised an abort).
    """
    cluster = eos_cluster
    bootstrap = cluster.bootstrap
    app_id = unique_name("eos-sums")
    source, sink = unique_name("eos-in"), unique_name("eos-out")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    try:
        admin.create_topics([NewTopic(source, 3, 3), NewTopic(sink, 3, 3)])
    finally:
        admin.close()
    rng = random.Random(11)
    keys = ["apple", "Apple", "APPLE", "pear", "Pear", "fig", "plum", "kiwi", "Kiwi", "lime"]
    batches = [[(rng.choice(keys), rng.randint(-50, 100)) for _ in range(n)]
               for n in (60, 150, 150)]
    produce(bootstrap, source, batches[0])

    state_dir = tmp_path / "state"
    output = Output(bootstrap, sink, 3, isolation="read_committed")
    running: RunningApp | None = None
    try:
        running = RunningApp(app, bootstrap, app_id, source, sink, state_dir,
                             tmp_path / "eos1", guarantee="exactly_once_v2")
        output.wait_for_table(aggregates(batches[0]), 60, running)

        # 1. The transaction coordinator dies while input arrives.
        [process_id] = [json.loads(f.read_text())["processId"]
                        for f in state_dir.glob("*/kafka-streams-process-metadata")]
        coordinator = cluster.node(transaction_coordinator(bootstrap,
                                                           f"{app_id}-{process_id}-1"))
        survivors = ",".join(n.bootstrap for n in cluster.nodes if n is not coordinator)
        feeder = Trickle(survivors, source, encode(batches[1]))
        time.sleep(0.5)
        coordinator.kill()
        feeder.done()
        output.wait_for_table(aggregates(batches[0] + batches[1]), 60, running)

        # 2. SumApp dies with a transaction open, input still arriving.
        feeder = Trickle(survivors, source, encode(batches[2]), per_second=20)
        freeze_mid_transaction(running.proc, survivors, sink, 3)
        running.kill()
        feeder.done()
        running = RunningApp(app, survivors, app_id, source, sink, state_dir,
                             tmp_path / "eos2", guarantee="exactly_once_v2")
        output.wait_for_table(aggregates([r for b in batches for r in b]), 60, running)
        running.stop()
        output.drain()
        uncommitted = Output(survivors, sink, 3)
        try:
            uncommitted.drain()
        finally:
            uncommitted.close()
    finally:
        if running is not None:
            running.kill()
        output.close()

    inputs = [r for b in batches for r in b]
    values: dict[str, list[int]] = {}
    for key, value in inputs:
        values.setdefault(key.lower(), []).append(value)
    for key, vals in values.items():
        updates = sorted((p, o, agg) for p, o, k, agg in output.records if k == key)
        counts = [count for _, _, (count, _) in updates]
        assert counts == list(range(1, len(vals) + 1)), (key, counts)
        sums = [total for _, _, (_, total) in updates]
        steps = [b - a for a, b in zip([0, *sums], sums, strict=False)]
        assert Counter(steps) == Counter(vals), (key, steps, vals)
    assert len(output.records) == len(inputs)
    assert len(uncommitted.records) > len(output.records), \
        "no aborted output: SumApp was not killed inside a transaction"

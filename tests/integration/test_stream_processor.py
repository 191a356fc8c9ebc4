"""A Quix Streams application keeps its state in changelog topics on Odradek and restores it
from there after losing its local state, while one broker is down; and with exactly-once it
writes each input's aggregate exactly once through a broker kill and its own SIGKILL.

The application (tests/integration/quix_app.py, its own process) keeps a running sum and
count per key in a RocksDB store that Quix backs with a compacted changelog topic it creates
on the cluster, and writes each new aggregate to an output topic. Under exactly-once
(confluent-kafka's transactional producer, the classic transaction protocol) each
checkpoint's changelog and output records and input offsets are one transaction.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from tests.helpers import unique_name
from tests.integration.harness import REPO, Cluster, wait_for
from tests.requirements import require

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("quix_app.py")
KEYS = [f"key-{i}" for i in range(6)]
PARTITIONS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("quix"), n=3).start()
    yield c
    c.kill_all()


class App:
    """The Quix application as a child process with its own log file."""

    def __init__(self, workdir: Path, args: list[str]) -> None:
        self.log_path = workdir / "app.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(APP), *args], cwd=REPO,
                                         stdout=log, stderr=subprocess.STDOUT)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def check_alive(self) -> None:
        assert self.proc.poll() is None, (
            f"the Quix app exited with {self.proc.returncode}:\n{self.logs()}")

    def terminate(self) -> int:
        """SIGTERM, as an orchestrator stops it: Quix commits and exits cleanly."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"the Quix app ignored SIGTERM for 30 s:\n{self.logs()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def live_bootstrap(c: Cluster) -> str:
    return ",".join(n.bootstrap for n in c.nodes if n.alive())


def fenced(c: Cluster, dead: int, topics: list[str]) -> bool:
    """Whether Metadata no longer names broker ``dead`` as a broker, the controller or a
    leader of ``topics``' partitions."""
    from confluent_kafka.admin import AdminClient

    # kafka-python's admin client answers describe_cluster from its cached broker list.
    md = AdminClient({"bootstrap.servers": live_bootstrap(c)}).list_topics(timeout=5)
    return (md.controller_id != dead and dead not in md.brokers
            and all(p.leader not in (dead, -1)
                    for t in topics for p in md.topics[t].partitions.values()))


def produce(bootstrap: str, topic: str, values: list[tuple[str, int]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, n in values:
            producer.send(topic, key=key.encode(), value=json.dumps({"n": n}).encode())
        producer.flush(30)
    finally:
        producer.close()


def read_all(bootstrap: str, topic: str, isolation: str = "read_uncommitted",
             ) -> list[tuple[int, int, str, dict[str, int]]]:
    """Every record of ``topic`` now (under read_committed: up to the last stable offset):
    (partition, offset, key, value)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level=isolation)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        got: list[tuple[int, int, str, dict[str, int]]] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=500).items():
                got += [(tp.partition, r.offset, r.key.decode(), json.loads(r.value))
                        for r in records]
        return got
    finally:
        consumer.close()


def latest_per_key(records: list[tuple[int, int, str, dict[str, int]]]) -> dict[str, Any]:
    # A key always maps to the same partition, where offsets order its aggregates.
    return {key: value for _, _, key, value in sorted(records)}


def aggregates(values: list[tuple[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, n in values:
        agg = out.setdefault(key, {"sum": 0, "count": 0})
        agg["sum"] += n
        agg["count"] += 1
    return out


def wait_for_output(c: Cluster, app: App, topic: str, want: dict[str, dict[str, int]],
                    what: str, isolation: str = "read_uncommitted",
                    ) -> list[tuple[int, int, str, dict[str, int]]]:
    def done() -> list[tuple[int, int, str, dict[str, int]]] | None:
        app.check_alive()
        records = read_all(live_bootstrap(c), topic, isolation)
        return records if latest_per_key(records) == want else None

    try:
        return wait_for(done, 40, what, interval=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- app log ---\n{app.logs()}") from None


def test_state_is_restored_from_changelog_after_losing_local_state(
        cluster: Cluster, tmp_path: Path) -> None:
    """Phase 1 runs the app over the first inputs and stops it with SIGTERM (Quix flushes
    the changelog and commits the input offsets). Its local state directory is then
    deleted, more inputs are produced and the broker leading the changelog partition 0 is
    killed with SIGKILL. Phase 2 starts the app again on the empty state directory.

    What this asserts, for every key:
    - the latest output aggregate equals the sum and count over ALL inputs of both phases;
    - phase 2's outputs are exactly counts c1+1 .. c1+c2 (c1, c2 the key's inputs in each
      phase), in order, with the matching running sums. Its first output already includes
      phase 1, so the state was restored from the changelog before the first new record
      was processed (an empty state would restart at count 1, and reprocessing phase 1's
      inputs on lost offsets would show counts <= c1); nothing was counted twice. A clean
      stop commits, so at-least-once redelivers nothing here, and Quix's producer is
      idempotent, so retries after the broker's death write no duplicates.
    Then the changelog topic has cleanup.policy=compact and replication factor 3.
    """
    require(importlib.util.find_spec("quixstreams") is not None,
            "quixstreams is not installed (pip install -e '.[test]')")
    group = unique_name("quix-agg")
    input_topic, output_topic = unique_name("quix-in"), unique_name("quix-out")
    # Quix names the changelog of a dataframe's default store changelog__<group>--<topic>--
    # default, and derives its partitions and replication factor from the input topic's.
    changelog = f"changelog__{group}--{input_topic}--default"
    state_dir = tmp_path / "state"
    args = ["--bootstrap", cluster.bootstrap, "--group", group, "--input", input_topic,
            "--output", output_topic, "--state-dir", str(state_dir)]

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    admin.create_topics([NewTopic(input_topic, PARTITIONS, 3), NewTopic(output_topic,
                                                                        PARTITIONS, 3)])
    admin.close()

    phase1 = [(KEYS[i % len(KEYS)], i) for i in range(60)]
    phase2 = [(KEYS[i % len(KEYS)], 1000 + i) for i in range(0, 90, 2)]
    produce(cluster.bootstrap, input_topic, phase1)

    app = App(tmp_path, args)
    try:
        before = wait_for_output(cluster, app, output_topic, aggregates(phase1),
                                 "phase 1's aggregates in the output")
        assert app.terminate() == 0, f"the Quix app did not stop cleanly:\n{app.logs()}"
    finally:
        app.kill()
    assert len(before) == len(phase1), "phase 1 wrote one aggregate per input"
    assert any(state_dir.iterdir()), "the app kept no local state: the test proves nothing"
    shutil.rmtree(state_dir)
    state_dir.mkdir()

    produce(cluster.bootstrap, input_topic, phase2)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        [desc] = admin.describe_topics([changelog])
    finally:
        admin.close()
    assert desc["error_code"] == 0, f"Quix created no changelog topic {changelog}: {desc}"
    leader = next(p["leader_id"] for p in desc["partitions"] if p["partition_index"] == 0)
    cluster.node(leader).kill()
    # Until the cluster notices the crash, Metadata may still name the dead broker as the
    # controller (Kafka names a random unfenced broker; Odradek the active controller while
    # it is unfenced, and the node just killed may have been it until a new one is elected).
    # librdkafka's admin client sends DescribeConfigs to that controller and does not look it
    # up again while it waits, so Quix's startup would time out after 30 s. A restart once the
    # cluster has fenced the broker and moved its leaderships is what this test is about.
    wait_for(lambda: fenced(cluster, leader, [changelog, input_topic, output_topic]), 20,
             f"the cluster to fence broker {leader} and move its leaderships")

    app = App(tmp_path, args)
    try:
        after = wait_for_output(cluster, app, output_topic, aggregates(phase1 + phase2),
                                "the aggregates over both phases in the output")
    finally:
        app.kill()

    seen = {(partition, offset) for partition, offset, _, _ in before}
    phase2_outputs = [r for r in sorted(after) if (r[0], r[1]) not in seen]
    c1 = aggregates(phase1)
    for key in KEYS:
        got = [value for _, _, k, value in phase2_outputs if k == key]
        sums = [c1[key]["sum"]]
        for k, n in phase2:
            if k == key:
                sums.append(sums[-1] + n)
        want = [{"sum": s, "count": c1[key]["count"] + i + 1} for i, s in enumerate(sums[1:])]
        assert got == want, f"{key}: phase 2 did not continue from the restored state"
    assert len(phase2_outputs) == len(phase2)

    admin = KafkaAdminClient(bootstrap_servers=live_bootstrap(cluster))
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog)])
        [desc] = admin.describe_topics([changelog])
    finally:
        admin.close()
    assert configs["topic"][changelog]["cleanup.policy"]["value"] == "compact"
    assert len(desc["partitions"]) == PARTITIONS
    assert all(len(p["replica_nodes"]) == 3 for p in desc["partitions"]), desc


@pytest.fixture
def eos_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of its own: the test kills a node, and the module's cluster may have lost
    one already (two dead of three would leave no controller quorum)."""
    c = Cluster(tmp_path / "eos", n=3).start()
    yield c
    c.kill_all()


def test_exactly_once_through_a_broker_kill_and_an_app_crash(
        eos_cluster: Cluster, tmp_path: Path) -> None:
    """The app with processing_guarantee="exactly-once", while input keeps arriving:
    1. the broker coordinating its transactions is killed -9 under it; it carries on;
    2. the app itself is frozen while its transaction has written output, then SIGKILLed
       and started again with the same transactional id: its InitProducerId fences the dead
       instance and aborts that transaction, and Quix recovers its store from the changelog
       up to the last committed checkpoint.
    At-least-once would process again, and write again, the inputs of step 2 whose offsets
    were not committed; exactly once must not.

    What a read_committed reader of the output then sees, asserted exactly: for every key,
    in offset order, one aggregate per input, counts 1..n and the running sums of its inputs
    in the order produced (a key's inputs are on one partition). The output holds more
    records under read_uncommitted: the killed transaction's aggregates are there, aborted
    and filtered out, so the test did exercise an abort.
    """
    require(importlib.util.find_spec("quixstreams") is not None,
            "quixstreams is not installed (pip install -e '.[test]')")
    from tests.compat.txn_checks import (
        Trickle,
        freeze_mid_transaction,
        group_coordinator,
        transaction_coordinator,
    )

    cluster = eos_cluster
    # The group's coordinator must survive the kill in step 1: librdkafka (2.12) waits for
    # ever in send_offsets_to_transaction when the group coordinator it cached dies and
    # leaves the cluster's metadata (librdkafka issues 5511 and 5456; Kafka delists a
    # fenced broker the same way). tests/integration/eos_app.py covers that case with a
    # watchdog that restarts the stuck client, as a supervisor would; Quix has none.
    group = next(g for g in (unique_name("quix-eos") for _ in range(50))
                 if group_coordinator(cluster.bootstrap, g)
                 != transaction_coordinator(cluster.bootstrap, f"{g}-quix-app"))
    input_topic, output_topic = unique_name("quix-in"), unique_name("quix-out")
    args = ["--bootstrap", cluster.bootstrap, "--group", group, "--input", input_topic,
            "--output", output_topic, "--state-dir", str(tmp_path / "state"),
            "--guarantee", "exactly-once"]
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        admin.create_topics([NewTopic(input_topic, PARTITIONS, 3),
                             NewTopic(output_topic, PARTITIONS, 3)])
    finally:
        admin.close()
    batches = [[(KEYS[i % len(KEYS)], base + i) for i in range(n)]
               for base, n in ((0, 30), (1000, 120), (2000, 120))]

    def encode(values: list[tuple[str, int]]) -> list[tuple[bytes, bytes]]:
        return [(k.encode(), json.dumps({"n": n}).encode()) for k, n in values]

    produce(cluster.bootstrap, input_topic, batches[0])
    app = App(tmp_path, args)
    try:
        wait_for_output(cluster, app, output_topic, aggregates(batches[0]),
                        "the first inputs' aggregates, committed", "read_committed")

        # 1. The transaction coordinator dies while input arrives.
        coordinator = cluster.node(transaction_coordinator(cluster.bootstrap,
                                                           f"{group}-quix-app"))
        survivors = ",".join(n.bootstrap for n in cluster.nodes if n is not coordinator)
        feeder = Trickle(survivors, input_topic, encode(batches[1]))
        time.sleep(0.5)
        coordinator.kill()
        feeder.done()
        wait_for_output(cluster, app, output_topic, aggregates(batches[0] + batches[1]),
                        "the aggregates after the broker kill, committed", "read_committed")

        # 2. The app dies with a transaction open, input still arriving.
        feeder = Trickle(survivors, input_topic, encode(batches[2]), per_second=20)
        freeze_mid_transaction(app.proc, survivors, output_topic, PARTITIONS)
        app.kill()
        feeder.done()
        # As in the test above: librdkafka's admin client must not be sent to a dead
        # controller at the app's start.
        wait_for(lambda: fenced(cluster, coordinator.node_id, [input_topic, output_topic]),
                 20, f"the cluster to fence broker {coordinator.node_id}")
        app = App(tmp_path, [survivors if a == cluster.bootstrap else a for a in args])
        every = [r for b in batches for r in b]
        committed = wait_for_output(cluster, app, output_topic, aggregates(every),
                                    "the aggregates of all input, committed", "read_committed")
    finally:
        app.kill()
    written = read_all(survivors, output_topic)

    for key in KEYS:
        got = [value for _, _, k, value in sorted(committed) if k == key]
        sums = itertools.accumulate(n for k, n in every if k == key)
        assert got == [{"sum": s, "count": i + 1} for i, s in enumerate(sums)], key
    assert len(committed) == len(every)
    assert len(written) > len(committed), \
        "no aborted output: the app was not killed inside a transaction"

"""Exactly once through failures: a transactional consume-transform-produce loop
(tests/integration/eos_app.py, confluent-kafka) is killed with SIGKILL at random points and
started again, while partition leaders (and with them transaction and group coordinators)
are killed too; a read_committed reader of the output finds each input record's result
exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.helpers import unique_name
from tests.integration.harness import REPO, Cluster

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("eos_app.py")
RECORDS = 2000


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "c3", 3, overrides={
        "replica.lag.time.max.ms": 3000, "min.insync.replicas": 2,
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000}).start()
    yield c
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(c.logs())
    c.kill_all()


class App:
    def __init__(self, bootstrap: str, log: Path, **args: str) -> None:
        self.argv = [sys.executable, str(APP), "--bootstrap", bootstrap]
        for k, v in args.items():
            self.argv += [f"--{k.replace('_', '-')}", v]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=out, cwd=REPO)
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def ensure_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()


def read_committed(bootstrap: str, topic: str, expect: int, timeout_s: float) -> list[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("check"),
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    quiet = None
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None or m.error() is not None:
                if len(got) >= expect:
                    quiet = quiet or time.monotonic() + 2
                    if time.monotonic() > quiet:
                        break
                continue
            quiet = None
            got.append(m.value().decode())
    finally:
        c.close()
    return got


def diagnose(bootstrap: str, topic: str, partitions: int) -> str:
    """Per partition: high watermark, last stable offset, and its open transactions; and the
    coordinators' transactions (what a failure's message needs)."""
    lines = []
    for isolation in ("read_uncommitted", "read_committed"):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "diag",
                      "isolation.level": isolation})
        try:
            ends = [c.get_watermark_offsets(TopicPartition(topic, i), 10)[1]
                    for i in range(partitions)]
        except Exception as e:
            ends = [repr(e)]
        finally:
            c.close()
        lines.append(f"{topic} end offsets, {isolation}: {ends}")
    cli = [sys.executable, "-m", "odradek.broker.cli.main", "transactions"]
    for args in (["list"], *(["describe-producers", "--topic", topic, "--partition", str(i)]
                             for i in range(partitions))):
        r = subprocess.run([*cli, *args, "--bootstrap", bootstrap], capture_output=True,
                           text=True, timeout=60)
        lines.append(f"$ odradek transactions {' '.join(args)}\n{r.stdout}{r.stderr}")
    return "\n".join(lines)


def feed(bootstrap: str, topic: str) -> None:
    """The input arrives while the faults happen: RECORDS records over about 12 s."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(RECORDS):
        p.produce(topic, key=str(i).encode(), value=str(i).encode())
        if i % 50 == 49:
            p.poll(0)
            time.sleep(12 * 50 / RECORDS)
    assert p.flush(60) == 0, f"input to {topic} not all acknowledged"


def test_consume_transform_produce_is_exactly_once_through_kills(
        cluster: Cluster, tmp_path: Path) -> None:
    rng = random.Random(20261207)
    bs = cluster.bootstrap
    src, dst = unique_name("in"), unique_name("out")
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(src, 3, 3), NewTopic(dst, 3, 3)]).values():
        f.result(20)
    feeder = threading.Thread(target=feed, args=(bs, src), daemon=True)
    feeder.start()
    app = App(bs, tmp_path / "app.log", group=unique_name("eos"), input=src, output=dst,
              transactional_id=unique_name("eos-tid"))
    app.start()
    node_kills = 0
    deadline = time.monotonic() + 120
    done_after = None
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 2.5))
            roll = rng.random()
            if done_after is None and roll < 0.6:
                app.kill()  # SIGKILL mid-transaction or between transactions
                app.start()
            elif done_after is None and roll < 0.75 and node_kills < 3:
                # A node with leaderships (partitions, coordinators) crashes and comes back.
                victim = cluster.node(rng.choice([n.node_id for n in cluster.nodes]))
                victim.kill()
                time.sleep(rng.uniform(0.5, 2.0))
                victim.start(60)
                node_kills += 1
            app.ensure_running()
            if done_after is None and app.starts >= 6 and node_kills >= 2 \
                    and not feeder.is_alive():
                done_after = time.monotonic()  # faults over: let it finish
            if done_after is not None:
                out = read_committed(bs, dst, RECORDS, timeout_s=15)
                if len(out) >= RECORDS:
                    break
    finally:
        app.kill()
    out = read_committed(bs, dst, RECORDS, timeout_s=60)
    counts = Counter(out)
    duplicated = {v: n for v, n in counts.items() if n > 1}
    assert not duplicated, f"results committed more than once: {sorted(duplicated)[:20]}"
    missing = {f"{i}:out" for i in range(RECORDS)} - set(counts)
    assert not missing, (f"{len(missing)} results never committed, e.g. {sorted(missing)[:10]} "
                         f"(app log: {app.log})\n{diagnose(bs, dst, 3)}")
    assert set(counts) == {f"{i}:out" for i in range(RECORDS)}
    assert app.starts >= 6 and node_kills >= 2

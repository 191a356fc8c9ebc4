"""A real Prometheus scrapes a real 3-node cluster; promtool lints every node's /metrics.

Needs the Debian package ``prometheus`` (``/usr/bin/prometheus`` and ``/usr/bin/promtool``):
skipped with the reason by hand without it, a failure in CI (``CI=true``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import (
    Cluster,
    free_port,
    scrape,
    wait_for,
    wait_port,
)
from tests.requirements import require_tool

pytestmark = pytest.mark.integration

DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
TOPIC, GROUP = "prom-t", "prom-g"
PARTITIONS = 3
OFFSETS_PARTITIONS = 5  # the harness sets offsets.topic.num.partitions
CONSUMED, UNCONSUMED = 100, 20


def _tool(name: str) -> str:
    return require_tool(name, "Debian package prometheus")


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The value of a query with one result, None when it has none."""
        result = self.query(promql)
        assert len(result) <= 1, f"{promql}: {result}"
        return float(result[0]["value"][1]) if result else None

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as r:
            return json.load(r)["data"]["activeTargets"]

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]




def sample(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and not s.labels:
                return s.value
    raise AssertionError(f"{name} not exported")


def _start_prometheus(base: Path, cluster: Cluster) -> Prometheus:
    binary = _tool("prometheus")
    port = free_port()
    config = base / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "odradek", "static_configs": [
            {"targets": [f"127.0.0.1:{n.metrics_port}" for n in cluster.nodes]}]}],
    }))
    log_path = base / "prometheus.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={base / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=log, cwd=base)
    prom = Prometheus(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_port("127.0.0.1", port, 30)
        wait_for(lambda: urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2).status == 200,
                 30, "Prometheus to be ready")
    except BaseException:
        _stop(proc)
        raise AssertionError(f"prometheus did not start:\n{prom.logs()}") from None
    return prom


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _traffic(cluster: Cluster) -> None:
    """Produce, consume part with a committed group, then produce more: lag is UNCONSUMED."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    for i in range(CONSUMED):
        producer.send(TOPIC, f"m{i}".encode() * 20, partition=i % PARTITIONS)
    producer.flush(30)
    consumer = KafkaConsumer(TOPIC, bootstrap_servers=cluster.bootstrap, group_id=GROUP,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        got = 0
        deadline = time.monotonic() + 60
        while got < CONSUMED and time.monotonic() < deadline:
            got += sum(len(v) for v in consumer.poll(1000).values())
        assert got == CONSUMED, f"consumed {got} of {CONSUMED}"
        consumer.commit()
    finally:
        consumer.close()
    for i in range(UNCONSUMED):
        producer.send(TOPIC, b"later", partition=i % PARTITIONS)
    producer.flush(30)
    producer.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Prometheus]]:
    _tool("prometheus")
    _tool("promtool")
    base = tmp_path_factory.mktemp("prom")
    cluster = Cluster(base / "c3", 3).start()
    prom: Prometheus | None = None
    try:
        _traffic(cluster)
        prom = _start_prometheus(base, cluster)
        yield cluster, prom
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        if prom is not None:
            _stop(prom.proc)
        cluster.kill_all()


def test_promtool_finds_nothing_in_any_node_output(setup: tuple[Cluster, Prometheus]) -> None:
    cluster, _ = setup
    promtool = _tool("promtool")
    for node in cluster.nodes:
        text = scrape(node)
        r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        report = (r.stdout + r.stderr).decode()
        assert r.returncode == 0 and report == "", f"node {node.node_id}: {report}"
        for family in text_string_to_metric_families(text):
            if family.name.startswith("odradek_"):
                assert (f"`{family.name}`" in DOC or f"`{family.name}_total`" in DOC), \
                    f"{family.name} (node {node.node_id}) is not in docs/metrics.md"


def test_prometheus_scrapes_every_node_and_sees_the_key_series(
        setup: tuple[Cluster, Prometheus]) -> None:
    cluster, prom = setup

    def all_up() -> bool:
        targets = prom.targets()
        return len(targets) == 3 and all(t["health"] == "up" for t in targets)

    wait_for(all_up, 30, "all 3 targets up")
    assert prom.value('count(up{job="odradek"} == 1)') == 3

    def at(promql: str, expected: float) -> Callable[[], bool]:
        return lambda: prom.value(promql) == expected

    total_partitions = PARTITIONS + OFFSETS_PARTITIONS
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("Produce requests", lambda: (prom.value(
            'sum(odradek_requests_total{api="produce"})') or 0) > 0),
        ("latency buckets per API", lambda: (prom.value(
            'count(odradek_request_latency_seconds_bucket{api="fetch"})') or 0) > 3),
        ("messages in", at(f'sum(odradek_messages_in_total{{topic="{TOPIC}"}})',
                           CONSUMED + UNCONSUMED)),
        ("bytes in", lambda: (prom.value(
            f'sum(odradek_bytes_in_total{{topic="{TOPIC}"}})') or 0) > CONSUMED * 40),
        ("messages out", lambda: (prom.value(
            f'sum(odradek_messages_out_total{{topic="{TOPIC}"}})') or 0) >= CONSUMED),
        ("bytes out", lambda: (prom.value(
            f'sum(odradek_bytes_out_total{{topic="{TOPIC}"}})') or 0) > CONSUMED * 40),
        ("purgatory sizes on every node", lambda: prom.value(
            "count(odradek_produce_purgatory_size) + count(odradek_fetch_purgatory_size)") == 6),
        ("partitions led cover every partition", at("sum(odradek_partitions_led)",
                                                    total_partitions)),
        ("controller's partition count", at("sum(odradek_cluster_partitions)",
                                            total_partitions)),
        ("no under-replicated partitions", at("sum(odradek_under_replicated_partitions)", 0)),
        ("under-replicated reported by all", at("count(odradek_under_replicated_partitions)", 3)),
        ("under-min-ISR reported by all", at("count(odradek_under_min_isr_partitions)", 3)),
        ("ISR change counters", at("count(odradek_isr_changes_total)", 6)),
        ("exactly one active controller", at("sum(odradek_controller_active)", 1)),
        ("every node reports controller_active", at("count(odradek_controller_active)", 3)),
        ("raft term on every node", at("count(odradek_raft_term)", 3)),
        ("the same raft term everywhere", at(
            "max(odradek_raft_term) - min(odradek_raft_term)", 0)),
        ("raft commit index", lambda: (prom.value("min(odradek_raft_commit_index)") or 0) > 0),
        ("raft leader changes", lambda: prom.value(
            "count(odradek_raft_leader_changes_total >= 1)") == 3),
        ("no fenced brokers", at("sum(odradek_cluster_fenced_brokers)", 0)),
        ("three registered brokers", at("sum(odradek_cluster_registered_brokers)", 3)),
        ("no offline partitions", at("sum(odradek_cluster_offline_partitions)", 0)),
        ("consumer group lag", at(
            f'sum(odradek_consumer_group_lag{{group="{GROUP}",topic="{TOPIC}"}})', UNCONSUMED)),
        ("lag per partition", at(
            f'count(odradek_consumer_group_lag{{group="{GROUP}",topic="{TOPIC}"}})', PARTITIONS)),
        ("lag joined from leaders' high watermarks", at(
            f'sum(max by (topic, partition) (odradek_log_high_watermark{{topic="{TOPIC}"}}) '
            "- on (topic, partition) group_right max by (group, topic, partition) "
            f'(odradek_consumer_group_committed_offset{{group="{GROUP}"}}))', UNCONSUMED)),
        ("log size per replica", lambda: prom.value(
            f'count(odradek_log_size_bytes{{topic="{TOPIC}"}} > 0)') == PARTITIONS * 3),
        ("process CPU", at("count(process_cpu_seconds_total)", 3)),
        ("process memory", lambda: prom.value(
            "count(process_resident_memory_bytes > 1e6)") == 3),
    ]
    for what, check in checks:
        wait_for(check, 20, what)


def test_killing_the_active_controller_moves_the_flag(
        setup: tuple[Cluster, Prometheus]) -> None:
    cluster, prom = setup
    scrapes = {n.node_id: scrape(n) for n in cluster.nodes}
    active = [i for i, text in scrapes.items() if sample(text, "odradek_controller_active")]
    assert len(active) == 1, scrapes
    old = active[0]
    term = sample(scrapes[old], "odradek_raft_term")
    survivors = [n for n in cluster.nodes if n.node_id != old]
    changes = {n.node_id: sample(scrapes[n.node_id], "odradek_raft_leader_changes_total")
               for n in survivors}
    cluster.node(old).kill()

    def new_leader() -> int:
        texts = {n.node_id: scrape(n) for n in survivors}
        leaders = [i for i, t in texts.items() if sample(t, "odradek_controller_active") == 1]
        if len(leaders) != 1:
            return 0
        for t in texts.values():
            assert sample(t, "odradek_raft_term") > term
            assert sample(t, "odradek_raft_leader_id") in (leaders[0], -1)
        return leaders[0]

    leader = wait_for(new_leader, 30, "another node to become the active controller")
    assert leader != old
    wait_for(lambda: all(sample(scrape(n), "odradek_raft_leader_changes_total")
                         > changes[n.node_id] for n in survivors),
             10, "leader changes to increase on the survivors")
    # Prometheus agrees: the dead node is down, the flag sums to 1 over the live ones.
    killed = f"127.0.0.1:{cluster.node(old).metrics_port}"
    wait_for(lambda: prom.value(f'up{{instance="{killed}"}}') == 0, 20, "the dead node down")
    wait_for(lambda: prom.value("sum(odradek_controller_active)") == 1
             and prom.value(f'odradek_controller_active{{instance="{killed}"}}') is None,
             20, "one active controller among the live nodes")

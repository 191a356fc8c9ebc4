"""The compose deployment, for real: podman + podman-compose run deploy/docker-compose.yml
(and the dedicated-controllers layout) and ordinary Kafka clients on the host use it through
the published ports.

The images come from deploy/podman-images.sh: a debootstrap-made stand-in for
debian:bookworm-slim and prom/prometheus (no registry is reachable here), and the Odradek
image built from deploy/Dockerfile; podman caches them between runs. Each test runs its
own compose project on free host ports and always tears it down (``down -v``).

Needs root, podman, podman-compose and debootstrap (deploy/podman-setup.sh installs them):
skipped with the reason by hand without them, a failure in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from tests.integration.harness import free_port, wait_for
from tests.requirements import require
from tests.unit.test_deploy_files import dashboard_exprs, load_dashboard, metric_names

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
T = TypeVar("T")


def _require_container_tools() -> None:
    missing = [t for t in ("podman", "podman-compose", "debootstrap") if shutil.which(t) is None]
    why = ""
    if missing:
        why = f"{', '.join(missing)} not installed (run deploy/podman-setup.sh)"
    elif os.geteuid() != 0:
        why = "the compose test needs root (rootful podman, debootstrap for the base image)"
    require(not why, why)


@pytest.fixture(scope="module")
def images() -> None:
    """Base, Prometheus stand-in and Odradek images (cached by podman after the first run)."""
    _require_container_tools()
    started = time.monotonic()
    r = subprocess.run([str(DEPLOY / "podman-images.sh")], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, f"deploy/podman-images.sh failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    print(f"images ready in {time.monotonic() - started:.1f}s")


class ComposeProject:
    """One podman-compose project: its own name, host ports and volumes."""

    def __init__(self, compose_file: Path, env: dict[str, str]) -> None:
        self.file = compose_file
        self.name = f"odktest{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, **env}
        # Host-side compose variables must not reach our own node processes as ODRADEK_*
        # config keys, and compose must not see stray ones either.
        self.env = {k: v for k, v in self.env.items() if not k.startswith("ODRADEK_")}

    def compose(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["podman-compose", "-p", self.name, "-f", str(self.file), *args],
                           env=self.env, capture_output=True, text=True, timeout=timeout,
                           cwd=REPO)
        assert r.returncode == 0, f"podman-compose {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120)
        if check:
            assert r.returncode == 0, f"podman {' '.join(args)} failed: {r.stderr[-2000:]}"
        return r

    def container(self, service: str) -> str:
        out = self.podman("ps", "-a", "--filter", f"label=com.docker.compose.project={self.name}",
                          "--filter", f"label=com.docker.compose.service={service}",
                          "--format", "{{.Names}}").stdout.split()
        assert len(out) == 1, f"expected one container for {service}, found {out}"
        return out[0]

    def state(self, service: str) -> str:
        return self.podman("inspect", self.container(service), "--format",
                           "{{.State.Status}}").stdout.strip()

    def healthy(self, service: str) -> bool:
        # podman runs HEALTHCHECKs from systemd timers; without systemd, run it ourselves.
        return self.podman("healthcheck", "run", self.container(service),
                           check=False).returncode == 0

    def logs(self) -> str:
        out = []
        names = self.podman("ps", "-a", "--filter", f"label=com.docker.compose.project={self.name}",
                            "--format", "{{.Names}}", check=False).stdout.split()
        for name in names:
            r = self.podman("logs", "--tail", "40", name, check=False)
            out.append(f"--- {name} ---\n{r.stdout}{r.stderr}")
        return "\n".join(out)

    def down(self) -> None:
        """The project's containers killed (a test is over: no need for their graceful
        stops, which podman-compose 1.0 runs one after another, ~10 s each), then down -v
        and whatever podman-compose leaves behind (its network)."""
        label = f"label=com.docker.compose.project={self.name}"
        names = self.podman("ps", "-aq", "--filter", label, check=False).stdout.split()
        if names:
            self.podman("rm", "-f", "-t", "0", "-v", *names, check=False)
        subprocess.run(["podman-compose", "-p", self.name, "-f", str(self.file), "down", "-v"],
                       env=self.env, capture_output=True, text=True, timeout=180, cwd=REPO)
        for name in self.podman("ps", "-aq", "--filter", label, check=False).stdout.split():
            self.podman("rm", "-f", "-v", name, check=False)
        for vol in self.podman("volume", "ls", "-q", "--filter", label, check=False).stdout.split():
            self.podman("volume", "rm", "-f", vol, check=False)
        self.podman("network", "rm", "-f", f"{self.name}_default", check=False)


@pytest.fixture
def project_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., ComposeProject]]:
    projects: list[ComposeProject] = []

    def make(compose_file: Path, env: dict[str, str]) -> ComposeProject:
        p = ComposeProject(compose_file, env)
        projects.append(p)
        return p

    yield make
    for p in projects:
        rep = getattr(request.node, "rep_call", None)
        if rep is None or rep.failed:
            print(p.logs())
        p.down()


# --- clients on the host -------------------------------------------------------------------


def describe(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        (t,) = admin.describe_topics([topic])
    finally:
        admin.close()
    assert t["error_code"] == 0, t
    return sorted(t["partitions"], key=lambda p: p["partition_index"])


def produce(bootstrap: str, topic: str, values: list[str]) -> list[str]:
    """Idempotent acks=all producer; returns the values the cluster acknowledged."""
    acked: list[str] = []
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            acked.append(msg.value().decode())
        else:
            errors.append(f"{msg.value().decode()}: {err}")

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "message.timeout.ms": 60000, "linger.ms": 5})
    for v in values:
        p.produce(topic, v.encode(), key=v.encode(), on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(90) == 0, "messages still in flight after 90s"
    assert not errors, f"{len(errors)} records not acknowledged, e.g. {errors[:3]}"
    return acked


def consume_all(bootstrap: str, topic: str, partitions: int) -> list[str]:
    """Every record of the topic, read from the beginning to each partition's log end."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      request_timeout_ms=20000)
    try:
        tps = [TopicPartition(topic, i) for i in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        values: list[str] = []
        deadline = time.monotonic() + 60
        while any(c.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "could not read to the end of the log in 60s"
            for records in c.poll(timeout_ms=1000).values():
                values.extend(r.value.decode() for r in records)
        return values
    finally:
        c.close()


def consume_group(bootstrap: str, topic: str, group: str, expected: int) -> list[str]:
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        values: list[str] = []
        deadline = time.monotonic() + 60
        while len(values) < expected and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=1000).values():
                values.extend(r.value.decode() for r in records)
        c.commit()
        return values
    finally:
        c.close()


def advertised(admin: KafkaAdminClient) -> dict[int, tuple[str, int]]:
    """The brokers' addresses as the cluster tells a client on the host."""
    return {b["broker_id"]: (b["host"], b["port"]) for b in admin.describe_cluster()["brokers"]}


def prometheus_get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]


def targets_up(port: int) -> dict[str, str]:
    targets = prometheus_get(port, "/api/v1/targets")["activeTargets"]
    return {t["labels"]["instance"]: t["health"] for t in targets}


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_compose_cluster_survives_a_killed_node(images: None, project_factory) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    ports = {f"NODE{i}_PORT": free_port() for i in (1, 2, 3)}
    prom_port, console_port = free_port(), free_port()
    p = project_factory(DEPLOY / "docker-compose.yml",
                        {**{k: str(v) for k, v in ports.items()}, "PROMETHEUS_PORT": str(prom_port),
                         "CONSOLE_PORT": str(console_port)})
    bootstrap = ",".join(f"localhost:{ports[f'NODE{i}_PORT']}" for i in (1, 2, 3))
    # Grafana (its own profile) cannot be pulled here: name the services to start.
    p.compose("up", "-d", "node1", "node2", "node3", "prometheus", "console")
    for node in ("node1", "node2", "node3"):
        wait_for(lambda node=node: p.healthy(node), 120, f"{node} healthy", interval=1.0)
    up_s = time.monotonic() - started

    # The EXTERNAL listener advertises the published host ports, not container addresses.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        brokers = advertised(admin)
        assert brokers == {i: ("localhost", ports[f"NODE{i}_PORT"]) for i in (1, 2, 3)}
        # No topic config: the compose file's min.insync.replicas=2 is the default.
        admin.create_topics([NewTopic("orders", 6, 3)])

        def min_isr() -> str | None:
            # Any node may answer; one that has not applied the new topic yet knows no configs.
            res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "orders")])
            return res["topic"]["orders"]["min.insync.replicas"]["value"]

        assert wait_for(min_isr, 15, "the orders topic's config on the node asked",
                        interval=1.0) == "2"
    finally:
        admin.close()
    wait_for(lambda: all(
        len(x["isr_nodes"]) == 3 and x["leader_id"] > 0 for x in describe(bootstrap, "orders")),
        30, "orders fully replicated", interval=1.0)

    acked = produce(bootstrap, "orders", [f"before-{i}" for i in range(300)])
    assert sorted(consume_group(bootstrap, "orders", "billing", len(acked))) == sorted(acked)

    # Prometheus (on its host port) scrapes all three nodes.
    wait_for(lambda: targets_up(prom_port) == {"node1": "up", "node2": "up", "node3": "up"},
             60, "Prometheus scraping 3 nodes", interval=1.0)

    # The console service sees the three brokers, healthy, with each node's metrics.
    def console(status: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://localhost:{console_port}/api/overview",
                                        timeout=10) as r:
                o: dict[str, Any] = json.load(r)
        except OSError:
            return None
        return o if o["status"] == status else None

    overview = wait_for(lambda: console("healthy"), 60, "the console to report healthy",
                        interval=1.0)
    assert [(b["id"], b["metrics"]["up"]) for b in overview["brokers"]] == \
        [(1, True), (2, True), (3, True)]

    # Kill node2 as `docker compose kill node2` does; leadership moves off it.
    node2 = p.container("node2")
    assert any(x["leader_id"] == 2 for x in describe(bootstrap, "orders"))
    p.podman("kill", node2)
    killed_at = time.monotonic()
    wait_for(lambda: (lambda ps: ps if all(
        x["leader_id"] in (1, 3) for x in ps) else None)(describe(bootstrap, "orders")),
        60, "leadership moved off node2", interval=1.0)
    failover_s = time.monotonic() - killed_at
    degraded = wait_for(lambda: console("degraded"), 60, "the console to report node2 down",
                        interval=1.0)
    assert any("node 2" in x or "broker 2" in x for x in degraded["problems"]), degraded

    acked += produce(bootstrap, "orders", [f"after-{i}" for i in range(300)])
    consumed = consume_all(bootstrap, "orders", 6)
    lost = set(acked) - set(consumed)
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:5]}"
    assert len(consumed) == len(acked), "duplicates despite the idempotent producer"
    # The restart policy leaves a killed node dead until it is started again.
    assert p.state("node2") == "exited", "node2 came back by itself after `kill`"

    p.compose("start", "node2")
    restarted_at = time.monotonic()
    wait_for(lambda: p.healthy("node2"), 120, "node2 healthy again", interval=1.0)
    for topic in ("orders", "__consumer_offsets"):
        wait_for(lambda topic=topic: all(
            sorted(x["isr_nodes"]) == sorted(x["replica_nodes"])
            for x in describe(bootstrap, topic)),
            120, f"node2 back in the ISR of every {topic} partition", interval=1.0)
    rejoin_s = time.monotonic() - restarted_at
    # Clients bootstrapping from node2 alone find the cluster and read every record.
    assert sorted(consume_all(f"localhost:{ports['NODE2_PORT']}", "orders", 6)) == sorted(acked)

    # Every series the Grafana dashboard draws is one Prometheus really scraped (request
    # errors appear only once a handler fails).
    def missing_series() -> set[str]:
        names = set(prometheus_get(prom_port, "/api/v1/label/__name__/values"))
        used = set().union(*(metric_names(e) for _, e in dashboard_exprs(load_dashboard())))
        return used - names - {"odradek_request_errors_total"}

    wait_for(lambda: not missing_series() or None, 30, "every dashboard series in Prometheus",
             interval=1.0)
    print(f"compose cluster: healthy after {up_s:.1f}s, failover {failover_s:.1f}s, "
          f"node2 back in the ISR {rejoin_s:.1f}s after start, "
          f"total {time.monotonic() - started:.1f}s")


@pytest.mark.timeout(600)
def test_dedicated_controllers_layout(images: None, project_factory) -> None:  # type: ignore[no-untyped-def]
    ports = {f"BROKER{i}_PORT": free_port() for i in (4, 5, 6)}
    prom_port = free_port()
    p = project_factory(DEPLOY / "docker-compose.dedicated.yml",
                        {**{k: str(v) for k, v in ports.items()}, "PROMETHEUS_PORT": str(prom_port)})
    nodes = ["controller1", "controller2", "controller3", "broker4", "broker5", "broker6"]
    p.compose("up", "-d", *nodes, "prometheus")
    for node in nodes:
        wait_for(lambda node=node: p.healthy(node), 120, f"{node} healthy", interval=1.0)
    bootstrap = ",".join(f"localhost:{ports[f'BROKER{i}_PORT']}" for i in (4, 5, 6))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        brokers = advertised(admin)
        # Only the brokers serve Kafka; the controllers stay inside the compose network.
        assert brokers == {i: ("localhost", ports[f"BROKER{i}_PORT"]) for i in (4, 5, 6)}
        admin.create_topics([NewTopic("events", 3, 3)])
    finally:
        admin.close()
    wait_for(lambda: all(
        sorted(x["isr_nodes"]) == [4, 5, 6] for x in describe(bootstrap, "events")),
        30, "events fully replicated", interval=1.0)
    acked = produce(bootstrap, "events", [f"e-{i}" for i in range(100)])
    assert sorted(consume_all(bootstrap, "events", 3)) == sorted(acked)
    wait_for(lambda: targets_up(prom_port) == {n: "up" for n in nodes}, 60,
             "Prometheus scraping 6 nodes", interval=1.0)

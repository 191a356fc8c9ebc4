"""``odradek cluster up``: the contract in the design guide (cluster.json, ports, progress,
clean stop on SIGTERM, resuming the same cluster with its data)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.helpers import unique_name
from tests.integration.flows import LIMIT_S, confluent_flow
from tests.integration.harness import free_port
from tests.requirements import in_ci

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _free_base(n: int) -> int:
    """A Kafka port whose whole block (kafka, controller +100, metrics +200) is free."""
    for _ in range(200):
        base = free_port()
        ports = [base + off + i for off in (0, 100, 200) for i in range(n)]
        ok = True
        for port in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


def _up(data_dir: Path, base: int) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "odradek.broker.cli.main", "cluster", "up", "--nodes", "3",
         "--data-dir", str(data_dir), "--kafka-port", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("odradek:"):
            lines.append(line.strip())
            if "cluster ready" in line:
                return proc, lines
    _kill_all(proc, data_dir)
    raise AssertionError(f"cluster up never became ready: {lines}")


def _stop(proc: subprocess.Popen[str], info: dict) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    for node in info["nodes"]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(node["pid"], 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"node {node['id']} (pid {node['pid']}) still running")


def _kill_all(proc: subprocess.Popen[str], data_dir: Path) -> None:
    """On failure: the nodes run in their own sessions, so kill them by pid too."""
    proc.kill()
    try:
        nodes = json.loads((data_dir / "cluster.json").read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        return
    for node in nodes:
        try:
            os.kill(node["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_cluster_up_contract_and_resume(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    base = _free_base(3)
    topic = unique_name("up")
    proc, lines = _up(data_dir, base)
    try:
        # "cluster ready" means an application can start now: a topic with three replicas
        # is created and its first acks=all write acknowledged, at once.
        bootstrap = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        started = time.monotonic()
        confluent_flow(bootstrap, unique_name("first"), 3)
        assert time.monotonic() - started < LIMIT_S
        ready = [ln for ln in lines if " ready on " in ln]
        assert len(ready) == 3, lines  # progress: one line per node as it comes up
        info = json.loads((data_dir / "cluster.json").read_text())
        assert info["bootstrap"] == ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        assert [n["id"] for n in info["nodes"]] == [1, 2, 3]
        for i, node in enumerate(info["nodes"]):
            assert node["roles"] == ["broker", "controller"]
            assert node["kafka"] == f"127.0.0.1:{base + i}"
            assert node["metrics"] == f"http://127.0.0.1:{base + 200 + i}/metrics"
            assert Path(node["config"]).is_file()
            with urllib.request.urlopen(node["metrics"], timeout=10) as r:
                assert b"odradek_requests_total" in r.read()
        prom = yaml.safe_load((data_dir / "prometheus.yml").read_text())
        assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == [
            f"127.0.0.1:{base + 200 + i}" for i in range(3)]
        if shutil.which("promtool") or in_ci():
            check = subprocess.run(["promtool", "check", "config",
                                    str(data_dir / "prometheus.yml")],
                                   capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
        producer = KafkaProducer(bootstrap_servers=info["bootstrap"], acks="all")
        for i in range(50):
            producer.send(topic, f"v{i}".encode()).get(timeout=30)
        producer.close()
    except BaseException:
        _kill_all(proc, data_dir)
        raise
    _stop(proc, info)

    # The same command on the same data dir resumes the same cluster, data included.
    proc, _ = _up(data_dir, base)
    try:
        consumer = KafkaConsumer(bootstrap_servers=info["bootstrap"],
                                 auto_offset_reset="earliest", consumer_timeout_ms=15000)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values = []
        for msg in consumer:
            values.append(msg.value.decode())
            if len(values) == 50:
                break
        consumer.close()
        assert values == [f"v{i}" for i in range(50)]
        info2 = json.loads((data_dir / "cluster.json").read_text())
        assert info2["bootstrap"] == info["bootstrap"]
    except BaseException:
        _kill_all(proc, data_dir)
        raise
    _stop(proc, info2)


def test_a_node_restarted_by_hand_belongs_to_the_cluster(tmp_path: Path) -> None:
    # issue 17, the README's failover demo: after kill -9 and a restart by hand with the
    # printed command, cluster.json kept the dead pid, Ctrl-C left the hand-started node
    # running, and the next run reported it ready, then "node 1 exited with code 1".
    data_dir = tmp_path / "data"
    base = _free_base(3)
    proc, lines = _up(data_dir, base)
    hand: subprocess.Popen[bytes] | None = None
    try:
        assert proc.stdout is not None
        out = proc.stdout

        def read() -> None:
            for line in out:
                lines.append(line.strip())

        threading.Thread(target=read, daemon=True).start()
        info = json.loads((data_dir / "cluster.json").read_text())
        victim = info["nodes"][0]
        os.kill(victim["pid"], signal.SIGKILL)
        restart = _wait(lambda: next((ln for ln in lines if "start it again with:" in ln),
                                     None), "cluster up to report the dead node")
        assert restart.startswith("odradek: node 1 killed by SIGKILL; start it again with: ")
        assert restart.endswith(f"node --config {victim['config']}")
        hand = subprocess.Popen([sys.executable, "-m", "odradek.broker.cli.main", "node",
                                 "--config", victim["config"]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        # Reaped as soon as it exits, as the shell it would be started from does.
        threading.Thread(target=hand.wait, daemon=True).start()
        _wait(lambda: json.loads((data_dir / "cluster.json").read_text())["nodes"][0]["pid"]
              == hand.pid, "cluster.json to name the restarted node")
        _wait(lambda: f"odradek: node 1 is running again (pid {hand.pid})" in lines,
              "cluster up to adopt the restarted node")
        info = json.loads((data_dir / "cluster.json").read_text())
    except BaseException:
        if hand is not None:
            hand.kill()
        _kill_all(proc, data_dir)
        raise
    _stop(proc, info)  # every node of cluster.json stops, the hand-started one too
    assert hand.poll() is not None or hand.wait(10) is not None

    proc, lines = _up(data_dir, base)
    info = json.loads((data_dir / "cluster.json").read_text())
    try:
        assert not [ln for ln in lines if "exited" in ln or "killed" in ln], lines
    except BaseException:
        _kill_all(proc, data_dir)
        raise
    _stop(proc, info)


def _wait(predicate: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = predicate()
        except (OSError, ValueError, KeyError):
            got = None
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")

"""``odradek cluster up``: a local cluster of combined-mode nodes in the foreground."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from odradek.broker.cli.node import running_node_pid
from odradek.broker.local_cluster import accepts


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cluster", help="local clusters")
    csub = p.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    up = csub.add_parser("up", help="run a local cluster in the foreground (Ctrl-C stops it)")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--data-dir", default="./odradek-data")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--kafka-port", type=int, default=9092)
    up.set_defaults(func=up_cmd)


def node_ports(kafka_port: int, index: int) -> dict[str, int]:
    """Ports of node ``index`` (0-based): Kafka on kafka-port+i, others offset from it."""
    return {"kafka": kafka_port + index, "controller": kafka_port + 100 + index,
            "metrics": kafka_port + 200 + index}


def node_config(node_id: int, n: int, host: str, kafka_port: int, data_dir: Path,
                cluster_id: str) -> dict[str, Any]:
    ports = node_ports(kafka_port, node_id - 1)
    voters = ",".join(f"{i}@{host}:{node_ports(kafka_port, i - 1)['controller']}"
                      for i in range(1, n + 1)) if n > 1 else ""
    return {
        "node.id": node_id,
        "cluster.id": cluster_id,
        "process.roles": "broker,controller",
        "data.dir": str((data_dir / f"node-{node_id}").resolve()),
        "listeners": f"PLAINTEXT://{host}:{ports['kafka']}",
        "controller.listener": f"{host}:{ports['controller']}",
        "controller.quorum.voters": voters,
        "metrics.listener": f"{host}:{ports['metrics']}",
        "default.replication.factor": min(3, n),
        "offsets.topic.replication.factor": min(3, n),
    }


def _write_prometheus_config(data_dir: Path, info: dict[str, Any]) -> None:
    """A scrape config for this cluster, so `prometheus --config.file=<data-dir>/prometheus.yml`
    watches it with no editing."""
    targets = [n["metrics"].removeprefix("http://").removesuffix("/metrics")
               for n in info["nodes"]]
    config = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
              "scrape_configs": [{"job_name": "odradek",
                                  "static_configs": [{"targets": targets}]}]}
    tmp = data_dir / "prometheus.yml.tmp"
    tmp.write_text("# Written by `odradek cluster up` for this local cluster.\n"
                   + yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, data_dir / "prometheus.yml")


class _Slot:
    """One node of the cluster: the process we started, or the one started by hand after
    it died (found through its pid file, adopted: watched and stopped like ours)."""

    def __init__(self, cfg: dict[str, Any], cfg_path: Path, proc: subprocess.Popen[bytes]
                 ) -> None:
        self.cfg = cfg
        self.cfg_path = cfg_path
        self.proc: subprocess.Popen[bytes] | None = proc
        self.pid = proc.pid
        self.down = False

    @property
    def node_id(self) -> int:
        return int(self.cfg["node.id"])

    @property
    def data_dir(self) -> Path:
        return Path(self.cfg["data.dir"])

    def exit_code(self) -> int | None:
        """None while the node runs; its exit code (or -1 for an adopted one) once gone."""
        if self.proc is not None:
            return self.proc.poll()
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return -1
        except PermissionError:
            return None
        try:  # exited, and its parent (not us) has not reaped it yet
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            return -1 if state in ("Z", "X") else None
        except (OSError, IndexError):
            return None

    def stop(self, timeout: float = 60.0) -> None:
        if self.exit_code() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.exit_code() is None:
            if time.monotonic() > deadline:
                print(f"odradek: node {self.node_id} did not stop in {timeout:.0f}s; "
                      "killing it", flush=True)
                os.kill(self.pid, signal.SIGKILL)
                break
            time.sleep(0.1)


def _write_cluster_json(data_dir: Path, info: dict[str, Any]) -> None:
    tmp = data_dir / "cluster.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, data_dir / "cluster.json")


def up_cmd(args: argparse.Namespace) -> int:
    n = args.nodes
    if n < 1:
        print("odradek: --nodes must be at least 1", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster_id = uuid.uuid4().hex  # used only for nodes configured for the first time
    configs = []
    for node_id in range(1, n + 1):
        cfg_path = (data_dir / f"node-{node_id}.yaml").resolve()
        if not cfg_path.exists():
            cfg = node_config(node_id, n, args.host, args.kafka_port, data_dir, cluster_id)
            cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        configs.append((yaml.safe_load(cfg_path.read_text()), cfg_path))
    # A node left running from an earlier run (started by hand and not stopped) holds this
    # data dir and its ports: a new one would fail, after the old one looked ready.
    leftovers = [(cfg["node.id"], pid) for cfg, path in configs
                 if (pid := running_node_pid(Path(cfg["data.dir"]), path)) is not None]
    if leftovers:
        pids = " ".join(str(pid) for _, pid in leftovers)
        print("odradek: " + ", ".join(f"node {i} is already running (pid {pid})"
                                      for i, pid in leftovers)
              + f" on this data dir; stop it first (kill {pids}), then run this again",
              file=sys.stderr)
        return 1
    slots: list[_Slot] = []
    for cfg, cfg_path in configs:
        # Own session: Ctrl-C reaches only us, and we stop the nodes one at a time. The
        # node's own entry point (`odradek node` without the other subcommands' imports).
        proc = subprocess.Popen([sys.executable, "-m", "odradek.broker.cli.node", "node",
                                 "--config", str(cfg_path)], start_new_session=True)
        slots.append(_Slot(cfg, cfg_path, proc))
    nodes_info = [{
        "id": slot.node_id,
        "roles": [r.strip() for r in str(slot.cfg["process.roles"]).split(",")],
        "kafka": slot.cfg["listeners"].split("://", 1)[1],
        "metrics": f"http://{slot.cfg['metrics.listener']}/metrics",
        "pid": slot.pid,
        "config": str(slot.cfg_path),
    } for slot in slots]
    info = {"bootstrap": ",".join(str(x["kafka"]) for x in nodes_info), "nodes": nodes_info}
    _write_cluster_json(data_dir, info)
    _write_prometheus_config(data_dir, info)
    print(f"odradek: cluster of {n} node(s) starting; bootstrap {info['bootstrap']}; "
          f"details in {data_dir / 'cluster.json'}; Ctrl-C stops it", flush=True)

    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready: set[int] = set()
    started = time.monotonic()
    # The command to print for restarting a node: the one this was started as.
    odradek = sys.argv[0] if Path(sys.argv[0]).name == "odradek" else "odradek"
    while not stopping:
        for slot, node in zip(slots, nodes_info, strict=True):
            code = None if slot.down else slot.exit_code()
            if code is not None:
                slot.down = True
                ready.discard(slot.node_id)
                how = (f"killed by {signal.Signals(-code).name}" if code < -1
                       else "gone" if code == -1 else f"exited with code {code}")
                print(f"odradek: node {slot.node_id} {how}; start it again with: {odradek} "
                      f"node --config {slot.cfg_path}", flush=True)
            elif slot.down:
                pid = running_node_pid(slot.data_dir, slot.cfg_path)
                if pid is not None and pid != slot.pid:
                    # Restarted by hand: watch it, list it and stop it as one of ours.
                    slot.proc, slot.pid, slot.down = None, pid, False
                    node["pid"] = pid
                    _write_cluster_json(data_dir, info)
                    print(f"odradek: node {slot.node_id} is running again (pid {pid})",
                          flush=True)
            elif (slot.node_id not in ready and accepts(str(node["kafka"]))
                  and accepts(slot.cfg["metrics.listener"])):
                # Progress while the cluster comes up: a node is ready once it serves Kafka
                # and metrics. A broker's Kafka port accepts only once the controller has
                # unfenced it, so with every node ready, every broker can take replicas: an
                # application can create its topics and write at once.
                ready.add(slot.node_id)
                print(f"odradek: node {slot.node_id} ready on {node['kafka']} "
                      f"({len(ready)}/{n}, {time.monotonic() - started:.1f}s)", flush=True)
                if len(ready) == n:
                    print(f"odradek: cluster ready; bootstrap {info['bootstrap']}", flush=True)
        if all(slot.down for slot in slots):
            print("odradek: every node has stopped", flush=True)
            return 1
        time.sleep(0.2)
    # One at a time, last first: each node hands its leaderships to nodes still running.
    for slot in reversed(slots):
        slot.stop()
    return 0

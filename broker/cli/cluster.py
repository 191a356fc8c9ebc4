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


def up_cmd(args: argparse.Namespace) -> int:
    n = args.nodes
    if n < 1:
        print("odradek: --nodes must be at least 1", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[dict[str, Any], subprocess.Popen[bytes]]] = []
    cluster_id = uuid.uuid4().hex  # used only for nodes configured for the first time
    nodes_info = []
    for node_id in range(1, n + 1):
        cfg_path = (data_dir / f"node-{node_id}.yaml").resolve()
        if not cfg_path.exists():
            cfg = node_config(node_id, n, args.host, args.kafka_port, data_dir, cluster_id)
            cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        cfg = yaml.safe_load(cfg_path.read_text())
        # Own session: Ctrl-C reaches only us, and we stop the nodes one at a time.
        proc = subprocess.Popen([sys.executable, "-m", "odradek.broker.cli.main", "node",
                                 "--config", str(cfg_path)], start_new_session=True)
        procs.append((cfg, proc))
        kafka = cfg["listeners"].split("://", 1)[1]
        nodes_info.append({
            "id": node_id,
            "roles": [r.strip() for r in str(cfg["process.roles"]).split(",")],
            "kafka": kafka,
            "metrics": f"http://{cfg['metrics.listener']}/metrics",
            "pid": proc.pid,
            "config": str(cfg_path),
        })
    info = {"bootstrap": ",".join(x["kafka"] for x in nodes_info), "nodes": nodes_info}
    tmp = data_dir / "cluster.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, data_dir / "cluster.json")
    _write_prometheus_config(data_dir, info)
    print(f"odradek: cluster of {n} node(s) starting; bootstrap {info['bootstrap']}; "
          f"details in {data_dir / 'cluster.json'}; Ctrl-C stops it", flush=True)

    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reported: set[int] = set()
    ready: set[int] = set()
    started = time.monotonic()
    while not stopping:
        for (cfg, proc), node in zip(procs, nodes_info, strict=True):
            code = proc.poll()
            if code is not None and proc.pid not in reported:
                reported.add(proc.pid)
                print(f"odradek: node {cfg['node.id']} exited with code {code}", flush=True)
            elif (code is None and node["id"] not in ready and accepts(node["kafka"])
                  and accepts(cfg["metrics.listener"])):
                # Progress while the cluster comes up: a node is ready once it serves Kafka
                # and metrics. A broker's Kafka port accepts only once the controller has
                # unfenced it, so with every node ready, every broker can take replicas: an
                # application can create its topics and write at once.
                ready.add(node["id"])
                print(f"odradek: node {node['id']} ready on {node['kafka']} "
                      f"({len(ready)}/{n}, {time.monotonic() - started:.1f}s)", flush=True)
                if len(ready) == n:
                    print(f"odradek: cluster ready; bootstrap {info['bootstrap']}", flush=True)
        if len(reported) == len(procs):
            break
        time.sleep(0.2)
    # One at a time, last first: each node hands its leaderships to nodes still running.
    for cfg, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print(f"odradek: node {cfg['node.id']} did not stop in 60s; killing it",
                      flush=True)
                proc.kill()
    return 0

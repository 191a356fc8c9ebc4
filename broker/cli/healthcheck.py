"""``odradek healthcheck [--config FILE]``: is the node on this machine serving? The
container image's HEALTHCHECK runs it.

It reads the node's own configuration the way the node does (the YAML file plus the
ODRADEK_* environment overrides), so it probes the ports the node really uses:

- with ``metrics.listener`` set: ``GET /metrics`` must answer 200. The node opens its
  metrics endpoint (and its Kafka listeners) only once it has joined the cluster and caught
  up with the metadata, so this also says "serving";
- otherwise a broker's first Kafka listener, or a controller's ``controller.listener``,
  must accept a TCP connection.

Exit 0 = healthy, 1 = unhealthy (the reason on stderr). Standard library plus the node's
own config loader only: the image has no curl.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import sys
from pathlib import Path

DEFAULT_CONFIG = "/etc/odradek/node.yaml"
TIMEOUT_S = 4.0


def _local(host: str) -> str:
    # A wildcard bind is reachable on loopback; a named host is probed as configured.
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def probe(config_path: Path) -> str | None:
    """None when healthy, else what is wrong."""
    from odradek.broker.config import ConfigError, load_config

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        return f"invalid configuration: {e}"
    metrics = cfg["metrics.listener"]
    if metrics:
        host, _, port = metrics.rpartition(":")
        conn = http.client.HTTPConnection(_local(host), int(port), timeout=TIMEOUT_S)
        try:
            conn.request("GET", "/metrics")
            status = conn.getresponse().status
        except OSError as e:
            return f"metrics endpoint {metrics} does not answer: {e}"
        finally:
            conn.close()
        return None if status == 200 else f"metrics endpoint {metrics} answered {status}"
    if "broker" in cfg.roles:
        li = cfg.listeners[0]
        host, port = li.host, li.port
    else:
        host, _, p = cfg["controller.listener"].rpartition(":")
        port = int(p)
    try:
        socket.create_connection((_local(host), port), timeout=TIMEOUT_S).close()
    except OSError as e:
        return f"nothing accepts connections on {host}:{port}: {e}"
    return None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("healthcheck", help="exit 0 when the node on this machine serves "
                       "(a container health check)")
    p.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG),
                   help=f"the node's YAML configuration file (default {DEFAULT_CONFIG})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    problem = probe(args.config)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0

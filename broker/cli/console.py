"""``odradek console``: serve the web console for a cluster.

Without --bootstrap it looks for the cluster ``odradek cluster up`` (``make run``) wrote to
``./odradek-data/cluster.json`` and takes the bootstrap servers and the nodes' metrics
addresses from there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odradek.broker.console.targets import (
    DEFAULT_CLUSTER_FILE,
    MetricsTarget,
    from_cluster_file,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "console", help="serve the web console (overview, topics, groups, messages)",
        description="Serve the web console: the cluster's brokers, controller quorum and "
                    "health, topics with partitions and configs, consumer groups with lag, a "
                    "message browser and a test producer. It reads the cluster through the "
                    "Kafka protocol and the nodes' /metrics, like any client.")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (host:port,...); default: "
                                       "the cluster in --cluster-file")
    p.add_argument("--metrics", action="append", default=[], metavar="[NODE_ID=]URL",
                   help="a node's metrics address (repeatable), e.g. 1=127.0.0.1:9292; the "
                        "id joins a node's health to its broker")
    p.add_argument("--cluster-file", type=Path, default=DEFAULT_CLUSTER_FILE,
                   help="cluster.json of `odradek cluster up` (default: %(default)s)")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="where to serve the console (default: %(default)s); it can produce "
                        "to any topic, so keep it on a trusted interface")
    p.set_defaults(func=console_cmd)


def console_cmd(args: argparse.Namespace) -> int:
    from aiohttp import web

    from odradek.broker.console.app import make_app

    bootstrap = args.bootstrap
    metrics = [MetricsTarget.parse(m) for m in args.metrics]
    if bootstrap is None:
        try:
            bootstrap, from_file = from_cluster_file(args.cluster_file)
        except (OSError, ValueError, KeyError) as e:
            print(f"odradek: give --bootstrap, or run `make run` (odradek cluster up) first: "
                  f"cannot read {args.cluster_file} ({e})", file=sys.stderr)
            return 2
        if not metrics:
            metrics = from_file
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        print(f"odradek: --listen takes HOST:PORT, got {args.listen!r}", file=sys.stderr)
        return 2
    app = make_app(bootstrap, metrics)
    print(f"odradek: console for {bootstrap} on http://{host or '127.0.0.1'}:{port}/ "
          f"(Ctrl-C stops it)", flush=True)
    web.run_app(app, host=host.strip("[]") or "127.0.0.1", port=int(port), print=None,
                access_log=None)
    return 0

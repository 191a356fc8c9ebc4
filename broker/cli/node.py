"""``odradek node --config FILE``: run one node in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from odradek.broker.config import ConfigError, NodeConfig, load_config
from odradek.storage.meta_properties import MetaPropertiesError

if TYPE_CHECKING:
    from odradek.broker.node import Node


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("node", help="run one node (controller and/or broker)")
    p.add_argument("--config", required=True, help="the node's YAML configuration file")
    p.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                   help="stop cleanly when process PID is gone (used by the tools that "
                   "start local clusters, so a node never outlives them)")
    p.set_defaults(func=run)


# In the node's data directory while it runs: `odradek cluster up` finds a node restarted by
# hand through it, and a second process on the same data directory is refused at once.
PID_FILE = "node.pid"


def running_node_pid(data_dir: Path, config: Path) -> int | None:
    """The pid of a live ``odradek node --config <config>`` process on ``data_dir``, from
    its pid file (None: no file, or its process is gone, or the pid now belongs to another
    process: a node killed with SIGKILL leaves its file behind)."""
    try:
        pid = int((data_dir / PID_FILE).read_text().split()[0])
        os.kill(pid, 0)
    except PermissionError:
        pass  # alive, under another user
    except (OSError, ValueError, IndexError):
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = Path(f"/proc/{pid}/cwd").resolve()
    except OSError:
        return pid  # no /proc (macOS): trust the file, which the node removes at exit
    if b"node" not in argv or b"--config" not in argv[:-1]:
        return None
    given = Path(os.fsdecode(argv[argv.index(b"--config") + 1]))
    return pid if (cwd / given).resolve() == config.resolve() else None


def setup_logging(level: str, node_id: int) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s node={node_id} %(name)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.config))
        from odradek.broker.cli.metadata_plane import controller_security
        from odradek.broker.security import listeners

        listeners.check(config)
        controller_security(config)
    except ConfigError as e:
        print(f"odradek: invalid configuration: {e}", file=sys.stderr)
        return 2
    other = running_node_pid(config.data_dir, Path(args.config))
    if other is not None and other != os.getpid():
        print(f"odradek: node {config.node_id} already runs on {config.data_dir} (pid {other}); "
              f"stop it first (kill {other})", file=sys.stderr)
        return 1
    config.data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = config.data_dir / PID_FILE
    pid_file.write_text(f"{os.getpid()}\n")
    setup_logging(config["log.level"], config.node_id)
    _raise_open_files_limit(config["max.connections"])
    import uvloop

    try:
        return int(uvloop.run(_serve(config, args.parent_pid)))
    finally:
        try:
            if pid_file.read_text().split()[0] == str(os.getpid()):
                pid_file.unlink()
        except (OSError, IndexError):
            pass


def _tune_gc() -> None:
    """What the node holds from start-up on (modules, the metadata image, logs' indexes)
    leaves the cyclic collector's view (gc.freeze), and young collections run ten times less
    often: a client churning through connections (a password guesser, 1,400 failed logins
    a second) otherwise made a full collection over the whole heap every few seconds, a
    50 ms stop of every client's requests (tests/bench/security.py's storm)."""
    import gc

    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(threshold[0] * 10, *threshold[1:])


def _raise_open_files_limit(max_connections: int) -> None:
    """Every client connection, partition segment and index is a descriptor: take all the
    hard limit allows (many systems start processes with a soft limit of 1024), and say so
    when connections alone could use up what is left."""
    import resource

    log = logging.getLogger("odradek.node")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still cannot exceed the kernel's nr_open (1,048,576 by default).
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, e)
    if soft == resource.RLIM_INFINITY:
        return
    # Unbounded max.connections (the default): warn only about a small limit; a bound set
    # by the operator: warn when clients alone could take half the descriptors.
    unbounded = max_connections >= 2**31 - 1
    if (unbounded and soft < 4096) or (not unbounded and max_connections > soft // 2):
        log.warning(
            "the open-files limit is %d and max.connections is %d: clients alone could use "
            "up the descriptors logs and replication need (EMFILE). Raise the limit (ulimit "
            "-n, LimitNOFILE=, compose ulimits) or set max.connections below %d",
            soft, max_connections, soft // 2)


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    while True:
        await asyncio.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            logging.getLogger("odradek.node").warning(
                "process %d, which started this node, is gone: stopping", pid)
            stop.set()
            return
        except PermissionError:
            pass  # alive, under another user


def _log_tasks(node_id: int) -> None:
    """SIGUSR2: log where every task of the node waits (for a node that seems stuck)."""
    from odradek.broker.node import task_stacks

    logging.getLogger("odradek.node").warning("node %d: its tasks, on SIGUSR2:\n%s",
                                              node_id, task_stacks())


def build_node(config: NodeConfig) -> Node:
    """The node's wiring: its identity from its data directory, its metadata plane (local
    log or Raft quorum, with the controller and gRPC it needs), and the broker around it."""
    from odradek.broker.cli.metadata_plane import make_plane
    from odradek.broker.metadata_plane import node_identity
    from odradek.broker.node import Node

    me = node_identity(config.node_id, config.data_dir, config["cluster.id"],
                       config["controller.quorum.voters"])
    return Node(config, me, make_plane)


async def _serve(config: NodeConfig, parent_pid: int | None = None) -> int:

    log = logging.getLogger("odradek.node")
    stop = asyncio.Event()
    watcher = (asyncio.create_task(_watch_parent(parent_pid, stop))
               if parent_pid is not None else None)
    try:
        from odradek.broker import fault_injection  # refuses an unknown fault name

        fault_injection.warn_if_active(config.node_id)
        node = build_node(config)
        starting = asyncio.create_task(node.start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            # Our starter is gone before we served anyone: leave as after a crash.
            starting.cancel()
            return 1
        stopped.cancel()
        starting.result()
    except (OSError, RuntimeError, MetaPropertiesError) as e:
        log.error("cannot start: %s", e)
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR2, _log_tasks, config.node_id)
    _tune_gc()
    print(f"odradek node {config.node_id} ready", flush=True)
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    log.info("shutting down")
    await node.stop()
    return 0


if __name__ == "__main__":
    # `python -m odradek.broker.cli.node node --config FILE` (the same arguments as `odradek
    # node`, so running_node_pid recognizes it): how local clusters (tests, verify,
    # odradek.testing) start nodes. It skips importing every other subcommand, and hypothesis,
    # which kio's types import to register strategies when it is installed and a node never
    # uses: together a third of a node's start-up in a development environment.
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
    _parser = argparse.ArgumentParser(prog="odradek")
    add_parser(_parser.add_subparsers(dest="command", required=True))
    sys.exit(run(_parser.parse_args()))

"""``odradek quorum describe|add-controller|remove-controller|controller-properties``: the
controller quorum's voters (KIP-853), changed through the Kafka protocol as
``kafka-metadata-quorum.sh`` does it: DescribeQuorum (55), AddRaftVoter (80) and
RemoveRaftVoter (81) sent to any broker, which asks the controllers.

A controller is named by its node id and its data directory id (``directory.id`` in the
``meta.properties`` of its ``data.dir``): ``add-controller --config node.yaml`` reads both, and
the controller listener, from the new node's own configuration file, so what is added is
exactly the node that runs with it. ``controller-properties`` prints the same facts as the
Kafka-style properties file ``kafka-metadata-quorum.sh add-controller --command-config``
reads, for operators who use Kafka's tool.
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odradek.broker.cli.common import (
    CliError,
    common_options,
    guard,
    print_json,
    server_error,
    table,
)
from odradek.broker.cli.raw_requests import request
from odradek.broker.config import ConfigError, NodeConfig, load_config
from odradek.storage.meta_properties import (
    FILE_NAME,
    MetaProperties,
    MetaPropertiesError,
    decode_uuid,
    encode_uuid,
    read_meta_properties,
)

DESCRIBE_QUORUM, ADD_RAFT_VOTER, REMOVE_RAFT_VOTER = 55, 80, 81
METADATA_TOPIC = "__cluster_metadata"
NOT_LEADER_OR_FOLLOWER = 6
# The broker bounds AddRaftVoter's wait to 120 s (broker/handlers/raft_voters.py).
MAX_TIMEOUT_S = 120.0
# What to do about the voter-change errors users meet; the server's message says what.
_HINTS = {
    "DuplicateVoterError": "it is a voter already (`odradek quorum describe`)",
    "VoterNotFoundError": "`odradek quorum describe` lists the voters and their directory ids",
    "RequestTimedOutError": "is the new controller running (it logs \"starting as an "
                            "observer\") and reachable at its controller.listener? Run the "
                            "command again once it has caught up",
}


@dataclass(frozen=True, slots=True)
class Controller:
    """What AddRaftVoter names: a node, its data directory and its controller listener."""

    node_id: int
    directory_id: str  # Kafka's Uuid text; "" none
    listener: str
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"{self.listener}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Replica:
    role: str  # Leader, Follower, Observer (as kafka-metadata-quorum.sh describe)
    node_id: int
    directory_id: str
    log_end_offset: int
    lag: int
    endpoints: tuple[str, ...]


def split_host_port(address: str, what: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise CliError(f"{what} {address!r} is not host:port")
    return host.strip("[]"), int(port)


def controller_of(config: NodeConfig, meta: MetaProperties | None) -> Controller:
    """The controller a node's configuration and meta.properties describe (pure)."""
    where = config.data_dir / FILE_NAME
    if "controller" not in config.roles:
        raise CliError(f"node {config.node_id} has process.roles {','.join(config.roles)}: "
                       "only a node with the controller role can be a voter")
    if meta is None:
        raise CliError(f"{where} does not exist: start the node once (it writes the file, "
                       "then runs as an observer) and run this again")
    if meta.node_id != config.node_id:
        raise CliError(f"{where} belongs to node {meta.node_id}, the configuration says "
                       f"node.id {config.node_id}: is data.dir right?")
    if not meta.directory_id:
        raise CliError(f"{where} has no directory.id: start the node with this version of "
                       "Odradek once (it adds one) and run this again")
    host, port = split_host_port(config["controller.listener"], "controller.listener")
    return Controller(config.node_id, meta.directory_id, config.controller_listener_name,
                      host, port)


def kafka_properties(config: NodeConfig, controller: Controller) -> str:
    """A Kafka-style properties file for ``kafka-metadata-quorum.sh add-controller
    --command-config``: the keys that tool reads, with this node's values (pure)."""
    host = f"[{controller.host}]" if ":" in controller.host else controller.host
    return "\n".join([
        f"# Odradek node {controller.node_id}, as kafka-metadata-quorum.sh add-controller "
        "reads a controller's configuration",
        "# (written by `odradek quorum controller-properties`; Kafka's tool also passes "
        "this file to its admin client:",
        "# add security.protocol, sasl.* or ssl.* here when the cluster's listeners need "
        "them).",
        f"node.id={controller.node_id}",
        f"process.roles={','.join(config.roles)}",
        f"controller.listener.names={controller.listener}",
        f"listeners={controller.listener}://{host}:{controller.port}",
        # The directory whose meta.properties holds the directory.id the tool sends.
        f"metadata.log.dir={config.data_dir}",
        "",
    ])


def load_controller(path: str) -> tuple[NodeConfig, Controller]:
    try:
        config = load_config(Path(path))
        meta = read_meta_properties(config.data_dir)
    except (ConfigError, MetaPropertiesError, OSError) as e:
        raise CliError(f"{path}: {e}") from None
    return config, controller_of(config, meta)


def directory_uuid(text: str) -> uuid.UUID:
    """A directory id given on the command line (Kafka's Uuid text) as the wire's Uuid."""
    if not text:
        return uuid.UUID(int=0)
    try:
        return uuid.UUID(bytes=decode_uuid(text))
    except ValueError as e:
        raise CliError(f"--controller-directory-id: {e}") from None


def directory_text(value: uuid.UUID | None) -> str:
    """The wire's Uuid in Kafka's text form; "" for none (the codec reads zero as None)."""
    return "" if value is None or value.int == 0 else encode_uuid(value.bytes)


def add_request(controller: Controller, timeout_s: float) -> dict[str, Any]:
    return {"cluster_id": None, "timeout": int(timeout_s * 1000),
            "voter_id": controller.node_id,
            "voter_directory_id": directory_uuid(controller.directory_id),
            "listeners": [{"name": controller.listener, "host": controller.host,
                           "port": controller.port}],
            "ack_when_committed": True}


def replicas_of(response: Any) -> list[Replica]:
    """DescribeQuorum's answer as rows: the leader, the other voters, the observers (pure)."""
    if response.error_code:
        raise server_error("cannot describe the controller quorum", response.error_code,
                           response.error_message)
    part = response.topics[0].partitions[0]
    if part.error_code:
        raise server_error("cannot describe the controller quorum", part.error_code,
                           part.error_message)
    endpoints = {int(n.node_id): tuple(f"{x.name}://{x.host}:{x.port}" for x in n.listeners)
                 for n in response.nodes}
    leader_end = next((int(v.log_end_offset) for v in part.current_voters
                       if int(v.replica_id) == int(part.leader_id)), -1)

    def row(role: str, r: Any) -> Replica:
        end = int(r.log_end_offset)
        return Replica(role, int(r.replica_id), directory_text(r.replica_directory_id), end,
                       max(0, leader_end - end) if end >= 0 else -1,
                       endpoints.get(int(r.replica_id), ()))

    voters = sorted(part.current_voters,
                    key=lambda v: (int(v.replica_id) != int(part.leader_id), int(v.replica_id)))
    return ([row("Leader" if int(v.replica_id) == int(part.leader_id) else "Follower", v)
             for v in voters]
            + [row("Observer", o) for o in sorted(part.observers, key=lambda o: o.replica_id)])


def describe(args: argparse.Namespace) -> list[Replica]:
    response = request(args, DESCRIBE_QUORUM, 2, {"topics": [{
        "topic_name": METADATA_TOPIC, "partitions": [{"partition_index": 0}]}]})
    return replicas_of(response)


def _check(what: str, response: Any) -> None:
    if response.error_code:
        error = server_error(what, response.error_code, response.error_message)
        from kafka.errors import for_code

        hint = _HINTS.get(for_code(response.error_code).__name__)
        raise type(error)(f"{error}; {hint}" if hint else str(error))


@guard
def quorum_describe(args: argparse.Namespace) -> int:
    replicas = describe(args)
    if args.json:
        print_json(replicas)
    else:
        table(["NODE", "ROLE", "DIRECTORY-ID", "LOG-END", "LAG", "ENDPOINTS"],
              [[r.node_id, r.role, r.directory_id or "-", r.log_end_offset, r.lag,
                ",".join(r.endpoints) or "-"] for r in replicas])
    return 0


@guard
def quorum_add_controller(args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= MAX_TIMEOUT_S:
        raise CliError(f"--timeout must be in (0, {MAX_TIMEOUT_S:.0f}] seconds")
    _, controller = load_controller(args.config)
    response = request(args, ADD_RAFT_VOTER, 1, add_request(controller, args.timeout),
                       timeout=args.timeout + 10)
    _check(f"cannot add controller {controller.node_id}", response)
    if args.json:
        print_json({"added": controller})
    else:
        print(f"added controller {controller.node_id} (directory {controller.directory_id}, "
              f"{controller.endpoint}) to the voters")
    return 0


@guard
def quorum_remove_controller(args: argparse.Namespace) -> int:
    node_id = args.controller_id
    directory = args.controller_directory_id
    if directory is None:
        # Name the voter as the quorum records it: its directory id, if it has one.
        voter = next((r for r in describe(args)
                      if r.node_id == node_id and r.role != "Observer"), None)
        if voter is None:
            raise CliError(f"controller {node_id} is not a voter; `odradek quorum describe` "
                           "lists the voters")
        directory = voter.directory_id
    response = request(args, REMOVE_RAFT_VOTER, 0, {
        "cluster_id": None, "voter_id": node_id,
        "voter_directory_id": directory_uuid(directory)},
        lambda r: r.error_code == NOT_LEADER_OR_FOLLOWER)
    _check(f"cannot remove controller {node_id}", response)
    if args.json:
        print_json({"removed": {"node_id": node_id, "directory_id": directory}})
    else:
        print(f"removed controller {node_id}{f' (directory {directory})' if directory else ''}"
              " from the voters")
    return 0


@guard
def quorum_controller_properties(args: argparse.Namespace) -> int:
    config, controller = load_controller(args.config)
    text = kafka_properties(config, controller)
    if args.json:
        print_json({"controller": controller, "properties": text})
    else:
        print(text, end="")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("quorum", help="the controller quorum's voters (KIP-853)")
    qsub = p.add_subparsers(dest="quorum_command", required=True, metavar="ACTION")
    d = qsub.add_parser("describe", parents=[common_options()],
                        help="voters and observers, with their directory ids")
    d.set_defaults(func=quorum_describe)
    a = qsub.add_parser("add-controller", parents=[common_options()],
                        help="make a running controller (an observer) a voter")
    a.add_argument("--config", required=True, metavar="NODE_YAML",
                   help="the new controller's node configuration: its node.id, "
                        "controller.listener and data.dir (whose meta.properties holds its "
                        "directory id)")
    a.add_argument("--timeout", type=float, default=60.0,
                   help="seconds the active controller waits for it to catch up and for the "
                        "change to commit (default 60, at most 120)")
    a.set_defaults(func=quorum_add_controller)
    r = qsub.add_parser("remove-controller", parents=[common_options()],
                        help="remove a voter (a dead controller, or one to retire)")
    r.add_argument("--controller-id", type=int, required=True, metavar="ID")
    r.add_argument("--controller-directory-id", metavar="UUID",
                   help="the voter's directory id (default: the one the quorum records for "
                        "it, as `odradek quorum describe` shows)")
    r.set_defaults(func=quorum_remove_controller)
    k = qsub.add_parser("controller-properties",
                        help="print the Kafka-style properties file of a controller, for "
                             "kafka-metadata-quorum.sh add-controller --command-config")
    k.add_argument("--config", required=True, metavar="NODE_YAML",
                   help="the controller's node configuration")
    k.add_argument("--json", action="store_true", help="machine-readable JSON output")
    k.set_defaults(func=quorum_controller_properties)

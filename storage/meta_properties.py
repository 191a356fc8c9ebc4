"""A node's ``meta.properties``: which cluster and node a data directory belongs to, and the
directory's own id, in Kafka's format (version 1: ``cluster.id``, ``node.id``,
``directory.id``), so Kafka's tools that read it (``kafka-metadata-quorum.sh add-controller``)
read an Odradek data directory as they read a Kafka one.

The directory id (KIP-858) names this copy of the node's data: a controller whose disk is
replaced comes back with the same node id and a new directory id, and the Raft voter set
records the directory id a voter was added with (controller.raft.membership), so the old and
the new disk are never taken for one another.

Parsing, formatting and validation are pure; ``ensure_meta_properties`` is the one function
that touches the disk.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "meta.properties"
VERSION = 1
UUID_BYTES = 16
# Kafka's all-zero Uuid, "no directory" on the wire, in its base64 form.
ZERO_DIRECTORY_ID = "AAAAAAAAAAAAAAAAAAAAAA"


class MetaPropertiesError(ValueError):
    """meta.properties is unreadable, or belongs to another node or cluster."""


def encode_uuid(raw: bytes) -> str:
    """Kafka's text form of a Uuid: URL-safe base64 of its 16 bytes, without padding."""
    if len(raw) != UUID_BYTES:
        raise ValueError(f"a Uuid has {UUID_BYTES} bytes, got {len(raw)}")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_uuid(text: str) -> bytes:
    """The 16 bytes of a Uuid in Kafka's text form; ValueError says what is wrong."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a Uuid (22 characters of URL-safe base64)") from exc
    if len(raw) != UUID_BYTES or encode_uuid(raw) != text:
        raise ValueError(f"{text!r} is not a Uuid (22 characters of URL-safe base64)")
    return raw


def is_reserved(raw: bytes) -> bool:
    """Kafka reserves the Uuids whose first 64 bits are zero and last 64 bits below 100 (the
    zero Uuid, "unassigned" and "lost" directories among them); a real directory never has
    one."""
    return int.from_bytes(raw[:8], "big") == 0 and int.from_bytes(raw[8:], "big") < 100


def new_directory_id(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A fresh directory id. Like Kafka's, never a reserved Uuid and never one whose text
    starts with '-' (it would read as an option on a command line)."""
    while True:
        raw = random_bytes(UUID_BYTES)
        text = encode_uuid(raw)
        if not is_reserved(raw) and not text.startswith("-"):
            return text


@dataclass(frozen=True, slots=True)
class MetaProperties:
    cluster_id: str
    node_id: int
    # "" in a file written by an Odradek version before directory ids.
    directory_id: str


def parse_properties(text: str) -> dict[str, str]:
    """Java properties as Kafka writes meta.properties: ``key=value`` lines, ``#`` or ``!``
    comments. Line continuations and escapes never occur in it and are not supported."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut < 0:
            raise MetaPropertiesError(f"line {line!r} is not key=value")
        props[line[:cut].strip()] = line[cut + 1:].strip()
    return props


def from_properties(props: Mapping[str, str]) -> MetaProperties:
    version = props.get("version", "0")
    if version != str(VERSION):
        raise MetaPropertiesError(
            f"version {version} is not supported (Odradek reads version {VERSION}, KRaft's; "
            "version 0 is a ZooKeeper-era broker's)")
    cluster_id = props.get("cluster.id", "")
    if not cluster_id:
        raise MetaPropertiesError("cluster.id is missing")
    try:
        node_id = int(props["node.id"])
    except KeyError:
        raise MetaPropertiesError("node.id is missing") from None
    except ValueError:
        raise MetaPropertiesError(f"node.id {props['node.id']!r} is not an integer") from None
    directory_id = props.get("directory.id", "")
    if directory_id:
        try:
            raw = decode_uuid(directory_id)
        except ValueError as exc:
            raise MetaPropertiesError(f"directory.id: {exc}") from None
        if is_reserved(raw):
            raise MetaPropertiesError(f"directory.id {directory_id} is a reserved Uuid")
    return MetaProperties(cluster_id, node_id, directory_id)


def format_properties(meta: MetaProperties) -> str:
    lines = ["# The cluster and node this data directory belongs to, and its own id (Kafka's format)",
             f"version={VERSION}", f"cluster.id={meta.cluster_id}", f"node.id={meta.node_id}"]
    if meta.directory_id:
        lines.append(f"directory.id={meta.directory_id}")
    return "\n".join(lines) + "\n"


def check_belongs(meta: MetaProperties, path: Path, node_id: int,
                  cluster_id: str | None) -> None:
    """Refuse a data directory of another node or cluster, as Kafka does: starting on it
    would serve (and replicate) another node's data under this node's name."""
    if meta.node_id != node_id:
        raise MetaPropertiesError(
            f"{path} belongs to node {meta.node_id}, not node {node_id}: point data.dir at "
            "this node's own directory (or fix node.id)")
    if cluster_id is not None and meta.cluster_id != cluster_id:
        raise MetaPropertiesError(
            f"{path} belongs to cluster {meta.cluster_id}, but this node is configured for "
            f"cluster {cluster_id}: point data.dir at this cluster's directory (or fix "
            "cluster.id / controller.quorum.voters)")


def resolve(existing: MetaProperties | None, path: Path, node_id: int, cluster_id: str | None,
            new_cluster_id: Callable[[], str],
            new_directory: Callable[[], str] = new_directory_id) -> MetaProperties:
    """What meta.properties must say: the existing one, checked, with a directory id added
    if it has none (a directory of an older Odradek); or a new one."""
    if existing is None:
        return MetaProperties(cluster_id or new_cluster_id(), node_id, new_directory())
    check_belongs(existing, path, node_id, cluster_id)
    if existing.directory_id:
        return existing
    return MetaProperties(existing.cluster_id, existing.node_id, new_directory())


def read_meta_properties(data_dir: Path) -> MetaProperties | None:
    path = data_dir / FILE_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return from_properties(parse_properties(text))
    except MetaPropertiesError as exc:
        raise MetaPropertiesError(
            f"{path}: {exc}; it ties this data directory to its cluster and node: restore it "
            "or point data.dir at another directory") from None


def ensure_meta_properties(data_dir: Path, node_id: int, cluster_id: str | None,
                           new_cluster_id: Callable[[], str]) -> MetaProperties:
    """Read and check ``<data_dir>/meta.properties``, writing it (atomically, fsynced) when it
    is missing or lacks a directory id."""
    path = data_dir / FILE_NAME
    existing = read_meta_properties(data_dir)
    meta = resolve(existing, path, node_id, cluster_id, new_cluster_id)
    if meta != existing:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(format_properties(meta))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        dir_fd = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return meta

"""meta.properties: Kafka's format (what kafka-metadata-quorum.sh add-controller reads), the
directory id's Uuid text, and the checks that keep a node off another node's or cluster's
data directory."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from odradek.storage.meta_properties import (
    ZERO_DIRECTORY_ID,
    MetaProperties,
    MetaPropertiesError,
    decode_uuid,
    encode_uuid,
    ensure_meta_properties,
    format_properties,
    from_properties,
    is_reserved,
    new_directory_id,
    parse_properties,
    read_meta_properties,
    resolve,
)

# As Kafka 4.1 writes it (kafka-storage.sh format).
KAFKA_WRITTEN = """#
#Mon Dec 07 16:00:00 UTC 2026
node.id=4
directory.id=J8aAPcfLQt2bqs1JT_rMgQ
version=1
cluster.id=MkU3OEVBNTcwNTJENDM2Qk
"""
P = Path("/data/meta.properties")


def test_reads_what_kafka_writes() -> None:
    meta = from_properties(parse_properties(KAFKA_WRITTEN))
    assert meta == MetaProperties("MkU3OEVBNTcwNTJENDM2Qk", 4, "J8aAPcfLQt2bqs1JT_rMgQ")


def test_format_round_trips_with_kafka_keys() -> None:
    meta = MetaProperties("abc", 7, "J8aAPcfLQt2bqs1JT_rMgQ")
    text = format_properties(meta)
    props = parse_properties(text)
    assert props == {"version": "1", "cluster.id": "abc", "node.id": "7",
                     "directory.id": "J8aAPcfLQt2bqs1JT_rMgQ"}
    assert from_properties(props) == meta


def test_uuid_text_is_kafkas_base64() -> None:
    assert encode_uuid(bytes(16)) == ZERO_DIRECTORY_ID
    raw = bytes(range(1, 17))
    assert encode_uuid(raw) == "AQIDBAUGBwgJCgsMDQ4PEA"
    assert decode_uuid("AQIDBAUGBwgJCgsMDQ4PEA") == raw
    for bad in ("", "short", "AQIDBAUGBwgJCgsMDQ4PEA==", "AQIDBAUGBwgJCgsMDQ4PE!", "a" * 24):
        with pytest.raises(ValueError):
            decode_uuid(bad)


def test_new_directory_ids_avoid_reserved_and_dash() -> None:
    assert is_reserved(bytes(16)) and is_reserved(bytes(15) + b"\x63")
    assert not is_reserved(bytes(15) + b"\x64")
    # A generator that first yields the zero Uuid, then one whose text starts with '-'.
    feed = itertools.chain([bytes(16), b"\xf8" + bytes(15)], itertools.repeat(b"\x01" * 16))
    got = new_directory_id(lambda n: next(feed))
    assert got == encode_uuid(b"\x01" * 16)
    assert encode_uuid(b"\xf8" + bytes(15)).startswith("-")


@pytest.mark.parametrize(("text", "error"), [
    ("cluster.id=a\nnode.id=1\n", "version 0"),
    ("version=2\ncluster.id=a\nnode.id=1\n", "version 2"),
    ("version=1\nnode.id=1\n", "cluster.id is missing"),
    ("version=1\ncluster.id=a\n", "node.id is missing"),
    ("version=1\ncluster.id=a\nnode.id=x\n", "not an integer"),
    ("version=1\ncluster.id=a\nnode.id=1\ndirectory.id=nope\n", "directory.id"),
    (f"version=1\ncluster.id=a\nnode.id=1\ndirectory.id={ZERO_DIRECTORY_ID}\n", "reserved"),
    ("version=1\ngarbage\n", "not key=value"),
])
def test_refuses_malformed(text: str, error: str) -> None:
    with pytest.raises(MetaPropertiesError, match=error):
        from_properties(parse_properties(text))


def test_resolve_new_directory() -> None:
    meta = resolve(None, P, 3, None, lambda: "generated", lambda: "DIR")
    assert meta == MetaProperties("generated", 3, "DIR")
    assert resolve(None, P, 3, "wanted", lambda: "generated", lambda: "DIR").cluster_id == "wanted"


def test_resolve_keeps_and_upgrades_existing() -> None:
    full = MetaProperties("c", 3, "DIR1")
    assert resolve(full, P, 3, "c", lambda: "x", lambda: "DIR2") is full
    # A data directory of an Odradek version before directory ids: keeps its cluster id and
    # gains a directory id.
    old = MetaProperties("c", 3, "")
    assert resolve(old, P, 3, None, lambda: "x", lambda: "DIR2") == MetaProperties(
        "c", 3, "DIR2")


def test_resolve_refuses_another_node_or_cluster() -> None:
    meta = MetaProperties("c", 3, "DIR")
    with pytest.raises(MetaPropertiesError, match="belongs to node 3, not node 4"):
        resolve(meta, P, 4, "c", lambda: "x")
    with pytest.raises(MetaPropertiesError, match="belongs to cluster c.*configured for cluster d"):
        resolve(meta, P, 3, "d", lambda: "x")


def test_ensure_writes_then_reads_and_upgrades(tmp_path: Path) -> None:
    data = tmp_path / "node"
    first = ensure_meta_properties(data, 2, None, lambda: "cid")
    assert first.cluster_id == "cid" and first.node_id == 2 and len(first.directory_id) == 22
    assert read_meta_properties(data) == first
    # Restarts keep the same identity (no new directory id).
    assert ensure_meta_properties(data, 2, "cid", lambda: "other") == first
    # An older Odradek's file (no directory.id) gains one and keeps the rest.
    (data / "meta.properties").write_text("version=1\ncluster.id=old\nnode.id=2\n")
    upgraded = ensure_meta_properties(data, 2, None, lambda: "other")
    assert upgraded.cluster_id == "old" and upgraded.directory_id
    assert read_meta_properties(data) == upgraded
    with pytest.raises(MetaPropertiesError, match="not node 5"):
        ensure_meta_properties(data, 5, None, lambda: "x")


def test_unreadable_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "meta.properties").write_text("version=1\nnode.id=1\n")
    with pytest.raises(MetaPropertiesError, match="cluster.id is missing.*restore it"):
        read_meta_properties(tmp_path)

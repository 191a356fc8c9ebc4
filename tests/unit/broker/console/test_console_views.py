"""The console's pure parts: a node's health from its metrics text, the quorum across
nodes, how keys and values are shown, and the JSON the API answers."""

from __future__ import annotations

from dataclasses import dataclass

from odradek.broker.console.app import jsonable
from odradek.broker.console.metrics_view import node_health, quorum, unreachable
from odradek.broker.console.reader import PartitionView, shown
from odradek.broker.console.targets import MetricsTarget

METRICS = """\
# HELP odradek_controller_active 1 on the active controller.
# TYPE odradek_controller_active gauge
odradek_controller_active 1.0
# TYPE odradek_raft_role gauge
odradek_raft_role{role="follower"} 0.0
odradek_raft_role{role="leader"} 1.0
# TYPE odradek_raft_term gauge
odradek_raft_term 7.0
# TYPE odradek_raft_leader_id gauge
odradek_raft_leader_id 2.0
# TYPE odradek_partitions_led gauge
odradek_partitions_led 18.0
# TYPE odradek_under_replicated_partitions gauge
odradek_under_replicated_partitions 3.0
# TYPE odradek_log_size_bytes gauge
odradek_log_size_bytes{partition="0",topic="orders"} 4096.0
odradek_log_size_bytes{partition="x",topic="bad"} 1.0
# TYPE odradek_connections gauge
odradek_connections{listener="PLAINTEXT"} 4.0
odradek_connections{listener="INTERNAL"} 2.0
"""


def test_node_health_from_metrics() -> None:
    h = node_health("http://n2/metrics", METRICS)
    assert h.up and h.controller_active and h.raft_role == "leader"
    assert (h.raft_term, h.raft_leader_id, h.partitions_led, h.under_replicated) == (7, 2, 18, 3)
    assert h.log_sizes == {("orders", 0): 4096}  # a sample with a bad label is skipped
    assert h.connections == 6
    assert h.partitions_hosted is None  # not exported by this node: unknown, not 0


def test_broker_only_node_has_no_raft_role() -> None:
    h = node_health("u", "# TYPE odradek_partitions_led gauge\nodradek_partitions_led 1.0\n")
    assert h.raft_role is None and h.controller_active is None and h.connections is None


def test_quorum_takes_the_newest_term() -> None:
    def voter(url: str, role: str, term: int, leader: int) -> object:
        return node_health(url, f'odradek_raft_role{{role="{role}"}} 1.0\n'
                                f"odradek_raft_term {term}.0\nodradek_raft_leader_id {leader}.0\n")

    nodes = [voter("a", "follower", 3, 1), voter("b", "leader", 4, 2),
             voter("c", "follower", 4, 2), unreachable("d", "connection refused")]
    q = quorum(nodes)  # type: ignore[arg-type]
    assert (q.leader_id, q.term, q.disagreement) == (2, 4, True)
    assert q.roles == {"a": "follower", "b": "leader", "c": "follower"}
    assert quorum([unreachable("d", "down")]).leader_id is None


def test_values_are_shown_as_text_json_and_hex() -> None:
    v = shown(b'{"a": 1}')
    assert v is not None and v.is_json and v.json == {"a": 1} and v.text == '{"a": 1}'
    assert v.hex.startswith("7b 22") and not v.truncated
    binary = shown(b"\xff\x00")
    assert binary is not None and binary.text is None and binary.hex == "ff 00"
    cut = shown(b'{"a": "' + b"x" * 100 + b'"}', limit=10)
    assert cut is not None and cut.truncated and cut.size == 109 and not cut.is_json
    assert shown(None) is None
    euro = shown("€€".encode(), limit=4)  # the cut splits the second character
    assert euro is not None and euro.text == "€" and euro.truncated
    scalar = shown(b"42")  # JSON, but a scalar is shown as text
    assert scalar is not None and not scalar.is_json


def test_metrics_targets_and_json() -> None:
    assert MetricsTarget.parse("1=127.0.0.1:9292") == MetricsTarget(
        "http://127.0.0.1:9292/metrics", 1)
    assert MetricsTarget.parse("http://h:1/metrics") == MetricsTarget("http://h:1/metrics")

    @dataclass
    class Box:
        sizes: dict[tuple[str, int], int]

    assert jsonable(Box({("t", 0): 5})) == {"sizes": {"t-0": 5}}
    p = PartitionView(0, None, [1, 2], [1], [])
    assert not p.under_replicated  # offline, which the console counts apart
    assert PartitionView(0, 1, [1, 2], [1], []).under_replicated

"""A controller node's client follows its own Raft's view of the leader."""

from __future__ import annotations

from odradek.controller.client import ControllerClient


def test_leader_hint_overrides_a_stale_leader_and_is_ignored_when_unknown() -> None:
    hint = {"leader": -1}
    client = ControllerClient({1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"},
                              leader_hint=lambda: hint["leader"])
    first = client._target()
    assert first.node_id in (1, 2, 3)  # no hint: rotate through the voters
    hint["leader"] = 2
    assert client._target().node_id == 2
    hint["leader"] = 3  # the local Raft saw leadership move: do not wait on node 2
    assert client._target().node_id == 3
    hint["leader"] = 99  # not a voter: ignored, keep the last known leader
    assert client._target().node_id == 3

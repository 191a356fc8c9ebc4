"""odradek.testing.OdradekCluster without pytest's fixtures: the context manager, the errors
users see, and the repairs the plugin makes between tests (run here from the checkout)."""

from __future__ import annotations

import socket

import pytest

from odradek.testing import ClusterSpec, OdradekCluster, OdradekClusterError, unique_name

pytestmark = pytest.mark.integration


def test_context_manager_starts_and_cleans_up() -> None:
    with OdradekCluster() as cluster:
        base = cluster.base
        pids = [n.pid for n in cluster.nodes]
        cluster.create_topic("orders", partitions=2)
        assert [p.partition for p in cluster.partitions("orders")] == [0, 1]
        assert cluster.produce("orders", ["a"]) and cluster.read_to_end("orders")[0].value == b"a"
    assert not base.exists()
    assert all(not n.alive() for n in cluster.nodes) and all(pids)


def test_a_node_that_cannot_start_shows_its_log() -> None:
    cluster = OdradekCluster(config={"no.such.setting": 1})
    with pytest.raises(OdradekClusterError) as e:
        cluster.start()
    message = str(e.value)
    assert "did not start" in message and "no.such.setting" in message, message
    cluster.stop()


def test_a_port_taken_before_the_node_binds_it_is_retried_on_new_ports() -> None:
    """What happens when another xdist worker binds a drawn port first."""
    cluster = OdradekCluster()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", cluster.nodes[0].kafka_port))
        taken.listen()
        try:
            cluster.start()
            assert cluster.nodes[0].kafka_port != taken.getsockname()[1]
            cluster.create_topic("after-retry")
        finally:
            cluster.stop()


def test_revive_resumes_paused_and_restarts_killed_nodes() -> None:
    with OdradekCluster() as cluster:
        (node,) = cluster.nodes
        cluster.pause(node)
        assert cluster.revive() == [node] and not node.paused
        cluster.kill(node)
        assert not node.alive()
        assert cluster.revive() == [node] and node.alive()
        cluster.create_topic("after-restart")
        assert cluster.wait_for_leader("after-restart").node_id == node.node_id


def test_names_and_specs() -> None:
    a, b = unique_name("test_x[param 1/2]"), unique_name("test_x[param 1/2]")
    assert a != b and a.startswith("test_x_param_1_2") and len(a) < 249
    assert ClusterSpec.of(3, {"b": 1, "a": 2}) == ClusterSpec.of(3, {"a": 2, "b": 1})
    assert ClusterSpec.of(3).id == "odradek-3n"
    with pytest.raises(ValueError, match="at least one node"):
        ClusterSpec.of(0)

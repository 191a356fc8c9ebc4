"""Replacing a dead controller (KIP-853) with real processes: a 3-voter quorum loses one
voter for good; a new controller node (not in controller.quorum.voters, so it starts as an
observer and asks the leader to replicate to it) is added with AddRaftVoter and the dead one removed with RemoveRaftVoter, both over
the Kafka protocol; metadata written before and after is all there, and the new voter set
{1, 2, 4} survives the loss of one more voter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from odradek.broker.kafka.client import KafkaConnection
from odradek.broker.local_cluster import free_port
from odradek.storage.meta_properties import decode_uuid, read_meta_properties
from tests.integration.harness import Cluster, NodeProcess, wait_for

pytestmark = pytest.mark.integration

DUPLICATE_VOTER, VOTER_NOT_FOUND, CLUSTER_AUTH_FAILED, INVALID_REQUEST = 126, 127, 31, 42


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path, n=3).start()
    yield c
    c.kill_all()
    for n in getattr(c, "extra", []):
        n.kill()


def admin(node: NodeProcess) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=node.bootstrap, request_timeout_ms=15_000)


def create_topic(node: NodeProcess, name: str, rf: int, retention_ms: str) -> None:
    """Retried: right after a controller dies, a client may still be sent to it."""

    def attempt() -> bool:
        a = admin(node)
        try:
            a.create_topics([NewTopic(name, 1, rf,
                                      topic_configs={"retention.ms": retention_ms})])
        except TopicAlreadyExistsError:
            pass  # an earlier attempt got through after all
        finally:
            a.close()
        return True

    wait_for(attempt, 60, f"topic {name} created")


def topic_retention(node: NodeProcess, name: str) -> str:
    a = admin(node)
    try:
        got = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        a.close()
    value: str = got["topic"][name]["retention.ms"]["value"]
    return value


def quorum(node: NodeProcess) -> dict[str, Any]:
    a = admin(node)
    try:
        p: dict[str, Any] = a.describe_metadata_quorum()["topics"][0]["partitions"][0]
        return p
    finally:
        a.close()


def voters(node: NodeProcess) -> list[int]:
    return sorted(v["replica_id"] for v in quorum(node)["current_voters"])


def directory_of(node: NodeProcess) -> uuid.UUID:
    """The node's data directory id, from the meta.properties it wrote."""
    meta = read_meta_properties(node.data_dir)
    assert meta is not None and meta.directory_id
    return uuid.UUID(bytes=decode_uuid(meta.directory_id))


def add_voter(node: NodeProcess, voter_id: int, host: str, port: int,
              directory: uuid.UUID) -> Any:
    with KafkaConnection.to(node.bootstrap, timeout=60) as conn:
        return conn.request(80, 1, {
            "cluster_id": None, "timeout": 30_000, "voter_id": voter_id,
            "voter_directory_id": directory, "ack_when_committed": True,
            "listeners": [{"name": "CONTROLLER", "host": host, "port": port}]})


def remove_voter(node: NodeProcess, voter_id: int) -> Any:
    with KafkaConnection.to(node.bootstrap, timeout=60) as conn:
        return conn.request(81, 0, {"cluster_id": None, "voter_id": voter_id,
                                    "voter_directory_id": uuid.uuid4()})


@pytest.mark.parametrize("roles", ["controller", "broker,controller"])
def test_replace_a_dead_controller(cluster: Cluster, roles: str) -> None:
    n1, n2, n3 = (cluster.node(i) for i in (1, 2, 3))
    create_topic(n1, "before", 2, "111111")
    n3.kill()  # for good
    # A new controller (controller-only, or combined: its broker is unfenced only once its
    # metadata has caught up, which it does as an observer): same cluster (same controller.quorum.voters, so the same
    # derived cluster id), not a voter itself, so it starts as an observer.
    port = free_port()
    common = {k: v for k, v in n1.overrides.items() if k != "controller.listener"}
    n4 = NodeProcess(n1.base, node_id=4, overrides={
        **common, "process.roles": roles, "controller.listener": f"127.0.0.1:{port}"})
    cluster.extra = [n4]  # type: ignore[attr-defined]
    n4.start(60)
    assert "starting as an observer" in n4.logs(100_000)
    create_topic(n1, "while-down", 2, "222222")
    # It asks the leader to replicate to it (Observe) and catches up as an observer.

    def observing() -> dict[str, Any] | None:
        p = quorum(n2)
        seen = {o["replica_id"]: o for o in p["observers"]}
        ok = 4 in seen and seen[4]["log_end_offset"] >= p["high_watermark"] - 1
        return p if ok else None

    wait_for(observing, 30, "node 4 observing, caught up")

    # A directory id other than the one node 4 runs on (its meta.properties): refused.
    wrong = add_voter(n1, 4, "127.0.0.1", port, uuid.uuid4())
    assert wrong.error_code == INVALID_REQUEST and "runs on directory" in wrong.error_message
    answer = add_voter(n1, 4, "127.0.0.1", port, directory_of(n4))
    assert answer.error_code == 0, answer
    assert wait_for(lambda: voters(n2) == [1, 2, 3, 4], 30, "voters 1,2,3,4")
    again = add_voter(n2, 4, "127.0.0.1", port, directory_of(n4))
    assert again.error_code == DUPLICATE_VOTER, again

    answer = remove_voter(n2, 3)
    assert answer.error_code == 0, answer
    assert wait_for(lambda: voters(n1) == [1, 2, 4], 30, "voters 1,2,4")
    again = remove_voter(n1, 3)
    assert again.error_code == VOTER_NOT_FOUND, again
    # DescribeQuorum's v2 nodes: the new voter's controller listener, learnt from the log.
    def quorum_nodes() -> dict[int, int]:
        a = admin(n1)
        try:
            return {n["node_id"]: n["listeners"][0]["port"]
                    for n in a.describe_metadata_quorum()["nodes"]}
        finally:
            a.close()

    # (Retried: until its session times out, dead broker 3 is in Metadata and a client may
    # pick it.)
    nodes = wait_for(quorum_nodes, 30, "DescribeQuorum nodes")
    assert nodes[4] == port and 3 not in nodes

    create_topic(n2, "after", 2, "333333")
    for node in (n1, n2):
        for topic, retention in (("before", "111111"), ("while-down", "222222"),
                                 ("after", "333333")):
            assert wait_for(lambda node=node, topic=topic: topic_retention(node, topic),
                            30, f"{topic} on node {node.node_id}") == retention

    # One more voter dies: {2, 4} is a majority of {1, 2, 4} and keeps committing.
    n1.kill()
    p = wait_for(lambda: (lambda q: q if q["leader_id"] in (2, 4) else None)(quorum(n2)),
                 60, "a leader among 2 and 4")
    assert sorted(v["replica_id"] for v in p["current_voters"]) == [1, 2, 4]
    create_topic(n2, "last", 1, "444444")
    assert wait_for(lambda: topic_retention(n2, "last"), 30, "last") == "444444"
    assert wait_for(lambda: topic_retention(n2, "before"), 30, "before") == "111111"
    # The new voter holds everything: its log end is the leader's high watermark or more.
    p = wait_for(lambda: quorum(n2), 30, "quorum described")
    new_voter = next(v for v in p["current_voters"] if v["replica_id"] == 4)
    assert new_voter["log_end_offset"] >= p["high_watermark"] - 1, p


def test_a_removed_live_controller_keeps_following_as_an_observer(cluster: Cluster) -> None:
    n1, n3 = cluster.node(1), cluster.node(3)
    answer = remove_voter(n1, 3)
    assert answer.error_code == 0, answer
    assert wait_for(lambda: voters(n1) == [1, 2], 30, "voters 1,2")

    def observer_3() -> dict[str, Any] | None:
        p = quorum(n1)
        seen = {o["replica_id"]: o for o in p["observers"]}
        return p if 3 in seen and seen[3]["log_end_offset"] >= p["high_watermark"] - 1 else None

    wait_for(observer_3, 30, "node 3 observing, caught up")
    # Its broker still sees new metadata: it follows the log.
    create_topic(n1, "after-removal", 2, "555555")
    assert wait_for(lambda: topic_retention(n3, "after-removal"), 30,
                    "topic seen through node 3") == "555555"
    # Adding it back makes it a voter again.
    host, _, port = n3.overrides["controller.listener"].rpartition(":")
    answer = add_voter(n1, 3, host, int(port), directory_of(n3))
    assert answer.error_code == 0, answer
    assert wait_for(lambda: voters(n3) == [1, 2, 3], 30, "voters 1,2,3 again")

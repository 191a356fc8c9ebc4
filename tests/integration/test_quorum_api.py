"""DescribeQuorum over the Kafka protocol, as kafka-metadata-quorum.sh and the admin clients
ask a broker: the quorum's leader, epoch, high watermark, voters with their log ends and
last contact, and the voters' controller listeners."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from tests.integration.harness import Cluster, NodeProcess, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("quorum"), n=3).start()
    yield c
    c.kill_all()


def describe(bootstrap: str) -> dict[str, Any]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        answer: dict[str, Any] = admin.describe_metadata_quorum()
        return answer
    finally:
        admin.close()


def test_every_broker_describes_the_quorum_of_three(cluster: Cluster) -> None:
    started_ms = int(time.time() * 1000)
    answers = [describe(n.bootstrap) for n in cluster.all_nodes()]
    for q in answers:
        [topic] = q["topics"]
        assert topic["topic_name"] == "__cluster_metadata"
        [p] = topic["partitions"]
        assert p["error"] is None and p["partition_index"] == 0
        assert p["leader_id"] in (1, 2, 3) and p["leader_epoch"] >= 1
        assert p["high_watermark"] > 0
        voters = {v["replica_id"]: v for v in p["current_voters"]}
        assert sorted(voters) == [1, 2, 3] and p["observers"] == []
        leader = voters[p["leader_id"]]
        assert leader["log_end_offset"] >= p["high_watermark"]
        for v in voters.values():
            # Every voter heard from within the last few seconds (heartbeats are 100s of ms).
            assert v["last_fetch_timestamp"] >= started_ms - 10_000, v
        # v2: each voter's controller listener, as configured.
        endpoints = {n["node_id"]: (n["listeners"][0]["host"], n["listeners"][0]["port"])
                     for n in q["nodes"]}
        assert endpoints == {
            n.node_id: tuple(_split(n.overrides["controller.listener"]))
            for n in cluster.all_nodes()}
    # The same leader and epoch from every broker (the leader answers for them).
    assert len({(a["topics"][0]["partitions"][0]["leader_id"],
                 a["topics"][0]["partitions"][0]["leader_epoch"]) for a in answers}) == 1


def test_a_new_leader_after_the_old_one_dies(cluster: Cluster) -> None:
    first = describe(cluster.bootstrap)["topics"][0]["partitions"][0]
    old = first["leader_id"]
    cluster.node(old).kill()
    killed_ms = int(time.time() * 1000)
    try:
        survivor = next(n for n in cluster.all_nodes() if n.node_id != old)

        def new_leader() -> dict[str, Any] | None:
            try:
                p: dict[str, Any] = describe(survivor.bootstrap)["topics"][0]["partitions"][0]
            except Exception:  # noqa: BLE001 - the election may still run
                return None
            return p if p["error"] is None and p["leader_id"] not in (-1, old) else None

        p = wait_for(new_leader, 30, "a new quorum leader")
        assert p["leader_epoch"] > first["leader_epoch"]
        # The dead voter is still a voter; nothing was heard from it since it died.
        dead = next(v for v in p["current_voters"] if v["replica_id"] == old)
        assert dead["last_fetch_timestamp"] <= killed_ms + 1000, dead
    finally:
        cluster.node(old).start()


def test_single_node_is_a_quorum_of_one(shared_node: NodeProcess) -> None:
    [p] = describe(shared_node.bootstrap)["topics"][0]["partitions"]
    assert p["error"] is None and p["leader_id"] == 1
    assert [v["replica_id"] for v in p["current_voters"]] == [1]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


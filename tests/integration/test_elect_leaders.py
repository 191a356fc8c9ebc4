"""ElectLeaders through kafka-python's admin client, as kafka-leader-election.sh uses it:
preferred elections give a partition back to its first replica, unclean elections give a
leaderless partition a live replica outside its ISR."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaConnectionError, PreferredLeaderNotAvailableError

from tests.helpers import unique_name
from tests.integration.harness import Cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # No automatic rebalancing: only the elections the test asks for move leaders.
    c = Cluster(tmp_path_factory.mktemp("elect"), n=3,
                overrides={"auto.leader.rebalance.enable": False}).start()
    yield c
    c.kill_all()


def partition(admin: KafkaAdminClient, topic: str, index: int) -> dict[str, Any]:
    [t] = admin.describe_topics([topic])
    p: dict[str, Any] = next(p for p in t["partitions"] if p["partition_index"] == index)
    return p


def elect(cluster: Cluster, live: tuple[int, ...], election_type: int,
          partitions: dict[str, list[int]] | None) -> None:
    """kafka-python sends ElectLeaders to the controller its metadata names and does not
    retry when that node just died: ask through a client that knows only live nodes, again
    until it gets an answer (an error the broker answered is raised at once)."""
    bootstrap = ",".join(cluster.node(i).bootstrap for i in live)
    deadline = time.monotonic() + 30
    while True:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
        try:
            admin.elect_leaders(election_type, partitions)
            return
        except KafkaConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            admin.close()


def test_preferred_election_gives_leadership_back(cluster: Cluster) -> None:
    topic = unique_name("elect")
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=15_000)
    try:
        admin.create_topics([NewTopic(topic, replica_assignments={0: [2, 1, 3]},
                                      num_partitions=-1, replication_factor=-1)])
        wait_for(lambda: partition(admin, topic, 0)["leader_id"] == 2, 15, "leader 2")
        cluster.node(2).kill()
        wait_for(lambda: partition(admin, topic, 0)["leader_id"] in (1, 3), 15,
                 "leadership moved off 2")
        # The preferred replica is down: not available, said per partition.
        with pytest.raises(PreferredLeaderNotAvailableError):
            elect(cluster, (1, 3), 0, {topic: [0]})
        cluster.node(2).start()
        wait_for(lambda: sorted(partition(admin, topic, 0)["isr_nodes"]) == [1, 2, 3], 30,
                 "2 back in the ISR")
        assert partition(admin, topic, 0)["leader_id"] != 2  # nothing moved it back yet
        elect(cluster, (1, 2, 3), 0, {topic: [0]})
        wait_for(lambda: partition(admin, topic, 0)["leader_id"] == 2, 15,
                 "the preferred replica leading again")
        # Asked again (and for every partition): not needed, which is not an error.
        elect(cluster, (1, 2, 3), 0, {topic: [0]})
        elect(cluster, (1, 2, 3), 0, None)
    finally:
        admin.close()


def test_unclean_election_revives_a_leaderless_partition(cluster: Cluster) -> None:
    topic = unique_name("unclean")
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=15_000)
    try:
        admin.create_topics([NewTopic(topic, replica_assignments={0: [1, 2]},
                                      num_partitions=-1, replication_factor=-1)])
        wait_for(lambda: sorted(partition(admin, topic, 0)["isr_nodes"]) == [1, 2], 15,
                 "a full ISR")
        # The follower goes first (the ISR shrinks to [1]), then the leader: nobody in sync
        # is left, and the follower that comes back is not eligible.
        cluster.node(2).kill()
        wait_for(lambda: partition(admin, topic, 0)["isr_nodes"] == [1], 15, "ISR [1]")
        cluster.node(1).kill()
        cluster.node(2).start()
        wait_for(lambda: partition(admin, topic, 0)["leader_id"] == -1, 15, "no leader")
        elect(cluster, (2, 3), 1, {topic: [0]})
        p = wait_for(lambda: (lambda p: p if p["leader_id"] == 2 else None)(
            partition(admin, topic, 0)), 15, "the unclean leader")
        assert p["isr_nodes"] == [2]
    finally:
        admin.close()

"""10,000 RF=3 partitions on three combined nodes: created without a broker being fenced
and without a heartbeat coming late, one metadata record per partition.

Bulk work (creating logs, applying metadata, answering follower fetches for thousands of
partitions) must never hold a node's event loop long enough to delay its heartbeats or the
controller's handling of them. The active controller records the gap between consecutive
heartbeats of each broker (odradek_controller_broker_heartbeat_gap_seconds); this test fails
when any gap during the creation exceeds LATE_S, three heartbeat intervals (the default
broker.heartbeat.interval.ms is 500 ms and broker.session.timeout.ms 2,000 ms: a broker this
late has used three quarters of its session), and when any broker was fenced.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.helpers import metric_sum
from tests.integration.harness import Cluster, NodeProcess, metric, scrape, wait_for

pytestmark = pytest.mark.integration

TOPICS = 1000
PARTITIONS = 10  # 10,000 partitions, 30,000 replicas
BATCH = 50  # topics per CreateTopics request
HEARTBEAT_MS = 500
LATE_S = 3 * HEARTBEAT_MS / 1000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("scale"), n=3, overrides={
        "broker.heartbeat.interval.ms": HEARTBEAT_MS,
        "auto.leader.rebalance.enable": False,
    }).start()
    yield c
    c.kill_all()


def active_controller(cluster: Cluster) -> NodeProcess:
    return wait_for(lambda: next((n for n in cluster.all_nodes()
                                  if metric(n, "odradek_controller_active") == 1), None),
                    10, "an active controller")


def test_ten_thousand_partitions_without_a_late_heartbeat(cluster: Cluster) -> None:
    controller = active_controller(cluster)
    start_offset = metric(controller, "odradek_metadata_offset")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    names = [f"scale-{i:04d}" for i in range(TOPICS)]
    for first in range(0, TOPICS, BATCH):
        futures = admin.create_topics([NewTopic(n, PARTITIONS, 3)
                                       for n in names[first:first + BATCH]],
                                      request_timeout=60, operation_timeout=60)
        for fut in futures.values():
            fut.result(60)  # every request succeeds the first time: RF=3 needs 3 brokers

    # Every broker hosts every replica once the backlog of log creation is applied.
    for node in cluster.nodes:
        wait_for(lambda node=node: metric(node, "odradek_partitions_hosted")
                 >= TOPICS * PARTITIONS, 120, f"node {node.node_id} to host every replica")

    text = scrape(active_controller(cluster))
    assert controller.node_id == active_controller(cluster).node_id, \
        "the active controller changed: the gaps below would not cover the whole creation"
    fenced = metric_sum(text, "odradek_controller_brokers_fenced_total")
    assert fenced == 0, f"{fenced} brokers fenced during the creation"
    for node in cluster.nodes:
        label = f'broker="{node.node_id}"'
        worst = metric_sum(text, "odradek_controller_broker_heartbeat_gap_max_seconds", label)
        count = metric_sum(text, "odradek_controller_broker_heartbeat_gap_seconds_count",
                           label)
        assert worst is not None and count, f"no heartbeat gaps recorded for {label}"
        assert worst <= LATE_S, (
            f"broker {node.node_id}: a heartbeat came {worst:.2f} s after the previous one "
            f"(interval {HEARTBEAT_MS} ms, late above {LATE_S:.2f} s)")
    # One record per topic and one per partition: no ISR churn, no leader moves.
    records = metric_sum(text, "odradek_metadata_offset") - start_offset
    assert TOPICS + TOPICS * PARTITIONS <= records <= (TOPICS + TOPICS * PARTITIONS) * 1.02, \
        f"{records:.0f} metadata records for {TOPICS} topics of {PARTITIONS} partitions"

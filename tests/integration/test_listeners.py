"""Two Kafka listeners per node, as the compose deployment uses them: each listener
advertises its own addresses, and a client only ever sees those of the listener it came in
on (Metadata, DescribeCluster, FindCoordinator), while replication uses the inter-broker
listener. (tests/integration/test_compose.py checks the same inside containers, where only
the right address works.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaConnectionError

from tests.integration.harness import Cluster, free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Cluster, dict]]:
    c = Cluster(tmp_path, 3)
    ports: dict[int, dict[str, int]] = {}
    for n in c.nodes:
        ports[n.node_id] = {"INTERNAL": n.kafka_port, "EXTERNAL": free_port()}
        cfg = yaml.safe_load(n.config_path.read_text())
        internal, external = ports[n.node_id]["INTERNAL"], ports[n.node_id]["EXTERNAL"]
        cfg["listeners"] = f"INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}"
        cfg["listener.security.protocol.map"] = "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"
        # Different host names tell the two listeners' answers apart.
        cfg["advertised.listeners"] = (f"INTERNAL://127.0.0.1:{internal},"
                                       f"EXTERNAL://localhost:{external}")
        cfg["inter.broker.listener.name"] = "INTERNAL"
        n.config_path.write_text(yaml.safe_dump(cfg))
    c.start()
    yield c, ports
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(c.logs())
    c.kill_all()


def _brokers(bootstrap: str) -> dict[int, tuple[str, int]]:
    """The brokers DescribeCluster names, asked again while a connection is refused: on a
    loaded machine a client may reach a node in the instant between the cluster's start
    and the node's listeners accepting (once seen in the full suite)."""
    def ask() -> dict[int, tuple[str, int]] | None:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        except KafkaConnectionError:
            return None
        try:
            return {b["broker_id"]: (b["host"], b["port"])
                    for b in admin.describe_cluster()["brokers"]}
        except KafkaConnectionError:
            return None
        finally:
            admin.close()
    return wait_for(ask, 20, f"DescribeCluster through {bootstrap}")


def test_each_listener_advertises_its_own_addresses(cluster: tuple[Cluster, dict]) -> None:
    c, ports = cluster
    external = ",".join(f"localhost:{p['EXTERNAL']}" for p in ports.values())
    internal = ",".join(f"127.0.0.1:{p['INTERNAL']}" for p in ports.values())
    assert _brokers(external) == {i: ("localhost", p["EXTERNAL"]) for i, p in ports.items()}
    assert _brokers(internal) == {i: ("127.0.0.1", p["INTERNAL"]) for i, p in ports.items()}

    admin = KafkaAdminClient(bootstrap_servers=external)
    try:
        admin.create_topics([NewTopic("two-listeners", 3, 3,
                                      topic_configs={"min.insync.replicas": "3"})])
    finally:
        admin.close()
    # acks=all with min.insync.replicas=3: every write needs both followers, which fetch
    # from the leaders' INTERNAL addresses.
    producer = KafkaProducer(bootstrap_servers=external, acks="all", retries=10)
    futures = [producer.send("two-listeners", f"v{i}".encode()) for i in range(30)]
    producer.flush(30)
    for f in futures:
        f.get(timeout=30)
    producer.close()
    # The group coordinator is found and reached through the EXTERNAL listener too.
    consumer = KafkaConsumer("two-listeners", bootstrap_servers=external, group_id="g",
                             auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        values = sorted(m.value.decode() for m in consumer)
        # kafka-python keeps the coordinator as a pseudo-node "coordinator-<id>".
        coordinator = consumer._coordinator.coordinator_id
        md = consumer._client.cluster.broker_metadata(coordinator)
        node_id = int(str(coordinator).rsplit("-", 1)[-1])
    finally:
        consumer.close()
    assert values == sorted(f"v{i}" for i in range(30))
    assert (md.host, md.port) == ("localhost", ports[node_id]["EXTERNAL"])

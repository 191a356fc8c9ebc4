"""The authorization matrix: every API a client may send, against a 3-node cluster running
Kafka's StandardAuthorizer, as principals with and without the ACL it needs.

The cluster: a SASL_PLAINTEXT listener (CLIENT) with PLAIN users, and a SASL_PLAINTEXT
inter-broker listener (INTERNAL) where the brokers log in as ``User:broker``, a super user
(Kafka's rule: brokers act as their inter-broker principal, so replication, transaction
markers and the leaders' calls to transaction coordinators need CLUSTER_ACTION). ``admin``
is a super user too. The ACLs (created with CreateAcls, as ``admin``):

* alice: READ and WRITE on topic ``orders`` and DESCRIBE_CONFIGS on it, READ on groups
  ``g1`` and ``app``, WRITE on transactional id ``tx1``;
* dave: ALL on every topic whose name starts with ``logs-`` (PREFIXED);
* ``User:*``: READ and WRITE on topic ``public``, and eve is DENIED WRITE on it;
* bob: nothing (``allow.everyone.if.no.acl.found`` is false).

Each row sends one request as a principal that may (it succeeds) and one that may not (it
gets the *_AUTHORIZATION_FAILED Kafka answers); a few rows show super users, User:*,
PREFIXED ACLs and DENY winning. The real clients (kafka-python, confluent-kafka) then run
a producer, a consumer group and a transaction under the same ACLs, and are refused
where Kafka would refuse them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from kio.schema.errors import ErrorCode as E

from odradek.broker.kafka.client import KafkaConnection
from odradek.broker.security.sasl_client import ClientSecurity
from odradek.storage.records import Record, encode_batch
from tests.integration.harness import Cluster, free_port, wait_for

pytestmark = pytest.mark.integration

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
PASSWORDS = {u: f"{u}-secret" for u in ("admin", "alice", "bob", "carol", "dave", "eve")}
BROKER = ("broker", "broker-secret")

# ACL codes (Kafka's): resource types, pattern types, operations, permissions.
TOPIC, GROUP, CLUSTER, TXN_ID = 2, 3, 4, 5
LITERAL, PREFIXED = 3, 4
ALL, READ, WRITE, DESCRIBE_CONFIGS = 2, 3, 4, 10
DENY, ALLOW = 2, 3

ACLS = [
    ("User:alice", TOPIC, "orders", LITERAL, READ, ALLOW),
    ("User:alice", TOPIC, "orders", LITERAL, WRITE, ALLOW),
    ("User:alice", TOPIC, "orders", LITERAL, DESCRIBE_CONFIGS, ALLOW),
    ("User:alice", GROUP, "g1", LITERAL, READ, ALLOW),
    ("User:alice", GROUP, "app", LITERAL, READ, ALLOW),
    ("User:alice", TXN_ID, "tx1", LITERAL, WRITE, ALLOW),
    ("User:dave", TOPIC, "logs-", PREFIXED, ALL, ALLOW),
    ("User:*", TOPIC, "public", LITERAL, READ, ALLOW),
    ("User:*", TOPIC, "public", LITERAL, WRITE, ALLOW),
    ("User:eve", TOPIC, "public", LITERAL, WRITE, DENY),
]
TOPICS = ("orders", "public", "secret", "logs-app")


def _jaas(users: dict[str, str], me: tuple[str, str] | None = None) -> str:
    options = " ".join(f'user_{u}="{p}"' for u, p in users.items())
    own = f'username="{me[0]}" password="{me[1]}" ' if me else ""
    return f"org.apache.kafka.common.security.plain.PlainLoginModule required {own}{options};"


@dataclass
class World:
    cluster: Cluster
    _conns: dict[tuple[str, int], KafkaConnection] = field(default_factory=dict)

    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def conn(self, user: str, node_id: int = 1) -> KafkaConnection:
        """An authenticated connection (SaslHandshake v1, then SaslAuthenticate with PLAIN's
        b"\\0user\\0password"), kept for the module."""
        key = (user, node_id)
        if key not in self._conns:
            node = self.cluster.node(node_id)
            self._conns[key] = KafkaConnection(
                node.host, node.kafka_port, client_id=f"authz-{user}", timeout=20,
                security=ClientSecurity(sasl=("PLAIN", user, PASSWORDS[user])))
        return self._conns[key]

    def request(self, user: str, api_key: int, version: int, data: dict[str, Any],
                node_id: int = 1) -> Any:
        return self.conn(user, node_id).request(api_key, version, data)

    def leader(self, topic: str) -> int:
        resp = self.request("admin", 3, 12, {"topics": [{"name": topic, "topic_id": None}],
                                              "allow_auto_topic_creation": False})
        return int(resp.topics[0].partitions[0].leader_id)

    def coordinator(self, key: str, key_type: int) -> int:
        """The coordinator of a group (0) or transactional id (1); the first asks create
        the internal topic, answered COORDINATOR_NOT_AVAILABLE meanwhile."""
        def found() -> int | None:
            resp = self.request("admin", 10, 4, {"key_type": key_type,
                                                 "coordinator_keys": [key]})
            c = resp.coordinators[0]
            return int(c.node_id) if c.error_code == E.none else None

        return wait_for(found, 20, f"the coordinator of {key}")

    def close(self) -> None:
        for c in self._conns.values():
            c.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    c = Cluster(tmp_path_factory.mktemp("authorization"), 3)
    for n in c.nodes:
        cfg = yaml.safe_load(n.config_path.read_text())
        cfg["listeners"] = (f"CLIENT://127.0.0.1:{n.kafka_port},"
                            f"INTERNAL://127.0.0.1:{free_port()}")
        cfg["listener.security.protocol.map"] = "CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT"
        cfg["inter.broker.listener.name"] = "INTERNAL"
        cfg["sasl.enabled.mechanisms"] = "PLAIN"
        cfg["sasl.mechanism.inter.broker.protocol"] = "PLAIN"
        cfg["listener.name.internal.plain.sasl.jaas.config"] = _jaas(dict([BROKER]), BROKER)
        cfg["listener.name.client.plain.sasl.jaas.config"] = _jaas(PASSWORDS)
        cfg["authorizer.class.name"] = AUTHORIZER
        cfg["super.users"] = "User:broker;User:admin"
        n.config_path.write_text(yaml.safe_dump(cfg))
    c.start()
    w = World(c)
    try:
        _set_up(w)
        yield w
    finally:
        w.close()
        c.kill_all()


def _set_up(w: World) -> None:
    resp = w.request("admin", 19, 7, {"timeout": 20000, "validate_only": False, "topics": [
        {"name": t, "num_partitions": 1, "replication_factor": 3, "assignments": [],
         "configs": []} for t in TOPICS]})
    assert {t.error_code for t in resp.topics} == {E.none}, resp
    resp = w.request("admin", 30, 3, {"creations": [
        {"principal": p, "host": "*", "resource_type": rt, "resource_name": name,
         "resource_pattern_type": pt, "operation": op, "permission_type": perm}
        for p, rt, name, pt, op, perm in ACLS]})
    assert {r.error_code for r in resp.results} == {E.none}, resp
    any_acl = {"resource_type_filter": 1, "resource_name_filter": None,
               "pattern_type_filter": 1, "principal_filter": None, "host_filter": None,
               "operation": 1, "permission_type": 1}

    def everywhere() -> bool:
        for node_id in (1, 2, 3):
            acls = w.request("admin", 29, 3, any_acl, node_id).resources
            meta = w.request("admin", 3, 12, {"topics": None}, node_id).topics
            if sum(len(r.acls) for r in acls) != len(ACLS) or len(meta) < len(TOPICS):
                return False
            if any(p.leader_id < 0 for t in meta for p in t.partitions):
                return False
        return True

    wait_for(everywhere, 20, "ACLs and topics on every broker")
    w.coordinator("g1", 0)
    w.coordinator("tx1", 1)


def partition_errors(resp: Any, topics: str = "topics", partitions: str = "partitions",
                     error: str = "error_code") -> list[E]:
    return [E(getattr(p, error)) for t in getattr(resp, topics) for p in getattr(t, partitions)]


# --- the matrix ----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    api: str
    allowed: str  # a principal whose request succeeds
    denied: str  # one refused
    error: E  # what it is refused with
    send: Callable[[World, str], Any]  # sends the request as a principal, returns the answer
    errors: Callable[[Any], list[E]]  # every error code of an answer that concerns the check


def produce(topic: str) -> Callable[[World, str], Any]:
    def send(w: World, user: str) -> Any:
        return w.request(user, 0, 9, {"transactional_id": None, "acks": -1, "timeout": 10000,
                                      "topic_data": [{"name": topic, "partition_data": [
                                          {"index": 0,
                                           "records": encode_batch([Record(0, value=b"v")])}]}]},
                         w.leader(topic))
    return send


def leader_request(topic: str, api_key: int, version: int,
                   data: Callable[[str], dict[str, Any]]) -> Callable[[World, str], Any]:
    return lambda w, user: w.request(user, api_key, version, data(topic), w.leader(topic))


def fetch_data(topic: str, replica_id: int = -1) -> dict[str, Any]:
    return {"replica_id": replica_id, "max_wait": 0, "min_bytes": 0, "max_bytes": 1 << 20,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "forgotten_topics_data": [], "rack_id": "",
            "topics": [{"topic": topic, "partitions": [
                {"partition": 0, "current_leader_epoch": -1, "fetch_offset": 0,
                 "last_fetched_epoch": -1, "log_start_offset": -1,
                 "partition_max_bytes": 1 << 20}]}]}


def any_node(api_key: int, version: int, data: dict[str, Any]) -> Callable[[World, str], Any]:
    return lambda w, user: w.request(user, api_key, version, data)


def to_coordinator(key: str, key_type: int, api_key: int, version: int, data: dict[str, Any]
                   ) -> Callable[[World, str], Any]:
    return lambda w, user: w.request(user, api_key, version, data,
                                     w.coordinator(key, key_type))


def top(resp: Any) -> list[E]:
    return [E(resp.error_code)]


def commit(group: str, topic: str) -> dict[str, Any]:
    return {"group_id": group, "generation_id_or_member_epoch": -1, "member_id": "",
            "group_instance_id": None, "topics": [{"name": topic, "partitions": [
                {"partition_index": 0, "committed_offset": 1, "committed_leader_epoch": -1,
                 "committed_metadata": ""}]}]}


def config(resource_type: int, name: str) -> dict[str, Any]:
    return {"resources": [{"resource_type": resource_type, "resource_name": name,
                           "configuration_keys": None}],
            "include_synonyms": False, "include_documentation": False}


def alter_config(name: str) -> dict[str, Any]:
    return {"validate_only": False, "resources": [
        {"resource_type": TOPIC, "resource_name": name,
         "configs": [{"name": "retention.ms", "config_operation": 0, "value": "3600000"}]}]}


TOPIC_ERROR = E.topic_authorization_failed
GROUP_ERROR = E.group_authorization_failed
CLUSTER_ERROR = E.cluster_authorization_failed
TXN_ERROR = E.transactional_id_authorization_failed

ROWS = [
    Row("Produce", "alice", "bob", TOPIC_ERROR, produce("orders"),
        lambda r: partition_errors(r, "responses", "partition_responses")),
    # carol has no ACL of her own: User:* lets her in; eve's DENY wins over it.
    Row("Produce, User:* and DENY", "carol", "eve", TOPIC_ERROR, produce("public"),
        lambda r: partition_errors(r, "responses", "partition_responses")),
    Row("Produce, PREFIXED", "dave", "alice", TOPIC_ERROR, produce("logs-app"),
        lambda r: partition_errors(r, "responses", "partition_responses")),
    Row("Produce, super user", "admin", "alice", TOPIC_ERROR, produce("secret"),
        lambda r: partition_errors(r, "responses", "partition_responses")),
    Row("Fetch", "alice", "bob", TOPIC_ERROR,
        leader_request("orders", 1, 12, fetch_data), lambda r: partition_errors(r, "responses")),
    Row("Fetch as a follower", "admin", "alice", TOPIC_ERROR,
        leader_request("orders", 1, 12, lambda t: fetch_data(t, replica_id=9)),
        lambda r: partition_errors(r, "responses")),
    Row("ListOffsets", "alice", "bob", TOPIC_ERROR,
        leader_request("orders", 2, 7, lambda t: {
            "replica_id": -1, "isolation_level": 0, "topics": [{"name": t, "partitions": [
                {"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}]}]}),
        partition_errors),
    Row("OffsetForLeaderEpoch", "alice", "bob", TOPIC_ERROR,
        leader_request("orders", 23, 4, lambda t: {"replica_id": -1, "topics": [
            {"topic": t, "partitions": [{"partition": 0, "current_leader_epoch": -1,
                                        "leader_epoch": 0}]}]}),
        partition_errors),
    Row("DeleteRecords", "dave", "bob", TOPIC_ERROR,
        leader_request("logs-app", 21, 2, lambda t: {"timeout": 10000, "topics": [
            {"name": t, "partitions": [{"partition_index": 0, "offset": -1}]}]}),
        partition_errors),
    Row("DescribeProducers", "alice", "bob", TOPIC_ERROR,
        leader_request("orders", 61, 0, lambda t: {"topics": [
            {"name": t, "partition_indexes": [0]}]}),
        partition_errors),
    Row("Metadata", "alice", "bob", TOPIC_ERROR,
        any_node(3, 12, {"topics": [{"name": "orders", "topic_id": None}],
                         "allow_auto_topic_creation": False}),
        lambda r: [E(t.error_code) for t in r.topics]),
    Row("Metadata, auto-creation needs CREATE", "dave", "alice", TOPIC_ERROR,
        any_node(3, 12, {"topics": [{"name": "logs-auto", "topic_id": None}],
                         "allow_auto_topic_creation": True}),
        lambda r: [E.none if t.error_code in (E.none, E.leader_not_available)
                   else E(t.error_code) for t in r.topics]),
    Row("CreateTopics", "dave", "alice", TOPIC_ERROR,
        any_node(19, 7, {"timeout": 10000, "validate_only": True, "topics": [
            {"name": "logs-new", "num_partitions": 1, "replication_factor": 3,
             "assignments": [], "configs": []}]}),
        lambda r: [E(t.error_code) for t in r.topics]),
    Row("CreatePartitions", "dave", "bob", TOPIC_ERROR,
        any_node(37, 3, {"timeout": 10000, "validate_only": True, "topics": [
            {"name": "logs-app", "count": 2, "assignments": None}]}),
        lambda r: [E(t.error_code) for t in r.results]),
    Row("DescribeConfigs (topic)", "alice", "bob", TOPIC_ERROR,
        any_node(32, 4, config(TOPIC, "orders")),
        lambda r: [E(x.error_code) for x in r.results]),
    Row("DescribeConfigs (broker)", "admin", "alice", CLUSTER_ERROR,
        any_node(32, 4, config(4, "1")), lambda r: [E(x.error_code) for x in r.results]),
    Row("IncrementalAlterConfigs", "dave", "alice", TOPIC_ERROR,
        any_node(44, 1, alter_config("logs-app")),
        lambda r: [E(x.error_code) for x in r.responses]),
    Row("AlterConfigs", "dave", "alice", TOPIC_ERROR,
        any_node(33, 2, {"validate_only": True, "resources": [
            {"resource_type": TOPIC, "resource_name": "logs-app",
             "configs": [{"name": "retention.ms", "value": "3600000"}]}]}),
        lambda r: [E(x.error_code) for x in r.responses]),
    Row("ElectLeaders", "admin", "alice", CLUSTER_ERROR,
        any_node(43, 2, {"election_type": 0, "timeout": 10000,
                         "topic_partitions": [{"topic": "orders", "partitions": [0]}]}), top),
    # Cancelling where nothing is in progress: the authorization is what is checked.
    Row("AlterPartitionReassignments", "admin", "alice", CLUSTER_ERROR,
        any_node(45, 1, {"timeout": 10000, "allow_replication_factor_change": True,
                         "topics": [{"name": "orders", "partitions": [
                             {"partition_index": 0, "replicas": None}]}]}),
        lambda r: [E(r.error_code)] + [
            E.none if E(p.error_code) == E.no_reassignment_in_progress else E(p.error_code)
            for t in r.responses for p in t.partitions]),
    Row("ListPartitionReassignments", "admin", "alice", CLUSTER_ERROR,
        any_node(46, 0, {"timeout": 10000, "topics": None}), top),
    Row("DescribeLogDirs", "admin", "alice", CLUSTER_ERROR,
        any_node(35, 4, {"topics": None}), top),
    Row("UpdateFeatures", "admin", "alice", CLUSTER_ERROR,
        any_node(57, 1, {"timeout": 10000, "validate_only": True, "feature_updates": [
            {"feature": "transaction.version", "max_version_level": 2, "upgrade_type": 1}]}),
        top),
    # An id that is not registered: the authorization is what is checked, and nothing is
    # unregistered from the cluster the other rows share.
    Row("UnregisterBroker", "admin", "alice", CLUSTER_ERROR,
        any_node(64, 0, {"broker_id": 99}),
        lambda r: [E.none if E(r.error_code) == E.broker_id_not_registered
                   else E(r.error_code)]),
    Row("DescribeQuorum", "admin", "alice", CLUSTER_ERROR,
        any_node(55, 2, {"topics": [{"topic_name": "__cluster_metadata",
                                     "partitions": [{"partition_index": 0}]}]}), top),
    Row("FindCoordinator (group)", "alice", "bob", GROUP_ERROR,
        any_node(10, 4, {"key_type": 0, "coordinator_keys": ["g1"]}),
        lambda r: [E(c.error_code) for c in r.coordinators]),
    Row("FindCoordinator (transaction)", "alice", "bob", TXN_ERROR,
        any_node(10, 4, {"key_type": 1, "coordinator_keys": ["tx1"]}),
        lambda r: [E(c.error_code) for c in r.coordinators]),
    Row("JoinGroup", "alice", "bob", GROUP_ERROR,
        to_coordinator("g1", 0, 11, 9, {
            "group_id": "g1", "session_timeout": 10000, "rebalance_timeout": 10000,
            "member_id": "", "group_instance_id": None, "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": b""}], "reason": None}),
        # Authorized, a first join is told to come back with its member id.
        lambda r: [E.none if r.error_code == E.member_id_required else E(r.error_code)]),
    Row("Heartbeat", "alice", "bob", GROUP_ERROR,
        to_coordinator("g1", 0, 12, 4, {"group_id": "g1", "generation_id": -1,
                                        "member_id": "nobody", "group_instance_id": None}),
        lambda r: [E.none if r.error_code == E.unknown_member_id else E(r.error_code)]),
    Row("OffsetCommit", "alice", "bob", GROUP_ERROR,
        to_coordinator("g1", 0, 8, 8, commit("g1", "orders")), partition_errors),
    Row("OffsetFetch", "alice", "bob", GROUP_ERROR,
        to_coordinator("g1", 0, 9, 8, {"require_stable": False, "groups": [
            {"group_id": "g1", "topics": [{"name": "orders", "partition_indexes": [0]}]}]}),
        lambda r: [E(g.error_code) for g in r.groups]),
    Row("DescribeGroups", "alice", "bob", GROUP_ERROR,
        to_coordinator("g1", 0, 15, 5, {"groups": ["g1"],
                                        "include_authorized_operations": True}),
        lambda r: [E(g.error_code) for g in r.groups]),
    Row("OffsetDelete", "admin", "alice", GROUP_ERROR,
        to_coordinator("g1", 0, 47, 0, {"group_id": "g1", "topics": [
            {"name": "orders", "partitions": [{"partition_index": 0}]}]}), top),
    Row("DeleteGroups", "admin", "alice", GROUP_ERROR,
        to_coordinator("gone", 0, 42, 2, {"groups_names": ["gone"]}),
        lambda r: [E.none if x.error_code == E.group_id_not_found else E(x.error_code)
                   for x in r.results]),
    Row("InitProducerId (transactional)", "alice", "bob", TXN_ERROR,
        to_coordinator("tx1", 1, 22, 4, {"transactional_id": "tx1",
                                         "transaction_timeout": 60000,
                                         "producer_id": -1, "producer_epoch": -1}), top),
    # Idempotent: WRITE on some topic is enough (KIP-679): carol has it through User:*
    # on public; eve's only WRITE there is denied.
    Row("InitProducerId (idempotent)", "carol", "eve", CLUSTER_ERROR,
        any_node(22, 4, {"transactional_id": None, "transaction_timeout": 60000,
                         "producer_id": -1, "producer_epoch": -1}), top),
    Row("AddPartitionsToTxn", "admin", "bob", TXN_ERROR,
        to_coordinator("tx1", 1, 24, 3, {
            "v3_and_below_transactional_id": "tx1", "v3_and_below_producer_id": 0,
            "v3_and_below_producer_epoch": 0,
            "v3_and_below_topics": [{"name": "orders", "partitions": [0]}]}),
        lambda r: [E.none if e in (E.invalid_producer_id_mapping, E.producer_fenced)
                   else e for e in partition_errors(r, "results_by_topic_v3_and_below",
                                                    "results_by_partition",
                                                    "partition_error_code")]),
    Row("AddPartitionsToTxn v4 (brokers)", "admin", "alice", CLUSTER_ERROR,
        to_coordinator("tx1", 1, 24, 4, {"transactions": [
            {"transactional_id": "tx1", "producer_id": 0, "producer_epoch": 0,
             "verify_only": True, "topics": [{"name": "orders", "partitions": [0]}]}]}), top),
    Row("WriteTxnMarkers", "admin", "alice", CLUSTER_ERROR,
        leader_request("public", 27, 1, lambda t: {"markers": [
            {"producer_id": 424242, "producer_epoch": 0, "transaction_result": False,
             "coordinator_epoch": 0, "topics": [{"name": t, "partition_indexes": [0]}]}]}),
        lambda r: [e for e in partition_errors(r.markers[0]) if e != E.none]
        or [E.none]),
    Row("AddOffsetsToTxn", "admin", "bob", TXN_ERROR,
        to_coordinator("tx1", 1, 25, 3, {"transactional_id": "tx1", "producer_id": 0,
                                         "producer_epoch": 0, "group_id": "g1"}),
        lambda r: [E.none if r.error_code in (E.invalid_producer_id_mapping,
                                              E.producer_fenced) else E(r.error_code)]),
    Row("EndTxn", "admin", "bob", TXN_ERROR,
        to_coordinator("tx1", 1, 26, 3, {"transactional_id": "tx1", "producer_id": 0,
                                         "producer_epoch": 0, "committed": False}),
        lambda r: [E.none if r.error_code in (E.invalid_producer_id_mapping,
                                              E.producer_fenced) else E(r.error_code)]),
    Row("TxnOffsetCommit", "admin", "bob", TXN_ERROR,
        to_coordinator("g1", 0, 28, 3, {
            "transactional_id": "tx1", "group_id": "g1", "producer_id": 0,
            "producer_epoch": 0, "generation_id": -1, "member_id": "",
            "group_instance_id": None, "topics": [{"name": "orders", "partitions": [
                {"partition_index": 0, "committed_offset": 1, "committed_leader_epoch": -1,
                 "committed_metadata": ""}]}]}),
        partition_errors),
    Row("DescribeTransactions", "alice", "bob", TXN_ERROR,
        to_coordinator("tx1", 1, 65, 0, {"transactional_ids": ["tx1"]}),
        lambda r: [E.none if s.error_code == E.transactional_id_not_found
                   else E(s.error_code) for s in r.transaction_states]),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.api for r in ROWS])
def test_matrix(world: World, row: Row) -> None:
    allowed = row.errors(row.send(world, row.allowed))
    assert allowed and set(allowed) == {E.none}, f"{row.api} as {row.allowed}: {allowed}"
    denied = row.errors(row.send(world, row.denied))
    assert denied and set(denied) == {row.error}, f"{row.api} as {row.denied}: {denied}"


def test_topics_of_a_request_are_authorized_one_by_one(world: World) -> None:
    resp = world.request("alice", 8, 8, {**commit("g1", "orders"), "topics": [
        *commit("g1", "orders")["topics"], *commit("g1", "secret")["topics"]]},
        world.coordinator("g1", 0))
    assert [(t.name, t.partitions[0].error_code) for t in resp.topics] == [
        ("orders", E.none), ("secret", TOPIC_ERROR)]
    resp = world.request("alice", 3, 12, {"allow_auto_topic_creation": False, "topics": [
        {"name": t, "topic_id": None} for t in ("orders", "secret", "no-such-topic")]})
    # Whether a topic alice may not describe exists is not told.
    assert [(t.name, t.error_code) for t in resp.topics] == [
        ("orders", E.none), ("secret", TOPIC_ERROR), ("no-such-topic", TOPIC_ERROR)]


def test_lists_show_only_what_the_principal_may_describe(world: World) -> None:
    everything = {"topics": None}
    assert {t.name for t in world.request("alice", 3, 12, everything).topics} == {
        "orders", "public"}  # public through User:*; "secret" left out, unmentioned
    assert {t.name for t in world.request("admin", 3, 12, everything).topics} >= set(TOPICS)
    world.request("alice", 8, 8, commit("g1", "orders"), world.coordinator("g1", 0))
    listed = set()
    for node_id in (1, 2, 3):
        for user in ("alice", "bob", "admin"):
            resp = world.request(user, 16, 4, {"states_filter": []}, node_id)
            listed |= {(user, g.group_id) for g in resp.groups}
    assert ("alice", "g1") in listed and ("admin", "g1") in listed
    assert not any(user == "bob" for user, _ in listed)
    # Transactions: only the ids the principal may describe (alice's WRITE implies it).
    resp = world.request("alice", 22, 4, {"transactional_id": "tx1",
                                          "transaction_timeout": 60000, "producer_id": -1,
                                          "producer_epoch": -1}, world.coordinator("tx1", 1))
    assert resp.error_code in (E.none, E.concurrent_transactions)
    txns = set()
    for node_id in (1, 2, 3):
        for user in ("alice", "bob"):
            resp = world.request(user, 66, 0, {"state_filters": [], "producer_id_filters": []},
                                 node_id)
            txns |= {(user, t.transactional_id) for t in resp.transaction_states}
    assert txns == {("alice", "tx1")}
    # Anyone may describe the cluster; only DESCRIBE on it tells the operations.
    bob = world.request("bob", 60, 1, {"include_cluster_authorized_operations": True,
                                       "endpoint_type": 1})
    admin = world.request("admin", 60, 1, {"include_cluster_authorized_operations": True,
                                           "endpoint_type": 1})
    assert (bob.error_code, len(bob.brokers), bob.cluster_authorized_operations) == (
        E.none, 3, 0)
    assert admin.cluster_authorized_operations > 0


def _kafka_python(world: World, user: str, cls: Any, **kw: Any) -> Any:
    return cls(bootstrap_servers=world.bootstrap(), security_protocol="SASL_PLAINTEXT",
               sasl_mechanism="PLAIN", sasl_plain_username=user,
               sasl_plain_password=PASSWORDS[user], **kw)


def test_kafka_python_producer_and_consumer_group(world: World) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    producer = _kafka_python(world, "alice", KafkaProducer, acks="all")
    try:
        for i in range(5):
            producer.send("orders", f"m{i}".encode()).get(timeout=20)
    finally:
        producer.close()
    refused = _kafka_python(world, "bob", KafkaProducer, max_block_ms=10000)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            refused.send("orders", b"x").get(timeout=20)
    finally:
        refused.close()
    consumer = _kafka_python(world, "alice", KafkaConsumer, group_id="app",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=15000)
    try:
        consumer.subscribe(["orders"])
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not {b"m4"} <= set(seen):
            for records in consumer.poll(timeout_ms=1000).values():
                seen += [r.value for r in records]
        assert {f"m{i}".encode() for i in range(5)} <= set(seen)
        consumer.commit()
    finally:
        consumer.close()
    stranger = _kafka_python(world, "bob", KafkaConsumer, group_id="app",
                             auto_offset_reset="earliest")
    try:
        stranger.subscribe(["public"])
        with pytest.raises(GroupAuthorizationFailedError):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                stranger.poll(timeout_ms=500)
    finally:
        stranger.close()


def _rdkafka(world: World, user: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": world.bootstrap(), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN", "sasl.username": user,
            "sasl.password": PASSWORDS[user], **extra}


def test_confluent_kafka_transaction(world: World) -> None:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

    producer = Producer(_rdkafka(world, "alice", **{"transactional.id": "tx1"}))
    producer.init_transactions(20)
    producer.begin_transaction()
    producer.produce("orders", b"in-txn")
    group = Consumer(_rdkafka(world, "alice", **{"group.id": "app"}))
    try:
        producer.send_offsets_to_transaction([TopicPartition("orders", 0, 1)],
                                             group.consumer_group_metadata(), 20)
    finally:
        group.close()
    producer.commit_transaction(20)
    def state() -> str | None:
        resp = world.request("alice", 65, 0, {"transactional_ids": ["tx1"]},
                             world.coordinator("tx1", 1))
        s = resp.transaction_states[0]
        assert s.error_code == E.none, s
        return s.transaction_state if s.transaction_state == "CompleteCommit" else None

    wait_for(state, 20, "tx1 committed")
    # bob may not use tx1: refused at FindCoordinator/InitProducerId, a fatal error.
    refused = Producer(_rdkafka(world, "bob", **{"transactional.id": "tx1"}))
    with pytest.raises(KafkaException) as info:
        refused.init_transactions(20)
    assert info.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    del producer, refused  # destroyed now, not once the cluster is gone

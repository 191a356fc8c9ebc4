"""The admin APIs under the authorizer (Kafka's ControllerApis and ConfigHelper): what
each checks, what the refused items are answered, and that they never reach the
controller."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kio.schema.errors import ErrorCode as E

from odradek.broker.handlers import admin, log_dirs, quorum
from odradek.broker.kafka import codec
from odradek.broker.security.acl import PatternType
from odradek.broker.security.authorization import Authorization
from odradek.broker.security.quotas import ControllerMutationQuotaManager, QuotaConfigs
from odradek.controller.metadata import BROKER_RESOURCE, TOPIC_RESOURCE
from odradek.controller.metadata.requests import (
    AlterConfigsResult,
    ControllerUnavailable,
    CreatePartitionsResult,
    CreateTopicResult,
    DeleteTopicResult,
    ElectLeadersResult,
)
from tests.unit.broker.handlers.acl_fixtures import (
    OFF,
    A,
    R,
    acl,
    authorization,
    context,
    deny,
)
from tests.unit.broker.handlers.test_authorization_meta import image


class Controller:
    """Answers every request as done, and records what reached it."""

    def __init__(self, topics: dict[str, uuid.UUID]) -> None:
        self.topics = topics
        self.calls: list[tuple[str, list[Any]]] = []

    async def create_topics(self, specs: Any, *, validate_only: bool = False) -> list[Any]:
        self.calls.append(("create_topics", [s.name for s in specs]))
        return [CreateTopicResult(s.name, E.none, None, uuid.uuid4(), 3, 1, {}) for s in specs]

    async def delete_topics(self, specs: Any) -> list[Any]:
        self.calls.append(("delete_topics", [s.name or s.topic_id for s in specs]))
        by_id = {tid: name for name, tid in self.topics.items()}
        out = []
        for s in specs:
            if s.topic_id is not None:
                name = by_id.get(s.topic_id)
                code = E.none if name else E.unknown_topic_id
                out.append(DeleteTopicResult(name, s.topic_id, code))
            else:
                code = E.none if s.name in self.topics else E.unknown_topic_or_partition
                out.append(DeleteTopicResult(s.name, self.topics.get(s.name), code))
        return out

    async def create_partitions(self, specs: Any, *, validate_only: bool = False) -> list[Any]:
        self.calls.append(("create_partitions", [s.name for s in specs]))
        return [CreatePartitionsResult(s.name, E.none) for s in specs]

    async def alter_configs(self, resources: Any, *, validate_only: bool = False) -> list[Any]:
        return self._alter("alter_configs", resources)

    async def incremental_alter_configs(self, resources: Any, *, validate_only: bool = False
                                        ) -> list[Any]:
        return self._alter("incremental_alter_configs", resources)

    def _alter(self, what: str, resources: Any) -> list[Any]:
        self.calls.append((what, [(r.resource_type, r.resource_name) for r in resources]))
        return [AlterConfigsResult(r.resource_type, r.resource_name, E.none) for r in resources]

    async def elect_leaders(self, election: Any, asked: Any) -> list[Any]:
        self.calls.append(("elect_leaders", list(asked or ())))
        return [ElectLeadersResult(t, p, E.none) for t, p in asked or ()]


ROW = ("retention.ms", "1000", 1, "", 5)


def node(auth: Authorization, tmp_path: Path | None = None) -> Any:
    img = image(("a", "b", "apple"))
    return SimpleNamespace(
        node_id=1, image=img, authorization=auth,
        controller=Controller({n: t.topic_id for n, t in img.topics.items()}),
        describe_topic_configs=lambda topic: [ROW],
        describe_broker_configs=lambda: [ROW], describe_cluster_default_configs=lambda: [],
        broker_config_synonyms=lambda name: [],
        config={"data.dir": str(tmp_path or ".")}, replicas=SimpleNamespace(partitions={}),
        describe_quorum=quorum_unreachable,
        mutation_quotas=ControllerMutationQuotaManager(QuotaConfigs))


async def quorum_unreachable() -> Any:
    raise ControllerUnavailable("DescribeQuorum", 1.0, [])


def call(n: Any, api_key: int, version: int, data: dict[str, Any],
         principal: str = "User:alice") -> Any:
    handlers = {s.api_key: s.handler for s in (*admin.APIS, *log_dirs.APIS, *quorum.APIS)}
    req = codec.build_request(api_key, version, data)
    req = codec.decode_request(codec.encode_request(req, 3, "c")[4:],
                               {api_key: (0, 12)}).body
    payload = asyncio.run(handlers[api_key](n, context(api_key, version, principal), req))
    out = codec.encode_response(api_key, version, 3, payload)
    return codec.decode_response(bytes(out[4:]), api_key, version)[1]


def create_topics(n: Any, names: list[str], principal: str = "User:alice") -> Any:
    return call(n, 19, 7, {"topics": [{"name": t, "num_partitions": 3,
                                       "replication_factor": 1} for t in names],
                           "timeout": 1000, "validate_only": False}, principal)


def test_create_topics_needs_create_on_the_cluster_or_the_topic() -> None:
    n = node(authorization([
        acl("User:alice", A.CREATE, R.TOPIC, "new", pattern=PatternType.PREFIXED),
        acl("User:alice", A.DESCRIBE_CONFIGS, R.TOPIC, "new1"),
        acl("User:ops", A.CREATE, R.CLUSTER)]))
    resp = create_topics(n, ["new1", "new2", "other"])
    got = {t.name: t for t in resp.topics}
    assert got["other"].error_code == E.topic_authorization_failed
    assert got["other"].error_message == "Authorization failed."
    assert n.controller.calls == [("create_topics", ["new1", "new2"])]
    # Created; its settings told only with DESCRIBE_CONFIGS (Kafka's controller).
    assert (got["new1"].error_code, got["new1"].num_partitions, got["new1"].topic_config_error_code
            ) == (E.none, 3, E.none)
    assert [c.name for c in got["new1"].configs] == ["retention.ms"]
    assert (got["new2"].error_code, got["new2"].num_partitions, got["new2"].replication_factor,
            got["new2"].configs, got["new2"].topic_config_error_code) == (
        E.none, -1, -1, (), E.topic_authorization_failed)
    resp = create_topics(n, ["x"], "User:ops")
    assert resp.topics[0].error_code == E.none
    resp = create_topics(node(OFF), ["x"])
    assert (resp.topics[0].error_code, resp.topics[0].num_partitions) == (E.none, 3)


def delete_topics(n: Any, topics: list[dict[str, Any]], principal: str = "User:alice") -> Any:
    return call(n, 20, 6, {"topics": topics, "timeout": 1000}, principal)


def test_delete_topics_by_name_and_by_id() -> None:
    n = node(authorization([acl("User:alice", A.DELETE, R.TOPIC, "a"),
                            acl("User:alice", A.DESCRIBE, R.TOPIC, "b"),
                            acl("User:alice", A.DESCRIBE, R.TOPIC, "ghost"),
                            acl("User:ops", A.DELETE, R.CLUSTER)]))
    ids = n.controller.topics
    resp = delete_topics(n, [{"name": t, "topic_id": None} for t in ("a", "b", "ghost",
                                                                      "apple", "nothing")])
    assert [(r.name, r.error_code) for r in resp.responses] == [
        ("a", E.none),
        ("b", E.topic_authorization_failed),  # may describe, may not delete
        ("ghost", E.unknown_topic_or_partition),  # may describe: told it is not there
        ("apple", E.topic_authorization_failed),  # may not describe: existence not told
        ("nothing", E.topic_authorization_failed)]
    assert n.controller.calls == [("delete_topics", ["a", "ghost"])]
    unknown = uuid.uuid4()
    resp = delete_topics(n, [{"name": None, "topic_id": tid}
                             for tid in (ids["b"], ids["apple"], unknown)])
    # By id: the name only when it may be described; unknown ids are not secret.
    assert [(r.name, r.topic_id, r.error_code) for r in resp.responses] == [
        ("b", ids["b"], E.topic_authorization_failed),
        (None, ids["apple"], E.topic_authorization_failed),
        (None, unknown, E.unknown_topic_id)]
    resp = delete_topics(n, [{"name": "apple", "topic_id": None}], "User:ops")
    assert resp.responses[0].error_code == E.none
    resp = call(n, 20, 5, {"topic_names": ["a", "b"], "timeout": 1000})
    assert [r.error_code for r in resp.responses] == [E.none, E.topic_authorization_failed]


def test_create_partitions_needs_alter_on_the_topic() -> None:
    n = node(authorization([acl("User:alice", A.ALTER, R.TOPIC, "a")]))
    resp = call(n, 37, 3, {"topics": [{"name": t, "count": 4, "assignments": None}
                                      for t in ("a", "b")],
                           "timeout": 1000, "validate_only": False})
    assert [(r.name, r.error_code) for r in resp.results] == [
        ("a", E.none), ("b", E.topic_authorization_failed)]
    assert n.controller.calls == [("create_partitions", ["a"])]


def test_describe_configs_needs_describe_configs() -> None:
    n = node(authorization([acl("User:alice", A.ALTER_CONFIGS, R.TOPIC, "a"),  # implies it
                            acl("User:ops", A.DESCRIBE_CONFIGS, R.CLUSTER)]))
    data = {"resources": [{"resource_type": TOPIC_RESOURCE, "resource_name": t,
                           "configuration_keys": None} for t in ("a", "b")] + [
        {"resource_type": BROKER_RESOURCE, "resource_name": "1", "configuration_keys": None}],
        "include_synonyms": False, "include_documentation": False}
    resp = call(n, 32, 4, data)
    assert [(r.resource_name, r.error_code, len(r.configs)) for r in resp.results] == [
        ("a", E.none, 1), ("b", E.topic_authorization_failed, 0),
        ("1", E.cluster_authorization_failed, 0)]
    assert resp.results[2].error_message == "Cluster authorization failed."
    resp = call(n, 32, 4, data, "User:ops")
    assert [r.error_code for r in resp.results] == [
        E.topic_authorization_failed, E.topic_authorization_failed, E.none]


@pytest.mark.parametrize("api_key", [33, 44])
def test_alter_configs_need_alter_configs(api_key: int) -> None:
    n = node(authorization([acl("User:alice", A.ALTER_CONFIGS, R.TOPIC, "a")]))
    configs: list[dict[str, Any]] = []
    data = {"validate_only": False, "resources": [
        {"resource_type": TOPIC_RESOURCE, "resource_name": "a", "configs": configs},
        {"resource_type": TOPIC_RESOURCE, "resource_name": "b", "configs": configs},
        {"resource_type": BROKER_RESOURCE, "resource_name": "", "configs": configs},
        {"resource_type": BROKER_RESOURCE, "resource_name": "2", "configs": configs}]}
    resp = call(n, api_key, 1 if api_key == 44 else 2, data)
    assert [(r.resource_name, r.error_code) for r in resp.responses] == [
        ("a", E.none), ("b", E.topic_authorization_failed),
        ("", E.cluster_authorization_failed),
        ("2", E.invalid_request)]  # another broker's: refused first, as Kafka's broker does
    assert [c[1] for c in n.controller.calls] == [[(TOPIC_RESOURCE, "a")]]


def test_elect_leaders_needs_alter_on_the_cluster() -> None:
    n = node(authorization([acl("User:ops", A.ALTER, R.CLUSTER)]))
    data = {"election_type": 0, "timeout": 1000,
            "topic_partitions": [{"topic": "a", "partitions": [0, 1]}]}
    resp = call(n, 43, 2, data)
    assert resp.error_code == E.cluster_authorization_failed
    assert [(p.partition_id, p.error_code) for p in resp.replica_election_results[0]
            .partition_result] == [(0, E.cluster_authorization_failed),
                                   (1, E.cluster_authorization_failed)]
    assert n.controller.calls == []
    resp = call(n, 43, 2, data, "User:ops")
    assert resp.error_code == E.none and n.controller.calls == [
        ("elect_leaders", [("a", 0), ("a", 1)])]


def test_log_dirs_and_quorum_need_describe_on_the_cluster(tmp_path: Path) -> None:
    n = node(authorization([acl("User:*", A.DESCRIBE, R.CLUSTER),
                            deny("User:eve", A.DESCRIBE, R.CLUSTER)]), tmp_path)
    resp = call(n, 35, 4, {"topics": None})
    assert resp.error_code == E.none and len(resp.results) == 1
    resp = call(n, 35, 4, {"topics": None}, "User:eve")
    assert (resp.error_code, resp.results) == (E.cluster_authorization_failed, ())
    asked = {"topics": [{"topic_name": "__cluster_metadata",
                         "partitions": [{"partition_index": 0}]}]}
    resp = call(n, 55, 2, asked)
    assert resp.error_code == E.none  # authorized: the quorum was asked (and unreachable)
    assert resp.topics[0].partitions[0].error_code == E.not_leader_or_follower
    resp = call(n, 55, 2, asked, "User:eve")
    assert (resp.error_code, resp.topics) == (E.cluster_authorization_failed, ())

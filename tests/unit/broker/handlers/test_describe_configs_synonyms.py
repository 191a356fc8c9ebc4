"""DescribeConfigs synonyms as Kafka 4.1 lists them (``kafka-configs.sh --describe`` prints
them): a topic key's own override, then the levels of the broker key behind its default; on
the cluster default resource, only the cluster-wide value."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from odradek.broker.config import parse_config
from odradek.broker.handlers import admin
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka.codec import build_request
from odradek.broker.topic_configs import (
    DEFAULT_CONFIG,
    DYNAMIC_BROKER_CONFIG,
    DYNAMIC_DEFAULT_BROKER_CONFIG,
    STATIC_BROKER_CONFIG,
    TOPIC_CONFIG,
    BrokerConfigLevels,
    describe_broker,
    describe_cluster_default,
    describe_topic,
)
from odradek.controller.metadata import BROKER_RESOURCE, TOPIC_RESOURCE
from tests.unit.broker.handlers.acl_fixtures import OFF


def _node() -> SimpleNamespace:
    static = parse_config({"node.id": 1, "data.dir": "/tmp/x", "log.retention.ms": 5000},
                          env={})
    levels = BrokerConfigLevels(static, cluster={"log.retention.ms": "6000",
                                                 "max.connections": "40"},
                                own={"log.retention.ms": "7000", "max.connections": "30"})
    overrides = {"retention.ms": "1234"}
    return SimpleNamespace(
        node_id=1, image=SimpleNamespace(topics={"t": object()}), authorization=OFF,
        describe_topic_configs=lambda topic: describe_topic(levels, overrides),
        describe_broker_configs=lambda: describe_broker(levels),
        describe_cluster_default_configs=lambda: describe_cluster_default(levels.cluster),
        broker_config_synonyms=levels.synonyms)


def _synonyms(resource_type: int, name: str) -> dict[str, list[tuple[str, str, int]]]:
    req = build_request(32, 4, {"resources": [{"resource_type": resource_type,
                                               "resource_name": name,
                                               "configuration_keys": None}],
                                "include_synonyms": True, "include_documentation": False})
    resp: Any = asyncio.run(admin.handle_describe_configs(
        _node(), RequestContext(32, 4, 1, "t", "127.0.0.1", 1), req))
    [result] = resp.results
    return {c.name: [(s.name, s.value, s.source) for s in c.synonyms] for c in result.configs}


def test_topic_synonyms_are_the_override_then_the_broker_key_levels() -> None:
    got = _synonyms(TOPIC_RESOURCE, "t")
    assert got["retention.ms"] == [
        ("retention.ms", "1234", TOPIC_CONFIG),
        ("log.retention.ms", "7000", DYNAMIC_BROKER_CONFIG),
        ("log.retention.ms", "6000", DYNAMIC_DEFAULT_BROKER_CONFIG),
        ("log.retention.ms", "5000", STATIC_BROKER_CONFIG),
        ("log.retention.ms", "604800000", DEFAULT_CONFIG),
    ]
    # Not overridden: only the broker key's levels.
    assert got["segment.bytes"] == [("log.segment.bytes", "1073741824", DEFAULT_CONFIG)]
    assert got["cleanup.policy"] == [("log.cleanup.policy", "delete", DEFAULT_CONFIG)]
    # No broker key behind it and no override: none, as in Kafka.
    assert got["message.timestamp.type"] == []


def test_broker_and_cluster_default_synonyms() -> None:
    assert _synonyms(BROKER_RESOURCE, "1")["max.connections"] == [
        ("max.connections", "30", DYNAMIC_BROKER_CONFIG),
        ("max.connections", "40", DYNAMIC_DEFAULT_BROKER_CONFIG),
        ("max.connections", str(2**31 - 1), DEFAULT_CONFIG),
    ]
    # The "" resource: only the cluster-wide value, as Kafka 4.1 answers there.
    assert _synonyms(BROKER_RESOURCE, "")["max.connections"] == [
        ("max.connections", "40", DYNAMIC_DEFAULT_BROKER_CONFIG),
    ]

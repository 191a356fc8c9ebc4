"""AlterConfigs and IncrementalAlterConfigs."""

from __future__ import annotations

import pytest

from odradek.controller.metadata import BROKER_RESOURCE, TOPIC_RESOURCE, MetadataImage
from odradek.controller.metadata.requests import (
    AlterConfigOp,
    AlterConfigOpType,
    AlterConfigsResource,
    CreateTopicSpec,
    IncrementalAlterConfigsResource,
)
from odradek.controller.quorum.configs import alter_configs, incremental_alter_configs
from odradek.controller.quorum.topics import create_topics
from tests.unit.controller.quorum.mdtest_helpers import SETTINGS, applied, cluster, rng

UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_CONFIG = 40
INVALID_REQUEST = 42
SET, DELETE, APPEND, SUBTRACT = (int(op) for op in AlterConfigOpType)


def topic_image(configs=None) -> MetadataImage:
    image = cluster(1)
    spec = CreateTopicSpec("t", 1, 1, configs=configs or {})
    image, _ = applied(image, create_topics(image, [spec], settings=SETTINGS, rng=rng()))
    return image


def incremental(image, *ops, name="t", rtype=TOPIC_RESOURCE, validate_only=False):
    resource = IncrementalAlterConfigsResource(rtype, name, [AlterConfigOp(*op) for op in ops])
    return incremental_alter_configs(image, [resource], validate_only)


def test_legacy_alter_replaces_the_whole_set() -> None:
    image = topic_image({"retention.ms": "1000", "segment.bytes": "1048576"})
    resource = AlterConfigsResource(TOPIC_RESOURCE, "t", {"retention.ms": "2000", "min.insync.replicas": "1"})
    image, (res,) = applied(image, alter_configs(image, [resource]))
    assert res.error_code == 0 and (res.resource_type, res.resource_name) == (TOPIC_RESOURCE, "t")
    assert image.topic_configs("t") == {"retention.ms": "2000", "min.insync.replicas": "1"}


def test_legacy_alter_writes_only_differences() -> None:
    image = topic_image({"retention.ms": "1000"})
    result = alter_configs(image, [AlterConfigsResource(TOPIC_RESOURCE, "t", {"retention.ms": "1000"})])
    assert result.records == () and result.response[0].error_code == 0


def test_legacy_alter_errors() -> None:
    image = topic_image({"retention.ms": "1000"})
    results = alter_configs(
        image,
        [
            AlterConfigsResource(TOPIC_RESOURCE, "nope", {}),
            AlterConfigsResource(TOPIC_RESOURCE, "t", {"retention.ms": "x"}),
            AlterConfigsResource(BROKER_RESOURCE, "1", {"node.id": "5"}),
            AlterConfigsResource(8, "x", {}),
        ],
    ).response
    assert [r.error_code for r in results] == [
        UNKNOWN_TOPIC_OR_PARTITION,
        INVALID_CONFIG,
        INVALID_REQUEST,
        INVALID_REQUEST,
    ]
    assert "Cannot update these configs dynamically: {node.id}" in results[2].error_message
    null = alter_configs(image, [AlterConfigsResource(TOPIC_RESOURCE, "t", {"retention.ms": None})])
    assert null.response[0].error_code == INVALID_REQUEST


def test_validate_only_and_duplicates() -> None:
    image = topic_image()
    dry = alter_configs(image, [AlterConfigsResource(TOPIC_RESOURCE, "t", {"retention.ms": "5"})], True)
    assert dry.records == () and dry.response[0].error_code == 0
    dup = alter_configs(
        image,
        [AlterConfigsResource(TOPIC_RESOURCE, "t", {}), AlterConfigsResource(TOPIC_RESOURCE, "t", {})],
    )
    assert [r.error_code for r in dup.response] == [INVALID_REQUEST, INVALID_REQUEST]


def test_incremental_set_and_delete() -> None:
    image = topic_image({"retention.ms": "1000", "segment.ms": "5000"})
    image, (res,) = applied(
        image, incremental(image, ("retention.ms", SET, "2000"), ("segment.ms", DELETE, None))
    )
    assert res.error_code == 0
    assert image.topic_configs("t") == {"retention.ms": "2000"}
    # Deleting a key that is not set is fine and writes nothing.
    result = incremental(image, ("flush.ms", DELETE, None))
    assert result.response[0].error_code == 0 and result.records == ()


def test_incremental_append_and_subtract_on_list_config() -> None:
    image = topic_image()
    # No override yet: APPEND starts from the default cleanup.policy (delete).
    image, _ = applied(image, incremental(image, ("cleanup.policy", APPEND, "compact")))
    assert image.topic_configs("t") == {"cleanup.policy": "delete,compact"}
    image, _ = applied(image, incremental(image, ("cleanup.policy", APPEND, "compact")))
    assert image.topic_configs("t") == {"cleanup.policy": "delete,compact"}
    image, _ = applied(image, incremental(image, ("cleanup.policy", SUBTRACT, "delete")))
    assert image.topic_configs("t") == {"cleanup.policy": "compact"}


def test_incremental_errors() -> None:
    image = topic_image()
    cases = [
        (incremental(image, ("retention.ms", APPEND, "5")), INVALID_CONFIG),  # not a list
        (incremental(image, ("retention.ms", SET, None)), INVALID_REQUEST),
        (incremental(image, ("retention.ms", 9, "5")), INVALID_REQUEST),
        (incremental(image, ("retention.ms", SET, "1"), ("retention.ms", DELETE, None)), INVALID_REQUEST),
        (incremental(image, ("retention.ms", SET, "never")), INVALID_CONFIG),
        (incremental(image, ("min.insync.replicas", SET, "0")), INVALID_CONFIG),
        (incremental(image, ("cleanup.policy", SUBTRACT, "delete")), INVALID_CONFIG),  # empty
        (incremental(image, ("retention.ms", SET, "1"), name="zz"), UNKNOWN_TOPIC_OR_PARTITION),
    ]
    for i, (result, code) in enumerate(cases):
        assert result.response[0].error_code == code, i
        assert result.response[0].error_message, i
        assert result.records == (), i


THROTTLED = ("leader.replication.throttled.replicas", "follower.replication.throttled.replicas")


def test_throttled_replica_lists_are_topic_configs() -> None:
    """KIP-73's lists, as kafka-reassign-partitions.sh --throttle and kafka-configs.sh set
    them: at creation, with SET, APPEND and SUBTRACT, with the legacy AlterConfigs."""
    image = topic_image({THROTTLED[0]: "0:1"})
    assert image.topic_configs("t") == {THROTTLED[0]: "0:1"}
    image, _ = applied(image, incremental(image, (THROTTLED[0], APPEND, "0:2"),
                                          (THROTTLED[1], SET, "*")))
    assert image.topic_configs("t") == {THROTTLED[0]: "0:1,0:2", THROTTLED[1]: "*"}
    image, _ = applied(image, incremental(image, (THROTTLED[0], SUBTRACT, "0:1")))
    assert image.topic_configs("t")[THROTTLED[0]] == "0:2"
    image, (res,) = applied(image, alter_configs(image, [AlterConfigsResource(
        TOPIC_RESOURCE, "t", {THROTTLED[1]: "0:1,0:2,0:3"})]))
    assert res.error_code == 0 and image.topic_configs("t") == {THROTTLED[1]: "0:1,0:2,0:3"}


@pytest.mark.parametrize("name", THROTTLED)
def test_invalid_throttled_replica_lists_are_refused_with_kafkas_message(name: str) -> None:
    image = topic_image()
    created = create_topics(cluster(1), [CreateTopicSpec("u", 1, 1, configs={name: "1-2"})],
                            settings=SETTINGS, rng=rng())
    for result in (incremental(image, (name, SET, "0:1,broker2")),
                   incremental(image, (name, APPEND, "0:1,*")),
                   alter_configs(image, [AlterConfigsResource(TOPIC_RESOURCE, "t",
                                                              {name: "all"})]),
                   created):
        (res,) = result.response
        assert res.error_code == INVALID_CONFIG and result.records == ()
        assert res.error_message.startswith("Invalid value [")
        assert f"{name} must be the literal '*' or a list of replicas" in res.error_message


def broker_configs(image: MetadataImage, name: str) -> dict[str, str]:
    return dict(image.configs.get((BROKER_RESOURCE, name), {}))


@pytest.mark.parametrize("name", ["", "1", "7"])  # 7: not registered, accepted as in Kafka
def test_broker_resources_set_and_delete(name: str) -> None:
    image = cluster(1)
    # Nothing to change: accepted (tools send this to read back or as no-op).
    assert incremental(image, name=name, rtype=BROKER_RESOURCE).response[0].error_code == 0
    image, (res,) = applied(image, incremental(
        image, ("log.retention.ms", SET, "5000"), ("max.connections", SET, "10"),
        name=name, rtype=BROKER_RESOURCE))
    assert res.error_code == 0 and res.resource_name == name
    assert broker_configs(image, name) == {"log.retention.ms": "5000", "max.connections": "10"}
    image, _ = applied(image, incremental(image, ("max.connections", DELETE, None),
                                          name=name, rtype=BROKER_RESOURCE))
    assert broker_configs(image, name) == {"log.retention.ms": "5000"}
    # The other level is untouched.
    other = "1" if name != "1" else ""
    assert broker_configs(image, other) == {}
    bad = incremental(image, name="broker-1", rtype=BROKER_RESOURCE)
    assert bad.response[0].error_code == INVALID_REQUEST


def test_broker_legacy_alter_replaces_the_dynamic_set() -> None:
    image = cluster(1)
    image, _ = applied(image, alter_configs(image, [AlterConfigsResource(
        BROKER_RESOURCE, "", {"log.retention.ms": "5000", "num.partitions": "3"})]))
    assert broker_configs(image, "") == {"log.retention.ms": "5000", "num.partitions": "3"}
    image, _ = applied(image, alter_configs(image, [AlterConfigsResource(
        BROKER_RESOURCE, "", {"auto.create.topics.enable": "false"})]))
    assert broker_configs(image, "") == {"auto.create.topics.enable": "false"}


@pytest.mark.parametrize(("ops", "name", "code", "words"), [
    ([("node.id", SET, "3")], "1", INVALID_REQUEST, "Cannot update these configs dynamically"),
    ([("listeners", SET, "PLAINTEXT://:1")], "", INVALID_REQUEST, "{listeners}"),
    ([("no.such.key", SET, "1")], "", INVALID_REQUEST, "{no.such.key}"),
    ([("max.connections", SET, "0")], "1", INVALID_REQUEST, "max.connections"),
    ([("log.retention.ms", SET, "soon")], "", INVALID_REQUEST, "not an integer"),
    ([("auto.create.topics.enable", SET, "yes")], "", INVALID_REQUEST, "true or false"),
    ([("max.connections.per.ip.overrides", SET, "a:b")], "", INVALID_REQUEST, "host:count"),
    ([("num.partitions", SET, "3")], "1", INVALID_REQUEST, "cluster-wide"),
    ([("max.connections", SET, None)], "", INVALID_REQUEST, "Null value"),
    ([("max.connections", APPEND, "5")], "", INVALID_CONFIG, "not a list"),
    ([("leader.replication.throttled.rate", SET, "-1")], "1", INVALID_REQUEST,
     "must be between 0 and"),
    ([("follower.replication.throttled.rate", SET, "2MB")], "", INVALID_REQUEST,
     "not an integer"),
    # One bad key refuses the whole resource.
    ([("max.connections", SET, "5"), ("process.roles", SET, "broker")], "", INVALID_REQUEST,
     "process.roles"),
])
def test_broker_config_refusals(ops, name, code, words) -> None:
    image = cluster(1)
    result = incremental(image, *ops, name=name, rtype=BROKER_RESOURCE)
    (res,) = result.response
    assert res.error_code == code and words in res.error_message
    assert result.records == ()


def test_broker_config_validate_only_and_unknown_delete() -> None:
    image = cluster(1)
    dry = incremental(image, ("max.connections", SET, "5"), name="", rtype=BROKER_RESOURCE,
                      validate_only=True)
    assert dry.response[0].error_code == 0 and dry.records == ()
    gone = incremental(image, ("no.such.key", DELETE, None), name="", rtype=BROKER_RESOURCE)
    assert gone.response[0].error_code == 0 and gone.records == ()

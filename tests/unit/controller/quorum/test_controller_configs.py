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
            AlterConfigsResource(BROKER_RESOURCE, "1", {"log.retention.ms": "5"}),
            AlterConfigsResource(8, "x", {}),
        ],
    ).response
    assert [r.error_code for r in results] == [
        UNKNOWN_TOPIC_OR_PARTITION,
        INVALID_CONFIG,
        INVALID_REQUEST,
        INVALID_REQUEST,
    ]
    assert "Dynamic broker configs are not supported" in results[2].error_message
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


@pytest.mark.parametrize("name", ["", "1"])
def test_broker_resources(name: str) -> None:
    image = cluster(1)
    # Nothing to change: accepted (tools send this to read back or as no-op).
    assert incremental(image, name=name, rtype=BROKER_RESOURCE).response[0].error_code == 0
    result = incremental(image, ("log.retention.ms", SET, "5"), name=name, rtype=BROKER_RESOURCE)
    assert result.response[0].error_code == INVALID_REQUEST and result.records == ()
    bad = incremental(image, name="broker-1", rtype=BROKER_RESOURCE)
    assert bad.response[0].error_code == INVALID_REQUEST

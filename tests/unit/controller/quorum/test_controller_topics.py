"""create_topics, delete_topics, create_partitions and replica placement, without I/O."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from odradek.controller.metadata import BROKER_RESOURCE, TOPIC_RESOURCE
from odradek.controller.metadata.names import MAX_TOPIC_NAME_LENGTH, topic_name_error
from odradek.controller.metadata.records import config_record
from odradek.controller.metadata.requests import (
    CreatePartitionsSpec,
    CreateTopicSpec,
    DeleteTopicSpec,
)
from odradek.controller.quorum import ControllerSettings
from odradek.controller.quorum.brokers import fence_broker
from odradek.controller.quorum.placement import PlacementBroker, place_partitions, rack_interleaved
from odradek.controller.quorum.topics import create_partitions, create_topics, delete_topics
from tests.unit.controller.quorum.mdtest_helpers import (
    SETTINGS,
    applied,
    cluster,
    commit,
    rng,
)

UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_CONFIG = 40
INVALID_REQUEST = 42
UNKNOWN_TOPIC_ID = 100


def create(image, *specs, settings=SETTINGS, validate_only=False, seed=7):
    return create_topics(
        image, list(specs), settings=settings, rng=rng(seed), validate_only=validate_only
    )


def test_create_topic_records_and_result() -> None:
    image = cluster(3)
    result = create(image, CreateTopicSpec("orders", 6, 2, configs={"retention.ms": "1000"}))
    (res,) = result.response
    assert res.error_code == 0 and res.error_message is None
    assert (res.num_partitions, res.replication_factor) == (6, 2)
    assert res.configs == {"retention.ms": "1000"}
    kinds = [r.WhichOneof("record") for r in result.records]
    assert kinds == ["topic"] + ["partition"] * 6 + ["config"]

    image, _ = applied(image, result)
    topic = image.topics["orders"]
    assert topic.topic_id == res.topic_id and image.topics_by_id[res.topic_id] is topic
    assert sorted(topic.partitions) == list(range(6))
    for partition in topic.partitions.values():
        assert len(partition.replicas) == 2 and len(set(partition.replicas)) == 2
        assert partition.isr == partition.replicas  # ISR = replicas initially
        assert partition.leader == partition.replicas[0]  # leader = first replica
        assert (partition.leader_epoch, partition.partition_epoch) == (0, 0)
    assert image.topic_configs("orders") == {"retention.ms": "1000"}


def test_defaults_apply_for_minus_one() -> None:
    settings = ControllerSettings(default_num_partitions=3, default_replication_factor=2)
    (res,) = create(cluster(3), CreateTopicSpec("t"), settings=settings).response
    assert (res.error_code, res.num_partitions, res.replication_factor) == (0, 3, 2)


def test_cluster_wide_dynamic_defaults_beat_the_controller_file() -> None:
    """num.partitions / default.replication.factor set on BROKER "" apply to -1; a per-broker
    resource is not the cluster's decision and is ignored here (it is refused anyway)."""
    settings = ControllerSettings(default_num_partitions=3, default_replication_factor=2)
    image = cluster(3)
    image = commit(image, [
        config_record(BROKER_RESOURCE, "", "num.partitions", "5"),
        config_record(BROKER_RESOURCE, "1", "default.replication.factor", "1"),
    ])
    (res,) = create(image, CreateTopicSpec("t"), settings=settings).response
    assert (res.error_code, res.num_partitions, res.replication_factor) == (0, 5, 2)
    image = commit(image, [config_record(BROKER_RESOURCE, "", "default.replication.factor", "3")])
    (res,) = create(image, CreateTopicSpec("t"), settings=settings).response
    assert (res.num_partitions, res.replication_factor) == (5, 3)
    (res,) = create(image, CreateTopicSpec("t", 2, 1), settings=settings).response
    assert (res.num_partitions, res.replication_factor) == (2, 1)


def test_validate_only_produces_no_records() -> None:
    result = create(cluster(3), CreateTopicSpec("t", 3, 3), validate_only=True)
    assert result.records == ()
    assert result.response[0].error_code == 0 and result.response[0].num_partitions == 3


def test_topic_ids_are_random_v4_and_unique() -> None:
    result = create(cluster(1), *(CreateTopicSpec(f"t{i}", 1, 1) for i in range(20)))
    ids = [r.topic_id for r in result.response]
    assert len(set(ids)) == 20
    assert all(i.version == 4 and i.int != 0 for i in ids)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a" * (MAX_TOPIC_NAME_LENGTH + 1), "has space", "slash/", "ünï", "a:b", "a*"],
)
def test_illegal_topic_names(name: str) -> None:
    assert topic_name_error(name) is not None
    (res,) = create(cluster(1), CreateTopicSpec(name, 1, 1)).response
    assert res.error_code == INVALID_TOPIC_EXCEPTION
    assert res.error_message and res.topic_id is None


@pytest.mark.parametrize(
    "name", ["a", "A-z_0.9", "__consumer_offsets", "a" * MAX_TOPIC_NAME_LENGTH, "...", ".a"]
)
def test_legal_topic_names(name: str) -> None:
    assert topic_name_error(name) is None
    (res,) = create(cluster(1), CreateTopicSpec(name, 1, 1)).response
    assert res.error_code == 0


def test_name_error_messages_say_what_is_allowed() -> None:
    assert "249" in topic_name_error("x" * 250)
    assert "ASCII alphanumerics, '.', '_' and '-'" in topic_name_error("a b")


def test_consumer_offsets_with_compaction() -> None:
    spec = CreateTopicSpec("__consumer_offsets", 50, 1, configs={"cleanup.policy": "compact"})
    image, (res,) = applied(cluster(1), create(cluster(1), spec))
    assert res.error_code == 0
    assert image.topic_configs("__consumer_offsets") == {"cleanup.policy": "compact"}
    assert len(image.topics["__consumer_offsets"].partitions) == 50


def test_already_exists_and_collisions() -> None:
    image, _ = applied(cluster(1), create(cluster(1), CreateTopicSpec("a.b", 1, 1)))
    results = create(
        image,
        CreateTopicSpec("a.b", 1, 1),
        CreateTopicSpec("a_b", 1, 1),
        CreateTopicSpec("x_y", 1, 1),
        CreateTopicSpec("x.y", 1, 1),
    ).response
    assert [r.error_code for r in results] == [
        TOPIC_ALREADY_EXISTS,
        INVALID_TOPIC_EXCEPTION,
        0,
        INVALID_TOPIC_EXCEPTION,  # collides with x_y created earlier in the same request
    ]
    assert "already exists" in results[0].error_message
    assert "collides" in results[1].error_message and "'a.b'" in results[1].error_message


def test_duplicate_names_in_one_request() -> None:
    result = create(cluster(1), CreateTopicSpec("d", 1, 1), CreateTopicSpec("d", 2, 1))
    assert [r.error_code for r in result.response] == [INVALID_REQUEST, INVALID_REQUEST]
    assert result.records == ()


def test_one_bad_topic_does_not_stop_the_others() -> None:
    result = create(cluster(2), CreateTopicSpec("ok", 2, 2), CreateTopicSpec("bad", 0, 1))
    assert [r.error_code for r in result.response] == [0, INVALID_PARTITIONS]
    image, _ = applied(cluster(2), result)
    assert set(image.topics) == {"ok"}


@pytest.mark.parametrize("partitions", [0, -2, -100])
def test_invalid_partition_counts(partitions: int) -> None:
    (res,) = create(cluster(1), CreateTopicSpec("t", partitions, 1)).response
    assert res.error_code == INVALID_PARTITIONS
    assert "larger than 0" in res.error_message and "-1" in res.error_message


def test_partition_limit_per_request() -> None:
    settings = ControllerSettings(max_partitions_per_request=10)
    results = create(
        cluster(1), CreateTopicSpec("a", 6, 1), CreateTopicSpec("b", 6, 1), settings=settings
    ).response
    assert [r.error_code for r in results] == [0, INVALID_PARTITIONS]
    assert "limit of 10" in results[1].error_message


@pytest.mark.parametrize("rf", [0, -2])
def test_invalid_replication_factor(rf: int) -> None:
    (res,) = create(cluster(3), CreateTopicSpec("t", 1, rf)).response
    assert res.error_code == INVALID_REPLICATION_FACTOR


def test_replication_factor_limited_by_unfenced_brokers() -> None:
    image = cluster(3, fenced=[3])
    (res,) = create(image, CreateTopicSpec("t", 1, 3)).response
    assert res.error_code == INVALID_REPLICATION_FACTOR
    assert "only 2 broker(s)" in res.error_message
    result = create(image, CreateTopicSpec("t", 4, 2))
    image, (res,) = applied(image, result)
    assert res.error_code == 0
    assert all(3 not in p.replicas for p in image.topics["t"].partitions.values())
    (res,) = create(cluster(0), CreateTopicSpec("t", 1, 1)).response
    assert res.error_code == INVALID_REPLICATION_FACTOR


def test_invalid_configs() -> None:
    image = cluster(1)
    cases = {
        "bad log value": {"retention.ms": "soon"},
        "unknown name": {"no.such.config": "1"},
        "null value": {"retention.ms": None},
        "min isr zero": {"min.insync.replicas": "0"},
        "min isr text": {"min.insync.replicas": "two"},
        "unclean not bool": {"unclean.leader.election.enable": "yes"},
        "bad cleanup policy": {"cleanup.policy": "shred"},
    }
    for label, configs in cases.items():
        (res,) = create(image, CreateTopicSpec("t", 1, 1, configs=configs)).response
        assert res.error_code == INVALID_CONFIG, label
        assert res.error_message, label


def test_replication_configs_accepted() -> None:
    configs = {
        "min.insync.replicas": "2",
        "unclean.leader.election.enable": "TRUE",
        "cleanup.policy": "compact,delete",
        "compression.type": "lz4",
    }
    (res,) = create(cluster(3), CreateTopicSpec("t", 1, 3, configs=configs)).response
    assert res.error_code == 0 and res.configs == configs


def test_manual_assignment() -> None:
    image = cluster(4, fenced=[4])
    spec = CreateTopicSpec("m", assignments={0: [3, 1], 1: [4, 2], 2: [1, 4]})
    image, (res,) = applied(image, create(image, spec))
    assert (res.error_code, res.num_partitions, res.replication_factor) == (0, 3, 2)
    parts = image.topics["m"].partitions
    assert parts[0].replicas == (3, 1) and parts[0].leader == 3 and parts[0].isr == (3, 1)
    # The fenced broker 4 stays a replica but starts outside the ISR and cannot lead.
    assert parts[1].replicas == (4, 2) and parts[1].isr == (2,) and parts[1].leader == 2
    assert parts[2].isr == (1,) and parts[2].leader == 1


@pytest.mark.parametrize(
    ("assignments", "code", "fragment"),
    [
        ({0: [1], 2: [2]}, INVALID_REPLICA_ASSIGNMENT, "without gaps"),
        ({0: []}, INVALID_REPLICA_ASSIGNMENT, "empty"),
        ({0: [1, 1]}, INVALID_REPLICA_ASSIGNMENT, "more than once"),
        ({0: [1, 9]}, INVALID_REPLICA_ASSIGNMENT, "no such broker"),
        ({0: [1, 2], 1: [1]}, INVALID_REPLICA_ASSIGNMENT, "same replication factor"),
        ({0: [4]}, INVALID_REPLICA_ASSIGNMENT, "fenced"),
    ],
)
def test_bad_manual_assignments(assignments, code, fragment) -> None:
    image = cluster(4, fenced=[4])
    (res,) = create(image, CreateTopicSpec("m", assignments=assignments)).response
    assert res.error_code == code
    assert fragment in res.error_message


def test_manual_assignment_excludes_counts() -> None:
    spec = CreateTopicSpec("m", num_partitions=1, assignments={0: [1]})
    (res,) = create(cluster(1), spec).response
    assert res.error_code == INVALID_REQUEST


# ----- placement -----


@pytest.mark.parametrize("brokers", [3, 5])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_placement_balances_leaders_and_replicas(brokers: int, seed: int) -> None:
    image, _ = applied(cluster(brokers), create(cluster(brokers), CreateTopicSpec("t", 100, 3), seed=seed))
    parts = image.topics["t"].partitions.values()
    leaders = Counter(p.leader for p in parts)
    replicas = Counter(b for p in parts for b in p.replicas)
    assert set(leaders) == set(range(1, brokers + 1))
    assert max(leaders.values()) - min(leaders.values()) <= 1
    assert max(replicas.values()) - min(replicas.values()) <= 1
    assert all(len(set(p.replicas)) == 3 for p in parts)


def test_placement_start_is_random_across_topics() -> None:
    image = cluster(5)
    result = create(image, *(CreateTopicSpec(f"t{i}", 1, 1) for i in range(50)))
    image, _ = applied(image, result)
    leaders = Counter(image.topics[f"t{i}"].partitions[0].leader for i in range(50))
    # Single-partition topics do not all land on one broker.
    assert len(leaders) >= 4


def test_placement_follower_sets_vary() -> None:
    brokers = [PlacementBroker(i) for i in range(1, 6)]
    placed = place_partitions(brokers, 100, 3, rng())
    # When a broker fails, its leaderships should spread over several brokers.
    followers_of_1 = {p[1] for p in placed if p[0] == 1}
    assert len(followers_of_1) == 4


def test_rack_aware_placement() -> None:
    racks = {1: "a", 2: "a", 3: "b", 4: "b", 5: "c", 6: "c"}
    image = cluster(racks)
    image, _ = applied(image, create(image, CreateTopicSpec("t", 60, 3)))
    parts = image.topics["t"].partitions.values()
    for p in parts:
        assert len({racks[b] for b in p.replicas}) == 3, p
    leaders = Counter(p.leader for p in parts)
    assert max(leaders.values()) - min(leaders.values()) <= 1


def test_rack_aware_uneven_racks_still_spreads() -> None:
    # Three brokers on rack a, one on rack b: every partition uses both racks first.
    racks = {1: "a", 2: "a", 3: "a", 4: "b"}
    placed = place_partitions(
        [PlacementBroker(b, r) for b, r in racks.items()], 40, 2, rng()
    )
    assert all(len({racks[b] for b in p}) == 2 for p in placed)
    leaders = Counter(p[0] for p in placed)
    assert max(leaders.values()) - min(leaders.values()) <= 1


def test_rack_interleaving() -> None:
    order = rack_interleaved(
        [PlacementBroker(1, "a"), PlacementBroker(2, "a"), PlacementBroker(3, "b"),
         PlacementBroker(4, None)]
    )
    assert order == [1, 3, 4, 2]


def test_placement_rejects_impossible_rf() -> None:
    with pytest.raises(ValueError):
        place_partitions([PlacementBroker(1)], 1, 2, rng())


# ----- delete_topics -----


def two_topics():
    image = cluster(3)
    result = create(image, CreateTopicSpec("a", 2, 2, configs={"retention.ms": "5"}),
                    CreateTopicSpec("b", 1, 1))
    return applied(image, result)


def test_delete_by_name_and_by_id() -> None:
    image, (a, b) = two_topics()
    result = delete_topics(image, [DeleteTopicSpec(name="a"), DeleteTopicSpec(topic_id=b.topic_id)])
    assert [(r.name, r.topic_id, r.error_code) for r in result.response] == [
        ("a", a.topic_id, 0),
        ("b", b.topic_id, 0),
    ]
    image, _ = applied(image, result)
    assert not image.topics and not image.topics_by_id
    assert (TOPIC_RESOURCE, "a") not in image.configs


def test_delete_errors() -> None:
    image, (a, _) = two_topics()
    result = delete_topics(
        image,
        [
            DeleteTopicSpec(name="nope"),
            DeleteTopicSpec(topic_id=uuid.UUID(int=5)),
            DeleteTopicSpec(),
            DeleteTopicSpec(name="a", topic_id=a.topic_id),
            DeleteTopicSpec(name="b"),
            DeleteTopicSpec(name="b"),
        ],
    )
    assert [r.error_code for r in result.response] == [
        UNKNOWN_TOPIC_OR_PARTITION,
        UNKNOWN_TOPIC_ID,
        INVALID_REQUEST,
        INVALID_REQUEST,
        INVALID_REQUEST,
        INVALID_REQUEST,
    ]
    assert result.records == ()


# ----- create_partitions -----


def test_create_partitions_adds_balanced_partitions() -> None:
    image = cluster(3)
    image, _ = applied(image, create(image, CreateTopicSpec("t", 3, 2)))
    result = create_partitions(image, [CreatePartitionsSpec("t", 9)], settings=SETTINGS, rng=rng())
    assert result.response[0].error_code == 0
    image, _ = applied(image, result)
    parts = image.topics["t"].partitions
    assert sorted(parts) == list(range(9))
    assert all(len(p.replicas) == 2 for p in parts.values())
    leaders = Counter(p.leader for p in parts.values())
    assert sorted(leaders.values()) == [3, 3, 3]


def test_create_partitions_manual_and_validate_only() -> None:
    image = cluster(3)
    image, _ = applied(image, create(image, CreateTopicSpec("t", 1, 2)))
    spec = CreatePartitionsSpec("t", 3, assignments=[[3, 1], [2, 3]])
    dry = create_partitions(image, [spec], settings=SETTINGS, rng=rng(), validate_only=True)
    assert dry.records == () and dry.response[0].error_code == 0
    image, _ = applied(image, create_partitions(image, [spec], settings=SETTINGS, rng=rng()))
    assert image.partition("t", 1).replicas == (3, 1)
    assert image.partition("t", 2).replicas == (2, 3) and image.partition("t", 2).leader == 2


@pytest.mark.parametrize(
    ("spec", "code", "fragment"),
    [
        (CreatePartitionsSpec("t", 1), INVALID_PARTITIONS, "would not be an increase"),
        (CreatePartitionsSpec("t", 2), INVALID_PARTITIONS, "already has 2"),
        (CreatePartitionsSpec("zz", 4), UNKNOWN_TOPIC_OR_PARTITION, "does not exist"),
        (CreatePartitionsSpec("t", 4, [[1, 2]]), INVALID_REPLICA_ASSIGNMENT, "2 partition(s)"),
        (CreatePartitionsSpec("t", 3, [[1]]), INVALID_REPLICA_ASSIGNMENT, "replication factor"),
        (CreatePartitionsSpec("t", 3, [[1, 7]]), INVALID_REPLICA_ASSIGNMENT, "no such broker"),
    ],
)
def test_create_partitions_errors(spec, code, fragment) -> None:
    image = cluster(3)
    image, _ = applied(image, create(image, CreateTopicSpec("t", 2, 2)))
    result = create_partitions(image, [spec], settings=SETTINGS, rng=rng())
    assert result.response[0].error_code == code
    assert fragment in result.response[0].error_message
    assert result.records == ()


def test_create_partitions_needs_enough_live_brokers() -> None:
    image = cluster(3)
    image, _ = applied(image, create(image, CreateTopicSpec("t", 1, 3)))
    image, _ = applied(image, fence_broker(image, 3))
    result = create_partitions(image, [CreatePartitionsSpec("t", 2)], settings=SETTINGS, rng=rng())
    assert result.response[0].error_code == INVALID_REPLICATION_FACTOR


def test_create_partitions_duplicates() -> None:
    image = cluster(1)
    image, _ = applied(image, create(image, CreateTopicSpec("t", 1, 1)))
    result = create_partitions(
        image, [CreatePartitionsSpec("t", 2), CreatePartitionsSpec("t", 3)], settings=SETTINGS, rng=rng()
    )
    assert [r.error_code for r in result.response] == [INVALID_REQUEST, INVALID_REQUEST]


def _min_isr_config(settings: ControllerSettings, spec: CreateTopicSpec, brokers: int = 3
                    ) -> dict[str, str]:
    (res,) = create(cluster(brokers), spec, settings=settings).response
    assert res.error_code == 0, res.error_message
    return res.configs


def test_default_min_insync_replicas_of_one_adds_nothing() -> None:
    assert _min_isr_config(ControllerSettings(), CreateTopicSpec("t", 3, 3)) == {}


def test_default_min_insync_replicas_written_into_new_topics() -> None:
    settings = ControllerSettings(default_min_insync_replicas=2)
    assert _min_isr_config(settings, CreateTopicSpec("t", 3, 3)) == {
        "min.insync.replicas": "2"}


def test_default_min_insync_replicas_capped_at_replication_factor() -> None:
    settings = ControllerSettings(default_min_insync_replicas=2, default_replication_factor=1)
    assert _min_isr_config(settings, CreateTopicSpec("t", 3, 1)) == {"min.insync.replicas": "1"}
    # -1: the default replication factor decides.
    assert _min_isr_config(settings, CreateTopicSpec("t")) == {"min.insync.replicas": "1"}
    # Explicit placement: its replication factor decides.
    spec = CreateTopicSpec("t", assignments={0: (1, 2), 1: (2, 3)})
    assert _min_isr_config(ControllerSettings(default_min_insync_replicas=3), spec) == {
        "min.insync.replicas": "2"}


def test_explicit_min_insync_replicas_wins() -> None:
    spec = CreateTopicSpec("t", 3, 3, configs={"min.insync.replicas": "3", "retention.ms": "1"})
    assert _min_isr_config(ControllerSettings(default_min_insync_replicas=2), spec) == {
        "min.insync.replicas": "3", "retention.ms": "1"}

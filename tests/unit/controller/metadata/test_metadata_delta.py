"""Replaying records into deltas and images."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from odradek.controller.metadata import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    BrokerRegistration,
    Listener,
    LocalReplicaChanges,
    MetadataDelta,
    MetadataImage,
    MetadataListenerError,
    MetadataLoader,
    MetadataRecord,
    MetadataReplayError,
    PartitionRegistration,
    RecordDecodeError,
    decode_record,
    encode_record,
)
from odradek.controller.metadata.records import (
    broker_controlled_shutdown_record,
    config_record,
    fence_broker_record,
    no_op_record,
    partition_change_record,
    partition_record,
    producer_ids_record,
    register_broker_record,
    remove_topic_record,
    topic_record,
    unfence_broker_record,
    unregister_broker_record,
)

T1 = uuid.UUID(int=1)
T2 = uuid.UUID(int=2)


def replay_all(image: MetadataImage, records: list[MetadataRecord]) -> MetadataDelta:
    delta = MetadataDelta(image)
    for i, record in enumerate(records):
        delta.replay(record, image.offset + 1 + i)
    return delta


def build(records: list[MetadataRecord], image: MetadataImage = MetadataImage.EMPTY):
    return replay_all(image, records).apply()


def cluster_records() -> list[MetadataRecord]:
    return [
        register_broker_record(1, "inc-1", [("PLAINTEXT", "h1", 9092)], rack="r1"),
        register_broker_record(2, "inc-2", [("PLAINTEXT", "h2", 9093)]),
        register_broker_record(3, "inc-3", [("PLAINTEXT", "h3", 9094)]),
        topic_record("a", T1),
        partition_record(T1, 0, [1, 2], [1, 2], 1),
        partition_record(T1, 1, [2, 3], [2, 3], 2),
        topic_record("b", T2),
        partition_record(T2, 0, [3, 1], [3, 1], 3),
    ]


def test_empty_image() -> None:
    empty = MetadataImage.EMPTY
    assert empty.offset == -1
    assert not empty.brokers and not empty.topics and not empty.configs
    assert empty.next_producer_id == 0


def test_encode_decode_round_trip() -> None:
    for record in cluster_records() + [config_record(2, "a", "x", None), no_op_record()]:
        assert decode_record(encode_record(record)) == record


def test_decode_refuses_unknown_or_garbage() -> None:
    with pytest.raises(RecordDecodeError):
        decode_record(b"")  # no record type set
    with pytest.raises(RecordDecodeError):
        decode_record(b"\xff\xff\xff")
    # A oneof tag from a newer version (field 99, empty message) must not be skipped.
    with pytest.raises(RecordDecodeError, match="upgrade"):
        decode_record(bytes([0x9A, 0x06, 0x00]))
    with pytest.raises(ValueError):
        encode_record(MetadataRecord())


def test_replay_brokers() -> None:
    image = build(cluster_records())
    assert image.offset == 7
    b1 = image.brokers[1]
    assert b1 == BrokerRegistration(
        id=1,
        incarnation_id="inc-1",
        listeners=(Listener("PLAINTEXT", "h1", 9092),),
        rack="r1",
        fenced=True,
        epoch=0,
    )
    assert image.brokers[2].rack is None
    assert image.brokers[3].epoch == 2

    image = build([unfence_broker_record(1, 0)], image)
    assert not image.brokers[1].fenced
    assert image.unfenced_broker_ids() == [1]
    image = build([fence_broker_record(1, 0)], image)
    assert image.brokers[1].fenced
    image = build([unregister_broker_record(2, 1)], image)
    assert 2 not in image.brokers


def test_a_broker_in_controlled_shutdown_is_listed_but_not_usable() -> None:
    image = build([unfence_broker_record(1, 0)], build(cluster_records()))
    assert image.is_usable(1) and 1 in image.usable_ids
    image = build([broker_controlled_shutdown_record(1, 0)], image)
    assert image.brokers[1].in_controlled_shutdown and image.is_unfenced(1)
    assert not image.is_usable(1) and 1 not in image.usable_ids
    assert 1 in image.unfenced_ids  # clients still find it
    image = build([fence_broker_record(1, 0)], image)  # its process stopped
    assert image.brokers[1].in_controlled_shutdown and not image.is_unfenced(1)
    image = build([unfence_broker_record(1, 0)], image)  # unfencing ends the state
    assert image.is_usable(1) and not image.brokers[1].in_controlled_shutdown
    with pytest.raises(MetadataReplayError, match="epoch"):
        replay_all(image, [broker_controlled_shutdown_record(1, 5)])


def test_replay_refuses_stale_broker_epoch_and_unknown_broker() -> None:
    image = build(cluster_records())
    with pytest.raises(MetadataReplayError, match="epoch"):
        replay_all(image, [unfence_broker_record(1, 5)])
    with pytest.raises(MetadataReplayError, match="not registered"):
        replay_all(image, [fence_broker_record(9, 0)])


def test_replay_topics_and_partitions() -> None:
    image = build(cluster_records())
    assert set(image.topics) == {"a", "b"}
    assert image.topics_by_id[T1] is image.topics["a"]
    assert image.topics["a"].partitions[1] == PartitionRegistration((2, 3), (2, 3), 2, 0, 0)
    assert image.topics["a"].replication_factor == 2
    assert image.partition("b", 0).leader == 3
    assert image.partition("b", 5) is None and image.partition("zz", 0) is None


def test_partition_change_bumps_epochs_like_kafka() -> None:
    image = build(cluster_records())
    # ISR-only change: partition epoch moves, leader epoch does not.
    image = build([partition_change_record(T1, 0, isr=[1])], image)
    assert image.partition("a", 0) == PartitionRegistration((1, 2), (1,), 1, 0, 1)
    # Leader change: both move.
    image = build([partition_change_record(T1, 0, leader=2, isr=[2])], image)
    assert image.partition("a", 0) == PartitionRegistration((1, 2), (2,), 2, 1, 2)
    # No leader is a leader change too.
    image = build([partition_change_record(T1, 0, leader=-1)], image)
    assert image.partition("a", 0) == PartitionRegistration((1, 2), (2,), -1, 2, 3)
    assert not image.partition("a", 0).has_leader
    image = build([partition_change_record(T1, 0, replicas=[2, 3], isr=[])], image)
    assert image.partition("a", 0) == PartitionRegistration((2, 3), (), -1, 2, 4)


def test_replay_refuses_inconsistent_topic_records() -> None:
    image = build(cluster_records())
    with pytest.raises(MetadataReplayError, match="already exists"):
        replay_all(image, [topic_record("a", uuid.UUID(int=9))])
    with pytest.raises(MetadataReplayError, match="already in use"):
        replay_all(image, [topic_record("c", T1)])
    with pytest.raises(MetadataReplayError, match="unknown topic id"):
        replay_all(image, [partition_record(uuid.UUID(int=9), 0, [1], [1], 1)])
    with pytest.raises(MetadataReplayError, match="no partition"):
        replay_all(image, [partition_change_record(T1, 7, isr=[1])])
    with pytest.raises(MetadataReplayError, match="not after"):
        MetadataDelta(image).replay(no_op_record(), image.offset)


def test_remove_topic_drops_topic_and_its_configs() -> None:
    image = build(
        cluster_records()
        + [
            config_record(TOPIC_RESOURCE, "a", "retention.ms", "1000"),
            config_record(TOPIC_RESOURCE, "b", "retention.ms", "2000"),
        ]
    )
    image = build([remove_topic_record(T1)], image)
    assert "a" not in image.topics and T1 not in image.topics_by_id
    assert (TOPIC_RESOURCE, "a") not in image.configs
    assert image.topic_configs("b") == {"retention.ms": "2000"}
    # The name is free again and the new topic does not inherit the old configs.
    image = build([topic_record("a", uuid.UUID(int=7))], image)
    assert image.topics["a"].topic_id == uuid.UUID(int=7)
    assert image.topic_configs("a") == {}


def test_delete_and_recreate_in_one_delta() -> None:
    image = build(cluster_records())
    t3 = uuid.UUID(int=3)
    delta = replay_all(
        image,
        [
            remove_topic_record(T1),
            topic_record("a", t3),
            partition_record(t3, 0, [3], [3], 3),
            config_record(TOPIC_RESOURCE, "a", "cleanup.policy", "compact"),
        ],
    )
    new = delta.apply()
    assert new.topics["a"].topic_id == t3 and T1 not in new.topics_by_id
    assert new.topic_configs("a") == {"cleanup.policy": "compact"}
    changes = delta.local_changes(3)
    assert ("a", 1) in changes.deleted  # old a-1 had broker 3
    assert changes.leaders == {("a", 0): new.partition("a", 0)}
    assert changes.topic_ids == {"a": t3}


def test_topic_created_and_removed_in_one_delta_leaves_nothing() -> None:
    image = build(cluster_records())
    t3 = uuid.UUID(int=3)
    delta = replay_all(
        image, [topic_record("c", t3), partition_record(t3, 0, [1], [1], 1), remove_topic_record(t3)]
    )
    new = delta.apply()
    assert "c" not in new.topics
    assert delta.local_changes(1) == LocalReplicaChanges({}, {}, set(), {})


def test_configs_set_delete_and_broker_resource() -> None:
    image = build(
        [
            config_record(TOPIC_RESOURCE, "a", "x", "1"),
            config_record(TOPIC_RESOURCE, "a", "y", "2"),
            config_record(BROKER_RESOURCE, "1", "log.retention.ms", "5"),
        ]
    )
    assert image.topic_configs("a") == {"x": "1", "y": "2"}
    assert image.configs[(BROKER_RESOURCE, "1")] == {"log.retention.ms": "5"}
    image = build([config_record(TOPIC_RESOURCE, "a", "x", None)], image)
    assert image.topic_configs("a") == {"y": "2"}
    image = build([config_record(TOPIC_RESOURCE, "a", "y", None)], image)
    assert (TOPIC_RESOURCE, "a") not in image.configs


def test_producer_ids_only_move_forward() -> None:
    image = build([producer_ids_record(1, 0, 1000)])
    assert image.next_producer_id == 1000
    with pytest.raises(MetadataReplayError, match="back"):
        replay_all(image, [producer_ids_record(1, 0, 1000)])


def test_image_is_immutable() -> None:
    image = build(cluster_records())
    with pytest.raises(TypeError):
        image.topics["x"] = image.topics["a"]  # type: ignore[index]
    with pytest.raises(TypeError):
        image.topics["a"].partitions[9] = image.partition("a", 0)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.offset = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.brokers[1].fenced = False  # type: ignore[misc]


def test_structural_sharing() -> None:
    image = build(cluster_records() + [config_record(TOPIC_RESOURCE, "b", "x", "1")])
    new = build([partition_change_record(T1, 0, isr=[1])], image)
    assert new.topics["b"] is image.topics["b"]  # untouched topic reused
    assert new.topics["a"] is not image.topics["a"]
    assert new.topics["a"].partitions[1] is image.topics["a"].partitions[1]
    assert new.brokers is image.brokers and new.configs is image.configs
    # A record that touches nothing but the offset shares every mapping.
    same = build([no_op_record()], new)
    assert same.offset == new.offset + 1
    assert same.topics is new.topics and same.topics_by_id is new.topics_by_id
    assert same.brokers is new.brokers
    # The base image is unchanged by building a successor.
    assert image.partition("a", 0).isr == (1, 2)


def test_local_changes_leader_follower_deleted() -> None:
    image = build(cluster_records())
    # From scratch a broker learns everything it hosts.
    initial = replay_all(MetadataImage.EMPTY, cluster_records()).local_changes(1)
    assert set(initial.leaders) == {("a", 0)}
    assert set(initial.followers) == {("b", 0)}
    assert initial.deleted == set()
    assert initial.topic_ids == {"a": T1, "b": T2}

    delta = replay_all(
        image,
        [
            partition_change_record(T1, 0, leader=2, isr=[2]),  # 1 now follows a-0
            partition_change_record(T1, 1, replicas=[2, 1], isr=[2, 1]),  # 1 now follows a-1
            remove_topic_record(T2),  # b deleted: 1 and 3 delete b-0
        ],
    )
    changes = delta.local_changes(1)
    assert changes.leaders == {}
    assert set(changes.followers) == {("a", 0), ("a", 1)}
    assert changes.followers[("a", 0)].leader == 2
    assert changes.deleted == {("b", 0)}

    changes3 = delta.local_changes(3)
    assert changes3.deleted == {("a", 1), ("b", 0)}  # 3 was removed from a-1's replicas
    assert changes3.leaders == {} and changes3.followers == {}

    changes2 = delta.local_changes(2)
    assert set(changes2.leaders) == {("a", 0), ("a", 1)}
    assert changes2.deleted == set()


def test_delta_reports_what_changed() -> None:
    image = build(cluster_records())
    delta = replay_all(
        image,
        [
            unfence_broker_record(2, 1),
            partition_change_record(T1, 0, isr=[1]),
            remove_topic_record(T2),
            config_record(TOPIC_RESOURCE, "a", "x", "1"),
        ],
    )
    assert delta.changed_broker_ids() == {2}
    assert delta.changed_topic_ids() == {T1}
    assert set(delta.removed_topics()) == {T2}
    assert delta.changed_config_resources() == {(TOPIC_RESOURCE, "a"), (TOPIC_RESOURCE, "b")}
    assert delta.topic_id("a") == T1 and delta.topic_id("b") is None
    assert delta.broker(2) is not None and not delta.broker(2).fenced


def test_loader_publishes_and_skips_already_applied() -> None:
    loader = MetadataLoader()
    seen: list[tuple[int, int]] = []
    loader.register(lambda delta, image: seen.append((delta.image.offset, image.offset)))
    records = cluster_records()
    image = loader.handle_commit(list(enumerate(records)))
    assert loader.image is image and image.offset == len(records) - 1
    assert seen == [(-1, 7)]
    # Re-delivery of committed records changes nothing and publishes nothing.
    assert loader.handle_commit([(5, records[5]), (7, records[7])]) is image
    assert seen == [(-1, 7)]
    loader.handle_commit([(7, records[7]), (8, no_op_record())])
    assert seen == [(-1, 7), (7, 8)]


def test_loader_listener_failure_does_not_starve_others() -> None:
    loader = MetadataLoader()
    seen: list[int] = []

    def broken(delta: MetadataDelta, image: MetadataImage) -> None:
        raise RuntimeError("boom")

    loader.register(broken)
    loader.register(lambda delta, image: seen.append(image.offset))
    with pytest.raises(MetadataListenerError, match="boom") as raised:
        loader.handle_commit([(0, no_op_record())])
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert seen == [0] and loader.image.offset == 0
    loader.unregister(broken)
    loader.handle_commit([(1, no_op_record())])
    assert seen == [0, 1]

"""Random operation sequences: named invariants hold after every committed operation.

Operations run through the pure controller functions; every record batch is replayed like the
log would, and brokers follow along through `local_changes` only.
"""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.controller.metadata import (
    MetadataDelta,
    MetadataImage,
    MetadataRecord,
    decode_record,
    encode_record,
)
from odradek.controller.metadata.requests import (
    AlterPartitionItem,
    CreatePartitionsSpec,
    CreateTopicSpec,
    DeleteTopicSpec,
    ReassignmentRequest,
    RegisterBrokerRequest,
)
from odradek.controller.quorum.brokers import fence_broker, register_broker, unfence_broker
from odradek.controller.quorum.partitions import alter_partition
from odradek.controller.quorum.reassignment import alter_partition_reassignments
from odradek.controller.quorum.topics import create_partitions, create_topics, delete_topics
from tests.unit.controller.quorum.mdtest_helpers import SETTINGS, cluster, commit, rng

BROKERS = (1, 2, 3, 4)
NAMES = ("a", "b", "c")

ops = st.one_of(
    st.tuples(
        st.just("create"),
        st.sampled_from(NAMES),
        st.integers(1, 4),
        st.integers(1, 3),
        st.booleans(),
    ),
    st.tuples(st.just("delete"), st.sampled_from(NAMES)),
    st.tuples(st.just("grow"), st.sampled_from(NAMES), st.integers(1, 3)),
    st.tuples(st.just("fence"), st.sampled_from(BROKERS)),
    st.tuples(st.just("unfence"), st.sampled_from(BROKERS)),
    st.tuples(st.just("restart"), st.sampled_from(BROKERS)),
    st.tuples(
        st.just("isr"), st.sampled_from(NAMES), st.integers(0, 3), st.sets(st.sampled_from(BROKERS))
    ),
    # A reassignment to these brokers, in this order (cut to the partition's replication
    # factor), or a cancel (None).
    st.tuples(st.just("reassign"), st.sampled_from(NAMES), st.integers(0, 3),
              st.one_of(st.none(), st.permutations(BROKERS))),
)


def run_op(image: MetadataImage, op: tuple, seed: int) -> tuple[MetadataRecord, ...]:
    kind = op[0]
    if kind == "create":
        _, name, partitions, rf, unclean = op
        configs = {"unclean.leader.election.enable": "true"} if unclean else {}
        spec = CreateTopicSpec(name, partitions, rf, configs=configs)
        return create_topics(image, [spec], settings=SETTINGS, rng=rng(seed)).records
    if kind == "delete":
        return delete_topics(image, [DeleteTopicSpec(name=op[1])]).records
    if kind == "grow":
        topic = image.topics.get(op[1])
        count = (len(topic.partitions) if topic else 0) + op[2]
        spec = CreatePartitionsSpec(op[1], count)
        return create_partitions(image, [spec], settings=SETTINGS, rng=rng(seed)).records
    if kind == "fence":
        return fence_broker(image, op[1]).records
    if kind == "unfence":
        return unfence_broker(image, op[1]).records
    if kind == "restart":
        broker = image.brokers[op[1]]
        request = RegisterBrokerRequest(op[1], str(uuid.UUID(int=seed)), broker.listeners)
        return register_broker(image, request).records
    if kind == "reassign":
        _, name, partition_id, order = op
        partition = image.partition(name, partition_id)
        if partition is None:
            return ()
        target = None if order is None else tuple(order[:len(partition.target_replicas)])
        return alter_partition_reassignments(
            image, [ReassignmentRequest(name, partition_id, target)]).records
    _, name, partition_id, members = op
    partition = image.partition(name, partition_id)
    if partition is None or not partition.has_leader:
        return ()
    leader = partition.leader
    new_isr = [b for b in partition.replicas if b in members or b == leader]
    item = AlterPartitionItem(
        image.topics[name].topic_id,
        partition_id,
        partition.leader_epoch,
        partition.partition_epoch,
        new_isr,
    )
    return alter_partition(image, leader, image.brokers[leader].epoch, [item]).records


def check_invariants(before: MetadataImage, after: MetadataImage) -> None:
    assert set(after.topics_by_id) == {t.topic_id for t in after.topics.values()}
    for topic in after.topics.values():
        assert after.topics_by_id[topic.topic_id] is topic
        assert sorted(topic.partitions) == list(range(len(topic.partitions)))
        old_topic = before.topics_by_id.get(topic.topic_id)
        for partition_id, p in topic.partitions.items():
            where = f"{topic.name}-{partition_id} {p}"
            assert len(set(p.replicas)) == len(p.replicas), where
            assert len(p.target_replicas) == topic.replication_factor, where
            # A reassignment: the target first, then the replicas it removes; what it adds
            # is in the target; nothing is both.
            assert p.replicas == p.target_replicas + p.removing, where
            assert set(p.adding) <= set(p.target_replicas), where
            assert not set(p.adding) & set(p.removing), where
            assert p.isr and set(p.isr) <= set(p.replicas), where
            if p.has_leader:
                assert p.leader in p.isr, where
                assert after.is_unfenced(p.leader), where
            else:
                # Elections prefer in-sync replicas, clean or not: a leaderless partition
                # has no live ISR member.
                assert not any(after.is_unfenced(b) for b in p.isr), where
            old = old_topic.partitions.get(partition_id) if old_topic else None
            if old is not None:
                assert p.leader_epoch >= old.leader_epoch, where
                assert p.partition_epoch >= old.partition_epoch, where
                if p.leader != old.leader:
                    assert p.leader_epoch > old.leader_epoch, where
    assert after.next_producer_id >= before.next_producer_id


def hosted(image: MetadataImage, broker_id: int) -> dict[tuple[str, int], str]:
    return {
        (topic.name, partition_id): ("leader" if p.leader == broker_id else "follower")
        for topic in image.topics.values()
        for partition_id, p in topic.partitions.items()
        if broker_id in p.replicas
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(ops, max_size=30))
def test_random_operations_keep_invariants(sequence: list[tuple]) -> None:
    start = cluster(len(BROKERS))
    image = start
    log: list[MetadataRecord] = []
    # What each broker believes it hosts, learnt only from local_changes.
    views: dict[int, dict[tuple[str, int], str]] = {b: {} for b in BROKERS}
    for step, op in enumerate(sequence):
        records = run_op(image, op, seed=step + 1)
        for record in records:
            assert decode_record(encode_record(record)) == record
        delta = MetadataDelta(image)
        for record in records:
            delta.replay(record, delta.offset + 1)
        after = delta.apply()
        check_invariants(image, after)
        for broker_id, view in views.items():
            changes = delta.local_changes(broker_id)
            for key in changes.deleted:
                view.pop(key, None)
            view.update(dict.fromkeys(changes.leaders, "leader"))
            view.update(dict.fromkeys(changes.followers, "follower"))
        log.extend(records)
        image = after

    for broker_id, view in views.items():
        assert view == hosted(image, broker_id), broker_id
    # Replaying the whole log in one delta gives the image built step by step.
    assert commit(start, log) == image

"""Metadata snapshots: image -> records -> image, and image-to-image differences."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.controller.metadata import MetadataImage, MetadataLoader
from odradek.controller.metadata.diff import SnapshotError, diff_records, image_to_records, replay
from odradek.controller.metadata.records import register_broker_record, topic_record
from odradek.controller.raft_runtime.snapshot import decode_snapshot_data, encode_snapshot_data
from tests.unit.controller.raft_runtime.rt_images import commit, random_log


def _check_offsets(pairs, base: MetadataImage, target: MetadataImage) -> None:
    offsets = [o for o, _ in pairs]
    assert offsets == sorted(set(offsets)), "offsets must strictly increase"
    if target.offset > base.offset:
        assert offsets[0] > base.offset and offsets[-1] == target.offset


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 80))
def test_image_round_trips_through_records(seed: int, batches: int) -> None:
    images = [image for _, image in random_log(random.Random(seed), batches)]
    image = images[-1]
    pairs = image_to_records(image)
    _check_offsets(pairs, MetadataImage.EMPTY, image)
    rebuilt = replay(pairs)
    assert rebuilt == image
    # Broker epochs are offsets: they must survive exactly.
    assert {b.id: b.epoch for b in rebuilt.brokers.values()} == {
        b.id: b.epoch for b in image.brokers.values()}
    # And through the bytes stored in the Raft snapshot, into a fresh loader.
    data = decode_snapshot_data(encode_snapshot_data(image))
    assert data.last_offset == image.offset
    loader = MetadataLoader()
    loader.handle_commit(data.decoded())
    assert loader.image == image


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 80), st.data())
def test_diff_moves_an_earlier_image_to_a_later_one(seed: int, batches: int,
                                                    data: st.DataObject) -> None:
    images = [MetadataImage.EMPTY] + [i for _, i in random_log(random.Random(seed), batches)]
    lo = data.draw(st.integers(0, len(images) - 1))
    hi = data.draw(st.integers(lo, len(images) - 1))
    base, target = images[lo], images[hi]
    pairs = diff_records(base, target)
    _check_offsets(pairs, base, target)
    assert replay(pairs, base) == target
    # The loader path a follower takes when it installs a snapshot over its image.
    loader = MetadataLoader(base)
    seen = []
    loader.register(lambda delta, image: seen.append(delta))
    loader.handle_commit(pairs)
    assert loader.image == target
    assert len(seen) == (1 if target.offset > base.offset else 0)


def test_diff_reports_deleted_and_changed_partitions_to_listeners() -> None:
    tid = uuid.UUID(int=1)
    from odradek.controller.metadata.records import partition_record, remove_topic_record

    base = commit(MetadataImage.EMPTY, [
        register_broker_record(1, str(uuid.UUID(int=9)), [("PLAINTEXT", "h", 1)], None, False),
        topic_record("t", tid), partition_record(tid, 0, [1], [1], 1)])
    target = commit(base, [remove_topic_record(tid)])
    loader = MetadataLoader(base)
    changes = []
    loader.register(lambda delta, image: changes.append(delta.local_changes(1)))
    loader.handle_commit(diff_records(base, target))
    assert changes[0].deleted == {("t", 0)}


def test_empty_and_noop_only_images() -> None:
    assert image_to_records(MetadataImage.EMPTY) == []
    data = decode_snapshot_data(encode_snapshot_data(MetadataImage.EMPTY))
    assert data.last_offset == -1 and data.records == ()
    from odradek.controller.metadata.records import no_op_record

    only_noops = commit(MetadataImage.EMPTY, [no_op_record()] * 5)
    pairs = image_to_records(only_noops)
    assert [o for o, _ in pairs] == [4]
    assert replay(pairs) == only_noops


def test_impossible_images_are_refused() -> None:
    image = commit(MetadataImage.EMPTY, [topic_record("t", uuid.UUID(int=5))])
    with pytest.raises(SnapshotError):
        diff_records(image, MetadataImage.EMPTY)  # backwards
    crowded = MetadataImage(offset=0, brokers={}, topics=dict(image.topics),
                            topics_by_id=dict(image.topics_by_id), configs={},
                            next_producer_id=7)
    with pytest.raises(SnapshotError, match="do not fit"):
        image_to_records(crowded)  # two records' worth of state at one offset


@pytest.mark.parametrize("damage", [
    lambda b: b"XXXXXXXX" + b[8:],
    lambda b: b[:-1],
    lambda b: b + b"\0",
])
def test_damaged_snapshot_data_is_refused(damage) -> None:
    image = [i for _, i in random_log(random.Random(3), 30)][-1]
    with pytest.raises(SnapshotError):
        decode_snapshot_data(damage(encode_snapshot_data(image)))


def test_eligible_leader_replicas_survive_a_snapshot() -> None:
    from odradek.controller.metadata.records import partition_change_record, partition_record

    tid = uuid.UUID(int=3)
    image = commit(MetadataImage.EMPTY, [
        topic_record("t", tid), partition_record(tid, 0, [1, 2, 3], [1, 2, 3], 1),
        partition_change_record(tid, 0, isr=[1], elr=[2, 3]),
        partition_change_record(tid, 0, isr=[], leader=-1, elr=[3])])
    assert image.partition("t", 0).elr == (3,)
    rebuilt = replay(decode_snapshot_data(encode_snapshot_data(image)).decoded())
    assert rebuilt == image and rebuilt.partition("t", 0).elr == (3,)
    # An ELR-only change is a difference a follower installing the snapshot must see.
    later = commit(image, [partition_change_record(tid, 0, elr=[])])
    assert replay(diff_records(image, later), image) == later

"""Preferred leader election (auto.leader.rebalance.enable)."""

from __future__ import annotations

import uuid

from odradek.controller.metadata import MetadataDelta, MetadataImage
from odradek.controller.metadata.records import (
    partition_record,
    register_broker_record,
    topic_record,
    unfence_broker_record,
)
from odradek.controller.metadata.requests import ElectionType
from odradek.controller.quorum.election import elect_leaders, elect_preferred_leaders


def image_with(leader: int, isr: tuple[int, ...], fenced: set[int] = frozenset()) -> MetadataImage:
    delta = MetadataDelta(MetadataImage.EMPTY)
    offset = 0
    for b in (1, 2, 3):
        offset += 1
        delta.replay(register_broker_record(b, str(uuid.uuid4()), [("PLAINTEXT", "h", 9000 + b)],
                                            None, fenced=True), offset)
        if b not in fenced:
            offset += 1
            delta.replay(unfence_broker_record(b, offset - 1), offset)
    tid = uuid.uuid4()
    offset += 1
    delta.replay(topic_record("t", tid), offset)
    offset += 1
    delta.replay(partition_record(tid, 0, replicas=(1, 2, 3), isr=isr, leader=leader,
                                  leader_epoch=3, partition_epoch=5), offset)
    return delta.apply()


def apply(image: MetadataImage, records: list) -> MetadataImage:
    delta = MetadataDelta(image)
    for i, r in enumerate(records):
        delta.replay(r, image.offset + 1 + i)
    return delta.apply()


def test_preferred_replica_in_isr_gets_leadership_back() -> None:
    image = image_with(leader=2, isr=(1, 2, 3))
    records = elect_preferred_leaders(image)
    assert len(records) == 1
    after = apply(image, records).partition("t", 0)
    assert after is not None and after.leader == 1 and after.leader_epoch == 4


def test_no_move_when_preferred_is_out_of_sync_fenced_or_already_leading() -> None:
    assert elect_preferred_leaders(image_with(leader=2, isr=(2, 3))) == []
    assert elect_preferred_leaders(image_with(leader=2, isr=(1, 2, 3), fenced={1})) == []
    assert elect_preferred_leaders(image_with(leader=1, isr=(1, 2, 3))) == []


# --- ElectLeaders (the Kafka API) --------------------------------------------------------


def test_elect_leaders_preferred_answers_per_partition() -> None:
    image = image_with(leader=2, isr=(1, 2, 3))
    records, results = elect_leaders(image, ElectionType.PREFERRED, [("t", 0), ("t", 7),
                                                                     ("nope", 0)])
    assert [(r.topic, r.partition, r.error_code) for r in results] == [
        ("t", 0, 0), ("t", 7, 3), ("nope", 0, 3)]
    after = apply(image, records).partition("t", 0)
    assert after is not None and after.leader == 1
    # Already led by its preferred replica: not needed; out of the ISR: not available.
    _, [done] = elect_leaders(image_with(leader=1, isr=(1, 2, 3)), ElectionType.PREFERRED,
                              [("t", 0)])
    assert done.error_code == 84
    _, [unavailable] = elect_leaders(image_with(leader=2, isr=(2, 3)),
                                     ElectionType.PREFERRED, [("t", 0)])
    assert unavailable.error_code == 80 and "not in the ISR" in (unavailable.error_message or "")


def test_elect_leaders_for_every_partition_reports_only_elections_that_were_needed() -> None:
    records, results = elect_leaders(image_with(leader=1, isr=(1, 2, 3)),
                                     ElectionType.PREFERRED, None)
    assert (records, results) == ([], [])
    records, results = elect_leaders(image_with(leader=2, isr=(1, 2, 3)),
                                     ElectionType.PREFERRED, None)
    assert len(records) == 1 and [(r.topic, r.error_code) for r in results] == [("t", 0)]


def test_unclean_election_takes_a_live_replica_outside_the_isr() -> None:
    # The only ISR member (1) is fenced: no clean leader; replica 2 is live.
    image = image_with(leader=-1, isr=(1,), fenced={1})
    records, [result] = elect_leaders(image, ElectionType.UNCLEAN, [("t", 0)])
    assert result.error_code == 0
    after = apply(image, records).partition("t", 0)
    assert after is not None and after.leader == 2 and after.isr == (2,)
    # With a leader it is not needed; with no live replica at all it is not possible.
    _, [led] = elect_leaders(image_with(leader=2, isr=(2, 3)), ElectionType.UNCLEAN,
                             [("t", 0)])
    assert led.error_code == 84
    _, [none] = elect_leaders(image_with(leader=-1, isr=(1,), fenced={1, 2, 3}),
                              ElectionType.UNCLEAN, [("t", 0)])
    assert none.error_code == 83

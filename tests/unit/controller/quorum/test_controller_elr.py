"""Eligible leader replicas (KIP-966): the ELR follows ISR changes, elections use it, and a
broker restarting after an unclean shutdown stops counting as a holder of committed records."""

from __future__ import annotations

import uuid

import pytest

from odradek.controller.metadata import MetadataImage, PartitionRegistration
from odradek.controller.metadata.image import TOPIC_RESOURCE, Listener
from odradek.controller.metadata.records import (
    decode_record,
    encode_record,
    partition_change_record,
    partition_record,
    topic_record,
)
from odradek.controller.metadata.requests import (
    AlterConfigOp,
    IncrementalAlterConfigsResource,
    RegisterBrokerRequest,
)
from odradek.controller.quorum.brokers import (
    fence_broker,
    register_broker,
    unfence_broker,
    unregister_broker,
)
from odradek.controller.quorum.configs import incremental_alter_configs
from odradek.controller.quorum.election import elect_leader, next_elr
from tests.unit.controller.quorum.mdtest_helpers import (
    applied,
    cluster,
    commit,
    part,
    set_isr,
    with_topic,
)

LISTENERS = (Listener("PLAINTEXT", "h", 9092),)
MIN_ISR_2 = {"min.insync.replicas": "2"}


def restart(image: MetadataImage, broker_id: int, *, clean: bool) -> MetadataImage:
    """A new process of a fenced broker registers (it stays fenced until unfenced)."""
    request = RegisterBrokerRequest(broker_id, str(uuid.uuid4()), LISTENERS, None, clean)
    image, res = applied(image, register_broker(image, request))
    assert res.error_code == 0, res
    return image


def fence(image: MetadataImage, *brokers: int) -> MetadataImage:
    for b in brokers:
        image, res = applied(image, fence_broker(image, b))
        assert res.error_code == 0
    return image


def unfence(image: MetadataImage, *brokers: int) -> MetadataImage:
    for b in brokers:
        image, res = applied(image, unfence_broker(image, b))
        assert res.error_code == 0
    return image


def state(image: MetadataImage) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    p = part(image)
    return p.leader, p.isr, p.elr


def last_replica_standing() -> MetadataImage:
    """RF 3, min ISR 2: 3 then 2 leave (2 while the ISR goes below min ISR), then the last
    ISR member 1 goes down too. 2 holds every acknowledged record, 1 may hold more."""
    image = with_topic(cluster(3), [1, 2, 3], MIN_ISR_2)
    image = fence(image, 3)
    assert state(image) == (1, (1, 2), ())
    image = fence(image, 2)
    assert state(image) == (1, (1,), (2,))
    image = fence(image, 1)
    assert state(image) == (-1, (1,), (2,))
    return image


# ----- the ELR follows the ISR -----


def test_shrinking_below_min_isr_moves_the_removed_replicas_to_the_elr() -> None:
    image = with_topic(cluster(3), [1, 2, 3], MIN_ISR_2)
    image = set_isr(image, [1, 2])  # still at min ISR: the HW may move on without 3
    assert state(image) == (1, (1, 2), ())
    image = set_isr(image, [1])
    assert state(image) == (1, (1,), (2,))
    assert part(image).partition_epoch == 2 and part(image).leader_epoch == 0


def test_shrinking_two_at_once_makes_both_eligible() -> None:
    image = with_topic(cluster(3), [1, 2, 3], MIN_ISR_2)
    image = set_isr(image, [1])
    assert state(image) == (1, (1,), (2, 3))


def test_expanding_back_to_min_isr_clears_the_elr() -> None:
    image = with_topic(cluster(3), [1, 2, 3], MIN_ISR_2)
    image = set_isr(image, [1])
    image = set_isr(image, [1, 3])
    assert state(image) == (1, (1, 3), ())


def test_a_replica_rejoining_below_min_isr_leaves_the_elr() -> None:
    image = with_topic(cluster(4), [1, 2, 3, 4], {"min.insync.replicas": "4"})
    image = set_isr(image, [1, 2])
    assert state(image) == (1, (1, 2), (3, 4))
    image = set_isr(image, [1, 2, 4])
    assert state(image) == (1, (1, 2, 4), (3,))


def test_with_the_default_min_isr_the_elr_stays_empty() -> None:
    image = with_topic(cluster(3), [1, 2, 3])
    image = set_isr(image, [1])
    image = fence(image, 1)
    assert state(image) == (-1, (1,), ())


def test_fencing_below_min_isr_fills_the_elr() -> None:
    last_replica_standing()


def test_next_elr_rules() -> None:
    reps = (1, 2, 3)
    assert next_elr(reps, (1, 2, 3), (1,), (), 2) == (2, 3)
    assert next_elr(reps, (1, 2), (1,), (3,), 2) == (2, 3)
    assert next_elr(reps, (1,), (1, 2), (2, 3), 2) == ()
    assert next_elr(reps, (1,), (1, 3), (2, 3), 3) == (2,)
    assert next_elr(reps, (1,), (), (2,), 2, ineligible=(1,)) == (2,)
    assert next_elr(reps, (1,), (), (2,), 2, ineligible=(2,)) == (1,)


# ----- elections -----


def test_elect_leader_falls_back_to_the_elr_before_unclean() -> None:
    def usable(b: int) -> bool:
        return b != 1

    assert elect_leader((1, 2, 3), (1,), -1, usable, False, elr=(3, 2)) == (2, (2,))
    assert elect_leader((1, 2, 3), (1,), -1, usable, True, elr=(2,)) == (2, (2,))
    assert elect_leader((1, 2, 3), (1,), -1, lambda b: b == 3, False, elr=(2,)) == (-1, (1,))
    assert elect_leader((1, 2, 3), (1,), -1, lambda b: b == 3, True, elr=(2,)) == (3, (3,))


def test_an_elr_member_leads_when_no_isr_member_can() -> None:
    image = last_replica_standing()
    image = unfence(image, 2)
    # 1 held every committed record too: it becomes eligible in its turn.
    assert state(image) == (2, (2,), (1,))
    assert part(image).leader_epoch == 2


def test_fencing_the_last_isr_member_hands_over_to_a_live_elr_member() -> None:
    image = with_topic(cluster(3), [1, 2, 3], MIN_ISR_2)
    image = set_isr(image, [1])  # 2 and 3 lag but live
    image = fence(image, 1)
    assert state(image) == (2, (2,), (1, 3))


def test_a_fenced_elr_member_keeps_its_place() -> None:
    image = with_topic(cluster(3), [1, 2, 3], MIN_ISR_2)
    image = set_isr(image, [1])
    image = fence(image, 2)
    assert state(image) == (1, (1,), (2, 3))


def test_unclean_election_still_needs_the_topic_config() -> None:
    configs = {**MIN_ISR_2, "unclean.leader.election.enable": "true"}
    image = with_topic(cluster(3), [1, 2, 3], configs)
    image = fence(image, 3, 2, 1)
    assert state(image) == (-1, (1,), (2,))
    # 3 is live but in neither the ISR nor the ELR: only the config lets it lead, and the
    # ELR goes, since the new leader's log is the truth now.
    image = unfence(image, 3)
    assert state(image) == (3, (3,), ())


def test_unclean_election_is_not_used_while_an_elr_member_can_lead() -> None:
    configs = {**MIN_ISR_2, "unclean.leader.election.enable": "true"}
    image = with_topic(cluster(3), [1, 2, 3], configs)
    image = set_isr(image, [1, 2])
    image = fence(image, 2)
    image = unfence(image, 2)  # 2 is back, still eligible, not yet caught up
    assert state(image) == (1, (1,), (2,))
    image = fence(image, 1)
    assert state(image) == (2, (2,), (1,))


def test_without_unclean_election_an_outsider_does_not_lead() -> None:
    image = last_replica_standing()
    image = unfence(image, 3)
    assert state(image) == (-1, (1,), (2,))


# ----- registration after an unclean shutdown -----


def test_unclean_restart_of_the_last_isr_member_lets_the_elr_member_lead() -> None:
    image = last_replica_standing()
    image = restart(image, 1, clean=False)
    assert state(image) == (-1, (), (2,))
    # 1 is back first: it must not lead, it may have lost acknowledged records.
    image = unfence(image, 1)
    assert state(image) == (-1, (), (2,))
    image = restart(image, 2, clean=True)
    image = unfence(image, 2)
    assert state(image) == (2, (2,), ())
    # 1 catches up from 2 and rejoins: the ISR is at min ISR again.
    image = set_isr(image, [1, 2])
    assert state(image) == (2, (1, 2), ())


def test_unclean_restart_when_the_elr_member_is_already_live() -> None:
    image = last_replica_standing()
    image = unfence(image, 2)
    assert state(image) == (2, (2,), (1,))
    image = restart(image, 1, clean=False)
    assert state(image) == (2, (2,), ())


def test_clean_restart_keeps_the_last_isr_member() -> None:
    image = last_replica_standing()
    image = restart(image, 1, clean=True)
    assert state(image) == (-1, (1,), (2,))
    image = unfence(image, 1)
    assert state(image) == (1, (1,), (2,))


def test_unclean_restart_removes_the_broker_from_the_elr() -> None:
    image = last_replica_standing()
    image = restart(image, 2, clean=False)
    assert state(image) == (-1, (1,), ())
    # 1 is then the only replica known to hold the committed records; a clean restart of it
    # leads as before.
    image = restart(image, 1, clean=True)
    image = unfence(image, 1)
    assert state(image) == (1, (1,), ())


def test_the_only_candidate_stays_even_after_an_unclean_restart() -> None:
    # RF 1: nobody else could hold more; removing it would leave the partition leaderless
    # for good.
    image = with_topic(cluster(1), [1])
    image = fence(image, 1)
    image = restart(image, 1, clean=False)
    assert state(image) == (-1, (1,), ())
    image = unfence(image, 1)
    assert state(image) == (1, (1,), ())
    # ISR empty, the ELR member last: it stays too.
    image = last_replica_standing()
    image = restart(image, 1, clean=False)
    image = restart(image, 2, clean=False)
    assert state(image) == (-1, (), (2,))
    image = unfence(image, 2)
    assert state(image) == (2, (2,), ())


def test_a_live_process_registering_again_is_not_a_restart() -> None:
    image = with_topic(cluster(2), [1, 2], MIN_ISR_2)
    image = set_isr(image, [1])  # ELR [2]
    same = image.brokers[2]
    request = RegisterBrokerRequest(2, same.incarnation_id, (Listener("PLAINTEXT", "new", 1),),
                                    None, previous_shutdown_clean=False)
    image, res = applied(image, register_broker(image, request))
    assert res.error_code == 0
    assert state(image) == (1, (1,), (2,))


def test_clean_is_the_default_for_callers_that_do_not_say() -> None:
    assert RegisterBrokerRequest(1, str(uuid.uuid4()), LISTENERS).previous_shutdown_clean


# ----- other operations -----


def test_unregistering_removes_the_broker_from_the_elr() -> None:
    image = with_topic(cluster(3), [1, 2, 3], MIN_ISR_2)
    image = set_isr(image, [1])
    image, res = applied(image, unregister_broker(image, 3))
    assert res.error_code == 0
    assert state(image) == (1, (1,), (2,))


@pytest.mark.parametrize(
    ("value", "elr"),
    [("1", ()), (None, ()), ("3", (2, 3))],
    ids=["lowered", "deleted", "raised"],
)
def test_changing_min_isr_clears_the_elr_where_the_isr_reaches_it(
    value: str | None, elr: tuple[int, ...]
) -> None:
    image = with_topic(cluster(3), [1, 2, 3], MIN_ISR_2)
    image = set_isr(image, [1])
    op = AlterConfigOp("min.insync.replicas", 0 if value is not None else 1, value)
    result = incremental_alter_configs(
        image, [IncrementalAlterConfigsResource(TOPIC_RESOURCE, "t", [op])]
    )
    image, (res,) = applied(image, result)
    assert res.error_code == 0
    assert state(image) == (1, (1,), elr)


def test_validate_only_config_change_writes_nothing() -> None:
    image = with_topic(cluster(3), [1, 2, 3], MIN_ISR_2)
    image = set_isr(image, [1])
    op = AlterConfigOp("min.insync.replicas", 0, "1")
    result = incremental_alter_configs(
        image, [IncrementalAlterConfigsResource(TOPIC_RESOURCE, "t", [op])], validate_only=True
    )
    assert result.records == ()


# ----- records and replay -----


def test_replay_of_partition_records_with_an_elr() -> None:
    tid = uuid.UUID(int=7)
    image = commit(MetadataImage.EMPTY, [
        topic_record("t", tid),
        partition_record(tid, 0, [1, 2, 3], [1], 1, 4, 9, elr=[2, 3]),
    ])
    assert part(image) == PartitionRegistration((1, 2, 3), (1,), 1, 4, 9, (2, 3))
    # Absent: unchanged.
    image = commit(image, [partition_change_record(tid, 0, isr=[1, 3])])
    assert part(image) == PartitionRegistration((1, 2, 3), (1, 3), 1, 4, 10, (2, 3))
    # Present, even empty: replaced.
    image = commit(image, [partition_change_record(tid, 0, elr=[])])
    assert part(image) == PartitionRegistration((1, 2, 3), (1, 3), 1, 4, 11, ())
    image = commit(image, [partition_change_record(tid, 0, isr=[], leader=-1, elr=[3])])
    assert part(image) == PartitionRegistration((1, 2, 3), (), -1, 5, 12, (3,))


def test_elr_fields_survive_encoding() -> None:
    tid = uuid.UUID(int=7)
    record = partition_change_record(tid, 0, elr=[])
    decoded = decode_record(encode_record(record))
    assert decoded.partition_change.HasField("eligible_leader_replicas")
    assert list(decoded.partition_change.eligible_leader_replicas.broker_ids) == []
    assert not decode_record(encode_record(partition_change_record(tid, 0, isr=[1]))
                             ).partition_change.HasField("eligible_leader_replicas")
    full = decode_record(encode_record(partition_record(tid, 0, [1, 2], [1], 1, elr=[2])))
    assert list(full.partition.eligible_leader_replicas) == [2]

"""Partition reassignment (KIP-455) in the controller: the replica sets during a move, its
completion when the target is in sync, cancelling, the refusals, and that every step
survives a snapshot (the records carry the adding and removing replicas)."""

from __future__ import annotations

from collections.abc import Sequence

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataImage
from odradek.controller.metadata.diff import image_to_records, replay
from odradek.controller.metadata.requests import (
    ReassignmentRequest,
    ReassignmentResult,
)
from odradek.controller.quorum.brokers import fence_broker
from odradek.controller.quorum.reassignment import alter_partition_reassignments
from tests.unit.controller.quorum.mdtest_helpers import applied, cluster, part, set_isr, with_topic


def reassign(image: MetadataImage, replicas: Sequence[int] | None, *, topic: str = "t",
             partition: int = 0, allow_rf_change: bool = True
             ) -> tuple[MetadataImage, ReassignmentResult]:
    req = ReassignmentRequest(topic, partition, None if replicas is None else tuple(replicas))
    image, results = applied(image, alter_partition_reassignments(image, [req],
                                                                  allow_rf_change))
    (result,) = results
    return image, result


def survives_snapshot(image: MetadataImage) -> None:
    assert replay(image_to_records(image)).topics == image.topics


def test_a_move_adds_the_target_then_completes_when_it_is_in_sync() -> None:
    image = with_topic(cluster(4), [1, 2, 3])
    image, result = reassign(image, [2, 3, 4])
    assert result.error_code == ErrorCode.none
    p = part(image)
    assert (p.replicas, p.adding, p.removing) == ((2, 3, 4, 1), (4,), (1,))
    assert p.isr == (1, 2, 3) and p.leader == 1  # nothing moves before 4 has caught up
    assert p.target_replicas == (2, 3, 4) and p.original_replicas == (2, 3, 1)
    survives_snapshot(image)

    # The leader (1, being removed) adds 4 to the ISR: the move completes in that change,
    # 1 leaves replicas and ISR, and a target replica leads.
    image = set_isr(image, [1, 2, 3, 4])
    p = part(image)
    assert (p.replicas, p.adding, p.removing) == ((2, 3, 4), (), ())
    assert p.isr == (2, 3, 4)
    assert p.leader == 2
    assert not p.reassigning
    survives_snapshot(image)


def test_completion_waits_for_every_target_replica_not_only_the_added_ones() -> None:
    image = with_topic(cluster(4), [1, 2, 3])
    image = set_isr(image, [1, 2])  # 3 fell behind
    image, _ = reassign(image, [2, 3, 4])
    image = set_isr(image, [1, 2, 4])
    assert part(image).reassigning  # 3 is in the target and not in sync
    image = set_isr(image, [1, 2, 3, 4])
    assert part(image).replicas == (2, 3, 4) and not part(image).reassigning


def test_removing_replicas_only_completes_at_once() -> None:
    image = with_topic(cluster(3), [1, 2, 3])
    image, result = reassign(image, [2, 3])
    assert result.error_code == ErrorCode.none
    p = part(image)
    assert (p.replicas, p.isr, p.leader, p.reassigning) == ((2, 3), (2, 3), 2, False)


def test_a_reorder_changes_the_preferred_leader_only() -> None:
    image = with_topic(cluster(3), [1, 2, 3])
    image, _ = reassign(image, [3, 1, 2])
    p = part(image)
    assert (p.replicas, p.isr, p.leader, p.reassigning) == ((3, 1, 2), (1, 2, 3), 1, False)


def test_the_same_replicas_write_nothing() -> None:
    image = with_topic(cluster(3), [1, 2, 3])
    result = alter_partition_reassignments(image, [ReassignmentRequest("t", 0, (1, 2, 3))])
    assert result.records == () and result.response[0].error_code == ErrorCode.none


def test_cancel_goes_back_to_the_replicas_without_the_added_ones() -> None:
    image = with_topic(cluster(5), [1, 2, 3])
    image, _ = reassign(image, [4, 5, 3])
    image, result = reassign(image, None)
    assert result.error_code == ErrorCode.none
    p = part(image)
    assert (p.replicas, p.isr, p.leader, p.reassigning) == ((3, 1, 2), (1, 2, 3), 1, False)


def test_cancel_drops_an_added_replica_from_the_isr_and_from_leadership() -> None:
    image = with_topic(cluster(5), [1, 2, 3])
    image, _ = reassign(image, [4, 5, 3])
    image = set_isr(image, [1, 2, 3, 4])  # 4 caught up, 5 not yet
    assert part(image).reassigning
    image, _ = reassign(image, None)
    p = part(image)
    assert p.replicas == (3, 1, 2) and p.isr == (1, 2, 3)


def test_cancel_needing_an_unclean_election_is_refused_unless_the_topic_allows_it() -> None:
    for unclean in (False, True):
        image = with_topic(cluster(3), [1],
                           {"unclean.leader.election.enable": str(unclean).lower()})
        image, _ = reassign(image, [2, 3])
        image = set_isr(image, [1, 2])  # 3 has not caught up: not complete
        image, _ = applied(image, fence_broker(image, 1))
        p = part(image)
        assert (p.isr, p.leader, p.adding) == ((2,), 2, (2, 3))
        # Going back to [1] leaves no in-sync replica: only 2 and 3, being added, hold data.
        after, result = reassign(image, None)
        if not unclean:
            assert result.error_code == ErrorCode.invalid_replica_assignment
            assert "would require an unclean leader election" in (result.error_message or "")
            assert after == image
        else:
            assert result.error_code == ErrorCode.none
            p = part(after)
            assert (p.replicas, p.isr, p.reassigning) == ((1,), (1,), False)
            assert p.leader == -1  # 1 is fenced


def test_cancel_without_a_reassignment_is_refused() -> None:
    image = with_topic(cluster(3), [1, 2, 3])
    _, result = reassign(image, None)
    assert result.error_code == ErrorCode.no_reassignment_in_progress
    assert "No partition reassignment is in progress" in (result.error_message or "")


def test_a_new_target_during_a_move_starts_from_the_current_replicas() -> None:
    image = with_topic(cluster(5), [1, 2, 3])
    image, _ = reassign(image, [2, 3, 4])
    image, _ = reassign(image, [2, 3, 5])
    p = part(image)
    # 4 was being added and is dropped: it is removed with 1; 5 is added.
    assert p.replicas == (2, 3, 5, 4, 1)
    assert set(p.removing) == {1, 4} and p.adding == (5,)
    image = set_isr(image, [1, 2, 3, 5])
    p = part(image)
    assert (p.replicas, p.isr, p.reassigning) == ((2, 3, 5), (2, 3, 5), False)


def test_a_replica_still_being_added_stays_adding_under_a_new_target() -> None:
    image = with_topic(cluster(5), [1, 2, 3])
    image, _ = reassign(image, [2, 3, 4])
    image, _ = reassign(image, [4, 2, 3])
    p = part(image)
    assert p.adding == (4,) and p.removing == (1,)


def test_refusals_name_the_problem() -> None:
    image = with_topic(cluster(3), [1, 2, 3])
    cases = [
        (ReassignmentRequest("t", 0, ()), ErrorCode.invalid_replica_assignment,
         "empty replica list"),
        (ReassignmentRequest("t", 0, (1, 1, 2)), ErrorCode.invalid_replica_assignment,
         "includes the broker 1 more than once"),
        (ReassignmentRequest("t", 0, (1, 2, 9)), ErrorCode.invalid_replica_assignment,
         "includes broker 9, but no such broker is registered"),
        (ReassignmentRequest("nope", 0, (1, 2)), ErrorCode.unknown_topic_or_partition,
         "Unable to find a topic named nope."),
        (ReassignmentRequest("t", 7, (1, 2)), ErrorCode.unknown_topic_or_partition,
         "Unable to find partition t:7."),
    ]
    for req, code, text in cases:
        result = alter_partition_reassignments(image, [req])
        assert result.records == ()
        assert result.response[0].error_code == code, req
        assert text in (result.response[0].error_message or ""), result.response[0]


def test_one_refused_partition_does_not_stop_the_others() -> None:
    image = with_topic(cluster(4), [1, 2, 3])
    result = alter_partition_reassignments(image, [
        ReassignmentRequest("t", 0, (2, 3, 4)), ReassignmentRequest("t", 0, (1, 2, 3)),
        ReassignmentRequest("t", 5, (1,))])
    assert [r.error_code for r in result.response] == [
        ErrorCode.none, ErrorCode.invalid_request, ErrorCode.unknown_topic_or_partition]
    assert len(result.records) == 1


def test_replication_factor_change_refused_when_not_allowed() -> None:
    image = with_topic(cluster(4), [1, 2, 3])
    _, result = reassign(image, [1, 2, 3, 4], allow_rf_change=False)
    assert result.error_code == ErrorCode.invalid_replication_factor
    assert result.error_message == "The replication factor is changed from 3 to 4"
    _, result = reassign(image, [2, 3, 4], allow_rf_change=False)
    assert result.error_code == ErrorCode.none


def test_a_fenced_removing_leader_hands_over_without_completing_early() -> None:
    image = with_topic(cluster(4), [1, 2, 3])
    image, _ = reassign(image, [2, 3, 4])
    image, _ = applied(image, fence_broker(image, 1))
    p = part(image)
    assert p.leader == 2 and p.isr == (2, 3) and p.reassigning
    image = set_isr(image, [2, 3, 4])
    p = part(image)
    assert (p.replicas, p.isr, p.leader, p.reassigning) == ((2, 3, 4), (2, 3, 4), 2, False)

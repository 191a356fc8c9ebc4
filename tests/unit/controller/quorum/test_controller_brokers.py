"""Broker registration, fencing with leader moves and ISR rules, producer ids, AlterPartition."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from odradek.controller.metadata import Listener, MetadataImage, PartitionRegistration
from odradek.controller.metadata.requests import (
    AlterPartitionItem,
    CreateTopicSpec,
    RegisterBrokerRequest,
)
from odradek.controller.quorum.brokers import (
    allocate_producer_ids,
    fence_broker,
    register_broker,
    unfence_broker,
    unregister_broker,
)
from odradek.controller.quorum.election import elect_leader
from odradek.controller.quorum.partitions import alter_partition
from odradek.controller.quorum.topics import create_topics
from tests.unit.controller.quorum.mdtest_helpers import SETTINGS, applied, cluster, rng

UNKNOWN_TOPIC_OR_PARTITION = 3
NOT_CONTROLLER = 41
INVALID_REQUEST = 42
FENCED_LEADER_EPOCH = 74
STALE_BROKER_EPOCH = 77
INVALID_UPDATE_VERSION = 95
UNKNOWN_TOPIC_ID = 100
DUPLICATE_BROKER_REGISTRATION = 101
BROKER_ID_NOT_REGISTERED = 102
INELIGIBLE_REPLICA = 107

INC = "6f1e9a0c-52b1-4c1b-9d6e-0e8f3b1c2d4a"
LISTENERS = (Listener("PLAINTEXT", "localhost", 9092),)


def with_topic(image: MetadataImage, assignments, configs=None) -> tuple[MetadataImage, uuid.UUID]:
    spec = CreateTopicSpec("t", assignments=assignments, configs=configs or {})
    result = create_topics(image, [spec], settings=SETTINGS, rng=rng())
    image, (res,) = applied(image, result)
    assert res.error_code == 0, res
    return image, res.topic_id


# ----- registration -----


def test_register_new_broker_is_fenced() -> None:
    result = register_broker(MetadataImage.EMPTY, RegisterBrokerRequest(1, INC, LISTENERS, "r1"))
    assert result.response.error_code == 0
    image, _ = applied(MetadataImage.EMPTY, result)
    broker = image.brokers[1]
    assert broker.fenced and broker.rack == "r1" and broker.listeners == LISTENERS
    assert broker.incarnation_id == INC and broker.epoch == 0


def test_register_retry_is_idempotent() -> None:
    image, _ = applied(MetadataImage.EMPTY, register_broker(MetadataImage.EMPTY, RegisterBrokerRequest(1, INC, LISTENERS)))
    again = register_broker(image, RegisterBrokerRequest(1, INC, LISTENERS))
    assert again.records == ()
    assert again.response.error_code == 0 and again.response.broker_epoch == image.brokers[1].epoch


def test_new_incarnation_refused_while_old_session_is_live() -> None:
    image = cluster(1)  # broker 1 unfenced
    other = str(uuid.uuid4())
    result = register_broker(image, RegisterBrokerRequest(1, other, LISTENERS))
    assert result.response.error_code == DUPLICATE_BROKER_REGISTRATION and result.records == ()
    # Once the old session is fenced, the restarted broker may register.
    image, _ = applied(image, fence_broker(image, 1))
    image, res = applied(image, register_broker(image, RegisterBrokerRequest(1, other, LISTENERS)))
    assert res.error_code == 0
    assert image.brokers[1].incarnation_id == other and image.brokers[1].fenced


def test_reregistering_a_live_broker_moves_its_leadership() -> None:
    image = cluster(2)
    image, _ = with_topic(image, {0: [1, 2]})
    current = image.brokers[1]
    request = RegisterBrokerRequest(1, current.incarnation_id, (Listener("PLAINTEXT", "new", 1),))
    image, res = applied(image, register_broker(image, request))
    assert res.error_code == 0 and image.brokers[1].fenced
    assert image.partition("t", 0).leader == 2 and image.partition("t", 0).isr == (2,)


@pytest.mark.parametrize(
    "request_",
    [
        RegisterBrokerRequest(-1, INC, LISTENERS),
        RegisterBrokerRequest(1, "not-a-uuid", LISTENERS),
        RegisterBrokerRequest(1, INC, LISTENERS + LISTENERS),
        RegisterBrokerRequest(1, INC, (Listener("X", "h", 70000),)),
    ],
)
def test_register_invalid(request_: RegisterBrokerRequest) -> None:
    result = register_broker(MetadataImage.EMPTY, request_)
    assert result.response.error_code == INVALID_REQUEST and result.records == ()


def test_fence_unfence_unknown_and_stale() -> None:
    image = cluster(1, fenced=[1])
    assert fence_broker(image, 9).response.error_code == BROKER_ID_NOT_REGISTERED
    assert unfence_broker(image, 9).response.error_code == BROKER_ID_NOT_REGISTERED
    assert unfence_broker(image, 1, broker_epoch=99).response.error_code == STALE_BROKER_EPOCH
    image, res = applied(image, unfence_broker(image, 1, image.brokers[1].epoch))
    assert res.error_code == 0 and not image.brokers[1].fenced
    # Repeated heartbeats change nothing.
    assert unfence_broker(image, 1).records == ()
    image, _ = applied(image, fence_broker(image, 1))
    assert fence_broker(image, 1).records == ()


# ----- fencing moves leadership, Kafka's ISR rules -----


def test_fencing_the_leader_elects_from_isr_in_replica_order() -> None:
    image, _ = with_topic(cluster(3), {0: [1, 2, 3]})
    image, res = applied(image, fence_broker(image, 1))
    assert res.error_code == 0
    assert image.partition("t", 0) == PartitionRegistration((1, 2, 3), (2, 3), 2, 1, 1)


def test_fencing_a_follower_shrinks_isr_keeps_leader_epoch() -> None:
    image, _ = with_topic(cluster(3), {0: [1, 2, 3]})
    image, _ = applied(image, fence_broker(image, 2))
    assert image.partition("t", 0) == PartitionRegistration((1, 2, 3), (1, 3), 1, 0, 1)


def test_fencing_skips_fenced_isr_members() -> None:
    image, _ = with_topic(cluster(3), {0: [1, 2, 3]})
    image, _ = applied(image, fence_broker(image, 2))
    image, _ = applied(image, fence_broker(image, 1))
    assert image.partition("t", 0).leader == 3 and image.partition("t", 0).isr == (3,)


def test_last_isr_member_stays_in_isr_and_partition_goes_leaderless() -> None:
    image, _ = with_topic(cluster(2), {0: [1, 2]})
    image, _ = applied(image, fence_broker(image, 2))
    image, _ = applied(image, fence_broker(image, 1))
    partition = image.partition("t", 0)
    assert partition.leader == -1 and partition.isr == (1,)
    # Broker 2 coming back is not in the ISR: no clean leader.
    image, _ = applied(image, unfence_broker(image, 2))
    assert image.partition("t", 0).leader == -1
    # The last ISR member returning takes leadership back.
    image, _ = applied(image, unfence_broker(image, 1))
    assert image.partition("t", 0).leader == 1 and image.partition("t", 0).isr == (1,)


def test_unclean_election_only_when_enabled_by_topic_config() -> None:
    configs = {"unclean.leader.election.enable": "true"}
    image, _ = with_topic(cluster(2), {0: [1, 2]}, configs)
    image, _ = applied(image, fence_broker(image, 2))  # ISR = [1]
    image, _ = applied(image, fence_broker(image, 1))  # leaderless, ISR = [1]
    assert image.partition("t", 0).leader == -1
    image, _ = applied(image, unfence_broker(image, 2))
    partition = image.partition("t", 0)
    assert partition.leader == 2 and partition.isr == (2,)


def test_unclean_election_at_fence_time() -> None:
    configs = {"unclean.leader.election.enable": "true"}
    image, _ = with_topic(cluster(3), {0: [1, 2, 3]}, configs)
    # Shrink the ISR to the leader alone, then fence it: 2 and 3 are live but out of sync.
    epoch = image.brokers[1].epoch
    item = AlterPartitionItem(image.topics["t"].topic_id, 0, 0, 0, [1])
    image, _ = applied(image, alter_partition(image, 1, epoch, [item]))
    image, _ = applied(image, fence_broker(image, 1))
    partition = image.partition("t", 0)
    assert partition.leader == 2 and partition.isr == (2,)


def test_unregister_moves_leadership_and_removes_broker() -> None:
    image, _ = with_topic(cluster(2), {0: [1, 2]})
    image, res = applied(image, unregister_broker(image, 1))
    assert res.error_code == 0 and 1 not in image.brokers
    assert image.partition("t", 0).leader == 2 and image.partition("t", 0).isr == (2,)
    assert unregister_broker(image, 1).response.error_code == BROKER_ID_NOT_REGISTERED


def test_elect_leader_prefers_current_leader() -> None:
    assert elect_leader((1, 2, 3), (1, 2, 3), 2, lambda b: True, False) == (2, (1, 2, 3))
    assert elect_leader((1, 2, 3), (2, 3), -1, lambda b: b != 2, False) == (3, (2, 3))
    assert elect_leader((1, 2), (1,), -1, lambda b: b == 2, False) == (-1, (1,))
    assert elect_leader((1, 2), (1,), -1, lambda b: b == 2, True) == (2, (2,))
    assert elect_leader((1, 2), (1,), -1, lambda b: False, True) == (-1, (1,))


# ----- producer ids -----


def test_producer_id_blocks() -> None:
    image = cluster(2)
    first = allocate_producer_ids(image, 1, image.brokers[1].epoch, 1000)
    assert (first.response.error_code, first.response.first_producer_id, first.response.size) == (0, 0, 1000)
    image, _ = applied(image, first)
    second = allocate_producer_ids(image, 2, None, 1000)
    assert second.response.first_producer_id == 1000
    image, _ = applied(image, second)
    assert image.next_producer_id == 2000


def test_producer_ids_errors() -> None:
    image = cluster(1)
    assert allocate_producer_ids(image, 5, None, 1000).response.error_code == BROKER_ID_NOT_REGISTERED
    assert allocate_producer_ids(image, 1, 77, 1000).response.error_code == STALE_BROKER_EPOCH
    exhausted = dataclasses.replace(image, next_producer_id=2**63 - 10)
    result = allocate_producer_ids(exhausted, 1, None, 1000)
    assert result.response.error_code == -1 and result.records == ()


# ----- AlterPartition -----


def isr_setup() -> tuple[MetadataImage, uuid.UUID, int]:
    image, topic_id = with_topic(cluster(3), {0: [1, 2, 3]})
    return image, topic_id, image.brokers[1].epoch


def test_alter_partition_shrink_and_expand() -> None:
    image, topic_id, epoch = isr_setup()
    result = alter_partition(image, 1, epoch, [AlterPartitionItem(topic_id, 0, 0, 0, [1, 2])])
    assert result.response.error_code == 0
    (item,) = result.response.partitions
    assert item.error_code == 0
    assert item.registration == PartitionRegistration((1, 2, 3), (1, 2), 1, 0, 1)
    image, _ = applied(image, result)
    assert image.partition("t", 0) == item.registration
    result = alter_partition(image, 1, epoch, [AlterPartitionItem(topic_id, 0, 0, 1, [1, 2, 3])])
    image, _ = applied(image, result)
    assert image.partition("t", 0).isr == (1, 2, 3) and image.partition("t", 0).partition_epoch == 2


def test_alter_partition_unchanged_isr_writes_nothing() -> None:
    image, topic_id, epoch = isr_setup()
    result = alter_partition(image, 1, epoch, [AlterPartitionItem(topic_id, 0, 0, 0, [1, 2, 3])])
    assert result.records == ()
    assert result.response.partitions[0].registration == image.partition("t", 0)


def test_alter_partition_compare_and_set() -> None:
    image, topic_id, epoch = isr_setup()
    image, _ = applied(
        image, alter_partition(image, 1, epoch, [AlterPartitionItem(topic_id, 0, 0, 0, [1, 2])])
    )
    # A second proposal built on partition epoch 0 lost the race.
    stale = alter_partition(image, 1, epoch, [AlterPartitionItem(topic_id, 0, 0, 0, [1])])
    assert stale.response.partitions[0].error_code == INVALID_UPDATE_VERSION
    assert stale.records == ()


def test_alter_partition_fenced_leader_epoch_after_election() -> None:
    image, topic_id, _ = isr_setup()
    image, _ = applied(image, fence_broker(image, 1))  # leader 2, leader epoch 1
    epoch2 = image.brokers[2].epoch
    old = alter_partition(image, 2, epoch2, [AlterPartitionItem(topic_id, 0, 0, 1, [2])])
    assert old.response.partitions[0].error_code == FENCED_LEADER_EPOCH
    # The deposed leader (1) is not the leader any more.
    item = AlterPartitionItem(topic_id, 0, 1, 1, [1, 2])
    epoch1 = image.brokers[1].epoch
    assert alter_partition(image, 1, epoch1, [item]).response.partitions[0].error_code == INVALID_REQUEST


def test_alter_partition_newer_epochs_mean_not_controller() -> None:
    image, topic_id, epoch = isr_setup()
    for leader_epoch, partition_epoch in ((1, 0), (0, 3)):
        item = AlterPartitionItem(topic_id, 0, leader_epoch, partition_epoch, [1])
        result = alter_partition(image, 1, epoch, [item])
        assert result.response.partitions[0].error_code == NOT_CONTROLLER


@pytest.mark.parametrize(
    ("isr", "code"),
    [
        ([2, 3], INVALID_REQUEST),  # leader missing
        ([1, 4], INVALID_REQUEST),  # not a replica
        ([1, 1], INVALID_REQUEST),  # duplicate
        ([], INVALID_REQUEST),
    ],
)
def test_alter_partition_invalid_isr(isr, code) -> None:
    image, topic_id, epoch = isr_setup()
    result = alter_partition(image, 1, epoch, [AlterPartitionItem(topic_id, 0, 0, 0, isr)])
    assert result.response.partitions[0].error_code == code


def test_alter_partition_ineligible_replica() -> None:
    image, topic_id, _ = isr_setup()
    image, _ = applied(image, fence_broker(image, 3))  # ISR (1, 2), partition epoch 1
    epoch = image.brokers[1].epoch
    result = alter_partition(image, 1, epoch, [AlterPartitionItem(topic_id, 0, 0, 1, [1, 2, 3])])
    assert result.response.partitions[0].error_code == INELIGIBLE_REPLICA


def test_alter_partition_request_level_and_unknown_partition_errors() -> None:
    image, topic_id, epoch = isr_setup()
    stale = alter_partition(image, 1, epoch + 100, [AlterPartitionItem(topic_id, 0, 0, 0, [1])])
    assert stale.response.error_code == STALE_BROKER_EPOCH and stale.response.partitions == ()
    assert alter_partition(image, 9, 0, []).response.error_code == BROKER_ID_NOT_REGISTERED
    result = alter_partition(
        image,
        1,
        epoch,
        [
            AlterPartitionItem(uuid.UUID(int=1), 0, 0, 0, [1]),
            AlterPartitionItem(topic_id, 5, 0, 0, [1]),
            AlterPartitionItem(topic_id, 0, 0, 0, [1, 2]),
        ],
    )
    assert [p.error_code for p in result.response.partitions] == [
        UNKNOWN_TOPIC_ID,
        UNKNOWN_TOPIC_OR_PARTITION,
        0,
    ]
    dup = alter_partition(
        image, 1, epoch, [AlterPartitionItem(topic_id, 0, 0, 0, [1]), AlterPartitionItem(topic_id, 0, 0, 0, [1, 2])]
    )
    assert [p.error_code for p in dup.response.partitions] == [INVALID_REQUEST, INVALID_REQUEST]

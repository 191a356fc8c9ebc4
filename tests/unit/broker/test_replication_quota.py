"""The replication throttles (KIP-73) as pure logic: Kafka's SimpleRate sampler, the
throttle of one role (ReplicationQuotaManager), and the leader's and follower's decision
(shouldLeaderThrottle / shouldFollowerThrottle). Time is passed in: no clock, no sleep."""

from __future__ import annotations

import pytest

from odradek.broker.replication_quota import (
    MIN_RECHECK_S,
    UNLIMITED,
    ReplicationQuota,
    ReplicationQuotas,
    should_throttle,
)
from odradek.broker.security.quotas import Rate, SimpleRate
from odradek.controller.metadata.throttled_replicas import EVERY_PARTITION, ThrottledPartitions

T0 = 1000.0  # monotonic seconds


def test_simple_rate_divides_by_the_time_since_its_oldest_sample_at_least_one_window() -> None:
    rate = SimpleRate(11, 1000)
    rate.record(3000, T0)
    # Within the first window the sum is spread over one whole window...
    assert rate.measure(T0) == 3000
    assert rate.measure(T0 + 0.5) == 3000
    # ...then over the time since the oldest sample began.
    assert rate.measure(T0 + 2) == 1500
    rate.record(1000, T0 + 2.5)  # a new sample
    assert rate.measure(T0 + 4) == pytest.approx(1000)
    # A sample whose last record is num windows old no longer counts.
    assert rate.measure(T0 + 11) == pytest.approx(1000 / 8.5)  # the first one's gone
    assert rate.measure(T0 + 13.5) == 0


def test_simple_rate_is_not_padded_like_the_client_quota_rate() -> None:
    """Kafka's client quotas (Rate) spread a first burst over num - 1 windows, so 10 s of
    quota would pass at once; a replication throttle (SimpleRate) counts it in full."""
    simple, padded = SimpleRate(11, 1000), Rate(11, 1000)
    for r in (simple, padded):
        r.record(10_000, T0)
    assert simple.measure(T0) == 10_000
    assert padded.measure(T0) == 1_000


def test_simple_rate_window_settings() -> None:
    rate = SimpleRate(2, 5000)  # replication.quota.window.num=2, .size.seconds=5
    rate.record(10_000, T0)
    assert rate.measure(T0 + 1) == 2000  # over one 5 s window
    assert rate.measure(T0 + 8) == 1250
    assert rate.measure(T0 + 10) == 0  # 2 windows later: expired


def quota(bound: float = 1000, topic: str = "t",
          partitions: ThrottledPartitions = EVERY_PARTITION) -> ReplicationQuota:
    q = ReplicationQuota(11, 1, bound)
    q.mark_throttled(topic, partitions)
    return q


def test_the_quota_is_exceeded_strictly_over_its_bound() -> None:
    q = quota(1000)
    assert not q.is_quota_exceeded(T0)
    q.record(1000, T0)
    assert not q.is_quota_exceeded(T0)  # at the bound: acceptable, as Kafka's Quota
    q.record(1, T0)
    assert q.is_quota_exceeded(T0)
    assert not q.is_quota_exceeded(T0 + 1.01)
    # The default rate never throttles, whatever goes through.
    free = quota(UNLIMITED)
    free.record(10**15, T0)
    assert not free.is_quota_exceeded(T0)


def test_a_new_bound_applies_to_what_was_measured() -> None:
    q = quota(1000)
    q.record(1500, T0)
    assert q.is_quota_exceeded(T0)
    q.update_quota(2000)
    assert not q.is_quota_exceeded(T0)
    q.update_quota(500)
    assert q.is_quota_exceeded(T0 + 2)  # 750 B/s over 2 s


def test_recheck_after_says_when_the_rate_is_back_at_the_bound() -> None:
    q = quota(1000)
    assert q.recheck_after(T0) == 0
    q.record(2500, T0)
    assert q.recheck_after(T0) == 1.0  # 1.5 s away: at most one window, then look again
    assert q.recheck_after(T0 + 2) == pytest.approx(0.5)  # 2500 B over 2.5 s
    assert q.recheck_after(T0 + 2.5) == 0
    # Just over the bound: never an immediate look again (no spinning).
    q2 = quota(1000)
    q2.record(1001, T0)
    assert q2.recheck_after(T0 + 1) == MIN_RECHECK_S


def test_which_partitions_a_quota_throttles() -> None:
    q = quota(1000, "t", ThrottledPartitions(partitions=frozenset({0, 2})))
    assert q.is_throttled("t", 0) and q.is_throttled("t", 2)
    assert not q.is_throttled("t", 1) and not q.is_throttled("other", 0)
    assert q.throttles_some_partition
    q.mark_throttled("t", ThrottledPartitions())  # the config was removed
    assert not q.is_throttled("t", 0) and not q.throttles_some_partition


@pytest.mark.parametrize(("in_sync", "listed", "exceeded", "throttled"), [
    (False, True, True, True),
    (True, True, True, False),  # in-sync replicas are never held back
    (False, False, True, False),  # not named in the topic's list
    (False, True, False, False),  # under the rate
    (True, False, False, False),
])
def test_the_leader_and_follower_decision(in_sync: bool, listed: bool, exceeded: bool,
                                          throttled: bool) -> None:
    q = quota(1000, "t", ThrottledPartitions(partitions=frozenset({0})))
    q.record(5000 if exceeded else 10, T0)
    assert should_throttle(q, "t", 0 if listed else 1, in_sync, T0) is throttled


def test_a_brokers_quotas_follow_its_rates_and_the_topic_configs() -> None:
    quotas = ReplicationQuotas(broker_id=2)
    quotas.update_rates(leader=100, follower=200)
    assert (quotas.leader.bound, quotas.follower.bound) == (100, 200)
    quotas.update_topic("t", {"leader.replication.throttled.replicas": "0:1,1:2,3:2",
                              "follower.replication.throttled.replicas": "*",
                              "retention.ms": "1000"})
    # Leader side: only the entries naming broker 2.
    assert [p for p in range(5) if quotas.leader.is_throttled("t", p)] == [1, 3]
    assert all(quotas.follower.is_throttled("t", p) for p in range(5))
    # The configs removed (or the topic deleted): nothing throttled any more.
    quotas.update_topic("t", {})
    assert not quotas.leader.is_throttled("t", 1) and not quotas.follower.is_throttled("t", 0)

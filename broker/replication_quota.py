"""Replication throttles (KIP-73), as pure logic: what Kafka's ReplicationQuotaManager and
its ReplicaManager.shouldLeaderThrottle / ReplicaFetcherThread.shouldFollowerThrottle decide.

A broker has two throttles, one per role:

- leader: bytes it sends to followers for the partitions its topics' configs name in
  ``leader.replication.throttled.replicas`` (``p:B`` for this broker B, or ``*``), bounded
  by ``leader.replication.throttled.rate``;
- follower: bytes it fetches for the partitions named in
  ``follower.replication.throttled.replicas``, bounded by
  ``follower.replication.throttled.rate``.

Each measures the bytes of its throttled partitions with Kafka's ``SimpleRate`` over
``replication.quota.window.num`` samples of ``replication.quota.window.size.seconds``. While
that rate is over the bound, a throttled partition whose replica is not in sync is left out
(the leader answers it with no records; the follower does not ask for it); in-sync replicas
are never held back, so acks=all writes do not wait on a throttle. Nothing sleeps: a
skipped partition is simply read again in a later round, and ``recheck_after`` says when
one might be served again, so that a parked fetch wakes then instead of polling.

No I/O and no clock of its own: every call takes ``now``, monotonic seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from odradek.broker.security.quotas import SimpleRate
from odradek.controller.metadata.throttled_replicas import (
    FOLLOWER_THROTTLED_REPLICAS,
    LEADER_THROTTLED_REPLICAS,
    NOTHING_THROTTLED,
    ThrottledPartitions,
    throttled_partitions,
)

UNLIMITED: Final = 2**63 - 1  # Long.MAX_VALUE, the rates' default: no throttle
# A parked fetch waiting for a throttle to let a partition through wakes at least this long
# after it parks: the rate's estimate may be early, and the next look must not spin.
MIN_RECHECK_S: Final = 0.01


class ReplicationQuota:
    """One role's throttle (Kafka's ReplicationQuotaManager): its bound, its measured rate,
    and the partitions it throttles, by topic."""

    __slots__ = ("bound", "_rate", "_throttled")

    def __init__(self, window_num: int = 11, window_size_s: int = 1,
                 bound: float = UNLIMITED) -> None:
        self.bound = float(bound)
        self._rate = SimpleRate(window_num, window_size_s * 1000)
        self._throttled: dict[str, ThrottledPartitions] = {}

    def update_quota(self, bound: float) -> None:
        """A new rate bound; what was measured so far still counts (Kafka keeps the
        samples across a change of quota)."""
        self.bound = float(bound)

    def mark_throttled(self, topic: str, partitions: ThrottledPartitions) -> None:
        """The partitions of ``topic`` throttled from now on (none: its throttle ends)."""
        if partitions:
            self._throttled[topic] = partitions
        else:
            self._throttled.pop(topic, None)

    @property
    def throttles_some_partition(self) -> bool:
        """Whether some partition is throttled here (else no traffic is counted)."""
        return bool(self._throttled)

    def is_throttled(self, topic: str, partition: int) -> bool:
        return self._throttled.get(topic, NOTHING_THROTTLED).covers(partition)

    def record(self, size: int, now: float) -> None:
        """Bytes of throttled partitions sent or received, counted even over the bound."""
        self._rate.record(size, now)

    def is_quota_exceeded(self, now: float) -> bool:
        """Kafka's Quota.acceptable: a rate at the bound is still within it."""
        return self.bound < UNLIMITED and self._rate.measure(now) > self.bound

    def recheck_after(self, now: float) -> float:
        """Seconds until the measured rate is back at the bound if nothing more is recorded
        (0 when it is already), at least MIN_RECHECK_S and at most one window: an estimate,
        as samples that expire meanwhile move the rate too, so the caller looks again
        then."""
        if not self.is_quota_exceeded(now):
            return 0.0
        window_s = self._rate.window_ms / 1000
        wait = self._rate.seconds_until_at_most(self.bound, now) if self.bound > 0 \
            else window_s
        return min(max(wait, MIN_RECHECK_S), window_s)


def should_throttle(quota: ReplicationQuota, topic: str, partition: int, in_sync: bool,
                    now: float) -> bool:
    """Whether one replica's traffic is held back now (ReplicaManager.shouldLeaderThrottle
    on a leader, asked with whether the fetching follower is in the ISR;
    AbstractFetcherThread.shouldFollowerThrottle on a follower, asked with whether this
    replica is in sync): not in sync, throttled, and the quota exceeded."""
    return not in_sync and quota.is_throttled(topic, partition) \
        and quota.is_quota_exceeded(now)


class ReplicationQuotas:
    """A broker's two throttles, kept current with its configs."""

    __slots__ = ("broker_id", "leader", "follower")

    def __init__(self, broker_id: int, window_num: int = 11, window_size_s: int = 1) -> None:
        self.broker_id = broker_id
        self.leader = ReplicationQuota(window_num, window_size_s)
        self.follower = ReplicationQuota(window_num, window_size_s)

    def update_rates(self, leader: float, follower: float) -> None:
        """The effective leader/follower.replication.throttled.rate of this broker."""
        self.leader.update_quota(leader)
        self.follower.update_quota(follower)

    def update_topic(self, topic: str, configs: Mapping[str, str]) -> None:
        """``topic``'s configs now (empty: it has none, or it is gone): the partitions it
        throttles on this broker, per role (Kafka's TopicConfigHandler)."""
        for quota, name in ((self.leader, LEADER_THROTTLED_REPLICAS),
                            (self.follower, FOLLOWER_THROTTLED_REPLICAS)):
            quota.mark_throttled(topic, throttled_partitions(configs.get(name, ""),
                                                             self.broker_id))

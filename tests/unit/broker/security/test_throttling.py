"""Client quotas as the transport applies them (broker/security/throttling.py)."""

from __future__ import annotations

import datetime

from odradek.broker.kafka import codec
from odradek.broker.security.quotas import QuotaConfigs, QuotaEntity
from odradek.broker.security.throttling import (
    Throttling,
    quota_user,
    with_throttle,
    without_records,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_quota_no_measuring() -> None:
    t = Throttling(QuotaConfigs)
    assert not t.active
    configs = QuotaConfigs().with_changes(QuotaEntity(user="alice"),
                                          {"producer_byte_rate": 1000.0})
    assert Throttling(lambda: configs).active


def test_produce_over_quota_is_throttled_for_the_user_only() -> None:
    clock = Clock()
    configs = QuotaConfigs().with_changes(QuotaEntity(user="alice"),
                                          {"producer_byte_rate": 1000.0})
    t = Throttling(lambda: configs, clock)
    throttles = []
    for _ in range(20):
        throttles.append(t.produced("User:alice", "app", 1000))
        clock.now += 0.1  # 10,000 B/s against a quota of 1,000
    assert throttles[-1] > 0
    # bob has no quota: never throttled, whatever he sends.
    assert all(t.produced("User:bob", "app", 10**6) == 0 for _ in range(10))


def test_a_throttled_fetch_does_not_count_its_bytes() -> None:
    clock = Clock()
    configs = QuotaConfigs().with_changes(QuotaEntity(client_id="reader"),
                                          {"consumer_byte_rate": 1000.0})
    t = Throttling(lambda: configs, clock)
    assert t.fetched("User:ANONYMOUS", "reader", 500) == 0
    rate_before = t.fetch.measured_rate("ANONYMOUS", "reader", clock.now)
    assert t.fetched("User:ANONYMOUS", "reader", 10**6) > 0
    # The million bytes were taken back: the answer went out without records.
    assert t.fetch.measured_rate("ANONYMOUS", "reader", clock.now) == rate_before


def test_exemptions() -> None:
    t = Throttling(QuotaConfigs)
    follower = codec.build_request(1, 12, {"replica_id": 2, "topics": []})
    consumer = codec.build_request(1, 12, {"replica_id": -1, "topics": []})
    follower_v15 = codec.build_request(1, 15, {"replica_state": {"replica_id": 3},
                                               "topics": []})
    assert t.exempt(1, 12, follower) and t.exempt(1, 15, follower_v15)
    assert not t.exempt(1, 12, consumer)
    assert t.exempt(27, 1, None) and t.exempt(18, 3, None) and not t.exempt(0, 9, None)
    assert quota_user("User:alice") == "alice"
    assert quota_user("User:CN=a,O=b") == "CN=a,O=b"


def test_throttled_answers() -> None:
    produce = codec.build_response(0, 9, {"responses": []})
    assert with_throttle(produce, 250).throttle_time == datetime.timedelta(milliseconds=250)
    fetch = codec.build_response(1, 12, {"responses": [{"topic": "t", "partitions": [
        {"partition_index": 0, "high_watermark": 7, "records": b"\0" * 70}]}]})
    empty = without_records(fetch)
    partition = empty.responses[0].partitions[0]
    assert partition.records == b"" and partition.high_watermark == 7
    # Both encode.
    codec.encode_response(1, 12, 1, with_throttle(empty, 10))

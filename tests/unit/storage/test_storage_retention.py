"""Retention's decisions (storage/retention.py) on plain segment descriptions."""

from __future__ import annotations

from dataclasses import dataclass

from odradek.storage import retention


@dataclass
class Seg:
    base_offset: int
    size: int
    max_timestamp: int


SEGS = [Seg(0, 100, 1_000), Seg(10, 100, 2_000), Seg(20, 100, 3_000), Seg(30, 50, 4_000)]


def test_time_rule_deletes_the_oldest_prefix_below_the_high_watermark() -> None:
    rule = retention.older_than(now_ms=3_500, retention_ms=1_000)
    assert retention.deletable_prefix(SEGS, high_watermark=40, log_end=40, rule=rule) == 2
    # The high watermark protects what is not committed yet.
    rule = retention.older_than(now_ms=3_500, retention_ms=1_000)
    assert retention.deletable_prefix(SEGS, high_watermark=15, log_end=40, rule=rule) == 1


def test_size_rule_keeps_the_log_at_or_above_its_limit() -> None:
    rule = retention.beyond_size(total_bytes=350, retention_bytes=150)
    assert retention.deletable_prefix(SEGS, 40, 40, rule) == 2  # 350 -> 150


def test_last_segment_goes_only_when_it_holds_data() -> None:
    everything = retention.older_than(now_ms=10_000, retention_ms=0)
    assert retention.deletable_prefix(SEGS, 40, 40, everything) == 4
    empty_tail = [*SEGS[:3], Seg(30, 0, -1)]
    assert retention.deletable_prefix(empty_tail, 40, 40, everything) == 3


def test_log_start_rule() -> None:
    rule = retention.below_log_start(25)
    assert retention.deletable_prefix(SEGS, 40, 40, rule) == 2  # [20, 30) holds 25

"""Which old segments retention deletes: pure decisions over the segment list.

Kafka deletes whole segments from the front of a log: those older than ``retention.ms``
(by their largest timestamp), those beyond ``retention.bytes`` (oldest first), and those
wholly below the log start offset (after DeleteRecords). Only segments entirely below the
high watermark may go, and the last segment only when it holds data (the log then rolls a
new active segment first, so it always keeps one). The partition log applies the answers
(storage/log.py: enforce_retention).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class Segment(Protocol):
    @property
    def base_offset(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def max_timestamp(self) -> int: ...


# (segment, the one after it or None for the last) -> may it go, as far as this rule says?
Rule = Callable[[Segment, Segment | None], bool]


def deletable_prefix(segments: Sequence[Segment], high_watermark: int, log_end: int,
                     rule: Rule) -> int:
    """How many segments from the front ``rule`` deletes, stopping at the first it keeps
    or that is not wholly below the high watermark."""
    count = 0
    for i, seg in enumerate(segments):
        nxt = segments[i + 1] if i + 1 < len(segments) else None
        upper = nxt.base_offset if nxt is not None else log_end
        last_and_empty = nxt is None and seg.size == 0
        if high_watermark >= upper and not last_and_empty and rule(seg, nxt):
            count += 1
        else:
            break
    return count


def older_than(now_ms: int, retention_ms: int) -> Rule:
    """retention.ms: the segment's newest record is older than the retention."""
    return lambda seg, _nxt: now_ms - seg.max_timestamp > retention_ms


def beyond_size(total_bytes: int, retention_bytes: int) -> Rule:
    """retention.bytes: oldest segments go while the log stays at or above the limit
    without them."""
    excess = total_bytes - retention_bytes

    def over_size(seg: Segment, _nxt: Segment | None) -> bool:
        nonlocal excess
        if excess - seg.size >= 0:
            excess -= seg.size
            return True
        return False

    return over_size


def below_log_start(log_start: int) -> Rule:
    """DeleteRecords moved the log start offset past the whole segment."""
    return lambda _seg, nxt: nxt is not None and nxt.base_offset <= log_start

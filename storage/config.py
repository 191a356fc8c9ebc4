"""Per-partition log configuration, with Kafka's topic config names."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from odradek.storage.errors import InvalidConfigError

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1

# field name -> Kafka topic config name
KAFKA_NAMES: dict[str, str] = {
    "segment_bytes": "segment.bytes",
    "segment_ms": "segment.ms",
    "retention_ms": "retention.ms",
    "retention_bytes": "retention.bytes",
    "index_interval_bytes": "index.interval.bytes",
    "segment_index_bytes": "segment.index.bytes",
    "flush_messages": "flush.messages",
    "flush_ms": "flush.ms",
    "max_message_bytes": "max.message.bytes",
    "message_timestamp_type": "message.timestamp.type",
    "cleanup_policy": "cleanup.policy",
    "min_cleanable_dirty_ratio": "min.cleanable.dirty.ratio",
    "min_compaction_lag_ms": "min.compaction.lag.ms",
    "max_compaction_lag_ms": "max.compaction.lag.ms",
    "delete_retention_ms": "delete.retention.ms",
}
_FIELDS_BY_KAFKA_NAME = {v: k for k, v in KAFKA_NAMES.items()}

# Valid Kafka topic configs that the log itself does not act on (the broker may, or they
# are accepted for compatibility). from_kafka_configs accepts and ignores them.
OTHER_TOPIC_CONFIGS = frozenset(
    {
        "compression.type",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
        "file.delete.delay.ms",
        "follower.replication.throttled.replicas",
        "leader.replication.throttled.replicas",
        "local.retention.bytes",
        "local.retention.ms",
        "message.downconversion.enable",
        "message.format.version",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.difference.max.ms",
        "min.insync.replicas",
        "preallocate",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
        "remote.storage.enable",
        "segment.jitter.ms",
        "unclean.leader.election.enable",
    }
)

TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
CLEANUP_POLICIES = ("delete", "compact")

# (minimum, maximum) for the integer fields, as Kafka validates them.
_RANGES: dict[str, tuple[int, int]] = {
    "segment_bytes": (14, INT_MAX),
    "segment_ms": (1, LONG_MAX),
    "retention_ms": (-1, LONG_MAX),
    "retention_bytes": (-(2**63), LONG_MAX),
    "index_interval_bytes": (0, INT_MAX),
    "segment_index_bytes": (4, INT_MAX),
    "flush_messages": (1, LONG_MAX),
    "flush_ms": (0, LONG_MAX),
    "max_message_bytes": (0, INT_MAX),
    "min_compaction_lag_ms": (0, LONG_MAX),
    "max_compaction_lag_ms": (1, LONG_MAX),
    "delete_retention_ms": (0, LONG_MAX),
}
# The float fields, with their closed ranges.
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "min_cleanable_dirty_ratio": (0.0, 1.0),
}


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Storage settings of one partition log. Field names mirror Kafka's config names.

    ``cleanup_policy`` is ``delete`` (retention by time and size), ``compact`` (the log
    cleaner keeps the latest record of every key, storage/cleaner.py) or both.
    """

    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * 24 * 3600 * 1000
    retention_ms: int = 7 * 24 * 3600 * 1000  # -1: keep forever
    retention_bytes: int = -1  # negative: no size limit
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10 * 1024 * 1024
    flush_messages: int = LONG_MAX  # fsync after this many unflushed records
    flush_ms: int = LONG_MAX  # fsync when the last flush is this old
    max_message_bytes: int = 1024 * 1024 + 12  # 1048588, Kafka's default
    message_timestamp_type: str = "CreateTime"
    cleanup_policy: str = "delete"
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX
    delete_retention_ms: int = 24 * 3600 * 1000  # tombstones stay readable this long

    def __post_init__(self) -> None:
        for name, (lo, hi) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise InvalidConfigError(
                    f"invalid value {value!r} for {KAFKA_NAMES[name]}: "
                    f"expected an integer in [{lo}, {hi}]"
                )
        for name, (flo, fhi) in _FLOAT_RANGES.items():
            fvalue = getattr(self, name)
            if (isinstance(fvalue, bool) or not isinstance(fvalue, int | float)
                    or not flo <= fvalue <= fhi):
                raise InvalidConfigError(
                    f"invalid value {fvalue!r} for {KAFKA_NAMES[name]}: "
                    f"expected a number in [{flo}, {fhi}]"
                )
        if self.message_timestamp_type not in TIMESTAMP_TYPES:
            raise InvalidConfigError(
                f"invalid value {self.message_timestamp_type!r} for message.timestamp.type: "
                f"expected one of {', '.join(TIMESTAMP_TYPES)}"
            )
        policies = [p.strip() for p in self.cleanup_policy.split(",")]
        if not policies or any(p not in CLEANUP_POLICIES for p in policies):
            raise InvalidConfigError(
                f"invalid value {self.cleanup_policy!r} for cleanup.policy: expected "
                "'delete', 'compact' or 'compact,delete'"
            )

    # cleanup_policy holds only validated "delete"/"compact" items, so a substring test is
    # exact (and cheap: the produce path asks on every append).
    @property
    def deletes_by_retention(self) -> bool:
        return "delete" in self.cleanup_policy

    @property
    def compacts(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def roll_ms(self) -> int:
        """Age at which the active segment rolls: segment.ms, and for a compacted log also
        max.compaction.lag.ms (KIP-354), since the cleaner never touches the active one."""
        if self.compacts:
            return min(self.segment_ms, self.max_compaction_lag_ms)
        return self.segment_ms

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    @classmethod
    def from_kafka_configs(
        cls, configs: Mapping[str, str], *, base: LogConfig | None = None
    ) -> LogConfig:
        """Build from Kafka topic configs (string values), over ``base`` or the defaults.

        Known Kafka topic configs the log does not use are accepted and ignored; unknown
        names and bad values raise InvalidConfigError naming the key.
        """
        values: dict[str, Any] = {}
        for key, raw in configs.items():
            name = _FIELDS_BY_KAFKA_NAME.get(key)
            if name is None:
                if key in OTHER_TOPIC_CONFIGS:
                    continue
                # The nearest names, not all of them: the message must stay one short line.
                near = difflib.get_close_matches(
                    key, sorted([*_FIELDS_BY_KAFKA_NAME, *OTHER_TOPIC_CONFIGS]), n=3)
                hint = f"; did you mean {', '.join(near)}?" if near else ""
                raise InvalidConfigError(f"unknown topic config {key!r}{hint}")
            if raw is None:
                continue
            text = str(raw).strip()
            if name in _RANGES:
                lo, hi = _RANGES[name]
                try:
                    value: Any = int(text)
                except ValueError:
                    raise InvalidConfigError(
                        f"invalid value {raw!r} for {key}: expected an integer in [{lo}, {hi}]"
                    ) from None
            elif name in _FLOAT_RANGES:
                flo, fhi = _FLOAT_RANGES[name]
                try:
                    value = float(text)
                except ValueError:
                    raise InvalidConfigError(
                        f"invalid value {raw!r} for {key}: expected a number in [{flo}, {fhi}]"
                    ) from None
            elif name == "cleanup_policy":
                value = ",".join(p.strip() for p in text.split(","))
            else:
                value = text
            values[name] = value
        start = base if base is not None else cls()
        merged = {f.name: getattr(start, f.name) for f in fields(cls)}
        merged.update(values)
        return cls(**merged)

    def to_kafka_configs(self) -> dict[str, str]:
        return {KAFKA_NAMES[f.name]: str(getattr(self, f.name)) for f in fields(self)}

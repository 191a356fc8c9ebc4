"""Effective topic and broker configs as DescribeConfigs reports them.

The storage layer owns the log configs and their defaults (storage.LogConfig); this module
only layers broker defaults and topic overrides on top and labels where each value came
from, with Kafka's config source and type codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from odradek import storage
from odradek.controller.metadata.broker_configs import DYNAMIC_BROKER_KEYS_BY_NAME
from odradek.controller.metadata.throttled_replicas import (
    FOLLOWER_THROTTLED_REPLICAS,
    LEADER_THROTTLED_REPLICAS,
)
from odradek.storage.config import KAFKA_NAMES

if TYPE_CHECKING:
    from odradek.broker.config import NodeConfig

# ConfigSource codes (DescribeConfigs).
TOPIC_CONFIG, DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG = 1, 2, 3
STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 4, 5
# ConfigType codes (DescribeConfigs v3+).
BOOLEAN, STRING, INT, LONG, DOUBLE, LIST = 1, 2, 3, 5, 6, 7

# Broker-wide defaults for topic configs: broker key -> topic key (Kafka's names).
BROKER_TOPIC_DEFAULTS: Mapping[str, str] = {
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "log.flush.interval.messages": "flush.messages",
    "log.flush.interval.ms": "flush.ms",
    "message.max.bytes": "max.message.bytes",
    "log.cleanup.policy": "cleanup.policy",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms": "max.compaction.lag.ms",
}

# Topic configs the broker acts on beyond the log's own, with their defaults.
BROKER_LEVEL_TOPIC_CONFIGS: Mapping[str, tuple[str, int, str]] = {
    "min.insync.replicas": ("1", INT, "Replicas that must have a write before acks=all "
                                      "succeeds."),
    "unclean.leader.election.enable": ("false", BOOLEAN, "Allow an out-of-sync replica to "
                                                         "become leader (may lose data)."),
    LEADER_THROTTLED_REPLICAS: ("", LIST, "Replicas whose traffic to out-of-sync followers "
                                          "leader.replication.throttled.rate limits, as "
                                          "partitionId:brokerId,... or * for all."),
    FOLLOWER_THROTTLED_REPLICAS: ("", LIST, "Replicas whose fetching while out of sync "
                                            "follower.replication.throttled.rate limits, as "
                                            "partitionId:brokerId,... or * for all."),
}

_DOCS: Mapping[str, tuple[int, str]] = {
    "segment.bytes": (INT, "Segment file size before a new one is rolled."),
    "segment.ms": (LONG, "Segment age before a new one is rolled."),
    "retention.ms": (LONG, "Delete segments older than this; -1 keeps forever."),
    "retention.bytes": (LONG, "Delete oldest segments while the partition is larger; -1 = "
                              "no limit."),
    "index.interval.bytes": (INT, "Bytes between offset index entries."),
    "segment.index.bytes": (INT, "Size of a segment's offset index."),
    "flush.messages": (LONG, "fsync after this many messages."),
    "flush.ms": (LONG, "fsync at least this often."),
    "max.message.bytes": (INT, "Largest record batch accepted."),
    "message.timestamp.type": (STRING, "CreateTime or LogAppendTime."),
    "cleanup.policy": (LIST, "delete: retention by time and size; compact: keep the latest "
                             "record of every key; or both."),
    "min.cleanable.dirty.ratio": (DOUBLE, "Share of the log not yet cleaned that makes the "
                                          "cleaner compact it."),
    "min.compaction.lag.ms": (LONG, "Records younger than this are not compacted."),
    "max.compaction.lag.ms": (LONG, "Records older than this are compacted even if the log "
                                    "is not dirty enough."),
    "delete.retention.ms": (LONG, "How long a tombstone stays readable after the cleaner "
                                  "first keeps it."),
}


@dataclass(frozen=True)
class BrokerConfigLevels:
    """One broker's config by level (Kafka's precedence, highest first): its own dynamic
    values, the cluster-wide dynamic default, its config file, the built-in default."""

    static: NodeConfig
    cluster: Mapping[str, str] = field(default_factory=dict)
    own: Mapping[str, str] = field(default_factory=dict)

    @property
    def effective(self) -> NodeConfig:
        from odradek.broker.config import with_dynamic

        return with_dynamic(self.static, self.cluster, self.own)

    def synonyms(self, name: str) -> list[tuple[str, str, int]]:
        """(name, value, source) of every level that sets `name`, highest precedence first
        (DescribeConfigs' synonyms)."""
        out = []
        if name in DYNAMIC_BROKER_KEYS_BY_NAME:
            if name in self.own:
                out.append((name, self.own[name], DYNAMIC_BROKER_CONFIG))
            if name in self.cluster:
                out.append((name, self.cluster[name], DYNAMIC_DEFAULT_BROKER_CONFIG))
        if name in self.static.explicit:
            out.append((name, _text(self.static[name]), STATIC_BROKER_CONFIG))
        from odradek.broker.config import KEYS_BY_NAME

        default = KEYS_BY_NAME[name].default if name in KEYS_BY_NAME else None
        if default is not None:
            out.append((name, _text(default), DEFAULT_CONFIG))
        return out

    def source(self, name: str) -> int:
        levels = self.synonyms(name)
        return levels[0][2] if levels else DEFAULT_CONFIG


def _text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(v) if not isinstance(v, tuple) else f"{v[0]}@{v[1]}:{v[2]}"
                        for v in value)
    return "" if value is None else str(value)


def broker_topic_defaults(node_config: NodeConfig) -> dict[str, str]:
    return {topic_key: str(node_config[broker_key])
            for broker_key, topic_key in BROKER_TOPIC_DEFAULTS.items()}


def log_config(node_config: NodeConfig, overrides: Mapping[str, str]) -> storage.LogConfig:
    base = storage.LogConfig.from_kafka_configs(broker_topic_defaults(node_config))
    return storage.LogConfig.from_kafka_configs(overrides, base=base)


def describe_topic(levels: BrokerConfigLevels | NodeConfig, overrides: Mapping[str, str]
                   ) -> list[tuple[str, str, int, str, int]]:
    """(name, value, source, documentation, type) for every topic config."""
    if not isinstance(levels, BrokerConfigLevels):
        levels = BrokerConfigLevels(levels)
    node_config = levels.effective
    from_broker = {topic_key: levels.source(broker_key)
                   for broker_key, topic_key in BROKER_TOPIC_DEFAULTS.items()}
    effective = log_config(node_config, overrides).to_kafka_configs()
    rows = []
    for name in sorted(set(KAFKA_NAMES.values()) | set(BROKER_LEVEL_TOPIC_CONFIGS)):
        if name in BROKER_LEVEL_TOPIC_CONFIGS:
            default, ctype, doc = BROKER_LEVEL_TOPIC_CONFIGS[name]
            value = overrides.get(name, default)
        else:
            ctype, doc = _DOCS.get(name, (STRING, ""))
            value = effective[name]
        if name in overrides:
            source = TOPIC_CONFIG
        else:
            source = from_broker.get(name, DEFAULT_CONFIG)
        rows.append((name, value, source, doc, ctype))
    return rows


def describe_broker(levels: BrokerConfigLevels | NodeConfig
                    ) -> list[tuple[str, str, int, str, int]]:
    """Every node config key with its effective value and where it came from."""
    from odradek.broker.config import KEYS

    if not isinstance(levels, BrokerConfigLevels):
        levels = BrokerConfigLevels(levels)
    effective = levels.effective
    return [(k.name, _text(effective[k.name]), levels.source(k.name), k.doc, STRING)
            for k in KEYS]


def describe_cluster_default(cluster: Mapping[str, str]) -> list[tuple[str, str, int, str, int]]:
    """The cluster-wide dynamic configs (BROKER resource ""), as Kafka lists them: only the
    keys set at that level."""
    from odradek.broker.config import KEYS_BY_NAME

    return [(name, value, DYNAMIC_DEFAULT_BROKER_CONFIG,
             KEYS_BY_NAME[name].doc if name in KEYS_BY_NAME else "", STRING)
            for name, value in sorted(cluster.items())]

"""Effective topic and broker configs as DescribeConfigs reports them.

The storage layer owns the log configs and their defaults (storage.LogConfig); this module
only layers broker defaults and topic overrides on top and labels where each value came
from, with Kafka's config source and type codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from odradek import storage
from odradek.storage.config import KAFKA_NAMES

if TYPE_CHECKING:
    from odradek.broker.config import NodeConfig

# ConfigSource codes (DescribeConfigs).
TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5
# ConfigType codes (DescribeConfigs v3+).
BOOLEAN, STRING, INT, LONG, LIST = 1, 2, 3, 5, 7

# Broker-wide defaults for topic configs: broker key -> topic key (Kafka's names).
BROKER_TOPIC_DEFAULTS: Mapping[str, str] = {
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "log.flush.interval.messages": "flush.messages",
    "log.flush.interval.ms": "flush.ms",
    "message.max.bytes": "max.message.bytes",
}

# Topic configs the broker acts on beyond the log's own, with their defaults.
BROKER_LEVEL_TOPIC_CONFIGS: Mapping[str, tuple[str, int, str]] = {
    "min.insync.replicas": ("1", INT, "Replicas that must have a write before acks=all "
                                      "succeeds."),
    "unclean.leader.election.enable": ("false", BOOLEAN, "Allow an out-of-sync replica to "
                                                         "become leader (may lose data)."),
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
    "cleanup.policy": (LIST, "delete (compaction is accepted but not implemented)."),
}


def broker_topic_defaults(node_config: NodeConfig) -> dict[str, str]:
    return {topic_key: str(node_config[broker_key])
            for broker_key, topic_key in BROKER_TOPIC_DEFAULTS.items()}


def log_config(node_config: NodeConfig, overrides: Mapping[str, str]) -> storage.LogConfig:
    base = storage.LogConfig.from_kafka_configs(broker_topic_defaults(node_config))
    return storage.LogConfig.from_kafka_configs(overrides, base=base)


def describe_topic(node_config: NodeConfig, overrides: Mapping[str, str]
                   ) -> list[tuple[str, str, int, str, int]]:
    """(name, value, source, documentation, type) for every topic config."""
    from_broker = {topic_key for broker_key, topic_key in BROKER_TOPIC_DEFAULTS.items()
                   if broker_key in node_config.explicit}
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
        elif name in from_broker:
            source = STATIC_BROKER_CONFIG
        else:
            source = DEFAULT_CONFIG
        rows.append((name, value, source, doc, ctype))
    return rows


def describe_broker(node_config: NodeConfig) -> list[tuple[str, str, int, str, int]]:
    from odradek.broker.config import KEYS

    rows = []
    for k in KEYS:
        value = node_config[k.name]
        if isinstance(value, tuple):
            value = ",".join(str(v) if not isinstance(v, tuple) else
                             f"{v[0]}@{v[1]}:{v[2]}" for v in value)
        source = STATIC_BROKER_CONFIG if k.name in node_config.explicit else DEFAULT_CONFIG
        rows.append((k.name, "" if value is None else str(value), source, k.doc, STRING))
    return rows

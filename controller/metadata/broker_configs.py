"""Dynamic broker configs (Kafka's KIP-226): which node config keys can change at runtime.

This table is the single source of truth for them. The controller validates AlterConfigs and
IncrementalAlterConfigs on BROKER resources against it; brokers layer the stored values over
their static config file (per-broker value > cluster-wide default > file > built-in default);
broker/config.py marks these keys dynamic in docs/configuration.md. It lives here, beside the
image, because both the controller and the brokers import it.

Only keys whose readers really take the new value on a running node are listed; every other
node config key is refused, as Kafka refuses its read-only keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Where a dynamic value may be set: everywhere, or only as the cluster-wide default
# (resource name "") because the active controller, not one broker, acts on it.
ANY_LEVEL = "cluster-wide or per-broker"
CLUSTER_ONLY = "cluster-wide only"


@dataclass(frozen=True, slots=True)
class DynamicKey:
    name: str
    kind: str  # "int", "bool", "ratio", "cleanup policy" or "host:count list"
    minimum: int | None
    scope: str
    takes_effect: str  # how a running node applies it (docs)


_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1

DYNAMIC_BROKER_KEYS: tuple[DynamicKey, ...] = (
    DynamicKey("log.retention.ms", "int", -1, ANY_LEVEL,
               "retention of topics without their own retention.ms, at its next run"),
    DynamicKey("log.retention.bytes", "int", -1, ANY_LEVEL,
               "retention of topics without their own retention.bytes, at its next run"),
    DynamicKey("log.segment.bytes", "int", 14, ANY_LEVEL,
               "segment rolling of topics without their own segment.bytes"),
    DynamicKey("log.roll.ms", "int", 1, ANY_LEVEL,
               "segment rolling of topics without their own segment.ms"),
    DynamicKey("log.flush.interval.messages", "int", 1, ANY_LEVEL,
               "fsync policy of topics without their own flush.messages"),
    DynamicKey("log.flush.interval.ms", "int", 1, ANY_LEVEL,
               "fsync policy of topics without their own flush.ms"),
    DynamicKey("message.max.bytes", "int", 1, ANY_LEVEL,
               "largest batch accepted by topics without their own max.message.bytes"),
    DynamicKey("log.cleanup.policy", "cleanup policy", None, ANY_LEVEL,
               "retention and the log cleaner, for topics without their own cleanup.policy"),
    DynamicKey("log.cleaner.min.cleanable.ratio", "ratio", None, ANY_LEVEL,
               "the log cleaner's next look, for topics without their own "
               "min.cleanable.dirty.ratio"),
    DynamicKey("log.cleaner.delete.retention.ms", "int", 0, ANY_LEVEL,
               "tombstones the cleaner keeps next, for topics without delete.retention.ms"),
    DynamicKey("log.cleaner.min.compaction.lag.ms", "int", 0, ANY_LEVEL,
               "the log cleaner's next look, for topics without min.compaction.lag.ms"),
    DynamicKey("log.cleaner.max.compaction.lag.ms", "int", 1, ANY_LEVEL,
               "the log cleaner's next look and segment rolling, for topics without "
               "max.compaction.lag.ms"),
    DynamicKey("max.connections", "int", 1, ANY_LEVEL,
               "new connections; open ones are not closed"),
    DynamicKey("max.connections.per.ip", "int", 1, ANY_LEVEL,
               "new connections; open ones are not closed"),
    DynamicKey("max.connections.per.ip.overrides", "host:count list", None, ANY_LEVEL,
               "new connections; open ones are not closed"),
    DynamicKey("auto.create.topics.enable", "bool", None, ANY_LEVEL,
               "the next Metadata request naming an unknown topic"),
    DynamicKey("leader.replication.throttled.rate", "int", 0, ANY_LEVEL,
               "replication throttling (KIP-73) of the next follower fetch served"),
    DynamicKey("follower.replication.throttled.rate", "int", 0, ANY_LEVEL,
               "replication throttling (KIP-73) of the next follower fetch sent"),
    DynamicKey("num.partitions", "int", 1, CLUSTER_ONLY,
               "topics created next (auto-created, or CreateTopics with -1)"),
    DynamicKey("default.replication.factor", "int", 1, CLUSTER_ONLY,
               "topics created next (auto-created, or CreateTopics with -1)"),
)
DYNAMIC_BROKER_KEYS_BY_NAME: Mapping[str, DynamicKey] = {k.name: k for k in DYNAMIC_BROKER_KEYS}

_UPPER = {"log.segment.bytes": _INT32_MAX, "message.max.bytes": _INT32_MAX,
          "max.connections": _INT32_MAX, "max.connections.per.ip": _INT32_MAX,
          "num.partitions": _INT32_MAX, "default.replication.factor": 32767}


def parse_host_counts(text: str) -> dict[str, int]:
    """max.connections.per.ip.overrides: ``host:count,host:count``; ValueError names the bad
    item."""
    out: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, count = item.rpartition(":")
        if not host or not count.isdigit():
            raise ValueError(f"{item!r} is not host:count (e.g. 10.0.0.5:200)")
        out[host.strip("[]")] = int(count)
    return out


def value_error(key: DynamicKey, value: str) -> str | None:
    """Why `value` is not acceptable for `key`, or None."""
    text = value.strip()
    if key.kind == "bool":
        if text.lower() not in ("true", "false"):
            return f"Invalid value {value!r} for configuration {key.name}: must be true or false."
        return None
    if key.kind == "cleanup policy":
        items = [i.strip() for i in text.split(",")]
        if not text or any(i not in ("delete", "compact") for i in items):
            return (f"Invalid value {value!r} for configuration {key.name}: must be delete, "
                    "compact or compact,delete.")
        return None
    if key.kind == "ratio":
        try:
            ratio = float(text)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            return (f"Invalid value {value!r} for configuration {key.name}: must be a number "
                    "between 0 and 1.")
        return None
    if key.kind == "host:count list":
        try:
            parse_host_counts(text)
        except ValueError as e:
            return f"Invalid value {value!r} for configuration {key.name}: {e}."
        return None
    try:
        number = int(text)
    except ValueError:
        return f"Invalid value {value!r} for configuration {key.name}: not an integer."
    upper = _UPPER.get(key.name, _INT64_MAX)
    if key.minimum is not None and number < key.minimum or number > upper:
        return (f"Invalid value {value!r} for configuration {key.name}: must be between "
                f"{key.minimum} and {upper}.")
    return None


def refusal(name: str, value: str | None, per_broker: bool) -> str | None:
    """Why setting config `name` to `value` (None: deleting it) on a BROKER resource is
    refused (Kafka's INVALID_REQUEST), or None."""
    key = DYNAMIC_BROKER_KEYS_BY_NAME.get(name)
    if key is None:
        dynamic = ", ".join(sorted(DYNAMIC_BROKER_KEYS_BY_NAME))
        return (f"Cannot update these configs dynamically: {{{name}}}. Only these broker "
                f"configs can change at runtime: {dynamic}; change the others in the node's "
                "config file and restart it.")
    if per_broker and key.scope == CLUSTER_ONLY:
        return (f"Cannot update {name} per broker: the active controller applies it, so set "
                "it cluster-wide (broker resource name \"\").")
    return None if value is None else value_error(key, value)


def effective_cluster_default(configs: Mapping[str, str], name: str) -> str | None:
    """The cluster-wide dynamic value of `name` in the BROKER "" resource, if valid."""
    value = configs.get(name)
    key = DYNAMIC_BROKER_KEYS_BY_NAME.get(name)
    if value is None or key is None or value_error(key, value) is not None:
        return None
    return value.strip()

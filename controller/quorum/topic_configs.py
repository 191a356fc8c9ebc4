"""Validation of topic configs.

The log configs (retention, segments, cleanup policy, ...) belong to storage, which owns their
table and rules: `storage.LogConfig.from_kafka_configs` is the single validator. The
replication configs below are enforced by the controller, the partition leader and the
followers, not by the log, so they are checked here.
"""

from __future__ import annotations

from collections.abc import Mapping

from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.controller.metadata.throttled_replicas import (
    THROTTLED_REPLICAS_CONFIGS,
    throttled_replicas_error,
)
from odradek.controller.quorum.api import ApiError
from odradek.storage.errors import InvalidConfigError

MIN_INSYNC_REPLICAS = "min.insync.replicas"
UNCLEAN_LEADER_ELECTION = "unclean.leader.election.enable"
REPLICATION_CONFIGS = frozenset({MIN_INSYNC_REPLICAS, UNCLEAN_LEADER_ELECTION,
                                 *THROTTLED_REPLICAS_CONFIGS})


def _parse_bool(value: str) -> bool | None:
    # Kafka's ConfigDef BOOLEAN: "true"/"false", any case, surrounding spaces ignored.
    lowered = value.strip().lower()
    return {"true": True, "false": False}.get(lowered)


def _parse_int(value: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None


def _check_replication_config(name: str, value: str) -> None:
    if name == MIN_INSYNC_REPLICAS:
        parsed = _parse_int(value)
        if parsed is None or parsed < 1:
            raise ApiError(
                ErrorCode.invalid_config,
                f"Invalid value {value!r} for configuration {name}: must be an integer >= 1.",
            )
    elif name == UNCLEAN_LEADER_ELECTION and _parse_bool(value) is None:
        raise ApiError(
            ErrorCode.invalid_config,
            f"Invalid value {value!r} for configuration {name}: must be true or false.",
        )
    elif name in THROTTLED_REPLICAS_CONFIGS:
        error = throttled_replicas_error(name, value)
        if error is not None:
            raise ApiError(ErrorCode.invalid_config, error)


def validate_topic_configs(configs: Mapping[str, str]) -> None:
    """Raise ApiError(INVALID_CONFIG) unless `configs` is an acceptable set of topic overrides."""
    log_configs = {}
    for name, value in configs.items():
        if name in REPLICATION_CONFIGS:
            _check_replication_config(name, value)
        else:
            log_configs[name] = value
    try:
        storage.LogConfig.from_kafka_configs(log_configs)
    except InvalidConfigError as exc:
        raise ApiError(ErrorCode.invalid_config, str(exc)) from exc


def unclean_election_enabled(configs: Mapping[str, str]) -> bool:
    value = configs.get(UNCLEAN_LEADER_ELECTION)
    return value is not None and _parse_bool(value) is True


def min_insync_replicas(configs: Mapping[str, str]) -> int:
    value = configs.get(MIN_INSYNC_REPLICAS)
    parsed = _parse_int(value) if value is not None else None
    return parsed if parsed is not None and parsed >= 1 else 1


# Kafka's LIST-typed topic configs, the only ones APPEND and SUBTRACT apply to. storage's
# table holds names, defaults and ranges but not types; if it grows types, ask it instead.
LIST_TOPIC_CONFIGS = frozenset({"cleanup.policy", *THROTTLED_REPLICAS_CONFIGS})


def list_config_items(name: str, current: str | None) -> list[str] | None:
    """The items of list config `name` (its override, else its default), or None when the
    config is not a list."""
    if name not in LIST_TOPIC_CONFIGS:
        return None
    if current is None:
        # Like Kafka, APPEND/SUBTRACT on a config without override start from the default.
        current = storage.LogConfig().to_kafka_configs().get(name, "")
    return [item.strip() for item in current.split(",") if item.strip()]

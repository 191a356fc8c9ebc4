from __future__ import annotations

from pathlib import Path

import pytest

from odradek.broker.config import KEYS, ConfigError, config_docs, load_config, parse_config

BASE = {"node.id": 1, "data.dir": "/tmp/x"}


def test_defaults_work_out_of_the_box() -> None:
    cfg = parse_config(BASE, env={})
    assert cfg.node_id == 1
    assert cfg.listeners[0].port == 9092
    assert cfg["auto.create.topics.enable"] is True
    assert cfg.roles == ("broker", "controller")


@pytest.mark.parametrize("raw,fragment", [
    ({"node.id": -1}, "node.id: -1 is below the minimum 0"),
    ({"node.id": "x"}, "node.id: 'x' is not an integer"),
    ({"listeners": "localhost:9092"}, "listeners: 'localhost:9092' is not a listener"),
    ({"auto.create.topics.enable": "yes"}, "is not a boolean"),
    ({"process.roles": ["broker", "zookeeper"]}, "'zookeeper' is not a role"),
    ({"log.retention.msx": 5}, "did you mean log.retention.ms?"),
    ({"controller.quorum.voters": "1@host"}, "is not a voter"),
])
def test_errors_name_key_value_and_what_is_allowed(raw: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, **raw}, env={})
    assert fragment in str(e.value)


def test_required_keys() -> None:
    with pytest.raises(ConfigError, match="data.dir: required key is missing"):
        parse_config({"node.id": 1}, env={})


def test_environment_overrides() -> None:
    cfg = parse_config(BASE, env={"ODRADEK_LOG_RETENTION_MS": "5000", "ODRADEK_NUM_PARTITIONS": "3"})
    assert cfg["log.retention.ms"] == 5000 and cfg["num.partitions"] == 3
    with pytest.raises(ConfigError, match="ODRADEK_NO_SUCH_KEY"):
        parse_config(BASE, env={"ODRADEK_NO_SUCH_KEY": "1"})


def test_advertised_listeners_default_to_listeners() -> None:
    cfg = parse_config({**BASE, "listeners": "PLAINTEXT://0.0.0.0:9092,INTERNAL://0.0.0.0:19092",
                        "advertised.listeners": "PLAINTEXT://localhost:9092"}, env={})
    adv = {li.name: (li.host, li.port) for li in cfg.advertised_listeners}
    assert adv == {"PLAINTEXT": ("localhost", 9092), "INTERNAL": ("0.0.0.0", 19092)}


def test_yaml_errors(tmp_path: Path) -> None:
    p = tmp_path / "n.yaml"
    p.write_text("node.id: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})


def test_docs_list_every_key() -> None:
    docs = config_docs()
    for k in KEYS:
        assert f"`{k.name}`" in docs


def test_checked_in_docs_are_current() -> None:
    path = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
    assert path.read_text() == config_docs(), "run: odradek config docs > docs/configuration.md"


def test_topic_config_sources_tell_defaults_from_operator_settings() -> None:
    from odradek.broker.topic_configs import (
        DEFAULT_CONFIG,
        STATIC_BROKER_CONFIG,
        TOPIC_CONFIG,
        describe_topic,
    )

    cfg = parse_config({**BASE, "log.retention.ms": 5000}, env={})
    rows = {name: (value, source) for name, value, source, _, _ in
            describe_topic(cfg, {"segment.bytes": "1048576"})}
    assert rows["retention.ms"] == ("5000", STATIC_BROKER_CONFIG)
    assert rows["segment.bytes"] == ("1048576", TOPIC_CONFIG)
    assert rows["retention.bytes"] == ("-1", DEFAULT_CONFIG)
    assert rows["min.insync.replicas"] == ("1", DEFAULT_CONFIG)

from __future__ import annotations

import re
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
                        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
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


def test_dynamic_keys_are_node_keys_with_the_same_rules() -> None:
    """One table says which keys are dynamic (controller side); each must be a node config
    key whose file parser agrees with the controller's check at the edges."""
    from odradek.broker.config import KEYS_BY_NAME
    from odradek.controller.metadata.broker_configs import DYNAMIC_BROKER_KEYS, value_error

    for key in DYNAMIC_BROKER_KEYS:
        node_key = KEYS_BY_NAME[key.name]
        samples = ["true", "false", "yes", "x", "1.5", "10.0.0.5:3", "a:b"]
        if key.minimum is not None:
            samples += [str(key.minimum), str(key.minimum - 1)]
        if node_key.default != "":  # an empty optional key is not parsed (parse_config)
            samples.append(str(node_key.default).lower())
        for sample in samples:
            try:
                node_key.parse(key.name, sample)
                parsed = True
            except ConfigError:
                parsed = False
            if key.kind == "host:count list" and parsed:
                from odradek.broker.config import parse_ip_overrides

                try:
                    parse_ip_overrides(sample)
                except ConfigError:
                    parsed = False
            assert parsed == (value_error(key, sample) is None), (key.name, sample)


def test_dynamic_levels_precedence_and_sources() -> None:
    from odradek.broker.topic_configs import (
        DEFAULT_CONFIG,
        DYNAMIC_BROKER_CONFIG,
        DYNAMIC_DEFAULT_BROKER_CONFIG,
        STATIC_BROKER_CONFIG,
        BrokerConfigLevels,
        describe_broker,
        describe_topic,
    )

    static = parse_config({**BASE, "log.retention.ms": 5000, "max.connections": 50}, env={})
    levels = BrokerConfigLevels(static, cluster={"log.retention.ms": "6000", "max.connections": "40",
                                                 "auto.create.topics.enable": "false"},
                                own={"max.connections": "30"})
    eff = levels.effective
    assert (eff["max.connections"], eff["log.retention.ms"]) == (30, 6000)
    assert eff["auto.create.topics.enable"] is False
    assert eff["num.partitions"] == 1 and static["max.connections"] == 50
    assert levels.synonyms("max.connections") == [
        ("max.connections", "30", DYNAMIC_BROKER_CONFIG),
        ("max.connections", "40", DYNAMIC_DEFAULT_BROKER_CONFIG),
        ("max.connections", "50", STATIC_BROKER_CONFIG),
        ("max.connections", str(2**31 - 1), DEFAULT_CONFIG),
    ]
    rows = {name: (value, source) for name, value, source, _, _ in describe_broker(levels)}
    assert rows["max.connections"] == ("30", DYNAMIC_BROKER_CONFIG)
    assert rows["log.retention.ms"] == ("6000", DYNAMIC_DEFAULT_BROKER_CONFIG)
    assert rows["auto.create.topics.enable"] == ("false", DYNAMIC_DEFAULT_BROKER_CONFIG)
    assert rows["num.partitions"] == ("1", DEFAULT_CONFIG)
    # A key that is not dynamic is never taken from the image, whatever it holds.
    odd = BrokerConfigLevels(static, cluster={"node.id": "9"})
    assert odd.effective.node_id == static.node_id
    topic = {name: (value, source) for name, value, source, _, _ in describe_topic(levels, {})}
    assert topic["retention.ms"] == ("6000", DYNAMIC_DEFAULT_BROKER_CONFIG)
    assert topic["segment.bytes"][1] == DEFAULT_CONFIG


def test_replication_throttle_keys() -> None:
    """KIP-73: the two rates (unlimited by default, dynamic at both levels), the two static
    window keys, and the throttled-replica lists among the topic configs described."""
    from odradek.broker.topic_configs import (
        DEFAULT_CONFIG,
        DYNAMIC_BROKER_CONFIG,
        DYNAMIC_DEFAULT_BROKER_CONFIG,
        LIST,
        TOPIC_CONFIG,
        BrokerConfigLevels,
        describe_broker,
        describe_topic,
    )
    from odradek.controller.metadata.broker_configs import DYNAMIC_BROKER_KEYS_BY_NAME

    cfg = parse_config(BASE, env={})
    assert cfg["leader.replication.throttled.rate"] == cfg["follower.replication.throttled.rate"] \
        == 2**63 - 1
    assert (cfg["replication.quota.window.num"],
            cfg["replication.quota.window.size.seconds"]) == (11, 1)
    for key in ("replication.quota.window.num", "replication.quota.window.size.seconds"):
        assert key not in DYNAMIC_BROKER_KEYS_BY_NAME  # read-only in Kafka too
        with pytest.raises(ConfigError, match=f"{key}: 0 is below the minimum 1"):
            parse_config({**BASE, key: 0}, env={})
    levels = BrokerConfigLevels(cfg, cluster={"follower.replication.throttled.rate": "4000000"},
                                own={"leader.replication.throttled.rate": "2000000"})
    assert levels.effective["leader.replication.throttled.rate"] == 2_000_000
    rows = {name: (value, source) for name, value, source, _, _ in describe_broker(levels)}
    assert rows["leader.replication.throttled.rate"] == ("2000000", DYNAMIC_BROKER_CONFIG)
    assert rows["follower.replication.throttled.rate"] == ("4000000",
                                                           DYNAMIC_DEFAULT_BROKER_CONFIG)
    topic = {name: (value, source, ctype) for name, value, source, _, ctype in
             describe_topic(cfg, {"leader.replication.throttled.replicas": "0:1,1:2"})}
    assert topic["leader.replication.throttled.replicas"] == ("0:1,1:2", TOPIC_CONFIG, LIST)
    assert topic["follower.replication.throttled.replicas"] == ("", DEFAULT_CONFIG, LIST)


# --- listener security (issue 15) -----------------------------------------------------------

_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
         'username="b" password="bp" user_b="bp" user_alice="ap";')


@pytest.mark.parametrize("extra,message", [
    ({"listeners": "CLIENTS://127.0.0.1:9092"}, "listener CLIENTS has no security protocol"),
    ({"listeners": "SSL://127.0.0.1:9092"}, "listener SSL (SSL) needs a certificate"),
    ({"listeners": "SSL://127.0.0.1:9092", "ssl.keystore.location": "/k.pem",
      "ssl.client.auth": "required"}, "needs the CAs that sign client certificates"),
    ({"listeners": "SASL_PLAINTEXT://127.0.0.1:9092"},
     "GSSAPI is not supported by Odradek"),
    ({"listeners": "SASL_PLAINTEXT://127.0.0.1:9092", "sasl.enabled.mechanisms": "PLAIN"},
     "enables PLAIN but has no users"),
    ({"listeners": "SASL_PLAINTEXT://127.0.0.1:9092",
      "sasl.enabled.mechanisms": "SCRAM-SHA-256"},
     "sasl.mechanism.inter.broker.protocol is GSSAPI"),
    ({"listeners": "SASL_PLAINTEXT://127.0.0.1:9092", "sasl.enabled.mechanisms": "PLAIN",
      "sasl.mechanism.inter.broker.protocol": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config":
          'org.apache.kafka.common.security.plain.PlainLoginModule required user_a="x";'},
     "give this broker's own username and password"),
    ({"listener.name.sasl_plaintext.plain.sasl.jaas.config": "nonsense"},
     "listener.name.sasl_plaintext.plain.sasl.jaas.config"),
    ({"listeners": "SASL_PLAINTEXT://127.0.0.1:9092",
      "sasl.enabled.mechanisms": "OAUTHBEARER,SCRAM-SHA-256",
      "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER"},
     "a broker has no token of its own"),
    ({"listeners": "SASL_PLAINTEXT://127.0.0.1:9092",
      "sasl.enabled.mechanisms": "OAUTHBEARER,SCRAM-SHA-256",
      "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
      "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config":
          'org.apache.kafka.common.security.scram.ScramLoginModule required username="b" '
          'password="bp";',
      "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
          "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
          'unsecuredValidatorAllowableClockSkewMs="soon";'},
     "unsecuredValidatorAllowableClockSkewMs"),
    ({"listener.name.plaintext.log.retention.ms": "5"}, "cannot be set per listener"),
    ({"listener.name.plaintext.gssapi.sasl.jaas.config": "x"},
     "'gssapi' is not a supported SASL mechanism"),
    ({"listener.name.other.ssl.client.auth": "required"}, "there is no listener OTHER"),
    ({"authorizer.class.name": "kafka.security.authorizer.AclAuthorizer"},
     "is not an authorizer Odradek has"),
    ({"listener.security.protocol.map": "A:TLS"}, "'TLS' is not a security protocol"),
])
def test_security_misconfigurations_are_refused_with_what_to_do(extra: dict[str, str],
                                                                  message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({**BASE, **extra}, env={})


def test_listener_scoped_keys_override_global_ones() -> None:
    cfg = parse_config({
        **BASE,
        "listeners": "INTERNAL://127.0.0.1:9093,CLIENTS://127.0.0.1:9092",
        "listener.security.protocol.map": "INTERNAL:SASL_PLAINTEXT,CLIENTS:SASL_SSL",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "ssl.keystore.location": "/etc/k.pem",
        "listener.name.internal.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.internal.plain.sasl.jaas.config": _JAAS,
        "listener.name.clients.ssl.client.auth": "requested",
        "ssl.truststore.location": "/etc/ca.pem",
    }, env={})
    assert cfg.listener_value("INTERNAL", "sasl.enabled.mechanisms") == ("PLAIN",)
    assert cfg.listener_value("CLIENTS", "sasl.enabled.mechanisms") == ("SCRAM-SHA-512",)
    assert cfg.listener_value("CLIENTS", "ssl.client.auth") == "requested"
    assert cfg.listener_value("INTERNAL", "ssl.client.auth") == "none"
    assert cfg.plain_users("INTERNAL") == {"b": "bp", "alice": "ap"}
    assert cfg.plain_users("CLIENTS") == {}
    assert cfg.inter_broker_credentials() == ("b", "bp")
    assert cfg.security_protocol("CLIENTS") == "SASL_SSL"

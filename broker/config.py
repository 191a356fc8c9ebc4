"""Node configuration: one YAML file per node, validated key by key.

The table ``KEYS`` is the single source of truth: the loader validates against it and
docs/configuration.md is generated from it (``odradek config docs``), so they cannot drift.
Environment variables override file keys: ``ODRADEK_`` + the key upper-cased with dots as
underscores (``log.retention.ms`` -> ``ODRADEK_LOG_RETENTION_MS``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from odradek.controller.metadata.broker_configs import (
    DYNAMIC_BROKER_KEYS_BY_NAME,
    parse_host_counts,
)

if TYPE_CHECKING:
    from odradek.broker.security.oauthbearer import UnsecuredValidatorOptions


class ConfigError(Exception):
    """A bad node configuration; the message names the key, the value and what is allowed."""


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str, Any], int]:
    def parse(key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int | str):
            raise ConfigError(f"{key}: {v!r} is not an integer")
        try:
            n = int(v)
        except ValueError:
            raise ConfigError(f"{key}: {v!r} is not an integer") from None
        if lo is not None and n < lo:
            raise ConfigError(f"{key}: {n} is below the minimum {lo}")
        if hi is not None and n > hi:
            raise ConfigError(f"{key}: {n} is above the maximum {hi}")
        return n

    return parse


def _bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ConfigError(f"{key}: {v!r} is not a boolean (use true or false)")


def _str(key: str, v: Any) -> str:
    if not isinstance(v, str | int) or isinstance(v, bool) or str(v) == "":
        raise ConfigError(f"{key}: {v!r} is not a non-empty string")
    return str(v)


def _float(lo: float, hi: float | None = None) -> Callable[[str, Any], float]:
    def parse(key: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise ConfigError(f"{key}: {v!r} is not a number")
        try:
            n = float(v)
        except ValueError:
            raise ConfigError(f"{key}: {v!r} is not a number") from None
        if n != n or n < lo or (hi is not None and n > hi):
            raise ConfigError(f"{key}: {n} is outside [{lo}, {hi if hi is not None else 'inf'}]")
        return n

    return parse


def _cleanup_policy(key: str, v: Any) -> str:
    items = [i.strip() for i in (v.split(",") if isinstance(v, str) else v or [])]
    if not items or any(i not in ("delete", "compact") for i in items):
        raise ConfigError(f"{key}: {v!r} is not delete, compact or compact,delete")
    return ",".join(items)


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def parse(key: str, v: Any) -> str:
        if v not in allowed:
            raise ConfigError(f"{key}: {v!r} is not one of {', '.join(allowed)}")
        return str(v)

    return parse


def _roles(key: str, v: Any) -> tuple[str, ...]:
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(f"{key}: {v!r} must be a list of roles: broker, controller")
    roles = tuple(sorted({str(i).strip() for i in items}))
    bad = [r for r in roles if r not in ("broker", "controller")]
    if bad:
        raise ConfigError(f"{key}: {bad[0]!r} is not a role (allowed: broker, controller)")
    return roles


def parse_listeners(key: str, v: Any) -> tuple[Listener, ...]:
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(f"{key}: {v!r} must be a list like PLAINTEXT://127.0.0.1:9092")
    out = []
    for item in items:
        text = str(item).strip()
        name, sep, rest = text.partition("://")
        host, _, port = rest.rpartition(":")
        if not sep or not name or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(
                f"{key}: {text!r} is not a listener (expected NAME://host:port, "
                "e.g. PLAINTEXT://127.0.0.1:9092)"
            )
        out.append(Listener(name.upper(), host.strip("[]"), int(port)))
    names = [li.name for li in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{key}: listener names must be unique, got {names}")
    return tuple(out)


def parse_ip_overrides(text: str) -> dict[str, int]:
    """max.connections.per.ip.overrides: ``host:count,host:count``."""
    try:
        return parse_host_counts(text)
    except ValueError as e:
        raise ConfigError(f"max.connections.per.ip.overrides: {e}") from None


def _voters(key: str, v: Any) -> tuple[tuple[int, str, int], ...]:
    """controller.quorum.voters: ``1@host:port,2@host:port`` (Kafka's format)."""
    items = v.split(",") if isinstance(v, str) else v
    out = []
    for item in items or []:
        text = str(item).strip()
        if not text:
            continue
        ident, sep, addr = text.partition("@")
        host, _, port = addr.rpartition(":")
        if not sep or not ident.isdigit() or not port.isdigit() or not host:
            raise ConfigError(f"{key}: {text!r} is not a voter (expected id@host:port)")
        out.append((int(ident), host, int(port)))
    return tuple(out)


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
# Kafka's other mechanism: named so a Kafka configuration that enables it gets a clear
# refusal rather than "unknown mechanism".
_UNSUPPORTED_MECHANISMS = ("GSSAPI",)


def _protocol_map(key: str, v: Any) -> dict[str, str]:
    """listener.security.protocol.map: ``NAME:PROTOCOL,NAME:PROTOCOL``."""
    out: dict[str, str] = {}
    for item in str(v).split(","):
        name, sep, protocol = item.strip().partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"{key}: {item.strip()!r} is not NAME:PROTOCOL "
                              "(e.g. CLIENTS:SASL_SSL)")
        if protocol.strip().upper() not in SECURITY_PROTOCOLS:
            raise ConfigError(f"{key}: {protocol.strip()!r} is not a security protocol "
                              f"(allowed: {', '.join(SECURITY_PROTOCOLS)})")
        out[name.strip().upper()] = protocol.strip().upper()
    return out


def _list_of(*allowed: str) -> Callable[[str, Any], tuple[str, ...]]:
    def parse(key: str, v: Any) -> tuple[str, ...]:
        items = [str(i).strip() for i in (v.split(",") if isinstance(v, str) else v or [])]
        items = [i for i in items if i]
        bad = [i for i in items if i not in allowed]
        if bad:
            raise ConfigError(f"{key}: {bad[0]!r} is not one of {', '.join(allowed)}")
        return tuple(items)

    return parse


def _mechanisms(key: str, v: Any) -> tuple[str, ...]:
    items = _list_of(*SASL_MECHANISMS, *_UNSUPPORTED_MECHANISMS)(key, v)
    return tuple(i.upper() for i in items)


def _endpoint_identification(key: str, v: Any) -> str:
    if v in ("", None):
        return ""
    if str(v).lower() != "https":
        raise ConfigError(f"{key}: {v!r} is not https or empty (no host name check)")
    return "https"


_STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def _authorizer(key: str, v: Any) -> str:
    if v in ("", None):
        return ""
    if str(v) != _STANDARD_AUTHORIZER:
        raise ConfigError(f"{key}: {v!r} is not an authorizer Odradek has: use "
                          f"{_STANDARD_AUTHORIZER} (Kafka's KRaft authorizer; ACLs live in "
                          "the cluster metadata) or leave it empty")
    return str(v)


def _principal_rules(key: str, v: Any) -> str:
    from odradek.broker.security.principal_mapping import parse_rules

    text = _str(key, v)
    try:
        parse_rules(text)
    except ValueError as e:
        raise ConfigError(f"{key}: {e} (rules are DEFAULT or RULE:pattern/replacement/[LU], "
                          "comma separated)") from None
    return text


def _any_str(key: str, v: Any) -> str:
    """An optional string that may be empty (a password, a PEM text)."""
    if v is None:
        return ""
    if not isinstance(v, str | int) or isinstance(v, bool):
        raise ConfigError(f"{key}: {v!r} is not a string")
    return str(v)


def _path(key: str, v: Any) -> Path:
    return Path(_str(key, v))


def _log_level(key: str, v: Any) -> str:
    return _choice("DEBUG", "INFO", "WARNING", "ERROR")(key, str(v).upper())


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    parse: Callable[[str, Any], Any]
    default: Any
    doc: str
    allowed: str = ""


_MB = 1024 * 1024
KEYS: tuple[Key, ...] = (
    Key("node.id", _int(0, 2**31 - 1), None, "Unique id of this node (required).", ">= 0"),
    Key("process.roles", _roles, "broker,controller", "Roles of this node.", "broker, controller"),
    Key("data.dir", _path, None, "Directory for partition logs and metadata (required).", "path"),
    Key("listeners", parse_listeners, "PLAINTEXT://127.0.0.1:9092",
        "Kafka listeners this node binds, NAME://host:port, comma separated.", "listener list"),
    Key("advertised.listeners", parse_listeners, None,
        "Addresses given to clients per listener name; defaults to `listeners`.",
        "listener list"),
    Key("controller.listener", _str, "127.0.0.1:9093",
        "host:port of the controller quorum gRPC endpoint.", "host:port"),
    Key("controller.listener.names", _str, "CONTROLLER",
        "Name of the controller listener (controller.listener) in "
        "listener.security.protocol.map: absent there = PLAINTEXT; SSL = TLS with mutual "
        "authentication for Raft and for brokers' registration, heartbeats and metadata "
        "(ssl.* settings, also as listener.name.<name>.ssl.*).", "listener name"),
    Key("controller.quorum.voters", _voters, "",
        "Controller voters, id@host:port comma separated; empty = single-node metadata log.",
        "id@host:port list"),
    Key("cluster.id", _str, "",
        "Cluster id shared by all nodes; empty = derived from controller.quorum.voters.",
        "string"),
    Key("controller.quorum.election.timeout.ms", _int(200), 1000,
        "Raft election timeout of the controllers (randomized up to twice this).", ">= 200"),
    Key("metadata.snapshot.interval.records", _int(100), 10_000,
        "Controllers snapshot the metadata image after this many records.", ">= 100"),
    Key("broker.session.timeout.ms", _int(100), 2000,
        "A broker whose heartbeats stop for this long is fenced and loses its leaderships.",
        ">= 100"),
    Key("broker.heartbeat.interval.ms", _int(10), 500,
        "How often a broker heartbeats to the active controller.", ">= 10"),
    Key("broker.session.disconnect.grace.ms", _int(0), 300,
        "A broker process holds a stream open to the active controller; when the stream "
        "closes (the process died, its connections closed by the kernel) and no new one opens "
        "within this time, the broker is fenced without waiting for "
        "broker.session.timeout.ms. If its inter-broker listener refuses a connection "
        "meanwhile (nothing listens: the process is gone), its leaderships move at once and "
        "it stays listed, leading nothing, until its session timeout. A paused or cut-off "
        "broker closes nothing: its session timeout still applies. 0 = only the session "
        "timeout.",
        ">= 0"),
    Key("controlled.shutdown.timeout.ms", _int(0), 30_000,
        "On SIGTERM, how long a broker waits for its leaderships to move away.", ">= 0"),
    Key("auto.leader.rebalance.enable", _bool, True,
        "The active controller moves leadership back to preferred replicas that are in sync.",
        "true, false"),
    Key("leader.imbalance.check.interval.seconds", _int(1), 30,
        "How often the preferred-leader check runs (Kafka's default is 300).", ">= 1"),
    Key("metrics.listener", _str, "", "host:port for the Prometheus /metrics endpoint; empty = off.",
        "host:port"),
    Key("rack", _str, "", "Rack id of this broker (rack-aware replica placement).", "string"),
    Key("num.partitions", _int(1), 1, "Partitions of auto-created topics.", ">= 1"),
    Key("default.replication.factor", _int(1), 1, "Replication factor of auto-created topics.",
        ">= 1"),
    Key("min.insync.replicas", _int(1), 1,
        "min.insync.replicas given to new topics that do not set it (capped at their "
        "replication factor); stored in the topic's config, so every node agrees on it.",
        ">= 1"),
    Key("unstable.api.versions.enable", _bool, False,
        "Also serve the API versions Kafka marks unstable (OffsetCommit and OffsetFetch v10, "
        "topics by id): their schema may change in a later Kafka, so clients that speak it "
        "may not agree with this node. For testing, as in Kafka.", "true, false"),
    Key("auto.create.topics.enable", _bool, True,
        "Create a topic when a client asks for metadata of an unknown one.", "true, false"),
    Key("socket.request.max.bytes", _int(1024), 100 * _MB,
        "Largest request frame accepted; larger ones close the connection.", ">= 1024"),
    Key("queued.max.request.bytes", _int(-1), 256 * _MB,
        "Bytes of received requests, node-wide, that may wait to be handled; a connection "
        "whose next request does not fit is not read until it does. -1 = no bound (Kafka's "
        "default); must not be below socket.request.max.bytes.", "-1 or >= socket.request.max.bytes"),
    Key("max.connection.creation.rate", _int(1), 2**31 - 1,
        "Connections per second the node accepts over all listeners but the inter-broker "
        "one (KIP-612); listener.name.<listener>.max.connection.creation.rate limits one "
        "listener on its own. Over it, the listener accepts nothing until the rate is back "
        "under: new clients wait, connected ones are not affected.", ">= 1"),
    Key("max.connections", _int(1), 2**31 - 1,
        "Most Kafka connections a node accepts; more are closed at once. Connections on the "
        "inter-broker listener are not counted when it is a listener of its own.", ">= 1"),
    Key("max.connections.per.ip", _int(1), 2**31 - 1,
        "Most Kafka connections from one IP address; more are closed at once.", ">= 1"),
    Key("max.connections.per.ip.overrides", _str, "",
        "Per-address exceptions to max.connections.per.ip, host:count comma separated.",
        "host:count list"),
    Key("connections.max.idle.ms", _int(100), 600_000,
        "A Kafka connection with no traffic for this long is closed.", ">= 100"),
    Key("socket.send.buffer.bytes", _int(-1), 102400,
        "SO_SNDBUF of the Kafka listeners' connections; -1 = the OS default (autotuned).",
        ">= -1"),
    Key("message.max.bytes", _int(1), 1048588, "Largest record batch a topic accepts (default).",
        ">= 1"),
    Key("fetch.max.bytes", _int(1024), 55 * _MB, "Upper bound for one fetch response.", ">= 1024"),
    Key("log.segment.bytes", _int(14), 1024 * _MB, "Segment size before rolling.", ">= 14"),
    Key("log.roll.ms", _int(1), 7 * 24 * 3600 * 1000, "Segment age before rolling.", ">= 1"),
    Key("log.retention.ms", _int(-1), 7 * 24 * 3600 * 1000,
        "Delete segments older than this; -1 keeps forever.", ">= -1"),
    Key("log.retention.bytes", _int(-1), -1, "Per-partition size limit; -1 = none.", ">= -1"),
    Key("log.retention.check.interval.ms", _int(10), 300_000,
        "How often retention runs.", ">= 10"),
    Key("log.flush.interval.messages", _int(1), 2**63 - 1,
        "fsync after this many messages (default: leave it to the OS and replication).", ">= 1"),
    Key("log.flush.interval.ms", _int(1), 2**63 - 1, "fsync at least this often.", ">= 1"),
    Key("log.flush.scheduler.interval.ms", _int(10), 1000,
        "How often the flush policy is checked.", ">= 10"),
    Key("log.cleanup.policy", _cleanup_policy, "delete",
        "Cleanup policy of topics without their own cleanup.policy.",
        "delete, compact, compact,delete"),
    Key("log.cleaner.enable", _bool, True,
        "Run the log cleaner, which compacts the topics with cleanup.policy=compact "
        "(__consumer_offsets among them).", "true, false"),
    Key("log.cleaner.threads", _int(1, 64), 1,
        "Logs cleaned at once, each in a worker process (processes, not threads: cleaning "
        "is Python work that must not hold the event loop's interpreter lock).", "1..64"),
    Key("log.cleaner.io.max.bytes.per.second", _float(1.0), float("inf"),
        "Bytes per second each cleaning may read and write together.", "> 0"),
    Key("log.cleaner.dedupe.buffer.size", _int(1024 * 1024), 128 * _MB,
        "Memory for a cleaning's key -> offset map, shared by the worker processes; a "
        "log with more distinct keys in its dirty part is cleaned in several passes.",
        ">= 1048576"),
    Key("log.cleaner.backoff.ms", _int(10), 15_000,
        "Pause between the cleaner's looks at the logs when none needs cleaning.", ">= 10"),
    Key("log.cleaner.min.cleanable.ratio", _float(0.0, 1.0), 0.5,
        "Default min.cleanable.dirty.ratio: the share of a log's bytes that must be "
        "uncleaned before it is cleaned.", "0..1"),
    Key("log.cleaner.delete.retention.ms", _int(0), 24 * 3600 * 1000,
        "Default delete.retention.ms: how long tombstones stay readable once cleaned.",
        ">= 0"),
    Key("log.cleaner.min.compaction.lag.ms", _int(0), 0,
        "Default min.compaction.lag.ms: records younger than this are not compacted.",
        ">= 0"),
    Key("log.cleaner.max.compaction.lag.ms", _int(1), 2**63 - 1,
        "Default max.compaction.lag.ms: a record older than this is compacted even if "
        "the log is not dirty enough.", ">= 1"),
    Key("listener.security.protocol.map", _protocol_map,
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        "Security protocol of each listener name, NAME:PROTOCOL comma separated.",
        "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    Key("ssl.keystore.type", _choice("PEM"), "PEM",
        "Format of the key store: PEM (Java key stores are not read; convert them with "
        "openssl).", "PEM"),
    Key("ssl.keystore.location", _any_str, "",
        "PEM file holding this node's private key and certificate chain.", "path"),
    Key("ssl.keystore.certificate.chain", _any_str, "",
        "This node's certificate chain as PEM text (instead of ssl.keystore.location).",
        "PEM"),
    Key("ssl.keystore.key", _any_str, "",
        "This node's private key as PEM text (with ssl.keystore.certificate.chain).", "PEM"),
    Key("ssl.key.password", _any_str, "", "Password of an encrypted private key.", "string"),
    Key("ssl.truststore.type", _choice("PEM"), "PEM", "Format of the trust store.", "PEM"),
    Key("ssl.truststore.location", _any_str, "",
        "PEM file of the CA certificates trusted for peers (clients with ssl.client.auth, "
        "other brokers as a client).", "path"),
    Key("ssl.truststore.certificates", _any_str, "",
        "Trusted CA certificates as PEM text (instead of ssl.truststore.location).", "PEM"),
    Key("ssl.client.auth", _choice("none", "requested", "required"), "none",
        "Mutual TLS: whether clients must (required) or may (requested) present a "
        "certificate; its subject becomes the principal.", "none, requested, required"),
    Key("ssl.principal.mapping.rules", _principal_rules, "DEFAULT",
        "Mutual TLS: how a client certificate's subject becomes the principal's name, "
        "Kafka's rules tried in order (RULE:pattern/replacement/[LU] or DEFAULT, the "
        "subject itself); a subject no rule applies to is refused.", "rules"),
    Key("ssl.enabled.protocols", _list_of("TLSv1.2", "TLSv1.3"), "TLSv1.2,TLSv1.3",
        "TLS versions accepted.", "TLSv1.2, TLSv1.3"),
    Key("ssl.cipher.suites", _any_str, "",
        "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's); empty = defaults.",
        "cipher list"),
    Key("ssl.endpoint.identification.algorithm", _endpoint_identification, "https",
        "As a client of another broker: check that its certificate names the host "
        "connected to (https), or not (empty).", "https or empty"),
    Key("sasl.enabled.mechanisms", _mechanisms, "GSSAPI",
        "SASL mechanisms SASL listeners offer. Kafka's default, GSSAPI, is not supported: "
        "a SASL listener needs PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and/or OAUTHBEARER "
        "(unsecured tokens only: development) here.",
        "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"),
    Key("sasl.mechanism.inter.broker.protocol", _choice(*SASL_MECHANISMS, "GSSAPI"), "GSSAPI",
        "Mechanism a broker authenticates with to another one when the inter-broker "
        "listener uses SASL (its credentials: the username and password of that listener's "
        "sasl.jaas.config).", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    Key("connections.max.reauth.ms", _int(0), 0,
        "SASL sessions last this long; a client re-authenticates on the same connection "
        "(KIP-368) or it is closed at its next request. 0 = sessions never expire.", ">= 0"),
    Key("connection.failed.authentication.delay.ms", _int(0), 100,
        "A failed authentication is answered, and its connection closed, after this delay, "
        "which slows password guessing.", ">= 0"),
    Key("authorizer.class.name", _authorizer, "",
        "The ACL authorizer: org.apache.kafka.metadata.authorizer.StandardAuthorizer "
        "enforces the ACLs in the cluster metadata; empty = no authorization (every "
        "request allowed, ACL APIs answer SECURITY_DISABLED).",
        "empty or org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
    Key("super.users", _any_str, "",
        "Principals allowed everything, semicolon separated (User:admin;User:broker). "
        "Brokers act as their inter-broker listener's principal, which belongs here when "
        "the authorizer is on.", "principal list"),
    Key("allow.everyone.if.no.acl.found", _bool, False,
        "With the authorizer on: whether a resource no ACL names is open to everyone.",
        "true, false"),
    Key("inter.broker.listener.name", _str, "",
        "Listener other brokers use to fetch from this one; empty = the first listener.",
        "listener name"),
    Key("replica.lag.time.max.ms", _int(10), 30_000,
        "A follower that has not caught up for this long leaves the ISR.", ">= 10"),
    Key("replica.fetch.wait.max.ms", _int(1), 500, "Longest a follower fetch waits for data.",
        ">= 1"),
    Key("replica.fetch.max.bytes", _int(1024), _MB, "Bytes per partition in a follower fetch.",
        ">= 1024"),
    Key("replica.fetch.response.max.bytes", _int(1024), 10 * _MB,
        "Bytes in one follower fetch response.", ">= 1024"),
    Key("leader.replication.throttled.rate", _int(0, 2**63 - 1), 2**63 - 1,
        "Bytes per second this broker sends as a leader, over the replicas named in their "
        "topic's leader.replication.throttled.replicas, to followers that are not in the "
        "ISR (KIP-73, e.g. kafka-reassign-partitions.sh --throttle); over it, those "
        "partitions are left out of such follower fetches. The default does not throttle. "
        "Keep it above 1 MB/s: one fetch may carry replica.fetch.max.bytes per partition.",
        ">= 0"),
    Key("follower.replication.throttled.rate", _int(0, 2**63 - 1), 2**63 - 1,
        "Bytes per second this broker fetches as a follower for the replicas named in their "
        "topic's follower.replication.throttled.replicas while they are not in sync "
        "(KIP-73); over it, those partitions are left out of its fetches. The default does "
        "not throttle.", ">= 0"),
    Key("replication.quota.window.num", _int(1), 11,
        "Samples the replication throttles measure their rate over.", ">= 1"),
    Key("replication.quota.window.size.seconds", _int(1), 1,
        "Length of each sample of the replication throttles' rate.", ">= 1"),
    Key("max.incremental.fetch.session.cache.slots", _int(0), 1000,
        "Fetch sessions (KIP-227) this broker keeps; a full cache answers new fetchers "
        "without a session (full requests each time). 0 = no sessions.", ">= 0"),
    Key("min.incremental.fetch.session.eviction.ms", _int(0), 120_000,
        "A fetch session unused this long may be evicted for a new one; a newer one only "
        "for a follower's (privileged) or a larger session, as in Kafka.", ">= 0"),
    Key("offsets.topic.num.partitions", _int(1, 1000), 50,
        "Partitions of __consumer_offsets.", "1..1000"),
    Key("offsets.topic.replication.factor", _int(1), 3,
        "Replication factor of __consumer_offsets (capped to the brokers present).", ">= 1"),
    Key("offsets.topic.segment.bytes", _int(14), 100 * _MB,
        "segment.bytes of __consumer_offsets: smaller segments are compacted sooner.",
        ">= 14"),
    Key("transaction.state.log.num.partitions", _int(1, 1000), 50,
        "Partitions of __transaction_state.", "1..1000"),
    Key("transaction.state.log.replication.factor", _int(1), 3,
        "Replication factor of __transaction_state (capped to the brokers present).", ">= 1"),
    Key("transaction.state.log.min.isr", _int(1), 2,
        "min.insync.replicas of __transaction_state (capped to its replication factor).",
        ">= 1"),
    Key("transaction.state.log.segment.bytes", _int(14), 100 * _MB,
        "segment.bytes of __transaction_state: smaller segments are compacted sooner.",
        ">= 14"),
    Key("transaction.max.timeout.ms", _int(1), 900_000,
        "Largest transaction.timeout.ms a producer may ask for; InitProducerId with a "
        "larger one is refused (INVALID_TRANSACTION_TIMEOUT).", ">= 1"),
    Key("transactional.id.expiration.ms", _int(1), 7 * 24 * 3600 * 1000,
        "A transactional id without a transaction for this long is removed.", ">= 1"),
    Key("transaction.abort.timed.out.transaction.cleanup.interval.ms", _int(1), 10_000,
        "How often transactions past their timeout are looked for and aborted.", ">= 1"),
    Key("transaction.remove.expired.transaction.cleanup.interval.ms", _int(1), 3_600_000,
        "How often expired transactional ids are looked for and removed.", ">= 1"),
    Key("offsets.retention.minutes", _int(1), 7 * 24 * 60,
        "Committed offsets of empty groups are kept this long.", ">= 1"),
    Key("group.initial.rebalance.delay.ms", _int(0), 3000,
        "Wait for more members before the first rebalance of an empty group.", ">= 0"),
    Key("group.min.session.timeout.ms", _int(1), 6000, "Smallest session timeout allowed.",
        ">= 1"),
    Key("group.max.session.timeout.ms", _int(1), 1_800_000, "Largest session timeout allowed.",
        ">= 1"),
    Key("group.max.size", _int(1), 2**31 - 1, "Most members one group may have.", ">= 1"),
    Key("group.consumer.session.timeout.ms", _int(1), 45_000,
        "Consumer group protocol (KIP-848): a member that sends no heartbeat for this long "
        "is removed and its partitions go to the others.", ">= 1"),
    Key("group.consumer.heartbeat.interval.ms", _int(1), 5_000,
        "Consumer group protocol (KIP-848): how often members are told to heartbeat.", ">= 1"),
    Key("group.consumer.max.size", _int(1), 2**31 - 1,
        "Consumer group protocol (KIP-848): most members one group may have; more are "
        "refused with GROUP_MAX_SIZE_REACHED.", ">= 1"),
    Key("log.level", _log_level, "INFO", "Log level.", "DEBUG, INFO, WARNING, ERROR"),
)
KEYS_BY_NAME: Mapping[str, Key] = {k.name: k for k in KEYS}
# Kafka's PASSWORD-typed keys: DescribeConfigs says they are set, never what they hold.
SENSITIVE_KEYS = frozenset({"ssl.key.password", "ssl.keystore.key",
                            "ssl.keystore.certificate.chain", "ssl.truststore.certificates"})
REQUIRED = ("node.id", "data.dir")


@dataclass(frozen=True)
class NodeConfig:
    values: Mapping[str, Any]
    source: Path | None = None
    # Keys the file or the environment set; the rest are defaults.
    explicit: frozenset[str] = frozenset()

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def node_id(self) -> int:
        return int(self.values["node.id"])

    @property
    def data_dir(self) -> Path:
        return Path(self.values["data.dir"])

    @property
    def listeners(self) -> tuple[Listener, ...]:
        listeners: tuple[Listener, ...] = self.values["listeners"]
        return listeners

    @property
    def advertised_listeners(self) -> tuple[Listener, ...]:
        adv = self.values["advertised.listeners"]
        if adv is None:
            return self.listeners
        by_name = {li.name: li for li in adv}
        return tuple(by_name.get(li.name, li) for li in self.listeners)

    @property
    def roles(self) -> tuple[str, ...]:
        roles: tuple[str, ...] = self.values["process.roles"]
        return roles

    @property
    def controller_listener_name(self) -> str:
        return str(self.values["controller.listener.names"]).split(",")[0].strip().upper()

    @property
    def inter_broker_listener(self) -> str:
        return str(self.values["inter.broker.listener.name"] or self.listeners[0].name)

    def security_protocol(self, listener: str) -> str:
        return str(self.values["listener.security.protocol.map"][listener])

    def _scoped(self, listener: str) -> Mapping[str, Any]:
        """A listener's ``listener.name.<listener>.*`` values, by key."""
        scoped: Mapping[str, Any] = self.values.get(LISTENER_OVERRIDES, {}).get(listener, {})
        return scoped

    def listener_value(self, listener: str, key: str) -> Any:
        """``key`` for one listener: its ``listener.name.<listener>.<key>``, else ``key``."""
        scoped = self._scoped(listener)
        return scoped[key] if key in scoped else self.values[key]

    def listener_override(self, listener: str, key: str) -> Any:
        """``listener.name.<listener>.<key>`` alone (None when not set): for the keys whose
        listener-scoped value is a limit of its own beside the node-wide one."""
        return self._scoped(listener).get(key)

    def jaas_config(self, listener: str, mechanism: str) -> str:
        return str(self._scoped(listener).get(f"{mechanism.lower()}.{JAAS_KEY}", ""))

    def oauthbearer_options(self, listener: str) -> UnsecuredValidatorOptions:
        """The unsecured token validator's options of a listener, from its
        OAuthBearerLoginModule entry (defaults without one); ValueError when invalid."""
        from odradek.broker.security.jaas import parse_jaas_config
        from odradek.broker.security.oauthbearer import UnsecuredValidatorOptions

        text = self.jaas_config(listener, "OAUTHBEARER")
        options: dict[str, str] = {}
        for entry in parse_jaas_config(text) if text else []:
            options.update(entry.options)
        return UnsecuredValidatorOptions.from_jaas(options)

    def plain_users(self, listener: str) -> dict[str, str]:
        """The PLAIN users of a listener: ``user_<name>="<password>"`` of its JAAS entry."""
        from odradek.broker.security.jaas import parse_jaas_config, plain_users

        text = self.jaas_config(listener, "PLAIN")
        return plain_users(parse_jaas_config(text)) if text else {}

    def inter_broker_credentials(self) -> tuple[str, str] | None:
        """This broker's username and password towards the others, when they use SASL."""
        from odradek.broker.security.jaas import client_credentials, parse_jaas_config

        mechanism = self.values["sasl.mechanism.inter.broker.protocol"]
        text = self.jaas_config(self.inter_broker_listener, mechanism)
        return client_credentials(parse_jaas_config(text)) if text else None


def with_dynamic(static: NodeConfig, *levels: Mapping[str, str]) -> NodeConfig:
    """`static` with the dynamic broker configs of `levels` over it, lowest precedence first
    (the cluster-wide default, then this broker's own). Values the controller accepted
    always parse; one that does not (a record from a newer version) is skipped."""
    values = dict(static.values)
    for level in levels:
        for name, value in level.items():
            if name in DYNAMIC_BROKER_KEYS_BY_NAME and name in KEYS_BY_NAME:
                if value.strip() == "" and KEYS_BY_NAME[name].default == "":
                    values[name] = ""  # an empty list, e.g. no per-IP overrides
                    continue
                try:
                    values[name] = KEYS_BY_NAME[name].parse(name, value.strip())
                except ConfigError:
                    continue
    return NodeConfig(values, static.source, static.explicit)


def parse_config(raw: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                 source: Path | None = None) -> NodeConfig:
    """Validate raw key/values (from YAML) plus ODRADEK_* environment overrides."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the configuration must be a mapping of keys to values, got {raw!r}")
    merged: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        listener_key = _LISTENER_KEY.fullmatch(str(key))
        if listener_key is not None:
            name, rest = listener_key.group(1).upper(), listener_key.group(2)
            scoped.setdefault(name, {})[rest] = _parse_scoped(str(key), rest, value)
            continue
        if key not in KEYS_BY_NAME:
            raise ConfigError(f"{key}: unknown configuration key{_suggest(str(key))}")
        merged[key] = value
    for env_key, value in (env if env is not None else os.environ).items():
        if env_key.startswith("ODRADEK_") and env_key not in _ENV_IGNORED:
            key = env_key[len("ODRADEK_"):].lower().replace("_", ".")
            if key not in KEYS_BY_NAME:
                raise ConfigError(f"{env_key}: environment override names no configuration key"
                                  f"{_suggest(key)}")
            merged[key] = value
    values: dict[str, Any] = {}
    for k in KEYS:
        if k.default == "" and merged.get(k.name) in (None, ""):
            # Optional and unset: plain strings stay empty, structured values parse "".
            values[k.name] = "" if k.parse is _str else k.parse(k.name, "")
        elif k.name in merged and merged[k.name] is not None:
            values[k.name] = k.parse(k.name, merged[k.name])
        elif k.name in REQUIRED:
            raise ConfigError(f"{k.name}: required key is missing ({k.doc})")
        else:
            values[k.name] = k.parse(k.name, k.default) if k.default is not None else None
    queued = values["queued.max.request.bytes"]
    if 0 <= queued < values["socket.request.max.bytes"]:
        raise ConfigError(
            f"queued.max.request.bytes ({queued}) must not be below socket.request.max.bytes "
            f"({values['socket.request.max.bytes']}): a largest request could never be read")
    parse_ip_overrides(values["max.connections.per.ip.overrides"])
    if values["group.min.session.timeout.ms"] > values["group.max.session.timeout.ms"]:
        raise ConfigError("group.min.session.timeout.ms must not exceed "
                          "group.max.session.timeout.ms")
    if values["group.consumer.heartbeat.interval.ms"] >= \
            values["group.consumer.session.timeout.ms"]:
        raise ConfigError("group.consumer.heartbeat.interval.ms must be less than "
                          "group.consumer.session.timeout.ms")
    values[LISTENER_OVERRIDES] = scoped
    config = NodeConfig(values, source, frozenset(merged))
    _check_security(config)
    return config


# Kafka's listener-scoped keys: ``listener.name.<listener>.<key>`` overrides ``<key>`` for
# that listener only; SASL's JAAS configuration exists only in this form, per mechanism:
# ``listener.name.<listener>.<mechanism>.sasl.jaas.config``.
_LISTENER_KEY = re.compile(r"listener\.name\.([A-Za-z0-9_-]+)\.(.+)")
LISTENER_SCOPED = frozenset({
    "ssl.keystore.type", "ssl.keystore.location", "ssl.keystore.certificate.chain",
    "ssl.keystore.key", "ssl.key.password", "ssl.truststore.type", "ssl.truststore.location",
    "ssl.truststore.certificates", "ssl.client.auth", "ssl.enabled.protocols",
    "ssl.cipher.suites", "ssl.principal.mapping.rules", "sasl.enabled.mechanisms",
    "connections.max.reauth.ms", "max.connection.creation.rate",
})
JAAS_KEY = "sasl.jaas.config"
# Where the listener-scoped values live in NodeConfig.values: {LISTENER: {key: value}}.
LISTENER_OVERRIDES = "listener.name"


def _parse_scoped(full_key: str, key: str, value: Any) -> Any:
    if key in LISTENER_SCOPED:
        return KEYS_BY_NAME[key].parse(full_key, value)
    mechanism, _, rest = key.partition(".")
    if rest == JAAS_KEY and mechanism.upper() in SASL_MECHANISMS:
        from odradek.broker.security.jaas import parse_jaas_config

        text = _any_str(full_key, value)
        try:
            parse_jaas_config(text)
        except ValueError as e:
            raise ConfigError(f"{full_key}: {e}") from None
        return text
    if rest == JAAS_KEY:
        raise ConfigError(f"{full_key}: {mechanism!r} is not a supported SASL mechanism "
                          f"(allowed: {', '.join(m.lower() for m in SASL_MECHANISMS)})")
    raise ConfigError(f"{full_key}: {key!r} cannot be set per listener (listener-scoped "
                      f"keys: {', '.join(sorted(LISTENER_SCOPED))}, and "
                      f"<mechanism>.{JAAS_KEY})")


def _check_security(config: NodeConfig) -> None:
    """What Kafka checks of listeners' security at start-up, with what to do about it."""
    names = [li.name for li in config.listeners] + [li.name for li in
                                                     config.advertised_listeners]
    protocols = config["listener.security.protocol.map"]
    for name in names:
        if name not in protocols:
            raise ConfigError(
                f"listeners: listener {name} has no security protocol: add {name}:PLAINTEXT "
                "(or SSL, SASL_PLAINTEXT, SASL_SSL) to listener.security.protocol.map")
    for name in config[LISTENER_OVERRIDES]:
        if name not in {li.name for li in config.listeners} | {
                config.controller_listener_name}:
            raise ConfigError(f"listener.name.{name.lower()}.*: there is no listener {name} "
                              "in listeners")
    for li in config.listeners:
        protocol = config.security_protocol(li.name)
        if protocol in ("SSL", "SASL_SSL"):
            keystore = config.listener_value(li.name, "ssl.keystore.location")
            inline = (config.listener_value(li.name, "ssl.keystore.certificate.chain"),
                      config.listener_value(li.name, "ssl.keystore.key"))
            if not keystore and not all(inline):
                raise ConfigError(
                    f"listener {li.name} ({protocol}) needs a certificate: set "
                    "ssl.keystore.location (a PEM file with the key and the certificate "
                    "chain) or ssl.keystore.certificate.chain and ssl.keystore.key, "
                    f"globally or as listener.name.{li.name.lower()}.ssl.*")
            auth = config.listener_value(li.name, "ssl.client.auth")
            trusted = (config.listener_value(li.name, "ssl.truststore.location")
                       or config.listener_value(li.name, "ssl.truststore.certificates"))
            if auth != "none" and not trusted:
                raise ConfigError(
                    f"listener {li.name}: ssl.client.auth={auth} needs the CAs that sign "
                    "client certificates: set ssl.truststore.location")
        if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            mechanisms = config.listener_value(li.name, "sasl.enabled.mechanisms")
            unsupported = [m for m in mechanisms if m not in SASL_MECHANISMS]
            if unsupported or not mechanisms:
                raise ConfigError(
                    f"listener {li.name} ({protocol}): sasl.enabled.mechanisms is "
                    f"{','.join(mechanisms) or 'empty'}; {', '.join(unsupported) or 'none'} "
                    "is not supported by Odradek: set it to PLAIN, SCRAM-SHA-256, "
                    "SCRAM-SHA-512 and/or OAUTHBEARER")
            if "OAUTHBEARER" in mechanisms:
                try:
                    config.oauthbearer_options(li.name)
                except ValueError as e:
                    raise ConfigError(f"listener.name.{li.name.lower()}.oauthbearer."
                                      f"{JAAS_KEY}: {e}") from None
            if "PLAIN" in mechanisms and not config.plain_users(li.name):
                raise ConfigError(
                    f"listener {li.name} enables PLAIN but has no users: set "
                    f"listener.name.{li.name.lower()}.plain.sasl.jaas.config to "
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    'user_<name>="<password>" ...;')
    inter = config["inter.broker.listener.name"] or config.listeners[0].name
    if config.security_protocol(inter) in ("SASL_PLAINTEXT", "SASL_SSL"):
        mechanism = config["sasl.mechanism.inter.broker.protocol"]
        if mechanism == "OAUTHBEARER":
            raise ConfigError(
                "sasl.mechanism.inter.broker.protocol is OAUTHBEARER: a broker has no token "
                "of its own to present to others; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 "
                "between brokers (clients may still use OAUTHBEARER)")
        if mechanism not in config.listener_value(inter, "sasl.enabled.mechanisms"):
            raise ConfigError(
                f"sasl.mechanism.inter.broker.protocol is {mechanism}, which the "
                f"inter-broker listener {inter} does not enable (sasl.enabled.mechanisms): "
                "set it to one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 that it enables")
        if config.inter_broker_credentials() is None:
            raise ConfigError(
                f"the inter-broker listener {inter} uses SASL: give this broker's own "
                f"username and password in listener.name.{inter.lower()}."
                f"{mechanism.lower()}.{JAAS_KEY} (username=\"...\" password=\"...\")")


# Variables of the same prefix that are not configuration keys.
_ENV_IGNORED = frozenset({"ODRADEK_SIM_SEED", "ODRADEK_SIM_SEEDS", "ODRADEK_TEST_KEEP",
                          "ODRADEK_FAULT_INJECTION"})  # broker/fault_injection.py


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(KEYS_BY_NAME), n=1)
    return f" (did you mean {close[0]}?)" if close else " (see docs/configuration.md)"


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> NodeConfig:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    cfg = parse_config(raw, env=env, source=path)
    return cfg


def config_docs() -> str:
    lines = [
        "# Node configuration",
        "",
        "One YAML file per node (`odradek node --config node.yaml`). Every key is validated at",
        "start-up. Environment variables override keys: `ODRADEK_` + the key upper-cased with",
        "dots as underscores (e.g. `ODRADEK_LOG_RETENTION_MS=60000`).",
        "",
        "This file is generated from `broker/config.py` (`odradek config docs`).",
        "",
        "Keys marked *dynamic* can also change at runtime, without a restart, with Kafka's",
        "AlterConfigs / IncrementalAlterConfigs on a BROKER resource (`kafka-configs.sh",
        "--entity-type brokers`): cluster-wide (`--entity-default`, resource name `\"\"`) or for",
        "one broker (`--entity-name <id>`). A broker's own value beats the cluster-wide one,",
        "which beats this file, which beats the default. The values live in the metadata log,",
        "so they survive restarts and reach every node; see docs/operations.md.",
        "",
        "| key | default | allowed | dynamic | meaning |",
        "|---|---|---|---|---|",
    ]
    for k in KEYS:
        default = "(required)" if k.name in REQUIRED else ("" if k.default is None else k.default)
        dyn = DYNAMIC_BROKER_KEYS_BY_NAME.get(k.name)
        dynamic = f"{dyn.scope}: {dyn.takes_effect}" if dyn else "no"
        lines.append(f"| `{k.name}` | `{default}` | {k.allowed} | {dynamic} | {k.doc} |")
    lines += [
        "",
        "## Listener-scoped keys",
        "",
        "As in Kafka, `listener.name.<listener>.<key>` sets a key for one listener only (the",
        "listener name in lower case), over the global value. These keys can be scoped:",
        ", ".join(f"`{k}`" for k in sorted(LISTENER_SCOPED)) + ".",
        "",
        "SASL users and this broker's own SASL identity exist only in this form, per",
        "mechanism: `listener.name.<listener>.<mechanism>.sasl.jaas.config` (mechanism `plain`,",
        "`scram-sha-256` or `scram-sha-512`), with Kafka's JAAS syntax. PLAIN users are its",
        '`user_<name>="<password>"` options; the inter-broker listener\'s `username` and',
        "`password` are what this broker authenticates with to the others. SCRAM users live",
        "in the cluster metadata (`odradek users`, or Kafka's AlterUserScramCredentials).",
        "Listener-scoped keys have no environment variable form. See docs/security.md.",
        "",
        "## Replication throttles (KIP-73)",
        "",
        "`leader.replication.throttled.rate` and `follower.replication.throttled.rate` limit",
        "only the replicas that two topic configs name (set with `kafka-configs.sh",
        "--entity-type topics`, CreateTopics, AlterConfigs or IncrementalAlterConfigs, whose",
        "APPEND and SUBTRACT work on them as on every list config):",
        "",
        "| topic config | default | meaning |",
        "|---|---|---|",
    ]
    from odradek.broker.topic_configs import BROKER_LEVEL_TOPIC_CONFIGS
    from odradek.controller.metadata.throttled_replicas import (
        FOLLOWER_THROTTLED_REPLICAS,
        LEADER_THROTTLED_REPLICAS,
    )

    for name in (LEADER_THROTTLED_REPLICAS, FOLLOWER_THROTTLED_REPLICAS):
        default, _, doc = BROKER_LEVEL_TOPIC_CONFIGS[name]
        lines.append(f"| `{name}` | {f'`{default}`' if default else 'empty'} | {doc} |")
    lines += [
        "",
        "A value is `*` (every replica of the topic) or a list of `partitionId:brokerId`;",
        "anything else is refused with Kafka's message. A broker throttles partition `p` of",
        "the topic when the list holds `p:<its id>` or is `*`. The throttle measures the bytes",
        "of those replicas over `replication.quota.window.num` samples of",
        "`replication.quota.window.size.seconds` and, while they go over the rate, leaves",
        "out of follower fetches the ones whose follower is not in sync; in-sync replicas",
        "and consumers are never held back. See docs/operations.md.",
    ]
    return "\n".join(lines) + "\n"

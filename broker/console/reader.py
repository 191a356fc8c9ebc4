"""What the console asks the cluster, through the Kafka protocol (kafka-python), as typed
views. Blocking: ``app`` runs every call on one worker thread, because kafka-python's
clients are not thread-safe.

Errors the server or the client raise become ``ClusterError`` with one readable line; the
console shows it in place of the view and keeps polling.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any

# How long one call to the cluster may take: short, so that the page keeps updating while
# a broker is down (kafka-python's default is 30 s).
REQUEST_TIMEOUT_MS = 4000
# Bytes of a key or value shown in the browser; the rest is cut (and said so).
SHOWN_BYTES = 16 * 1024
MAX_MESSAGES = 500


class ClusterError(Exception):
    """The cluster (or the client) refused or failed a request; the text says why."""


def describe(e: BaseException) -> str:
    """A client exception in one line: kafka-python's texts can hold whole responses."""
    text = str(e)
    description = getattr(e, "description", None)
    name = type(e).__name__
    if len(text) > 240:
        text = description or text[:240] + "..."
    return f"{name}: {text}" if text else name


@dataclass(frozen=True, slots=True)
class BrokerView:
    id: int
    host: str
    port: int
    rack: str | None
    fenced: bool


@dataclass(frozen=True, slots=True)
class ClusterView:
    cluster_id: str | None
    controller_id: int | None
    brokers: list[BrokerView]


@dataclass(frozen=True, slots=True)
class PartitionView:
    partition: int
    leader: int | None
    replicas: list[int]
    isr: list[int]
    offline_replicas: list[int]

    @property
    def under_replicated(self) -> bool:
        return self.leader is not None and len(self.isr) < len(self.replicas)


@dataclass(frozen=True, slots=True)
class TopicView:
    name: str
    internal: bool
    partitions: list[PartitionView]


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str
    value: str | None
    source: str
    sensitive: bool
    read_only: bool


@dataclass(frozen=True, slots=True)
class GroupSummary:
    group: str
    state: str | None
    protocol_type: str | None


@dataclass(frozen=True, slots=True)
class MemberView:
    member_id: str
    client_id: str | None
    host: str | None
    # topic -> partitions assigned to this member.
    assignment: dict[str, list[int]]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int
    log_end: int | None
    lag: int | None
    # The member the partition is assigned to now, if any.
    member_id: str | None


@dataclass(frozen=True, slots=True)
class GroupView:
    group: str
    state: str | None
    protocol: str | None
    members: list[MemberView]
    partitions: list[PartitionLag]
    total_lag: int


@dataclass(frozen=True, slots=True)
class Shown:
    """A key, value or header value as the browser can show it: as UTF-8 text when it is
    text, as parsed JSON when it is JSON, always as hex; cut at SHOWN_BYTES."""

    size: int
    text: str | None
    json: Any
    is_json: bool
    hex: str
    base64: str
    truncated: bool


def shown(data: bytes | None, limit: int = SHOWN_BYTES) -> Shown | None:
    if data is None:
        return None
    cut = data[:limit]
    text: str | None = None
    # A cut can split a character: drop up to 3 bytes of it before calling it binary.
    ends = range(len(cut), max(len(cut) - 4, 0), -1) if len(cut) < len(data) else [len(cut)]
    for end in ends:
        try:
            text = cut[:end].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    parsed: Any = None
    is_json = False
    if text is not None and len(cut) == len(data):
        try:
            parsed = json.loads(text)
            is_json = isinstance(parsed, dict | list)
        except ValueError:
            pass
    return Shown(len(data), text, parsed if is_json else None, is_json,
                 binascii.hexlify(cut, " ").decode(), base64.b64encode(cut).decode(),
                 len(cut) < len(data))


@dataclass(frozen=True, slots=True)
class HeaderView:
    key: str
    value: Shown | None


@dataclass(frozen=True, slots=True)
class MessageView:
    partition: int
    offset: int
    timestamp: int
    key: Shown | None
    value: Shown | None
    headers: list[HeaderView]


@dataclass(frozen=True, slots=True)
class MessagePage:
    topic: str
    partition: int
    # Where the page starts (after a timestamp lookup, the first offset at or after it).
    start: int
    log_start: int
    log_end: int
    messages: list[MessageView]
    next_offset: int


@dataclass(frozen=True, slots=True)
class Produced:
    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass
class ClusterReader:
    """One admin client, one group-less consumer and one producer per console, made on
    first use and remade after a failure (a client whose broker died may keep failing)."""

    bootstrap: str
    _admin: Any = field(default=None, init=False)
    _consumer: Any = field(default=None, init=False)
    _producer: Any = field(default=None, init=False)

    def _client_options(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap.split(","),
                "client_id": "odradek-console",
                "request_timeout_ms": REQUEST_TIMEOUT_MS,
                "reconnect_backoff_max_ms": 1000,
                "metadata_max_age_ms": 5000}

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except ClusterError:
            raise
        except Exception as e:  # noqa: BLE001 - any client failure becomes one line
            self.close()
            raise ClusterError(f"{what}: {describe(e)}") from e

    @property
    def admin(self) -> Any:
        if self._admin is None:
            from kafka.admin import KafkaAdminClient

            self._admin = KafkaAdminClient(**self._client_options())
        return self._admin

    @property
    def consumer(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(**self._client_options(), group_id=None,
                                           enable_auto_commit=False,
                                           fetch_max_wait_ms=200,
                                           consumer_timeout_ms=REQUEST_TIMEOUT_MS)
        return self._consumer

    @property
    def producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(**self._client_options(), acks="all",
                                           max_block_ms=REQUEST_TIMEOUT_MS)
        return self._producer

    def close(self) -> None:
        for name in ("_admin", "_consumer", "_producer"):
            client = getattr(self, name)
            setattr(self, name, None)
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001, S110 - closing a broken client
                    pass

    # -- cluster and topics -------------------------------------------------------------

    def cluster(self) -> ClusterView:
        d = self._call("describing the cluster", lambda: self.admin.describe_cluster())
        brokers = sorted((BrokerView(b["broker_id"], b["host"], b["port"], b.get("rack"),
                                     bool(b.get("is_fenced"))) for b in d["brokers"]),
                         key=lambda b: b.id)
        return ClusterView(d.get("cluster_id"), d.get("controller_id"), brokers)

    def topics(self, names: list[str] | None = None) -> list[TopicView]:
        raw = self._call("describing topics", lambda: self.admin.describe_topics(names))
        out = []
        for t in raw:
            if t.get("error_code"):
                if names:
                    from kafka.errors import for_code

                    raise ClusterError(f"topic {t['name']!r}: "
                                       f"{for_code(t['error_code']).__name__}")
                continue
            parts = [PartitionView(p["partition_index"],
                                   p["leader_id"] if p["leader_id"] >= 0 else None,
                                   list(p["replica_nodes"]), list(p["isr_nodes"]),
                                   list(p.get("offline_replicas") or []))
                     for p in t.get("partitions") or []]
            out.append(TopicView(t["name"], bool(t.get("is_internal"))
                                 or t["name"].startswith("__"),
                                 sorted(parts, key=lambda p: p.partition)))
        return sorted(out, key=lambda t: t.name)

    def topic_configs(self, name: str) -> list[ConfigEntry]:
        from kafka.admin import ConfigResource, ConfigResourceType

        raw = self._call("describing the topic's configs", lambda: self.admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all"))
        entries = (raw.get("topic") or {}).get(name) or {}
        return [ConfigEntry(k, None if v.get("is_sensitive") else v.get("value"),
                            str(v.get("config_source", "")), bool(v.get("is_sensitive")),
                            bool(v.get("read_only")))
                for k, v in sorted(entries.items())]

    def offsets(self, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """partition -> (log start, log end)."""
        from kafka import TopicPartition
        from kafka.protocol.consumer.offsets import OffsetSpec

        tps = [TopicPartition(topic, p) for p in partitions]
        early = self._call("reading log starts", lambda: self.admin.list_partition_offsets(
            {tp: OffsetSpec.EARLIEST for tp in tps}))
        late = self._call("reading log ends", lambda: self.admin.list_partition_offsets(
            {tp: OffsetSpec.LATEST for tp in tps}))
        return {tp.partition: (early[tp].offset, late[tp].offset) for tp in tps}

    # -- groups -------------------------------------------------------------------------

    def groups(self) -> list[GroupSummary]:
        raw = self._call("listing groups", lambda: self.admin.list_groups())
        return sorted((GroupSummary(g["group_id"], g.get("group_state"),
                                    g.get("protocol_type")) for g in raw),
                      key=lambda g: g.group)

    def group(self, group: str) -> GroupView:
        described = self._call("describing the group",
                               lambda: self.admin.describe_groups([group]))[group]
        if described.get("error") and "GroupIdNotFound" in str(described["error"]):
            # DescribeGroups describes classic groups only, as Kafka's does; a group of the
            # consumer protocol (KIP-848) is described by ConsumerGroupDescribe.
            described = self._call("describing the consumer group",
                                   lambda: self._consumer_group(group)) or described
        if described.get("error"):
            raise ClusterError(f"group {group!r}: {described['error']}")
        committed = self._call("reading the group's offsets",
                               lambda: self.admin.list_group_offsets({group: None}))
        committed = committed.get(group) or {}
        members = []
        owner: dict[tuple[str, int], str] = {}
        for m in described.get("members") or []:
            assignment: dict[str, list[int]] = {}
            for a in (m.get("member_assignment") or {}).get("assigned_partitions") or []:
                assignment[a["topic"]] = sorted(a["partitions"])
                for p in a["partitions"]:
                    owner[(a["topic"], p)] = m["member_id"]
            members.append(MemberView(m["member_id"], m.get("client_id"),
                                      (m.get("client_host") or "").lstrip("/") or None,
                                      assignment))
        ends: dict[tuple[str, int], int] = {}
        if committed:
            from kafka.protocol.consumer.offsets import OffsetSpec

            try:
                late = self.admin.list_partition_offsets(
                    {tp: OffsetSpec.LATEST for tp in committed})
                ends = {(tp.topic, tp.partition): o.offset for tp, o in late.items()}
            except Exception:  # noqa: BLE001 - lag unknown, committed offsets still shown
                ends = {}
        lags = []
        for tp, om in sorted(committed.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
            end = ends.get((tp.topic, tp.partition))
            lag = max(0, end - om.offset) if end is not None and om.offset >= 0 else None
            lags.append(PartitionLag(tp.topic, tp.partition, om.offset, end, lag,
                                     owner.get((tp.topic, tp.partition))))
        return GroupView(group, described.get("group_state"),
                         described.get("protocol_data") or None, members, lags,
                         sum(x.lag or 0 for x in lags))

    def _consumer_group(self, group: str) -> dict[str, Any] | None:
        """A KIP-848 group as ConsumerGroupDescribe at its coordinator tells it, in the
        shape kafka-python's describe_groups gives a classic one; None if it is not one.
        kafka-python has no call for it, so Odradek's own blocking client asks."""
        from odradek.broker.kafka.client import KafkaConnection

        found = None
        for address in self.bootstrap.split(","):
            try:
                with KafkaConnection.to(address, client_id="odradek-console",
                                        timeout=REQUEST_TIMEOUT_MS / 1000) as conn:
                    found = conn.request(10, 4, {"key_type": 0, "coordinator_keys": [group]})
                break
            except OSError:
                continue  # that bootstrap broker is down: ask the next one
        if found is None:
            raise ClusterError("finding the group's coordinator: no bootstrap broker answered")
        [coordinator] = found.coordinators
        if coordinator.error_code.value:
            raise ClusterError(f"finding the group's coordinator: {coordinator.error_code.name}"
                               f" {coordinator.error_message or ''}".rstrip())
        with KafkaConnection(coordinator.host, coordinator.port, client_id="odradek-console",
                             timeout=REQUEST_TIMEOUT_MS / 1000) as conn:
            answer = conn.request(69, 0, {"group_ids": [group],
                                          "include_authorized_operations": False})
        [g] = answer.groups
        if g.error_code.value == 69:  # GROUP_ID_NOT_FOUND: no group of either protocol
            return None
        if g.error_code.value:
            return {"error": f"{g.error_code.name}: {g.error_message or ''}".rstrip(": ")}
        return {"group_state": g.group_state, "protocol_data": g.assignor_name or None,
                "members": [{"member_id": m.member_id, "client_id": m.client_id,
                             "client_host": m.client_host,
                             "member_assignment": {"assigned_partitions": [
                                 {"topic": t.topic_name, "partitions": list(t.partitions)}
                                 for t in m.assignment.topic_partitions]}}
                            for m in g.members]}

    # -- messages -----------------------------------------------------------------------

    def messages(self, topic: str, partition: int, *, offset: int | None = None,
                 timestamp_ms: int | None = None, limit: int = 50) -> MessagePage:
        """Up to ``limit`` records of one partition from ``offset`` (or from the first
        record at or after ``timestamp_ms``; with neither, the last ``limit`` records)."""
        from kafka import TopicPartition

        limit = max(1, min(limit, MAX_MESSAGES))
        tp = TopicPartition(topic, partition)
        log_start, log_end = self.offsets(topic, [partition])[partition]
        if timestamp_ms is not None:
            found = self._call("looking up the timestamp",
                               lambda: self.admin.list_partition_offsets({tp: timestamp_ms}))
            start = found[tp].offset if found[tp].offset >= 0 else log_end
        elif offset is not None:
            start = offset
        else:
            start = log_end - limit
        start = min(max(start, log_start), log_end)
        out: list[MessageView] = []
        position = start
        if start < log_end:
            consumer = self.consumer
            self._call("reading records", lambda: (consumer.assign([tp]),
                                                   consumer.seek(tp, start)))
            deadline = time.monotonic() + REQUEST_TIMEOUT_MS / 1000
            while len(out) < limit and position < log_end and time.monotonic() < deadline:
                batch = self._call("reading records",
                                   lambda: consumer.poll(timeout_ms=500, max_records=limit))
                for r in batch.get(tp, []):
                    if len(out) >= limit:
                        break
                    out.append(MessageView(
                        r.partition, r.offset, r.timestamp, shown(r.key), shown(r.value),
                        [HeaderView(k, shown(v)) for k, v in (r.headers or [])]))
                    position = r.offset + 1
        return MessagePage(topic, partition, start, log_start, log_end, out, position)

    def produce(self, topic: str, value: bytes | None, *, key: bytes | None = None,
                headers: list[tuple[str, bytes]] | None = None,
                partition: int | None = None) -> Produced:
        def send() -> Any:
            future = self.producer.send(topic, value=value, key=key, headers=headers or None,
                                        partition=partition)
            return future.get(timeout=REQUEST_TIMEOUT_MS / 1000 * 2)

        md = self._call("producing", send)
        return Produced(md.topic, md.partition, md.offset, md.timestamp)

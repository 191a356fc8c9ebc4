"""Produce.

From Produce v10 a partition answered NOT_LEADER_OR_FOLLOWER names its current leader and
the answer carries that leader's address (KIP-951): a producer whose leader moved (a
controlled shutdown, a failover) goes there at once instead of refreshing its metadata
first."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.errors import error_code_for
from odradek.broker.handlers.leader_hints import LeaderHints
from odradek.broker.handlers.meta import INTERNAL_TOPICS
from odradek.broker.kafka.codec import ms
from odradek.broker.metrics import NodeMetrics
from odradek.broker.partition import NotEnoughReplicas, Partition
from odradek.broker.replica_manager import ReplicaManager
from odradek.controller.metadata import MetadataImage
from odradek.storage.errors import StorageError

log = logging.getLogger("odradek.produce")


class ProduceNode(Protocol):
    """What Produce uses of the node."""

    @property
    def image(self) -> MetadataImage: ...

    @property
    def replicas(self) -> ReplicaManager: ...

    @property
    def metrics(self) -> NodeMetrics: ...


PRODUCE_LEADER_HINTS_VERSION = 10


async def handle_produce(node: ProduceNode, ctx: RequestContext, req: Any) -> Payload | None:
    acks = int(req.acks)
    hints = (LeaderHints(node, ctx.listener_name)
             if ctx.api_version >= PRODUCE_LEADER_HINTS_VERSION else None)
    topics_out = []
    waits: list[tuple[dict[str, Any], Partition, int]] = []
    for t in req.topic_data:
        parts_out = []
        for pd in t.partition_data:
            out: dict[str, Any] = {"index": pd.index, "base_offset": -1, "log_start_offset": -1}
            parts_out.append(out)
            if acks not in (-1, 0, 1):
                out["error_code"] = ErrorCode.invalid_required_acks
                continue
            if t.name in INTERNAL_TOPICS:
                # As in Kafka: only the broker writes __consumer_offsets. A client's records
                # there would be replayed as committed offsets and group state.
                out["error_code"] = ErrorCode.invalid_topic_exception
                out["error_message"] = f"Cannot append to internal topic {t.name}"
                continue
            p = node.replicas.get((t.name, pd.index))
            if p is None or not p.is_leader:
                known = node.image.topics.get(t.name)
                out["error_code"] = (
                    ErrorCode.unknown_topic_or_partition
                    if known is None or pd.index not in known.partitions
                    else ErrorCode.not_leader_or_follower
                )
                if hints is not None and out["error_code"] == ErrorCode.not_leader_or_follower:
                    out["current_leader"] = hints.current_leader(t.name, pd.index)
                continue
            if not pd.records:
                out["error_code"] = ErrorCode.corrupt_message
                out["error_message"] = "produce request carried no record batch"
                continue
            try:
                result = p.append(bytes(pd.records), acks_all=acks == -1)
            except NotEnoughReplicas as e:
                out["error_code"] = ErrorCode.not_enough_replicas
                out["error_message"] = str(e)
                continue
            except StorageError as e:
                out["error_code"] = error_code_for(e)
                out["error_message"] = str(e)
                if out["error_code"] == ErrorCode.kafka_storage_error:
                    log.error("partition %s-%d offline: %s", t.name, pd.index, e)
                continue
            out["base_offset"] = result.base_offset
            out["log_append_time"] = result.log_append_time_ms
            out["log_start_offset"] = result.log_start_offset
            if not result.duplicate:
                node.metrics.messages_in.labels(topic=t.name).inc(result.record_count)
                node.metrics.bytes_in.labels(topic=t.name).inc(len(pd.records))
            if acks == -1:
                waits.append((out, p, result.last_offset + 1))
        topics_out.append({"name": t.name, "partition_responses": parts_out})
    if waits:
        node.metrics.produce_purgatory.inc()
        try:
            timeout_s = max(0, ms(req.timeout)) / 1000
            codes = await asyncio.gather(*(p.wait_replicated(target, timeout_s)
                                           for _, p, target in waits))
        finally:
            node.metrics.produce_purgatory.dec()
        for (out, p, _), code in zip(waits, codes, strict=True):
            if code != ErrorCode.none:
                out["error_code"] = code
                if hints is not None and code == ErrorCode.not_leader_or_follower:
                    # Leadership moved while the write waited for its replicas.
                    out["current_leader"] = hints.current_leader(p.topic, p.index)
    if acks == 0:
        return None
    return ctx.respond({"responses": topics_out, "throttle_time": 0,
                        "node_endpoints": hints.node_endpoints() if hints is not None else []})


APIS: tuple[ApiSpec[ProduceNode], ...] = (
    ApiSpec(0, 3, 11, handle_produce),
)

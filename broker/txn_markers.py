"""Transaction markers on the broker: writing them (WriteTxnMarkers) and sending them
(the coordinator's MarkerSender).

A marker is a control batch with one COMMIT or ABORT record, appended by the partition's
leader as a coordinator write (storage checks the producer epoch and fences older
coordinator epochs) and acknowledged once replicated (acks=all), as Kafka does. A marker
on a ``__consumer_offsets`` partition also completes the producer's pending transactional
offset commits there.

The sender groups a transaction's partitions by leader: partitions led by this node are
written directly, the others through one WriteTxnMarkers request per leader over the
inter-broker listener. A partition without a known leader is left out of the answer, which
the coordinator retries after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.handlers.meta import OFFSETS_TOPIC
from odradek.broker.inter_broker import BrokerConnections, InterBrokerNode
from odradek.broker.partition import NotEnoughReplicas
from odradek.broker.replica_manager import ReplicaManager
from odradek.broker.txn.markers import MarkerRequest
from odradek.broker.txn.metadata import TopicPartition
from odradek.controller.metadata import MetadataImage
from odradek.storage.errors import StorageError
from odradek.storage.records import encode_marker_batch

log = logging.getLogger("odradek.txn.markers")

WRITE_TXN_MARKERS_KEY = 27
WRITE_TXN_MARKERS_VERSION = 1
# How long one marker write waits for its replicas (Kafka: request.timeout.ms); the
# coordinator sends again after a timeout.
MARKER_TIMEOUT_S = 30.0


class OffsetsCompletion(Protocol):
    def on_transaction_completed(self, offsets_partition: int, producer_id: int,
                                 commit: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class Marker:
    """One WritableTxnMarker of a WriteTxnMarkers request."""

    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    commit: bool
    partitions: tuple[TopicPartition, ...]


class MarkerWriter:
    """Appends markers to the partitions this node leads (WriteTxnMarkers' work)."""

    def __init__(self, image: _ImageSource, replicas: ReplicaManager,
                 groups: OffsetsCompletion) -> None:
        self._image = image
        self._replicas = replicas
        self._groups = groups

    async def write(self, marker: Marker) -> dict[TopicPartition, ErrorCode]:
        """Write one transaction's markers; answered per partition once replicated."""
        out: dict[TopicPartition, ErrorCode] = {}
        waits = []
        now = int(time.time() * 1000)
        for tp in marker.partitions:
            topic, index = tp
            p = self._replicas.get(tp)
            if p is None or not p.is_leader:
                t = self._image.image.topics.get(topic)
                out[tp] = (ErrorCode.unknown_topic_or_partition
                           if t is None or index not in t.partitions
                           else ErrorCode.not_leader_or_follower)
                continue
            # Writes of this producer verified before this marker no longer hold.
            p.end_txn_verification(marker.producer_id)
            batch = encode_marker_batch(marker.producer_id, marker.producer_epoch,
                                        marker.coordinator_epoch, marker.commit, now)
            try:
                result = p.append(batch, acks_all=True, origin=storage.AppendOrigin.COORDINATOR)
            except NotEnoughReplicas:
                out[tp] = ErrorCode.not_enough_replicas
                continue
            except StorageError as e:
                out[tp] = ErrorCode(e.error_code)
                if out[tp] not in (ErrorCode.invalid_producer_epoch,
                                   ErrorCode.transaction_coordinator_fenced):
                    log.warning("transaction marker for producer %d on %s-%d refused: %s",
                                marker.producer_id, topic, index, e)
                continue
            waits.append((tp, p.wait_replicated(result.last_offset + 1, MARKER_TIMEOUT_S)))
        codes = await asyncio.gather(*(w for _, w in waits))
        for (tp, _), code in zip(waits, codes, strict=True):
            out[tp] = code
            if code == ErrorCode.none and tp[0] == OFFSETS_TOPIC:
                self._groups.on_transaction_completed(tp[1], marker.producer_id, marker.commit)
        return out


class _ImageSource(Protocol):
    @property
    def image(self) -> MetadataImage: ...


class BrokerMarkerSender:
    """The coordinator's MarkerSender: markers to every partition's leader."""

    def __init__(self, node: InterBrokerNode, writer: MarkerWriter) -> None:
        self._node = node
        self._writer = writer
        self._conns = BrokerConnections(node, "txn-markers")

    async def send_markers(self, request: MarkerRequest) -> Mapping[TopicPartition, ErrorCode]:
        image = self._node.image
        by_leader: dict[int, list[TopicPartition]] = defaultdict(list)
        for tp in request.partitions:
            t = image.topics.get(tp[0])
            reg = t.partitions.get(tp[1]) if t is not None else None
            if reg is not None and reg.leader >= 0:
                by_leader[reg.leader].append(tp)
        answers = await asyncio.gather(
            *(self._send(leader, request, tuple(tps)) for leader, tps in by_leader.items()),
            return_exceptions=True)
        out: dict[TopicPartition, ErrorCode] = {}
        for leader, answer in zip(by_leader, answers, strict=True):
            if isinstance(answer, BaseException):
                if isinstance(answer, asyncio.CancelledError):
                    raise answer
                # Missing from the answer: the coordinator retries after its backoff.
                log.info("transaction markers for producer %d to broker %d failed (retried): "
                         "%s", request.producer_id, leader, answer)
                continue
            out.update(answer)
        return out

    async def _send(self, leader: int, request: MarkerRequest,
                    partitions: tuple[TopicPartition, ...]) -> dict[TopicPartition, ErrorCode]:
        marker = Marker(request.producer_id, request.producer_epoch, request.coordinator_epoch,
                        request.commit, partitions)
        if leader == self._node.node_id:
            return await self._writer.write(marker)
        conn = self._conns.get(leader)
        topics: dict[str, list[int]] = defaultdict(list)
        for topic, index in partitions:
            topics[topic].append(index)
        response = await conn.request(WRITE_TXN_MARKERS_KEY, WRITE_TXN_MARKERS_VERSION, {
            "markers": [{
                "producer_id": marker.producer_id, "producer_epoch": marker.producer_epoch,
                "transaction_result": marker.commit, "coordinator_epoch": marker.coordinator_epoch,
                "topics": [{"name": name, "partition_indexes": idx}
                           for name, idx in topics.items()],
            }]}, timeout=MARKER_TIMEOUT_S + 5)
        out: dict[TopicPartition, ErrorCode] = {}
        for m in response.markers:
            for t in m.topics:
                for pr in t.partitions:
                    out[(str(t.name), int(pr.partition_index))] = ErrorCode(pr.error_code)
        return out

    async def close(self) -> None:
        await self._conns.close()

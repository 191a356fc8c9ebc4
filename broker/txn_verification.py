"""Transaction verification (KIP-890 part 1): before a transactional producer's first write
of a transaction to a partition, the partition's leader asks the transaction coordinator
whether the partition is in the producer's ongoing transaction (AddPartitionsToTxn v4+ with
verify_only, to the leader of the id's ``__transaction_state`` partition, or a direct call
when that is this node).

Without it a producer's write that arrives after its transaction was aborted (a retry, a
zombie) opens a transaction no coordinator knows: it never gets a marker, and the
partition's last stable offset, and every read_committed consumer, stops there for good.

The coordinator's answers are translated for the producer as Kafka's brokers do: a partition
not in the transaction is INVALID_TXN_STATE, a fenced producer INVALID_PRODUCER_EPOCH, and
every "ask again later" answer (coordinator moving, loading, unreachable, a concurrent
EndTxn) NOT_ENOUGH_REPLICAS, which every producer retries without refreshing its metadata.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from kio.schema.errors import ErrorCode

from odradek.broker.inter_broker import BrokerConnections, InterBrokerNode
from odradek.broker.kafka.async_client import BrokerConnectionError
from odradek.broker.txn import AddPartitionsTxn, TransactionCoordinator
from odradek.broker.txn.log import TRANSACTION_STATE_TOPIC
from odradek.broker.txn.metadata import TopicPartition

log = logging.getLogger("odradek.txn.verification")

ADD_PARTITIONS_TO_TXN_KEY = 24
# v4 brought verify_only and batched transactions, v5 TRANSACTION_ABORTABLE.
VERIFY_VERSION = 5
VERIFY_TIMEOUT_S = 10.0

_RETRY_LATER = frozenset({
    ErrorCode.concurrent_transactions, ErrorCode.network_exception,
    ErrorCode.coordinator_load_in_progress, ErrorCode.coordinator_not_available,
    ErrorCode.not_coordinator, ErrorCode.request_timed_out,
})


class VerifierNode(InterBrokerNode, Protocol):
    @property
    def transactions(self) -> TransactionCoordinator: ...


def for_producer(code: ErrorCode, knows_abortable: bool = False) -> ErrorCode:
    """A coordinator's answer as an error a producer acts on; ``knows_abortable``: the
    request's version has TRANSACTION_ABORTABLE (Produce v11+, TxnOffsetCommit v4+)."""
    if code in _RETRY_LATER:
        return ErrorCode.not_enough_replicas
    if code is ErrorCode.producer_fenced:
        return ErrorCode.invalid_producer_epoch
    if code is ErrorCode.transaction_abortable and not knows_abortable:
        return ErrorCode.invalid_txn_state
    return code


class TxnVerifier:
    def __init__(self, node: VerifierNode) -> None:
        self._node = node
        self._conns = BrokerConnections(node, "txn-verification")

    async def verify(self, transactional_id: str, producer_id: int, producer_epoch: int,
                     partitions: Iterable[TopicPartition], *, add: bool = False,
                     knows_abortable: bool = False) -> dict[TopicPartition, ErrorCode]:
        """Per partition: NONE when it is in the producer's ongoing transaction, else the
        error to answer. With ``add`` (transactions v2: Produce v12, TxnOffsetCommit v5)
        the coordinator adds the partitions instead of only checking them."""
        got = await self.ask(transactional_id, producer_id, producer_epoch, partitions,
                             add=add)
        return {tp: for_producer(code, knows_abortable) for tp, code in got.items()}

    async def ask(self, transactional_id: str, producer_id: int, producer_epoch: int,
                  partitions: Iterable[TopicPartition], *, add: bool = False
                  ) -> dict[TopicPartition, ErrorCode]:
        """The coordinator's own answer per partition (COORDINATOR_NOT_AVAILABLE when it
        cannot be reached or is not known yet)."""
        parts = frozenset(partitions)
        coordinator = self._coordinator_id(transactional_id)
        if coordinator is None:
            return dict.fromkeys(parts, ErrorCode.coordinator_not_available)
        txn = AddPartitionsTxn(transactional_id, producer_id, producer_epoch, parts,
                               verify_only=not add)
        if coordinator == self._node.node_id:
            answers = (await self._node.transactions.add_partitions_batch([txn]))
            got = answers.get(transactional_id, {})
        else:
            try:
                got = await self._ask(coordinator, txn)
            except BrokerConnectionError as e:
                log.info("verifying the transaction of %s with broker %d failed: %s",
                         transactional_id, coordinator, e)
                return dict.fromkeys(parts, ErrorCode.coordinator_not_available)
        return {tp: got.get(tp, ErrorCode.coordinator_not_available) for tp in parts}

    def _coordinator_id(self, transactional_id: str) -> int | None:
        t = self._node.image.topics.get(TRANSACTION_STATE_TOPIC)
        if t is None:
            return None
        reg = t.partitions.get(self._node.transactions.partition_for(transactional_id))
        return reg.leader if reg is not None and reg.leader >= 0 else None

    async def _ask(self, broker_id: int, txn: AddPartitionsTxn
                   ) -> dict[TopicPartition, ErrorCode]:
        topics: dict[str, list[int]] = defaultdict(list)
        for topic, index in txn.partitions:
            topics[topic].append(index)
        response = await self._conns.get(broker_id).request(
            ADD_PARTITIONS_TO_TXN_KEY, VERIFY_VERSION, {"transactions": [{
                "transactional_id": txn.transactional_id, "producer_id": txn.producer_id,
                "producer_epoch": txn.producer_epoch, "verify_only": txn.verify_only,
                "topics": [{"name": n, "partitions": idx} for n, idx in topics.items()],
            }]}, timeout=VERIFY_TIMEOUT_S)
        if response.error_code != ErrorCode.none:
            return dict.fromkeys(txn.partitions, ErrorCode(response.error_code))
        out: dict[TopicPartition, ErrorCode] = {}
        for result in response.results_by_transaction:
            for t in result.topic_results:
                for pr in t.results_by_partition:
                    out[(str(t.name), int(pr.partition_index))] = ErrorCode(
                        pr.partition_error_code)
        return out

    async def close(self) -> None:
        await self._conns.close()

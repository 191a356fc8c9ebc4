"""Transaction coordinator: Kafka's transactions (KIP-98, KIP-360, KIP-890), kept durably
in the ``__transaction_state`` topic. Not wired into the broker yet."""

from odradek.broker.txn.coordinator import (
    AddPartitionsTxn,
    EndTxnResult,
    InitProducerIdResult,
    TransactionCoordinator,
    legacy_fencing_error,
    tv_for_add_partitions,
    tv_for_end_txn,
)
from odradek.broker.txn.log import (
    TRANSACTION_STATE_TOPIC,
    InMemoryTxnLog,
    LogAppendError,
    TxnLog,
    txn_write_error,
)
from odradek.broker.txn.markers import MarkerRequest, MarkerSender
from odradek.broker.txn.metadata import TransactionMetadata, TxnState
from odradek.broker.txn.producer_ids import ProducerIdSource
from odradek.broker.txn.views import (
    ListTransactionsResult,
    TransactionDescription,
    TransactionListing,
)

__all__ = [
    "TRANSACTION_STATE_TOPIC",
    "AddPartitionsTxn",
    "EndTxnResult",
    "InMemoryTxnLog",
    "InitProducerIdResult",
    "ListTransactionsResult",
    "LogAppendError",
    "MarkerRequest",
    "MarkerSender",
    "ProducerIdSource",
    "TransactionCoordinator",
    "TransactionDescription",
    "TransactionListing",
    "TransactionMetadata",
    "TxnLog",
    "TxnState",
    "legacy_fencing_error",
    "tv_for_add_partitions",
    "tv_for_end_txn",
    "txn_write_error",
]

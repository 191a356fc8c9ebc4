"""Rebuilding transactional ids from the records of one ``__transaction_state`` partition.

Replay is last-writer-wins per transactional id, like compaction: the latest value counts
and a tombstone removes the id. What is loaded is what Kafka loads: the state of the last
record, with the last producer epoch unknown (-1). Transactions found in PrepareCommit or
PrepareAbort are the coordinator's to finish (their markers are sent again).
"""

from __future__ import annotations

from odradek.broker.txn.metadata import (
    DEAD,
    PREPARE_EPOCH_FENCE,
    TransactionMetadata,
    TxnState,
)
from odradek.broker.txn.records import RecordFormatError, TxnLogValue, decode_key, decode_value


class Replay:
    """Accumulates records in log order; ``transactions()`` gives the result."""

    def __init__(self) -> None:
        self._values: dict[str, TxnLogValue] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Apply one record. Raises RecordFormatError (UnknownVersionError for a newer
        Kafka's record) for one that cannot be used; the caller skips it."""
        transactional_id = decode_key(key)
        if value is None:
            self._values.pop(transactional_id, None)
            return
        v = decode_value(value)
        try:
            state = TxnState.from_id(v.transaction_status)
        except ValueError as e:
            raise RecordFormatError(f"{transactional_id}: {e}") from e
        if state in (DEAD, PREPARE_EPOCH_FENCE):
            # No coordinator writes these (an expired id gets a tombstone, a fence is
            # written as PrepareAbort): a record claiming them is corrupt.
            raise RecordFormatError(f"{transactional_id}: state {state.state_name} in the log")
        if v.producer_id < 0:
            raise RecordFormatError(f"{transactional_id}: producer id {v.producer_id}")
        self._values[transactional_id] = v

    def transactions(self) -> dict[str, TransactionMetadata]:
        return {
            txn_id: TransactionMetadata.from_log_value(txn_id, v)
            for txn_id, v in self._values.items()
        }

"""Exceptions raised by the storage engine.

Each class carries the Kafka protocol error code a broker should answer with
(``error_code``), so callers can map errors without a table of their own.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the storage engine raises on purpose."""

    error_code: int = -1  # UNKNOWN_SERVER_ERROR


class CorruptRecordError(StorageError):
    """A record batch failed framing, length or CRC validation."""

    error_code = 2  # CORRUPT_MESSAGE


class UnsupportedMagicError(CorruptRecordError):
    """A batch uses a message format other than magic v2.

    It subclasses CorruptRecordError because recovery treats both the same way
    (the bytes cannot be part of our log), while a broker can still tell them apart.
    """

    error_code = 43  # UNSUPPORTED_FOR_MESSAGE_FORMAT


class InvalidRecordError(StorageError):
    """A well-formed batch that a client is not allowed to write (bad count, control batch...)."""

    error_code = 87  # INVALID_RECORD


class RecordTooLargeError(StorageError):
    """A batch is larger than max.message.bytes."""

    error_code = 10  # MESSAGE_TOO_LARGE


class RecordBatchTooLargeError(StorageError):
    """A single batch cannot fit in a segment (larger than segment.bytes)."""

    error_code = 18  # RECORD_LIST_TOO_LARGE


class OffsetOutOfRangeError(StorageError):
    """The requested offset is below the log start offset or above the log end offset."""

    error_code = 1  # OFFSET_OUT_OF_RANGE


class OffsetOutOfSequenceError(StorageError):
    """Follower append whose offsets do not continue the log (replication bug or divergence)."""

    error_code = -1


class OutOfOrderSequenceError(StorageError):
    """Idempotent producer sent a sequence number that does not follow the last one."""

    error_code = 45  # OUT_OF_ORDER_SEQUENCE_NUMBER


class InvalidProducerEpochError(StorageError):
    """Idempotent producer wrote with an epoch older than the one the log has seen."""

    error_code = 47  # INVALID_PRODUCER_EPOCH


class InvalidTxnStateError(StorageError):
    """A producer with an open transaction wrote outside it (a non-transactional batch)."""

    error_code = 48  # INVALID_TXN_STATE


class TransactionCoordinatorFencedError(StorageError):
    """A transaction marker came from a coordinator epoch older than one already seen for
    the producer: a zombie coordinator that lost the transactional id to a newer one."""

    error_code = 52  # TRANSACTION_COORDINATOR_FENCED


class LogOfflineError(StorageError):
    """The log hit an I/O error and refuses every further operation until reopened."""

    error_code = 56  # KAFKA_STORAGE_ERROR


class InvalidConfigError(StorageError):
    """A topic configuration name or value is not acceptable."""

    error_code = 40  # INVALID_CONFIG


class IndexCorruptError(StorageError):
    """An index file failed its sanity check; the log rebuilds it instead of raising."""

    error_code = -1


class SnapshotCorruptError(StorageError):
    """A producer-state snapshot failed its version or CRC check; the log ignores it and
    rebuilds the state from the batches instead of raising."""

    error_code = -1


class CheckpointCorruptError(StorageError):
    """A checkpoint file could not be parsed."""

    error_code = -1

"""Odradek storage engine: Kafka's segmented partition log of magic-v2 record batches.

Start with ``PartitionLog.open(directory, LogConfig(...))``.
"""

from odradek.storage.batch import (
    HEADER_SIZE,
    BatchHeader,
    Compression,
    TimestampType,
    assign_offsets,
    iter_batches,
    parse_batches,
    read_batch_header,
)
from odradek.storage.config import LogConfig
from odradek.storage.epochs import EpochEntry, LeaderEpochCache
from odradek.storage.errors import (
    CorruptRecordError,
    InvalidConfigError,
    InvalidProducerEpochError,
    InvalidRecordError,
    LogOfflineError,
    OffsetOutOfRangeError,
    OffsetOutOfSequenceError,
    OutOfOrderSequenceError,
    RecordBatchTooLargeError,
    RecordTooLargeError,
    StorageError,
    UnsupportedMagicError,
)
from odradek.storage.log import AppendResult, PartitionLog, ReadResult, SegmentInfo
from odradek.storage.producer_state import AppendOrigin, ProducerStateManager
from odradek.storage.records import (
    DecodedRecord,
    Record,
    decode_batch,
    decode_batches,
    encode_batch,
)

__all__ = [
    "HEADER_SIZE",
    "AppendOrigin",
    "AppendResult",
    "BatchHeader",
    "Compression",
    "CorruptRecordError",
    "DecodedRecord",
    "EpochEntry",
    "InvalidConfigError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "LeaderEpochCache",
    "LogConfig",
    "LogOfflineError",
    "OffsetOutOfRangeError",
    "OffsetOutOfSequenceError",
    "OutOfOrderSequenceError",
    "PartitionLog",
    "ProducerStateManager",
    "ReadResult",
    "Record",
    "RecordBatchTooLargeError",
    "RecordTooLargeError",
    "SegmentInfo",
    "StorageError",
    "TimestampType",
    "UnsupportedMagicError",
    "assign_offsets",
    "decode_batch",
    "decode_batches",
    "encode_batch",
    "iter_batches",
    "parse_batches",
    "read_batch_header",
]

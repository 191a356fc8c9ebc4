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
    InvalidTxnStateError,
    LogOfflineError,
    OffsetOutOfRangeError,
    OffsetOutOfSequenceError,
    OutOfOrderSequenceError,
    RecordBatchTooLargeError,
    RecordTooLargeError,
    StorageError,
    TransactionCoordinatorFencedError,
    UnsupportedMagicError,
)
from odradek.storage.file_region import FileRegion, RegionChanged
from odradek.storage.log import (
    AppendResult,
    PartitionLog,
    ReadResult,
    SegmentInfo,
    SendableRead,
)
from odradek.storage.producer_state import AppendOrigin, CompletedTxn, ProducerStateManager
from odradek.storage.records import (
    DecodedRecord,
    EndTxnMarker,
    Record,
    decode_batch,
    decode_batches,
    encode_batch,
    encode_marker_batch,
    parse_marker,
)
from odradek.storage.txn_index import AbortedTxn

__all__ = [
    "HEADER_SIZE",
    "AbortedTxn",
    "AppendOrigin",
    "AppendResult",
    "BatchHeader",
    "CompletedTxn",
    "Compression",
    "CorruptRecordError",
    "DecodedRecord",
    "EndTxnMarker",
    "EpochEntry",
    "InvalidConfigError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidTxnStateError",
    "LeaderEpochCache",
    "LogConfig",
    "LogOfflineError",
    "OffsetOutOfRangeError",
    "OffsetOutOfSequenceError",
    "OutOfOrderSequenceError",
    "PartitionLog",
    "ProducerStateManager",
    "FileRegion",
    "ReadResult",
    "RegionChanged",
    "Record",
    "RecordBatchTooLargeError",
    "RecordTooLargeError",
    "SegmentInfo",
    "SendableRead",
    "StorageError",
    "TimestampType",
    "TransactionCoordinatorFencedError",
    "UnsupportedMagicError",
    "assign_offsets",
    "decode_batch",
    "decode_batches",
    "encode_batch",
    "encode_marker_batch",
    "iter_batches",
    "parse_batches",
    "parse_marker",
    "read_batch_header",
]

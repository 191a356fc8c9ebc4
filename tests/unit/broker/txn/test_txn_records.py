"""The record format of __transaction_state: keys and values byte for byte as Kafka writes
them (TransactionLogKey v0, TransactionLogValue v0 and the flexible v1), and strict decoding
of truncated or hostile bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.broker.txn import records
from odradek.broker.txn.metadata import (
    COMPLETE_ABORT,
    EMPTY,
    PREPARE_COMMIT,
    TransactionMetadata,
    TxnTransit,
)
from odradek.broker.txn.records import (
    RecordFormatError,
    TxnLogValue,
    TxnPartitions,
    UnknownVersionError,
)


def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str) -> bytes:  # int16 length + UTF-8
    return i16(len(s.encode())) + s.encode()


def compact_string(s: str) -> bytes:  # unsigned varint (length + 1) + UTF-8; short here
    assert len(s.encode()) < 127
    return bytes([len(s.encode()) + 1]) + s.encode()


LAST_UPDATE = 1_700_000_000_123
START = 1_700_000_000_000

VALUE = TxnLogValue(
    producer_id=1000,
    producer_epoch=5,
    transaction_timeout_ms=60_000,
    transaction_status=2,  # PrepareCommit
    partitions=(TxnPartitions("t", (0, 2)), TxnPartitions("u", (1,))),
    last_update_timestamp_ms=LAST_UPDATE,
    start_timestamp_ms=START,
    previous_producer_id=999,
    next_producer_id=-1,
    client_transaction_version=2,
)

# TransactionLogValue v1 (flexible), field by field from Kafka's schema.
GOLDEN_V1 = (
    i16(1)  # value version
    + i64(1000)  # ProducerId
    + i16(5)  # ProducerEpoch
    + i32(60_000)  # TransactionTimeoutMs
    + i8(2)  # TransactionStatus
    + bytes([3])  # TransactionPartitions: compact array, 2 entries + 1
    + compact_string("t")  # Topic
    + bytes([3]) + i32(0) + i32(2)  # PartitionIds: compact array of 2 int32
    + bytes([0])  # the entry's tagged fields: none
    + compact_string("u")
    + bytes([2]) + i32(1)
    + bytes([0])
    + i64(LAST_UPDATE)  # TransactionLastUpdateTimestampMs
    + i64(START)  # TransactionStartTimestampMs
    + bytes([2])  # tagged fields: 2 (NextProducerId is at its default, -1: left out)
    + bytes([0, 8]) + i64(999)  # tag 0 PreviousProducerId, 8 bytes
    + bytes([2, 2]) + i16(2)  # tag 2 ClientTransactionVersion, 2 bytes
)

# TransactionLogValue v0: no tagged fields, int32 counts, int16 string lengths.
GOLDEN_V0 = (
    i16(0)
    + i64(1000)
    + i16(5)
    + i32(60_000)
    + i8(2)
    + i32(2)
    + string("t") + i32(2) + i32(0) + i32(2)
    + string("u") + i32(1) + i32(1)
    + i64(LAST_UPDATE)
    + i64(START)
)


def test_key_is_kafkas() -> None:
    # TransactionLogKey: version 0 (coordinator record type 0), TransactionalId.
    assert records.encode_key("txn-1") == i16(0) + string("txn-1")
    assert records.decode_key(i16(0) + string("txn-1")) == "txn-1"
    assert records.decode_key(records.encode_key("é☃")) == "é☃"


def test_value_v1_is_kafkas() -> None:
    assert records.encode_value(VALUE, 1) == GOLDEN_V1
    assert records.decode_value(GOLDEN_V1) == VALUE


def test_value_v0_is_kafkas() -> None:
    assert records.encode_value(VALUE, 0) == GOLDEN_V0
    # v0 has no tagged fields: they come back at their defaults.
    assert records.decode_value(GOLDEN_V0) == TxnLogValue(
        1000, 5, 60_000, 2, VALUE.partitions, LAST_UPDATE, START
    )


def test_null_partitions_and_defaults() -> None:
    empty = TxnLogValue(7, 0, 1000, 0, None, 5, -1)
    v1 = records.encode_value(empty, 1)
    assert v1 == i16(1) + i64(7) + i16(0) + i32(1000) + i8(0) + bytes([0]) + i64(5) + i64(-1) + (
        bytes([0])  # every tagged field at its default: none written
    )
    v0 = records.encode_value(empty, 0)
    assert v0 == i16(0) + i64(7) + i16(0) + i32(1000) + i8(0) + i32(-1) + i64(5) + i64(-1)
    assert records.decode_value(v1) == empty
    assert records.decode_value(v0) == empty


def test_next_producer_id_tag() -> None:
    v = TxnLogValue(7, 32767, 1000, 3, (), 5, 4, previous_producer_id=7, next_producer_id=8,
                    client_transaction_version=2)
    data = records.encode_value(v, 1)
    assert data.endswith(
        bytes([3]) + bytes([0, 8]) + i64(7) + bytes([1, 8]) + i64(8) + bytes([2, 2]) + i16(2)
    )
    assert records.decode_value(data) == v


def test_unknown_tagged_fields_survive_a_round_trip() -> None:
    # A newer Kafka's tag 3 (e.g. a next producer epoch) is kept and written back.
    data = GOLDEN_V1[:-15] + bytes([3]) + bytes([0, 8]) + i64(999) + bytes([2, 2]) + i16(2) + (
        bytes([3, 2]) + i16(4)
    )
    v = records.decode_value(data)
    assert v.unknown_tags == ((3, i16(4)),)
    assert records.encode_value(v, 1) == data


def test_transit_to_record_groups_partitions_by_topic() -> None:
    transit = TxnTransit(
        producer_id=1000, prev_producer_id=999, next_producer_id=-1, producer_epoch=5,
        last_producer_epoch=4, txn_timeout_ms=60_000, state=PREPARE_COMMIT,
        partitions=frozenset({("u", 1), ("t", 2), ("t", 0)}), txn_start_timestamp=START,
        txn_last_update_timestamp=LAST_UPDATE, client_transaction_version=2,
    )
    assert records.encode_value(transit.to_log_value(), 1) == GOLDEN_V1
    # Kafka writes null partitions for Empty, and reads none back for it.
    empty = TxnTransit(7, 7, -1, 0, -1, 1000, EMPTY, frozenset(), -1, 5, 0)
    assert empty.to_log_value().partitions is None
    md = TransactionMetadata.from_log_value("x", records.decode_value(GOLDEN_V1))
    assert md.state is PREPARE_COMMIT and md.partitions == {("t", 0), ("t", 2), ("u", 1)}
    assert md.last_producer_epoch == -1  # not stored; Kafka loads it as -1 too
    assert (md.prev_producer_id, md.client_transaction_version) == (999, 2)
    odd = TxnLogValue(7, 0, 1000, EMPTY.state_id, (TxnPartitions("t", (1,)),), 5, -1)
    assert TransactionMetadata.from_log_value("x", odd).partitions == set()
    done = TxnTransit(7, 7, -1, 0, -1, 1000, COMPLETE_ABORT, frozenset(), 4, 5, 0)
    assert done.to_log_value().partitions == ()


@pytest.mark.parametrize("golden", [GOLDEN_V0, GOLDEN_V1], ids=["v0", "v1"])
def test_every_truncation_is_refused(golden: bytes) -> None:
    for n in range(len(golden)):
        with pytest.raises(RecordFormatError):
            records.decode_value(golden[:n])


def test_hostile_values_are_refused_cleanly() -> None:
    head_v0 = i16(0) + i64(1) + i16(0) + i32(1) + i8(1)
    head_v1 = i16(1) + i64(1) + i16(0) + i32(1) + i8(1)
    tail = i64(0) + i64(0)
    cases = {
        "huge v0 array": head_v0 + i32(0x7FFFFFFF) + tail,
        "negative v0 array": head_v0 + i32(-2) + tail,
        "huge v0 id array": head_v0 + i32(1) + string("t") + i32(0x7FFFFFFF) + tail,
        "huge v1 array": head_v1 + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + tail + bytes([0]),
        "varint too long": head_v1 + bytes([0x80] * 6) + tail,
        "varint over 32 bits": head_v1 + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x7F]) + tail,
        "null topic": head_v1 + bytes([2, 0, 1, 0]) + tail + bytes([0]),
        "negative topic length": head_v0 + i32(1) + i16(-5) + i32(0) + tail,
        "invalid utf-8": head_v0 + i32(1) + i16(2) + b"\xff\xfe" + i32(0) + tail,
        "trailing bytes": GOLDEN_V1 + b"\x00",
        "tags out of order": head_v1 + bytes([1]) + tail + bytes([2, 2, 2]) + i16(2)
        + bytes([0, 8]) + i64(1),
        "tag of the wrong size": head_v1 + bytes([1]) + tail + bytes([1, 0, 4]) + i32(9),
        "huge tag count": head_v1 + bytes([1]) + tail + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        "tag longer than the value": head_v1 + bytes([1]) + tail + bytes([1, 5, 100]),
        "negative version": i16(-1) + GOLDEN_V0[2:],
    }
    for name, data in cases.items():
        with pytest.raises(RecordFormatError):
            records.decode_value(data)
            pytest.fail(name)
    for name in ("negative version",):
        with pytest.raises(RecordFormatError) as info:
            records.decode_value(cases[name])
        assert not isinstance(info.value, UnknownVersionError)


def test_unknown_versions_are_reported_as_such() -> None:
    with pytest.raises(UnknownVersionError):
        records.decode_value(i16(2) + GOLDEN_V1[2:])
    with pytest.raises(UnknownVersionError):
        records.decode_key(i16(1) + string("group"))  # not a transaction log key
    with pytest.raises(UnknownVersionError):
        records.encode_value(VALUE, 2)
    for bad in (b"", b"\x00", i16(0) + i16(5) + b"ab", i16(0) + string("x") + b"!"):
        with pytest.raises(RecordFormatError):
            records.decode_key(bad)


def test_values_that_do_not_fit_are_refused_when_encoding() -> None:
    with pytest.raises(RecordFormatError):
        records.encode_value(TxnLogValue(1, 40_000, 1, 0, None, 0, 0), 1)  # epoch > int16
    with pytest.raises(RecordFormatError):
        records.encode_key("x" * 40_000)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    for decode in (records.decode_value, records.decode_key):
        try:
            decode(data)
        except RecordFormatError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOLDEN_V1) - 1), st.integers(0, 255))
def test_corrupted_bytes_never_crash_the_decoder(pos: int, byte: int) -> None:
    data = bytearray(GOLDEN_V1)
    data[pos] = byte
    try:
        records.decode_value(bytes(data))
    except RecordFormatError:
        pass


_ids = st.integers(-(2**63), 2**63 - 1)
_values = st.builds(
    TxnLogValue,
    producer_id=_ids,
    producer_epoch=st.integers(-(2**15), 2**15 - 1),
    transaction_timeout_ms=st.integers(-(2**31), 2**31 - 1),
    transaction_status=st.integers(0, 7),
    partitions=st.none()
    | st.lists(
        st.builds(TxnPartitions, st.text(max_size=10),
                  st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5).map(tuple)),
        max_size=4,
    ).map(tuple),
    last_update_timestamp_ms=_ids,
    start_timestamp_ms=_ids,
    previous_producer_id=_ids,
    next_producer_id=_ids,
    client_transaction_version=st.integers(-(2**15), 2**15 - 1),
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_round_trip(value: TxnLogValue) -> None:
    assert records.decode_value(records.encode_value(value, 1)) == value
    v0 = records.decode_value(records.encode_value(value, 0))
    assert v0 == TxnLogValue(
        value.producer_id, value.producer_epoch, value.transaction_timeout_ms,
        value.transaction_status, value.partitions, value.last_update_timestamp_ms,
        value.start_timestamp_ms,
    )

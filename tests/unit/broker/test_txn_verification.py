"""KIP-890 part 1 on the partition leader: the verification token a transaction's first
write takes, and how the coordinator's answers reach the producer."""

from __future__ import annotations

from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from odradek import storage
from odradek.broker.handlers.produce import _Verification
from odradek.broker.partition import Partition
from odradek.broker.txn_verification import for_producer
from odradek.storage.records import Record, encode_batch, encode_marker_batch
from tests.unit.broker.test_partition import registration

PID, EPOCH = 7, 0


@pytest.fixture
def leader(tmp_path: Path) -> Partition:
    p = Partition("t", 0, storage.PartitionLog.open(tmp_path / "t-0", storage.LogConfig()), 1)
    p.assign(registration(isr=(1,)), None)
    return p


def txn_batch(seq: int = 0) -> bytes:
    return encode_batch([Record(0, value=b"v")], producer_id=PID, producer_epoch=EPOCH,
                        base_sequence=seq, is_transactional=True)


def abort_marker() -> bytes:
    return encode_marker_batch(PID, EPOCH, 0, False, 0)


def test_a_verified_write_opens_the_transaction(leader: Partition) -> None:
    token = leader.begin_txn_verification(PID)
    assert leader.begin_txn_verification(PID) is token  # concurrent writes share it
    assert _Verification(PID, EPOCH, token, ErrorCode.none).refusal(leader) is None
    leader.append(txn_batch(), acks_all=False)
    assert leader.txn_open(PID, EPOCH)


def test_a_marker_written_during_verification_voids_it(leader: Partition) -> None:
    token = leader.begin_txn_verification(PID)
    leader.end_txn_verification(PID)  # what MarkerWriter does before an ABORT marker
    leader.append(abort_marker(), acks_all=False, origin=storage.AppendOrigin.COORDINATOR)
    refusal = _Verification(PID, EPOCH, token, ErrorCode.none).refusal(leader)
    assert refusal is not None and refusal[0] == ErrorCode.invalid_txn_state


def test_a_transaction_opened_meanwhile_lets_a_concurrent_write_through(
        leader: Partition) -> None:
    token = leader.begin_txn_verification(PID)
    leader.append(txn_batch(0), acks_all=False)
    leader.end_txn_verification(PID)  # the first write opened the transaction
    assert _Verification(PID, EPOCH, token, ErrorCode.none).refusal(leader) is None


def test_a_new_leader_epoch_voids_a_verification(leader: Partition) -> None:
    token = leader.begin_txn_verification(PID)
    leader.assign(registration(isr=(1,), epoch=2), None)
    assert not leader.txn_verification_holds(PID, token)
    assert leader.begin_txn_verification(PID) is not token


def test_a_refused_verification_is_forgotten(leader: Partition) -> None:
    token = leader.begin_txn_verification(PID)
    refusal = _Verification(PID, EPOCH, token, ErrorCode.invalid_txn_state).refusal(leader)
    assert refusal is not None and refusal[0] == ErrorCode.invalid_txn_state
    assert not leader.txn_verification_holds(PID, token)


def test_coordinator_answers_as_producers_know_them() -> None:
    assert for_producer(ErrorCode.none) == ErrorCode.none
    assert for_producer(ErrorCode.transaction_abortable) == ErrorCode.invalid_txn_state
    assert for_producer(ErrorCode.producer_fenced) == ErrorCode.invalid_producer_epoch
    for retry in (ErrorCode.not_coordinator, ErrorCode.coordinator_load_in_progress,
                  ErrorCode.coordinator_not_available, ErrorCode.concurrent_transactions):
        assert for_producer(retry) == ErrorCode.not_enough_replicas
    assert for_producer(ErrorCode.invalid_producer_id_mapping) == \
        ErrorCode.invalid_producer_id_mapping


def test_a_write_at_a_newer_epoch_starts_the_next_transaction(leader: Partition) -> None:
    """Transactions v2: the next transaction (epoch + 1) may write before the last one's
    marker reached this partition; it is not part of the open one, and is verified."""
    leader.append(txn_batch(), acks_all=False)
    assert leader.txn_open(PID, EPOCH)
    assert not leader.txn_open(PID, EPOCH + 1)
    token = leader.begin_txn_verification(PID)
    refusal = _Verification(PID, EPOCH + 1, token, ErrorCode.not_enough_replicas).refusal(leader)
    assert refusal is not None and refusal[0] == ErrorCode.not_enough_replicas

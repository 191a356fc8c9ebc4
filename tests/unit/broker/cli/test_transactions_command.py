"""``odradek transactions``: tables, JSON and errors, over a fake admin client answering as
kafka-python's does (its own result types)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.admin._transactions import (
    AbortTransactionSpec,
    PartitionProducerState,
    ProducerState,
    TransactionDescription,
    TransactionListing,
    TransactionState,
)
from kafka.errors import NotLeaderForPartitionError, TransactionalIdNotFoundError

from odradek.broker.cli import transactions
from odradek.broker.cli.main import build_parser

NOW = 1_800_000_000_000
MIN = 60_000


def producer(pid: int, start: int | None, idle_min: int, *, epoch: int = 0,
             coordinator_epoch: int = 3) -> ProducerState:
    return ProducerState(pid, epoch, 7, NOW - idle_min * MIN, coordinator_epoch,
                         -1 if start is None else start)


def description(state: str, *tps: tuple[str, int], pid: int = 10) -> TransactionDescription:
    return TransactionDescription(2, TransactionState(state), pid, 4, 60_000,
                                  -1 if state == "Empty" else NOW - 20 * MIN,
                                  {TopicPartition(t, p) for t, p in tps})


class FakeAdmin:
    """A cluster of brokers 1-3. t-0 has producers 10 (open at 5, its coordinator's
    transaction includes t-0: not hanging) and 11 (open at 8, its id "b" has moved on);
    t-1 has 12 (open at 3, no transactional id), 13 (open, but recent) and 14 (nothing
    open); u-0 has 15 (open at 0, its id "c" unknown to the coordinator, coordinator epoch
    -1); __consumer_offsets-0 has an old open one too."""

    def __init__(self) -> None:
        self.producers = {
            TopicPartition("t", 0): [producer(10, 5, 20), producer(11, 8, 20, epoch=2)],
            TopicPartition("t", 1): [producer(12, 3, 30), producer(13, 9, 1),
                                     producer(14, None, 90)],
            TopicPartition("u", 0): [producer(15, 0, 16, coordinator_epoch=-1)],
            TopicPartition("__consumer_offsets", 0): [producer(16, 1, 60)],
        }
        self.listings = {1: [TransactionListing("a", 10, TransactionState.ONGOING),
                             TransactionListing("c", 15, TransactionState.ONGOING)],
                         2: [TransactionListing("b", 11, TransactionState.COMPLETE_COMMIT)],
                         3: []}
        self.descriptions = {"a": description("Ongoing", ("t", 0), ("t", 1)),
                             "b": description("CompleteCommit", pid=11)}
        self.replicas = {("t", 0): [1, 2], ("t", 1): [2, 3], ("u", 0): [3, 1],
                         ("__consumer_offsets", 0): [1]}
        self.producer_calls: list[tuple[list[TopicPartition], int | None]] = []
        self.aborted: list[AbortTransactionSpec] = []
        self.closed = False
        self.fail_producers: Exception | None = None

    def close(self) -> None:
        self.closed = True

    def list_transactions(self, broker_ids: Any = None, producer_id_filters: Any = None,
                          state_filters: Any = None, duration_filter_ms: Any = None
                          ) -> dict[int, list[TransactionListing]]:
        return {b: [t for t in ls
                    if (not producer_id_filters or t.producer_id in producer_id_filters)
                    and (not state_filters or t.state.value in state_filters)]
                for b, ls in self.listings.items()}

    def describe_transactions(self, ids: list[str]) -> dict[str, TransactionDescription]:
        out = {}
        for tid in ids:
            if tid not in self.descriptions:
                raise TransactionalIdNotFoundError(f"no {tid}")
            out[tid] = self.descriptions[tid]
        return out

    def describe_producers(self, tps: list[TopicPartition], broker_id: int | None = None
                           ) -> dict[TopicPartition, PartitionProducerState]:
        self.producer_calls.append((list(tps), broker_id))
        if self.fail_producers is not None:
            raise self.fail_producers
        return {tp: PartitionProducerState(self.producers.get(tp, [])) for tp in tps}

    def describe_topics(self, topics: list[str] | None = None) -> list[dict[str, Any]]:
        names = topics or sorted({t for t, _ in self.replicas})
        return [{"name": n, "error_code": 0, "is_internal": n.startswith("__"),
                 "partitions": [{"partition_index": p, "replica_nodes": r}
                                for (t, p), r in sorted(self.replicas.items()) if t == n]}
                for n in names]

    def abort_transaction(self, spec: AbortTransactionSpec) -> None:
        self.aborted.append(spec)


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> FakeAdmin:
    fake = FakeAdmin()
    monkeypatch.setattr(transactions, "admin_client", lambda args: fake)
    monkeypatch.setattr(transactions, "now_ms", lambda: NOW)
    return fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["transactions", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_list(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0 and admin.closed
    lines = out.splitlines()
    assert lines[0].split() == ["TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"]
    assert [line.split() for line in lines[1:]] == [
        ["a", "1", "10", "Ongoing"], ["b", "2", "11", "CompleteCommit"],
        ["c", "1", "15", "Ongoing"]]
    code, out, _ = run(capsys, "list", "--json", "--state", "CompleteCommit")
    assert json.loads(out) == [{"transactional_id": "b", "coordinator": 2, "producer_id": 11,
                                "state": "CompleteCommit"}]


def test_describe(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "describe", "--transactional-id", "a")
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:5] == ["COORDINATOR", "TRANSACTIONAL-ID", "PRODUCER-ID",
                                  "PRODUCER-EPOCH", "STATE"]
    assert row.split() == ["2", "a", "10", "4", "Ongoing", "60000", str(NOW - 20 * MIN),
                           str(20 * MIN), "t-0,t-1"]
    admin.descriptions["e"] = description("Empty")
    _, out, _ = run(capsys, "describe", "--transactional-id", "e", "--json")
    got = json.loads(out)
    assert (got["state"], got["start_time_ms"], got["duration_ms"], got["partitions"]) == (
        "Empty", None, None, [])


def test_describe_an_unknown_id(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "describe", "--transactional-id", "zz")
    assert code == 1 and out == ""
    assert "transactional id 'zz' is not known to its coordinator" in err
    assert len(err.splitlines()) == 1


def test_describe_producers(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "describe-producers", "--topic", "t", "--partition", "1")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["PRODUCER-ID", "PRODUCER-EPOCH", "COORDINATOR-EPOCH", "LAST-SEQUENCE",
                       "LAST-TIMESTAMP", "CURRENT-TXN-START-OFFSET"]
    assert [r[0] for r in rows[1:]] == ["12", "13", "14"]
    assert rows[3][-1] == "None"
    assert admin.producer_calls == [([TopicPartition("t", 1)], None)]
    _, out, _ = run(capsys, "describe-producers", "--topic", "u", "--partition", "0",
                    "--broker-id", "3", "--json")
    assert json.loads(out) == {"topic": "u", "partition": 0, "producers": [
        {"producer_id": 15, "producer_epoch": 0, "coordinator_epoch": -1, "last_sequence": 7,
         "last_timestamp": NOW - 16 * MIN, "current_txn_start_offset": 0}]}
    assert admin.producer_calls[-1] == ([TopicPartition("u", 0)], 3)


def test_describe_producers_error_is_one_line(admin: FakeAdmin,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    admin.fail_producers = TopicAuthorizationFailedError("DescribeProducersRequest failed")
    code, _, err = run(capsys, "describe-producers", "--topic", "t", "--partition", "0")
    assert code == 1
    assert err.startswith("odradek: error: cannot describe the producers of t-0 on its "
                          "leader: TopicAuthorizationFailed")
    assert "lacks the ACL" in err
    assert len(err.splitlines()) == 1


def test_find_hanging(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "find-hanging")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["TOPIC", "PARTITION", "PRODUCER-ID", "PRODUCER-EPOCH",
                       "COORDINATOR-EPOCH", "START-OFFSET", "LAST-TIMESTAMP", "DURATION-MIN"]
    # 10 is part of its coordinator's transaction, 13 is recent, 14 has nothing open,
    # __consumer_offsets is internal and not named.
    assert rows[1:] == [
        ["t", "0", "11", "2", "3", "8", str(NOW - 20 * MIN), "20"],
        ["t", "1", "12", "0", "3", "3", str(NOW - 30 * MIN), "30"],
        ["u", "0", "15", "0", "-1", "0", str(NOW - 16 * MIN), "16"]]
    # One DescribeProducers for every partition searched.
    assert sorted(admin.producer_calls[0][0]) == [
        TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)]


def test_find_hanging_scopes(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "find-hanging", "--max-transaction-timeout", "25", "--json")
    assert [(r["topic"], r["producer_id"]) for r in json.loads(out)] == [("t", 12)]
    _, out, _ = run(capsys, "find-hanging", "--broker-id", "3", "--json")
    assert admin.producer_calls[-1] == ([TopicPartition("t", 1), TopicPartition("u", 0)], 3)
    assert [r["producer_id"] for r in json.loads(out)] == [12, 15]
    _, out, _ = run(capsys, "find-hanging", "--topic", "__consumer_offsets", "--json")
    assert [r["producer_id"] for r in json.loads(out)] == [16]
    _, out, _ = run(capsys, "find-hanging", "--topic", "t", "--partition", "0", "--json")
    assert [r["producer_id"] for r in json.loads(out)] == [11]
    code, _, err = run(capsys, "find-hanging", "--partition", "0")
    assert code == 1 and "--partition needs --topic" in err


def test_find_hanging_nothing_open(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "find-hanging", "--max-transaction-timeout", "120", "--json")
    assert json.loads(out) == []


def test_abort(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "abort", "--topic", "t", "--partition", "0",
                       "--start-offset", "8")
    assert code == 0
    assert admin.aborted == [AbortTransactionSpec(TopicPartition("t", 0), 11, 2, 3)]
    assert "producer 11 (epoch 2)" in out
    # A producer with no marker yet on the partition reports coordinator epoch -1: the
    # marker goes with 0, as Kafka's tool sends.
    _, out, _ = run(capsys, "abort", "--topic", "u", "--partition", "0", "--start-offset", "0",
                    "--json")
    assert admin.aborted[-1] == AbortTransactionSpec(TopicPartition("u", 0), 15, 0, 0)
    assert json.loads(out)["coordinator_epoch"] == 0


def test_abort_without_a_transaction_there(admin: FakeAdmin,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "abort", "--topic", "t", "--partition", "1",
                       "--start-offset", "4")
    assert code == 1 and admin.aborted == []
    assert "no open transaction starts at offset 4 on t-1 (open ones start at: 3, 9)" in err


def test_a_moving_leader_is_asked_again(admin: FakeAdmin, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from odradek.broker.cli import common

    monkeypatch.setattr(common.time, "sleep", lambda s: None)
    admin.fail_producers = NotLeaderForPartitionError("moving")
    answers = iter([True, False])

    real = admin.describe_producers

    def flaky(tps: list[TopicPartition], broker_id: int | None = None) -> Any:
        admin.fail_producers = NotLeaderForPartitionError("moving") if next(answers) else None
        return real(tps, broker_id)

    admin.describe_producers = flaky  # type: ignore[method-assign]
    code, out, _ = run(capsys, "describe-producers", "--topic", "t", "--partition", "0")
    assert code == 0 and len(admin.producer_calls) == 2

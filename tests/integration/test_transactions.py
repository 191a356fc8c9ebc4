"""Transactions with real clients: committed records are read once, aborted ones never by
read_committed consumers, zombies are fenced, and an abandoned transaction times out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.helpers import unique_name
from tests.integration.harness import Cluster, NodeProcess, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def txn_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    # Timed-out transactions are looked for every half second (10 s by default).
    n = NodeProcess(tmp_path_factory.mktemp("txn"), overrides={
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500}).start()
    yield n
    n.kill()


def create_topic(bootstrap: str, partitions: int = 2, replication: int = 1) -> str:
    topic = unique_name("txn")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, replication)])[topic].result(15)
    return topic


def consume(bootstrap: str, topic: str, isolation: str, expect: int,
            settle_s: float = 1.0, timeout_s: float = 20.0) -> list[str]:
    """Values read from the start of ``topic``, in order per partition (partitions one
    after the other), once ``expect`` arrived and nothing more came for ``settle_s``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("g"),
                  "auto.offset.reset": "earliest", "isolation.level": isolation,
                  "enable.auto.commit": False})
    c.subscribe([topic])
    by_partition: dict[int, list[str]] = {}
    try:
        deadline = time.monotonic() + timeout_s
        quiet_until = None
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            count = sum(map(len, by_partition.values()))
            if m is None or m.error() is not None:
                if count >= expect:
                    quiet_until = quiet_until or time.monotonic() + settle_s
                    if time.monotonic() >= quiet_until:
                        break
                continue
            quiet_until = None
            by_partition.setdefault(m.partition(), []).append(m.value().decode())
    finally:
        c.close()
    return [v for p in sorted(by_partition) for v in by_partition[p]]


def test_confluent_commit_and_abort_are_seen_by_read_committed(txn_node: NodeProcess) -> None:
    bs = txn_node.bootstrap
    topic = create_topic(bs, partitions=1)
    p = Producer({"bootstrap.servers": bs, "transactional.id": unique_name("tid")})
    p.init_transactions(30)
    for i, commit in enumerate((True, False, True, False, True)):
        p.begin_transaction()
        for j in range(4):
            p.produce(topic, key=str(j).encode(), value=f"{i}-{j}".encode())
        p.flush(10)  # on the broker before the transaction ends (the abort is real)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    committed = [f"{i}-{j}" for i in (0, 2, 4) for j in range(4)]
    assert consume(bs, topic, "read_committed", len(committed)) == committed
    everything = [f"{i}-{j}" for i in range(5) for j in range(4)]
    assert consume(bs, topic, "read_uncommitted", len(everything)) == everything


def test_open_transaction_holds_read_committed_back(txn_node: NodeProcess) -> None:
    bs = txn_node.bootstrap
    topic = create_topic(bs, partitions=1)
    plain = Producer({"bootstrap.servers": bs})
    plain.produce(topic, value=b"before")
    plain.flush(10)
    p = Producer({"bootstrap.servers": bs, "transactional.id": unique_name("tid")})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, value=b"in-txn")
    p.flush(10)
    plain.produce(topic, value=b"after")  # behind the open transaction: not stable yet
    plain.flush(10)
    assert consume(bs, topic, "read_committed", 1) == ["before"]
    p.commit_transaction(30)
    assert consume(bs, topic, "read_committed", 3) == ["before", "in-txn", "after"]


def test_a_new_producer_fences_the_zombie(txn_node: NodeProcess) -> None:
    bs = txn_node.bootstrap
    topic = create_topic(bs, partitions=1)
    tid = unique_name("tid")
    zombie = Producer({"bootstrap.servers": bs, "transactional.id": tid})
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie")
    zombie.flush(10)
    successor = Producer({"bootstrap.servers": bs, "transactional.id": tid})
    # Aborts the zombie's open transaction (fencing it) before answering.
    successor.init_transactions(30)
    successor.begin_transaction()
    successor.produce(topic, value=b"successor")
    successor.commit_transaction(30)
    with pytest.raises(KafkaException) as err:
        zombie.produce(topic, value=b"late")
        zombie.commit_transaction(10)
    assert err.value.args[0].fatal() or "fenced" in str(err.value).lower()
    assert consume(bs, topic, "read_committed", 1) == ["successor"]


def test_abandoned_transaction_times_out_and_aborts(txn_node: NodeProcess) -> None:
    bs = txn_node.bootstrap
    topic = create_topic(bs, partitions=1)
    p = Producer({"bootstrap.servers": bs, "transactional.id": unique_name("tid"),
                  "transaction.timeout.ms": 1500})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, value=b"abandoned")
    p.flush(10)
    plain = Producer({"bootstrap.servers": bs})
    plain.produce(topic, value=b"later")
    plain.flush(10)
    # The coordinator aborts it after 1.5 s: the records behind it become readable.
    assert consume(bs, topic, "read_committed", 1, timeout_s=30) == ["later"]


def test_kafka_python_transactional_producer(txn_node: NodeProcess) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    bs = txn_node.bootstrap
    topic = create_topic(bs, partitions=2)
    p = KafkaProducer(bootstrap_servers=bs, transactional_id=unique_name("tid"))
    try:
        p.init_transactions()
        p.begin_transaction()
        for i in range(6):
            p.send(topic, value=f"c{i}".encode(), partition=i % 2)
        p.commit_transaction()
        p.begin_transaction()
        for i in range(6):
            p.send(topic, value=f"a{i}".encode(), partition=i % 2)
        p.flush()
        p.abort_transaction()
    finally:
        p.close()
    c = KafkaConsumer(topic, bootstrap_servers=bs, auto_offset_reset="earliest",
                      isolation_level="read_committed", consumer_timeout_ms=4000)
    try:
        got = sorted(m.value.decode() for m in c)
    finally:
        c.close()
    assert got == [f"c{i}" for i in range(6)]


def test_aiokafka_transactional_producer(txn_node: NodeProcess) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bs = txn_node.bootstrap
    topic = create_topic(bs, partitions=1)

    async def run() -> list[str]:
        p = AIOKafkaProducer(bootstrap_servers=bs, transactional_id=unique_name("tid"))
        await p.start()
        try:
            async with p.transaction():
                for i in range(5):
                    await p.send(topic, f"c{i}".encode())
            await p.begin_transaction()
            await (await p.send(topic, b"aborted"))
            await p.abort_transaction()
            async with p.transaction():
                await p.send(topic, b"last")
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=bs, auto_offset_reset="earliest",
                             isolation_level="read_committed")
        await c.start()
        got: list[str] = []
        try:
            async with asyncio.timeout(20):
                while len(got) < 6:
                    batch = await c.getmany(timeout_ms=500)
                    got += [m.value.decode() for ms in batch.values() for m in ms]
            more = await c.getmany(timeout_ms=1000)
            got += [m.value.decode() for ms in more.values() for m in ms]
        finally:
            await c.stop()
        return got

    assert asyncio.run(run()) == [f"c{i}" for i in range(5)] + ["last"]


def test_find_coordinator_for_a_transactional_id(txn_node: NodeProcess) -> None:
    from kio.schema.errors import ErrorCode

    from odradek.broker.kafka.client import KafkaConnection

    with KafkaConnection.to(txn_node.bootstrap) as c:
        found = wait_for(lambda: (lambda r: r if r.error_code == ErrorCode.none else None)(
            c.request(10, 4, {"key_type": 1, "coordinator_keys": ["some-id"]}).coordinators[0]),
            20, "the transaction coordinator")
        assert found.node_id == txn_node.node_id
        empty = c.request(10, 4, {"key_type": 1, "coordinator_keys": [""]}).coordinators[0]
        assert empty.error_code == ErrorCode.invalid_request
        bad = c.request(10, 4, {"key_type": 7, "coordinator_keys": ["x"]}).coordinators[0]
        assert bad.error_code == ErrorCode.invalid_request


def test_a_write_outside_the_transaction_cannot_open_one(tmp_path: Path) -> None:
    """KIP-890 part 1: a transactional write to a partition not added to the producer's
    transaction (a late retry, a zombie after its abort) is refused by the partition's
    leader after asking the coordinator (on this node or another), so it cannot open a
    transaction no coordinator knows and hold back read_committed consumers for good."""
    from kio.schema.errors import ErrorCode

    from odradek.broker.kafka.client import KafkaConnection
    from odradek.storage.records import Record, encode_batch

    cluster = Cluster(tmp_path / "c3", 3).start()
    try:
        bs = cluster.nodes[0].bootstrap
        topic = create_topic(bs, partitions=3, replication=1)
        tid = unique_name("tid")
        with KafkaConnection.to(bs) as c:
            coordinator = wait_for(lambda: (lambda r: r if r.error_code == 0 else None)(
                c.request(10, 4, {"key_type": 1, "coordinator_keys": [tid]}).coordinators[0]),
                30, "the transaction coordinator").node_id
            md = c.request(3, 12, {"topics": [{"name": topic, "topic_id": None}]})
            leaders = {p.partition_index: p.leader_id for p in md.topics[0].partitions}
        with KafkaConnection.to(cluster.node(coordinator).bootstrap) as coord:
            init = wait_for(lambda: (lambda r: r if r.error_code == 0 else None)(
                coord.request(22, 4, {"transactional_id": tid, "transaction_timeout": 60000,
                                      "producer_id": -1, "producer_epoch": -1})),
                30, "a producer id")
        pid, epoch = init.producer_id, init.producer_epoch
        seq = dict.fromkeys(leaders, 0)

        def produce(partition: int) -> Any:
            batch = encode_batch([Record(0, value=b"v")], producer_id=pid, producer_epoch=epoch,
                                 base_sequence=seq[partition], is_transactional=True)
            with KafkaConnection.to(cluster.node(leaders[partition]).bootstrap) as c:
                r = c.request(0, 9, {"transactional_id": tid, "acks": -1, "timeout": 5000,
                                     "topic_data": [{"name": topic, "partition_data": [
                                         {"index": partition, "records": batch}]}]})
            out = r.responses[0].partition_responses[0]
            if out.error_code == ErrorCode.none:
                seq[partition] += 1
            return out

        def stable(partition: int) -> bool:
            with KafkaConnection.to(cluster.node(leaders[partition]).bootstrap) as c:
                ends = [c.request(2, 5, {"replica_id": -1, "isolation_level": level, "topics": [
                    {"name": topic, "partitions": [{"partition_index": partition,
                                                    "current_leader_epoch": -1,
                                                    "timestamp": -1}]}]}
                                  ).topics[0].partitions[0].offset for level in (0, 1)]
            return ends[0] == ends[1]

        with KafkaConnection.to(cluster.node(coordinator).bootstrap) as coord:
            # Not added: refused on every partition, wherever its leader is.
            for partition in leaders:
                refused = produce(partition)
                assert refused.error_code == ErrorCode.invalid_txn_state, partition
                assert stable(partition)
            added = coord.request(24, 3, {"v3_and_below_transactional_id": tid,
                                          "v3_and_below_producer_id": pid,
                                          "v3_and_below_producer_epoch": epoch,
                                          "v3_and_below_topics": [
                                              {"name": topic, "partitions": list(leaders)}]})
            assert all(r.partition_error_code == ErrorCode.none
                       for t in added.results_by_topic_v3_and_below
                       for r in t.results_by_partition)
            for partition in leaders:
                assert produce(partition).error_code == ErrorCode.none
                assert not stable(partition)  # the transaction is open
            ended = coord.request(26, 3, {"transactional_id": tid, "producer_id": pid,
                                          "producer_epoch": epoch, "committed": False})
            assert ended.error_code == ErrorCode.none
            for partition in leaders:
                wait_for(lambda p=partition: stable(p), 20, "the abort markers")
                # A late write after the abort does not open a transaction again (while the
                # coordinator still completes the abort it answers "not yet": retried).
                late = wait_for(lambda p=partition: (lambda r: r if r.error_code !=
                                ErrorCode.not_enough_replicas else None)(produce(p)),
                                20, "the coordinator's verdict")
                assert late.error_code == ErrorCode.invalid_txn_state
                assert stable(partition)
        assert len(set(leaders.values()) - {coordinator}) >= 1  # the remote path ran too
    finally:
        cluster.kill_all()


def odradek_json(*args: str) -> Any:
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", *args, "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_operator_finds_and_aborts_a_hanging_transaction(txn_node: NodeProcess) -> None:
    """`odradek transactions`: a live transaction is listed and described; a hanging one
    (a transactional write no coordinator knows, as an old client's late write left it)
    is found and aborted, which lets read_committed consumers past it."""
    from kio.schema.errors import ErrorCode

    from odradek.broker.kafka.client import KafkaConnection
    from odradek.storage.records import Record, encode_batch
    from tests.helpers import produce_raw
    from tests.integration.harness import metric

    bs = txn_node.bootstrap
    topic = create_topic(bs, partitions=2)
    tid = unique_name("tid")
    live = Producer({"bootstrap.servers": bs, "transactional.id": tid})
    live.init_transactions(30)
    live.begin_transaction()
    live.produce(topic, value=b"live", partition=0)
    live.flush(10)
    # The hanging one: a transactional batch written without a transactional id in the
    # request (no verification), its records an hour old.
    hour_ago = int(time.time() * 1000) - 3_600_000
    with KafkaConnection.to(bs) as c:
        pid = c.request(22, 4, {"transactional_id": None, "transaction_timeout": 60000,
                                "producer_id": -1, "producer_epoch": -1}).producer_id
        hung = produce_raw(c, topic, encode_batch(
            [Record(0, value=b"hung")], producer_id=pid, producer_epoch=0, base_sequence=0,
            is_transactional=True, timestamp_ms=hour_ago), partition=1)
        assert hung.error_code == ErrorCode.none
        plain = encode_batch([Record(0, value=b"after")])
        assert produce_raw(c, topic, plain, partition=1).error_code == ErrorCode.none

    listed = odradek_json("transactions", "list", "--bootstrap", bs)
    assert any(t["transactional_id"] == tid and t["state"] == "Ongoing"
               for t in listed), listed
    described = odradek_json("transactions", "describe", "--transactional-id", tid,
                             "--bootstrap", bs)
    assert described["state"] == "Ongoing" and f"{topic}-0" in described["partitions"]
    producers = odradek_json("transactions", "describe-producers", "--topic", topic,
                             "--partition", "1", "--bootstrap", bs)["producers"]
    assert [p["current_txn_start_offset"] for p in producers
            if p["producer_id"] == pid] == [hung.base_offset]
    hanging = odradek_json("transactions", "find-hanging", "--max-transaction-timeout", "1",
                           "--bootstrap", bs)
    assert [(h["topic"], h["partition"], h["producer_id"]) for h in hanging] == \
        [(topic, 1, pid)]  # not the live transaction: its coordinator knows it
    assert metric(txn_node, "odradek_transactions", 'state="ongoing"') >= 1
    assert consume(bs, topic, "read_committed", 0, settle_s=1.0, timeout_s=3) == []

    aborted = odradek_json("transactions", "abort", "--topic", topic, "--partition", "1",
                           "--start-offset", str(hung.base_offset), "--bootstrap", bs)
    assert aborted["aborted"] and aborted["producer_id"] == pid
    assert consume(bs, topic, "read_committed", 1) == ["after"]
    live.commit_transaction(30)
    assert consume(bs, topic, "read_committed", 2) == ["live", "after"]


def test_transactions_v2_at_the_protocol_level(txn_node: NodeProcess) -> None:
    """KIP-890 part 2, as Kafka 4's Java client speaks it once ApiVersions finalizes
    transaction.version 2: Produce v12 adds the partition itself, TxnOffsetCommit v5 the
    group's offsets partition, and EndTxn v5 answers the bumped epoch the producer goes on
    with."""
    from kio.schema.errors import ErrorCode

    from odradek.broker.kafka.client import KafkaConnection
    from odradek.storage.records import Record, encode_batch

    bs = txn_node.bootstrap
    topic = create_topic(bs, partitions=1)
    tid, group = unique_name("tid"), unique_name("g")
    with KafkaConnection.to(bs) as c:
        versions = c.request(18, 3, {"client_software_name": "t",
                                     "client_software_version": "1"})
        assert [(f.name, f.min_version_level, f.max_version_level)
                for f in versions.finalized_features] == [("transaction.version", 2, 2)]
        for key_type, key in ((1, tid), (0, group)):  # as a client finds its coordinators
            wait_for(lambda kt=key_type, k=key: c.request(
                10, 4, {"key_type": kt, "coordinator_keys": [k]}).coordinators[0].error_code == 0,
                30, "the coordinators")
        init = wait_for(lambda: (lambda r: r if r.error_code == 0 else None)(
            c.request(22, 5, {"transactional_id": tid, "transaction_timeout": 60000,
                              "producer_id": -1, "producer_epoch": -1})), 30, "a producer id")
        pid, epoch = init.producer_id, init.producer_epoch

        def produce(value: bytes, seq: int) -> Any:
            batch = encode_batch([Record(0, value=value)], producer_id=pid, producer_epoch=epoch,
                                 base_sequence=seq, is_transactional=True)
            return c.request(0, 12, {"transactional_id": tid, "acks": -1, "timeout": 5000,
                                     "topic_data": [{"name": topic, "partition_data": [
                                         {"index": 0, "records": batch}]}]}
                             ).responses[0].partition_responses[0]

        def end(commit: bool) -> Any:
            return c.request(26, 5, {"transactional_id": tid, "producer_id": pid,
                                     "producer_epoch": epoch, "committed": commit})

        # Transaction 1: a record and the group's offset, no AddPartitionsToTxn and no
        # AddOffsetsToTxn: the broker adds both partitions.
        assert produce(b"one", 0).error_code == ErrorCode.none
        committed = c.request(28, 5, {
            "transactional_id": tid, "group_id": group, "producer_id": pid,
            "producer_epoch": epoch, "generation_id": -1, "member_id": "",
            "group_instance_id": None, "topics": [{"name": topic, "partitions": [
                {"partition_index": 0, "committed_offset": 42, "committed_leader_epoch": -1,
                 "committed_metadata": ""}]}]})
        assert committed.topics[0].partitions[0].error_code == ErrorCode.none
        ended = end(True)
        assert ended.error_code == ErrorCode.none
        assert (ended.producer_id, ended.producer_epoch) == (pid, epoch + 1)
        epoch = ended.producer_epoch
        # Transaction 2, at the bumped epoch (sequences start over), aborted. Until the
        # first one's markers are written the coordinator answers "not yet", which the
        # leader passes on as NOT_ENOUGH_REPLICAS: producers retry.
        wait_for(lambda: produce(b"two", 0).error_code == ErrorCode.none, 20,
                 "the second transaction's first write")
        ended = end(False)
        assert ended.error_code == ErrorCode.none and ended.producer_epoch == epoch + 1

        def offset() -> int | None:
            r = c.request(9, 7, {"group_id": group, "require_stable": True,
                                 "topics": [{"name": topic, "partition_indexes": [0]}]})
            p = r.topics[0].partitions[0]
            return p.committed_offset if p.error_code == ErrorCode.none else None

        assert wait_for(offset, 20, "the transactional offset commit") == 42
    assert consume(bs, topic, "read_committed", 1) == ["one"]

"""Kafka's Java client (4.1) doing transactions against a 3-node Odradek cluster
(tests/compat/streams/TxnClient.java): a transactional producer commits and aborts, a second
instance with the same transactional id fences the first's open transaction, and consumers
read the topic back under both isolation levels.

A Kafka 4 client picks its transaction protocol from the transaction.version feature the
cluster finalizes in ApiVersions: the classic one (AddPartitionsToTxn before producing,
EndTxn v4 and lower) below 2, transactions v2 (KIP-890 part 2: partitions added by Produce
v12 itself, EndTxn v5 bumping the epoch every transaction) at 2. The test checks it chose
the one the cluster finalizes, and that either way the outcome is exactly right.

Run by hand without a JDK or Maven, the test skips and says what is missing; in CI (.ci/run
installs both and fetches the jars first) a missing piece fails it (tests/requirements.py).
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from tests.compat.java_app import SOURCES, JavaApp, compile_app
from tests.compat.kafka_tools import kafka_tools_lib
from tests.helpers import unique_name
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration

PARTITIONS = 3
PER_TXN = 6  # records per transaction: two on each partition
# TxnClient's transactions in order, and how each ends.
TRANSACTIONS = {"c0": "committed", "a1": "aborted", "c2": "committed", "a3": "fenced-open",
                "c4": "committed"}


@pytest.fixture(scope="module")
def client() -> JavaApp:
    """TxnClient compiled against Kafka 4.1's jars, before any node starts."""
    return compile_app(SOURCES / "TxnClient.java", kafka_tools_lib())


@pytest.fixture(scope="module")
def cluster(client: JavaApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("java-txn"), n=3).start()
    yield c
    c.kill_all()


def expected(txns: list[str]) -> dict[int, list[str]]:
    """Per partition, the values of ``txns``' records in the order TxnClient wrote them."""
    out: dict[int, list[str]] = defaultdict(list)
    for txn in txns:
        for i in range(PER_TXN):
            out[i % PARTITIONS].append(f"{txn}-{i}")
    return dict(out)


def test_commit_abort_and_fencing_read_committed(client: JavaApp, cluster: Cluster,
                                                 tmp_path: Path) -> None:
    """What is asserted:
    - every transaction ends as TxnClient says (the aborts and the fencing went through);
    - a read_committed consumer reads each committed record exactly once, per partition in
      the order written, and no aborted one, and stops at the log end (no transaction is
      left open, so the last stable offset is the high watermark);
    - a read_uncommitted consumer reads every record, the aborted ones too: the aborts were
      filtered out by the read_committed fetch, not lost on the way in;
    - the client used the protocol the cluster's finalized transaction.version asks for.
    """
    topic = unique_name("java-txn")
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 3)])
    finally:
        admin.close()

    out, err = tmp_path / "client.out", tmp_path / "client.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(client.argv(cluster.bootstrap, topic, str(PARTITIONS),
                                            unique_name("java-txn-id"), str(PER_TXN)),
                                stdout=o, stderr=e)
    try:
        code: int | str = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        code = "none: killed after 60 s"
    stdout = out.read_text(errors="replace")
    report = (f"exit {code}\n--- stdout ---\n{stdout}--- stderr ---\n"
              f"{err.read_text(errors='replace')[-8000:]}")
    assert code == 0 and stdout.splitlines()[-1:] == ["DONE"], report
    # Each send's outcome (TxnClient prints the failed ones): a transaction's write that
    # failed would make its abort cover nothing, its commit fail.
    assert not [line for line in stdout.splitlines() if line.startswith("SENDFAIL")], report
    lines = [line.split() for line in stdout.splitlines()]
    assert {t: how for _, t, how in (x for x in lines if x[0] == "TXN")} == TRANSACTIONS, report

    reads: dict[str, dict[int, list[tuple[int, str, str]]]] = defaultdict(
        lambda: defaultdict(list))
    ends: dict[str, dict[int, int]] = defaultdict(dict)
    for words in lines:
        if words[0] == "READ":
            _, isolation, partition, offset, key, value = words
            reads[isolation][int(partition)].append((int(offset), key, value))
        elif words[0] == "END":
            ends[words[1]][int(words[2])] = int(words[3])

    everything = expected(list(TRANSACTIONS))
    for isolation, want in (("read_committed", expected(["c0", "c2", "c4"])),
                            ("read_uncommitted", everything)):
        got = reads[isolation]
        assert {part: [value for _, _, value in rs] for part, rs in got.items()} == want, \
            f"{isolation}\n{report}"
        for rs in got.values():
            offsets = [offset for offset, _, _ in rs]
            assert offsets == sorted(set(offsets)), f"{isolation}: offsets {offsets}"
            assert all(value.startswith(f"{key}-") for _, key, value in rs), rs
    # Each partition holds its records and one marker per transaction (the fenced one's
    # abort marker too); both consumers end there.
    log_end = len(everything[0]) + len(TRANSACTIONS)
    want_ends = {part: log_end for part in range(PARTITIONS)}
    assert ends == {"read_committed": want_ends, "read_uncommitted": want_ends}, report

    level = finalized_transaction_version(cluster.bootstrap)
    assert [w[1] for w in lines if w[0] == "PROTOCOL"] == ["v2" if level >= 2 else "classic"], \
        f"transaction.version {level}\n{report}"


def finalized_transaction_version(bootstrap: str) -> int:
    """The transaction.version level the cluster finalizes (ApiVersions v3), 0 if none."""
    from odradek.broker.kafka.client import KafkaConnection

    with KafkaConnection.to(bootstrap.split(",")[0]) as c:
        r = c.request(18, 3, {"client_software_name": "odradek-tests",
                              "client_software_version": "1"})
    return max((f.max_version_level for f in r.finalized_features
                if f.name == "transaction.version"), default=0)


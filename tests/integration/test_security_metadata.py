"""SCRAM users, ACLs and client quotas kept in the cluster metadata, through real admin
clients (kafka-python, confluent-kafka) and ``odradek users|acls|quotas`` against a 3-node
cluster: a change sent to one broker goes through the active controller (gRPC when that is
another node) and shows on every broker once its image has it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.harness import REPO, Cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("security-metadata"), n=3).start()
    yield c
    c.kill_all()


def kp_admin(bootstrap: str) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)


def ck_admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def cli(cluster: Cluster, *argv: str, stdin: str | None = None, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "odradek.broker.cli.main", *argv,
                           "--bootstrap", cluster.node(2).bootstrap],
                          input=stdin, capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


# --- SCRAM users ------------------------------------------------------------------------


def test_scram_credentials_with_kafka_python(cluster: Cluster) -> None:
    from kafka.admin import (
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    admin = kp_admin(cluster.node(1).bootstrap)
    try:
        assert admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion("kp-alice", ScramMechanism.SCRAM_SHA_256, "pw1"),
            UserScramCredentialUpsertion("kp-bob", ScramMechanism.SCRAM_SHA_512, "pw2",
                                         iterations=8192),
        ]) == {"kp-alice": None, "kp-bob": None}
        # Kafka's errors, per user.
        got = admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion("kp-few", ScramMechanism.SCRAM_SHA_256, "x",
                                         iterations=1024),
            UserScramCredentialDeletion("kp-nobody", ScramMechanism.SCRAM_SHA_256),
            UserScramCredentialDeletion("kp-bob", ScramMechanism.SCRAM_SHA_512),
            UserScramCredentialUpsertion("kp-bob", ScramMechanism.SCRAM_SHA_256, "y"),
        ])
        assert got == {
            "kp-few": "Too few iterations",
            "kp-nobody": "Attempt to delete a user credential that does not exist",
            "kp-bob": "A user credential cannot be altered twice in the same request",
        }
    finally:
        admin.close()

    # Another broker describes them from its own image once it has the change.
    other = kp_admin(cluster.node(3).bootstrap)
    try:
        def described() -> dict[str, Any] | None:
            found = other.describe_user_scram_credentials(["kp-alice", "kp-bob"])
            return found if all(v["error"] is None for v in found.values()) else None

        found = wait_for(described, 10, "kp-alice and kp-bob on broker 3")
        assert found["kp-alice"]["credential_infos"] == [
            {"mechanism": ScramMechanism.SCRAM_SHA_256, "iterations": 4096}]
        assert found["kp-bob"]["credential_infos"] == [
            {"mechanism": ScramMechanism.SCRAM_SHA_512, "iterations": 8192}]
        everyone = other.describe_user_scram_credentials()
        assert {"kp-alice", "kp-bob"} <= set(everyone)
        missing = other.describe_user_scram_credentials(["kp-nobody"])["kp-nobody"]
        assert missing["error"] == ("Attempt to describe a user credential that does not "
                                    "exist: kp-nobody")
    finally:
        other.close()


def test_scram_credentials_with_confluent_kafka(cluster: Cluster) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    admin = ck_admin(cluster.node(2).bootstrap)
    futures = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("ck-carol", ScramCredentialInfo(
            ScramMechanism.SCRAM_SHA_256, 10000), b"secret"),
        UserScramCredentialUpsertion("ck-dave", ScramCredentialInfo(
            ScramMechanism.SCRAM_SHA_512, 4096), b"secret")])
    for f in futures.values():
        assert f.result(timeout=15) is None

    def described() -> dict[str, Any] | None:
        try:
            got = admin.describe_user_scram_credentials(["ck-carol", "ck-dave"])
            return {user: f.result(timeout=15) for user, f in got.items()}
        except KafkaException:
            return None  # not yet in this broker's image

    found = wait_for(described, 10, "ck-carol and ck-dave")
    carol = found["ck-carol"].scram_credential_infos
    assert [(c.mechanism, c.iterations) for c in carol] == [(ScramMechanism.SCRAM_SHA_256, 10000)]

    futures = admin.alter_user_scram_credentials([
        UserScramCredentialDeletion("ck-dave", ScramMechanism.SCRAM_SHA_512)])
    futures["ck-dave"].result(timeout=15)
    futures = admin.alter_user_scram_credentials([
        UserScramCredentialDeletion("ck-dave", ScramMechanism.SCRAM_SHA_512)])
    with pytest.raises(KafkaException) as err:
        futures["ck-dave"].result(timeout=15)
    assert err.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND


def test_users_command(cluster: Cluster) -> None:
    cli(cluster, "users", "add", "--user", "cli-erin", "--password", "pw",
        "--mechanism", "SCRAM-SHA-512", "--iterations", "5000")
    # The password from standard input, as scripts give it.
    cli(cluster, "users", "add", "--user", "cli-erin", stdin="other-pw\n")

    def listed() -> list[dict[str, Any]] | None:
        proc = cli(cluster, "users", "list", "--user", "cli-erin", "--json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    got = wait_for(listed, 10, "cli-erin listed")
    assert got == [
        {"user": "cli-erin", "mechanism": "SCRAM-SHA-256", "iterations": 4096},
        {"user": "cli-erin", "mechanism": "SCRAM-SHA-512", "iterations": 5000}]
    table = cli(cluster, "users", "list").stdout
    assert "USER" in table and "cli-erin" in table
    bad = cli(cluster, "users", "add", "--user", "cli-erin", "--password", "x",
              "--iterations", "100", check=False)
    assert bad.returncode == 1 and "--iterations must be between 4096 and 16384" in bad.stderr
    cli(cluster, "users", "delete", "--user", "cli-erin", "--mechanism", "SCRAM-SHA-512")
    cli(cluster, "users", "delete", "--user", "cli-erin")
    gone = cli(cluster, "users", "delete", "--user", "cli-erin", "--mechanism",
               "SCRAM-SHA-256", check=False)
    assert gone.returncode == 1 and "ResourceNotFound" in gone.stderr
    missing = cli(cluster, "users", "list", "--user", "cli-erin", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr

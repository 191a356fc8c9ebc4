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
    # The ACL APIs need an authorizer (without one they answer SECURITY_DISABLED, as in
    # Kafka); the clients here connect as User:ANONYMOUS, a super user.
    c = Cluster(tmp_path_factory.mktemp("security-metadata"), n=3, overrides={
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS"}).start()
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


# --- ACLs -----------------------------------------------------------------------------------


def test_acls_with_confluent_kafka(cluster: Cluster) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    admin = ck_admin(cluster.node(1).bootstrap)
    read = AclBinding(ResourceType.TOPIC, "ck-orders", ResourcePatternType.LITERAL,
                      "User:ck-alice", "*", AclOperation.READ, AclPermissionType.ALLOW)
    prefixed = AclBinding(ResourceType.TOPIC, "ck-pay-", ResourcePatternType.PREFIXED,
                          "User:ck-alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    deny = AclBinding(ResourceType.GROUP, "ck-group", ResourcePatternType.LITERAL,
                      "User:ck-mallory", "10.0.0.1", AclOperation.ALL, AclPermissionType.DENY)
    for f in admin.create_acls([read, prefixed, deny]).values():
        assert f.result(timeout=15) is None
    # Created again: a success that adds no copy.
    admin.create_acls([read])[read].result(timeout=15)

    # Another broker than the one that took the change, once its image has it.
    other = ck_admin(cluster.node(3).bootstrap)
    found = wait_for(lambda: _describe_on(other), 10, "ck-alice's ACLs on broker 3")
    assert sorted(found, key=str) == sorted([read, prefixed], key=str)
    # MATCH: every ACL that applies to the topic ck-pay-eu.
    match = other.describe_acls(AclBindingFilter(
        ResourceType.TOPIC, "ck-pay-eu", ResourcePatternType.MATCH, None, None,
        AclOperation.ANY, AclPermissionType.ANY)).result(timeout=15)
    assert match == [prefixed]

    deleted = admin.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, None, ResourcePatternType.ANY, "User:ck-alice", None,
        AclOperation.ANY, AclPermissionType.ANY)])
    (matched,) = [f.result(timeout=15) for f in deleted.values()]
    assert sorted(matched, key=str) == sorted([read, prefixed], key=str)
    # An invalid binding is refused with Kafka's message (BROKER is librdkafka's CLUSTER).
    bad = AclBinding(ResourceType.BROKER, "not-the-cluster", ResourcePatternType.LITERAL,
                     "User:x", "*", AclOperation.ALTER, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException, match="The only valid name for the CLUSTER resource"):
        admin.create_acls([bad])[bad].result(timeout=15)
    # The group's DENY is still there; removing it leaves nothing of this test.
    left = admin.delete_acls([AclBindingFilter(
        ResourceType.GROUP, "ck-group", ResourcePatternType.LITERAL, None, None,
        AclOperation.ANY, AclPermissionType.ANY)])
    assert [f.result(timeout=15) for f in left.values()] == [[deny]]


def _describe_on(admin: Any) -> list[Any] | None:
    """ck-alice's ACLs as this broker describes them, once both are there."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    found = admin.describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, "User:ck-alice", None,
        AclOperation.ANY, AclPermissionType.ANY)).result(timeout=15)
    return found if len(found) == 2 else None


def test_acls_with_kafka_python(cluster: Cluster) -> None:
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )

    admin = kp_admin(cluster.node(2).bootstrap)
    try:
        acl = ACL("User:kp-bob", "*", ACLOperation.DESCRIBE, ACLPermissionType.ALLOW,
                  ResourcePattern(ResourceType.TRANSACTIONAL_ID, "kp-txn-",
                                  ACLResourcePatternType.PREFIXED))
        result = admin.create_acls([acl])
        assert result["succeeded"] == [acl] and not result["failed"]
        bob = ACLFilter("User:kp-bob", None, ACLOperation.ANY, ACLPermissionType.ANY,
                        ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))

        def described() -> list[Any] | None:
            acls, error = admin.describe_acls(bob)
            assert error.errno == 0
            return acls or None

        assert wait_for(described, 10, "kp-bob's ACL") == [acl]
        ((_, matched, error),) = admin.delete_acls([bob])
        assert error.errno == 0 and matched == [acl]
    finally:
        admin.close()


def test_acls_command(cluster: Cluster) -> None:
    out = cli(cluster, "acls", "add", "--allow-principal", "User:cli-carol", "--operation",
              "Read", "--operation", "Describe", "--topic", "cli-t", "--group", "cli-g",
              "--json")
    assert len(json.loads(out.stdout)["added"]) == 4

    def listed() -> list[dict[str, Any]] | None:
        got = json.loads(cli(cluster, "acls", "list", "--principal", "User:cli-carol",
                             "--json").stdout)
        return got if len(got) == 4 else None

    got = wait_for(listed, 10, "cli-carol's ACLs")
    assert {(a["resource_type"], a["resource_name"], a["operation"]) for a in got} == {
        ("TOPIC", "cli-t", "Read"), ("TOPIC", "cli-t", "Describe"),
        ("GROUP", "cli-g", "Read"), ("GROUP", "cli-g", "Describe")}
    table = cli(cluster, "acls", "list", "--topic", "cli-t").stdout
    assert "cli-carol" in table and "PERMISSION" in table
    bad = cli(cluster, "acls", "add", "--allow-principal", "carol", "--operation", "Read",
              "--topic", "cli-t", check=False)
    assert bad.returncode == 1 and "Could not parse principal" in bad.stderr
    unknown = cli(cluster, "acls", "add", "--allow-principal", "User:x", "--operation", "Fly",
                  "--topic", "cli-t", check=False)
    assert unknown.returncode == 1 and "unknown operation 'Fly'" in unknown.stderr
    deleted = json.loads(cli(cluster, "acls", "delete", "--topic", "cli-t", "--json").stdout)
    assert len(deleted["deleted"]) == 2
    deleted = json.loads(cli(cluster, "acls", "delete", "--group", "cli-g", "--operation",
                             "Read", "--json").stdout)
    assert [a["operation"] for a in deleted["deleted"]] == ["Read"]


# --- client quotas --------------------------------------------------------------------------


def test_client_quotas_over_the_protocol(cluster: Cluster) -> None:
    """Neither kafka-python nor confluent-kafka has the client quota APIs: our own client
    sends AlterClientQuotas to broker 1 and DescribeClientQuotas to broker 3."""
    from odradek.broker.kafka.client import KafkaConnection

    def entry(user: str | None, client: str | None, key: str, value: float | None
              ) -> dict[str, Any]:
        entity = [{"entity_type": "user", "entity_name": user}]
        if client is not None:
            entity.append({"entity_type": "client-id", "entity_name": client})
        return {"entity": entity, "ops": [{"key": key, "value": value or 0.0,
                                           "remove": value is None}]}

    with KafkaConnection.to(cluster.node(1).bootstrap) as one, \
            KafkaConnection.to(cluster.node(3).bootstrap) as three:
        altered = one.request(49, 1, {"validate_only": False, "entries": [
            entry("q-alice", None, "producer_byte_rate", 1048576.0),
            entry("q-alice", "q-app", "request_percentage", 25.0),
            entry(None, None, "consumer_byte_rate", 2097152.0),
            entry("q-bob", None, "producer_byte_rate", 0.5)]})
        assert [(int(e.error_code), e.error_message) for e in altered.entries] == [
            (0, None), (0, None), (0, None),
            (42, "producer_byte_rate cannot be a fractional value.")]

        def describe(*components: tuple[str, int, str | None], strict: bool = False) -> Any:
            return three.request(48, 1, {"strict": strict, "components": [
                {"entity_type": t, "match_type": m, "match": n} for t, m, n in components]})

        def alice() -> dict[Any, Any] | None:
            got = describe(("user", 0, "q-alice"))
            found = {tuple((e.entity_type, e.entity_name) for e in en.entity):
                     {v.key: v.value for v in en.values} for en in got.entries}
            return found if len(found) == 2 else None

        assert wait_for(alice, 10, "q-alice's quotas on broker 3") == {
            (("user", "q-alice"),): {"producer_byte_rate": 1048576.0},
            (("user", "q-alice"), ("client-id", "q-app")): {"request_percentage": 25.0}}
        default = describe(("user", 1, None), strict=True)
        assert [[(e.entity_type, e.entity_name) for e in en.entity] for en in default.entries
                ] == [[("user", None)]]
        bad = describe(("user", 0, None))
        assert int(bad.error_code) == 42 and bad.entries is None

        # validate_only checks and changes nothing; a removal takes the key away.
        checked = one.request(49, 1, {"validate_only": True, "entries": [
            entry("q-carol", None, "producer_byte_rate", 100.0)]})
        assert int(checked.entries[0].error_code) == 0
        one.request(49, 0, {"validate_only": False, "entries": [
            entry("q-alice", None, "producer_byte_rate", None)]})

        def removed() -> bool:
            got = describe(("user", 0, "q-alice"), strict=True)
            return not got.entries

        wait_for(removed, 10, "q-alice's producer quota removed")
        assert not describe(("user", 0, "q-carol")).entries

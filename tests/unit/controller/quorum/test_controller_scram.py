"""AlterUserScramCredentials on the controller: Kafka's checks, errors and records."""

from __future__ import annotations

import asyncio

from odradek.broker.security.scram import derive_credential
from odradek.controller.metadata import MetadataImage
from odradek.controller.metadata.requests import (
    AlterScramCredentialResult,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from odradek.controller.metadata.scram import salted_password
from odradek.controller.quorum import LocalMetadataLog, QuorumController
from odradek.controller.quorum.scram import TWICE, alter_user_scram_credentials
from odradek.controller.service import convert
from tests.unit.controller.quorum.mdtest_helpers import applied

SHA256, SHA512 = 1, 2
UNSUPPORTED_SASL_MECHANISM = 33
RESOURCE_NOT_FOUND = 91
DUPLICATE_RESOURCE = 92
UNACCEPTABLE_CREDENTIAL = 93


def upsert(user: str, password: str = "pw", mechanism: int = SHA256, iterations: int = 4096,
           salt: bytes = b"salt") -> ScramCredentialUpsertion:
    name = {SHA256: "SCRAM-SHA-256", SHA512: "SCRAM-SHA-512"}.get(mechanism, "SCRAM-SHA-256")
    return ScramCredentialUpsertion(user, mechanism, iterations, salt,
                                    salted_password(name, password, salt, iterations))


def alter(image: MetadataImage, deletions=(), upsertions=()
          ) -> tuple[MetadataImage, dict[str, tuple[int, str | None]]]:
    image, results = applied(image, alter_user_scram_credentials(image, deletions, upsertions))
    return image, {r.user: (int(r.error_code), r.error_message) for r in results}


def test_upsert_stores_what_verifies_the_password() -> None:
    image, results = alter(MetadataImage.EMPTY, upsertions=[
        upsert("alice", "secret", SHA256, 4096, b"s1"),
        upsert("bob", "hunter2", SHA512, 8192, b"s2")])
    assert results == {"alice": (0, None), "bob": (0, None)}
    for user, password, mechanism, iterations, salt in [
            ("alice", "secret", "SCRAM-SHA-256", 4096, b"s1"),
            ("bob", "hunter2", "SCRAM-SHA-512", 8192, b"s2")]:
        stored = image.scram_credentials[(user, mechanism)]
        expected = derive_credential(mechanism, password, salt, iterations)
        # The broker's SASL server derives the same keys from the password.
        assert (stored.salt, stored.stored_key, stored.server_key, stored.iterations) == (
            expected.salt, expected.stored_key, expected.server_key, expected.iterations)


def test_a_new_upsert_replaces_the_credential_and_delete_removes_it() -> None:
    image, _ = alter(MetadataImage.EMPTY, upsertions=[upsert("alice", "one")])
    image, results = alter(image, upsertions=[upsert("alice", "two", iterations=5000)])
    assert results == {"alice": (0, None)}
    assert image.scram_credentials[("alice", "SCRAM-SHA-256")].iterations == 5000
    image, results = alter(image, deletions=[ScramCredentialDeletion("alice", SHA256)])
    assert results == {"alice": (0, None)} and not image.scram_credentials


def test_kafkas_checks_and_messages() -> None:
    image, _ = alter(MetadataImage.EMPTY, upsertions=[upsert("alice")])
    result = alter_user_scram_credentials(
        image,
        [ScramCredentialDeletion("nobody", SHA256),
         ScramCredentialDeletion("alice", SHA512),  # alice has SHA-256 only
         ScramCredentialDeletion("", SHA256),
         ScramCredentialDeletion("x", 0)],
        [upsert("few", iterations=4095), upsert("many", iterations=16385),
         upsert("edge-low", iterations=4096), upsert("edge-high", iterations=16384),
         upsert("unknown", mechanism=9), upsert("", mechanism=SHA256)])
    got = {r.user: (int(r.error_code), r.error_message) for r in result.response}
    not_found = (RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist")
    assert got == {
        "nobody": not_found,
        "alice": not_found,
        # The empty user is refused once, for its first appearance (a deletion).
        "": (UNACCEPTABLE_CREDENTIAL, "Username must not be empty"),
        "x": (UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"),
        "few": (UNACCEPTABLE_CREDENTIAL, "Too few iterations"),
        "many": (UNACCEPTABLE_CREDENTIAL, "Too many iterations"),
        "edge-low": (0, None),
        "edge-high": (0, None),
        "unknown": (UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"),
    }
    # Only the two valid upserts become records.
    assert [r.user_scram_credential.name for r in result.records] == ["edge-low", "edge-high"]


def test_a_user_altered_twice_is_refused_whatever_the_mechanisms() -> None:
    image, _ = alter(MetadataImage.EMPTY, upsertions=[upsert("alice"), upsert("bob")])
    result = alter_user_scram_credentials(
        image,
        [ScramCredentialDeletion("alice", SHA256), ScramCredentialDeletion("bob", SHA256),
         ScramCredentialDeletion("bob", SHA512)],
        [upsert("alice", mechanism=SHA512), upsert("carol"), upsert("carol", mechanism=SHA512),
         upsert("carol")])
    got = {r.user: (int(r.error_code), r.error_message) for r in result.response}
    assert got == {"alice": (DUPLICATE_RESOURCE, TWICE), "bob": (DUPLICATE_RESOURCE, TWICE),
                   "carol": (DUPLICATE_RESOURCE, TWICE)}
    assert result.records == ()
    # One result per user, in the order users first appear.
    assert [r.user for r in result.response] == ["alice", "bob", "carol"]


def test_deletions_and_upsertions_of_other_users_apply_together() -> None:
    image, _ = alter(MetadataImage.EMPTY, upsertions=[upsert("alice")])
    image, results = alter(image, [ScramCredentialDeletion("alice", SHA256),
                                   ScramCredentialDeletion("ghost", SHA256)],
                           [upsert("bob")])
    assert results == {"alice": (0, None), "ghost": (RESOURCE_NOT_FOUND, results["ghost"][1]),
                       "bob": (0, None)}
    assert set(image.scram_credentials) == {("bob", "SCRAM-SHA-256")}


def test_quorum_controller_commits_then_answers(tmp_path) -> None:
    async def run() -> None:
        log = LocalMetadataLog(tmp_path / "metadata")
        controller = QuorumController(log)
        await controller.load()
        results = await controller.alter_user_scram_credentials([], [upsert("alice")])
        assert results == [AlterScramCredentialResult("alice", 0)]
        assert ("alice", "SCRAM-SHA-256") in controller.image.scram_credentials
        log.close()
        # Replayed from the log by a new controller: the credential is durable.
        again = QuorumController(LocalMetadataLog(tmp_path / "metadata"))
        await again.load()
        assert again.image.scram_credentials == controller.image.scram_credentials

    asyncio.run(run())


def test_grpc_conversions_round_trip() -> None:
    up = upsert("alice")
    assert convert.scram_upsertion_from_pb(convert.scram_upsertion_to_pb(up)) == up
    d = ScramCredentialDeletion("bob", SHA512)
    assert convert.scram_deletion_from_pb(convert.scram_deletion_to_pb(d)) == d
    for r in (AlterScramCredentialResult("a", 0), AlterScramCredentialResult("b", 91, "gone")):
        assert convert.scram_result_from_pb(convert.scram_result_to_pb(r)) == r

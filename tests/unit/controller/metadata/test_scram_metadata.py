"""SCRAM credentials in the metadata log: records, replay into the image, snapshots."""

from __future__ import annotations

import pytest

from odradek.controller.metadata import (
    MetadataDelta,
    MetadataImage,
    MetadataRecord,
    MetadataReplayError,
    decode_record,
    encode_record,
)
from odradek.controller.metadata.diff import diff_records, image_to_records, replay
from odradek.controller.metadata.image import ScramCredentialInfo
from odradek.controller.metadata.records import (
    config_record,
    remove_user_scram_credential_record,
    user_scram_credential_record,
)
from odradek.controller.metadata.scram import (
    MECHANISM_CODES,
    credential_from_salted_password,
    salted_password,
)

SHA256, SHA512 = MECHANISM_CODES["SCRAM-SHA-256"], MECHANISM_CODES["SCRAM-SHA-512"]


def build(records: list[MetadataRecord], image: MetadataImage = MetadataImage.EMPTY
          ) -> MetadataImage:
    delta = MetadataDelta(image)
    for record in records:
        delta.replay(record, delta.offset + 1)
    return delta.apply()


def cred(name: str, mechanism: int = SHA256, seed: bytes = b"s", iterations: int = 4096
         ) -> MetadataRecord:
    return user_scram_credential_record(name, mechanism, seed + b"-salt", seed + b"-stored",
                                        seed + b"-server", iterations)


def test_records_round_trip_through_their_encoding() -> None:
    for record in (cred("alice"), remove_user_scram_credential_record("alice", SHA512)):
        assert decode_record(encode_record(record)) == record


def test_replay_adds_replaces_and_removes_credentials() -> None:
    image = build([cred("alice"), cred("alice", SHA512, b"x", 8192), cred("bob")])
    assert set(image.scram_credentials) == {("alice", "SCRAM-SHA-256"),
                                            ("alice", "SCRAM-SHA-512"), ("bob", "SCRAM-SHA-256")}
    assert image.scram_credentials[("alice", "SCRAM-SHA-512")] == ScramCredentialInfo(
        b"x-salt", b"x-stored", b"x-server", 8192)
    image = build([cred("alice", seed=b"new", iterations=5000),
                   remove_user_scram_credential_record("bob", SHA256)], image)
    assert image.scram_credentials[("alice", "SCRAM-SHA-256")].salt == b"new-salt"
    assert image.scram_credentials[("alice", "SCRAM-SHA-256")].iterations == 5000
    assert ("bob", "SCRAM-SHA-256") not in image.scram_credentials


def test_credentials_survive_deltas_that_do_not_touch_them() -> None:
    image = build([cred("alice")])
    later = build([config_record(2, "t", "retention.ms", "1")], image)
    # Shared, not copied: a delta of other records reuses the mapping.
    assert later.scram_credentials is image.scram_credentials


def test_remove_then_add_in_one_delta() -> None:
    image = build([cred("alice")])
    image = build([remove_user_scram_credential_record("alice", SHA256),
                   cred("alice", seed=b"again")], image)
    assert image.scram_credentials[("alice", "SCRAM-SHA-256")].salt == b"again-salt"


def test_replay_refuses_what_no_controller_writes() -> None:
    image = build([cred("alice")])
    with pytest.raises(MetadataReplayError, match="no SCRAM-SHA-512 credential"):
        build([remove_user_scram_credential_record("alice", SHA512)], image)
    with pytest.raises(MetadataReplayError, match="no SCRAM-SHA-256 credential"):
        build([remove_user_scram_credential_record("alice", SHA256),
               remove_user_scram_credential_record("alice", SHA256)], image)
    with pytest.raises(MetadataReplayError, match="unknown SCRAM mechanism type 7"):
        build([cred("carol", mechanism=7)])


def test_credentials_stay_out_of_repr() -> None:
    info = build([cred("alice")]).scram_credentials[("alice", "SCRAM-SHA-256")]
    assert "stored" not in repr(info) and "server" not in repr(info)


def test_snapshot_round_trips_credentials() -> None:
    image = build([cred("alice"), cred("alice", SHA512, b"y"), cred("bob", seed=b"b"),
                   remove_user_scram_credential_record("bob", SHA256), cred("carol")])
    records = image_to_records(image)
    assert replay(records) == image


def test_diff_records_take_one_image_to_a_later_one() -> None:
    base = build([cred("alice"), cred("bob"), cred("carol", SHA512)])
    target = build([remove_user_scram_credential_record("bob", SHA256),
                    cred("alice", seed=b"changed"), cred("dave")], base)
    records = diff_records(base, target)
    assert replay(records, base) == target
    kinds = sorted(r.WhichOneof("record") for _, r in records)
    # bob removed, alice changed, dave added; carol untouched.
    assert kinds == ["remove_user_scram_credential", "user_scram_credential",
                     "user_scram_credential"]


def test_stored_keys_are_rfc5802s() -> None:
    # RFC 7677's test vector: user "user", password "pencil", SCRAM-SHA-256.
    import base64

    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    salted = salted_password("SCRAM-SHA-256", "pencil", salt, 4096)
    info = credential_from_salted_password("SCRAM-SHA-256", salted, salt, 4096)
    # ServerSignature of the RFC's exchange, computed from the stored ServerKey.
    import hmac

    auth = (b"n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF"
            b"$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaT"
            b"CAfuxFIlj)hNlF$k0")
    signature = hmac.digest(info.server_key, auth, "sha256")
    assert base64.b64encode(signature) == b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

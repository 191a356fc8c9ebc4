"""Client quotas in the metadata log: records, replay, snapshots, and the controller's
AlterClientQuotas."""

from __future__ import annotations

import math

import pytest

from odradek.controller.metadata import (
    MetadataDelta,
    MetadataImage,
    MetadataRecord,
    MetadataReplayError,
    decode_record,
    encode_record,
)
from odradek.controller.metadata.client_quotas import ClientQuotaChange, entity_key
from odradek.controller.metadata.diff import diff_records, image_to_records, replay
from odradek.controller.metadata.records import client_quota_record
from odradek.controller.quorum.client_quotas import alter_client_quotas
from odradek.controller.service import convert
from tests.unit.controller.quorum.mdtest_helpers import applied

ALICE = entity_key([("user", "alice")])
ALICE_APP = entity_key([("client-id", "app"), ("user", "alice")])
DEFAULT_USER = entity_key([("user", None)])
PRODUCE, CONSUME = "producer_byte_rate", "consumer_byte_rate"


def build(records: list[MetadataRecord], image: MetadataImage = MetadataImage.EMPTY
          ) -> MetadataImage:
    delta = MetadataDelta(image)
    for record in records:
        delta.replay(record, delta.offset + 1)
    return delta.apply()


def test_entity_keys_do_not_depend_on_component_order() -> None:
    assert entity_key([("user", "alice"), ("client-id", "app")]) == ALICE_APP


def test_records_round_trip_and_keep_the_default_entity() -> None:
    for record in (client_quota_record(ALICE_APP, PRODUCE, 1024.0),
                   client_quota_record(DEFAULT_USER, CONSUME, None)):
        assert decode_record(encode_record(record)) == record
    image = build([client_quota_record(DEFAULT_USER, CONSUME, 5.0)])
    assert dict(image.client_quotas) == {DEFAULT_USER: {CONSUME: 5.0}}


def test_replay_sets_replaces_and_removes_keys() -> None:
    image = build([client_quota_record(ALICE, PRODUCE, 100.0),
                   client_quota_record(ALICE, CONSUME, 200.0),
                   client_quota_record(ALICE_APP, PRODUCE, 50.0)])
    image = build([client_quota_record(ALICE, PRODUCE, 150.0),
                   client_quota_record(ALICE, CONSUME, None),
                   client_quota_record(ALICE_APP, PRODUCE, None),
                   client_quota_record(DEFAULT_USER, "request_percentage", None)], image)
    # An entity left without keys is gone; removing an unset key changes nothing.
    assert {e: dict(v) for e, v in image.client_quotas.items()} == {ALICE: {PRODUCE: 150.0}}
    untouched = build([client_quota_record(ALICE, PRODUCE, 150.0)], image)
    assert untouched.client_quotas[ALICE] == {PRODUCE: 150.0}


def test_replay_refuses_an_entity_without_components() -> None:
    with pytest.raises(MetadataReplayError, match="needs a component"):
        build([client_quota_record((), PRODUCE, 1.0)])


def test_snapshot_and_diff_round_trip() -> None:
    base = build([client_quota_record(ALICE, PRODUCE, 100.0),
                  client_quota_record(DEFAULT_USER, CONSUME, 10.0),
                  client_quota_record(ALICE_APP, "request_percentage", 25.5)])
    assert replay(image_to_records(base)) == base
    target = build([client_quota_record(ALICE, PRODUCE, None),
                    client_quota_record(DEFAULT_USER, CONSUME, 20.0),
                    client_quota_record(ALICE_APP, PRODUCE, 1.0)], base)
    assert replay(diff_records(base, target), base) == target


def test_alter_writes_only_what_changes_against_its_image() -> None:
    image = build([client_quota_record(ALICE, PRODUCE, 100.0)])
    result = alter_client_quotas(image, [
        ClientQuotaChange(ALICE, PRODUCE, 100.0),  # already so
        ClientQuotaChange(ALICE, CONSUME, None),  # not set
        ClientQuotaChange(ALICE, "request_percentage", 50.0),
        ClientQuotaChange(DEFAULT_USER, PRODUCE, 10.0)])
    assert result.response.error_code == 0 and len(result.records) == 2
    image, _ = applied(image, result)
    assert {e: dict(v) for e, v in image.client_quotas.items()} == {
        ALICE: {PRODUCE: 100.0, "request_percentage": 50.0}, DEFAULT_USER: {PRODUCE: 10.0}}


@pytest.mark.parametrize("bad", [
    ClientQuotaChange((), PRODUCE, 1.0),
    ClientQuotaChange(entity_key([("ip", "1.2.3.4")]), PRODUCE, 1.0),
    ClientQuotaChange(ALICE, "connection_creation_rate", 1.0),
    ClientQuotaChange(entity_key([("ip", "1.2.3.4"), ("user", "a")]),
                      "connection_creation_rate", 1.0),
    ClientQuotaChange(entity_key([("user", "")]), PRODUCE, 1.0),
    ClientQuotaChange(ALICE, PRODUCE, math.nan),
    ClientQuotaChange(ALICE, PRODUCE, -1.0),
    ClientQuotaChange((("user", "a"), ("user", "b")), PRODUCE, 1.0),
])
def test_alter_refuses_a_request_with_a_change_no_broker_could_use(bad: ClientQuotaChange) -> None:
    result = alter_client_quotas(MetadataImage.EMPTY, [ClientQuotaChange(ALICE, PRODUCE, 1.0),
                                                       bad])
    assert result.records == () and result.response.error_code == 42


def test_grpc_conversions_round_trip() -> None:
    for change in (ClientQuotaChange(ALICE_APP, PRODUCE, 1.5),
                   ClientQuotaChange(DEFAULT_USER, CONSUME, None)):
        assert convert.client_quota_change_from_pb(
            convert.client_quota_change_to_pb(change)) == change

"""Feature levels in the metadata log: FeatureLevelRecord replay, the default of a log
without one, snapshots and diffs, and the controller's UpdateFeatures (Kafka's
FeatureControlManager checks and messages)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from odradek.controller.metadata import (
    MetadataImage,
    MetadataReplayError,
    decode_record,
    encode_record,
)
from odradek.controller.metadata.diff import diff_records, image_to_records, replay
from odradek.controller.metadata.features import TRANSACTION_VERSION
from odradek.controller.metadata.records import feature_level_record, no_op_record
from odradek.controller.metadata.requests import FeatureUpdate, FeatureUpgradeType
from odradek.controller.quorum import ControllerSettings, LocalMetadataLog, QuorumController
from odradek.controller.quorum.features import update_features
from odradek.controller.service import convert
from tests.unit.controller.quorum.mdtest_helpers import applied, commit

TV = TRANSACTION_VERSION
UP, SAFE, UNSAFE = (FeatureUpgradeType.UPGRADE, FeatureUpgradeType.SAFE_DOWNGRADE,
                    FeatureUpgradeType.UNSAFE_DOWNGRADE)
INVALID_UPDATE_VERSION = 95


def at_level(level: int) -> MetadataImage:
    return commit(MetadataImage.EMPTY, [no_op_record(), feature_level_record(TV, level)])


# ----- records, replay, snapshots -----


def test_a_log_without_a_record_runs_transaction_version_2() -> None:
    assert MetadataImage.EMPTY.finalized_features == {TV: 2}
    assert commit(MetadataImage.EMPTY, [no_op_record()]).finalized_features == {TV: 2}


def test_replay_sets_the_level_and_level_0_unfinalizes() -> None:
    assert at_level(1).finalized_features == {TV: 1}
    # Kafka's replay: level 0 takes the feature out of the finalized features.
    assert at_level(0).finalized_features == {}
    assert commit(at_level(0), [feature_level_record(TV, 2)]).finalized_features == {TV: 2}
    other = commit(MetadataImage.EMPTY, [feature_level_record("group.version", 1)])
    assert other.finalized_features == {TV: 2, "group.version": 1}


def test_an_image_without_feature_changes_shares_the_mapping() -> None:
    base = at_level(1)
    assert commit(base, [no_op_record()]).finalized_features is base.finalized_features


def test_a_negative_level_is_refused() -> None:
    with pytest.raises(MetadataReplayError, match="negative level"):
        commit(MetadataImage.EMPTY, [feature_level_record(TV, -1)])


def test_record_encoding_round_trip() -> None:
    record = feature_level_record(TV, 1)
    decoded = decode_record(encode_record(record))
    assert decoded.WhichOneof("record") == "feature_level"
    assert (decoded.feature_level.name, decoded.feature_level.feature_level) == (TV, 1)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_snapshot_keeps_the_level(level: int) -> None:
    image = at_level(level)
    assert replay(image_to_records(image)) == image
    kinds = [r.WhichOneof("record") for _, r in image_to_records(image)]
    # The default needs no record; any other level does, 0 included.
    assert ("feature_level" in kinds) == (level != 2)


@pytest.mark.parametrize(("before", "after"), [(2, 1), (1, 0), (0, 2), (1, 2), (0, 1)])
def test_diff_moves_one_level_to_another(before: int, after: int) -> None:
    base = at_level(before)
    target = commit(base, [feature_level_record(TV, after)])
    assert replay(diff_records(base, target), base) == target


# ----- UpdateFeatures -----


def update(image: MetadataImage, *updates: FeatureUpdate, validate_only: bool = False
           ) -> tuple[MetadataImage, int, str | None]:
    result = update_features(image, updates, validate_only, node_id=1)
    after, answer = applied(image, result)
    return after, answer.error_code, answer.error_message


def refusal(level: int, reason: str, feature: str = TV) -> tuple[int, str]:
    return (INVALID_UPDATE_VERSION,
            f"Invalid update version {level} for feature {feature}. {reason}")


def test_safe_downgrade_then_upgrade() -> None:
    image, code, message = update(MetadataImage.EMPTY, FeatureUpdate(TV, 1, SAFE))
    assert (code, message, image.finalized_features) == (0, None, {TV: 1})
    image, code, _ = update(image, FeatureUpdate(TV, 2, UP))
    assert (code, image.finalized_features) == (0, {TV: 2})


def test_unsafe_downgrade_to_0_unfinalizes() -> None:
    image, code, _ = update(MetadataImage.EMPTY, FeatureUpdate(TV, 0, UNSAFE))
    assert (code, image.finalized_features) == (0, {})


def test_the_same_level_writes_nothing() -> None:
    result = update_features(MetadataImage.EMPTY, [FeatureUpdate(TV, 2, UP)], False)
    assert (result.records, result.response.error_code) == ((), 0)
    # Not even as a "downgrade": nothing changes.
    assert update_features(MetadataImage.EMPTY, [FeatureUpdate(TV, 2, SAFE)], False).records == ()


def test_validate_only_checks_but_writes_nothing() -> None:
    result = update_features(MetadataImage.EMPTY, [FeatureUpdate(TV, 1, SAFE)], True)
    assert (result.records, result.response.error_code) == ((), 0)
    result = update_features(MetadataImage.EMPTY, [FeatureUpdate(TV, 3, UP)], True, node_id=1)
    assert (result.response.error_code, result.records) == (INVALID_UPDATE_VERSION, ())


@pytest.mark.parametrize(("update_", "expected"), [
    (FeatureUpdate(TV, 1, UP), refusal(1, "Can't downgrade the version of this feature "
                                          "without setting the upgrade type to either safe "
                                          "or unsafe downgrade.")),
    (FeatureUpdate(TV, 3, UP), refusal(3, "Local controller 1 only supports versions 0-2")),
    (FeatureUpdate(TV, -1, SAFE), refusal(-1, "A feature version cannot be less than 0.")),
    (FeatureUpdate(TV, 1, 7), refusal(1, "The controller does not support the given "
                                         "upgrade type.")),
    (FeatureUpdate("nope.version", 1, UP),
     refusal(1, "Local controller 1 does not support this feature.", "nope.version")),
    # Level 0 of a feature nobody knows passes Kafka's range check, not its name lookup.
    (FeatureUpdate("nope.version", 0, SAFE),
     refusal(0, "Feature nope.version not found.", "nope.version")),
    (FeatureUpdate("metadata.version", 21, UP),
     refusal(21, "Local controller 1 does not support this feature.", "metadata.version")),
])
def test_refusals_are_kafkas(update_: FeatureUpdate, expected: tuple[int, str]) -> None:
    image, code, message = update(MetadataImage.EMPTY, update_)
    assert (code, message) == expected
    assert image == MetadataImage.EMPTY


def test_a_downgrade_to_a_higher_level_is_refused() -> None:
    _, code, message = update(at_level(1), FeatureUpdate(TV, 2, SAFE))
    assert (code, message) == refusal(2, "Can't downgrade to a newer version.")


def test_one_refusal_fails_the_whole_request() -> None:
    result = update_features(MetadataImage.EMPTY, [FeatureUpdate(TV, 1, SAFE),
                                                    FeatureUpdate("nope.version", 1, UP)],
                             False, node_id=1)
    assert result.records == ()
    assert result.response.error_code == INVALID_UPDATE_VERSION


def test_conversions_round_trip() -> None:
    u = FeatureUpdate(TV, 1, SAFE)
    assert convert.feature_update_from_pb(convert.feature_update_to_pb(u)) == u
    result = update_features(MetadataImage.EMPTY, [FeatureUpdate(TV, 5, UP)], False).response
    assert convert.update_features_result_from_pb(
        convert.update_features_result_to_pb(result)) == result


def test_quorum_controller_keeps_the_level_across_a_restart(tmp_path: Path) -> None:
    async def run() -> None:
        log = LocalMetadataLog(tmp_path)
        controller = QuorumController(log, settings=ControllerSettings(node_id=3))
        await controller.load()
        result = await controller.update_features([FeatureUpdate(TV, 1, SAFE)])
        assert (result.error_code, controller.image.finalized_features) == (0, {TV: 1})
        refused = await controller.update_features([FeatureUpdate(TV, 9, UP)])
        assert refused.error_message == ("Invalid update version 9 for feature "
                                         "transaction.version. Local controller 3 only "
                                         "supports versions 0-2")
        log.close()
        reopened = QuorumController(LocalMetadataLog(tmp_path))
        assert (await reopened.load()).finalized_features == {TV: 1}

    asyncio.run(run())

"""UpdateFeatures as Kafka's FeatureControlManager.updateFeatures applies it (KIP-584).

The updates are checked in order against this image; the first one refused fails the whole
request with INVALID_UPDATE_VERSION and Kafka's "Invalid update version V for feature F.
<reason>" message, and nothing is written. Otherwise each changed level becomes a
FeatureLevelRecord, in one batch, unless the request only validates.

Kafka also checks the range each registered broker and controller advertises; every node of
an Odradek cluster runs the same software, so this controller's own range
(SUPPORTED_FEATURES) is every node's. An update to the level a feature already has writes
nothing: the answer is the same and the log stays free of records that change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataImage, MetadataRecord
from odradek.controller.metadata.features import SUPPORTED_FEATURES, finalized_level
from odradek.controller.metadata.records import feature_level_record
from odradek.controller.metadata.requests import (
    FeatureUpdate,
    FeatureUpgradeType,
    UpdateFeaturesResult,
)
from odradek.controller.quorum.api import NONE, OpResult


class _Refused(Exception):
    def __init__(self, update: FeatureUpdate, reason: str) -> None:
        message = (f"Invalid update version {update.max_version_level} for feature "
                   f"{update.feature}. {reason}")
        super().__init__(message)
        self.message = message


def upgrade_type(code: int) -> FeatureUpgradeType:
    """Kafka's UpgradeType.fromCode: an unknown code is UNKNOWN, refused later."""
    try:
        return FeatureUpgradeType(code)
    except ValueError:
        return FeatureUpgradeType.UNKNOWN


def reason_not_supported(level: int, who: str, supported: tuple[int, int] | None
                         ) -> str | None:
    """Kafka's QuorumFeatures.reasonNotSupported; a feature the node does not know is
    supported at 0 only (Kafka's DISABLED range)."""
    lo, hi = supported if supported is not None else (0, 0)
    if lo <= level <= hi:
        return None
    if hi == 0:
        return f"{who} does not support this feature."
    return f"{who} only supports versions {lo}-{hi}"


def check_update(update: FeatureUpdate, current: int, *, node_id: int,
                 supported: Mapping[str, tuple[int, int]]) -> None:
    """Raise _Refused with Kafka's reason when ``update`` may not be applied to a feature at
    level ``current``; the checks and their order are FeatureControlManager.updateFeature's."""
    kind = upgrade_type(update.upgrade_type)
    level = update.max_version_level
    if kind is FeatureUpgradeType.UNKNOWN:
        raise _Refused(update, "The controller does not support the given upgrade type.")
    if level < 0:
        raise _Refused(update, "A feature version cannot be less than 0.")
    reason = reason_not_supported(level, f"Local controller {node_id}",
                                  supported.get(update.feature))
    if reason is not None:
        raise _Refused(update, reason)
    if level < current and kind is FeatureUpgradeType.UPGRADE:
        raise _Refused(update, "Can't downgrade the version of this feature without setting "
                               "the upgrade type to either safe or unsafe downgrade.")
    if level > current and kind is not FeatureUpgradeType.UPGRADE:
        raise _Refused(update, "Can't downgrade to a newer version.")
    if update.feature not in supported:
        # Level 0 of an unknown feature passes the range check (Kafka's DISABLED is 0-0);
        # Kafka's Feature.featureFromName then refuses the name.
        raise _Refused(update, f"Feature {update.feature} not found.")


def update_features(image: MetadataImage, updates: Sequence[FeatureUpdate],
                    validate_only: bool, *, node_id: int = -1,
                    supported: Mapping[str, tuple[int, int]] = SUPPORTED_FEATURES
                    ) -> OpResult[UpdateFeaturesResult]:
    # Kafka keys the updates by feature name: a feature named twice takes its last entry.
    by_name = {u.feature: u for u in updates}
    records: list[MetadataRecord] = []
    for update in by_name.values():
        current = finalized_level(image.finalized_features, update.feature)
        try:
            check_update(update, current, node_id=node_id, supported=supported)
        except _Refused as refused:
            return OpResult((), UpdateFeaturesResult(ErrorCode.invalid_update_version,
                                                     refused.message))
        if update.max_version_level != current:
            records.append(feature_level_record(update.feature, update.max_version_level))
    return OpResult(() if validate_only else tuple(records), UpdateFeaturesResult(NONE))

"""UpdateFeatures (KIP-584): finalize new feature levels, which the controller checks and
writes as FeatureLevelRecords (controller/quorum/features.py). ApiVersions v3+ then shows
them from every broker's metadata image (broker/features.py).

As Kafka's: the request needs ALTER on the CLUSTER (else CLUSTER_AUTHORIZATION_FAILED for
the whole request); the controller applies all updates or none, and a refusal is the
top-level error, prefixed with Kafka's "The update failed for all features since the
following feature had an error: ". v0 carries allow_downgrade instead of an upgrade type
(Kafka reads it as a safe downgrade) and no validate_only.
"""

from __future__ import annotations

from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.admin import controller_failure
from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, cluster_allowed
from odradek.broker.handlers.authz import message as denial
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata.requests import (
    ControllerApi,
    ControllerCallFailed,
    FeatureUpdate,
    FeatureUpgradeType,
)

FAILED_PREFIX = ("The update failed for all features since the following feature had an "
                 "error: ")


class FeatureNode(Protocol):
    @property
    def controller(self) -> ControllerApi: ...

    @property
    def authorization(self) -> Authorization: ...


def feature_updates(req: Any, version: int) -> list[FeatureUpdate]:
    """The request's updates; v0's allow_downgrade is Kafka's SAFE_DOWNGRADE
    (UpdateFeaturesRequest.featureUpdates)."""
    if version == 0:
        return [FeatureUpdate(u.feature, int(u.max_version_level),
                              FeatureUpgradeType.SAFE_DOWNGRADE if u.allow_downgrade
                              else FeatureUpgradeType.UPGRADE)
                for u in req.feature_updates]
    return [FeatureUpdate(u.feature, int(u.max_version_level), int(u.upgrade_type))
            for u in req.feature_updates]


def response(code: int, message: str | None, succeeded: list[str]) -> dict[str, Any]:
    """Kafka's answer: per-feature results only when the whole request succeeded."""
    return {"throttle_time": 0, "error_code": code, "error_message": message,
            "results": [{"feature": name, "error_code": ErrorCode.none, "error_message": None}
                        for name in succeeded]}


async def handle_update_features(node: FeatureNode, ctx: RequestContext, req: Any
                                 ) -> Payload:
    if not cluster_allowed(node.authorization, ctx, AclOperation.ALTER):
        denied = ErrorCode.cluster_authorization_failed
        return ctx.respond(response(denied, denial(denied), []))
    updates = feature_updates(req, ctx.api_version)
    # validate_only came with v1.
    validate_only = bool(getattr(req, "validate_only", False))
    try:
        result = await node.controller.update_features(updates, validate_only=validate_only)
    except ControllerCallFailed as e:
        code, message = controller_failure(e)
        return ctx.respond(response(code, message, []))
    if result.error_code:
        return ctx.respond(response(result.error_code,
                                    FAILED_PREFIX + (result.error_message or ""), []))
    # One result per feature named, as Kafka's controller answers (a name given twice once).
    return ctx.respond(response(ErrorCode.none, None, list(dict.fromkeys(
        u.feature for u in updates))))


APIS: tuple[ApiSpec[FeatureNode], ...] = (
    ApiSpec(57, 0, 1, handle_update_features),
)

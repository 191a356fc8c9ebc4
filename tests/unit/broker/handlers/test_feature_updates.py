"""UpdateFeatures through the real codec, with a controller running the controller's own
operation over the fake node's image, and ApiVersions answering from that image."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.handlers import feature_updates as handlers
from odradek.broker.handlers import meta
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata import MetadataDelta, MetadataImage
from odradek.controller.metadata.requests import (
    ControllerUnavailable,
    FeatureUpdate,
    UpdateFeaturesResult,
)
from odradek.controller.quorum.features import update_features
from tests.unit.broker.handlers.acl_fixtures import (
    CLUSTER_ALTER_PRINCIPALS,
    OFF,
    cluster_alter_authorization,
)

UPDATE_FEATURES, API_VERSIONS = 57, 18
SERVED = {UPDATE_FEATURES: (0, 1), API_VERSIONS: (0, 4)}
TV = "transaction.version"
PREFIX = "The update failed for all features since the following feature had an error: "


class Controller:
    def __init__(self, node: Node) -> None:
        self.node, self.fail = node, False
        self.calls: list[tuple[list[FeatureUpdate], bool]] = []

    async def update_features(self, updates: Sequence[FeatureUpdate], *,
                              validate_only: bool = False) -> UpdateFeaturesResult:
        self.calls.append((list(updates), validate_only))
        if self.fail:
            raise ControllerUnavailable("UpdateFeatures", 1.0, [])
        result = update_features(self.node.image, updates, validate_only, node_id=1)
        delta = MetadataDelta(self.node.image)
        for record in result.records:
            delta.replay(record, delta.offset + 1)
        if result.records:
            self.node.image = delta.apply()
        return result.response


class Node:
    def __init__(self, authz: Authorization = OFF) -> None:
        self.image = MetadataImage.EMPTY
        self.authorization = authz
        self.controller = Controller(self)

    def api_versions_list(self) -> list[dict[str, int]]:
        return [{"api_key": k, "min_version": lo, "max_version": hi}
                for k, (lo, hi) in sorted(SERVED.items())]


def call(node: Node, api_key: int, data: dict[str, Any], version: int,
         principal: str = "User:ANONYMOUS") -> Any:
    frame = codec.encode_request(codec.build_request(api_key, version, data), 5, "t")
    req = codec.decode_request(frame[4:], SERVED).body
    handler = (handlers.handle_update_features if api_key == UPDATE_FEATURES
               else meta.handle_api_versions)
    ctx = RequestContext(api_key, version, 5, "t", "h", 1, principal=principal)
    payload = asyncio.run(handler(node, ctx, req))  # type: ignore[arg-type]
    out = bytes(codec.encode_response(api_key, version, 5, payload))
    return codec.decode_response(out[4:], api_key, version)[1]


def update(node: Node, *updates: tuple[str, int, int], version: int = 1,
           validate_only: bool = False, principal: str = "User:ANONYMOUS") -> Any:
    if version == 0:
        entries = [{"feature": f, "max_version_level": level, "allow_downgrade": kind != 1}
                   for f, level, kind in updates]
    else:
        entries = [{"feature": f, "max_version_level": level, "upgrade_type": kind}
                   for f, level, kind in updates]
    data: dict[str, Any] = {"feature_updates": entries}
    if version >= 1:
        data["validate_only"] = validate_only
    return call(node, UPDATE_FEATURES, data, version, principal)


def results(response: Any) -> list[tuple[str, int, str | None]]:
    return [(r.feature, int(r.error_code), r.error_message) for r in response.results]


def finalized(node: Node) -> tuple[int, list[tuple[str, int, int]]]:
    response = call(node, API_VERSIONS, {"client_software_name": "t",
                                         "client_software_version": "1"}, 3)
    return (response.finalized_features_epoch,
            [(f.name, f.min_version_level, f.max_version_level)
             for f in response.finalized_features])


def test_downgrade_and_upgrade_show_in_api_versions() -> None:
    node = Node()
    assert finalized(node) == (0, [(TV, 2, 2)])
    response = update(node, (TV, 1, 2))
    assert (response.error_code, response.error_message) == (0, None)
    assert results(response) == [(TV, 0, None)]
    assert finalized(node) == (node.image.offset, [(TV, 1, 1)])
    assert update(node, (TV, 2, 1)).error_code == 0
    epoch, features = finalized(node)
    assert (epoch, features) == (1, [(TV, 2, 2)])
    # Level 0 unfinalizes: ApiVersions lists it no more, as Kafka's.
    assert update(node, (TV, 0, 3)).error_code == 0
    assert finalized(node) == (2, [])
    response = call(node, API_VERSIONS, {"client_software_name": "t",
                                         "client_software_version": "1"}, 3)
    assert [(f.name, f.min_version, f.max_version) for f in response.supported_features] == [
        (TV, 0, 2)]


def test_a_refusal_is_the_top_level_error_with_kafkas_prefix() -> None:
    node = Node()
    response = update(node, (TV, 1, 1))
    assert (response.error_code, response.error_message, results(response)) == (
        ErrorCode.invalid_update_version,
        PREFIX + "Invalid update version 1 for feature transaction.version. Can't downgrade "
        "the version of this feature without setting the upgrade type to either safe or "
        "unsafe downgrade.", [])
    assert node.image == MetadataImage.EMPTY


def test_v0_allow_downgrade_is_a_safe_downgrade() -> None:
    node = Node()
    refused = update(node, (TV, 1, 1), version=0)
    assert refused.error_code == ErrorCode.invalid_update_version
    assert node.controller.calls[-1][0] == [FeatureUpdate(TV, 1, 1)]
    done = update(node, (TV, 1, 2), version=0)
    assert (done.error_code, results(done)) == (0, [(TV, 0, None)])
    assert node.controller.calls[-1][0] == [FeatureUpdate(TV, 1, 2)]
    assert node.image.finalized_features == {TV: 1}


def test_validate_only_changes_nothing() -> None:
    node = Node()
    response = update(node, (TV, 1, 2), validate_only=True)
    assert (response.error_code, results(response)) == (0, [(TV, 0, None)])
    assert node.controller.calls == [([FeatureUpdate(TV, 1, 2)], True)]
    assert node.image == MetadataImage.EMPTY


def test_an_unreachable_controller_is_retriable() -> None:
    node = Node()
    node.controller.fail = True
    response = update(node, (TV, 1, 2))
    assert response.error_code == ErrorCode.request_timed_out
    assert results(response) == []


@pytest.mark.parametrize(("principal", "allowed"), CLUSTER_ALTER_PRINCIPALS)
def test_needs_alter_on_the_cluster(principal: str, allowed: bool) -> None:
    node = Node(cluster_alter_authorization())
    response = update(node, (TV, 1, 2), principal=principal)
    if allowed:
        assert (response.error_code, node.image.finalized_features) == (0, {TV: 1})
    else:
        assert (response.error_code, response.error_message, results(response)) == (
            ErrorCode.cluster_authorization_failed, "Cluster authorization failed.", [])
        assert node.controller.calls == []


def test_api_versions_advertises_update_features_from_the_node_table() -> None:
    from odradek.broker.node import handler_table

    spec = handler_table()[UPDATE_FEATURES]
    assert (spec.min_version, spec.max_version) == (0, 1)

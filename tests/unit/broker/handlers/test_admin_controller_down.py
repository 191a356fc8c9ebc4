"""Admin requests get per-item errors, not a dropped connection, when no controller answers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from kio.schema.errors import ErrorCode

from odradek.broker.handlers import admin
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka.codec import build_request
from odradek.broker.security.quotas import ControllerMutationQuotaManager, QuotaConfigs
from odradek.controller.metadata import MetadataImage
from odradek.controller.metadata.requests import ControllerUnavailable
from tests.unit.broker.handlers.acl_fixtures import OFF


class DownController:
    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        async def fail(*args: object, **kwargs: object) -> None:
            raise ControllerUnavailable(name, 10.0, ["1@127.0.0.1:1: UNAVAILABLE"])

        return fail


def ctx(api_key: int, version: int) -> RequestContext:
    return RequestContext(api_key, version, 1, "t", "127.0.0.1", 1)


def test_create_topics_and_alter_configs_answer_request_timed_out() -> None:
    node = SimpleNamespace(controller=DownController(), authorization=OFF,
                           image=MetadataImage.EMPTY,
                           mutation_quotas=ControllerMutationQuotaManager(QuotaConfigs))
    req = build_request(19, 7, {"topics": [{"name": "a", "num_partitions": 1,
                                            "replication_factor": 1}], "timeout": 1000})
    resp = asyncio.run(admin.handle_create_topics(node, ctx(19, 7), req))
    assert resp.topics[0].error_code == ErrorCode.request_timed_out
    assert "no active controller" in resp.topics[0].error_message
    req = build_request(44, 1, {"resources": [{"resource_type": 2, "resource_name": "a",
                                               "configs": []}]})
    resp = asyncio.run(admin.handle_incremental_alter_configs(node, ctx(44, 1), req))
    assert resp.responses[0].error_code == ErrorCode.request_timed_out
    req = build_request(20, 6, {"topics": [{"name": "a"}], "timeout": 1000})
    resp = asyncio.run(admin.handle_delete_topics(node, ctx(20, 6), req))
    assert resp.responses[0].error_code == ErrorCode.request_timed_out

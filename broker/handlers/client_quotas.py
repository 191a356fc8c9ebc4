"""Client quotas: DescribeClientQuotas, answered from this broker's quota configs (current
with its metadata image), and AlterClientQuotas, which the controller applies.

Both follow Kafka's ClientQuotaControlManager through odradek.broker.security.quotas: its
filter rules and errors, and its per-entry validation with Kafka's messages. An
AlterClientQuotas entry that fails its checks changes nothing and the others apply;
``validate_only`` answers the checks without changing anything.
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
from odradek.broker.security.quotas import (
    Alteration,
    FilterComponent,
    QuotaConfigs,
    QuotaOp,
    QuotaRequestError,
)
from odradek.controller.metadata.client_quotas import ClientQuotaChange, entity_key
from odradek.controller.metadata.requests import ControllerApi, ControllerCallFailed


class QuotaNode(Protocol):
    @property
    def quota_configs(self) -> QuotaConfigs: ...

    @property
    def controller(self) -> ControllerApi: ...

    @property
    def authorization(self) -> Authorization: ...


async def handle_describe_client_quotas(node: QuotaNode, ctx: RequestContext, req: Any
                                        ) -> Payload:
    if not cluster_allowed(node.authorization, ctx, AclOperation.DESCRIBE_CONFIGS):
        denied = ErrorCode.cluster_authorization_failed
        return ctx.respond({"throttle_time": 0, "error_code": denied,
                            "error_message": denial(denied), "entries": None})
    components = [FilterComponent(c.entity_type, int(c.match_type), c.match)
                  for c in req.components]
    try:
        found = node.quota_configs.describe(components, bool(req.strict))
    except QuotaRequestError as e:
        return ctx.respond({"throttle_time": 0, "error_code": e.error_code,
                            "error_message": e.message, "entries": None})
    return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.none, "error_message": None,
                        "entries": [
        {"entity": [{"entity_type": t, "entity_name": n} for t, n in entity.to_wire()],
         "values": [{"key": k, "value": v} for k, v in sorted(values.items())]}
        for entity, values in found]})


async def handle_alter_client_quotas(node: QuotaNode, ctx: RequestContext, req: Any
                                     ) -> Payload:
    entries = [Alteration(tuple((e.entity_type, e.entity_name) for e in entry.entity),
                          tuple(QuotaOp(op.key, None if op.remove else float(op.value))
                                for op in entry.ops))
               for entry in req.entries]
    if not cluster_allowed(node.authorization, ctx, AclOperation.ALTER_CONFIGS):
        denied = ErrorCode.cluster_authorization_failed
        return ctx.respond({"throttle_time": 0, "entries": [
            {"error_code": denied, "error_message": denial(denied),
             "entity": [{"entity_type": t, "entity_name": n} for t, n in entry.entity]}
            for entry in entries]})
    # The checks against this broker's quotas give each entry Kafka's answer; what to
    # change is decided by the controller against its own image, so every op of a valid
    # entry is sent, not only those that differ here.
    outcome = node.quota_configs.alter(entries)
    answers: list[tuple[int, str | None]] = [
        (int(r.error_code), r.error) for r in outcome.results]
    valid = [i for i, r in enumerate(outcome.results) if r.error is None]
    changes = [ClientQuotaChange(entity_key(entries[i].entity), op.key, op.value)
               for i in valid for op in entries[i].ops]
    if changes and not req.validate_only:
        try:
            result = await node.controller.alter_client_quotas(changes)
            failure = ((result.error_code, result.error_message) if result.error_code
                       else None)
        except ControllerCallFailed as e:
            code, message = controller_failure(e)
            failure = (int(code), message)
        if failure is not None:
            for i in valid:
                answers[i] = failure
    return ctx.respond({"throttle_time": 0, "entries": [
        {"error_code": code, "error_message": message,
         "entity": [{"entity_type": t, "entity_name": n} for t, n in entry.entity]}
        for entry, (code, message) in zip(entries, answers, strict=True)]})


APIS: tuple[ApiSpec[QuotaNode], ...] = (
    ApiSpec(48, 0, 1, handle_describe_client_quotas),
    ApiSpec(49, 0, 1, handle_alter_client_quotas),
)

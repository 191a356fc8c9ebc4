"""ACLs: DescribeAcls, answered from this broker's ACL index (current with its metadata
image), and CreateAcls and DeleteAcls, which the controller applies.

Each ACL and filter is checked here first with Kafka's rules and messages
(odradek.broker.security.acl); only valid ones reach the controller, and the answer keeps
the request's order. Without an authorizer (``authorizer.class.name`` empty) ACLs would
not be enforced, so, as in Kafka, the three APIs answer SECURITY_DISABLED.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.acl_operations import AclOperation
from odradek.broker.handlers.admin import controller_failure
from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import cluster_allowed
from odradek.broker.handlers.authz import message as denial
from odradek.broker.security.acl import (
    AccessControlEntry,
    AclBinding,
    PatternType,
    PermissionType,
    ResourcePattern,
    ResourceType,
    validate_binding,
    validate_filter,
)
from odradek.broker.security.acl_metadata import (
    binding_filter,
    binding_of,
    stored_acl,
    stored_filter,
)
from odradek.broker.security.authorization import Authorization
from odradek.broker.security.authorizer import AclIndex
from odradek.controller.metadata.acls import AclFilter, StandardAcl
from odradek.controller.metadata.requests import (
    ControllerApi,
    ControllerCallFailed,
    CreateAclResult,
    DeleteAclsResult,
)

# Kafka's message (AclApis) when no authorizer is configured.
NO_AUTHORIZER = "No Authorizer is configured."




class AclNode(Protocol):
    @property
    def acls(self) -> AclIndex: ...

    @property
    def authorization(self) -> Authorization: ...

    @property
    def controller(self) -> ControllerApi: ...


def _filter_of(f: Any) -> Any:
    return binding_filter(f.resource_type_filter, f.resource_name_filter,
                          getattr(f, "pattern_type_filter", PatternType.LITERAL),
                          f.principal_filter, f.host_filter, f.operation, f.permission_type)


def _acl_fields(binding: AclBinding) -> dict[str, Any]:
    return {"resource_type": int(binding.pattern.resource_type),
            "resource_name": binding.pattern.name,
            "pattern_type": int(binding.pattern.pattern_type),
            "principal": binding.entry.principal, "host": binding.entry.host,
            "operation": int(binding.entry.operation),
            "permission_type": int(binding.entry.permission)}


def describe_resources(bindings: Sequence[AclBinding]) -> list[dict[str, Any]]:
    """DescribeAcls' answer: the bindings grouped by resource pattern, in the order each
    pattern first appears."""
    groups: dict[ResourcePattern, list[dict[str, Any]]] = {}
    for b in bindings:
        groups.setdefault(b.pattern, []).append({
            "principal": b.entry.principal, "host": b.entry.host,
            "operation": int(b.entry.operation), "permission_type": int(b.entry.permission)})
    return [{"resource_type": int(p.resource_type), "resource_name": p.name,
             "pattern_type": int(p.pattern_type), "acls": acls} for p, acls in groups.items()]


async def handle_describe_acls(node: AclNode, ctx: RequestContext, req: Any) -> Payload:
    if not node.authorization.enabled:
        return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.security_disabled,
                            "error_message": NO_AUTHORIZER, "resources": []})
    if not cluster_allowed(node.authorization, ctx, AclOperation.DESCRIBE):
        return ctx.respond({"throttle_time": 0,
                            "error_code": ErrorCode.cluster_authorization_failed,
                            "error_message": denial(ErrorCode.cluster_authorization_failed),
                            "resources": []})
    acl_filter = _filter_of(req)
    error = validate_filter(acl_filter)
    if error is not None:
        return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.invalid_request,
                            "error_message": error, "resources": []})
    return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.none, "error_message": None,
                        "resources": describe_resources(node.acls.describe(acl_filter))})


def _creation(c: Any) -> AclBinding:
    return AclBinding(
        ResourcePattern(ResourceType.from_code(c.resource_type), c.resource_name,
                        PatternType.from_code(getattr(c, "resource_pattern_type",
                                                      PatternType.LITERAL))),
        AccessControlEntry(c.principal, c.host, AclOperation.from_code(c.operation),
                           PermissionType.from_code(c.permission_type)))


async def handle_create_acls(node: AclNode, ctx: RequestContext, req: Any) -> Payload:
    if not node.authorization.enabled:
        return ctx.respond({"throttle_time": 0, "results": [
            {"error_code": ErrorCode.security_disabled, "error_message": NO_AUTHORIZER}
            for _ in req.creations]})
    if not cluster_allowed(node.authorization, ctx, AclOperation.ALTER):
        return ctx.respond({"throttle_time": 0, "results": [
            {"error_code": ErrorCode.cluster_authorization_failed,
             "error_message": denial(ErrorCode.cluster_authorization_failed)}
            for _ in req.creations]})
    results: list[CreateAclResult | None] = []
    valid: list[StandardAcl] = []
    for creation in req.creations:
        binding = _creation(creation)
        error = validate_binding(binding)
        if error is None:
            valid.append(stored_acl(binding))
            results.append(None)  # the controller's answer goes here
        else:
            results.append(CreateAclResult(ErrorCode.invalid_request, error))
    try:
        answers = iter(await node.controller.create_acls(valid) if valid else [])
    except ControllerCallFailed as e:
        code, message = controller_failure(e)
        answers = iter([CreateAclResult(code, message)] * len(valid))
    out = [r if r is not None else next(answers) for r in results]
    return ctx.respond({"throttle_time": 0, "results": [
        {"error_code": r.error_code, "error_message": r.error_message} for r in out]})


async def handle_delete_acls(node: AclNode, ctx: RequestContext, req: Any) -> Payload:
    if not node.authorization.enabled:
        return ctx.respond({"throttle_time": 0, "filter_results": [
            {"error_code": ErrorCode.security_disabled, "error_message": NO_AUTHORIZER,
             "matching_acls": []} for _ in req.filters]})
    if not cluster_allowed(node.authorization, ctx, AclOperation.ALTER):
        return ctx.respond({"throttle_time": 0, "filter_results": [
            {"error_code": ErrorCode.cluster_authorization_failed,
             "error_message": denial(ErrorCode.cluster_authorization_failed),
             "matching_acls": []} for _ in req.filters]})
    results: list[DeleteAclsResult | None] = []
    valid: list[AclFilter] = []
    for f in req.filters:
        acl_filter = _filter_of(f)
        error = validate_filter(acl_filter)
        if error is None:
            valid.append(stored_filter(acl_filter))
            results.append(None)
        else:
            results.append(DeleteAclsResult(ErrorCode.invalid_request, error))
    try:
        answers = iter(await node.controller.delete_acls(valid) if valid else [])
    except ControllerCallFailed as e:
        code, message = controller_failure(e)
        answers = iter([DeleteAclsResult(code, message)] * len(valid))
    out = [r if r is not None else next(answers) for r in results]
    return ctx.respond({"throttle_time": 0, "filter_results": [
        {"error_code": r.error_code, "error_message": r.error_message,
         "matching_acls": [{"error_code": ErrorCode.none, "error_message": None,
                            **_acl_fields(binding_of(acl))} for acl in r.matching]}
        for r in out]})


# Kafka 4 serves v1-v3 of each (KIP-896 removed v0, which had no pattern types).
APIS: tuple[ApiSpec[AclNode], ...] = (
    ApiSpec(29, 1, 3, handle_describe_acls),
    ApiSpec(30, 1, 3, handle_create_acls),
    ApiSpec(31, 1, 3, handle_delete_acls),
)

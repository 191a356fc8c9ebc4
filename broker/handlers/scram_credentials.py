"""SCRAM users (KIP-554): DescribeUserScramCredentials, answered from this broker's metadata
image, and AlterUserScramCredentials, which the controller applies.

Only the mechanism and iteration count of a credential are ever described; salts and keys
stay in the metadata log.
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
from odradek.controller.metadata import MetadataImage
from odradek.controller.metadata.requests import (
    ControllerApi,
    ControllerCallFailed,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from odradek.controller.metadata.scram import MECHANISM_CODES

# Kafka's messages (ScramImage), the user's name appended.
DESCRIBE_TWICE = "Cannot describe SCRAM credentials for the same user twice in a single request: "
DESCRIBE_MISSING = "Attempt to describe a user credential that does not exist: "


class ScramNode(Protocol):
    @property
    def image(self) -> MetadataImage: ...

    @property
    def controller(self) -> ControllerApi: ...

    @property
    def authorization(self) -> Authorization: ...


def describe(image: MetadataImage, users: list[str] | None) -> list[dict[str, Any]]:
    """Kafka's ScramImage.describe: null or empty ``users`` is every user with a credential;
    a user named twice is DUPLICATE_RESOURCE, one without a credential RESOURCE_NOT_FOUND."""
    by_user: dict[str, list[tuple[int, int]]] = {}
    for (user, mechanism), credential in image.scram_credentials.items():
        by_user.setdefault(user, []).append((MECHANISM_CODES[mechanism],
                                             credential.iterations))
    if not users:
        users = sorted(by_user)
    counts: dict[str, int] = {}
    for user in users:
        counts[user] = counts.get(user, 0) + 1
    results = []
    for user in counts:  # first appearance order, each user once
        result: dict[str, Any] = {"user": user, "error_code": ErrorCode.none,
                                  "error_message": None, "credential_infos": []}
        if counts[user] > 1:
            result["error_code"] = ErrorCode.duplicate_resource
            result["error_message"] = DESCRIBE_TWICE + user
        elif user not in by_user:
            result["error_code"] = ErrorCode.resource_not_found
            result["error_message"] = DESCRIBE_MISSING + user
        else:
            result["credential_infos"] = [{"mechanism": m, "iterations": i}
                                          for m, i in sorted(by_user[user])]
        results.append(result)
    return results


async def handle_describe_user_scram_credentials(node: ScramNode, ctx: RequestContext,
                                                 req: Any) -> Payload:
    if not cluster_allowed(node.authorization, ctx, AclOperation.DESCRIBE):
        denied = ErrorCode.cluster_authorization_failed
        return ctx.respond({"throttle_time": 0, "error_code": denied,
                            "error_message": denial(denied), "results": []})
    users = None if req.users is None else [u.name for u in req.users]
    return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.none,
                        "error_message": None, "results": describe(node.image, users)})


async def handle_alter_user_scram_credentials(node: ScramNode, ctx: RequestContext,
                                              req: Any) -> Payload:
    deletions = [ScramCredentialDeletion(d.name, int(d.mechanism)) for d in req.deletions]
    upsertions = [ScramCredentialUpsertion(u.name, int(u.mechanism), int(u.iterations),
                                           bytes(u.salt), bytes(u.salted_password))
                  for u in req.upsertions]
    if not cluster_allowed(node.authorization, ctx, AclOperation.ALTER):
        denied = ErrorCode.cluster_authorization_failed
        users = dict.fromkeys([d.user for d in deletions] + [u.user for u in upsertions])
        return ctx.respond({"throttle_time": 0, "results": [
            {"user": user, "error_code": denied, "error_message": denial(denied)}
            for user in users]})
    try:
        results = await node.controller.alter_user_scram_credentials(deletions, upsertions)
    except ControllerCallFailed as e:
        code, message = controller_failure(e)
        users = dict.fromkeys([d.user for d in deletions] + [u.user for u in upsertions])
        return ctx.respond({"throttle_time": 0, "results": [
            {"user": user, "error_code": code, "error_message": message} for user in users]})
    return ctx.respond({"throttle_time": 0, "results": [
        {"user": r.user, "error_code": r.error_code, "error_message": r.error_message}
        for r in results]})


APIS: tuple[ApiSpec[ScramNode], ...] = (
    ApiSpec(50, 0, 0, handle_describe_user_scram_credentials),
    ApiSpec(51, 0, 0, handle_alter_user_scram_credentials),
)

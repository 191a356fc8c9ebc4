"""ACLs and authorizations for handler tests: fake nodes take an ``Authorization`` over a
hand-built ``AclIndex`` (or ``OFF``, the authorizer not configured)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from odradek.broker.acl_operations import AclOperation
from odradek.broker.handlers.api import RequestContext
from odradek.broker.security.acl import (
    CLUSTER_NAME,
    AccessControlEntry,
    AclBinding,
    PatternType,
    PermissionType,
    ResourcePattern,
    ResourceType,
)
from odradek.broker.security.authorization import Authorization
from odradek.broker.security.authorizer import AclIndex

A = AclOperation
R = ResourceType
HOST = "10.0.0.7"

# authorizer.class.name empty: every check allows.
OFF = Authorization(False, frozenset(), False, lambda: AclIndex.EMPTY)


def acl(principal: str, operation: AclOperation, resource_type: ResourceType,
        name: str = CLUSTER_NAME, *, pattern: PatternType = PatternType.LITERAL,
        permission: PermissionType = PermissionType.ALLOW, host: str = "*") -> AclBinding:
    return AclBinding(ResourcePattern(resource_type, name, pattern),
                      AccessControlEntry(principal, host, operation, permission))


def deny(principal: str, operation: AclOperation, resource_type: ResourceType,
         name: str = CLUSTER_NAME, **kwargs: object) -> AclBinding:
    return acl(principal, operation, resource_type, name,  # type: ignore[arg-type]
               permission=PermissionType.DENY, **kwargs)


def authorization(acls: Iterable[AclBinding], *, super_users: Iterable[str] = (),
                  allow_everyone_if_no_acl_found: bool = False) -> Authorization:
    """The StandardAuthorizer on, over exactly these ACLs."""
    index = AclIndex.of((uuid.uuid4(), b) for b in acls)
    return Authorization(True, frozenset(super_users), allow_everyone_if_no_acl_found,
                         lambda: index)


def context(api_key: int, version: int, principal: str = "User:alice") -> RequestContext:
    return RequestContext(api_key, version, 9, "client", HOST, 1, "SASL_PLAINTEXT", principal)


# Who may ALTER the CLUSTER (the check of UpdateFeatures, UnregisterBroker and the like):
# (principal, allowed) against ``cluster_alter_authorization()``.
CLUSTER_ALTER_PRINCIPALS = [("User:alice", False), ("User:describer", False),
                            ("User:ops", True), ("User:admin", True)]


def cluster_alter_authorization() -> Authorization:
    """ops may ALTER the CLUSTER and admin is a super user; describer may only DESCRIBE it
    and alice only ALTER_CONFIGS, neither of which is ALTER."""
    return authorization([acl("User:ops", A.ALTER, R.CLUSTER),
                          acl("User:describer", A.DESCRIBE, R.CLUSTER),
                          acl("User:alice", A.ALTER_CONFIGS, R.CLUSTER)],
                         super_users=["User:admin"])

"""The broker's ACL model (``acl.py``, ``authorizer.py``) over the ACLs of the cluster
metadata (``odradek.controller.metadata.acls``): conversions both ways, and keeping an
``AclIndex`` current with the metadata image.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from odradek.broker.acl_operations import AclOperation
from odradek.broker.security.acl import (
    AccessControlEntry,
    AccessControlEntryFilter,
    AclBinding,
    AclBindingFilter,
    PatternType,
    PermissionType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    validate_binding,
)
from odradek.broker.security.authorizer import AclIndex
from odradek.controller.metadata.acls import AclFilter, StandardAcl

log = logging.getLogger(__name__)


def binding_of(acl: StandardAcl) -> AclBinding:
    return AclBinding(
        ResourcePattern(ResourceType.from_code(acl.resource_type), acl.resource_name,
                        PatternType.from_code(acl.pattern_type)),
        AccessControlEntry(acl.principal, acl.host, AclOperation.from_code(acl.operation),
                           PermissionType.from_code(acl.permission_type)))


def stored_acl(binding: AclBinding) -> StandardAcl:
    pattern, entry = binding.pattern, binding.entry
    return StandardAcl(int(pattern.resource_type), pattern.name, int(pattern.pattern_type),
                       entry.principal, entry.host, int(entry.operation),
                       int(entry.permission))


def stored_filter(acl_filter: AclBindingFilter) -> AclFilter:
    pattern, entry = acl_filter.pattern, acl_filter.entry
    return AclFilter(int(pattern.resource_type), pattern.name, int(pattern.pattern_type),
                     entry.principal, entry.host, int(entry.operation), int(entry.permission))


def binding_filter(resource_type: int, name: str | None, pattern_type: int,
                   principal: str | None, host: str | None, operation: int,
                   permission: int) -> AclBindingFilter:
    """A filter from the codes DescribeAcls and DeleteAcls carry (unknown codes become
    UNKNOWN, which ``validate_filter`` refuses)."""
    return AclBindingFilter(
        ResourcePatternFilter(ResourceType.from_code(resource_type), name,
                              PatternType.from_code(pattern_type)),
        AccessControlEntryFilter(principal, host, AclOperation.from_code(operation),
                                 PermissionType.from_code(permission)))


def updated_index(index: AclIndex, before: Mapping[uuid.UUID, StandardAcl],
                  after: Mapping[uuid.UUID, StandardAcl]) -> AclIndex:
    """``index`` (the ACLs of the image that held ``before``) brought to ``after``.

    Costs nothing when the image's ACLs did not change (the image then shares the same
    mapping), otherwise O(ACLs). An ACL this broker cannot use (a code only a newer version
    knows) is logged and left out rather than stopping the image from being applied."""
    if after is before:
        return index
    removed = [acl_id for acl_id in before if acl_id not in after and acl_id in index]
    added = []
    for acl_id in after:
        if acl_id in before:
            continue
        binding = binding_of(after[acl_id])
        error = validate_binding(binding)
        if error is not None:
            log.error("ACL %s of the cluster metadata is not one this broker can enforce "
                      "(%s): %s; left out", acl_id, error, after[acl_id])
            continue
        added.append((acl_id, binding))
    if not removed and not added:
        return index
    return index.updated(added=added, removed=removed)

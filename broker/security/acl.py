"""Kafka's ACL model as values: what an ACL names, what it grants, and the filters that find ACLs.

An ACL (an ``AclBinding``) joins a resource pattern (a TOPIC named "orders", every GROUP whose
name starts with "billing-", every TRANSACTIONAL_ID) to an access control entry (principal
"User:alice", from host "*", may READ, ALLOW). CreateAcls carries bindings, DescribeAcls and
DeleteAcls carry filters (``AclBindingFilter``) that may leave fields open; the metadata log
stores bindings. The codes and the matching rules are Kafka's
(``org.apache.kafka.common.acl`` and ``org.apache.kafka.common.resource``) because clients,
Kafka's CLI tools and the wire format depend on them.

Values are built from whatever a request decoded, so they may hold codes an ACL must not have
(UNKNOWN, ANY): ``validate_binding`` and ``validate_filter`` say what is wrong, with Kafka's
messages, before anything is stored. ``odradek.broker.security.authorizer`` decides requests
against stored bindings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from odradek.broker import acl_operations
from odradek.broker.acl_operations import AclOperation

# A LITERAL resource name that stands for every resource of its type.
WILDCARD = "*"
# The principal that stands for every principal, of whatever principal type (Kafka matches
# "User:*" against "Group:x" too: the wildcard is this exact string, not "<type>:*").
WILDCARD_PRINCIPAL = "User:*"
# The only name a CLUSTER resource has.
CLUSTER_NAME = "kafka-cluster"


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1  # filters only
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7

    @classmethod
    def from_code(cls, code: int) -> ResourceType:
        """UNKNOWN for a code this broker does not know, as Kafka's ``fromCode``."""
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1  # filters only: any pattern type, the name compared exactly
    MATCH = 2  # filters only: every pattern that would apply to the filter's name
    LITERAL = 3  # the name itself, or every resource when the name is "*"
    PREFIXED = 4  # every resource whose name starts with the name

    @classmethod
    def from_code(cls, code: int) -> PatternType:
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_specific(self) -> bool:
        """A pattern type an ACL may have (the others only make sense in filters)."""
        return self in (PatternType.LITERAL, PatternType.PREFIXED)


class PermissionType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1  # filters only
    DENY = 2
    ALLOW = 3

    @classmethod
    def from_code(cls, code: int) -> PermissionType:
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


_SUPPORTED: dict[ResourceType, frozenset[AclOperation]] = {
    ResourceType.TOPIC: acl_operations.TOPIC,
    ResourceType.GROUP: acl_operations.GROUP,
    ResourceType.CLUSTER: acl_operations.CLUSTER,
    ResourceType.TRANSACTIONAL_ID: acl_operations.TRANSACTIONAL_ID,
    ResourceType.DELEGATION_TOKEN: acl_operations.DELEGATION_TOKEN,
    ResourceType.USER: acl_operations.USER,
}


def supported_operations(resource_type: ResourceType) -> frozenset[AclOperation]:
    """The operations a resource of this type has (Kafka's ``AclEntry.supportedOperations``):
    what KIP-430's authorized-operations fields are drawn from."""
    try:
        return _SUPPORTED[resource_type]
    except KeyError:
        raise ValueError(f"{resource_type.name} is not a concrete resource type") from None


@dataclass(frozen=True, slots=True)
class ResourcePattern:
    """The resources an ACL applies to."""

    resource_type: ResourceType
    name: str
    pattern_type: PatternType

    def to_filter(self) -> ResourcePatternFilter:
        """A filter matching exactly this pattern."""
        return ResourcePatternFilter(self.resource_type, self.name, self.pattern_type)

    @property
    def is_unknown(self) -> bool:
        return (self.resource_type is ResourceType.UNKNOWN
                or self.pattern_type is PatternType.UNKNOWN)


@dataclass(frozen=True, slots=True)
class AccessControlEntry:
    """Who (principal "Type:name", "User:*" for everyone), from where (a client IP address as
    the broker prints it, "*" for anywhere), may or may not do what."""

    principal: str
    host: str
    operation: AclOperation
    permission: PermissionType

    def to_filter(self) -> AccessControlEntryFilter:
        return AccessControlEntryFilter(self.principal, self.host, self.operation,
                                        self.permission)

    @property
    def is_unknown(self) -> bool:
        return (self.operation is AclOperation.UNKNOWN
                or self.permission is PermissionType.UNKNOWN)


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ACL: an entry bound to a resource pattern."""

    pattern: ResourcePattern
    entry: AccessControlEntry

    def to_filter(self) -> AclBindingFilter:
        return AclBindingFilter(self.pattern.to_filter(), self.entry.to_filter())

    @property
    def is_unknown(self) -> bool:
        return self.pattern.is_unknown or self.entry.is_unknown


@dataclass(frozen=True, slots=True)
class ResourcePatternFilter:
    """Selects resource patterns. ``resource_type`` ANY ignores the type; ``name`` None
    ignores the name; ``pattern_type`` ANY takes every pattern type but compares the name
    exactly, MATCH takes every pattern that would apply to a resource called ``name`` (the
    literal name, the wildcard, and prefixes of it), LITERAL or PREFIXED only that type."""

    resource_type: ResourceType
    name: str | None
    pattern_type: PatternType

    ANY: ClassVar[ResourcePatternFilter]

    def matches(self, pattern: ResourcePattern) -> bool:
        if (self.resource_type is not ResourceType.ANY
                and self.resource_type != pattern.resource_type):
            return False
        if (self.pattern_type not in (PatternType.ANY, PatternType.MATCH)
                and self.pattern_type != pattern.pattern_type):
            return False
        if self.name is None:
            return True
        if self.pattern_type is PatternType.ANY or self.pattern_type == pattern.pattern_type:
            return self.name == pattern.name
        # MATCH: would the pattern apply to a resource called self.name?
        if pattern.pattern_type is PatternType.LITERAL:
            return self.name == pattern.name or pattern.name == WILDCARD
        if pattern.pattern_type is PatternType.PREFIXED:
            return self.name.startswith(pattern.name)
        # Kafka throws here; a stored pattern is never of another type, and a filter
        # should not crash a request over a pattern it cannot interpret.
        return False

    @property
    def is_unknown(self) -> bool:
        return (self.resource_type is ResourceType.UNKNOWN
                or self.pattern_type is PatternType.UNKNOWN)


ResourcePatternFilter.ANY = ResourcePatternFilter(ResourceType.ANY, None, PatternType.ANY)


@dataclass(frozen=True, slots=True)
class AccessControlEntryFilter:
    """Selects entries: ``principal`` or ``host`` None ignores that field (otherwise it is
    compared exactly, so "User:*" selects only wildcard entries), operation ANY and
    permission ANY ignore theirs."""

    principal: str | None
    host: str | None
    operation: AclOperation
    permission: PermissionType

    ANY: ClassVar[AccessControlEntryFilter]

    def matches(self, entry: AccessControlEntry) -> bool:
        if self.principal is not None and self.principal != entry.principal:
            return False
        if self.host is not None and self.host != entry.host:
            return False
        if self.operation is not AclOperation.ANY and self.operation != entry.operation:
            return False
        return (self.permission is PermissionType.ANY
                or self.permission == entry.permission)

    @property
    def is_unknown(self) -> bool:
        return (self.operation is AclOperation.UNKNOWN
                or self.permission is PermissionType.UNKNOWN)


AccessControlEntryFilter.ANY = AccessControlEntryFilter(None, None, AclOperation.ANY,
                                                        PermissionType.ANY)


@dataclass(frozen=True, slots=True)
class AclBindingFilter:
    """Selects ACLs: both the pattern and the entry filter must match."""

    pattern: ResourcePatternFilter
    entry: AccessControlEntryFilter

    ANY: ClassVar[AclBindingFilter]

    def matches(self, binding: AclBinding) -> bool:
        return self.pattern.matches(binding.pattern) and self.entry.matches(binding.entry)

    @property
    def is_unknown(self) -> bool:
        return self.pattern.is_unknown or self.entry.is_unknown


AclBindingFilter.ANY = AclBindingFilter(ResourcePatternFilter.ANY, AccessControlEntryFilter.ANY)


def validate_binding(binding: AclBinding) -> str | None:
    """Why CreateAcls must refuse this binding (INVALID_REQUEST with this message), or None.

    The messages are Kafka's: the controller's for codes an ACL cannot have and for the
    principal, the broker's for the CLUSTER name and the empty name. Kafka accepts any host
    string and any principal with a colon ("User:" included), and a PREFIXED "*", which
    matches only names that start with "*" (it is not a wildcard); so does this."""
    error = validate_codes(binding)
    if error is not None:
        return error
    pattern, entry = binding.pattern, binding.entry
    if pattern.resource_type is ResourceType.CLUSTER and pattern.name != CLUSTER_NAME:
        return f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
    if not pattern.name:
        return "Invalid empty resource name"
    if ":" not in entry.principal:
        return (f"Could not parse principal from `{entry.principal}` (no colon is present "
                "separating the principal type from the principal name)")
    return None


def validate_codes(binding: AclBinding) -> str | None:
    """Why the binding cannot be an ACL at all (a filter-only or UNKNOWN code), or None: the
    part of ``validate_binding`` an index of stored ACLs relies on. The rest is CreateAcls
    policy, which Kafka's controller does not re-check for ACLs it is given directly."""
    pattern, entry = binding.pattern, binding.entry
    if pattern.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
        return f"Invalid resourceType {pattern.resource_type.name}"
    if not pattern.pattern_type.is_specific:
        return f"Invalid patternType {pattern.pattern_type.name}"
    if entry.operation in (AclOperation.UNKNOWN, AclOperation.ANY):
        return f"Invalid operation {entry.operation.name}"
    if entry.permission not in (PermissionType.ALLOW, PermissionType.DENY):
        return f"Invalid permissionType {entry.permission.name}"
    return None


def validate_filter(acl_filter: AclBindingFilter) -> str | None:
    """Why DescribeAcls or DeleteAcls must refuse this filter (INVALID_REQUEST), or None.

    Only UNKNOWN codes are refused (Kafka's controller messages): every other filter is
    valid, even one that can match nothing."""
    if acl_filter.pattern.is_unknown:
        return "Unknown patternFilter."
    if acl_filter.entry.is_unknown:
        return "Unknown entryFilter."
    return None

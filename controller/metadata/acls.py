"""ACLs as the metadata log and the controller hold them: Kafka's StandardAcl (an ACL as
plain codes and strings) and the filter DeleteAcls matches them with.

The broker's ACL model (odradek.broker.security.acl: enums, validation with Kafka's messages,
the authorizer's index) is built from these values; the controller cannot import it (the
import rule), yet DeleteAcls must be matched against the controller's own image, where every
committed CreateAcls already is, or a delete sent right after a create through another
broker could miss it. So the filter's matching rules (Kafka's ``AclBindingFilter.matches``)
live here too; tests/unit/controller/metadata/test_acl_metadata.py checks them against the
broker's model case by case.
"""

from __future__ import annotations

from dataclasses import dataclass

# Kafka's codes (org.apache.kafka.common.resource and .acl), as the wire and the log carry them.
ANY = 1  # a filter's "any resource type / pattern type / operation / permission"
MATCH = 2  # a pattern type filter: every pattern that applies to the filter's name
LITERAL = 3
PREFIXED = 4
ALL_OPERATIONS = 2  # the operation of an ACL that grants or denies every operation
DENY = 2
ALLOW = 3
# Concrete codes an ACL may hold: resource types TOPIC..USER, operations ALL..
# TWO_PHASE_COMMIT; the rest (0 UNKNOWN, 1 ANY, MATCH) only make sense in filters.
RESOURCE_TYPES = frozenset(range(2, 8))
PATTERN_TYPES = frozenset({LITERAL, PREFIXED})
OPERATIONS = frozenset(range(2, 16))
PERMISSIONS = frozenset({DENY, ALLOW})
WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class StandardAcl:
    """One ACL: which resources (type, name, LITERAL or PREFIXED), who ("User:alice"),
    from where (an IP address or "*"), which operation, allowed or denied."""

    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission_type: int

    def is_storable(self) -> bool:
        """Holds only codes an ACL may have, a name and a principal with a type: what the
        controller requires before it writes an ACL (the broker checks first, with Kafka's
        messages), because an ACL that no broker can index would be in the log for good."""
        return (self.resource_type in RESOURCE_TYPES and self.pattern_type in PATTERN_TYPES
                and self.operation in OPERATIONS and self.permission_type in PERMISSIONS
                and bool(self.resource_name) and ":" in self.principal)


@dataclass(frozen=True, slots=True)
class AclFilter:
    """Kafka's AclBindingFilter: None (name, principal, host) and ANY (the codes) leave a
    field open; pattern type MATCH selects every pattern that applies to a resource named
    ``resource_name`` (itself, the literal wildcard, every prefix of it)."""

    resource_type: int
    resource_name: str | None
    pattern_type: int
    principal: str | None
    host: str | None
    operation: int
    permission_type: int

    def matches(self, acl: StandardAcl) -> bool:
        return self._matches_pattern(acl) and self._matches_entry(acl)

    def _matches_pattern(self, acl: StandardAcl) -> bool:
        if self.resource_type != ANY and self.resource_type != acl.resource_type:
            return False
        if self.pattern_type not in (ANY, MATCH) and self.pattern_type != acl.pattern_type:
            return False
        if self.resource_name is None:
            return True
        if self.pattern_type == ANY or self.pattern_type == acl.pattern_type:
            return self.resource_name == acl.resource_name
        # MATCH: would the ACL's pattern apply to a resource called resource_name?
        if acl.pattern_type == LITERAL:
            return acl.resource_name in (self.resource_name, WILDCARD)
        if acl.pattern_type == PREFIXED:
            return self.resource_name.startswith(acl.resource_name)
        return False

    def _matches_entry(self, acl: StandardAcl) -> bool:
        if self.principal is not None and self.principal != acl.principal:
            return False
        if self.host is not None and self.host != acl.host:
            return False
        if self.operation != ANY and self.operation != acl.operation:
            return False
        return self.permission_type == ANY or self.permission_type == acl.permission_type

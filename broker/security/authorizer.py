"""The ACL authorizer: Kafka's StandardAuthorizer rules over an index of the cluster's ACLs.

``AclIndex`` holds the ACLs the metadata log has committed, each under the id its record
carries (Kafka's StandardAcl Uuid). It never changes: the metadata layer derives a new index
from the old one and a batch of added and removed ACLs (``updated``), and request handlers
keep using whichever index they started with. Its layout serves the broker's hot path, one
decision per partition of every request: literal ACLs (the wildcard "*" included) are found by
(resource type, name) in a dict, and prefixed ACLs by looking the name's prefixes up in a dict,
only at the lengths some prefixed ACL of that type has. A decision therefore costs the ACLs
that apply to the resource, not all ACLs.

``Authorizer`` answers "may this principal, from this host, do this to this resource?" with
Kafka's rules (``StandardAuthorizerData.authorize``):

- a super user may do anything;
- the ACLs that apply to a resource are those on its literal name, on the literal wildcard
  "*" and on every PREFIXED pattern its name starts with;
- of those, an ACL matches when its principal is the asking one or "User:*", its host is the
  asking one or "*", and its operation is the asked one or ALL; an ALLOW ACL for READ, WRITE,
  DELETE or ALTER also grants DESCRIBE, and one for ALTER_CONFIGS grants DESCRIBE_CONFIGS
  (DENY ACLs imply nothing);
- any matching DENY wins over every ALLOW; otherwise a matching ALLOW allows;
- with no matching ACL the answer is no, except when no ACL applies to the resource at all
  (whoever it names): then ``allow_everyone_if_no_acl_found`` decides.

It also reproduces Kafka's ``authorizeByResourceType`` (the default of Kafka's Authorizer
interface, which StandardAuthorizer inherits), used where a request needs "may this principal
do this to at least one resource of the type", e.g. InitProducerId without a transactional id.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import ClassVar

from odradek.broker.acl_operations import AclOperation
from odradek.broker.security.acl import (
    WILDCARD,
    WILDCARD_PRINCIPAL,
    AclBinding,
    AclBindingFilter,
    PatternType,
    PermissionType,
    ResourceType,
    supported_operations,
    validate_codes,
)

_A = AclOperation

# The ALLOW ACL operations that grant each asked operation: itself, ALL, and the operations
# that imply it. DENY ACLs deny only their own operation (or every one, for ALL).
_IMPLIED_BY: dict[AclOperation, frozenset[AclOperation]] = {
    _A.DESCRIBE: frozenset({_A.READ, _A.WRITE, _A.DELETE, _A.ALTER}),
    _A.DESCRIBE_CONFIGS: frozenset({_A.ALTER_CONFIGS}),
}
_GRANTED_BY: dict[AclOperation, frozenset[AclOperation]] = {
    op: frozenset({op, _A.ALL}) | _IMPLIED_BY.get(op, frozenset()) for op in AclOperation
}
_DENIED_BY: dict[AclOperation, frozenset[AclOperation]] = {
    op: frozenset({op, _A.ALL}) for op in AclOperation
}
_NOT_CONCRETE_OPS = frozenset({_A.UNKNOWN, _A.ANY})
_NOT_CONCRETE_TYPES = frozenset({ResourceType.UNKNOWN, ResourceType.ANY})

# Kafka's authorizeByResourceType first authorizes the operation on a resource of this
# name, so that super users (and the allow-everyone default) pass whatever DENY ACLs say.
_PROBE_NAME = "hardcode"

AclEntryWithId = tuple[uuid.UUID, AclBinding]
_Bucket = tuple[AclEntryWithId, ...]


@dataclass(frozen=True, slots=True)
class _TypeAcls:
    """The ACLs on one resource type."""

    literal: dict[str, _Bucket]  # by name, the wildcard "*" included
    prefixed: dict[str, _Bucket]  # by prefix
    prefix_lengths: tuple[int, ...]  # the distinct lengths of the prefixes, ascending
    by_id: dict[uuid.UUID, AclBinding]

    def applicable(self, name: str) -> list[_Bucket]:
        """The buckets of ACLs whose pattern applies to a resource called ``name``."""
        found = []
        bucket = self.literal.get(name)
        if bucket:
            found.append(bucket)
        size = len(name)
        for length in self.prefix_lengths:
            if length > size:
                break
            bucket = self.prefixed.get(name[:length])
            if bucket:
                found.append(bucket)
        if name != WILDCARD:
            bucket = self.literal.get(WILDCARD)
            if bucket:
                found.append(bucket)
        return found


class _TypeBuilder:
    """Copies one type's tables on first change; buckets being changed are lists until
    ``build`` freezes them, so a bulk load appends instead of copying tuples."""

    def __init__(self, base: _TypeAcls | None) -> None:
        self.literal = dict(base.literal) if base else {}
        self.prefixed = dict(base.prefixed) if base else {}
        self.by_id = dict(base.by_id) if base else {}
        self.open: dict[tuple[PatternType, str], list[AclEntryWithId]] = {}

    def _bucket(self, pattern_type: PatternType, name: str) -> list[AclEntryWithId]:
        key = (pattern_type, name)
        bucket = self.open.get(key)
        if bucket is None:
            table = self.literal if pattern_type is PatternType.LITERAL else self.prefixed
            bucket = self.open[key] = list(table.get(name, ()))
        return bucket

    def add(self, acl_id: uuid.UUID, binding: AclBinding) -> None:
        self._bucket(binding.pattern.pattern_type, binding.pattern.name).append(
            (acl_id, binding))
        self.by_id[acl_id] = binding

    def remove(self, acl_id: uuid.UUID, binding: AclBinding) -> None:
        bucket = self._bucket(binding.pattern.pattern_type, binding.pattern.name)
        bucket[:] = [entry for entry in bucket if entry[0] != acl_id]
        del self.by_id[acl_id]

    def build(self) -> _TypeAcls | None:
        for (pattern_type, name), bucket in self.open.items():
            table = self.literal if pattern_type is PatternType.LITERAL else self.prefixed
            if bucket:
                table[name] = tuple(bucket)
            else:
                table.pop(name, None)
        if not self.by_id:
            return None
        lengths = tuple(sorted({len(prefix) for prefix in self.prefixed}))
        return _TypeAcls(self.literal, self.prefixed, lengths, self.by_id)


class AclIndex:
    """The committed ACLs by id, indexed for authorization. Immutable: ``updated`` returns a
    new index (copying the id tables and the tables of the resource types it touches, so a
    batch costs O(ACLs) once, while lookups stay O(ACLs that apply))."""

    __slots__ = ("_by_id", "_types")

    EMPTY: ClassVar[AclIndex]

    def __init__(self, by_id: dict[uuid.UUID, AclBinding],
                 types: dict[ResourceType, _TypeAcls]) -> None:
        # Use AclIndex.EMPTY, AclIndex.of() or updated(): the tables must agree.
        self._by_id = by_id
        self._types = types

    @classmethod
    def of(cls, acls: Iterable[AclEntryWithId]) -> AclIndex:
        """An index of these (id, binding) pairs, e.g. a snapshot's ACLs."""
        return cls.EMPTY.updated(added=acls)

    def updated(self, added: Iterable[AclEntryWithId] = (),
                removed: Iterable[uuid.UUID] = ()) -> AclIndex:
        """This index with ``removed`` taken out, then ``added`` put in.

        Raises KeyError for an id to remove that is not here, ValueError for an id to add
        that already is, or for a binding with codes no ACL may have (``validate_codes``):
        either means the log and this index disagree. CreateAcls' other rules (the CLUSTER
        name, empty names, the principal's colon) are left to the request path: the index
        takes whatever the log committed."""
        by_id = dict(self._by_id)
        builders: dict[ResourceType, _TypeBuilder] = {}

        def builder(resource_type: ResourceType) -> _TypeBuilder:
            found = builders.get(resource_type)
            if found is None:
                found = builders[resource_type] = _TypeBuilder(self._types.get(resource_type))
            return found

        for acl_id in removed:
            try:
                binding = by_id.pop(acl_id)
            except KeyError:
                raise KeyError(f"no ACL with id {acl_id} to remove") from None
            builder(binding.pattern.resource_type).remove(acl_id, binding)
        for acl_id, binding in added:
            if acl_id in by_id:
                raise ValueError(f"an ACL with id {acl_id} already exists: {by_id[acl_id]}")
            error = validate_codes(binding)
            if error is not None:
                raise ValueError(f"ACL {acl_id} is not valid ({error}): {binding}")
            by_id[acl_id] = binding
            builder(binding.pattern.resource_type).add(acl_id, binding)
        types = dict(self._types)
        for resource_type, changed in builders.items():
            built = changed.build()
            if built is None:
                types.pop(resource_type, None)
            else:
                types[resource_type] = built
        return AclIndex(by_id, types)

    def with_acl(self, acl_id: uuid.UUID, binding: AclBinding) -> AclIndex:
        return self.updated(added=((acl_id, binding),))

    def without_acl(self, acl_id: uuid.UUID) -> AclIndex:
        return self.updated(removed=(acl_id,))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, acl_id: object) -> bool:
        return acl_id in self._by_id

    def __repr__(self) -> str:
        return f"AclIndex({len(self._by_id)} ACLs)"

    def get(self, acl_id: uuid.UUID) -> AclBinding | None:
        return self._by_id.get(acl_id)

    def items(self) -> Iterator[AclEntryWithId]:
        """Every (id, binding), in the order they were added."""
        return iter(self._by_id.items())

    def find(self, binding: AclBinding) -> uuid.UUID | None:
        """The id of an ACL equal to ``binding``: CreateAcls of an existing ACL succeeds
        without adding a second copy (Kafka's controller)."""
        type_acls = self._types.get(binding.pattern.resource_type)
        if type_acls is None:
            return None
        table = (type_acls.literal if binding.pattern.pattern_type is PatternType.LITERAL
                 else type_acls.prefixed)
        return next((acl_id for acl_id, stored in table.get(binding.pattern.name, ())
                     if stored == binding), None)

    def matching(self, acl_filter: AclBindingFilter) -> list[AclEntryWithId]:
        """The (id, binding) pairs the filter matches, in the order they were added:
        what DeleteAcls removes."""
        resource_type = acl_filter.pattern.resource_type
        if resource_type is ResourceType.ANY:
            candidates = self._by_id
        else:
            type_acls = self._types.get(resource_type)
            if type_acls is None:
                return []
            candidates = type_acls.by_id
        return [(acl_id, binding) for acl_id, binding in candidates.items()
                if acl_filter.matches(binding)]

    def describe(self, acl_filter: AclBindingFilter) -> list[AclBinding]:
        """The bindings the filter matches: what DescribeAcls lists."""
        return [binding for _, binding in self.matching(acl_filter)]

    def of_type(self, resource_type: ResourceType) -> Iterator[AclBinding]:
        type_acls = self._types.get(resource_type)
        return iter(type_acls.by_id.values()) if type_acls is not None else iter(())

    def _applicable(self, resource_type: ResourceType, name: str) -> list[_Bucket]:
        type_acls = self._types.get(resource_type)
        return type_acls.applicable(name) if type_acls is not None else []


AclIndex.EMPTY = AclIndex({}, {})


class Rule(enum.Enum):
    """Why a decision came out as it did (Kafka's audit log names the same rules)."""

    SUPER_USER = "SuperUser"
    MATCHING_ACL = "MatchingAcl"
    # No ACL applies to the resource: allow_everyone_if_no_acl_found decided.
    NO_ACLS = "NoAcls"
    # ACLs apply to the resource, but none to this principal, host and operation.
    NO_MATCHING_ACL = "NoMatchingAcl"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: Rule
    # The ACL that decided (the DENY that won, or an ALLOW) for Rule.MATCHING_ACL.
    acl: AclEntryWithId | None = None


_SUPER_USER = Decision(True, Rule.SUPER_USER)
_NO_ACLS_ALLOW = Decision(True, Rule.NO_ACLS)
_NO_ACLS_DENY = Decision(False, Rule.NO_ACLS)
_NO_MATCHING_ACL = Decision(False, Rule.NO_MATCHING_ACL)


@dataclass(frozen=True)
class Authorizer:
    """Decides requests against ``acls``. ``super_users`` holds principals as "Type:name"
    (Kafka's ``super.users``); ``principal`` arguments are in the same form, ``host`` is the
    client's IP address as the ACLs' hosts spell it."""

    acls: AclIndex
    super_users: frozenset[str] = field(default_factory=frozenset)
    allow_everyone_if_no_acl_found: bool = False

    def with_acls(self, acls: AclIndex) -> Authorizer:
        return replace(self, acls=acls)

    def authorize(self, principal: str, host: str, operation: AclOperation,
                  resource_type: ResourceType, name: str) -> bool:
        return self.decide(principal, host, operation, resource_type, name).allowed

    def decide(self, principal: str, host: str, operation: AclOperation,
               resource_type: ResourceType, name: str) -> Decision:
        """``authorize`` with the rule that decided, for audit logs."""
        if operation in _NOT_CONCRETE_OPS or resource_type in _NOT_CONCRETE_TYPES:
            raise ValueError(f"cannot authorize {operation.name} on {resource_type.name}: "
                             "both must be concrete")
        if principal in self.super_users:
            return _SUPER_USER
        buckets = self.acls._applicable(resource_type, name)
        if not buckets:
            return _NO_ACLS_ALLOW if self.allow_everyone_if_no_acl_found else _NO_ACLS_DENY
        granted_by = _GRANTED_BY[operation]
        denied_by = _DENIED_BY[operation]
        allow: AclEntryWithId | None = None
        for bucket in buckets:
            for acl in bucket:
                entry = acl[1].entry
                if entry.principal != principal and entry.principal != WILDCARD_PRINCIPAL:
                    continue
                if entry.host != host and entry.host != WILDCARD:
                    continue
                if entry.permission is PermissionType.DENY:
                    if entry.operation in denied_by:
                        # A DENY wins whatever else matches: no need to look further.
                        return Decision(False, Rule.MATCHING_ACL, acl)
                elif allow is None and entry.operation in granted_by:
                    allow = acl
        if allow is not None:
            return Decision(True, Rule.MATCHING_ACL, allow)
        return _NO_MATCHING_ACL

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType,
                              name: str) -> frozenset[AclOperation]:
        """Of the operations the resource type supports, those allowed: KIP-430's
        authorized-operations fields (Metadata, DescribeCluster, DescribeGroups)."""
        return frozenset(op for op in supported_operations(resource_type)
                         if self.authorize(principal, host, op, resource_type, name))

    def authorize_by_resource_type(self, principal: str, host: str, operation: AclOperation,
                                   resource_type: ResourceType) -> bool:
        """May the principal do ``operation`` to at least one resource of the type? Kafka's
        ``Authorizer.authorizeByResourceType``, rule for rule:

        1. if ``authorize`` allows the operation on a resource named "hardcode", yes: this
           lets super users through, and also anyone when no ACL applies to that name and
           allow_everyone_if_no_acl_found is set (a Kafka quirk kept on purpose);
        2. otherwise only ACLs of the type for this principal (or "User:*") and host (or
           "*") whose operation is exactly the asked one or ALL count: implied operations do
           not (an ALLOW READ does not make DESCRIBE pass here, unlike in ``authorize``);
        3. a DENY on the wildcard "*" means no; an ALLOW on the wildcard means yes;
        4. otherwise yes if some LITERAL ALLOW name has no LITERAL DENY on the same name and
           no PREFIXED DENY on a prefix of it, or some PREFIXED ALLOW has no PREFIXED DENY on
           a prefix of it (itself included); else no.

        Costs O(ACLs of the type), as Kafka's.
        """
        if operation in _NOT_CONCRETE_OPS or resource_type in _NOT_CONCRETE_TYPES:
            raise ValueError(f"cannot authorize {operation.name} on {resource_type.name}: "
                             "both must be concrete")
        if self.authorize(principal, host, operation, resource_type, _PROBE_NAME):
            return True
        matching_ops = frozenset({operation, AclOperation.ALL})
        deny_literal: set[str] = set()
        deny_prefixed: set[str] = set()
        allow_literal: set[str] = set()
        allow_prefixed: set[str] = set()
        allow_wildcard = False
        for binding in self.acls.of_type(resource_type):
            entry, pattern = binding.entry, binding.pattern
            if entry.host != host and entry.host != WILDCARD:
                continue
            if entry.principal != principal and entry.principal != WILDCARD_PRINCIPAL:
                continue
            if entry.operation not in matching_ops:
                continue
            literal = pattern.pattern_type is PatternType.LITERAL
            if entry.permission is PermissionType.DENY:
                if literal and pattern.name == WILDCARD:
                    return False
                (deny_literal if literal else deny_prefixed).add(pattern.name)
            elif literal and pattern.name == WILDCARD:
                allow_wildcard = True
            else:
                (allow_literal if literal else allow_prefixed).add(pattern.name)
        if allow_wildcard:
            return True

        def denied_by_prefix(name: str) -> bool:
            return any(name[:length] in deny_prefixed for length in range(1, len(name) + 1))

        if any(name not in deny_literal and not denied_by_prefix(name)
               for name in allow_literal):
            return True
        return any(not denied_by_prefix(name) for name in allow_prefixed)

    def describe(self, acl_filter: AclBindingFilter) -> list[AclBinding]:
        return self.acls.describe(acl_filter)

    def matching(self, acl_filter: AclBindingFilter) -> list[AclEntryWithId]:
        return self.acls.matching(acl_filter)

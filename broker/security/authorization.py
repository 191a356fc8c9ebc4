"""What request handlers ask about authorization: "may this request's principal do this?"

Kafka enforces ACLs only when ``authorizer.class.name`` names an authorizer; Odradek's is
Kafka's KRaft one, ``org.apache.kafka.metadata.authorizer.StandardAuthorizer`` (its rules
are in ``authorizer.py``). Without one every request is allowed, and the ACL APIs answer
SECURITY_DISABLED, as in Kafka. ``super.users`` (``User:admin;User:broker``) may do
anything; brokers authenticate to each other as the principal of their inter-broker
listener, which therefore belongs in it. ``allow.everyone.if.no.acl.found`` decides for
resources no ACL names.

The ACLs come from the cluster metadata (``acls`` returns the index current with this
node's image); the ``Authorizer`` over them is rebuilt only when that index changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from odradek.broker.acl_operations import AclOperation, bits
from odradek.broker.handlers.api import RequestContext
from odradek.broker.security.acl import ResourceType
from odradek.broker.security.authorizer import AclIndex, Authorizer

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def parse_super_users(text: str) -> frozenset[str]:
    """``super.users``: principals separated by semicolons (Kafka's format)."""
    return frozenset(p.strip() for p in text.split(";") if p.strip())


class Authorization:
    def __init__(self, enabled: bool, super_users: frozenset[str],
                 allow_everyone_if_no_acl_found: bool, acls: Callable[[], AclIndex]) -> None:
        self.enabled = enabled
        self._acls = acls
        self._authorizer = Authorizer(AclIndex.EMPTY, super_users,
                                      allow_everyone_if_no_acl_found)

    @property
    def authorizer(self) -> Authorizer:
        acls = self._acls()
        if acls is not self._authorizer.acls:
            self._authorizer = self._authorizer.with_acls(acls)
        return self._authorizer

    def allowed(self, ctx: RequestContext, operation: AclOperation,
                resource_type: ResourceType, name: str) -> bool:
        if not self.enabled:
            return True
        return self.authorizer.authorize(ctx.principal, ctx.client_host, operation,
                                         resource_type, name)

    def allowed_names(self, ctx: RequestContext, operation: AclOperation,
                      resource_type: ResourceType, names: Iterable[str]) -> set[str]:
        """The names among ``names`` the principal may do ``operation`` to."""
        names = set(names)
        if not self.enabled:
            return names
        authorizer = self.authorizer
        return {n for n in names if authorizer.authorize(
            ctx.principal, ctx.client_host, operation, resource_type, n)}

    def allowed_by_type(self, ctx: RequestContext, operation: AclOperation,
                        resource_type: ResourceType) -> bool:
        """May the principal do ``operation`` to at least one resource of the type?"""
        if not self.enabled:
            return True
        return self.authorizer.authorize_by_resource_type(
            ctx.principal, ctx.client_host, operation, resource_type)

    def operations(self, ctx: RequestContext, resource_type: ResourceType, name: str,
                   supported: frozenset[AclOperation]) -> int:
        """KIP-430's bit field of the operations allowed on one resource: every supported
        one without an authorizer."""
        if not self.enabled:
            return bits(supported)
        return bits(self.authorizer.authorized_operations(
            ctx.principal, ctx.client_host, resource_type, name) & supported)

"""What the request handlers share about authorization (Kafka's ``AuthHelper``): the names
they authorize with, and the messages Kafka's errors carry.

Every handler asks ``node.authorization`` (odradek.broker.security.authorization), which
allows everything when ``authorizer.class.name`` is empty. Where a request touches many
partitions, handlers look at ``authorization.enabled`` once and skip the per-topic checks
altogether when it is off, so the hot paths (Produce, Fetch) cost nothing more then.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from odradek.broker.acl_operations import AclOperation
from odradek.broker.handlers.api import RequestContext
from odradek.broker.security.acl import CLUSTER_NAME, ResourceType
from odradek.broker.security.authorization import Authorization

__all__ = ["CLUSTER_NAME", "AclOperation", "ResourceType", "cluster_allowed", "message"]

# Kafka's default messages of the authorization errors (Errors.X.message()), which its
# handlers put in the responses that carry a message.
_MESSAGES = {
    ErrorCode.topic_authorization_failed: "Topic authorization failed.",
    ErrorCode.group_authorization_failed: "Group authorization failed.",
    ErrorCode.cluster_authorization_failed: "Cluster authorization failed.",
    ErrorCode.transactional_id_authorization_failed: "Transactional Id authorization failed.",
}


def message(code: ErrorCode) -> str:
    return _MESSAGES[code]


def cluster_allowed(authorization: Authorization, ctx: RequestContext,
                    operation: AclOperation) -> bool:
    """May the request's principal do ``operation`` to the cluster?"""
    return authorization.allowed(ctx, operation, ResourceType.CLUSTER, CLUSTER_NAME)

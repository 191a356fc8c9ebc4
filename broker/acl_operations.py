"""Kafka's ACL operations, and which of them each kind of resource supports (KIP-430).

The codes are Kafka's (``org.apache.kafka.common.acl.AclOperation``): they travel in
CreateAcls, DescribeAcls and DeleteAcls and are stored in the metadata log, so they must never
change. UNKNOWN and ANY never name a real operation: UNKNOWN stands for a code this broker does
not know, ANY is a filter that matches every operation, ALL in an ACL grants or denies every
operation.

Clients may also ask Metadata, DescribeCluster and DescribeGroups for the operations they are
authorized to perform on a cluster, topic or group: a bit field with bit ``1 << code`` set
per operation. Without an authorizer Kafka answers every operation the resource type
supports; the sets here are Kafka's (``AclEntry.supportedOperations``), and the authorizer
(``odradek.broker.security.authorizer``) narrows them to those a principal holds.
"""

from __future__ import annotations

import enum

# What a response carries when the client did not ask (Kafka's INT32_MIN sentinel).
OMITTED = -(2**31)


class AclOperation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14
    # Kafka 4.1 (KIP-939, two-phase commit on a transactional id). This broker has no
    # two-phase commit, but knows the code so that an ACL naming it is stored and described
    # as what it is rather than refused as UNKNOWN.
    TWO_PHASE_COMMIT = 15

    @classmethod
    def from_code(cls, code: int) -> AclOperation:
        """The operation a wire code names; UNKNOWN for a code this broker does not know
        (Kafka's ``fromCode``), so a newer client's request is refused, not crashed on."""
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


def bits(operations: frozenset[AclOperation]) -> int:
    out = 0
    for op in operations:
        out |= 1 << op
    return out


A = AclOperation
TOPIC = frozenset({A.READ, A.WRITE, A.CREATE, A.DESCRIBE, A.DELETE, A.ALTER,
                   A.DESCRIBE_CONFIGS, A.ALTER_CONFIGS})
CLUSTER = frozenset({A.CREATE, A.CLUSTER_ACTION, A.DESCRIBE_CONFIGS, A.ALTER_CONFIGS,
                     A.IDEMPOTENT_WRITE, A.ALTER, A.DESCRIBE})
# Kafka 4 adds DESCRIBE_CONFIGS and ALTER_CONFIGS for group configs (KIP-848), which this
# broker does not have.
GROUP = frozenset({A.READ, A.DESCRIBE, A.DELETE})
TRANSACTIONAL_ID = frozenset({A.DESCRIBE, A.WRITE})
DELEGATION_TOKEN = frozenset({A.DESCRIBE})
# A USER resource is a principal other users may create or describe delegation tokens for.
USER = frozenset({A.CREATE_TOKENS, A.DESCRIBE_TOKENS})


def authorized(supported: frozenset[AclOperation], asked: bool) -> int:
    """The field for a resource of a type supporting ``supported``: every one of them (no
    authorizer runs), or OMITTED when the client did not ask."""
    return bits(supported) if asked else OMITTED

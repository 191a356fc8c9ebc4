"""Kafka's ACL operations, and which of them each kind of resource supports (KIP-430).

Clients may ask Metadata, DescribeCluster and DescribeGroups for the operations they are
authorized to perform on a cluster, topic or group: a bit field with bit ``1 << code`` set
per operation. Without an authorizer Kafka answers every operation the resource type
supports; the codes and sets here are Kafka's (``AclOperation``,
``AclEntry.supportedOperations``).
"""

from __future__ import annotations

import enum

# What a response carries when the client did not ask (Kafka's INT32_MIN sentinel).
OMITTED = -(2**31)


class AclOperation(enum.IntEnum):
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


def authorized(supported: frozenset[AclOperation], asked: bool) -> int:
    """The field for a resource of a type supporting ``supported``: every one of them (no
    authorizer runs), or OMITTED when the client did not ask."""
    return bits(supported) if asked else OMITTED

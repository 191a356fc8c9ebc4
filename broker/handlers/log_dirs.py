"""DescribeLogDirs: the partition logs this broker holds, with their sizes, and the space
left on the volume (what `kafka-log-dirs.sh --describe` and the admin clients show).

A node has one log directory, ``data.dir``; each hosted partition's log is reported there
(an offline log, after a disk error, is left out: its size is not known).

It needs DESCRIBE on the CLUSTER (Kafka's rule); without it the answer is
CLUSTER_AUTHORIZATION_FAILED (from v3, which has the field) and no log directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.config import NodeConfig
from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, cluster_allowed
from odradek.broker.replica_manager import ReplicaManager
from odradek.broker.security.authorization import Authorization


class LogDirsNode(Protocol):
    """What DescribeLogDirs uses of the node: where its logs are, and the logs."""

    @property
    def config(self) -> NodeConfig: ...

    @property
    def replicas(self) -> ReplicaManager: ...

    @property
    def authorization(self) -> Authorization: ...


def volume_bytes(path: Path) -> tuple[int, int]:
    """(total, usable) bytes of the volume holding ``path``; (-1, -1) when unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return -1, -1
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


async def handle_describe_log_dirs(node: LogDirsNode, ctx: RequestContext, req: Any
                                   ) -> Payload:
    if not cluster_allowed(node.authorization, ctx, AclOperation.DESCRIBE):
        return ctx.respond({"throttle_time": 0,
                            "error_code": ErrorCode.cluster_authorization_failed,
                            "results": []})
    # A null topic list asks for every partition; otherwise only those named.
    wanted = (None if req.topics is None
              else {t.topic: set(t.partitions) for t in req.topics})
    topics: dict[str, list[dict[str, Any]]] = {}
    for (topic, index), p in sorted(node.replicas.partitions.items()):
        if wanted is not None and index not in wanted.get(topic, ()):
            continue
        if p.log.offline:
            continue
        topics.setdefault(topic, []).append({
            "partition_index": index,
            "partition_size": p.log.size_bytes,
            # For a current (not future) log, Kafka reports how far its end trails the
            # high watermark: 0 on a leader, and on a follower that has caught up.
            "offset_lag": max(0, p.log.high_watermark - p.log.log_end_offset),
            "is_future_key": False,
        })
    log_dir = Path(node.config["data.dir"]).resolve()
    total, usable = volume_bytes(log_dir)
    return ctx.respond({
        "throttle_time": 0,
        "error_code": ErrorCode.none,
        "results": [{
            "error_code": ErrorCode.none,
            "log_dir": str(log_dir),
            "topics": [{"name": name, "partitions": parts}
                       for name, parts in sorted(topics.items())],
            "total_bytes": total,
            "usable_bytes": usable,
        }],
    })


APIS: tuple[ApiSpec[LogDirsNode], ...] = (
    # v0 is gone from Kafka 4; v1-v4 are what Kafka 4 serves.
    ApiSpec(35, 1, 4, handle_describe_log_dirs),
)

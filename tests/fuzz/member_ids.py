"""Let the fuzzer name a group member the node has just created.

The group coordinator gives each joining member a fresh id (client id plus a UUID), and
every later request of that member (SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, a
rejoin) must carry it. A fuzzer cannot guess a UUID, so without help it never gets past
"unknown member" into the rebalance, assignment and generation checks. So the harness
remembers the member ids JoinGroup answers hand out, and in a group request a member id of
exactly ``PLACEHOLDER`` is replaced by the latest of them before dispatch. Any other id,
the empty one included (a new member), reaches the coordinator as sent.
"""

from __future__ import annotations

import dataclasses
from typing import Any

PLACEHOLDER = "@"
JOIN_GROUP = 11
# API keys whose requests carry member ids: OffsetCommit, OffsetFetch, JoinGroup,
# Heartbeat, LeaveGroup, SyncGroup.
_GROUP_APIS = frozenset({8, 9, JOIN_GROUP, 12, 13, 14})
# Entity fields, at the top level or one level down, that hold a member id.
_ARRAYS = ("assignments", "members", "groups")


class MemberIds:
    def __init__(self) -> None:
        self.latest: str | None = None

    def learn(self, api_key: int, response: Any) -> None:
        if api_key == JOIN_GROUP and response is not None and response.member_id:
            self.latest = response.member_id

    def substitute(self, api_key: int, body: Any) -> Any:
        """``body`` with placeholder member ids replaced (itself when there are none)."""
        if api_key not in _GROUP_APIS or self.latest is None:
            return body
        changes: dict[str, Any] = {}
        if getattr(body, "member_id", None) == PLACEHOLDER:
            changes["member_id"] = self.latest
        for name in _ARRAYS:
            items = getattr(body, name, None)
            if not items or not hasattr(items[0], "member_id"):
                continue
            replaced = tuple(dataclasses.replace(i, member_id=self.latest)
                             if i.member_id == PLACEHOLDER else i for i in items)
            if any(a is not b for a, b in zip(replaced, items, strict=True)):
                changes[name] = replaced
        return dataclasses.replace(body, **changes) if changes else body

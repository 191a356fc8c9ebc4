"""Group coordinator: Kafka's classic consumer group protocol and committed offsets,
kept durably in the ``__consumer_offsets`` topic."""

from odradek.broker.group.coordinator import GroupCoordinator
from odradek.broker.group.group import GroupState
from odradek.broker.group.log import GroupLog, InMemoryGroupLog
from odradek.broker.group.membership import LeavingMember
from odradek.broker.group.offsets import OffsetCommitEntry
from odradek.broker.group.partitioning import partition_for

__all__ = [
    "GroupCoordinator",
    "GroupLog",
    "GroupState",
    "InMemoryGroupLog",
    "LeavingMember",
    "OffsetCommitEntry",
    "partition_for",
]

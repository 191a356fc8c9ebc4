"""Group coordinator: Kafka's classic consumer group protocol and committed offsets,
kept durably in the ``__consumer_offsets`` topic."""

from broker.group.coordinator import GroupCoordinator, LeavingMember, OffsetCommitEntry
from broker.group.group import GroupState
from broker.group.log import GroupLog, InMemoryGroupLog
from broker.group.partitioning import partition_for

__all__ = [
    "GroupCoordinator",
    "GroupLog",
    "GroupState",
    "InMemoryGroupLog",
    "LeavingMember",
    "OffsetCommitEntry",
    "partition_for",
]

"""The group coordinator: Kafka's classic consumer group protocol and committed offsets.

Each group belongs to one partition of ``__consumer_offsets`` (see ``partition_for``); this
node coordinates the groups of the partitions it leads. The broker calls
``load_partition(p)`` when it becomes leader of partition ``p`` and ``unload_partition(p)``
when it stops; requests for groups elsewhere get NOT_COORDINATOR, and while a partition
replays its records they get COORDINATOR_LOAD_IN_PROGRESS.

:class:`GroupCoordinator` is the one object the broker holds; it builds the parts, owns
their life (partitions loading and unloading, shutdown) and exposes each as an attribute
that serves its requests directly (``coordinator.membership.join_group(...)``):

* :mod:`~odradek.broker.group.registry` -- the partitions this node owns or is loading,
  the live groups, the writes to ``__consumer_offsets`` and the tasks they run in;
* :mod:`~odradek.broker.group.membership` -- JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
  rebalances and their timers;
* :mod:`~odradek.broker.group.consumer_membership` -- the consumer group protocol
  (KIP-848): ConsumerGroupHeartbeat, session and rebalance timeouts (the group's state
  in consumer_group.py, assignors.py and reconciliation.py, its records in
  consumer_records.py);
* :mod:`~odradek.broker.group.offsets` -- OffsetCommit, TxnOffsetCommit, OffsetFetch,
  OffsetDelete and offset expiry;
* :mod:`~odradek.broker.group.admin` -- ListGroups, DescribeGroups, DeleteGroups and the
  views metrics and tools read.

Shape of the code: the request methods change state synchronously and return either a
result or an ``asyncio.Future`` that a later event (another member joining, a timer, a log
append) resolves. Timers come from an injectable :class:`~odradek.broker.group.clock.Clock`.
Writes to the log happen in tasks the coordinator owns; ``settle()`` waits for them (tests,
shutdown).

What the broker must do:

* construct it with the ``GroupLog`` over ``__consumer_offsets`` and
  ``partition_exists(topic, partition)`` (commits to unknown partitions are refused);
* ``await load_partition(p)`` / ``unload_partition(p)`` on gaining / losing leadership of
  ``__consumer_offsets-p`` (idempotent; an unload during a load abandons it);
* ``await close()`` on shutdown (parked requests are answered, timers cancelled);
* ``on_transaction_completed(p, producer_id, commit)`` once a transaction marker is
  durable on ``__consumer_offsets-p`` (pending TxnOffsetCommit offsets take effect).

Durable writes: offset commits (answered after the append), group metadata after each
completed rebalance, when a group becomes empty and on a static member's replacement,
tombstones for deleted groups/offsets and for expired offsets (checked every
``offsets_retention_check_interval_ms``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from odradek.broker.group.admin import GroupAdmin
from odradek.broker.group.clock import Clock, LoopClock
from odradek.broker.group.consumer_group import TopicMetadata
from odradek.broker.group.consumer_membership import ConsumerMembership
from odradek.broker.group.log import GroupLog
from odradek.broker.group.membership import Membership
from odradek.broker.group.offsets import DEFAULT_RETENTION_MS, OffsetStore
from odradek.broker.group.registry import GroupRegistry


class GroupCoordinator:
    def __init__(
        self,
        group_log: GroupLog,
        *,
        partition_exists: Callable[[str, int], bool],
        topic_metadata: Callable[[Iterable[str]], Mapping[str, TopicMetadata]] | None = None,
        topic_names: Callable[[], Iterable[str]] | None = None,
        consumer_session_timeout_ms: int = 45_000,
        consumer_heartbeat_interval_ms: int = 5_000,
        consumer_max_size: int = 2**31 - 1,
        initial_rebalance_delay_ms: int = 3000,
        min_session_timeout_ms: int = 6000,
        max_session_timeout_ms: int = 1_800_000,
        max_group_size: int = 2**31 - 1,
        offsets_retention_ms: int = DEFAULT_RETENTION_MS,
        offsets_retention_check_interval_ms: int = 600_000,
        offset_metadata_max_bytes: int = 4096,
        new_member_join_timeout_ms: int = 300_000,
        clock: Clock | None = None,
        node_id: int | None = None,
        load_batch_size: int = 1000,
    ) -> None:
        clock = clock or LoopClock()
        prefix = f"[node {node_id}] " if node_id is not None else ""
        self._registry = GroupRegistry(group_log, load_batch_size=load_batch_size, log_prefix=prefix)
        self.membership = Membership(
            self._registry,
            clock,
            initial_rebalance_delay_ms=initial_rebalance_delay_ms,
            min_session_timeout_ms=min_session_timeout_ms,
            max_session_timeout_ms=max_session_timeout_ms,
            max_group_size=max_group_size,
            new_member_join_timeout_ms=new_member_join_timeout_ms,
            log_prefix=prefix,
        )
        self.offsets = OffsetStore(
            self._registry,
            self.membership,
            clock,
            partition_exists=partition_exists,
            offsets_retention_ms=offsets_retention_ms,
            offsets_retention_check_interval_ms=offsets_retention_check_interval_ms,
            offset_metadata_max_bytes=offset_metadata_max_bytes,
            log_prefix=prefix,
        )
        self.consumer = ConsumerMembership(
            self._registry,
            clock,
            topics=topic_metadata or _no_topics,
            topic_names=topic_names or (lambda: ()),
            session_timeout_ms=consumer_session_timeout_ms,
            heartbeat_interval_ms=consumer_heartbeat_interval_ms,
            max_size=consumer_max_size,
            log_prefix=prefix,
        )
        self.admin = GroupAdmin(self._registry, self.membership, self.consumer, clock)
        # An attribute each, so the broker reaches the part a request is for without this
        # class repeating their methods: membership, consumer, offsets, admin.

    # --- partitions and lifecycle --------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        return self._registry.num_partitions

    def partition_for(self, group_id: str) -> int:
        return self._registry.partition_for(group_id)

    def owned_partitions(self) -> set[int]:
        return self._registry.owned_partitions()

    def loading_partitions(self) -> set[int]:
        return self._registry.loading_partitions()

    async def load_partition(self, partition: int) -> None:
        """Become coordinator for the groups of ``partition``: replay its records.

        Groups come back with their generation, protocol, members and assignments as of
        the last completed rebalance (like Kafka), and members must heartbeat within
        their session timeout to stay. Call when this node becomes the partition's leader.
        """
        self.offsets.start_expiry_timer()
        await self._registry.load(partition, self.membership.on_group_loaded,
                                  self.consumer.on_group_loaded)

    def unload_partition(self, partition: int) -> None:
        """Stop coordinating the groups of ``partition`` (this node lost its leadership).
        Parked requests get NOT_COORDINATOR so clients look up the new coordinator."""
        self._registry.unload(partition, self.membership.on_group_unloaded,
                              self.consumer.on_group_unloaded)

    def on_transaction_completed(self, offsets_partition: int, producer_id: int,
                                 commit: bool) -> None:
        """The COMMIT (``commit``) or ABORT marker of ``producer_id`` was appended and
        replicated on ``__consumer_offsets-<offsets_partition>``: that producer's pending
        transactional offsets in the groups of the partition become committed (unless a
        plain commit was written after them) or are dropped. Call it from WriteTxnMarkers
        once the marker is durable; calls for partitions this node does not coordinate do
        nothing, and one arriving while the partition loads takes effect after the load."""
        self.offsets.complete_transaction(offsets_partition, producer_id, commit)

    async def close(self) -> None:
        self.offsets.stop_expiry_timer()
        await self._registry.close(self.membership.on_group_unloaded,
                                   self.consumer.on_group_unloaded)

    async def settle(self) -> None:
        """Wait until every write the coordinator started has finished."""
        await self._registry.settle()


def _no_topics(names: Iterable[str]) -> Mapping[str, TopicMetadata]:
    """Without metadata (tests of the classic protocol), no topic exists."""
    return {}

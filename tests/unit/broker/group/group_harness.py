"""Helpers for the group coordinator tests: a coordinator on an in-memory log with a
manual clock, and methods that play the part of consumer clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

from odradek.broker.group.clock import ManualClock
from odradek.broker.group.consumer_protocol import encode_subscription
from odradek.broker.group.coordinator import GroupCoordinator
from odradek.broker.group.log import InMemoryGroupLog
from odradek.broker.group.member import JoinResult, SyncResult
from odradek.controller.metadata import PartitionRegistration
from odradek.controller.metadata.image import MetadataImage, TopicImage

TOPICS = {"t": 3, "u": 2, "v": 1}
SESSION_MS = 10_000
REBALANCE_MS = 30_000
INITIAL_DELAY_MS = 3_000


def partition_exists(topic: str, partition: int) -> bool:
    return 0 <= partition < TOPICS.get(topic, 0)


def topic_id(name: str, incarnation: int = 0) -> uuid.UUID:
    """The id of ``name`` in ``topics_image``; a topic deleted and created again under its
    name gets a new one (a higher ``incarnation``)."""
    return uuid.uuid5(uuid.NAMESPACE_OID, f"{name}/{incarnation}")


def topics_image(topics: Mapping[str, int] = TOPICS,
                 ids: Mapping[str, uuid.UUID] | None = None) -> MetadataImage:
    """A metadata image holding ``topics`` (name -> partition count), for the handlers that
    resolve topic ids; ids are ``topic_id(name)`` unless given."""
    reg = PartitionRegistration(replicas=(1,), isr=(1,), leader=1, leader_epoch=0,
                                partition_epoch=0)
    given = ids or {}
    images = {name: TopicImage(name, given.get(name) or topic_id(name),
                               dict.fromkeys(range(n), reg))
              for name, n in topics.items()}
    return MetadataImage(1, {}, images, {t.topic_id: t for t in images.values()}, {}, 0)


def subscription(*topics: str) -> bytes:
    return encode_subscription(list(topics) or ["t"])


class Harness:
    """A coordinator owning every partition of a small __consumer_offsets."""

    def __init__(self, log: InMemoryGroupLog | None = None, **config: Any) -> None:
        self.clock = ManualClock()
        self.log = log or InMemoryGroupLog(num_partitions=4)
        settings: dict[str, Any] = {
            "initial_rebalance_delay_ms": INITIAL_DELAY_MS,
            "min_session_timeout_ms": 1_000,
            "max_session_timeout_ms": 60_000,
        }
        settings.update(config)
        self.coord = GroupCoordinator(
            self.log, partition_exists=partition_exists, clock=self.clock, **settings
        )

    async def load_all(self) -> Harness:
        for p in range(self.log.num_partitions):
            await self.coord.load_partition(p)
        return self

    async def settle(self) -> None:
        for _ in range(3):
            await self.coord.settle()
            await asyncio.sleep(0)

    async def advance(self, ms: int) -> None:
        self.clock.advance(ms)
        await self.settle()

    def join(
        self,
        group: str,
        member_id: str = "",
        *,
        instance: str | None = None,
        protocols: list[tuple[str, bytes]] | None = None,
        session: int = SESSION_MS,
        rebalance: int = REBALANCE_MS,
        require_known: bool = True,
        client_id: str = "client",
        protocol_type: str = "consumer",
        skip: bool = False,
    ) -> asyncio.Future[JoinResult]:
        return self.coord.membership.join_group(
            group,
            member_id,
            group_instance_id=instance,
            client_id=client_id,
            client_host="/127.0.0.1",
            session_timeout_ms=session,
            rebalance_timeout_ms=rebalance,
            protocol_type=protocol_type,
            protocols=protocols if protocols is not None else [("range", subscription("t"))],
            require_known_member_id=require_known,
            supports_skip_assignment=skip,
        )

    async def new_member_id(self, group: str, **kw: Any) -> str:
        """The MEMBER_ID_REQUIRED round trip of JoinGroup v4+."""
        fut = self.join(group, **kw)
        r = fut.result()
        assert r.error.name == "member_id_required"
        assert r.member_id
        return r.member_id

    def sync(
        self,
        group: str,
        generation: int,
        member_id: str,
        assignments: dict[str, bytes] | None = None,
        *,
        instance: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> asyncio.Future[SyncResult]:
        return self.coord.membership.sync_group(
            group,
            generation,
            member_id,
            group_instance_id=instance,
            protocol_type=protocol_type,
            protocol_name=protocol_name,
            assignments=assignments or {},
        )

    async def form_group(self, group: str, n: int, **kw: Any) -> list[JoinResult]:
        """n dynamic members join (v4+ flow) and the initial delay passes; returns the
        JoinGroup results in join order (generation formed, not yet synced)."""
        if kw.get("instance") is not None:
            # Static members skip the MEMBER_ID_REQUIRED round trip.
            assert n == 1, "one instance id per member"
            futs = [self.join(group, **kw)]
        else:
            ids = [await self.new_member_id(group, **kw) for _ in range(n)]
            futs = [self.join(group, mid, **kw) for mid in ids]
        # The initial delay, extended once if more than one member arrived.
        await self.advance(INITIAL_DELAY_MS * (2 if n > 1 else 1))
        assert all(f.done() for f in futs)
        return [f.result() for f in futs]

    async def stable_group(self, group: str, n: int, **kw: Any) -> list[JoinResult]:
        """A formed and synced group; every member gets b"a:<member_id>"."""
        results = await self.form_group(group, n, **kw)
        leader = next(r for r in results if r.member_id == r.leader_id)
        gen = leader.generation_id
        followers = [self.sync(group, gen, r.member_id) for r in results if r is not leader]
        lead = self.sync(
            group,
            gen,
            leader.member_id,
            {r.member_id: f"a:{r.member_id}".encode() for r in results},
        )
        await self.settle()
        assert lead.done() and all(f.done() for f in followers)
        assert self.coord.admin.group_state(group) == "Stable"
        return results

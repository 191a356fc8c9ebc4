"""AlterPartitionBatcher: proposals made while a request is in flight go together in the
next one; one proposal per partition at a time; failures reach every proposal."""

from __future__ import annotations

import asyncio
import uuid

from odradek.broker.alter_partition import AlterPartitionBatcher
from odradek.controller.metadata.requests import (
    AlterPartitionItem,
    AlterPartitionItemResult,
    AlterPartitionResult,
)

TID = uuid.UUID(int=7)


def item(p: int) -> AlterPartitionItem:
    return AlterPartitionItem(TID, p, 1, 1, (1, 2))


def test_proposals_made_during_a_request_share_the_next_one() -> None:
    async def run() -> None:
        sent: list[list[int]] = []
        release = asyncio.Event()

        async def send(items: list[AlterPartitionItem]) -> AlterPartitionResult:
            sent.append([i.partition for i in items])
            await release.wait()
            return AlterPartitionResult(0, None, tuple(
                AlterPartitionItemResult(i.topic_id, i.partition, 0) for i in items))

        batcher = AlterPartitionBatcher(send, max_items=3)
        outcomes: dict[int, object] = {}

        def done(p: int):  # noqa: ANN202
            return lambda outcome: outcomes.__setitem__(p, outcome)

        assert batcher.submit(("t", 0), item(0), done(0))
        await asyncio.sleep(0)
        for p in range(1, 6):
            assert batcher.submit(("t", p), item(p), done(p))
        assert not batcher.submit(("t", 0), item(0), done(0))  # in flight
        assert not batcher.submit(("t", 1), item(1), done(1))  # queued
        release.set()
        while len(outcomes) < 6:
            await asyncio.sleep(0.01)
        assert sent == [[0], [1, 2, 3], [4, 5]]
        assert all(isinstance(o, AlterPartitionItemResult) and o.error_code == 0
                   for o in outcomes.values())
        assert not batcher.busy(("t", 0))

    asyncio.run(run())


def test_a_lost_request_or_a_request_level_refusal_reaches_every_proposal() -> None:
    async def run() -> None:
        calls = 0

        async def send(items: list[AlterPartitionItem]) -> AlterPartitionResult:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ConnectionError("controller gone")
            return AlterPartitionResult(77, "stale broker epoch")

        batcher = AlterPartitionBatcher(send)
        outcomes: list[object] = []
        batcher.submit(("t", 0), item(0), outcomes.append)
        batcher.submit(("t", 1), item(1), outcomes.append)
        while len(outcomes) < 2:
            await asyncio.sleep(0.01)
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        batcher.submit(("t", 0), item(0), outcomes.append)
        while len(outcomes) < 3:
            await asyncio.sleep(0.01)
        refused = outcomes[2]
        assert isinstance(refused, AlterPartitionItemResult)
        assert (refused.error_code, refused.error_message) == (77, "stale broker epoch")

    asyncio.run(run())

"""BrokerLifecycle and MetadataFollower against a scripted controller client."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.lifecycle import (
    BrokerLifecycle,
    BrokerRegistrationError,
    MetadataFollower,
    MetadataFollowerError,
)
from odradek.controller.metadata import MetadataDelta, MetadataImage, MetadataLoader, encode_record
from odradek.controller.metadata.diff import image_to_records
from odradek.controller.metadata.records import (
    partition_record,
    register_broker_record,
    remove_topic_record,
    topic_record,
    unfence_broker_record,
)
from odradek.controller.metadata.requests import (
    ControllerUnavailable,
    HeartbeatResult,
    MetadataBatch,
    RegisterBrokerResult,
    Registration,
)

OK = ErrorCode.none


class ScriptedClient:
    """Answers register/heartbeat from queues; the last answer repeats."""

    def __init__(self, registrations: list[Any], heartbeats: list[Any] | None = None) -> None:
        self.registrations = registrations
        self.heartbeats = heartbeats or [hb()]
        self.register_calls = 0
        self.heartbeat_calls: list[dict[str, Any]] = []
        self.batches: asyncio.Queue[MetadataBatch] = asyncio.Queue()
        self.fetched_from: list[int] = []
        self.liveness_epochs: list[int] = []

    @staticmethod
    def _next(queue: list[Any]) -> Any:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def register(self, *args: Any) -> Registration:
        self.register_calls += 1
        return self._next(self.registrations)

    async def heartbeat(self, broker_id: int, epoch: int, offset: int, **kwargs: Any
                        ) -> HeartbeatResult:
        self.heartbeat_calls.append({"epoch": epoch, "offset": offset, **kwargs})
        return self._next(self.heartbeats)

    async def fetch_metadata(self, from_offset: int) -> AsyncIterator[MetadataBatch]:
        self.fetched_from.append(from_offset)
        while True:
            yield await self.batches.get()

    async def hold_liveness(self, broker_id: int, epoch: int) -> int:
        self.liveness_epochs.append(epoch)
        await asyncio.Event().wait()  # held until the lifecycle cancels it
        return OK


def registered(epoch: int, code: int = OK, interval_ms: int = 0) -> Registration:
    return Registration(RegisterBrokerResult(code, None if code == OK else "no", epoch),
                        interval_ms, 9000)


def hb(fenced: bool = False, shutdown: bool = False, code: int = OK) -> HeartbeatResult:
    return HeartbeatResult(code, None if code == OK else "why", fenced, not fenced, shutdown)


def lifecycle(client: ScriptedClient, interval_ms: int = 20) -> BrokerLifecycle:
    return BrokerLifecycle(client, 1, str(uuid.uuid4()), [("PLAINTEXT", "h", 1)], None,
                           metadata_offset=lambda: 41, heartbeat_interval_ms=interval_ms,
                           registration_retry_ms=1)


async def test_registers_through_outages_and_old_sessions(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    caplog.set_level(logging.INFO, "odradek.broker.lifecycle")
    unavailable = ControllerUnavailable("RegisterBroker", 1, ["1@h:1: UNAVAILABLE"])
    duplicate = registered(-1, ErrorCode.duplicate_broker_registration)
    client = ScriptedClient([unavailable, duplicate, duplicate, duplicate, registered(17)])
    b = lifecycle(client)
    await b.start()
    assert client.register_calls == 5 and b.broker_epoch == 17
    waits = [r for r in caplog.records if "waiting for it to expire" in r.getMessage()]
    assert len(waits) == 1  # said once, not per retry
    await b.wait_unfenced(1)
    # Each heartbeat attempt is bounded by the session the controller answered with (9 s).
    assert client.heartbeat_calls[0] == {"epoch": 17, "offset": 41, "want_shutdown": False,
                                         "timeout": 9.0}
    await b.stop()


async def test_a_refused_registration_raises() -> None:
    client = ScriptedClient([registered(-1, ErrorCode.invalid_request)])
    with pytest.raises(BrokerRegistrationError, match="refused"):
        await lifecycle(client).start()


async def test_follows_the_controllers_heartbeat_interval_when_shorter() -> None:
    client = ScriptedClient([registered(3, interval_ms=10)])
    b = lifecycle(client, interval_ms=60_000)
    await b.start()
    async with asyncio.timeout(2):  # with the configured 60 s, the second would take a minute
        while len(client.heartbeat_calls) < 3:
            await asyncio.sleep(0.01)
    await b.stop()


async def test_fenced_state_follows_the_heartbeats() -> None:
    client = ScriptedClient([registered(3)], [hb(fenced=True), hb(fenced=True), hb()])
    b = lifecycle(client, interval_ms=1000)  # fenced: eager heartbeats regardless
    await b.start()
    assert b.is_fenced
    await b.wait_unfenced(2)
    assert not b.is_fenced
    with pytest.raises(TimeoutError, match="still fenced"):
        await lifecycle(ScriptedClient([registered(3)], [hb(fenced=True)])).wait_unfenced(0.01)
    await b.stop()


async def test_registers_again_after_losing_its_registration() -> None:
    client = ScriptedClient([registered(3), registered(8)],
                            [hb(code=ErrorCode.stale_broker_epoch), hb()])
    b = lifecycle(client)
    await b.start()
    await b.wait_unfenced(2)
    assert b.broker_epoch == 8 and client.register_calls == 2
    assert client.heartbeat_calls[-1]["epoch"] == 8
    await b.stop()


async def test_controlled_shutdown() -> None:
    client = ScriptedClient([registered(3)], [hb()])
    b = lifecycle(client, interval_ms=60_000)
    await b.start()
    await b.wait_unfenced(1)
    client.heartbeats = [hb(fenced=True), hb(fenced=True, shutdown=True)]
    assert await b.controlled_shutdown(2)
    assert client.heartbeat_calls[-1]["want_shutdown"] is True
    await b.stop()

    client = ScriptedClient([registered(3)], [hb(fenced=True)])
    b = lifecycle(client)
    await b.start()
    assert not await b.controlled_shutdown(0.1)  # the controller never says so
    await b.stop()


# ----- MetadataFollower -----


def batch(records: list[tuple[int, Any]], snapshot: bool = False) -> MetadataBatch:
    return MetadataBatch(tuple((o, encode_record(r)) for o, r in records), snapshot)


def log_records() -> list[tuple[int, Any]]:
    a, b = uuid.UUID(int=1), uuid.UUID(int=2)
    return [
        (0, register_broker_record(1, str(uuid.UUID(int=9)))),
        (1, unfence_broker_record(1, 0)),
        (2, topic_record("a", a)),
        (3, partition_record(a, 0, [1], [1], 1)),
        (4, topic_record("b", b)),
        (5, partition_record(b, 0, [1], [1], 1)),
        (6, remove_topic_record(a)),
    ]


def image_at(offset: int) -> MetadataImage:
    delta = MetadataDelta(MetadataImage.EMPTY)
    for o, r in log_records()[: offset + 1]:
        delta.replay(r, o)
    return delta.apply()


async def test_follower_applies_batches_and_resumes_from_its_offset() -> None:
    client = ScriptedClient([registered(0)])
    loader = MetadataLoader()
    deltas: list[MetadataDelta] = []
    loader.register(lambda delta, image: deltas.append(delta))
    follower = MetadataFollower(client, loader)  # type: ignore[arg-type]
    await follower.start()
    records = log_records()
    client.batches.put_nowait(batch(records[:4]))
    client.batches.put_nowait(batch(records[4:]))
    await follower.wait_for_offset(6, 1)
    assert loader.image == image_at(6)
    assert len(deltas) == 2  # one loader commit per batch
    await follower.stop()
    with pytest.raises(MetadataFollowerError, match="not running"):
        await follower.wait_for_offset(7, 1)

    again = MetadataFollower(client, loader)  # type: ignore[arg-type]
    await again.start()
    await asyncio.sleep(0)
    assert client.fetched_from == [0, 7]
    await again.stop()


def test_snapshot_into_an_empty_loader() -> None:
    loader = MetadataLoader()
    follower = MetadataFollower(ScriptedClient([]), loader)  # type: ignore[arg-type]
    follower.apply(batch(image_to_records(image_at(6)), snapshot=True))
    assert loader.image == image_at(6)


def test_snapshot_onto_an_older_image_gives_listeners_a_normal_delta() -> None:
    loader = MetadataLoader(image_at(3))
    deltas: list[MetadataDelta] = []
    loader.register(lambda delta, image: deltas.append(delta))
    follower = MetadataFollower(ScriptedClient([]), loader)  # type: ignore[arg-type]
    follower.apply(batch(image_to_records(image_at(6)), snapshot=True))
    assert loader.image == image_at(6)
    [delta] = deltas
    assert [t.name for t in delta.removed_topics().values()] == ["a"]
    assert {loader.image.topics_by_id[t].name for t in delta.changed_topic_ids()} == {"b"}

    follower.apply(batch(image_to_records(image_at(5)), snapshot=True))  # older: ignored
    assert loader.image == image_at(6) and len(deltas) == 1


def test_a_snapshot_from_another_history_is_an_error() -> None:
    loader = MetadataLoader(image_at(5))
    other = MetadataDelta(MetadataImage.EMPTY)
    other.replay(register_broker_record(1, str(uuid.UUID(int=9))), 0)
    other.replay(topic_record("a", uuid.UUID(int=77)), 1)  # "a" with another id
    for offset in range(2, 8):
        other.replay(topic_record(f"x{offset}", uuid.UUID(int=100 + offset)), offset)
    follower = MetadataFollower(ScriptedClient([]), loader)  # type: ignore[arg-type]
    with pytest.raises(MetadataFollowerError, match="snapshot at offset 7"):
        follower.apply(batch(image_to_records(other.apply()), snapshot=True))

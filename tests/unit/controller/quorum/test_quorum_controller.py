"""LocalMetadataLog durability and recovery, and the QuorumController end to end on it."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from odradek.controller.metadata import (
    Listener,
    MetadataDelta,
    MetadataImage,
    decode_record,
    encode_record,
)
from odradek.controller.metadata.records import no_op_record, topic_record
from odradek.controller.metadata.requests import (
    AlterConfigOp,
    AlterConfigsResource,
    AlterPartitionItem,
    ControllerFailedError,
    CreatePartitionsSpec,
    CreateTopicSpec,
    DeleteTopicSpec,
    IncrementalAlterConfigsResource,
    NotControllerError,
)
from odradek.controller.quorum import (
    ControllerSettings,
    LocalMetadataLog,
    MetadataLogError,
    QuorumController,
)
from odradek.controller.quorum.local_log import LOG_FILE_NAME

TOPIC = 2


def run(coro):
    return asyncio.run(coro)


def records(n: int, start: int = 0) -> list[bytes]:
    return [encode_record(topic_record(f"t{start + i}", uuid.UUID(int=start + i + 1))) for i in range(n)]


# ----- LocalMetadataLog -----


def test_append_assigns_consecutive_offsets_and_reads_back(tmp_path: Path) -> None:
    log = LocalMetadataLog(tmp_path)
    assert run(log.append(records(3))) == 2
    assert run(log.append(records(2, 3))) == 4
    assert [o for o, _ in log.read_from(0)] == [0, 1, 2, 3, 4]
    assert [o for o, _ in log.read_from(2)] == [2, 3, 4]  # from inside a batch
    assert list(log.read_from(5)) == []
    assert dict(log.read_from(3))[3] == records(1, 3)[0]
    with pytest.raises(ValueError):
        run(log.append([]))
    log.close()


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    log = LocalMetadataLog(tmp_path)
    run(log.append(records(3)))
    run(log.append(records(1, 3)))
    log.close()
    log = LocalMetadataLog(tmp_path)
    assert log.next_offset == 4
    assert [data for _, data in log.read_from(0)] == records(4)
    assert run(log.append(records(1, 4))) == 4
    log.close()


def test_one_process_at_a_time(tmp_path: Path) -> None:
    log = LocalMetadataLog(tmp_path)
    with pytest.raises(MetadataLogError, match="in use"):
        LocalMetadataLog(tmp_path)
    log.close()
    LocalMetadataLog(tmp_path).close()


@pytest.mark.parametrize("cut", [1, 5, 8, 20, -1])
def test_torn_tail_is_truncated_whole_batch(tmp_path: Path, cut: int) -> None:
    log = LocalMetadataLog(tmp_path)
    run(log.append(records(2)))
    good_size = (tmp_path / LOG_FILE_NAME).stat().st_size
    run(log.append(records(3, 2)))  # this batch will be torn
    log.close()
    path = tmp_path / LOG_FILE_NAME
    size = path.stat().st_size
    os.truncate(path, good_size + cut if cut > 0 else size + cut)

    log = LocalMetadataLog(tmp_path)
    # None of the torn batch's records survive, even those whose bytes are complete.
    assert [o for o, _ in log.read_from(0)] == [0, 1]
    assert path.stat().st_size == good_size
    assert run(log.append(records(1, 9))) == 2
    log.close()
    log = LocalMetadataLog(tmp_path)
    assert [o for o, _ in log.read_from(0)] == [0, 1, 2]
    log.close()


def test_corrupt_batch_and_everything_after_is_dropped(tmp_path: Path) -> None:
    log = LocalMetadataLog(tmp_path)
    run(log.append(records(1)))
    first = (tmp_path / LOG_FILE_NAME).stat().st_size
    run(log.append(records(1, 1)))
    run(log.append(records(1, 2)))
    log.close()
    path = tmp_path / LOG_FILE_NAME
    data = bytearray(path.read_bytes())
    data[first + 12] ^= 0xFF  # a byte inside the second batch's body
    path.write_bytes(bytes(data))
    log = LocalMetadataLog(tmp_path)
    assert [o for o, _ in log.read_from(0)] == [0]
    log.close()


def test_garbage_file_recovers_to_empty(tmp_path: Path) -> None:
    (tmp_path / LOG_FILE_NAME).write_bytes(os.urandom(100))
    log = LocalMetadataLog(tmp_path)
    assert log.next_offset == 0 and list(log.read_from(0)) == []
    log.close()


def test_failed_write_poisons_the_log(tmp_path: Path) -> None:
    log = LocalMetadataLog(tmp_path)
    run(log.append(records(1)))
    os.close(log._fd)  # make the next write fail
    with pytest.raises(OSError):
        run(log.append(records(1, 1)))
    with pytest.raises(MetadataLogError, match="failed earlier"):
        run(log.append(records(1, 2)))
    log._fd = -1
    log = LocalMetadataLog(tmp_path)
    assert log.next_offset == 1
    log.close()


# ----- QuorumController -----


async def start(path: Path, seed: int = 1) -> tuple[QuorumController, LocalMetadataLog]:
    log = LocalMetadataLog(path)
    controller = QuorumController(
        log, settings=ControllerSettings(default_num_partitions=2), rng=random.Random(seed)
    )
    await controller.load()
    return controller, log


async def bring_up_brokers(controller: QuorumController, n: int) -> None:
    for broker_id in range(1, n + 1):
        reg = await controller.register_broker(
            broker_id, str(uuid.uuid4()), [("PLAINTEXT", "127.0.0.1", 9091 + broker_id)], f"r{broker_id % 2}"
        )
        assert reg.error_code == 0 and reg.broker_epoch >= 0
        assert (await controller.unfence_broker(broker_id, reg.broker_epoch)).error_code == 0


def test_controller_end_to_end_and_restart(tmp_path: Path) -> None:
    async def scenario() -> MetadataImage:
        controller, log = await start(tmp_path)
        published: list[tuple[int, int]] = []
        controller.loader.register(lambda d, i: published.append((d.image.offset, i.offset)))
        await bring_up_brokers(controller, 3)
        reg = controller.image.brokers[1]
        assert reg.epoch == 0 and reg.listeners == (Listener("PLAINTEXT", "127.0.0.1", 9092),)

        (created,) = await controller.create_topics(
            [CreateTopicSpec("orders", 6, 3, configs={"retention.ms": "60000"})]
        )
        assert created.error_code == 0
        assert controller.image.topics["orders"].topic_id == created.topic_id
        (dry,) = await controller.create_topics([CreateTopicSpec("dry", 1, 1)], validate_only=True)
        assert dry.error_code == 0 and "dry" not in controller.image.topics
        (again,) = await controller.create_topics([CreateTopicSpec("orders", 1, 1)])
        assert again.error_code == 36

        (grown,) = await controller.create_partitions([CreatePartitionsSpec("orders", 8)])
        assert grown.error_code == 0 and len(controller.image.topics["orders"].partitions) == 8

        (altered,) = await controller.alter_configs(
            [AlterConfigsResource(TOPIC, "orders", {"retention.ms": "1000"})]
        )
        assert altered.error_code == 0
        (inc,) = await controller.incremental_alter_configs(
            [IncrementalAlterConfigsResource(TOPIC, "orders", [AlterConfigOp("segment.ms", 0, "5000")])]
        )
        assert inc.error_code == 0
        assert controller.image.topic_configs("orders") == {"retention.ms": "1000", "segment.ms": "5000"}

        p0 = controller.image.partition("orders", 0)
        leader = p0.leader
        epoch = controller.image.brokers[leader].epoch
        shrunk = await controller.alter_partition(
            leader, epoch,
            [AlterPartitionItem(created.topic_id, 0, p0.leader_epoch, p0.partition_epoch, [leader])],
        )
        assert shrunk.partitions[0].error_code == 0
        assert controller.image.partition("orders", 0).isr == (leader,)

        pids = await controller.allocate_producer_ids(2)
        assert (pids.error_code, pids.first_producer_id, pids.size) == (0, 0, 1000)
        pids = await controller.allocate_producer_ids(3)
        assert pids.first_producer_id == 1000

        assert (await controller.fence_broker(3)).error_code == 0
        assert all(p.leader != 3 for p in controller.image.topics["orders"].partitions.values())

        await controller.create_topics([CreateTopicSpec("gone", 1, 1)])
        (deleted,) = await controller.delete_topics([DeleteTopicSpec(name="gone")])
        assert deleted.error_code == 0 and "gone" not in controller.image.topics

        # Every committed operation was published once, in order, with no gaps.
        assert all(a < b for a, b in published)
        assert [prev for prev, _ in published[1:]] == [new for _, new in published[:-1]]
        image = controller.image
        log.close()
        return image

    before = run(scenario())

    async def restart() -> MetadataImage:
        controller, log = await start(tmp_path, seed=99)
        image = controller.image
        log.close()
        return image

    after = run(restart())
    assert after == before
    assert after.offset == before.offset


def test_restarted_controller_continues_offsets(tmp_path: Path) -> None:
    async def first() -> None:
        controller, log = await start(tmp_path)
        await bring_up_brokers(controller, 1)
        log.close()

    async def second() -> None:
        controller, log = await start(tmp_path)
        assert controller.image.brokers[1].epoch == 0
        # The broker process restarts: its old session is still unfenced.
        reg = await controller.register_broker(1, str(uuid.uuid4()), [("PLAINTEXT", "h", 1)])
        assert reg.error_code == 101
        await controller.fence_broker(1)
        reg = await controller.register_broker(1, str(uuid.uuid4()), [("PLAINTEXT", "h", 1)])
        assert reg.error_code == 0 and reg.broker_epoch == log.next_offset - 1
        assert reg.broker_epoch > 1
        log.close()

    run(first())
    run(second())


class FlakyLog:
    """A MetadataLog whose next append fails the way a test chooses."""

    publishes_commits = False

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.fail_with: BaseException | None = None
        self.delay = 0.0

    async def append(self, records: Sequence[bytes]) -> int:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        self.entries.extend(records)
        return len(self.entries) - 1

    def read_from(self, offset: int) -> Iterator[tuple[int, bytes]]:
        yield from list(enumerate(self.entries))[offset:]


def test_not_controller_propagates_and_changes_nothing() -> None:
    async def scenario() -> None:
        log = FlakyLog()
        controller = QuorumController(log, rng=random.Random(1))
        await bring_up_brokers(controller, 1)
        before = controller.image
        log.fail_with = NotControllerError("deposed")
        with pytest.raises(NotControllerError):
            await controller.create_topics([CreateTopicSpec("t", 1, 1)])
        assert controller.image is before
        log.fail_with = None
        (res,) = await controller.create_topics([CreateTopicSpec("t", 1, 1)])
        assert res.error_code == 0

    run(scenario())


def test_unknown_append_failure_stops_controller_until_reload() -> None:
    async def scenario() -> None:
        log = FlakyLog()
        controller = QuorumController(log, rng=random.Random(1))
        await bring_up_brokers(controller, 1)
        log.fail_with = OSError("disk gone")
        with pytest.raises(OSError):
            await controller.create_topics([CreateTopicSpec("t", 1, 1)])
        log.fail_with = None
        with pytest.raises(ControllerFailedError):
            await controller.create_topics([CreateTopicSpec("t", 1, 1)])
        await controller.load()
        (res,) = await controller.create_topics([CreateTopicSpec("t", 1, 1)])
        assert res.error_code == 0

    run(scenario())


def test_operations_are_serialized_and_survive_cancellation() -> None:
    async def scenario() -> None:
        log = FlakyLog()
        controller = QuorumController(log, rng=random.Random(1))
        await bring_up_brokers(controller, 1)
        log.delay = 0.01
        # Concurrent creates of one name: exactly one wins, because each op sees the image
        # left by the previous one.
        results = await asyncio.gather(
            *(controller.create_topics([CreateTopicSpec("same", 1, 1)]) for _ in range(5))
        )
        codes = sorted(r[0].error_code for r in results)
        assert codes == [0, 36, 36, 36, 36]
        # A caller that gives up mid-append does not leave the image behind the log.
        task = asyncio.ensure_future(controller.create_topics([CreateTopicSpec("late", 1, 1)]))
        await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.sleep(0.05)
        assert "late" in controller.image.topics
        assert controller.image.offset == len(log.entries) - 1

    run(scenario())


def test_listener_failure_does_not_fail_the_operation() -> None:
    async def scenario() -> None:
        controller = QuorumController(FlakyLog(), rng=random.Random(1))

        def broken(delta: MetadataDelta, image: MetadataImage) -> None:
            raise RuntimeError("listener bug")

        controller.loader.register(broken)
        res = await controller.register_broker(1, str(uuid.uuid4()), [])
        assert res.error_code == 0 and 1 in controller.image.brokers

    run(scenario())


def test_load_replays_records_written_by_others(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = LocalMetadataLog(tmp_path)
        await log.append([encode_record(no_op_record()), encode_record(no_op_record())])
        controller = QuorumController(log)
        image = await controller.load()
        assert image.offset == 1
        await log.append([encode_record(topic_record("x", uuid.UUID(int=3)))])
        image = await controller.load()  # catches up from offset 2 only
        assert image.offset == 2 and "x" in image.topics
        assert decode_record(dict(log.read_from(2))[2]).topic.name == "x"
        log.close()

    run(scenario())

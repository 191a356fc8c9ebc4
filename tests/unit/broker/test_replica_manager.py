"""ReplicaManager.apply: partitions come and go with the metadata; a deleted one's directory
is renamed away at once and removed from disk, and a removal cut short is finished at the
next start."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from odradek import storage
from odradek.broker.replica_manager import DELETE_SUFFIX, ReplicaManager
from odradek.controller.metadata import MetadataImage, PartitionRegistration
from odradek.controller.metadata.delta import LocalReplicaChanges
from odradek.storage.records import Record, encode_batch

TID = uuid.UUID(int=5)


def manager(log_dir: Path) -> ReplicaManager:
    return ReplicaManager(1, log_dir, lambda _: storage.LogConfig(), lambda _: 1)


def test_a_deleted_partition_leaves_the_disk_and_a_new_one_takes_its_name(
        tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    reg = PartitionRegistration(replicas=(1,), isr=(1,), leader=1, leader_epoch=0,
                                partition_epoch=0)
    led = LocalReplicaChanges(leaders={("t", 0): reg}, followers={}, deleted=set(),
                              topic_ids={"t": TID})
    gone = LocalReplicaChanges(leaders={}, followers={}, deleted={("t", 0)}, topic_ids={})

    async def run() -> None:
        rm = manager(log_dir)
        await rm.apply(led, MetadataImage.EMPTY)
        assert rm.get(("t", 0)) is not None and (log_dir / "t-0").is_dir()
        # Deleted and created again in one go: the new log does not meet the old files.
        await rm.apply(gone, MetadataImage.EMPTY)
        await rm.apply(led, MetadataImage.EMPTY)
        assert rm.get(("t", 0)) is not None and (log_dir / "t-0").is_dir()
        await rm.apply(gone, MetadataImage.EMPTY)
        assert rm.get(("t", 0)) is None and not (log_dir / "t-0").exists()
        while rm._removals:  # the removals run in threads
            await asyncio.sleep(0.01)
        rm.close()

    asyncio.run(run())
    assert sorted(p.name for p in log_dir.iterdir()) == []


def test_a_removal_cut_short_is_finished_at_the_next_start(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    leftover = log_dir / f"t-0.{uuid.uuid4().hex}{DELETE_SUFFIX}"
    leftover.mkdir(parents=True)
    (leftover / "00000000000000000000.log").write_bytes(b"x")
    (log_dir / "kept-0").mkdir()
    manager(log_dir).close()
    assert sorted(p.name for p in log_dir.iterdir()) == ["kept-0"]


def test_flush_ms_flushes_only_the_logs_that_have_it(tmp_path: Path) -> None:
    """flush_due visits the logs with a flush.ms, including one given it at run time, and
    flushes them once it has passed; the others keep their data unflushed (the default)."""
    now = [1_000_000]
    configs = {"timed": storage.LogConfig(flush_ms=100), "plain": storage.LogConfig()}
    rm = ReplicaManager(1, tmp_path, lambda topic: configs[topic], lambda _: 1,
                        now_ms=lambda: now[0])
    reg = PartitionRegistration(replicas=(1,), isr=(1,), leader=1, leader_epoch=0,
                                partition_epoch=0)
    changes = LocalReplicaChanges(leaders={("timed", 0): reg, ("plain", 0): reg},
                                  followers={}, deleted=set(),
                                  topic_ids={"timed": TID, "plain": uuid.UUID(int=6)})
    asyncio.run(rm.apply(changes, MetadataImage.EMPTY))
    batch = encode_batch([Record(0, value=b"v")])
    for tp in (("timed", 0), ("plain", 0)):
        p = rm.get(tp)
        assert p is not None
        p.append(batch, acks_all=False)
    timed, plain = rm.get(("timed", 0)), rm.get(("plain", 0))
    assert timed is not None and plain is not None
    rm.flush_due()
    assert timed.log.unflushed_messages == 1  # flush.ms has not passed yet
    now[0] += 100
    rm.flush_due()
    assert timed.log.unflushed_messages == 0 and plain.log.unflushed_messages == 1
    configs["plain"] = storage.LogConfig(flush_ms=50)
    rm.update_configs({"plain"})
    rm.flush_due()
    assert plain.log.unflushed_messages == 0
    rm.close()

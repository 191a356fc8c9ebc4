"""PartitionWatch: readers of many partitions are told which changed, once per change, and
leave nothing behind on the partitions when they go."""

from __future__ import annotations

from pathlib import Path

from odradek import storage
from odradek.broker.partition import Partition
from odradek.broker.partition_watch import PartitionWatch
from odradek.controller.metadata import PartitionRegistration
from odradek.storage.records import Record, encode_batch


def partition(path: Path, index: int) -> Partition:
    p = Partition("t", index, storage.PartitionLog.open(path / f"t-{index}",
                                                        storage.LogConfig()), 1)
    p.assign(PartitionRegistration(replicas=(1,), isr=(1,), leader=1, leader_epoch=0,
                                   partition_epoch=0), None)
    return p


def append(p: Partition) -> None:
    p.append(encode_batch([Record(0, value=b"v")]), acks_all=False)


def test_a_watch_hears_of_each_partitions_next_change_once(tmp_path: Path) -> None:
    a, b = partition(tmp_path, 0), partition(tmp_path, 1)
    watch: PartitionWatch[str] = PartitionWatch()
    woken: list[int] = []
    watch.on_change = lambda: woken.append(1)
    watch.watch("a", a)
    watch.watch("b", b)
    assert len(watch) == 2
    append(a)
    append(a)  # told once: the reader reads it, then watches it again
    assert watch.take() == {"a"} and woken == [1] and len(watch) == 1
    assert watch.take() == set()
    watch.watch("a", a)
    append(b)
    assert watch.take() == {"b"}
    watch.watch("b", b)
    b.delete_records(1)  # a log start move is a change too
    a.close()  # and a replica leaving
    assert watch.take() == {"a", "b"}


def test_a_closed_watch_leaves_nothing_on_its_partitions(tmp_path: Path) -> None:
    a = partition(tmp_path, 0)
    watch: PartitionWatch[str] = PartitionWatch()
    watch.watch("a", a)
    watch.close()
    assert not a._listeners
    append(a)
    assert watch.take() == set()


def test_watching_another_partition_under_a_key_forgets_the_first(tmp_path: Path) -> None:
    old, new = partition(tmp_path, 0), partition(tmp_path, 1)
    watch: PartitionWatch[str] = PartitionWatch()
    watch.watch("t-0", old)
    watch.watch("t-0", new)  # the replica was re-created
    assert not old._listeners
    append(old)
    assert watch.take() == set()
    append(new)
    assert watch.take() == {"t-0"}
    watch.watch("t-0", new)
    watch.unwatch("t-0")
    append(new)
    assert watch.take() == set() and not new._listeners


def test_two_readers_of_one_partition_are_both_told(tmp_path: Path) -> None:
    p = partition(tmp_path, 0)
    first: PartitionWatch[str] = PartitionWatch()
    second: PartitionWatch[tuple[str, int]] = PartitionWatch()
    first.watch("t-0", p)
    second.watch(("t", 0), p)
    second.mark(("u", 1))  # a reader may count a key changed by itself
    append(p)
    assert first.take() == {"t-0"} and second.take() == {("t", 0), ("u", 1)}

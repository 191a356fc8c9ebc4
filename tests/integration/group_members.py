"""Consumer group members as separate processes (any client: librdkafka, the Java
consumer), seen through the files they write, and the scenario the KIP-848 tests run
with them.

A member process is given an output path and writes: ``out`` ("partition offset value"
per record read, before committing it), ``out.commits`` ("partition offset" per record
committed), ``out.events`` ("assign|revoke|lost p p ...", then "closed") and
``out.assigned`` (its assignment now, replaced atomically).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient

from tests.integration.harness import wait_for

# A librdkafka member (group.protocol=consumer): reads, writes what it read, then commits it synchronously; logs its
# assignment changes. SIGTERM: commit and close (leaving the group).
LIBRDKAFKA_MEMBER = r"""
import os, signal, sys, time
from confluent_kafka import Consumer, KafkaException
bootstrap, topic, group, out_path = sys.argv[1:5]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
events = open(out_path + ".events", "a", buffering=1)
def on_assign(c, ps):
    events.write("assign " + " ".join(str(p.partition) for p in ps) + "\n")
def on_revoke(c, ps):
    events.write("revoke " + " ".join(str(p.partition) for p in ps) + "\n")
def on_lost(c, ps):
    events.write("lost " + " ".join(str(p.partition) for p in ps) + "\n")
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
out = open(out_path, "a", buffering=1)
commits = open(out_path + ".commits", "a", buffering=1)
while not stop:
    m = c.poll(0.2)
    if m is not None and not m.error():
        out.write(f"{m.partition()} {m.offset()} {m.value().decode()}\n")
        try:
            c.commit(message=m, asynchronous=False)
            commits.write(f"{m.partition()} {m.offset()}\n")
        except KafkaException as e:
            # The partition moved away meanwhile; its new owner reads it from the commit.
            print("commit failed:", e, file=sys.stderr, flush=True)
    with open(out_path + ".assigned.tmp", "w") as a:
        a.write(" ".join(str(tp.partition) for tp in c.assignment()))
    os.replace(out_path + ".assigned.tmp", out_path + ".assigned")  # never seen half-written
c.close()
events.write("closed\n")
"""


class Member:
    def __init__(self, argv: Sequence[str], out: Path, env: dict[str, str],
                 stop_file: bool = False) -> None:
        """``stop_file``: the member leaves once ``out.stop`` exists, else at SIGTERM."""
        self.out = out
        self.stop_file = stop_file
        self.proc = subprocess.Popen(list(argv), env=env)

    def _file(self, suffix: str) -> Path:
        return Path(f"{self.out}{suffix}")

    def assigned(self) -> set[int]:
        p = self._file(".assigned")
        return {int(x) for x in p.read_text().split()} if p.exists() else set()

    def events(self) -> list[tuple[str, set[int]]]:
        p = self._file(".events")
        if not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            kind, *ps = line.split()
            out.append((kind, {int(x) for x in ps}))
        return out

    def read(self) -> list[tuple[int, int, str]]:
        if not self.out.exists():
            return []
        rows = []
        for line in self.out.read_text().splitlines():
            p, o, v = line.split(" ", 2)
            rows.append((int(p), int(o), v))
        return rows

    def committed(self) -> dict[int, int]:
        p = self._file(".commits")
        last: dict[int, int] = {}
        if p.exists():
            for line in p.read_text().splitlines():
                part, off = map(int, line.split())
                last[part] = max(last.get(part, -1), off)
        return last

    def leave(self, timeout: float = 60) -> None:
        """Ask the member to commit, leave the group and exit; wait for it."""
        if self.stop_file:
            self._file(".stop").touch()
        else:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def produce(bootstrap: str, topic: str, start: int, n: int) -> set[str]:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    values = set()
    for i in range(start, start + n):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
        values.add(f"v{i}")
    assert p.flush(30) == 0
    return values


def only_assigned(events: list[tuple[str, set[int]]]) -> bool:
    """No partition was taken away (revoked or lost): an incremental rebalance."""
    return all(kind == "assign" for kind, _ in events)


def leave_then_kill(bootstrap: str, topic: str, group: str, partitions: int,
                    start: Callable[[int], Member], session_s: float,
                    describe: bool = True) -> None:
    """Three members of ``group`` (``start(i)``) share ``topic``'s ``partitions``; member 0
    leaves cleanly, member 1 is killed. Checks: the survivors take the others' partitions
    without giving any of theirs up; every record is read; a record is read twice only if
    member 1 read it after its last commit; the group's offsets end at the log end."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    expected = produce(bootstrap, topic, 0, 1200)
    members = [start(i) for i in range(3)]
    share = partitions // 3
    every = set(range(partitions))
    try:
        wait_for(lambda: all(len(m.assigned()) == share for m in members), 90,
                 f"three members with {share} partitions each")
        before = [m.assigned() for m in members]
        assert set().union(*before) == every
        marks = [len(m.events()) for m in members]
        if describe:
            # The group as ConsumerGroupDescribe and ListGroups v5 tell it.
            desc = admin.describe_consumer_groups([group])[group].result(30)
            assert len(desc.members) == 3
            assert str(desc.type).endswith("CONSUMER"), desc.type
            listed = {g.group_id: g for g in admin.list_consumer_groups().result(30).valid}
            assert str(listed[group].type).endswith("CONSUMER")

        # 1. Member 0 leaves cleanly: the others take its partitions and keep theirs.
        members[0].leave()
        wait_for(lambda: members[1].assigned() | members[2].assigned() == every, 30,
                 "members 1 and 2 to take member 0's share")
        for i in (1, 2):
            assert before[i] <= members[i].assigned()
            later = members[i].events()[marks[i]:]
            assert only_assigned(later), later
        expected |= produce(bootstrap, topic, 1200, 600)

        def all_read() -> bool:
            return {v for m in members for _, _, v in m.read()} >= expected

        wait_for(all_read, 60, "every record read")
        committed_before_kill = members[1].committed()
        assigned_before_kill = [m.assigned() for m in members]
        marks = [len(m.events()) for m in members]

        # 2. Member 1 is killed: after the session timeout member 2 takes its partitions.
        members[1].kill()
        expected |= produce(bootstrap, topic, 1800, 600)
        wait_for(lambda: members[2].assigned() == every, session_s + 30,
                 "member 2 to take every partition")
        assert assigned_before_kill[2] <= members[2].assigned()
        later = members[2].events()[marks[2]:]
        assert only_assigned(later), later
        wait_for(all_read, 60, "every record read after the kill")

        # Nothing lost; read twice only what member 1 read after its last commit.
        rows = [r for m in members for r in m.read()]
        assert {v for _, _, v in rows} >= expected
        seen: dict[tuple[int, int], int] = {}
        for p, o, _ in rows:
            seen[(p, o)] = seen.get((p, o), 0) + 1
        victim = assigned_before_kill[1]
        for (p, o), n in seen.items():
            if n > 1:
                assert p in victim and o > committed_before_kill.get(p, -1), (p, o, n)

        # The commits are kept: the group's offsets are at the end of every partition.
        members[2].leave()
        offsets = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)])[group].result(30)
        ends = dict.fromkeys(range(partitions), 0)
        for p, o, _ in rows:
            ends[p] = max(ends[p], o + 1)
        assert {tp.partition: tp.offset for tp in offsets.topic_partitions} == ends
    finally:
        for m in members:
            m.kill()

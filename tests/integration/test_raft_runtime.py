"""Three controller processes running Raft over real gRPC on 127.0.0.1.

Each process is ``python -m odradek.controller.raft_runtime.devnode`` (RaftMetadataLog +
QuorumController on one grpc.aio server), driven through JSON lines on stdin/stdout and
killed with SIGKILL by PID. One cluster goes through: election, create topic, leader kill and
failover (timed), rejoin of the killed node, catch-up of a far-behind node from a snapshot,
graceful handover, and a restart of all three with every record preserved.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import free_port, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TICK_MS = 50  # election timeout 10 ticks: 0.5-1.0 s
SNAPSHOT_EVERY = 20  # records


class ControllerProcess:
    def __init__(self, node_id: int, voters: str, base: Path) -> None:
        self.node_id = node_id
        self.voters = voters
        self.dir = base / f"raft-{node_id}"
        self.log_path = base / f"node-{node_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._answers: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cond = threading.Condition()
        self._next_id = 0

    def start(self) -> ControllerProcess:
        env = dict(os.environ, PYTHONPATH=str(REPO), GRPC_VERBOSITY="ERROR")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "odradek.controller.raft_runtime.devnode", "--id",
                 str(self.node_id), "--voters", self.voters, "--dir", str(self.dir),
                 "--tick-ms", str(TICK_MS), "--snapshot-every", str(SNAPSHOT_EVERY)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=REPO)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def wait_started(self, timeout: float = 30.0) -> None:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node {self.node_id} did not start:\n{self.logs()}") from None
        assert event.get("event") == "started", event

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            msg = json.loads(line)
            if "event" in msg:
                self._events.put(msg)
                continue
            with self._cond:
                self._answers[msg["id"]] = msg
                self._cond.notify_all()

    def call(self, op: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        with self._cond:
            self._next_id += 1
            request_id = self._next_id
        self.proc.stdin.write(json.dumps({"id": request_id, "op": op, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        with self._cond:
            while request_id not in self._answers:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"node {self.node_id}: no answer to {op}:\n"
                                         f"{self.logs()}")
                self._cond.wait(min(remaining, 0.1))
            return self._answers.pop(request_id)

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()

    def stop(self) -> None:
        assert self.proc is not None
        self.call("stop")
        assert self.proc.wait(timeout=15) == 0, self.logs()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def leader_of(nodes: dict[int, ControllerProcess], timeout: float = 10.0) -> int:
    def agreed() -> int | None:
        statuses = {i: n.status() for i, n in nodes.items() if n.alive}
        leaders = [i for i, s in statuses.items() if s["is_leader"]]
        if len(leaders) == 1 and all(s["leader_id"] == leaders[0] for s in statuses.values()):
            return leaders[0]
        return None

    return wait_for(agreed, timeout, "a leader agreed on by every live node", interval=0.02)


def converged(nodes: dict[int, ControllerProcess], timeout: float = 15.0) -> dict[str, Any]:
    """Wait until every live node has the same image; return it."""
    last: list[dict[str, Any]] = []

    def same() -> bool:
        last[:] = [n.status()["image"] for n in nodes.values() if n.alive]
        return all(image == last[0] for image in last)

    wait_for(same, timeout, "the images to converge", interval=0.02)
    return last[0]


TOPIC_ALREADY_EXISTS = 36


def create_topic(nodes: dict[int, ControllerProcess], name: str, partitions: int = 1,
                 rf: int = 3, timeout: float = 20.0) -> dict[str, Any]:
    """Create through the leader. A leadership change in between (a loaded machine can
    delay heartbeats past CheckQuorum) is retried on the new leader; a retry may find the
    first attempt committed after all, which is the documented ambiguity."""
    deadline = time.monotonic() + timeout
    retried = False
    while True:
        live = {i: n for i, n in nodes.items() if n.alive}
        answer = live[leader_of(live)].call("create_topic", name=name, partitions=partitions,
                                            replication_factor=rf)
        if answer["ok"]:
            ok = answer["error_code"] == 0 or (
                retried and answer["error_code"] == TOPIC_ALREADY_EXISTS)
            assert ok, answer
            return answer
        assert answer["error"] == "not_controller", answer
        assert time.monotonic() < deadline, answer
        retried = True
        time.sleep(0.2)


def test_controller_quorum_over_grpc(tmp_path: Path) -> None:
    ports = {i: free_port() for i in (1, 2, 3)}
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in ports.items())
    nodes = {i: ControllerProcess(i, voters, tmp_path) for i in ports}
    timings: dict[str, float] = {}
    try:
        for n in nodes.values():
            n.start()
        for n in nodes.values():
            n.wait_started()

        # --- election, and a topic through the leader
        t0 = time.monotonic()
        leader = leader_of(nodes)
        timings["first election"] = time.monotonic() - t0
        for b in (1, 2, 3):
            assert nodes[leader].call("register_broker", broker_id=b)["ok"]
        create_topic(nodes, "t0", partitions=3)
        follower = next(i for i in nodes if i != leader)
        refused = nodes[follower].call("create_topic", name="nope", partitions=1,
                                       replication_factor=1)
        assert refused["error"] == "not_controller" and refused["leader_id"] == leader
        image = converged(nodes)
        assert "t0" in image["topics"] and "nope" not in image["topics"]

        # --- kill -9 the leader; time until the new leader commits a record
        old = leader
        nodes[old].kill()
        killed_at = time.monotonic()
        survivors = {i: n for i, n in nodes.items() if i != old}

        def created() -> int | None:
            for i, n in survivors.items():
                answer = n.call("create_topic", name="t1", partitions=1, replication_factor=2)
                if answer["ok"]:
                    assert answer["error_code"] == 0, answer
                    return i
            return None

        leader = wait_for(created, 10, "a new leader to accept create-topic", interval=0.02)
        failover = time.monotonic() - killed_at
        timings["failover (kill -> first commit)"] = failover
        assert leader != old
        assert failover < 5.0, failover

        # --- the killed node restarts on the same dir and catches up
        nodes[old].start().wait_started()
        image = converged(nodes)
        assert {"t0", "t1"} <= set(image["topics"])

        # --- a far-behind node catches up from a snapshot
        leader = leader_of(nodes)
        lagging = next(i for i in nodes if i != leader)
        behind_at = nodes[lagging].status()["last_index"]
        nodes[lagging].kill()
        for k in range(10):
            create_topic(nodes, f"s{k}", partitions=2, rf=2)
        leader_status = nodes[leader].status()
        # The leader no longer has the entries the lagging node needs: only a snapshot helps.
        assert leader_status["snapshot_index"] > behind_at, (leader_status, behind_at)
        t0 = time.monotonic()
        nodes[lagging].start().wait_started()
        image = converged(nodes)
        timings["snapshot catch-up (start -> converged)"] = time.monotonic() - t0
        assert nodes[lagging].status()["snapshots_installed"] >= 1
        assert {f"s{k}" for k in range(10)} <= set(image["topics"])

        # --- graceful stop of the leader hands over without an election timeout
        leader = leader_of(nodes)
        t0 = time.monotonic()
        nodes[leader].stop()
        rest = {i: n for i, n in nodes.items() if i != leader}
        leader_of(rest)
        timings["graceful handover (stop -> new leader)"] = time.monotonic() - t0

        # --- all three down (the rest by SIGKILL) and back: every record is kept
        before = converged(rest)
        for n in nodes.values():
            n.kill()
        for n in nodes.values():
            n.start()
        for n in nodes.values():
            n.wait_started()
        leader = leader_of(nodes)
        after = converged(nodes)
        assert after == before
        create_topic(nodes, "after-restart")
        assert "after-restart" in converged(nodes)["topics"]
    except BaseException:
        for n in nodes.values():
            print(f"--- node {n.node_id} log (tail) ---\n{n.logs()}")
        raise
    finally:
        for n in nodes.values():
            n.kill()
    print()
    for what, seconds in timings.items():
        print(f"raft runtime: {what}: {seconds * 1000:.0f} ms")

"""RaftMetadataLog: record offsets, apply-before-answer, leadership errors, snapshots,
observers and restarts, on in-process clusters (real storage and driver, loopback network)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from odradek.controller.metadata import MetadataImage, MetadataLoader, decode_record, encode_record
from odradek.controller.metadata.diff import replay
from odradek.controller.metadata.records import topic_record
from odradek.controller.metadata.requests import CreateTopicSpec, NotControllerError
from odradek.controller.raft import EntryKind
from odradek.controller.raft_runtime import (
    OffsetCompactedError,
    RaftNotControllerError,
)
from odradek.controller.raft_runtime.metadata_log import DataDirInUseError
from tests.unit.controller.raft_runtime.rt_cluster import (
    Cluster,
    broker_listener,
    incarnation,
    retry,
    wait_for,
)


def run(coro):
    return asyncio.run(coro)


def topics(start: int, n: int) -> list[bytes]:
    return [encode_record(topic_record(f"t{start + k}", uuid.UUID(int=start + k + 1)))
            for k in range(n)]


def read_all(node) -> list[tuple[int, bytes]]:
    return list(node.log.read_from(0))


def image_from_log(node) -> MetadataImage:
    return replay((o, decode_record(r)) for o, r in node.log.read_from(0))


async def setup_brokers(cluster: Cluster, ids=(1, 2, 3)) -> None:
    for b in ids:
        leader = await cluster.leader()
        reg = await retry(lambda b=b: cluster_leader_op(
            cluster, lambda c: c.register_broker(b, incarnation(b), broker_listener(b))))
        await retry(lambda b=b, reg=reg: cluster_leader_op(
            cluster, lambda c: c.unfence_broker(b, reg.broker_epoch)))
        assert leader is not None


async def cluster_leader_op(cluster: Cluster, op):
    leader = await cluster.leader()
    return await op(leader.controller)


# ----- offsets -----


def test_offsets_count_records_and_skip_noop_entries(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=1)
        await c.start()
        node = await c.leader()
        assert await node.log.append(topics(0, 2)) == 1
        assert await node.log.append(topics(2, 1)) == 2
        assert await node.log.append(topics(3, 3)) == 5
        assert node.log.committed_offset == 5
        # A restart elects the node again: a new term, a new NOOP entry, no new offsets.
        await c.stop()
        await c.start()
        node = await c.leader()
        assert node.log.committed_offset == 5 and node.image.offset == 5
        kinds = [e.kind for e in node.log.driver.node.log.entries]
        assert kinds.count(EntryKind.NOOP) == 2
        assert await node.log.append(topics(6, 1)) == 6
        assert [o for o, _ in read_all(node)] == list(range(7))
        assert [o for o, _ in node.log.read_from(4)] == [4, 5, 6]  # from inside a batch
        assert list(node.log.read_from(7)) == []
        assert sorted(node.image.topics) == sorted(f"t{k}" for k in range(7))
        await c.stop()

    run(main())


def test_offsets_agree_on_every_node_across_leader_changes(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        n = 0
        for _ in range(3):
            leader = await c.leader()
            for _ in range(2):
                last = await retry(lambda n=n: c_leader_append(c, topics(n, 2)))
                n += 2
                assert last == n - 1
            # Hand over: the new leader's NOOP must not shift anyone's offsets.
            others = [i for i in c.nodes if c.nodes[i] is not leader]
            leader.log.driver.transfer_leadership(others[0])
            await wait_for(lambda leader=leader: not leader.log.is_leader, 5, "no handover")
        image = await c.converged()
        assert image.offset == n - 1
        logs = [read_all(node) for node in c.nodes.values()]
        assert all(x == logs[0] for x in logs)
        assert [o for o, _ in logs[0]] == list(range(n))
        await c.stop()

    run(main())


async def c_leader_append(c: Cluster, records: list[bytes]) -> int:
    leader = await c.leader()
    return await leader.log.append(records)


# ----- applying, leadership -----


def test_every_node_publishes_before_the_leader_answers(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        seen: dict[int, list[int]] = {i: [] for i in c.nodes}
        for i, node in c.nodes.items():
            node.controller.loader.register(lambda d, img, i=i: seen[i].append(img.offset))
        leader = await c.leader()
        leader_id = next(i for i, n in c.nodes.items() if n is leader)
        last = await leader.log.append(topics(0, 3))
        # The loader had published the batch before append() returned.
        assert seen[leader_id] == [last]
        await c.converged()
        assert all(s == [last] for s in seen.values())
        await c.stop()

    run(main())


def test_a_controller_operation_feeds_the_loader_once(tmp_path: Path) -> None:
    """The Raft log applies what commits on every node, the leader included: the quorum
    controller must not hand its own records to the loader a second time."""
    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        await setup_brokers(c)
        leader = await c.leader()
        batches: list[int] = []
        real = leader.controller.loader.handle_commit

        def counting(records):  # type: ignore[no-untyped-def]
            records = list(records)
            batches.append(records[0][0])
            return real(records)

        leader.controller.loader.handle_commit = counting  # type: ignore[method-assign]
        try:
            before = leader.controller.image.offset
            [result] = await leader.controller.create_topics([CreateTopicSpec("once", 2, 3)])
            assert result.error_code == 0 and leader.controller.image.offset > before
        finally:
            leader.controller.loader.handle_commit = real  # type: ignore[method-assign]
        # Once, by the Raft log's apply: not again by the controller after its append.
        assert len(batches) == 1, batches
        await c.stop()

    run(main())


def test_followers_refuse_appends_and_name_the_leader(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        leader = await c.leader()
        leader_id = next(i for i, n in c.nodes.items() if n is leader)
        await wait_for(lambda: all(n.log.leader_id == leader_id for n in c.nodes.values()), 5,
                       "followers do not know the leader")
        follower = next(n for n in c.nodes.values() if n is not leader)
        with pytest.raises(RaftNotControllerError) as err:
            await follower.log.append(topics(0, 1))
        assert err.value.leader_id == leader_id
        assert err.value.leader_address == c.voters[leader_id]
        assert follower.log.leader_address == c.voters[leader_id]
        # Through the controller it is the NotControllerError brokers turn into error 41.
        with pytest.raises(NotControllerError):
            await follower.controller.register_broker(1, incarnation(1), broker_listener(1))
        assert follower.controller._failure is None  # retriable, not a broken log
        await c.stop()

    run(main())


def test_leader_change_callbacks_and_graceful_handover(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3, tick_ms=50)
        await c.start()
        calls: dict[int, int] = dict.fromkeys(c.nodes, 0)
        for i, node in c.nodes.items():
            node.log.on_leader_change(lambda i=i: calls.__setitem__(i, calls[i] + 1))
        leader = await c.leader()
        leader_id = next(i for i, n in c.nodes.items() if n is leader)
        await c.converged()
        await wait_for(lambda: all(calls.values()), 5, "callbacks not called")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await c.stop(leader_id)  # graceful: hands over before stopping
        new = await c.leader(timeout=5)
        took = loop.time() - t0
        # Below the shortest election timeout (10 ticks x 50 ms): nobody had to notice that
        # the old leader was gone.
        assert took < 0.45, took
        assert await new.log.append(topics(0, 1)) >= 0
        await c.stop()

    run(main())


def test_handover_skips_a_voter_that_just_stopped(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # issue 17: a cluster stopped one node at a time; the leader, stopped right after a
    # follower, handed over to that follower (heard from a moment before) and waited out
    # its transfer timeout. It must pick the voter that is still up.
    async def main() -> None:
        c = Cluster(tmp_path, voters=3, tick_ms=50)
        await c.start()
        leader = await c.leader()
        leader_id = next(i for i, n in c.nodes.items() if n is leader)
        await c.converged()
        gone, up = sorted(i for i in c.nodes if i != leader_id)  # ties go to the lower id
        await c.stop(gone)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await c.stop(leader_id)
        took = loop.time() - t0
        # The handover, not the transfer timeout (one election timeout, 10 x 50 ms).
        assert took < 0.45, took
        # (It leads alone now: a quorum of one of three voters elects nobody else.)
        await wait_for(lambda: c.nodes[up].log.is_leader, 1, "the voter still up leads")
        await c.stop()

    with caplog.at_level("INFO", logger="odradek.raft"):
        run(main())
    assert "did not finish" not in caplog.text
    assert "handing leadership to node" in caplog.text


def test_handover_finds_voters_not_heard_from_lately(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # issue 17: "no live voter to hand leadership to" with two voters up (the leader had
    # been too busy stopping its broker side to read their answers lately).
    async def main() -> None:
        c = Cluster(tmp_path, voters=3, tick_ms=50)
        await c.start()
        leader = await c.leader()
        leader_id = next(i for i, n in c.nodes.items() if n is leader)
        await c.converged()
        leader.log.driver.last_heard.clear()
        await c.stop(leader_id)
        await c.leader(timeout=0.45)  # a handover: nobody waits out an election timeout
        await c.stop()

    with caplog.at_level("INFO", logger="odradek.raft"):
        run(main())
    assert "handing leadership to node" in caplog.text


def test_lost_leadership_fails_pending_appends_with_not_controller(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        leader = await c.leader()
        leader_id = next(i for i, n in c.nodes.items() if n is leader)
        await c.converged()
        c.net.isolated.add(leader_id)  # the proposal can never commit
        pending = asyncio.ensure_future(leader.log.append(topics(0, 1)))
        with pytest.raises(RaftNotControllerError):
            await asyncio.wait_for(pending, 5)  # CheckQuorum steps it down
        c.net.isolated.clear()
        await c.leader()
        await c.converged()
        await c.stop()

    run(main())


# ----- snapshots -----


def test_lagging_node_catches_up_from_a_snapshot(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3, snapshot_interval_records=5)
        await c.start()
        await setup_brokers(c)
        leader = await c.leader()
        lagging = next(i for i, n in c.nodes.items() if n is not leader)
        await c.converged()
        c.net.isolated.add(lagging)
        for k in range(8):
            res = await retry(lambda k=k: cluster_leader_op(
                c, lambda ctl: ctl.create_topics([CreateTopicSpec(f"s{k}", 2, 2)])))
            assert res[0].error_code == 0
        leader = await c.leader()
        await wait_for(lambda: leader.log.driver.node.log.snapshot_index > 10, 5, "no snapshot")
        c.net.isolated.clear()
        image = await c.converged()
        node = c.nodes[lagging]
        assert node.log.snapshots_installed >= 1
        assert len(image.topics) == 8 and node.image == image
        # Broker epochs are record offsets and must have survived the snapshot.
        assert node.image.brokers == leader.image.brokers
        # read_from(0) on the node serves the snapshot as records, then what followed.
        assert image_from_log(node) == image
        with pytest.raises(OffsetCompactedError):
            node.log.read_from(1)
        # It keeps following normally afterwards.
        await retry(lambda: cluster_leader_op(
            c, lambda ctl: ctl.create_topics([CreateTopicSpec("after", 1, 1)])))
        assert "after" in (await c.converged()).topics
        await c.stop()

    run(main())


def test_restart_rebuilds_the_image_from_snapshot_and_log(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        await setup_brokers(c)
        for k in range(3):
            await retry(lambda k=k: cluster_leader_op(
                c, lambda ctl: ctl.create_topics([CreateTopicSpec(f"a{k}", 2, 3)])))
        await c.converged()
        for node in c.nodes.values():
            await node.log.snapshot()
        for k in range(2):
            await retry(lambda k=k: cluster_leader_op(
                c, lambda ctl: ctl.create_topics([CreateTopicSpec(f"b{k}", 1, 1)])))
        before = await c.converged()
        await c.stop(graceful=False)
        await c.start()
        after = await c.converged()
        assert after == before
        assert all(n.log.snapshot_index > 0 for n in c.nodes.values())
        await c.leader()
        await c.stop()

    run(main())


def test_snapshot_every_n_records(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=1, snapshot_interval_records=4)
        await c.start()
        node = await c.leader()
        for k in range(5):
            await node.log.append(topics(2 * k, 2))
        await wait_for(lambda: node.log.snapshot_index > 0, 5, "no snapshot")
        assert node.log.driver.node.log.snapshot is not None
        # Raft entries up to the snapshot are gone from memory; records read back anyway.
        assert image_from_log(node) == node.image
        await c.stop()

    run(main())


# ----- observers, misc -----


def test_observer_follows_the_log_and_never_leads(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3, observers=[4])
        await c.start()
        observer = c.nodes[4]
        assert observer.log.is_observer
        for k in range(3):
            await retry(lambda k=k: c_leader_append(c, topics(2 * k, 2)))
        image = await c.converged()
        assert observer.image == image and image.offset == 5
        with pytest.raises(RaftNotControllerError, match="observer"):
            await observer.log.append(topics(10, 1))
        # Knock the leader out: a voter takes over, never the observer.
        leader = await c.leader()
        leader_id = next(i for i, n in c.nodes.items() if n is leader)
        await c.stop(leader_id, graceful=False)
        await c.leader(exclude=[4])
        assert not observer.log.is_leader and observer.log.driver.node.vote is None
        await c.stop()

    run(main())


def test_data_dir_is_locked_against_a_second_process(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=1)
        await c.start()
        with pytest.raises(DataDirInUseError):
            from odradek.controller.raft_runtime import RaftMetadataLog

            RaftMetadataLog(c.settings(1), MetadataLoader())
        await c.stop()

    run(main())


def test_new_leader_refuses_an_operation_computed_before_it_caught_up(tmp_path: Path) -> None:
    """A new leader's image may lack entries of the previous term that only its NOOP commits.
    An operation computed on that image must not be appended (it could contradict them)."""
    from odradek.controller.raft import AppendEntriesRequest, AppendEntriesResponse, Role

    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        old = await c.leader()
        old_id = next(i for i, n in c.nodes.items() if n is old)
        base = (await c.converged()).offset
        # Followers get entry E but the old leader never hears that they did: E stays
        # uncommitted, then the old leader dies.
        c.net.drop = lambda m: isinstance(m, AppendEntriesResponse) and m.dst == old_id
        target = old.log.driver.node.log.last_index + 1
        doomed = asyncio.ensure_future(old.log.append(topics(0, 1)))
        await wait_for(lambda: all(n.log.driver.node.log.last_index >= target
                                   for n in c.nodes.values()), 5, "E not replicated")
        await c.stop(old_id, graceful=False)
        with pytest.raises(NotControllerError):
            await doomed
        # The next leader cannot commit (its appends are lost) until we allow it.
        c.net.drop = lambda m: isinstance(m, AppendEntriesRequest)
        await wait_for(lambda: any(n.log.driver.role is Role.LEADER for n in c.nodes.values()),
                       5, "no new Raft leader")
        new = next(n for n in c.nodes.values() if n.log.driver.role is Role.LEADER)
        assert not new.log.is_leader and new.image.offset == base  # E not applied yet
        pending = asyncio.ensure_future(new.log.append(topics(1, 1)))  # computed on `base`
        await asyncio.sleep(0.05)
        assert not pending.done()  # waiting for the earlier terms to be applied
        c.net.drop = None
        with pytest.raises(RaftNotControllerError, match="still applying") as err:
            await pending
        assert err.value.leader_id == next(i for i, n in c.nodes.items() if n is new)
        assert "t0" in new.image.topics and "t1" not in new.image.topics
        # Recomputed on the complete image, it goes through.
        assert await new.log.append(topics(1, 1)) == base + 2
        await c.converged()
        await c.stop()

    run(main())

"""Replacing a dead controller (KIP-853) on an in-process cluster: real storage and driver,
loopback network. A new node starts as an observer knowing only the static voters; the leader
adds it, the dead voter is removed, and the metadata written before and after is everywhere."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from odradek.controller.metadata import MetadataLoader
from odradek.controller.quorum import QuorumController
from odradek.controller.raft import MembershipChangeRefused, RefusalReason
from odradek.controller.raft_runtime import RaftMetadataLog, RaftNotControllerError, RaftSettings
from tests.unit.controller.raft_runtime.rt_cluster import Cluster, Node, wait_for
from tests.unit.controller.raft_runtime.test_rt_metadata_log import topics


def run(coro):
    return asyncio.run(coro)


async def start_joiner(c: Cluster, node_id: int) -> Node:
    """A controller that is not in controller.quorum.voters: it runs as an observer."""
    settings = RaftSettings(node_id=node_id, voters=c.voters,
                            observers={node_id: f"127.0.0.1:{1000 + node_id}"},
                            data_dir=c.base / f"raft-{node_id}", tick_ms=c.tick_ms)
    loader = MetadataLoader()
    mlog = RaftMetadataLog(settings, loader, transport=c.net.transport(node_id),
                           rng=random.Random(node_id))
    node = Node(mlog, QuorumController(mlog, loader=loader, rng=random.Random(node_id)))
    c.nodes[node_id] = node
    c.net.nodes[node_id] = mlog
    await mlog.start()
    return node


async def leader_append(c: Cluster, records: list[bytes], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        leader = await c.leader(timeout)
        try:
            await leader.log.append(records)
            return
        except RaftNotControllerError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


def test_replace_a_dead_controller(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        await leader_append(c, topics(0, 3))
        joiner = await start_joiner(c, 4)
        assert joiner.log.is_observer
        # 3 dies for good; the quorum {1,2,3} keeps going on 1 and 2.
        await c.stop(3, graceful=False)
        c.net.isolated.add(3)
        await leader_append(c, topics(3, 2))
        leader = await c.leader()
        with pytest.raises(MembershipChangeRefused) as err:
            await leader.log.add_voter(1, "127.0.0.1:1001", timeout_s=1)
        assert err.value.reason is RefusalReason.DUPLICATE_VOTER
        await leader.log.add_voter(4, "127.0.0.1:1004", timeout_s=10)
        assert not joiner.log.is_observer
        leader = await c.leader()
        assert set(leader.log.voter_endpoints) == {1, 2, 3, 4}
        assert leader.log.voter_endpoints[4] == "127.0.0.1:1004"
        await leader.log.remove_voter(3, timeout_s=10)
        with pytest.raises(MembershipChangeRefused) as err:
            await leader.log.remove_voter(3, timeout_s=1)
        assert err.value.reason is RefusalReason.VOTER_NOT_FOUND
        await leader_append(c, topics(5, 2))
        await wait_for(lambda: all(set(n.log.voter_endpoints) == {1, 2, 4}
                                   for n in c.nodes.values()), 5, "voters {1,2,4} everywhere")
        image = await c.converged()
        assert {f"t{k}" for k in range(7)} <= set(image.topics)
        desc = leader.log.describe()
        assert [v.node_id for v in desc.voters] == [1, 2, 4]
        # Losing one more voter leaves 2 of {1,2,4}: still a majority.
        victim = leader.log.node_id if leader.log.node_id != 4 else 1
        await c.stop(victim, graceful=False)
        c.net.isolated.add(victim)
        await leader_append(c, topics(7, 1), timeout=10)
        image = await c.converged(10)
        assert "t7" in image.topics
        # The new voter keeps its membership across a restart (it is in its log).
        await c.stop(4)
        await start_joiner(c, 4)
        await wait_for(lambda: not c.nodes[4].log.is_observer, 5, "node 4 a voter after restart")
        await c.stop()

    run(main())


def test_removing_the_active_controller_hands_over(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        await leader_append(c, topics(0, 1))
        old = await c.leader()
        await old.log.remove_voter(old.log.node_id, timeout_s=10)
        new = await c.leader(exclude=[old.log.node_id])
        assert new.log.node_id != old.log.node_id
        await wait_for(lambda: not old.log.is_leader and old.log.is_observer, 5,
                       "the removed controller steps down")
        await leader_append(c, topics(1, 1))
        # The removed node is neither a voter nor an observer: nothing is replicated to it.
        await c.stop(old.log.node_id)
        image = await c.converged()
        assert {"t0", "t1"} <= set(image.topics)
        # The removed node is no longer asked for votes or replicated to.
        assert old.log.node_id not in new.log.voter_endpoints
        await c.stop()

    run(main())


def test_refusals_from_a_follower_and_for_the_only_voter(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=1)
        await c.start()
        leader = await c.leader()
        with pytest.raises(MembershipChangeRefused) as err:
            await leader.log.remove_voter(1, timeout_s=1)
        assert err.value.reason is RefusalReason.NOT_SINGLE_CHANGE
        # A node that is not replicated to cannot catch up: the add times out, refused.
        with pytest.raises(MembershipChangeRefused) as err:
            await leader.log.add_voter(9, "127.0.0.1:1", timeout_s=0.3)
        assert err.value.reason is RefusalReason.NOT_CAUGHT_UP
        assert leader.log.voter_endpoints.keys() == {1}
        await c.stop()

    run(main())


def test_an_observing_controller_catches_up_before_it_is_added(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        await leader_append(c, topics(0, 3))
        joiner = await start_joiner(c, 4)
        leader = await c.leader()
        # Not asked: nothing is replicated to it.
        await asyncio.sleep(0.2)
        assert joiner.image.offset == -1
        await leader.log.observe(4, "127.0.0.1:1004")
        await c.converged()
        assert joiner.log.is_observer and {"t0", "t1", "t2"} <= set(joiner.image.topics)
        assert [o.node_id for o in leader.log.describe().observers] == [4]
        await c.stop()

    run(main())


def test_directory_ids_name_voters(tmp_path: Path) -> None:
    """AddRaftVoter's directory id must be the one the observer told (its meta.properties);
    it is recorded with the voter, and RemoveRaftVoter must name it."""
    mine, other = "J8aAPcfLQt2bqs1JT_rMgQ", "AQIDBAUGBwgJCgsMDQ4PEA"

    async def main() -> None:
        c = Cluster(tmp_path, voters=3)
        await c.start()
        await leader_append(c, topics(0, 1))
        await start_joiner(c, 4)
        leader = await c.leader()
        # The loopback network runs no Observe loop: tell the leader as the RPC would.
        await leader.log.observe(4, "127.0.0.1:1004", mine)
        desc = leader.log.describe()
        assert [(o.node_id, o.directory_id) for o in desc.observers] == [(4, mine)]
        with pytest.raises(MembershipChangeRefused) as err:
            await leader.log.add_voter(4, "127.0.0.1:1004", 5, other)
        assert err.value.reason is RefusalReason.DIRECTORY_MISMATCH
        assert "runs on directory" in str(err.value)
        # A node that never told its directory cannot be added under one.
        with pytest.raises(MembershipChangeRefused) as err:
            await leader.log.add_voter(9, "127.0.0.1:1", 0.3, other)
        assert "has not asked to observe" in str(err.value)
        await leader.log.add_voter(4, "127.0.0.1:1004", 10, mine)
        desc = leader.log.describe()
        assert [(v.node_id, v.directory_id) for v in desc.voters] == [
            (1, ""), (2, ""), (3, ""), (4, mine)]
        for wrong in ("", other):
            with pytest.raises(MembershipChangeRefused) as err:
                await leader.log.remove_voter(4, 1, wrong)
            assert err.value.reason is RefusalReason.VOTER_NOT_FOUND
        # Static voters have none recorded: any directory id names them.
        await leader.log.remove_voter(3, 10, other)
        await leader.log.remove_voter(4, 10, mine)
        leader = await c.leader()
        assert set(leader.log.voter_endpoints) == {1, 2}
        await c.stop()

    run(main())

"""The gRPC edges: the servicer's status codes, DescribeQuorum, and the per-peer transport
(queue-full drops, a dead peer not delaying a live one). Real grpc.aio on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import grpc
import pytest

from odradek.controller.metadata import MetadataLoader, encode_record
from odradek.controller.metadata.records import no_op_record
from odradek.controller.raft import Heartbeat, HeartbeatResponse, InstallSnapshotRequest, Snapshot
from odradek.controller.raft.messages import SnapshotMeta
from odradek.controller.raft_runtime import (
    SERVER_OPTIONS,
    GrpcTransport,
    RaftMetadataLog,
    RaftSettings,
)
from odradek.controller.rpc import raft_pb2 as pb
from odradek.controller.rpc import raft_pb2_grpc
from tests.integration.harness import free_port


def run(coro):
    return asyncio.run(coro)


class Collector(raft_pb2_grpc.RaftServiceServicer):
    def __init__(self) -> None:
        self.batches: list[tuple[float, pb.RaftMessageBatch]] = []

    async def Send(self, request, context):  # noqa: N802
        self.batches.append((time.monotonic(), request))
        return pb.Ack()


async def serve(servicer_adder) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    servicer_adder(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def test_servicer_answers_with_explicit_status_codes(tmp_path: Path) -> None:
    async def main() -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        port = server.add_insecure_port("127.0.0.1:0")
        settings = RaftSettings(node_id=1, voters={1: f"127.0.0.1:{port}"},
                                observers={5: "127.0.0.1:1"}, data_dir=tmp_path, tick_ms=10,
                                cluster_id="c1")
        mlog = RaftMetadataLog(settings, MetadataLoader())
        mlog.add_to_server(server)
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = raft_pb2_grpc.RaftServiceStub(channel)

            async def code(batch: pb.RaftMessageBatch) -> grpc.StatusCode:
                try:
                    await stub.Send(batch, timeout=5)
                except grpc.aio.AioRpcError as exc:
                    assert exc.details(), "errors must say what went wrong"
                    return exc.code()
                return grpc.StatusCode.OK

            def hb(src: int = 5, dst: int = 1) -> pb.RaftMessage:
                return pb.RaftMessage(src=src, dst=dst, term=0,
                                      heartbeat_response=pb.HeartbeatResponse())

            assert await code(pb.RaftMessageBatch(messages=[hb()])) == grpc.StatusCode.UNAVAILABLE
            await mlog.start()
            assert await code(pb.RaftMessageBatch(cluster_id="c1", messages=[hb()])) == (
                grpc.StatusCode.OK)
            assert await code(pb.RaftMessageBatch(messages=[hb()])) == grpc.StatusCode.OK
            assert await code(pb.RaftMessageBatch(cluster_id="other", messages=[hb()])) == (
                grpc.StatusCode.FAILED_PRECONDITION)
            assert await code(pb.RaftMessageBatch(messages=[hb(dst=2)])) == (
                grpc.StatusCode.FAILED_PRECONDITION)
            assert await code(pb.RaftMessageBatch(messages=[hb(src=9)])) == (
                grpc.StatusCode.FAILED_PRECONDITION)
            assert await code(pb.RaftMessageBatch(messages=[
                pb.RaftMessage(src=5, dst=1, term=0)])) == grpc.StatusCode.INVALID_ARGUMENT

            # DescribeQuorum, answered by the (single-voter) leader.
            deadline = time.monotonic() + 5
            while not mlog.is_leader and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await mlog.append([encode_record(no_op_record())])
            desc = await stub.DescribeQuorum(pb.DescribeQuorumRequest(), timeout=5)
            assert desc.leader_id == 1 and desc.answered_by == 1 and desc.term >= 1
            assert desc.leader_address == f"127.0.0.1:{port}"
            assert desc.commit_index >= 2 and desc.high_watermark == desc.commit_index + 1
            assert desc.committed_record_offset == 0
            assert [v.node_id for v in desc.voters] == [1]
            assert desc.voters[0].log_end_offset == desc.commit_index + 1
            assert [o.node_id for o in desc.observers] == [5]
            assert desc.observers[0].last_contact_ms_ago >= 0  # we stepped its messages
            await mlog.stop()
        await server.stop(None)

    run(main())


def test_describe_quorum_on_a_follower_without_leader_is_unavailable(tmp_path: Path) -> None:
    async def main() -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        port = server.add_insecure_port("127.0.0.1:0")
        settings = RaftSettings(node_id=1, voters={1: f"127.0.0.1:{port}",
                                                   2: f"127.0.0.1:{free_port()}"},
                                data_dir=tmp_path, tick_ms=1000)
        mlog = RaftMetadataLog(settings, MetadataLoader())
        mlog.add_to_server(server)
        await server.start()
        await mlog.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = raft_pb2_grpc.RaftServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.DescribeQuorum(pb.DescribeQuorumRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            local = await stub.DescribeQuorum(pb.DescribeQuorumRequest(local_only=True),
                                              timeout=5)
            assert local.leader_id == -1 and local.answered_by == 1
            assert [v.node_id for v in local.voters] == [1, 2]
            assert local.voters[1].last_contact_ms_ago == -1
        await mlog.stop()
        await server.stop(None)

    run(main())


def test_a_dead_peer_does_not_delay_a_live_one() -> None:
    async def main() -> None:
        live = Collector()
        server, addr = await serve(lambda s: raft_pb2_grpc.add_RaftServiceServicer_to_server(
            live, s))
        # Node 2 accepts TCP connections but never speaks HTTP/2 (a hung process): its calls
        # hang until their deadline. Node 4 refuses connections (a dead process).
        hung = socket.socket()
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        hung_addr = f"127.0.0.1:{hung.getsockname()[1]}"
        transport = GrpcTransport(1, {2: hung_addr, 3: addr, 4: f"127.0.0.1:{free_port()}"},
                                  rpc_timeout_s=2.0)
        await transport.start()
        t0 = time.monotonic()
        for k in range(20):
            transport.send([Heartbeat(1, 2, 1, k), Heartbeat(1, 4, 1, k),
                            Heartbeat(1, 3, 1, k)])
            await asyncio.sleep(0.005)
        deadline = time.monotonic() + 5
        while sum(len(b.messages) for _, b in live.batches) < 20:
            assert time.monotonic() < deadline, "live peer starved"
            await asyncio.sleep(0.01)
        assert live.batches[-1][0] - t0 < 1.0
        received = [m.heartbeat.commit for _, b in live.batches for m in b.messages]
        assert received == list(range(20)), "order must be kept"
        stats = transport.stats()
        assert stats[3].sent == 20 and stats[3].dropped == 0
        assert stats[2].sent == 0 and stats[4].sent == 0
        await transport.close()
        await server.stop(None)
        hung.close()

    run(main())


def test_full_queue_drops_the_oldest_messages() -> None:
    async def main() -> None:
        transport = GrpcTransport(1, {2: "127.0.0.1:9"}, queue_size=4)
        # Not started: nothing drains the queue.
        transport.send([Heartbeat(1, 2, 1, k) for k in range(10)])
        stats = transport.stats()[2]
        assert stats.dropped == 6 and stats.queued == 4
        queued = list(transport._peers[2].queue)
        assert [m.commit for m in queued] == [6, 7, 8, 9]
        # Messages to an unknown node are refused loudly, not queued anywhere.
        transport.send([HeartbeatResponse(1, 7, 1)])
        await transport.close()

    run(main())


def test_snapshots_travel_alone() -> None:
    async def main() -> None:
        transport = GrpcTransport(1, {2: "127.0.0.1:9"})
        snap = InstallSnapshotRequest(1, 2, 1, Snapshot(SnapshotMeta(5, 1), b"x" * 10))
        transport.send([Heartbeat(1, 2, 1, 0), snap, Heartbeat(1, 2, 1, 1)])
        peer = transport._peers[2]
        assert [type(m) for m in peer._next_batch()] == [Heartbeat]
        assert [type(m) for m in peer._next_batch()] == [InstallSnapshotRequest]
        assert [type(m) for m in peer._next_batch()] == [Heartbeat]
        await transport.close()

    run(main())

"""Every Raft core message survives dataclass -> protobuf -> bytes -> protobuf -> dataclass."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.controller.raft import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    PreVoteRequest,
    PreVoteResponse,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from odradek.controller.raft_runtime.wire import (
    WireFormatError,
    batch_from_pb,
    batch_to_pb,
    message_from_pb,
    message_to_pb,
)
from odradek.controller.rpc import raft_pb2 as pb

ids = st.integers(1, 2**31 - 1)
u64 = st.integers(0, 2**64 - 1)
small = st.integers(0, 2**40)


def _header(cls, *rest):
    return st.builds(cls, ids, ids, u64, *rest)


def _append() -> st.SearchStrategy[AppendEntriesRequest]:
    @st.composite
    def build(draw: st.DrawFn) -> AppendEntriesRequest:
        prev = draw(small)
        n = draw(st.integers(0, 4))
        entries = tuple(
            Entry(draw(u64), prev + 1 + k, draw(st.binary(max_size=64)),
                  draw(st.sampled_from(EntryKind)))
            for k in range(n)
        )
        return AppendEntriesRequest(draw(ids), draw(ids), draw(u64), prev, draw(u64), entries,
                                    draw(u64))
    return build()


snapshots = st.builds(
    Snapshot,
    st.builds(SnapshotMeta, u64, u64, st.frozensets(ids, max_size=5),
              st.frozensets(ids, max_size=3)),
    st.binary(max_size=256),
)

MESSAGES = {
    VoteRequest: _header(VoteRequest, u64, u64, st.booleans()),
    VoteResponse: _header(VoteResponse, st.booleans()),
    PreVoteRequest: _header(PreVoteRequest, u64, u64),
    PreVoteResponse: _header(PreVoteResponse, st.booleans()),
    AppendEntriesRequest: _append(),
    AppendEntriesResponse: _header(AppendEntriesResponse, st.booleans(), u64, u64, u64, u64),
    Heartbeat: _header(Heartbeat, u64),
    HeartbeatResponse: _header(HeartbeatResponse),
    InstallSnapshotRequest: _header(InstallSnapshotRequest, snapshots),
    InstallSnapshotResponse: _header(InstallSnapshotResponse, u64),
    TimeoutNow: _header(TimeoutNow),
}


def test_every_core_message_type_has_a_strategy() -> None:
    import typing

    from odradek.controller.raft.messages import Message

    assert set(typing.get_args(Message)) == set(MESSAGES)


@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(cls, data: st.DataObject) -> None:
    message = data.draw(MESSAGES[cls])
    wire = message_to_pb(message).SerializeToString()
    back = message_from_pb(pb.RaftMessage.FromString(wire))
    assert back == message
    assert type(back) is cls


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(*MESSAGES.values()), max_size=8))
def test_batch_round_trip_keeps_order(messages) -> None:
    wire = batch_to_pb(messages, "cluster-x").SerializeToString()
    batch = pb.RaftMessageBatch.FromString(wire)
    assert batch.cluster_id == "cluster-x"
    assert batch_from_pb(batch) == messages


@pytest.mark.parametrize("bad", [
    pb.RaftMessage(src=1, dst=2, term=1),  # no body (e.g. a newer sender's message type)
    pb.RaftMessage(src=0, dst=2, term=1, heartbeat=pb.Heartbeat()),
    pb.RaftMessage(src=1, dst=2, term=1, append_entries_request=pb.AppendEntriesRequest(
        prev_log_index=5, entries=[pb.Entry(term=1, index=7)])),  # gap
    pb.RaftMessage(src=1, dst=2, term=1, append_entries_request=pb.AppendEntriesRequest(
        prev_log_index=0, entries=[pb.Entry(term=1, index=1, kind=9)])),  # unknown kind
    pb.RaftMessage(src=1, dst=2, term=1,
                   install_snapshot_request=pb.InstallSnapshotRequest()),  # no snapshot
    pb.RaftMessage(src=1, dst=2, term=1, install_snapshot_request=pb.InstallSnapshotRequest(
        snapshot=pb.Snapshot(meta=pb.SnapshotMeta(index=3, term=1, voters=[0])))),
])
def test_malformed_messages_are_refused(bad: pb.RaftMessage) -> None:
    with pytest.raises(WireFormatError):
        message_from_pb(bad)

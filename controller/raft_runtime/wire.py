"""Raft core messages <-> their protobuf form (proto/raft.proto).

One function per direction, used by both the sender and the receiver, so the two sides cannot
disagree. Decoding is strict: anything the core could not have produced (no body, node id 0,
an unknown entry kind) raises WireFormatError, which the servicer answers with
INVALID_ARGUMENT, because stepping a half-understood message into Raft is worse than losing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from odradek.controller.raft import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    Message,
    PreVoteRequest,
    PreVoteResponse,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from odradek.controller.rpc import raft_pb2 as pb


class WireFormatError(ValueError):
    """Bytes or a protobuf message that cannot be a Raft message this version understands."""


_KIND_TO_PB = {EntryKind.NORMAL: pb.ENTRY_KIND_NORMAL, EntryKind.NOOP: pb.ENTRY_KIND_NOOP,
               EntryKind.CONFIG: pb.ENTRY_KIND_CONFIG}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


def entry_to_pb(entry: Entry) -> pb.Entry:
    return pb.Entry(term=entry.term, index=entry.index, kind=_KIND_TO_PB[entry.kind],
                    data=entry.data)


def entry_from_pb(msg: pb.Entry) -> Entry:
    kind = _KIND_FROM_PB.get(msg.kind)
    if kind is None:
        raise WireFormatError(f"entry {msg.index} has unknown kind {msg.kind}")
    if msg.index == 0:
        raise WireFormatError("entry index 0 does not exist (the log starts at 1)")
    return Entry(msg.term, msg.index, bytes(msg.data), kind)


def _ids(values: Iterable[int], what: str) -> frozenset[int]:
    ids = frozenset(values)
    if any(i <= 0 for i in ids):
        raise WireFormatError(f"{what} must be positive node ids, got {sorted(ids)}")
    return ids


def snapshot_to_pb(snapshot: Snapshot) -> pb.Snapshot:
    meta = snapshot.meta
    return pb.Snapshot(
        meta=pb.SnapshotMeta(index=meta.index, term=meta.term, voters=sorted(meta.voters),
                             observers=sorted(meta.observers), config=meta.config),
        data=snapshot.data,
    )


def snapshot_from_pb(msg: pb.Snapshot) -> Snapshot:
    if not msg.HasField("meta"):
        raise WireFormatError("snapshot without meta")
    meta = msg.meta
    return Snapshot(
        SnapshotMeta(meta.index, meta.term, _ids(meta.voters, "snapshot voters"),
                     _ids(meta.observers, "snapshot observers"), bytes(meta.config)),
        bytes(msg.data),
    )


# Per message type: (oneof field, dataclass -> body, (src, dst, term, body) -> dataclass).
_Codec = tuple[str, Callable[[Any], Any], Callable[[int, int, int, Any], Message]]

_CODECS: dict[type, _Codec] = {
    VoteRequest: (
        "vote_request",
        lambda m: pb.VoteRequest(last_log_index=m.last_log_index, last_log_term=m.last_log_term,
                                 transfer=m.transfer),
        lambda s, d, t, b: VoteRequest(s, d, t, b.last_log_index, b.last_log_term, b.transfer),
    ),
    VoteResponse: (
        "vote_response",
        lambda m: pb.VoteResponse(granted=m.granted),
        lambda s, d, t, b: VoteResponse(s, d, t, b.granted),
    ),
    PreVoteRequest: (
        "pre_vote_request",
        lambda m: pb.PreVoteRequest(last_log_index=m.last_log_index,
                                    last_log_term=m.last_log_term),
        lambda s, d, t, b: PreVoteRequest(s, d, t, b.last_log_index, b.last_log_term),
    ),
    PreVoteResponse: (
        "pre_vote_response",
        lambda m: pb.PreVoteResponse(granted=m.granted),
        lambda s, d, t, b: PreVoteResponse(s, d, t, b.granted),
    ),
    AppendEntriesRequest: (
        "append_entries_request",
        lambda m: pb.AppendEntriesRequest(
            prev_log_index=m.prev_log_index, prev_log_term=m.prev_log_term,
            entries=[entry_to_pb(e) for e in m.entries], commit=m.commit),
        lambda s, d, t, b: _append_from_pb(s, d, t, b),
    ),
    AppendEntriesResponse: (
        "append_entries_response",
        lambda m: pb.AppendEntriesResponse(
            success=m.success, match_index=m.match_index, rejected_index=m.rejected_index,
            reject_hint_index=m.reject_hint_index, reject_hint_term=m.reject_hint_term),
        lambda s, d, t, b: AppendEntriesResponse(
            s, d, t, b.success, b.match_index, b.rejected_index, b.reject_hint_index,
            b.reject_hint_term),
    ),
    Heartbeat: (
        "heartbeat",
        lambda m: pb.Heartbeat(commit=m.commit),
        lambda s, d, t, b: Heartbeat(s, d, t, b.commit),
    ),
    HeartbeatResponse: (
        "heartbeat_response",
        lambda m: pb.HeartbeatResponse(),
        lambda s, d, t, b: HeartbeatResponse(s, d, t),
    ),
    InstallSnapshotRequest: (
        "install_snapshot_request",
        lambda m: pb.InstallSnapshotRequest(snapshot=snapshot_to_pb(m.snapshot)),
        lambda s, d, t, b: _install_from_pb(s, d, t, b),
    ),
    InstallSnapshotResponse: (
        "install_snapshot_response",
        lambda m: pb.InstallSnapshotResponse(match_index=m.match_index),
        lambda s, d, t, b: InstallSnapshotResponse(s, d, t, b.match_index),
    ),
    TimeoutNow: (
        "timeout_now",
        lambda m: pb.TimeoutNow(),
        lambda s, d, t, b: TimeoutNow(s, d, t),
    ),
}
_FROM_FIELD = {field: decode for field, _, decode in _CODECS.values()}


def _append_from_pb(src: int, dst: int, term: int, b: pb.AppendEntriesRequest) -> Message:
    entries = tuple(entry_from_pb(e) for e in b.entries)
    for k, e in enumerate(entries):
        # The core slices its log by position; a gap here would misplace entries.
        if e.index != b.prev_log_index + 1 + k:
            raise WireFormatError(
                f"AppendEntries after {b.prev_log_index} carries entry {e.index} at position {k}"
            )
    return AppendEntriesRequest(src, dst, term, b.prev_log_index, b.prev_log_term, entries,
                                b.commit)


def _install_from_pb(src: int, dst: int, term: int, b: pb.InstallSnapshotRequest) -> Message:
    if not b.HasField("snapshot"):
        raise WireFormatError("InstallSnapshot without a snapshot")
    return InstallSnapshotRequest(src, dst, term, snapshot_from_pb(b.snapshot))


def message_to_pb(m: Message) -> pb.RaftMessage:
    field, encode, _ = _CODECS[type(m)]
    out = pb.RaftMessage(src=m.src, dst=m.dst, term=m.term)
    getattr(out, field).CopyFrom(encode(m))
    return out


def message_from_pb(msg: pb.RaftMessage) -> Message:
    field = msg.WhichOneof("body")
    if field is None:
        raise WireFormatError(
            f"Raft message from node {msg.src} has no body this version knows; "
            "is the sender running a newer Odradek?"
        )
    if msg.src <= 0 or msg.dst <= 0:
        raise WireFormatError(f"node ids must be positive (src={msg.src}, dst={msg.dst})")
    return _FROM_FIELD[field](msg.src, msg.dst, msg.term, getattr(msg, field))


def batch_to_pb(messages: Iterable[Message], cluster_id: str = "") -> pb.RaftMessageBatch:
    return pb.RaftMessageBatch(cluster_id=cluster_id,
                               messages=[message_to_pb(m) for m in messages])


def batch_from_pb(batch: pb.RaftMessageBatch) -> list[Message]:
    return [message_from_pb(m) for m in batch.messages]

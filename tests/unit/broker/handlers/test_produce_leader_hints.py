"""Produce v10+ (KIP-951): a partition answered NOT_LEADER_OR_FOLLOWER names its current
leader, and the answer carries the leader's address, so a producer whose leader moved goes
there without a metadata refresh; older versions carry neither."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.handlers import produce
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.storage.records import Record, encode_batch
from tests.unit.broker.handlers.test_fetch_sessions_wire import Leader, partition


def produce_request(version: int, topics: list[str]) -> Any:
    batch = encode_batch([Record(0, value=b"v")])
    body = codec.build_request(0, version, {
        "transactional_id": None, "acks": -1, "timeout": 1000,
        "topic_data": [{"name": t, "partition_data": [{"index": 0, "records": batch}]}
                       for t in topics]})
    frame = codec.encode_request(body, 5, "p")
    return codec.decode_request(frame[4:], {0: (3, 11)}).body


@pytest.mark.parametrize("version", [9, 10, 11])
def test_not_leader_answers_name_the_leader_from_v10(tmp_path: Path, version: int) -> None:
    led = partition(tmp_path / "led", "led", 0, 1, replicas=(1,), leader=1)
    moved = partition(tmp_path / "moved", "moved", 0, 1, replicas=(1, 3), leader=3,
                      leader_epoch=6)
    node = Leader({("led", 0): led, ("moved", 0): moved})
    ctx = RequestContext(0, version, 5, "p", "h", 1, "PLAINTEXT")
    resp_payload = asyncio.run(produce.handle_produce(
        node, ctx, produce_request(version, ["led", "moved"])))  # type: ignore[arg-type]
    assert resp_payload is not None
    out = codec.encode_response(0, version, 5, resp_payload)
    resp = codec.decode_response(bytes(out[4:]), 0, version)[1]
    answers = {t.name: t.partition_responses[0] for t in resp.responses}
    assert answers["led"].error_code == ErrorCode.none
    assert answers["moved"].error_code == ErrorCode.not_leader_or_follower
    if version >= 10:
        assert (answers["moved"].current_leader.leader_id,
                answers["moved"].current_leader.leader_epoch) == (3, 6)
        assert answers["led"].current_leader.leader_id == -1  # no error, no hint
        assert [(n.node_id, n.host, n.port) for n in resp.node_endpoints] == [(3, "host3", 9093)]
    else:
        assert not hasattr(answers["moved"], "current_leader")
        assert not getattr(resp, "node_endpoints", ())

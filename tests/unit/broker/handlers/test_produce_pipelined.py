"""The produce handler tells its connection when a request's records are appended
(RequestContext.appended), before an acks=all answer waits for the replicas: the connection
then reads its next request meanwhile (broker/server.py, pipelined produce)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kio.schema.errors import ErrorCode

from odradek.broker.handlers import produce
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from tests.unit.broker.handlers.test_fetch_sessions_wire import Leader, partition
from tests.unit.broker.handlers.test_produce_leader_hints import produce_request


def test_appended_is_called_once_the_records_are_in_the_log_before_the_wait(
        tmp_path: Path) -> None:
    p = partition(tmp_path / "t", "t", 0, 1, replicas=(1, 2), leader=1)  # ISR {1, 2}
    node = Leader({("t", 0): p})
    seen: list[tuple[int, int]] = []

    async def run() -> object:
        ctx = RequestContext(0, 9, 5, "p", "h", 1, "PLAINTEXT", appended=lambda: seen.append(
            (p.log.log_end_offset, p.log.high_watermark)))
        task = asyncio.ensure_future(produce.handle_produce(
            node, ctx, produce_request(9, ["t"])))  # type: ignore[arg-type]
        while not seen:
            await asyncio.sleep(0)
        assert not task.done()  # waiting for follower 2, which never fetches
        return await task

    payload = asyncio.run(run())
    assert seen == [(1, 0)]  # appended, not yet replicated
    out = codec.encode_response(0, 9, 5, payload)  # type: ignore[arg-type]
    resp = codec.decode_response(bytes(out[4:]), 0, 9)[1]
    assert resp.responses[0].partition_responses[0].error_code == ErrorCode.request_timed_out

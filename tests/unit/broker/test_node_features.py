"""A real single node, in this process: UpdateFeatures through its own handler table moves
the transaction coordinator's level and ApiVersions with it, and the level outlives a
restart (it is in the metadata log)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from odradek.broker.cli.node import build_node
from odradek.broker.config import parse_config
from odradek.broker.handlers.api import RequestContext
from odradek.broker.kafka import codec
from odradek.broker.node import Node

TV = "transaction.version"


def node_at(data_dir: Path) -> Node:
    return build_node(parse_config({
        "node.id": 1, "data.dir": str(data_dir), "listeners": "PLAINTEXT://127.0.0.1:0",
        "offsets.topic.replication.factor": 1}, env={}))


async def call(node: Node, api_key: int, version: int, data: dict[str, Any]) -> Any:
    served = {k: (s.min_version, s.max_version) for k, s in node.apis.items()}
    frame = codec.encode_request(codec.build_request(api_key, version, data), 5, "t")
    req = codec.decode_request(frame[4:], served).body
    ctx = RequestContext(api_key, version, 5, "t", "h", 1)
    payload = await node.apis[api_key].handler(node, ctx, req)
    out = bytes(codec.encode_response(api_key, version, 5, payload))
    return codec.decode_response(out[4:], api_key, version)[1]


async def finalized(node: Node) -> dict[str, int]:
    r = await call(node, 18, 3, {"client_software_name": "t", "client_software_version": "1"})
    return {f.name: f.max_version_level for f in r.finalized_features}


async def stop(node: Node) -> None:
    await node.stop()
    current = asyncio.current_task()
    for task in [t for t in asyncio.all_tasks() if t is not current]:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def test_update_features_reaches_the_coordinator_and_survives_a_restart(tmp_path: Path
                                                                         ) -> None:
    async def run() -> None:
        node = node_at(tmp_path)
        await node.start()
        try:
            assert (await finalized(node), node.transactions.transaction_version_level) == (
                {TV: 2}, 2)
            r = await call(node, 57, 1, {"feature_updates": [
                {"feature": TV, "max_version_level": 1, "upgrade_type": 2}],
                "validate_only": False})
            assert (r.error_code, [x.feature for x in r.results]) == (0, [TV])
            assert (await finalized(node), node.transactions.transaction_version_level) == (
                {TV: 1}, 1)
        finally:
            await stop(node)
        again = node_at(tmp_path)
        await again.start()
        try:
            assert (await finalized(again), again.transactions.transaction_version_level) == (
                {TV: 1}, 1)
        finally:
            await stop(again)

    asyncio.run(run())

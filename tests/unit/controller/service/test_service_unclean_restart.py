"""previous_shutdown_clean from the broker to the controller operation (KIP-966): the
RegisterBroker field, its reading when absent, and BrokerLifecycle's use of it."""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from odradek.broker.lifecycle import BrokerLifecycle
from odradek.controller.metadata.requests import (
    CreateTopicSpec,
    HeartbeatResult,
    RegisterBrokerResult,
    Registration,
)
from odradek.controller.quorum import LocalMetadataLog, QuorumController
from odradek.controller.rpc import controller_pb2 as pb
from odradek.controller.service import ControllerService, ManualQuorumInfo


class Context:
    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> None:
        raise AssertionError(f"aborted: {code} {details}")


async def register(service: ControllerService, broker_id: int, **flag: bool) -> int:
    response = await service.RegisterBroker(pb.RegisterBrokerRequest(
        broker_id=broker_id, incarnation_id=str(uuid.uuid4()),
        listeners=[{"name": "PLAINTEXT", "host": "h", "port": 9092}], **flag), Context())
    assert response.error_code == 0, response
    return response.broker_epoch


@pytest.mark.parametrize(
    ("flag", "isr", "elr"),
    [({"previous_shutdown_clean": False}, (), (2,)),
     ({}, (), (2,)),  # absent: the broker cannot tell, read as unclean
     ({"previous_shutdown_clean": True}, (1,), (2,))],
    ids=["unclean", "absent", "clean"],
)
async def test_register_broker_passes_the_shutdown_flag(
    tmp_path: Path, flag: dict[str, bool], isr: tuple[int, ...], elr: tuple[int, ...]
) -> None:
    log = LocalMetadataLog(tmp_path)
    controller = QuorumController(log, rng=random.Random(1))
    service = ControllerService(controller, ManualQuorumInfo(is_leader=True, leader_id=1,
                                                             term=1), log)
    for b in (1, 2, 3):
        epoch = await register(service, b, previous_shutdown_clean=True)
        assert (await controller.unfence_broker(b, epoch)).error_code == 0
    [res] = await controller.create_topics([CreateTopicSpec(
        "t", assignments={0: [1, 2, 3]}, configs={"min.insync.replicas": "2"})])
    assert res.error_code == 0
    for b in (3, 2, 1):
        assert (await controller.fence_broker(b)).error_code == 0
    p = controller.image.partition("t", 0)
    assert p is not None and (p.leader, p.isr, p.elr) == (-1, (1,), (2,))
    await register(service, 1, **flag)
    p = controller.image.partition("t", 0)
    assert p is not None and (p.leader, p.isr, p.elr) == (-1, isr, elr)
    log.close()


class RecordingClient:
    """Registers (the second time after a lost session) and records the flag it got."""

    def __init__(self) -> None:
        self.flags: list[bool] = []
        self.heartbeats = 0

    async def register(self, broker_id: int, incarnation_id: str, listeners: Any, rack: Any,
                       previous_shutdown_clean: bool = True) -> Registration:
        self.flags.append(previous_shutdown_clean)
        return Registration(RegisterBrokerResult(ErrorCode.none, None, len(self.flags)), 0, 9000)

    async def heartbeat(self, broker_id: int, epoch: int, offset: int, **kwargs: Any
                        ) -> HeartbeatResult:
        self.heartbeats += 1
        code = ErrorCode.stale_broker_epoch if self.heartbeats == 1 else ErrorCode.none
        return HeartbeatResult(code, None, False, True, False)

    async def hold_liveness(self, broker_id: int, epoch: int) -> int:
        await asyncio.Event().wait()
        return ErrorCode.none


async def test_lifecycle_reports_an_unclean_start_once() -> None:
    client = RecordingClient()
    b = BrokerLifecycle(client, 1, str(uuid.uuid4()), [("PLAINTEXT", "h", 1)], None,  # type: ignore[arg-type]
                        metadata_offset=lambda: 0, heartbeat_interval_ms=10,
                        registration_retry_ms=1, previous_shutdown_clean=False)
    await b.start()
    await b.wait_unfenced(2)
    await b.stop()
    # A session lost later is not a crash: the same process registers as clean.
    assert client.flags == [False, True]

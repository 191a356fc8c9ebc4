"""Helpers for the transaction coordinator tests: a coordinator on an in-memory
``__transaction_state`` with a manual clock, a fake marker sender that checks markers are
only sent for durable Prepare* records, and a producer id source."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from odradek.broker.group.clock import ManualClock
from odradek.broker.group.partitioning import partition_for
from odradek.broker.txn.coordinator import (
    EndTxnResult,
    InitProducerIdResult,
    TransactionCoordinator,
)
from odradek.broker.txn.log import InMemoryTxnLog
from odradek.broker.txn.markers import MarkerRequest
from odradek.broker.txn.metadata import TopicPartition, TransactionMetadata, TxnState
from odradek.broker.txn.records import TxnLogValue, decode_value, encode_key

TOPICS = {"t": 3, "u": 2, "__consumer_offsets": 50}
TIMEOUT_MS = 60_000


def partition_exists(topic: str, partition: int) -> bool:
    return 0 <= partition < TOPICS.get(topic, 0)


class FakeProducerIds:
    def __init__(self, start: int = 1000) -> None:
        self.next = start
        self.fail_with: BaseException | None = None
        self.calls = 0

    async def next_producer_id(self) -> int:
        self.calls += 1
        await asyncio.sleep(0)  # like the broker's: may have to ask the controller
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc
        self.next += 1
        return self.next - 1


@dataclass(frozen=True)
class Marker:
    transactional_id: str
    partition: TopicPartition
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    commit: bool


class FakeMarkers:
    """Answers WriteTxnMarkers as told; checks the invariant that markers follow a durable
    Prepare* record of the same producer id and epoch."""

    def __init__(self, log: InMemoryTxnLog) -> None:
        self.log = log
        self.requests: list[MarkerRequest] = []
        self.written: list[Marker] = []
        # One-shot answers per partition, consumed in order; else NONE.
        self.answers: dict[TopicPartition, list[ErrorCode]] = {}
        self.raise_next: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.violations: list[str] = []

    def fail(self, tp: TopicPartition, *codes: ErrorCode) -> None:
        self.answers.setdefault(tp, []).extend(codes)

    async def send_markers(self, request: MarkerRequest) -> Mapping[TopicPartition, ErrorCode]:
        self._check_durable(request)
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc
        out = {}
        for tp in request.partitions:
            queued = self.answers.get(tp)
            code = queued.pop(0) if queued else ErrorCode.none
            out[tp] = code
            if code is ErrorCode.none:
                self.written.append(
                    Marker(request.transactional_id, tp, request.producer_id,
                           request.producer_epoch, request.coordinator_epoch, request.commit)
                )
        return out

    def _check_durable(self, request: MarkerRequest) -> None:
        # A coordinator that lost its partition may still send markers for a transaction
        # the new one completed meanwhile (harmless, the partitions refuse the old
        # coordinator epoch); what must never happen is a marker without its record.
        want = TxnState.PREPARE_COMMIT if request.commit else TxnState.PREPARE_ABORT
        if not any(
            v is not None
            and TxnState.from_id(v.transaction_status) is want
            and v.producer_id == request.producer_id
            and v.producer_epoch == request.producer_epoch
            for v in history(self.log, request.transactional_id)
        ):
            self.violations.append(f"markers {request} sent without a durable {want}")

    def for_txn(self, transactional_id: str) -> list[Marker]:
        return [m for m in self.written if m.transactional_id == transactional_id]


def history(log: InMemoryTxnLog, transactional_id: str) -> list[TxnLogValue | None]:
    """Every record of an id in log order (None for tombstones)."""
    p = partition_for(transactional_id, log.num_partitions)
    key = encode_key(transactional_id)
    return [None if v is None else decode_value(v) for k, v in log.read(p) if k == key]


def states(log: InMemoryTxnLog, transactional_id: str) -> list[str]:
    return [
        "tombstone" if v is None else TxnState.from_id(v.transaction_status).state_name
        for v in history(log, transactional_id)
    ]




async def spin(n: int = 10) -> None:
    """Let spawned tasks run up to their next wait (without waiting for gated ones)."""
    for _ in range(n):
        await asyncio.sleep(0)


class Harness:
    """A coordinator; ``successor()`` makes another one on the same log, producer ids,
    markers and clock (a failover)."""

    def __init__(
        self,
        log: InMemoryTxnLog | None = None,
        *,
        clock: ManualClock | None = None,
        pids: FakeProducerIds | None = None,
        markers: FakeMarkers | None = None,
        **config: Any,
    ) -> None:
        self.clock = clock or ManualClock()
        self.log = log or InMemoryTxnLog(num_partitions=4)
        self.pids = pids or FakeProducerIds()
        self.markers = markers or FakeMarkers(self.log)
        self.config = config
        self.coord = TransactionCoordinator(
            self.log,
            self.markers,
            self.pids,
            partition_exists=lambda t, p: partition_exists(t, p),
            group_partition_for=lambda g: partition_for(g, 50),
            clock=self.clock,
            **config,
        )

    def successor(self, **config: Any) -> Harness:
        return Harness(self.log, clock=self.clock, pids=self.pids, markers=self.markers,
                       **(config or self.config))

    async def load_all(self, epoch: int = 1) -> Harness:
        for p in range(self.log.num_partitions):
            self.log.elect(p, epoch)
            await self.coord.load_partition(p, epoch)
        return self

    async def settle(self) -> None:
        for _ in range(3):
            await self.coord.settle()
            await asyncio.sleep(0)

    async def advance(self, ms: int, step: int = 100) -> None:
        """Move the clock in steps, letting retries scheduled meanwhile run."""
        while ms > 0:
            self.clock.advance(min(step, ms))
            ms -= step
            await self.settle()

    def partition(self, transactional_id: str) -> int:
        return self.coord.partition_for(transactional_id)

    def md(self, transactional_id: str) -> TransactionMetadata:
        md = self.coord.transaction(transactional_id)
        assert md is not None
        return md

    async def init(self, txn: str, timeout: int = TIMEOUT_MS, **kw: Any) -> InitProducerIdResult:
        return await self.coord.init_producer_id(txn, timeout, **kw)

    async def producer(self, txn: str, **kw: Any) -> tuple[int, int]:
        r = await self.init(txn, **kw)
        assert r.error is ErrorCode.none, r
        return r.producer_id, r.producer_epoch

    async def add(
        self, txn: str, pid: int, epoch: int, *tps: TopicPartition, api_version: int = 3
    ) -> ErrorCode:
        result = await self.coord.add_partitions_to_txn(
            txn, pid, epoch, tps or [("t", 0)], api_version=api_version
        )
        codes = set(result.values())
        assert len(codes) == 1, result
        return codes.pop()

    async def end(
        self, txn: str, pid: int, epoch: int, commit: bool = True, *, api_version: int = 3
    ) -> EndTxnResult:
        return await self.coord.end_txn(txn, pid, epoch, commit, api_version=api_version)

"""Broker lifecycle operations and producer id allocation.

A broker registers fenced with a new incarnation each time its process starts; it is unfenced
once it has caught up with the metadata log (its heartbeat says so) and fenced again when its
session ends. Fencing and unregistering move leadership and ISR membership off the broker; so
does a controlled shutdown, which leaves the broker unfenced (still listed for clients) until
its process is gone.
"""

from __future__ import annotations

import uuid

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import BrokerRegistration, MetadataImage, MetadataRecord
from odradek.controller.metadata.records import (
    broker_controlled_shutdown_record,
    fence_broker_record,
    producer_ids_record,
    register_broker_record,
    unfence_broker_record,
    unregister_broker_record,
)
from odradek.controller.metadata.requests import (
    BrokerResult,
    ProducerIdsResult,
    RegisterBrokerRequest,
    RegisterBrokerResult,
)
from odradek.controller.quorum.api import NONE, ApiError, OpResult
from odradek.controller.quorum.election import (
    drop_unclean_replica,
    elect_leaderless,
    move_off_broker,
)

MAX_PRODUCER_ID = 2**63 - 1


def registered_broker(
    image: MetadataImage, broker_id: int, broker_epoch: int | None = None
) -> BrokerRegistration:
    """The broker's registration; with broker_epoch, only if it is the current one."""
    broker = image.brokers.get(broker_id)
    if broker is None:
        raise ApiError(
            ErrorCode.broker_id_not_registered,
            f"Broker {broker_id} is not registered; it must register before this request.",
        )
    if broker_epoch is not None and broker_epoch != broker.epoch:
        raise ApiError(
            ErrorCode.stale_broker_epoch,
            f"Broker {broker_id} sent epoch {broker_epoch}, but its current registration has "
            f"epoch {broker.epoch}: the request comes from an older process of this broker.",
        )
    return broker


def _check_registration(request: RegisterBrokerRequest) -> None:
    if request.broker_id < 0:
        raise ApiError(
            ErrorCode.invalid_request, f"Broker id must be >= 0; got {request.broker_id}."
        )
    try:
        uuid.UUID(request.incarnation_id)
    except ValueError:
        raise ApiError(
            ErrorCode.invalid_request,
            f"Incarnation id {request.incarnation_id!r} is not a UUID.",
        ) from None
    names = [listener.name for listener in request.listeners]
    if len(set(names)) != len(names):
        raise ApiError(ErrorCode.invalid_request, f"Listener names must be unique; got {names}.")
    for listener in request.listeners:
        if not 0 <= listener.port <= 65535:
            raise ApiError(
                ErrorCode.invalid_request,
                f"Listener {listener.name} has port {listener.port}, outside 0..65535.",
            )


def register_broker(
    image: MetadataImage, request: RegisterBrokerRequest
) -> OpResult[RegisterBrokerResult]:
    try:
        _check_registration(request)
    except ApiError as err:
        return OpResult((), RegisterBrokerResult(err.code, err.message))
    existing = image.brokers.get(request.broker_id)
    if existing is not None:
        if existing.incarnation_id == request.incarnation_id:
            if (existing.listeners, existing.rack) == (request.listeners, request.rack):
                # A retry of a registration that was committed: answer the same epoch.
                return OpResult((), RegisterBrokerResult(NONE, broker_epoch=existing.epoch))
        elif not existing.fenced:
            # Either another process claims the same broker id, or this broker restarted
            # before its old session was fenced; in both cases it has to wait for the old
            # session to end, as Kafka does.
            return OpResult(
                (),
                RegisterBrokerResult(
                    ErrorCode.duplicate_broker_registration,
                    f"Broker {request.broker_id} is already registered by another live process "
                    f"(incarnation {existing.incarnation_id}); retry after its session ends.",
                ),
            )
    records: list[MetadataRecord] = []
    if existing is not None and not existing.fenced:
        # Re-registering (same process, new listeners or rack) fences the broker until its
        # next heartbeat, so its leaderships must move like on any fencing.
        records.extend(move_off_broker(image, request.broker_id))
    restarted = existing is None or existing.incarnation_id != request.incarnation_id
    if restarted and not request.previous_shutdown_clean:
        # A new process after a crash (a live process registering again has lost nothing,
        # whatever its start said). Its registration is fenced (checked above), so these
        # changes do not meet the move_off_broker ones.
        records.extend(drop_unclean_replica(image, request.broker_id))
    records.append(
        register_broker_record(
            request.broker_id,
            request.incarnation_id,
            [(x.name, x.host, x.port) for x in request.listeners],
            request.rack,
            fenced=True,
        )
    )
    return OpResult(tuple(records), RegisterBrokerResult(NONE))


def fence_broker(
    image: MetadataImage, broker_id: int, broker_epoch: int | None = None
) -> OpResult[BrokerResult]:
    try:
        broker = registered_broker(image, broker_id, broker_epoch)
    except ApiError as err:
        return OpResult((), BrokerResult(err.code, err.message))
    if broker.fenced:
        return OpResult((), BrokerResult(NONE))
    records = [fence_broker_record(broker_id, broker.epoch), *move_off_broker(image, broker_id)]
    return OpResult(tuple(records), BrokerResult(NONE))


def begin_controlled_shutdown(
    image: MetadataImage, broker_id: int, broker_epoch: int | None = None
) -> OpResult[BrokerResult]:
    """Kafka's controlled shutdown: the broker's leaderships and ISR places move to others
    and it takes no new ones, but it stays unfenced, so clients still find it in their broker
    lists while they move to the new leaders (librdkafka loses a partition it is moving when
    its old leader leaves the list in the same metadata answer). It is fenced once gone."""
    try:
        broker = registered_broker(image, broker_id, broker_epoch)
    except ApiError as err:
        return OpResult((), BrokerResult(err.code, err.message))
    if broker.fenced or broker.in_controlled_shutdown:
        return OpResult((), BrokerResult(NONE))
    records = [broker_controlled_shutdown_record(broker_id, broker.epoch),
               *move_off_broker(image, broker_id)]
    return OpResult(tuple(records), BrokerResult(NONE))


def unfence_broker(
    image: MetadataImage, broker_id: int, broker_epoch: int | None = None
) -> OpResult[BrokerResult]:
    try:
        broker = registered_broker(image, broker_id, broker_epoch)
    except ApiError as err:
        return OpResult((), BrokerResult(err.code, err.message))
    if not broker.fenced:
        return OpResult((), BrokerResult(NONE))
    records = [unfence_broker_record(broker_id, broker.epoch), *elect_leaderless(image, broker_id)]
    return OpResult(tuple(records), BrokerResult(NONE))


def unregister_broker(image: MetadataImage, broker_id: int) -> OpResult[BrokerResult]:
    try:
        broker = registered_broker(image, broker_id)
    except ApiError as err:
        return OpResult((), BrokerResult(err.code, err.message))
    records = [
        *move_off_broker(image, broker_id, eligible=False),
        unregister_broker_record(broker_id, broker.epoch),
    ]
    return OpResult(tuple(records), BrokerResult(NONE))


def allocate_producer_ids(
    image: MetadataImage, broker_id: int, broker_epoch: int | None, block_size: int
) -> OpResult[ProducerIdsResult]:
    try:
        broker = registered_broker(image, broker_id, broker_epoch)
    except ApiError as err:
        return OpResult((), ProducerIdsResult(err.code, err.message))
    first = image.next_producer_id
    if first > MAX_PRODUCER_ID - block_size:
        return OpResult(
            (),
            ProducerIdsResult(
                ErrorCode.unknown_server_error,
                "The cluster has handed out every producer id; none are left to allocate.",
            ),
        )
    record: MetadataRecord = producer_ids_record(broker_id, broker.epoch, first + block_size)
    return OpResult((record,), ProducerIdsResult(NONE, None, first, block_size))

"""The quorum controller: runs metadata operations one at a time against the current image.

Each operation is a pure function of the image (controller/quorum/{topics,configs,brokers,
partitions}.py). The controller appends the records it yields to the metadata log, waits for
the commit, replays them through its MetadataLoader (which publishes the new image to
listeners, the local broker among them) and only then answers, so an answer never reports a
change that a crash could still undo.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from odradek.controller.metadata import (
    Listener,
    MetadataImage,
    MetadataListenerError,
    MetadataLoader,
    MetadataRecord,
    decode_record,
    encode_record,
)
from odradek.controller.metadata.acls import AclFilter, StandardAcl
from odradek.controller.metadata.client_quotas import ClientQuotaChange
from odradek.controller.metadata.requests import (
    AlterClientQuotasResult,
    AlterConfigsResource,
    AlterConfigsResult,
    AlterPartitionItem,
    AlterPartitionResult,
    AlterScramCredentialResult,
    BrokerResult,
    ControllerFailedError,
    CreateAclResult,
    CreatePartitionsResult,
    CreatePartitionsSpec,
    CreateTopicResult,
    CreateTopicSpec,
    DeleteAclsResult,
    DeleteTopicResult,
    DeleteTopicSpec,
    ElectionType,
    ElectLeadersResult,
    FeatureUpdate,
    IncrementalAlterConfigsResource,
    NotControllerError,
    ProducerIdsResult,
    ReassignmentRequest,
    ReassignmentResult,
    RegisterBrokerRequest,
    RegisterBrokerResult,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
    UpdateFeaturesResult,
)
from odradek.controller.quorum import acls as acl_ops
from odradek.controller.quorum import (
    brokers,
    client_quotas,
    configs,
    election,
    features,
    partitions,
    reassignment,
    scram,
    topics,
)
from odradek.controller.quorum.api import ControllerSettings, OpResult
from odradek.controller.quorum.log import MetadataLog

log = logging.getLogger(__name__)

R = TypeVar("R")


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("abandoned controller operation failed: %s", task.exception())




class QuorumController:
    def __init__(
        self,
        metadata_log: MetadataLog,
        *,
        settings: ControllerSettings | None = None,
        rng: random.Random | None = None,
        loader: MetadataLoader | None = None,
    ) -> None:
        self._log = metadata_log
        self.settings = settings or ControllerSettings()
        # Topic ids and placement offsets come from here; tests inject a seeded one.
        self._rng = rng or random.Random()
        self.loader = loader or MetadataLoader()
        self._lock = asyncio.Lock()
        self._failure: BaseException | None = None

    @property
    def image(self) -> MetadataImage:
        return self.loader.image

    async def load(self) -> MetadataImage:
        """Replay the log from after the current image (the whole log at start) as one image."""
        async with self._lock:
            batch = [
                (offset, decode_record(data))
                for offset, data in self._log.read_from(self.image.offset + 1)
            ]
            self._publish(batch)
            self._failure = None
            return self.image

    def _publish(self, batch: list[tuple[int, MetadataRecord]]) -> None:
        try:
            self.loader.handle_commit(batch)
        except MetadataListenerError:
            # The records are committed and the image is current; the listener logged its
            # own failure and the operation's answer is still true.
            pass

    async def _run(
        self,
        op: Callable[[MetadataImage], OpResult[R]],
        finish: Callable[[R, MetadataImage], R] | None = None,
    ) -> R:
        # Shielded so that a caller giving up (cancellation) cannot stop an operation between
        # its append and its replay, which would leave the image behind the log.
        task = asyncio.ensure_future(self._run_locked(op, finish))
        # If the caller gave up, nobody awaits the task: read its outcome so a failure
        # (typically "lost leadership") is not reported as never retrieved.
        task.add_done_callback(_consume_outcome)
        return await asyncio.shield(task)

    async def _run_locked(
        self,
        op: Callable[[MetadataImage], OpResult[R]],
        finish: Callable[[R, MetadataImage], R] | None,
    ) -> R:
        async with self._lock:
            if self._failure is not None:
                raise ControllerFailedError(
                    f"an earlier metadata append failed ({self._failure}); reload the log"
                ) from self._failure
            result = op(self.image)
            if result.records:
                encoded = [encode_record(record) for record in result.records]
                try:
                    last = await self._log.append(encoded)
                except NotControllerError:
                    raise
                except BaseException as exc:
                    self._failure = exc
                    raise
                first = last - len(result.records) + 1
                if not self._log.publishes_commits:
                    self._publish(list(zip(range(first, last + 1), result.records,
                                           strict=True)))
                elif self.image.offset < last:
                    raise RuntimeError(f"the metadata log committed offset {last} without "
                                       f"publishing it (the image is at {self.image.offset})")
            response = result.response
            return finish(response, self.image) if finish is not None else response

    # ----- topics -----

    async def create_topics(
        self, specs: Sequence[CreateTopicSpec], *, validate_only: bool = False
    ) -> list[CreateTopicResult]:
        return await self._run(
            lambda image: topics.create_topics(
                image, specs, settings=self.settings, rng=self._rng, validate_only=validate_only
            )
        )

    async def delete_topics(self, specs: Sequence[DeleteTopicSpec]) -> list[DeleteTopicResult]:
        return await self._run(lambda image: topics.delete_topics(image, specs))

    async def create_partitions(
        self, specs: Sequence[CreatePartitionsSpec], *, validate_only: bool = False
    ) -> list[CreatePartitionsResult]:
        return await self._run(
            lambda image: topics.create_partitions(
                image, specs, settings=self.settings, rng=self._rng, validate_only=validate_only
            )
        )

    # ----- configs -----

    async def alter_configs(
        self, resources: Sequence[AlterConfigsResource], *, validate_only: bool = False
    ) -> list[AlterConfigsResult]:
        return await self._run(
            lambda image: configs.alter_configs(image, resources, validate_only)
        )

    async def incremental_alter_configs(
        self, resources: Sequence[IncrementalAlterConfigsResource], *, validate_only: bool = False
    ) -> list[AlterConfigsResult]:
        return await self._run(
            lambda image: configs.incremental_alter_configs(image, resources, validate_only)
        )

    # ----- security -----

    async def alter_user_scram_credentials(
        self, deletions: Sequence[ScramCredentialDeletion],
        upsertions: Sequence[ScramCredentialUpsertion],
    ) -> list[AlterScramCredentialResult]:
        return await self._run(
            lambda image: scram.alter_user_scram_credentials(image, deletions, upsertions))

    async def create_acls(self, acls: Sequence[StandardAcl]) -> list[CreateAclResult]:
        return await self._run(lambda image: acl_ops.create_acls(image, acls, self._rng))

    async def delete_acls(self, filters: Sequence[AclFilter]) -> list[DeleteAclsResult]:
        return await self._run(lambda image: acl_ops.delete_acls(image, filters))

    async def alter_client_quotas(self, changes: Sequence[ClientQuotaChange]
                                  ) -> AlterClientQuotasResult:
        return await self._run(
            lambda image: client_quotas.alter_client_quotas(image, changes))

    # ----- feature levels -----

    async def update_features(self, updates: Sequence[FeatureUpdate], *,
                              validate_only: bool = False) -> UpdateFeaturesResult:
        return await self._run(lambda image: features.update_features(
            image, updates, validate_only, node_id=self.settings.node_id))

    # ----- brokers -----

    async def register_broker(
        self,
        broker_id: int,
        incarnation_id: str,
        listeners: Sequence[Listener | tuple[str, str, int]],
        rack: str | None = None,
        previous_shutdown_clean: bool = True,
    ) -> RegisterBrokerResult:
        request = RegisterBrokerRequest(
            broker_id,
            incarnation_id,
            tuple(x if isinstance(x, Listener) else Listener(*x) for x in listeners),
            rack,
            previous_shutdown_clean,
        )

        def with_epoch(result: RegisterBrokerResult, image: MetadataImage) -> RegisterBrokerResult:
            # The epoch is the offset the registration got, known only after the append.
            if result.error_code == 0 and result.broker_epoch == -1:
                return dataclasses.replace(result, broker_epoch=image.brokers[broker_id].epoch)
            return result

        return await self._run(lambda image: brokers.register_broker(image, request), with_epoch)

    async def fence_broker(self, broker_id: int, broker_epoch: int | None = None) -> BrokerResult:
        return await self._run(lambda image: brokers.fence_broker(image, broker_id, broker_epoch))

    async def begin_controlled_shutdown(
        self, broker_id: int, broker_epoch: int | None = None
    ) -> BrokerResult:
        return await self._run(
            lambda image: brokers.begin_controlled_shutdown(image, broker_id, broker_epoch)
        )

    async def unfence_broker(
        self, broker_id: int, broker_epoch: int | None = None
    ) -> BrokerResult:
        return await self._run(
            lambda image: brokers.unfence_broker(image, broker_id, broker_epoch)
        )

    async def unregister_broker(self, broker_id: int) -> BrokerResult:
        return await self._run(lambda image: brokers.unregister_broker(image, broker_id))

    async def allocate_producer_ids(
        self, broker_id: int, broker_epoch: int | None = None
    ) -> ProducerIdsResult:
        return await self._run(
            lambda image: brokers.allocate_producer_ids(
                image, broker_id, broker_epoch, self.settings.producer_id_block_size
            )
        )

    # ----- partitions -----

    async def alter_partition(
        self, broker_id: int, broker_epoch: int, items: Sequence[AlterPartitionItem]
    ) -> AlterPartitionResult:
        return await self._run(
            lambda image: partitions.alter_partition(image, broker_id, broker_epoch, items)
        )

    async def elect_leaders(self, election_type: ElectionType,
                            partitions: Sequence[tuple[str, int]] | None
                            ) -> list[ElectLeadersResult]:
        def op(image: MetadataImage) -> OpResult[list[ElectLeadersResult]]:
            records, results = election.elect_leaders(image, election_type, partitions)
            return OpResult(tuple(records), results)

        return await self._run(op)

    async def alter_partition_reassignments(
        self, requests: Sequence[ReassignmentRequest], *,
        allow_replication_factor_change: bool = True,
    ) -> list[ReassignmentResult]:
        return await self._run(lambda image: reassignment.alter_partition_reassignments(
            image, requests, allow_replication_factor_change))

    async def elect_preferred_leaders(self) -> int:
        """Give partitions back to their preferred replica where it is ready; returns how
        many partitions moved."""
        def op(image: MetadataImage) -> OpResult[int]:
            records = election.elect_preferred_leaders(image)
            return OpResult(tuple(records), len(records))

        return await self._run(op)

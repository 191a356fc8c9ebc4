"""What brokers ask the controller, what it answers, and how a call can fail.

Requests and results are plain frozen values with Kafka's error codes (`kio`'s ErrorCode, an
int enum), so the broker's protocol handlers can translate them field by field. Brokers reach
the controller through ``ControllerApi``: the in-process QuorumController of a single node and
the gRPC ControllerClient of a quorum both satisfy it, so broker code depends on this module
only (docs/architecture.md, the import rule).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from odradek.controller.metadata import Listener, PartitionRegistration
from odradek.controller.metadata.acls import AclFilter, StandardAcl
from odradek.controller.metadata.client_quotas import ClientQuotaChange

# ----- topics -----


@dataclass(frozen=True)
class CreateTopicSpec:
    name: str
    num_partitions: int = -1  # -1: the controller's default
    replication_factor: int = -1  # -1: the controller's default
    # Explicit placement: partition id -> replica broker ids (leader first). When given,
    # num_partitions and replication_factor must be -1, as in Kafka.
    assignments: Mapping[int, Sequence[int]] = field(default_factory=dict)
    # A None value is Kafka's null, which CreateTopics refuses.
    configs: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateTopicResult:
    name: str
    error_code: int
    error_message: str | None = None
    topic_id: uuid.UUID | None = None
    num_partitions: int = -1
    replication_factor: int = -1
    # The configs set explicitly on the topic; defaults are not listed.
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteTopicSpec:
    """Name a topic either by name or by id (DeleteTopics v6+), not both."""

    name: str | None = None
    topic_id: uuid.UUID | None = None


@dataclass(frozen=True)
class DeleteTopicResult:
    name: str | None
    topic_id: uuid.UUID | None
    error_code: int
    error_message: str | None = None


@dataclass(frozen=True)
class CreatePartitionsSpec:
    name: str
    count: int  # the new total number of partitions
    # Replica lists for the new partitions only, in partition order; None: placed by us.
    assignments: Sequence[Sequence[int]] | None = None


@dataclass(frozen=True)
class CreatePartitionsResult:
    name: str
    error_code: int
    error_message: str | None = None


class ElectionType(enum.IntEnum):
    """Kafka's ElectLeaders election types."""

    PREFERRED = 0
    UNCLEAN = 1


@dataclass(frozen=True, slots=True)
class ElectLeadersResult:
    """One partition's election: error 0 when it got the leader asked for."""

    topic: str
    partition: int
    error_code: int
    error_message: str | None = None


# ----- partition reassignments (KIP-455) -----


@dataclass(frozen=True, slots=True)
class ReassignmentRequest:
    """One partition of an AlterPartitionReassignments request; `replicas` None cancels."""

    topic: str
    partition: int
    replicas: tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class ReassignmentResult:
    topic: str
    partition: int
    error_code: int
    error_message: str | None = None


# ----- configs -----


@dataclass(frozen=True)
class AlterConfigsResource:
    """Legacy AlterConfigs: `configs` becomes the resource's whole set of overrides."""

    resource_type: int
    resource_name: str
    configs: Mapping[str, str | None]


class AlterConfigOpType(enum.IntEnum):
    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


@dataclass(frozen=True)
class AlterConfigOp:
    name: str
    op: int  # AlterConfigOpType
    value: str | None = None


@dataclass(frozen=True)
class IncrementalAlterConfigsResource:
    resource_type: int
    resource_name: str
    ops: Sequence[AlterConfigOp]


@dataclass(frozen=True)
class AlterConfigsResult:
    resource_type: int
    resource_name: str
    error_code: int
    error_message: str | None = None


# ----- SCRAM credentials (KIP-554) -----


@dataclass(frozen=True)
class ScramCredentialDeletion:
    user: str
    mechanism: int  # Kafka's ScramMechanism type (controller/metadata/scram.py)


@dataclass(frozen=True)
class ScramCredentialUpsertion:
    """A new credential: the client salted and hashed the password (SaltedPassword); the
    controller derives what the log stores from it."""

    user: str
    mechanism: int
    iterations: int
    salt: bytes
    salted_password: bytes = field(repr=False)


@dataclass(frozen=True)
class AlterScramCredentialResult:
    user: str
    error_code: int
    error_message: str | None = None


# ----- ACLs -----


@dataclass(frozen=True)
class CreateAclResult:
    error_code: int
    error_message: str | None = None


@dataclass(frozen=True)
class DeleteAclsResult:
    """One DeleteAcls filter's outcome: the ACLs it matched, all removed."""

    error_code: int
    error_message: str | None = None
    matching: tuple[StandardAcl, ...] = ()


# ----- client quotas -----


@dataclass(frozen=True)
class AlterClientQuotasResult:
    """The whole request's outcome: the controller applies all of it or nothing."""

    error_code: int
    error_message: str | None = None


# ----- feature levels -----


class FeatureUpgradeType(enum.IntEnum):
    """Kafka's FeatureUpdate.UpgradeType codes (UpdateFeatures v1's upgrade_type); any
    other code is UNKNOWN, which the controller refuses."""

    UNKNOWN = 0
    UPGRADE = 1
    SAFE_DOWNGRADE = 2
    UNSAFE_DOWNGRADE = 3


@dataclass(frozen=True)
class FeatureUpdate:
    """One entry of UpdateFeatures: set ``feature`` to ``max_version_level`` (0 takes it
    out of the finalized features). ``upgrade_type`` is a FeatureUpgradeType code."""

    feature: str
    max_version_level: int
    upgrade_type: int = FeatureUpgradeType.UPGRADE


@dataclass(frozen=True)
class UpdateFeaturesResult:
    """The whole request's outcome, as Kafka's QuorumController applies it: all updates or
    none, the first refused one's error (Kafka's "Invalid update version ...").
    """

    error_code: int
    error_message: str | None = None


# ----- brokers -----


@dataclass(frozen=True)
class RegisterBrokerRequest:
    broker_id: int
    incarnation_id: str  # a UUID string, new for every start of the broker process
    listeners: tuple[Listener, ...]
    rack: str | None = None
    # False when the broker's previous process crashed (it may have lost its unflushed tail);
    # True after a clean shutdown or for a new broker.
    previous_shutdown_clean: bool = True


@dataclass(frozen=True)
class RegisterBrokerResult:
    error_code: int
    error_message: str | None = None
    # The broker's epoch, to be sent with its later requests; -1 on error. The pure operation
    # cannot know it for a new registration (it is the record's log offset), so the
    # QuorumController fills it in after the commit.
    broker_epoch: int = -1


@dataclass(frozen=True)
class BrokerResult:
    """Result of fence/unfence/unregister."""

    error_code: int
    error_message: str | None = None


@dataclass(frozen=True)
class ProducerIdsResult:
    error_code: int
    error_message: str | None = None
    first_producer_id: int = -1
    size: int = 0


# ----- partitions -----


@dataclass(frozen=True)
class AlterPartitionItem:
    """The leader's proposal for one partition, made against the state it last saw."""

    topic_id: uuid.UUID
    partition: int
    leader_epoch: int
    partition_epoch: int
    new_isr: Sequence[int]


@dataclass(frozen=True)
class AlterPartitionItemResult:
    topic_id: uuid.UUID
    partition: int
    error_code: int
    error_message: str | None = None
    # The partition's state after the change (also when nothing had to change); None on error.
    registration: PartitionRegistration | None = None


@dataclass(frozen=True)
class AlterPartitionResult:
    error_code: int  # request-level: STALE_BROKER_EPOCH, BROKER_ID_NOT_REGISTERED
    error_message: str | None = None
    partitions: tuple[AlterPartitionItemResult, ...] = ()


# ----- the broker's lease (ControllerClient only: a single node unfences itself) -----


@dataclass(frozen=True)
class Registration:
    result: RegisterBrokerResult
    # The controller's lease settings (0 when it did not say).
    heartbeat_interval_ms: int
    session_timeout_ms: int


@dataclass(frozen=True)
class HeartbeatResult:
    error_code: int
    error_message: str | None
    is_fenced: bool
    is_caught_up: bool
    should_shutdown: bool


@dataclass(frozen=True)
class MetadataBatch:
    """Committed records of whole operations, to be applied together (one loader commit).

    A snapshot batch replaces the image: its records, replayed into an empty image at their
    offsets, rebuild it, and the log continues after `last_offset`."""

    records: tuple[tuple[int, bytes], ...]
    snapshot: bool = False

    @property
    def last_offset(self) -> int:
        return self.records[-1][0]


# ----- how a call fails (rather than being answered with an error code) -----


@dataclass(frozen=True, slots=True)
class QuorumReplica:
    """One member of the metadata quorum as the leader sees it."""

    node_id: int
    # Offset after the last entry known to be on this replica; -1 unknown.
    log_end_offset: int
    # Milliseconds since the leader last heard from it; 0 the leader itself, -1 never.
    last_contact_ms_ago: int
    # Its data directory id (Kafka's Uuid text): recorded in the voter set for a voter, told
    # by an observer; "" unknown (a voter of the static controller.quorum.voters).
    directory_id: str = ""


@dataclass(frozen=True, slots=True)
class QuorumDescription:
    """The metadata quorum (Kafka's DescribeQuorum for ``__cluster_metadata``), as its
    leader describes it."""

    leader_id: int
    leader_epoch: int
    high_watermark: int
    voters: tuple[QuorumReplica, ...]
    observers: tuple[QuorumReplica, ...]
    # Each voter's controller listener (host, port); empty without a controller listener.
    voter_endpoints: Mapping[int, tuple[str, int]]


class ControllerCallFailed(Exception):
    """The call got no answer from an active controller; the request may or may not have
    been applied. Brokers answer the client with a retriable error."""


class VoterChangeFailed(Exception):
    """The controller quorum refused or could not complete a voter change (KIP-853).
    ``error`` is one of: duplicate_voter, voter_not_found, not_single_change, timed_out,
    not_leader, unsupported (the node has no controller quorum)."""

    def __init__(self, error: str, message: str) -> None:
        self.error = error
        super().__init__(message)


class ControllerUnavailable(ControllerCallFailed):
    """No active controller answered in time."""

    def __init__(self, what: str, seconds: float, tried: Sequence[str]) -> None:
        detail = "; ".join(tried) or "no controller was tried"
        super().__init__(
            f"no active controller answered {what} within {seconds:.1f}s (tried: {detail}); "
            "check that a majority of the controller voters is running and reachable"
        )
        self.tried = tuple(tried)


class ControllerError(ControllerCallFailed):
    """The active controller refused the call itself (malformed request, internal error).
    ``code`` is the gRPC status code's name."""

    def __init__(self, what: str, target: str, code: str, details: str) -> None:
        super().__init__(f"{what} failed on controller {target}: {code}: {details}")
        self.code = code
        self.details = details


class NotControllerError(ControllerCallFailed):
    """This node cannot append: it is not (or no longer) the active controller.

    Brokers answer NOT_CONTROLLER (41) so that the client or broker retries elsewhere.
    """

    error_code = 41


class ControllerFailedError(ControllerCallFailed):
    """An append failed in a way that leaves the log's content unknown; the controller
    refuses further operations until `load()` has re-read the log."""


# ----- the interface -----


class ControllerApi(Protocol):
    """The controller's operations as a broker calls them: a QuorumController in the same
    process (single node) or a ControllerClient reaching the active controller over gRPC.
    Failures to get an answer raise ControllerCallFailed."""

    async def create_topics(self, specs: Sequence[CreateTopicSpec], *,
                            validate_only: bool = False) -> list[CreateTopicResult]: ...

    async def delete_topics(self, specs: Sequence[DeleteTopicSpec]
                            ) -> list[DeleteTopicResult]: ...

    async def create_partitions(self, specs: Sequence[CreatePartitionsSpec], *,
                                validate_only: bool = False) -> list[CreatePartitionsResult]: ...

    async def elect_leaders(self, election_type: ElectionType,
                            partitions: Sequence[tuple[str, int]] | None
                            ) -> list[ElectLeadersResult]:
        """ElectLeaders: ``partitions`` None means every partition (and then only those
        where an election was needed are reported)."""
        ...

    async def alter_partition_reassignments(
        self, requests: Sequence[ReassignmentRequest], *,
        allow_replication_factor_change: bool = True,
    ) -> list[ReassignmentResult]:
        """AlterPartitionReassignments: start, change or cancel (replicas None)."""
        ...

    async def alter_configs(self, resources: Sequence[AlterConfigsResource], *,
                            validate_only: bool = False) -> list[AlterConfigsResult]: ...

    async def incremental_alter_configs(
        self, resources: Sequence[IncrementalAlterConfigsResource], *,
        validate_only: bool = False) -> list[AlterConfigsResult]: ...

    async def alter_user_scram_credentials(
        self, deletions: Sequence[ScramCredentialDeletion],
        upsertions: Sequence[ScramCredentialUpsertion]) -> list[AlterScramCredentialResult]:
        """AlterUserScramCredentials: one result per user named."""
        ...

    async def create_acls(self, acls: Sequence[StandardAcl]) -> list[CreateAclResult]:
        """CreateAcls of ACLs the broker checked: one result per ACL, in order."""
        ...

    async def delete_acls(self, filters: Sequence[AclFilter]) -> list[DeleteAclsResult]:
        """DeleteAcls: one result per filter, in order, with the ACLs it removed."""
        ...

    async def alter_client_quotas(self, changes: Sequence[ClientQuotaChange]
                                  ) -> AlterClientQuotasResult:
        """The ops of AlterClientQuotas entries the broker checked, applied together."""
        ...

    async def update_features(self, updates: Sequence[FeatureUpdate], *,
                              validate_only: bool = False) -> UpdateFeaturesResult:
        """UpdateFeatures: finalize new feature levels, all of them or none."""
        ...

    async def unregister_broker(self, broker_id: int) -> BrokerResult:
        """UnregisterBroker: forget the broker's registration, moving leadership and ISR
        membership off it first (BROKER_ID_NOT_REGISTERED for an unknown id)."""
        ...

    async def register_broker(self, broker_id: int, incarnation_id: str,
                              listeners: Sequence[Listener | tuple[str, str, int]],
                              rack: str | None = None,
                              previous_shutdown_clean: bool = True) -> RegisterBrokerResult: ...

    async def allocate_producer_ids(self, broker_id: int, broker_epoch: int | None = None
                                    ) -> ProducerIdsResult: ...

    async def alter_partition(self, broker_id: int, broker_epoch: int,
                              items: Sequence[AlterPartitionItem]) -> AlterPartitionResult: ...


class BrokerLeaseApi(ControllerApi, Protocol):
    """What a broker of a controller quorum also needs: registration with the lease
    settings, heartbeats and the committed metadata log (ControllerClient)."""

    async def register(self, broker_id: int, incarnation_id: str,
                       listeners: Sequence[Listener | tuple[str, str, int]],
                       rack: str | None = None,
                       previous_shutdown_clean: bool = True) -> Registration: ...

    async def heartbeat(self, broker_id: int, broker_epoch: int, metadata_offset: int, *,
                        want_fence: bool = False, want_shutdown: bool = False,
                        timeout: float | None = None) -> HeartbeatResult: ...

    def fetch_metadata(self, from_offset: int) -> AsyncIterator[MetadataBatch]: ...

    async def hold_liveness(self, broker_id: int, broker_epoch: int) -> int: ...

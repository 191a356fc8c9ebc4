"""The quorum controller: metadata operations over the metadata log.

Pure operations live in topics.py, configs.py, brokers.py and partitions.py; QuorumController
runs them one at a time, appends their records to a MetadataLog and replays them.
"""

from odradek.controller.quorum.api import (
    AlterConfigOp,
    AlterConfigOpType,
    AlterConfigsResource,
    AlterConfigsResult,
    AlterPartitionItem,
    AlterPartitionItemResult,
    AlterPartitionResult,
    BrokerResult,
    ControllerSettings,
    CreatePartitionsResult,
    CreatePartitionsSpec,
    CreateTopicResult,
    CreateTopicSpec,
    DeleteTopicResult,
    DeleteTopicSpec,
    IncrementalAlterConfigsResource,
    OpResult,
    ProducerIdsResult,
    RegisterBrokerRequest,
    RegisterBrokerResult,
)
from odradek.controller.quorum.controller import ControllerFailedError, QuorumController
from odradek.controller.quorum.local_log import LocalMetadataLog, MetadataLogError
from odradek.controller.quorum.log import MetadataLog, NotControllerError

__all__ = [
    "AlterConfigOp",
    "AlterConfigOpType",
    "AlterConfigsResource",
    "AlterConfigsResult",
    "AlterPartitionItem",
    "AlterPartitionItemResult",
    "AlterPartitionResult",
    "BrokerResult",
    "ControllerFailedError",
    "ControllerSettings",
    "CreatePartitionsResult",
    "CreatePartitionsSpec",
    "CreateTopicResult",
    "CreateTopicSpec",
    "DeleteTopicResult",
    "DeleteTopicSpec",
    "IncrementalAlterConfigsResource",
    "LocalMetadataLog",
    "MetadataLog",
    "MetadataLogError",
    "NotControllerError",
    "OpResult",
    "ProducerIdsResult",
    "QuorumController",
    "RegisterBrokerRequest",
    "RegisterBrokerResult",
]

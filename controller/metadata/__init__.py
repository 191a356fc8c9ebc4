"""Cluster metadata shared by controllers and brokers: records -> delta -> immutable image."""

from odradek.controller.metadata.delta import (
    LocalReplicaChanges,
    MetadataDelta,
    MetadataReplayError,
    merge_partition_change,
)
from odradek.controller.metadata.gen import metadata_pb2 as records_pb2
from odradek.controller.metadata.image import (
    BROKER_RESOURCE,
    NO_LEADER,
    TOPIC_RESOURCE,
    BrokerEndpoint,
    BrokerRegistration,
    ConfigResource,
    Listener,
    MetadataImage,
    PartitionRegistration,
    TopicImage,
)
from odradek.controller.metadata.loader import (
    MetadataListener,
    MetadataListenerError,
    MetadataLoader,
)
from odradek.controller.metadata.records import (
    MetadataRecord,
    RecordDecodeError,
    decode_record,
    encode_record,
)

__all__ = [
    "BROKER_RESOURCE",
    "NO_LEADER",
    "TOPIC_RESOURCE",
    "BrokerEndpoint",
    "BrokerRegistration",
    "ConfigResource",
    "Listener",
    "LocalReplicaChanges",
    "MetadataDelta",
    "MetadataImage",
    "MetadataListener",
    "MetadataListenerError",
    "MetadataLoader",
    "MetadataRecord",
    "MetadataReplayError",
    "PartitionRegistration",
    "RecordDecodeError",
    "TopicImage",
    "decode_record",
    "encode_record",
    "merge_partition_change",
    "records_pb2",
]

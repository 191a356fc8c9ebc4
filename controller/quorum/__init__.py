"""The quorum controller: metadata operations over the metadata log.

Pure operations live in topics.py, configs.py, brokers.py and partitions.py; QuorumController
runs them one at a time, appends their records to a MetadataLog and replays them. What
brokers send and get back is in odradek.controller.metadata.requests.
"""

from odradek.controller.quorum.api import ControllerSettings, OpResult
from odradek.controller.quorum.controller import QuorumController
from odradek.controller.quorum.local_log import LocalMetadataLog, MetadataLogError
from odradek.controller.quorum.log import MetadataLog

__all__ = [
    "ControllerSettings",
    "LocalMetadataLog",
    "MetadataLog",
    "MetadataLogError",
    "OpResult",
    "QuorumController",
]

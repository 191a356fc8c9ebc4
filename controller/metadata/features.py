"""Feature levels (KIP-584): what this software supports and what a log without a
FeatureLevelRecord for a feature finalizes.

Shared by the controller, which checks UpdateFeatures against ``SUPPORTED_FEATURES`` and
writes FeatureLevelRecords, and by brokers, which advertise both in ApiVersions v3+ and run
transactions at the finalized ``transaction.version``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

TRANSACTION_VERSION = "transaction.version"

# name -> (lowest, highest) level this software supports. Controllers and brokers are the
# same software, so the controller's range is every broker's.
SUPPORTED_FEATURES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {TRANSACTION_VERSION: (0, 2)})

# The levels of a log that holds no FeatureLevelRecord for a feature. Every Odradek broker
# finalized transaction.version 2 before the level was kept in the metadata log, so such a
# log (all logs written by earlier versions, and a new cluster's) must keep running at 2:
# reading it as 0, Kafka's default for a feature never finalized, would silently turn
# transactions v2 off for Kafka 4 clients after an upgrade.
DEFAULT_FINALIZED: Mapping[str, int] = MappingProxyType({TRANSACTION_VERSION: 2})


def finalized_level(finalized: Mapping[str, int], name: str) -> int:
    """A feature's finalized level; 0 (not finalized) when absent, as in Kafka: the image's
    map already holds the defaults of features the log never set."""
    return finalized.get(name, 0)

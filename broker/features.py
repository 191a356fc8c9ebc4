"""The feature levels this broker supports and the cluster runs at, as ApiVersions v3+
tells clients (KIP-584).

``transaction.version`` 2 is transactions v2 (KIP-890 part 2): Produce v12 adds a
transaction's partitions itself, TxnOffsetCommit v5 its offsets partition, and EndTxn v5
bumps the producer epoch at every transaction. Kafka 4's Java client uses it when the
cluster finalizes level 2; librdkafka and the Python clients keep the classic protocol,
which stays served.

The finalized levels are kept in the metadata log (FeatureLevelRecord, changed with
UpdateFeatures, e.g. Kafka's ``kafka-features.sh``) and read from the node's metadata
image. A log without a record for ``transaction.version`` runs at 2, the level every Odradek
broker finalized before the level was kept (controller/metadata/features.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from odradek.controller.metadata.features import (
    SUPPORTED_FEATURES,
    TRANSACTION_VERSION,
    finalized_level,
)
from odradek.controller.metadata.image import MetadataImage

__all__ = ["SUPPORTED", "TRANSACTION_VERSION", "api_versions_fields",
           "transaction_version_level"]

# name -> (lowest, highest) level this broker supports; the controller checks updates
# against the same ranges (every node runs the same software).
SUPPORTED: Mapping[str, tuple[int, int]] = SUPPORTED_FEATURES


def transaction_version_level(image: MetadataImage) -> int:
    """The cluster's finalized transaction.version, which the transaction coordinator
    writes and aborts with."""
    return finalized_level(image.finalized_features, TRANSACTION_VERSION)


def api_versions_fields(image: MetadataImage) -> dict[str, object]:
    """ApiVersions' feature fields from ``image``. The epoch is the image's offset: it
    orders the answers of different brokers (clients keep the newest), and grows with every
    record, a FeatureLevelRecord among them."""
    return {
        "supported_features": [{"name": n, "min_version": lo, "max_version": hi}
                               for n, (lo, hi) in SUPPORTED.items()],
        "finalized_features_epoch": max(image.offset, 0),
        # As Kafka's: a feature at level 0 is not finalized and not listed.
        "finalized_features": [{"name": n, "max_version_level": level,
                                "min_version_level": level}
                               for n, level in sorted(image.finalized_features.items())],
    }

"""The feature levels this broker supports and the cluster runs at, as ApiVersions v3+
tells clients (KIP-584).

``transaction.version`` 2 is transactions v2 (KIP-890 part 2): Produce v12 adds a
transaction's partitions itself, TxnOffsetCommit v5 its offsets partition, and EndTxn v5
bumps the producer epoch at every transaction. Kafka 4's Java client uses it when the
cluster finalizes level 2; librdkafka and the Python clients keep the classic protocol,
which stays served. The level is not yet kept in the metadata log (there is no
UpdateFeatures): every broker of this version finalizes the same one.
"""

from __future__ import annotations

TRANSACTION_VERSION = "transaction.version"
# name -> (lowest, highest) level this broker supports.
SUPPORTED: dict[str, tuple[int, int]] = {TRANSACTION_VERSION: (0, 2)}
# name -> the level the cluster runs at.
FINALIZED: dict[str, int] = {TRANSACTION_VERSION: 2}


def api_versions_fields(epoch: int) -> dict[str, object]:
    """ApiVersions' feature fields; ``epoch`` orders the answers of different brokers
    (clients keep the newest), the metadata offset of the image the broker serves."""
    return {
        "supported_features": [{"name": n, "min_version": lo, "max_version": hi}
                               for n, (lo, hi) in SUPPORTED.items()],
        "finalized_features_epoch": max(epoch, 0),
        "finalized_features": [{"name": n, "max_version_level": level,
                                "min_version_level": level}
                               for n, level in FINALIZED.items()],
    }

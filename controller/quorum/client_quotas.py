"""AlterClientQuotas as Kafka's ClientQuotaControlManager applies it.

Brokers check each entry first (odradek.broker.security.quotas: Kafka's validation and
messages, the duplicate rules, validate_only) and send the ops of the valid entries. Here
they are compared with this image, where every earlier change is: only values that differ
and removals of keys that are set become records, all in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataImage, MetadataRecord
from odradek.controller.metadata.client_quotas import ClientQuotaChange, QuotaEntityKey
from odradek.controller.metadata.records import client_quota_record
from odradek.controller.metadata.requests import AlterClientQuotasResult
from odradek.controller.quorum.api import NONE, OpResult


def alter_client_quotas(image: MetadataImage, changes: Sequence[ClientQuotaChange]
                        ) -> OpResult[AlterClientQuotasResult]:
    bad = next((c for c in changes if not c.is_storable()), None)
    if bad is not None:
        return OpResult((), AlterClientQuotasResult(
            ErrorCode.invalid_request, f"Invalid client quota change {bad}: nothing applied"))
    current: dict[QuotaEntityKey, dict[str, float]] = {}
    records: list[MetadataRecord] = []
    for change in changes:
        values = current.get(change.entity)
        if values is None:
            values = current[change.entity] = dict(image.client_quotas.get(change.entity, {}))
        if change.value is None:
            if change.key in values:
                del values[change.key]
                records.append(client_quota_record(change.entity, change.key, None))
        elif values.get(change.key) != change.value:
            values[change.key] = change.value
            records.append(client_quota_record(change.entity, change.key, change.value))
    return OpResult(tuple(records), AlterClientQuotasResult(NONE))

"""The broker's quota model (``quotas.py``) over the client quotas of the cluster metadata
(``odradek.controller.metadata.client_quotas``): keeping a ``QuotaConfigs`` current with the
metadata image."""

from __future__ import annotations

from collections.abc import Mapping

from odradek.broker.security.quotas import QuotaConfigs, QuotaEntity
from odradek.controller.metadata.client_quotas import QuotaEntityKey


def quota_configs_of(configs: QuotaConfigs, before: Mapping[QuotaEntityKey, Mapping[str, float]],
                     after: Mapping[QuotaEntityKey, Mapping[str, float]]) -> QuotaConfigs:
    """``configs`` (the quotas of the image that held ``before``) brought to ``after``: the
    same object when the image's quotas did not change (it then shares the mapping), so
    readers can tell a change by identity; otherwise rebuilt, which costs O(entities) and
    happens only when an operator changes a quota."""
    if after is before:
        return configs
    return QuotaConfigs({QuotaEntity.from_wire(entity): values
                         for entity, values in after.items()})

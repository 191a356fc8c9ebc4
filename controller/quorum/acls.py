"""CreateAcls and DeleteAcls as Kafka's AclControlManager does them.

Brokers check each ACL and filter first (odradek.broker.security.acl, Kafka's messages) and
send only the valid ones. Here an ACL equal to one that exists, or to an earlier one of the
same request, succeeds without a second copy; each new ACL gets a fresh id. DeleteAcls
matches its filters against this image, so it removes every ACL committed before it; an
ACL matched by several filters is listed under each and removed once. Each request is one
metadata batch.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataImage, MetadataRecord
from odradek.controller.metadata.acls import AclFilter, StandardAcl
from odradek.controller.metadata.records import (
    access_control_entry_record,
    remove_access_control_entry_record,
)
from odradek.controller.metadata.requests import CreateAclResult, DeleteAclsResult
from odradek.controller.quorum.api import NONE, OpResult


def _new_id(rng: random.Random, taken: set[uuid.UUID]) -> uuid.UUID:
    while True:
        acl_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        if acl_id not in taken:
            taken.add(acl_id)
            return acl_id


def create_acls(image: MetadataImage, acls: Sequence[StandardAcl], rng: random.Random
                ) -> OpResult[list[CreateAclResult]]:
    existing = set(image.acls.values())
    taken = set(image.acls)
    records: list[MetadataRecord] = []
    results: list[CreateAclResult] = []
    for acl in acls:
        if not acl.is_storable():
            results.append(CreateAclResult(ErrorCode.invalid_request,
                                           f"Invalid ACL {acl}: not one an ACL may be"))
            continue
        if acl not in existing:
            existing.add(acl)
            records.append(access_control_entry_record(_new_id(rng, taken), acl))
        results.append(CreateAclResult(NONE))
    return OpResult(tuple(records), results)


def delete_acls(image: MetadataImage, filters: Sequence[AclFilter]
                ) -> OpResult[list[DeleteAclsResult]]:
    removed: dict[uuid.UUID, None] = {}  # ordered, once per ACL
    results = []
    for acl_filter in filters:
        matched = [(acl_id, acl) for acl_id, acl in image.acls.items()
                   if acl_filter.matches(acl)]
        removed.update(dict.fromkeys(acl_id for acl_id, _ in matched))
        results.append(DeleteAclsResult(NONE, None, tuple(acl for _, acl in matched)))
    return OpResult(tuple(remove_access_control_entry_record(i) for i in removed), results)

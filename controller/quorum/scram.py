"""AlterUserScramCredentials (KIP-554) as Kafka's ScramControlManager does it.

Each user gets one result. A user named twice in one request (two deletions, two
upsertions, or one of each, whatever the mechanisms) is refused with DUPLICATE_RESOURCE,
because the order in which two changes of one user apply would be a guess. The rest of the
request is applied as one batch, so brokers never see half of it.
"""

from __future__ import annotations

from collections.abc import Sequence

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataImage, MetadataRecord
from odradek.controller.metadata.records import (
    remove_user_scram_credential_record,
    user_scram_credential_record,
)
from odradek.controller.metadata.requests import (
    AlterScramCredentialResult,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from odradek.controller.metadata.scram import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    credential_from_salted_password,
    mechanism_name,
)
from odradek.controller.quorum.api import NONE, ApiError, OpResult

# Kafka's messages, word for word: clients and tests match on them.
TWICE = "A user credential cannot be altered twice in the same request"


def _check_user_and_mechanism(user: str, mechanism: int) -> str:
    if not user:
        raise ApiError(ErrorCode.unacceptable_credential, "Username must not be empty")
    name = mechanism_name(mechanism)
    if name is None:
        raise ApiError(ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism")
    return name


def _check_deletion(image: MetadataImage, deletion: ScramCredentialDeletion) -> None:
    name = _check_user_and_mechanism(deletion.user, deletion.mechanism)
    if (deletion.user, name) not in image.scram_credentials:
        raise ApiError(ErrorCode.resource_not_found,
                       "Attempt to delete a user credential that does not exist")


def _check_upsertion(upsertion: ScramCredentialUpsertion) -> None:
    _check_user_and_mechanism(upsertion.user, upsertion.mechanism)
    if upsertion.iterations < MIN_ITERATIONS:
        raise ApiError(ErrorCode.unacceptable_credential, "Too few iterations")
    if upsertion.iterations > MAX_ITERATIONS:
        raise ApiError(ErrorCode.unacceptable_credential, "Too many iterations")


def alter_user_scram_credentials(
    image: MetadataImage,
    deletions: Sequence[ScramCredentialDeletion],
    upsertions: Sequence[ScramCredentialUpsertion],
) -> OpResult[list[AlterScramCredentialResult]]:
    # Results in the order users first appear (deletions first, as Kafka reads them).
    order: list[str] = []
    errors: dict[str, ApiError] = {}
    to_delete: dict[str, ScramCredentialDeletion] = {}
    to_upsert: dict[str, ScramCredentialUpsertion] = {}

    def seen(user: str) -> bool:
        if user in errors:
            return True  # its first error stands
        if user in to_delete or user in to_upsert:
            to_delete.pop(user, None)
            to_upsert.pop(user, None)
            errors[user] = ApiError(ErrorCode.duplicate_resource, TWICE)
            return True
        order.append(user)
        return False

    for deletion in deletions:
        if seen(deletion.user):
            continue
        try:
            _check_deletion(image, deletion)
        except ApiError as err:
            errors[deletion.user] = err
        else:
            to_delete[deletion.user] = deletion
    for upsertion in upsertions:
        if seen(upsertion.user):
            continue
        try:
            _check_upsertion(upsertion)
        except ApiError as err:
            errors[upsertion.user] = err
        else:
            to_upsert[upsertion.user] = upsertion

    records: list[MetadataRecord] = []
    results: list[AlterScramCredentialResult] = []
    for user in order:
        refused = errors.get(user)
        if refused is not None:
            results.append(AlterScramCredentialResult(user, refused.code, refused.message))
            continue
        if user in to_delete:
            records.append(remove_user_scram_credential_record(user,
                                                               to_delete[user].mechanism))
        else:
            up = to_upsert[user]
            name = mechanism_name(up.mechanism)
            assert name is not None  # checked above
            credential = credential_from_salted_password(name, up.salted_password, up.salt,
                                                         up.iterations)
            records.append(user_scram_credential_record(
                user, up.mechanism, credential.salt, credential.stored_key,
                credential.server_key, credential.iterations))
        results.append(AlterScramCredentialResult(user, NONE))
    return OpResult(tuple(records), results)

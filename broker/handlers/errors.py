"""Map storage errors to the Kafka error codes clients act on."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from odradek.storage.errors import StorageError


def error_code_for(exc: Exception) -> ErrorCode:
    # Every storage error names the Kafka error code it stands for.
    if isinstance(exc, StorageError):
        return ErrorCode(exc.error_code)
    return ErrorCode.unknown_server_error

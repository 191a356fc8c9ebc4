"""Kafka's topic name rules, shared by the controller (create) and brokers (auto-create)."""

from __future__ import annotations

import re

MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def topic_name_error(name: str) -> str | None:
    """Why `name` is not a legal topic name, or None when it is."""
    if not name:
        return "Topic name is illegal, it can't be empty."
    if name in (".", ".."):
        return 'Topic name cannot be "." or "..".'
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        return (
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} "
            f"characters ({len(name)} given)."
        )
    if _LEGAL_NAME.fullmatch(name) is None:
        return (
            f"Topic name {name!r} is illegal, it contains a character other than "
            "ASCII alphanumerics, '.', '_' and '-'."
        )
    return None


def collision_key(name: str) -> str:
    """Kafka metric names replace '.' with '_', so 'a.b' and 'a_b' may not both exist."""
    return name.replace(".", "_")

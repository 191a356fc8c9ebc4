"""Small atomically replaced files: write a temp file, fsync it, rename, fsync the dir.

A reader therefore sees either the old or the new content, never a torn mix. ``sync=False``
skips both fsyncs: a process crash still sees the old or the new file, a machine crash may
leave an empty one; only files that recovery rebuilds after an unclean shutdown are written
that way (the leader-epoch checkpoint).
"""

from __future__ import annotations

import os
from pathlib import Path

from odradek.storage.errors import CheckpointCorruptError

TMP_SUFFIX = ".tmp"
_VERSION = 0


def fsync_dir(path: Path) -> None:
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def fsync_file(path: Path) -> None:
    _fsync(path, os.O_RDONLY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def read_lines(path: Path) -> list[str] | None:
    """The file's lines after checking its version line; None if the file is absent."""
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointCorruptError(f"cannot read checkpoint {path}: {e}") from e
    lines = text.splitlines()
    if not lines or lines[0].strip() != str(_VERSION):
        raise CheckpointCorruptError(f"checkpoint {path} has no version {_VERSION} header")
    return lines[1:]


def read_offset(path: Path) -> int | None:
    """Read a single-value checkpoint (``0\\n<value>\\n``); None if absent."""
    lines = read_lines(path)
    if lines is None:
        return None
    try:
        (value,) = lines
        return int(value)
    except ValueError as e:
        raise CheckpointCorruptError(f"checkpoint {path} is malformed: {lines!r}") from e


def write_offset(path: Path, value: int) -> None:
    write_atomic(path, f"{_VERSION}\n{value}\n".encode())


def write_lines(path: Path, lines: list[str], *, sync: bool = True) -> None:
    write_atomic(path, "".join(f"{line}\n" for line in [str(_VERSION), *lines]).encode(),
                 sync=sync)

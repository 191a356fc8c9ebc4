from __future__ import annotations

from pathlib import Path

import pytest

from odradek.storage import EpochEntry, LeaderEpochCache
from odradek.storage.errors import CheckpointCorruptError


def cache(tmp_path: Path, *entries: tuple[int, int], leo: int = 100) -> LeaderEpochCache:
    c = LeaderEpochCache(tmp_path / "leader-epoch-checkpoint", log_end_offset=lambda: leo)
    for epoch, start in entries:
        c.assign(epoch, start)
    return c


def test_assign_and_latest(tmp_path: Path) -> None:
    c = cache(tmp_path)
    assert c.latest_epoch == -1 and c.latest_entry is None
    assert c.assign(1, 0)
    assert not c.assign(1, 5)  # same epoch, later offset: no change
    assert c.assign(3, 10)
    assert c.latest_epoch == 3
    assert c.entries == (EpochEntry(1, 0), EpochEntry(3, 10))
    assert c.epoch_for_offset(9) == 1 and c.epoch_for_offset(10) == 3


def test_assign_drops_non_monotonic_entries(tmp_path: Path) -> None:
    c = cache(tmp_path, (1, 0), (3, 10), (4, 20))
    c.assign(2, 15)  # epochs >= 2 removed, then 2 appended
    assert c.entries == (EpochEntry(1, 0), EpochEntry(2, 15))
    c.assign(5, 5)  # start offsets >= 5 removed
    assert c.entries == (EpochEntry(1, 0), EpochEntry(5, 5))
    assert not c.assign(-1, 7)


def test_end_offset_for(tmp_path: Path) -> None:
    c = cache(tmp_path, (1, 0), (3, 10), (5, 20), leo=42)
    assert c.end_offset_for(5) == (5, 42)  # latest: log end offset
    assert c.end_offset_for(5, 50) == (5, 50)
    assert c.end_offset_for(1) == (1, 10)
    assert c.end_offset_for(3) == (3, 20)
    assert c.end_offset_for(2) == (1, 10)  # unknown: largest epoch <= 2
    assert c.end_offset_for(4) == (3, 20)
    assert c.end_offset_for(0) == (0, 0)  # below every epoch: first start offset
    assert c.end_offset_for(6) == (-1, -1)  # above the latest: undefined (as Kafka)
    assert c.end_offset_for(-1) == (-1, -1)


def test_end_offset_for_empty(tmp_path: Path) -> None:
    c = LeaderEpochCache(None)
    assert c.end_offset_for(0) == (-1, -1)


def test_truncate_from_end_and_start(tmp_path: Path) -> None:
    c = cache(tmp_path, (1, 0), (3, 10), (5, 20))
    c.truncate_from_end(20)
    assert c.entries == (EpochEntry(1, 0), EpochEntry(3, 10))
    c.truncate_from_end(15)
    assert c.latest_epoch == 3
    c.truncate_from_start(12)
    assert c.entries == (EpochEntry(3, 12),)
    c.assign(4, 30)
    c.truncate_from_start(5)  # nothing below: unchanged
    assert c.entries == (EpochEntry(3, 12), EpochEntry(4, 30))
    c.truncate_from_start(30)
    assert c.entries == (EpochEntry(4, 30),)
    c.clear()
    assert c.entries == ()


def test_persistence_format_and_reload(tmp_path: Path) -> None:
    c = cache(tmp_path, (1, 0), (3, 10))
    path = tmp_path / "leader-epoch-checkpoint"
    assert path.read_text() == "0\n2\n1 0\n3 10\n"
    assert not list(tmp_path.glob("*.tmp"))
    c.truncate_from_end(10)
    loaded = LeaderEpochCache.load(path)
    assert loaded.entries == (EpochEntry(1, 0),)
    assert LeaderEpochCache.load(tmp_path / "absent").entries == ()


@pytest.mark.parametrize(
    "text", ["", "1\n0\n", "0\n2\n1 0\n", "0\n1\nx y\n", "0\n2\n3 0\n1 5\n", "0\n1\n1\n"]
)
def test_corrupt_checkpoint(tmp_path: Path, text: str) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    path.write_text(text)
    with pytest.raises(CheckpointCorruptError):
        LeaderEpochCache.load(path)

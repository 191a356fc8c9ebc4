from __future__ import annotations

import re
from pathlib import Path

from kio.schema.index import api_key_map

from odradek.broker.node import handler_table

DOC = Path(__file__).resolve().parents[3] / "docs" / "compatibility.md"


def test_compatibility_table_matches_the_apis_served() -> None:
    rows = re.findall(r"^\| (\w+) \| (\d+) \| (\d+)-(\d+) \|$", DOC.read_text(), re.M)
    documented = {int(k): (name, int(lo), int(hi)) for name, k, lo, hi in rows}
    served = {k: ("".join(w.capitalize() for w in api_key_map[k].split("_")),
                  s.min_version, s.max_version) for k, s in handler_table().items()}
    assert documented == served


def test_every_served_version_has_a_kio_schema() -> None:
    from odradek.broker.kafka.codec import kio_versions

    for key, spec in handler_table().items():
        lo, hi = kio_versions(key)  # type: ignore[misc]
        assert lo <= spec.min_version <= spec.max_version <= hi, key


def test_unstable_versions_are_served_only_when_enabled() -> None:
    """Kafka 4.1 marks OffsetCommit and OffsetFetch v10 unstable: off by default (the table
    above), on with unstable.api.versions.enable; nothing else changes."""
    default, unstable = handler_table(), handler_table(unstable_versions=True)
    assert (default[8].max_version, default[9].max_version) == (9, 9)
    assert (unstable[8].max_version, unstable[9].max_version) == (10, 10)
    assert {k: (s.min_version, s.max_version) for k, s in default.items() if k not in (8, 9)} \
        == {k: (s.min_version, s.max_version) for k, s in unstable.items() if k not in (8, 9)}

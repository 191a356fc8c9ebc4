"""Schema classes of the hot APIs are loaded at start-up, off the event loop, not by the
first request that needs them (a 0.1-0.2 s stall of a broker taking over leaderships)."""

from __future__ import annotations

import subprocess
import sys

from odradek.broker.node import _warm_versions, handler_table


def test_the_newest_four_versions_of_each_hot_api_newest_first() -> None:
    pairs = _warm_versions(handler_table())
    assert (1, 18) in pairs and (1, 14) not in pairs  # Fetch v15-v18
    assert {(0, v) for v in (9, 10, 11, 12)} <= set(pairs)  # Produce v9-v12
    assert all(key in (0, 1, 2, 3, 8, 9, 10, 11, 12, 14, 18, 22, 24, 26) for key, _ in pairs)
    assert [v for _, v in pairs] == sorted((v for _, v in pairs), reverse=True)
    for key, v in pairs:  # nothing that is not served
        spec = handler_table()[key]
        assert spec.min_version <= v <= spec.max_version


def test_warm_loads_the_schema_modules() -> None:
    # In a fresh interpreter: this one may have loaded them already.
    code = ("import sys\n"
            "from odradek.broker.kafka import codec\n"
            "assert 'kio.schema.fetch.v18.response' not in sys.modules\n"
            "codec.warm([(1, 18), (999, 0)])\n"  # an unknown pair is skipped
            "assert 'kio.schema.fetch.v18.response' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

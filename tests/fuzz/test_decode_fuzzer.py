"""The decode fuzzer's corpus replays clean, and a short real fuzzing run finds nothing.

Every seed (requests captured from real clients) and every regression input (each one
crashed the fuzzer once; corpus/regressions/README.md says why) goes through the same
harness the fuzzer runs, in this process: framing, decoding, the walk/native-reader
agreement, and dispatch to the real handlers of a real in-process node. Then a short
atheris run in a subprocess must exit 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from odradek.broker.kafka import codec
from odradek.storage.batch import CRC_POS
from tests.fuzz.batch_crc import fill_zero_crcs, with_batch_crcs
from tests.fuzz.decode_fuzzer import REGRESSIONS, REPO, SEEDS, input_files
from tests.fuzz.target import FuzzTarget, chunks

INPUTS = input_files([SEEDS, REGRESSIONS])


@pytest.fixture(scope="module")
def target() -> Iterator[FuzzTarget]:
    t = FuzzTarget()
    yield t
    t.close()


def test_the_corpus_is_there() -> None:
    assert len(input_files([SEEDS])) >= 100, "run python -m tests.fuzz.capture_seeds"
    assert input_files([REGRESSIONS])


@pytest.mark.parametrize("path", INPUTS, ids=[str(p.relative_to(SEEDS.parent)) for p in INPUTS])
def test_corpus_input_replays_clean(target: FuzzTarget, path: Path) -> None:
    target(path.read_bytes())


def test_seeds_reach_the_handlers(target: FuzzTarget) -> None:
    """Captured requests decode and are handled: a seed set that no longer decodes (a
    client or kio upgrade) would leave the fuzzer mutating garbage."""
    before = target.stats["decoded"]
    for path in input_files([SEEDS]):
        target(path.read_bytes())
    apis = {k for k in target.stats if k.startswith("api-")}
    assert target.stats["decoded"] - before >= len(input_files([SEEDS]))
    assert len(apis) >= 20, sorted(apis)


def test_chunks_cover_the_input_in_order() -> None:
    for n in range(0, 300, 7):
        data = bytes(range(256))[:n] * 3
        assert b"".join(chunks(data)) == data
    assert any(len(chunks(bytes([i]) * 64)) > 1 for i in range(32))


def test_zero_batch_crcs_are_filled_in() -> None:
    served = {0: (3, 11)}
    produce = []
    for path in input_files([SEEDS]):
        frame = path.read_bytes()[4:]
        if frame[:2] == b"\0\0":
            produce.append(codec.decode_request(frame, served).body)
    records = next(pd.records for body in produce for t in body.topic_data
                   for pd in t.partition_data if pd.records)
    assert fill_zero_crcs(bytes(records)) is None  # real CRCs are left alone
    zeroed = bytearray(records)
    zeroed[CRC_POS:CRC_POS + 4] = bytes(4)
    assert fill_zero_crcs(bytes(zeroed)) == records
    body = produce[0]
    assert with_batch_crcs(0, body) is body


@pytest.mark.timeout(180)
def test_a_short_fuzzing_run_finds_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.decode_fuzzer", "--runs", "20000",
         "--max-seconds", "30", "--jobs", "1", "--seed", "1", "--quiet",
         "--artifacts", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "decode fuzzer:" in proc.stdout
    assert not list(tmp_path.glob("crash-*"))
    # Coverage feedback works: the seeds alone reach over a thousand edges of the product
    # (with instrumentation of the wrong package names it said 0, and mutated blindly).
    edges = int(re.search(r"coverage (\d+) edges", proc.stdout).group(1))  # type: ignore[union-attr]
    assert edges > 1000, proc.stdout

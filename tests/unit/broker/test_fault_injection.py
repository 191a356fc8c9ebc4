"""The broker's fault injection switch (broker/fault_injection.py): off unless the node's
environment names a known fault, refused when it names an unknown one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from odradek.broker import fault_injection


def test_nothing_is_injected_by_default() -> None:
    if fault_injection.ENV not in os.environ:
        assert fault_injection.ACTIVE == frozenset()
        assert not fault_injection.read_committed_past_lso


def test_known_names_are_parsed_and_unknown_ones_refused() -> None:
    assert fault_injection._parse(" read-committed-past-lso ,") == {
        fault_injection.READ_COMMITTED_PAST_LSO}
    with pytest.raises(RuntimeError, match="unknown fault lso-past-read.*unset it"):
        fault_injection._parse("read-committed-past-lso,lso-past-read")


def test_a_node_process_reads_it_from_its_environment() -> None:
    env = {**os.environ, fault_injection.ENV: fault_injection.READ_COMMITTED_PAST_LSO}
    out = subprocess.run(
        [sys.executable, "-c", "from odradek.broker import fault_injection as f; "
         "print(f.read_committed_past_lso)"],
        env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"

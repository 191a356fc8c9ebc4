"""The import direction of docs/architecture.md, checked on the source (AST, no imports run).

- broker -> controller.metadata (shared records, image, delta, requests, results) and storage;
  only the entry points (broker/cli/, broker/verify/) use the rest of the controller (quorum,
  Raft, gRPC);
- controller and storage never import broker; storage imports neither broker nor controller;
- nothing outside broker imports it, bar the test suite (tests/bench uses the CLI instead);
- product code never imports tests;
- the sans-I/O cores import neither asyncio nor grpc: the Raft core, the Kafka framing layer,
  the storage index and retention logic;
- every import of the product uses its installed name, odradek.*.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("broker", "controller", "storage")
# The node's entry point wires the controller in; the fault-injection harness (odradek
# verify) asks controllers over their gRPC API which of them to kill; odradek.testing
# (broker/testing/, the pytest plugin) is users' tests' entry point to local clusters.
ENTRY_POINTS = ("broker/cli/", "broker/verify/", "broker/testing/")
SANS_IO = ("controller/raft/", "broker/kafka/codec.py", "broker/kafka/bounds.py",
           "broker/kafka/connection.py", "broker/kafka/budget.py", "broker/replica_state.py",
           "broker/fetch_sessions.py", "broker/partition_watch.py",
           "broker/txn/records.py", "broker/txn/metadata.py", "broker/txn/loading.py",
           "broker/txn/markers.py", "broker/txn/producer_ids.py",
           "storage/index.py", "storage/retention.py", "storage/recovery.py",
           "storage/txn_index.py", "storage/producer_state.py", "storage/producer_snapshot.py")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            # `from odradek import storage` imports odradek.storage
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (REPO / f).rglob("*.py")
                  if "corpus" not in p.parts)


def _rel(p: Path) -> str:
    return str(p.relative_to(REPO))


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _violations(files: list[Path], forbidden: tuple[str, ...],
                allowed: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in files:
        for line, name in _imports(path):
            if _under(name, forbidden) and not _under(name, allowed):
                out.append(f"{_rel(path)}:{line} imports {name}")
    return out


def test_broker_uses_only_the_shared_controller_metadata() -> None:
    files = [p for p in _files("broker") if not _rel(p).startswith(ENTRY_POINTS)]
    assert not _violations(files, ("odradek.controller",),
                           ("odradek.controller.metadata",))


def test_controller_and_storage_never_import_broker() -> None:
    assert not _violations(_files("controller", "storage"), ("odradek.broker",))
    assert not _violations(_files("storage"), ("odradek.controller",))


def test_nothing_outside_broker_imports_it_but_the_tests() -> None:
    outside = _files("controller", "storage", "deploy", "tests/bench")
    assert not _violations(outside, ("odradek.broker",))


def test_product_never_imports_tests() -> None:
    assert not _violations(_files(*PRODUCT), ("tests",))


@pytest.mark.parametrize("core", SANS_IO)
def test_sans_io_cores(core: str) -> None:
    files = [p for p in _files(*PRODUCT) if _rel(p).startswith(core)]
    assert files, f"{core} names no module"
    assert not _violations(files, ("asyncio", "grpc", "uvloop"))


def test_testing_package_is_imported_by_its_installed_name() -> None:
    """broker/testing/ installs as odradek.testing only (pyproject's package-dir);
    ``odradek.broker.testing`` would work in an editable install and fail from the wheel."""
    assert not _violations(_files(*PRODUCT, "tests"), ("odradek.broker.testing",))


def test_plugin_module_imports_only_pytest_and_the_standard_library() -> None:
    """pytest imports the plugin in every run where Odradek is installed (our own suite
    too): at import time it must not pull in the node's code, YAML or client libraries."""
    path = REPO / "broker/testing/plugin.py"
    tree = ast.parse(path.read_text(), str(path))
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name for n in top_level if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)}
    assert names <= {"__future__", "os", "collections.abc", "pathlib", "typing", "pytest"}, names


def test_imports_use_the_installed_names() -> None:
    """`import storage` would load a second copy of the package from the source folder."""
    assert not _violations(_files(*PRODUCT, "tests", "deploy"), PRODUCT)


def test_no_asyncio_wait_for_in_product_code() -> None:
    """Python 3.11's asyncio.wait_for loses a cancellation that arrives together with the
    awaited result: a cancelled loop then runs on, and whatever awaits it (a node's stop)
    waits forever. asyncio.timeout() has no such race."""
    calls = []
    for path in _files(*PRODUCT):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "wait_for" \
                    and isinstance(node.value, ast.Name) and node.value.id == "asyncio":
                calls.append(f"{_rel(path)}:{node.lineno}")
    assert not calls, f"use asyncio.timeout() instead of asyncio.wait_for at {calls}"

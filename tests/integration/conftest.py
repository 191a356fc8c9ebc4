from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import NodeProcess


def _dump_logs(node: NodeProcess, request: pytest.FixtureRequest) -> None:
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"--- node {node.node_id} log ---\n{node.logs()}")


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NodeProcess]:
    """A fresh single node per test."""
    n = NodeProcess(tmp_path / "cluster").start()
    yield n
    _dump_logs(n, request)
    n.kill()


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node shared by a module's tests (each test uses its own topics)."""
    n = NodeProcess(tmp_path_factory.mktemp("shared")).start()
    yield n
    n.kill()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)

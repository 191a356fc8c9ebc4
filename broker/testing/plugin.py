"""The pytest plugin (entry point ``pytest11: odradek``): real Odradek clusters as fixtures.

Fixtures (every name starts with ``odradek_``, so none can collide with a project's own):

- ``odradek_cluster``: an ``OdradekCluster``, started on first use and shared by the whole
  session (one per pytest-xdist worker); stopped when the session ends, however it ends.
- ``odradek_bootstrap``: its bootstrap servers string.
- ``odradek_topic``, ``odradek_group``: names unique to the test (nothing is created).

The cluster's shape comes from, most specific first: the ``odradek_cluster`` marker
(``@pytest.mark.odradek_cluster(nodes=3, config={...})`` on a test, class or module),
command-line options (``--odradek-nodes``, ``--odradek-config KEY=VALUE``,
``--odradek-data-dir``, ``--odradek-start-timeout``), ini keys of the same names
(``odradek_nodes`` ...), and one node by default. A session fixture cannot see a test's
marker, so a marked test is parametrized (indirectly, at session scope) with its cluster
spec: each distinct spec gets one cluster, started once and kept for the session.

This module is imported by every pytest run in an environment where Odradek is installed,
so it imports nothing but pytest and the standard library until a fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from odradek.testing.cluster import ClusterSpec, OdradekCluster

MARKER = "odradek_cluster"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("odradek", "Odradek test cluster (odradek.testing)")
    group.addoption("--odradek-nodes", dest="odradek_nodes", type=int, default=None,
                    metavar="N", help="nodes of the default test cluster (default 1)")
    group.addoption("--odradek-config", dest="odradek_config", action="append", default=[],
                    metavar="KEY=VALUE",
                    help="node configuration key for every test cluster (repeatable)")
    group.addoption("--odradek-data-dir", dest="odradek_data_dir", default=None,
                    metavar="DIR", help="keep the clusters' data and logs under DIR "
                    "(default: pytest's temporary directory)")
    group.addoption("--odradek-start-timeout", dest="odradek_start_timeout", type=float,
                    default=None, metavar="SECONDS",
                    help="how long a cluster may take to start (default 60)")
    parser.addini("odradek_nodes", "nodes of the default test cluster", default="1")
    parser.addini("odradek_config", "node configuration for every test cluster, one "
                  "KEY=VALUE a line", type="linelist", default=[])
    parser.addini("odradek_data_dir", "keep the clusters' data and logs here", default="")
    parser.addini("odradek_start_timeout", "seconds a cluster may take to start",
                  default="60")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(nodes=1, config=None, data_dir=None): the Odradek cluster this "
        "test's odradek_cluster fixture gets (one cluster per distinct spec, shared)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if MARKER not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        return
    spec = _spec_from_marker(marker, _default_spec(metafunc.config))
    metafunc.parametrize(MARKER, [spec], indirect=True, ids=[spec.id], scope="session")


class ClusterPool:
    """The clusters of one test session (one process: a pytest-xdist worker has its own),
    one per distinct spec, started on first use and stopped together at the end."""

    def __init__(self, base: Path, start_timeout: float) -> None:
        self.base = base
        self.start_timeout = start_timeout
        self._clusters: dict[ClusterSpec, OdradekCluster] = {}

    def get(self, spec: ClusterSpec) -> OdradekCluster:
        cluster = self._clusters.get(spec)
        if cluster is None:
            from odradek.testing.cluster import OdradekCluster

            data_dir = spec.data_dir
            worker = os.environ.get("PYTEST_XDIST_WORKER")
            if data_dir and worker:
                data_dir = str(Path(data_dir) / worker)
            # Under pytest's temporary directory the data is scratch: killing the nodes at
            # the end is enough (and quick); a data dir the user named gets a clean stop.
            cluster = OdradekCluster(spec.nodes, spec.config_dict, data_dir or self.base,
                                     start_timeout=self.start_timeout,
                                     clean_stop=bool(data_dir))
            try:
                cluster.start()
            except BaseException:
                # pytest remembers the failure for the other tests of this spec.
                cluster.stop()
                raise
            self._clusters[spec] = cluster
        return cluster

    def stop_all(self) -> None:
        errors = []
        for cluster in self._clusters.values():
            try:
                cluster.stop()
            except Exception as e:  # noqa: BLE001 - stop the others, then report
                errors.append(e)
        self._clusters.clear()
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def odradek_cluster_pool(tmp_path_factory: pytest.TempPathFactory,
                         pytestconfig: pytest.Config) -> Iterator[ClusterPool]:
    """Every Odradek cluster of this session, by spec: ``pool.get(ClusterSpec.of(...))``
    gives one from any fixture scope."""
    pool = ClusterPool(tmp_path_factory.mktemp("odradek", numbered=True),
                       _start_timeout(pytestconfig))
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="session")
def odradek_cluster(request: pytest.FixtureRequest,
                    odradek_cluster_pool: ClusterPool) -> OdradekCluster:
    """The Odradek cluster for this test: the marker's spec, else the options' default."""
    spec = getattr(request, "param", None) or _default_spec(request.config)
    return odradek_cluster_pool.get(spec)


@pytest.fixture(autouse=True)
def odradek_revive_nodes(request: pytest.FixtureRequest) -> None:
    """A shared cluster is handed to each test whole: nodes an earlier test killed or
    paused are restarted or resumed first. Does nothing in tests that do not use a
    cluster."""
    if MARKER in request.fixturenames:
        cluster: OdradekCluster = request.getfixturevalue(MARKER)
        cluster.revive()


@pytest.fixture
def odradek_bootstrap(odradek_cluster: OdradekCluster) -> str:
    """``host:port,...`` of the test's cluster, for the client's bootstrap servers."""
    return odradek_cluster.bootstrap


@pytest.fixture
def odradek_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test (or run, or xdist worker) uses; the test creates it
    (``odradek_cluster.create_topic(odradek_topic)``) or lets the broker auto-create it."""
    from odradek.testing.cluster import unique_name

    return unique_name(request.node.name, max_len=180)


@pytest.fixture
def odradek_group(request: pytest.FixtureRequest) -> str:
    """A consumer group id no other test (or run, or xdist worker) uses."""
    from odradek.testing.cluster import unique_name

    return unique_name(f"{request.node.name}-group", max_len=180)


# ---------------------------------------------------------------------- configuration

def _default_spec(config: pytest.Config) -> ClusterSpec:
    from odradek.testing.cluster import ClusterSpec

    nodes = config.getoption("odradek_nodes") or int(str(config.getini("odradek_nodes")))
    settings: dict[str, Any] = {}
    for line in [*config.getini("odradek_config"), *config.getoption("odradek_config")]:
        key, sep, value = str(line).partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(
                f"odradek_config: {line!r} is not KEY=VALUE (e.g. num.partitions=3)")
        settings[key.strip()] = _yaml_value(value.strip())
    data_dir = config.getoption("odradek_data_dir") or str(config.getini("odradek_data_dir"))
    return ClusterSpec.of(nodes, settings, data_dir or None)


def _spec_from_marker(marker: pytest.Mark, default: ClusterSpec) -> ClusterSpec:
    from odradek.testing.cluster import ClusterSpec

    allowed = {"nodes", "config", "data_dir"}
    if marker.args or set(marker.kwargs) - allowed:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes keyword arguments {sorted(allowed)}, got "
            f"args={marker.args!r} kwargs={sorted(marker.kwargs)!r}")
    config = {**default.config_dict, **(marker.kwargs.get("config") or {})}
    try:
        return ClusterSpec.of(marker.kwargs.get("nodes", default.nodes), config,
                              marker.kwargs.get("data_dir", default.data_dir))
    except ValueError as e:
        raise pytest.UsageError(f"@pytest.mark.{MARKER}: {e}") from None


def _start_timeout(config: pytest.Config) -> float:
    return float(config.getoption("odradek_start_timeout")
                 or str(config.getini("odradek_start_timeout")))


def _yaml_value(text: str) -> Any:
    """``3`` -> 3, ``true`` -> True, ``lz4`` -> "lz4": as the node's YAML file would read it."""
    import yaml

    return yaml.safe_load(text) if text else ""

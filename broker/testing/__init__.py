"""Real Odradek clusters for an application's tests (``pip install 'odradek[testing]'``).

With pytest, the plugin this package registers (``odradek.testing.plugin``) gives tests the
``odradek_cluster``, ``odradek_bootstrap``, ``odradek_topic`` and ``odradek_group``
fixtures; see docs/testing.md. Without pytest (unittest, a notebook, a script)::

    from odradek.testing import OdradekCluster

    with OdradekCluster(nodes=3) as cluster:
        cluster.create_topic("orders", partitions=3)
        ...  # point the application at cluster.bootstrap

Importing this package is cheap: pytest loads the plugin in every test run of an
environment where Odradek is installed, and nothing runs until a test asks for a cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from odradek.testing.cluster import (
        ClusterSpec,
        NodeProcess,
        OdradekCluster,
        OdradekClusterError,
        PartitionState,
        Record,
        unique_name,
    )

__all__ = ["ClusterSpec", "NodeProcess", "OdradekCluster", "OdradekClusterError",
           "PartitionState", "Record", "unique_name"]


def __getattr__(name: str) -> Any:
    # The cluster code (and the YAML and process modules it needs) loads on first use.
    if name in __all__:
        from odradek.testing import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

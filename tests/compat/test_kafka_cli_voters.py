"""Kafka 4.1's ``kafka-metadata-quorum.sh remove-controller`` (KIP-853) against Odradek: a
dead voter is removed by the real tool, and ``describe --status`` shows the voter set without
it. (``add-controller`` reads the new controller's Kafka meta.properties, which an Odradek node
does not have; AddRaftVoter itself is tested in tests/integration/test_controller_replacement.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.kafka_tools import METADATA_QUORUM, KafkaTools, kafka_tools, kafka_tools_lib
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lib() -> Path:
    return kafka_tools_lib()


@pytest.fixture(scope="module")
def cluster(lib: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("kafka-cli-voters"), n=3).start()
    yield c
    c.kill_all()


@pytest.fixture(scope="module")
def tools(cluster: Cluster, lib: Path) -> KafkaTools:
    return kafka_tools(cluster.node(1).bootstrap, lib)


def status(tools: KafkaTools) -> dict[str, str]:
    out = tools.ok(METADATA_QUORUM, "describe", "--status")
    return dict(re.split(r":\s+", line, maxsplit=1) for line in out.splitlines() if line)


def test_remove_controller_removes_a_dead_voter(tools: KafkaTools, cluster: Cluster) -> None:
    cluster.node(3).kill()
    # Odradek keeps no directory ids: the tool requires one, and any is accepted.
    out = tools.ok(METADATA_QUORUM, "remove-controller", "--controller-id", "3",
                   "--controller-directory-id", "AAAAAAAAAAAAAAAAAAAAAA")
    assert "Removed" in out and "KRaft controller 3" in out
    voters = json.loads(status(tools)["CurrentVoters"])
    assert [v["id"] for v in voters] == [1, 2]
    # Removing it again: VOTER_NOT_FOUND, reported by the tool as a failure.
    again = tools.run(METADATA_QUORUM, "remove-controller", "--controller-id", "3",
                      "--controller-directory-id", "AAAAAAAAAAAAAAAAAAAAAA")
    assert again.returncode != 0
    assert "VoterNotFound" in again.output or "not a voter" in again.output, str(again)

"""The node's min.insync.replicas becomes a new topic's config when the request sets none."""

from types import SimpleNamespace

from broker.node import Node
from controller.quorum.api import CreateTopicSpec


def _node(min_isr: int, default_rf: int = 3) -> SimpleNamespace:
    return SimpleNamespace(config={"min.insync.replicas": min_isr,
                                   "default.replication.factor": default_rf})


def test_default_of_one_adds_nothing() -> None:
    spec = CreateTopicSpec("t", 3, 3)
    assert Node.with_creation_defaults(_node(1), spec) is spec  # type: ignore[arg-type]


def test_node_default_written_into_topic_config() -> None:
    out = Node.with_creation_defaults(_node(2), CreateTopicSpec("t", 3, 3))  # type: ignore[arg-type]
    assert out.configs == {"min.insync.replicas": "2"}


def test_capped_at_replication_factor() -> None:
    node = _node(2, default_rf=1)
    assert Node.with_creation_defaults(node, CreateTopicSpec("t", 3, 1)).configs == {  # type: ignore[arg-type]
        "min.insync.replicas": "1"}
    # -1: the default replication factor decides.
    assert Node.with_creation_defaults(node, CreateTopicSpec("t")).configs == {  # type: ignore[arg-type]
        "min.insync.replicas": "1"}
    # Explicit placement: the smallest replica set decides.
    spec = CreateTopicSpec("t", assignments={0: (1, 2, 3), 1: (2, 3)})
    assert Node.with_creation_defaults(_node(3), spec).configs == {  # type: ignore[arg-type]
        "min.insync.replicas": "2"}


def test_explicit_topic_config_wins() -> None:
    spec = CreateTopicSpec("t", 3, 3, configs={"min.insync.replicas": "3", "retention.ms": "1"})
    assert Node.with_creation_defaults(_node(2), spec) is spec  # type: ignore[arg-type]

"""The checked-in generated code must match proto/metadata.proto."""

from __future__ import annotations

from pathlib import Path

from controller.metadata.gen import metadata_pb2
from controller.metadata.gen.regenerate import GEN_DIR, GENERATED_FILES, regenerate


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    regenerate(tmp_path)
    stale = [
        name
        for name in GENERATED_FILES
        if (tmp_path / name).read_bytes() != (GEN_DIR / name).read_bytes()
    ]
    assert not stale, (
        f"{stale} in {GEN_DIR} differ from proto/metadata.proto: run "
        "`python -m controller.metadata.gen.regenerate` with the pinned grpcio-tools and commit"
    )


def test_generated_module_is_not_under_a_proto_package() -> None:
    # A top-level `proto` package would collide with Google's proto-plus.
    assert metadata_pb2.__name__ == "controller.metadata.gen.metadata_pb2"
    assert metadata_pb2.DESCRIPTOR.package == "odradek.metadata"

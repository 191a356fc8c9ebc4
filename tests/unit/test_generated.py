"""The checked-in generated protobuf/gRPC modules must match proto/*.proto."""

from __future__ import annotations

from pathlib import Path

from odradek.controller.rpc.regenerate import MODULES, REPO_ROOT, generate


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert fresh, "no .proto file was found"
    stale = [rel for rel, content in fresh.items()
             if not (REPO_ROOT / rel).exists() or (REPO_ROOT / rel).read_bytes() != content]
    assert not stale, (f"{stale} differ from proto/: run `make proto` (python -m "
                       "odradek.controller.rpc.regenerate) with the pinned grpcio-tools and commit")


def test_generated_modules_import_from_their_packages() -> None:
    import importlib

    for m in MODULES:
        if (REPO_ROOT / "proto" / m.proto).exists():
            mod = importlib.import_module(f"{m.package}.{m.stem}_pb2")
            assert mod.__name__.startswith("odradek.")
    assert not (REPO_ROOT / "proto" / "__init__.py").exists()

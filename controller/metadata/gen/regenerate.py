"""Regenerate the checked-in Python code for proto/metadata.proto.

Run from the repository root after editing the .proto file:

    python -m controller.metadata.gen.regenerate

The output depends on the grpcio-tools version (it stamps the protobuf version into the code),
so use the version pinned in pyproject.toml; tests/unit/metadata/test_generated.py fails when
the checked-in files differ from a fresh generation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

GEN_DIR = Path(__file__).resolve().parent
REPO_ROOT = GEN_DIR.parents[2]
PROTO_DIR = REPO_ROOT / "proto"
PROTO_FILE = "metadata.proto"
GENERATED_FILES = ("metadata_pb2.py", "metadata_pb2.pyi")


def regenerate(out_dir: Path = GEN_DIR) -> list[Path]:
    """Generate the modules into out_dir and return their paths."""
    # grpc_tools is a development dependency; the runtime only needs protobuf.
    from grpc_tools import protoc

    # Include path = proto/ so the descriptor is registered as "metadata.proto" and the
    # generated module has no package prefix: `proto` must never become an importable package.
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(PROTO_DIR / PROTO_FILE),
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status} for {PROTO_DIR / PROTO_FILE}")
    return [out_dir / name for name in GENERATED_FILES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GEN_DIR, help="output directory")
    for path in regenerate(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()

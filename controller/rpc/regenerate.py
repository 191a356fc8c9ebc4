"""Regenerate every checked-in Python module generated from proto/*.proto.

Run from the repository root after editing a .proto file (or `make proto`):

    python -m odradek.controller.rpc.regenerate

The output depends on the grpcio-tools version (it stamps the protobuf version into the
code), so use the version pinned in pyproject.toml; tests/unit/test_generated.py fails when
the checked-in files differ from a fresh generation.

protoc writes imports between generated modules as top-level imports (``import raft_pb2``),
which only work when the output folder is on sys.path. We rewrite them to absolute imports
of the package that owns each module: ``proto/`` itself must never become an importable
package (Google's proto-plus installs a top-level ``proto``).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "proto"


@dataclass(frozen=True)
class ProtoModule:
    proto: str  # file name under proto/
    package: str  # Python package the generated modules live in
    grpc: bool  # generate a *_pb2_grpc module (the file defines services)

    @property
    def stem(self) -> str:
        return self.proto.removesuffix(".proto")

    @property
    def folder(self) -> str:
        """Where the package lives in the repository: odradek.X.Y is X/Y (pyproject's
        package-dir)."""
        return self.package.removeprefix("odradek.").replace(".", "/")

    @property
    def out_dir(self) -> Path:
        return REPO_ROOT / self.folder

    @property
    def files(self) -> tuple[str, ...]:
        names = [f"{self.stem}_pb2.py", f"{self.stem}_pb2.pyi"]
        if self.grpc:
            names.append(f"{self.stem}_pb2_grpc.py")
        return tuple(names)


MODULES: tuple[ProtoModule, ...] = (
    ProtoModule("metadata.proto", "odradek.controller.metadata.gen", grpc=False),
    ProtoModule("raft.proto", "odradek.controller.rpc", grpc=True),
    ProtoModule("controller.proto", "odradek.controller.rpc", grpc=True),
)


def _present() -> list[ProtoModule]:
    return [m for m in MODULES if (PROTO_DIR / m.proto).exists()]


def _fix_imports(text: str) -> str:
    for m in MODULES:
        # `import raft_pb2 as raft__pb2` -> `from odradek.controller.rpc import raft_pb2 as ...`
        text = re.sub(rf"^import {m.stem}_pb2 as ", f"from {m.package} import {m.stem}_pb2 as ",
                      text, flags=re.M)
        text = re.sub(rf"^from {m.stem}_pb2 import ", f"from {m.package}.{m.stem}_pb2 import ",
                      text, flags=re.M)
    return text


def generate(out_root: Path) -> dict[str, bytes]:
    """Generate every module under out_root; return {relative path: content}."""
    from grpc_tools import protoc

    out: dict[str, bytes] = {}
    for m in _present():
        with tempfile.TemporaryDirectory() as tmp:
            args = ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={tmp}",
                    f"--pyi_out={tmp}"]
            if m.grpc:
                args.append(f"--grpc_python_out={tmp}")
            args.append(str(PROTO_DIR / m.proto))
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed for {PROTO_DIR / m.proto}")
            for name in m.files:
                text = _fix_imports((Path(tmp) / name).read_text())
                rel = f"{m.folder}/{name}"
                out[rel] = text.encode()
                target = out_root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(out[rel])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT,
                        help="root to write the package folders under (default: the repo)")
    for rel in generate(parser.parse_args().out):
        print(rel)


if __name__ == "__main__":
    main()

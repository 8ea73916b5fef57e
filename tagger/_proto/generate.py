"""Regenerate ``tagger/_proto/`` from ``proto/``: ``python -m tagger._proto.generate [--check]``.

protoc names imports after the .proto path (``from tagger.v1 import tagger_pb2``), which would
resolve inside *this* package's namespace wrongly, so the generated modules are written flat into
``tagger/_proto/`` and that one import is rewritten. The output depends on the grpcio-tools version
(it stamps its protobuf/grpc versions into the code), which is why the ``dev``/``test`` extras pin
it; ``--check`` (and ``tests/test_grpc_proto.py``) fail when the committed code is stale.
"""
from __future__ import annotations

import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_FILES = ("tagger/v1/tagger.proto",)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _rewrite(text: str) -> str:
    # "from tagger.v1 import tagger_pb2 as x" -> "from tagger._proto import tagger_pb2 as x"
    return re.sub(r"^from tagger\.v1 import ", "from tagger._proto import ", text, flags=re.MULTILINE)


def generate() -> dict[str, str]:
    """Run protoc on every file of PROTO_FILES; return {output file name: contents}."""
    from grpc_tools import protoc  # a dev/test dependency, not needed at runtime

    well_known = str(resources.files("grpc_tools") / "_proto")
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for proto in PROTO_FILES:
            rc = protoc.main([
                "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
                f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", str(PROTO_ROOT / proto),
            ])
            if rc != 0:
                raise RuntimeError(f"protoc failed on {proto} (exit {rc})")
            stem = Path(proto).with_suffix("")
            for suffix in GENERATED_SUFFIXES:
                path = Path(tmp) / f"{stem}{suffix}"
                out[path.name] = _rewrite(path.read_text(encoding="utf-8"))
    return out


def stale_files() -> list[str]:
    """Generated files whose committed copy differs from a fresh generation (or is missing)."""
    fresh = generate()
    return [
        name for name, text in fresh.items()
        if not (PACKAGE_DIR / name).is_file() or (PACKAGE_DIR / name).read_text(encoding="utf-8") != text
    ]


USAGE = "usage: python -m tagger._proto.generate [--check]  (--check: exit 1 if the committed code is stale)"


def main(argv: list[str] | None = None) -> int:
    # A developer's tool with one flag; argparse is kept to tagger/cli/.
    argv = sys.argv[1:] if argv is None else argv
    if argv not in ([], ["--check"]):
        print(USAGE, file=sys.stderr)
        return 2
    if argv == ["--check"]:
        stale = stale_files()
        if stale:
            print(f"stale generated code: {', '.join(stale)}; run python -m tagger._proto.generate", file=sys.stderr)
            return 1
        print("generated code is current")
        return 0
    for name, text in generate().items():
        (PACKAGE_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {PACKAGE_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Imports go one way: the core knows no face and no training; training builds on the core and never
on a face; serving needs neither training nor its libraries; argparse lives in the CLI only."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = {"tagger", "tagger.text", "tagger.features", "tagger.kernels", "tagger.lookup", "tagger.model",
        "tagger.artifacts", "tagger.tagger", "tagger.taxonomy", "tagger.document", "tagger.io", "tagger.config",
        "tagger.paths", "tagger.metrics", "tagger.uncertainty"}
FACES = ("tagger.cli", "tagger.server", "tagger.grpc", "tagger.client", "tagger.batch", "tagger.spark",
         "tagger.review", "tagger._proto")
SERVING = ("tagger.server", "tagger.grpc", "tagger.client", "tagger.batch", "tagger.spark", "tagger.readers",
           "tagger.writers")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "training":  # installed as tagger.training (pyproject.toml maps the folder)
        parts = ["tagger", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, absolute names only."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = [*(ROOT / "tagger").rglob("*.py"), *(ROOT / "training").rglob("*.py")]
    return {_module_name(f): _imports(f) for f in files if "_proto" not in f.parts or f.name == "generate.py"}


def _is(name: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") or (p.endswith("_") and name.startswith(p)) for p in prefixes)


GRAPH = _graph()


def test_the_graph_sees_the_whole_package() -> None:
    assert {"tagger.training.retrain", "tagger.training.gate", "tagger.cli.retrain", "tagger.server"} <= set(GRAPH)
    assert "tagger.training.pipeline" in GRAPH["tagger.training.gate"]


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m in CORE))
def test_the_core_imports_no_face_and_no_training(module: str) -> None:
    bad = sorted(i for i in GRAPH[module] if _is(i, FACES) or _is(i, ("tagger.training",)) or _is(i, ("training",)))
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("tagger.training")))
def test_training_builds_on_the_core_and_never_on_a_face(module: str) -> None:
    bad = sorted(i for i in GRAPH[module] if _is(i, FACES) or i == "argparse" or _is(i, ("training",)))
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _is(m, SERVING)))
def test_serving_and_batch_never_import_training(module: str) -> None:
    bad = sorted(i for i in GRAPH[module] if _is(i, ("tagger.training", "training", "sklearn", "joblib")))
    assert not bad, f"{module} imports {bad}"


def test_argparse_lives_in_the_cli_only() -> None:
    users = sorted(m for m, imports in GRAPH.items() if "argparse" in imports and not _is(m, ("tagger.cli",)))
    assert not users, f"argparse imported outside tagger.cli: {users}"


def test_benches_use_public_functions_not_the_cli_internals() -> None:
    for path in (ROOT / "bench").glob("*.py"):
        bad = sorted(i for i in _imports(path) if _is(i, ("tagger.cli",)))
        assert not bad, f"{path.name} imports {bad}"


def test_tagging_and_serving_work_without_the_training_libraries(shared_dir: Path) -> None:
    """Serving and batch tagging need NumPy (+ numba) only: with scikit-learn, SciPy and joblib made
    unimportable, the model still loads, tags the seed page, and the server and batch faces import."""
    code = (
        "import sys\n"
        "for name in ('sklearn', 'scipy', 'joblib'):\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        "from tagger.artifacts import load_model\n"
        "from tagger.document import parse_page\n"
        "from tagger.paths import default_model_root\n"
        "from tagger.tagger import Tagger\n"
        "import tagger.server, tagger.batch, tagger.client, tagger.cli.tag, tagger.cli.serve\n"
        f"page = open({str(shared_dir / 'examples/seed-article.txt')!r}, encoding='utf-8').read()\n"
        "r = Tagger(load_model(default_model_root())).tag(parse_page(page, id='seed'))\n"
        "print(sorted(t.topic for t in r.topics))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['diplomacy', 'military', 'sanctions']"

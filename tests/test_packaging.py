"""The package runs anywhere: a built wheel, installed outside the checkout, tags, serves and batch-tags
with the shipped default model from an empty folder, and adds no bare `training` module."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagger import __version__
from tagger.artifacts import resolve_model_dir
from tagger.paths import default_model_root

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: building in place would leave build/ and *.egg-info in the checkout.
    src = out / "src"
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"], check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        f = ROOT / name
        if f.is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(f.read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    (found,) = out.glob("tagger-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed (without its dependencies, which this test environment has) into a folder
    of its own: a non-editable install that knows nothing of the checkout."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    return site


@pytest.fixture()
def empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "elsewhere"
    d.mkdir()
    return d


def run_installed(site: Path, cwd: Path, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
    env["PYTHONPATH"] = str(site)  # ahead of the checkout's editable install
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          **kwargs)


def test_the_wheel_holds_tagger_only_with_the_default_model_and_no_pickle(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"tagger", f"tagger-{__version__}.dist-info"}
    shipped = resolve_model_dir(default_model_root())
    for f in ("model.npz", "manifest.json", "MODEL.md"):
        assert f"tagger/models/{shipped.parent.name}/{shipped.name}/{f}" in names
    assert "tagger/training/retrain.py" in names and "tagger/training/rules/keywords.json" in names
    assert any(n.startswith("tagger/training/labels/") and n.endswith(".jsonl") for n in names)
    assert not [n for n in names if n.endswith((".joblib", ".pkl", ".pickle"))]


def test_an_installed_tagger_tags_the_seed_page_from_any_folder(installed: Path, empty_dir: Path,
                                                                shared_dir: Path) -> None:
    p = run_installed(installed, empty_dir, "-m", "tagger", "tag", str(shared_dir / "examples/seed-article.txt"))
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert sorted(t["topic"] for t in result["topics"]) == ["diplomacy", "military", "sanctions"]
    where = run_installed(installed, empty_dir, "-c", "import tagger.paths as p; print(p.default_model_root())")
    assert where.stdout.strip().startswith(str(installed)), where.stdout  # the packaged model, not the checkout's
    info = run_installed(installed, empty_dir, "-m", "tagger", "info")
    assert info.returncode == 0 and json.loads(info.stdout)["path"].startswith(str(installed))
    version = run_installed(installed, empty_dir, "-m", "tagger", "--version")
    assert version.stdout.strip() == f"tagger {__version__}"


def test_an_installed_tagger_adds_no_bare_training_module(installed: Path, empty_dir: Path) -> None:
    p = run_installed(installed, empty_dir, "-c", "import training")
    assert p.returncode != 0 and "No module named 'training'" in p.stderr
    p = run_installed(installed, empty_dir, "-c", "import tagger.training.retrain as r; print(r.__file__)")
    assert p.returncode == 0 and p.stdout.startswith(str(installed)), p.stderr


def test_an_installed_tagger_batch_tags_and_evaluates(installed: Path, empty_dir: Path, shared_dir: Path) -> None:
    dev = shared_dir / "gold/dev.jsonl"
    p = run_installed(installed, empty_dir, "-m", "tagger", "tag", "--input", str(dev), "--output", "out.jsonl", "-q")
    assert p.returncode == 0, p.stderr
    lines = (empty_dir / "out.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 300
    p = run_installed(installed, empty_dir, "-m", "tagger", "evaluate", "--gold", str(dev), "--json", "--no-keywords")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["model"]["micro_f1"] > 0.8


def test_a_model_path_with_no_model_is_one_line_naming_it(installed: Path, empty_dir: Path, shared_dir: Path) -> None:
    seed = str(shared_dir / "examples/seed-article.txt")
    env_model = {"TAGGER_MODEL": str(empty_dir / "models" / "arabic-news-topics" / "3")}
    p = subprocess.run([sys.executable, "-m", "tagger", "tag", seed], cwd=empty_dir, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(installed), **env_model})
    assert p.returncode == 2 and not p.stdout
    assert p.stderr.strip() == (f"tagger tag: error: no model found at {env_model['TAGGER_MODEL']}: no such folder")


def test_an_installed_server_serves_the_default_model(installed: Path, empty_dir: Path, shared_dir: Path) -> None:
    from tagger.client import TaggerClient

    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")} | {"PYTHONPATH": str(installed)}
    proc = subprocess.Popen([sys.executable, "-m", "tagger", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--workers", "1", "--metrics-port", "0"], cwd=empty_dir, env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = _ready_port(proc.stderr)
        with TaggerClient(f"127.0.0.1:{port}", timeout=30) as client:
            page = (shared_dir / "examples/seed-article.txt").read_text("utf-8")
            from tagger.document import parse_page

            result = client.tag(parse_page(page, id="seed"))
            assert sorted(t.topic for t in result.topics) == ["diplomacy", "military", "sanctions"]
            assert client.model_info().version == "/".join(resolve_model_dir(default_model_root()).parts[-2:])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def _ready_port(stream: Iterator[str]) -> int:
    for line in stream:
        if "ready:" in line:
            return int(line.split(" on 127.0.0.1:")[1].split(",")[0])
    raise AssertionError("the server never logged its ready line")

"""Versioned artifacts: atomic publish, sha256 verified before unpickling, version checks."""
from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
import numpy as np
import pytest

import tagger.artifacts as artifacts
from tagger.artifacts import ArtifactError, list_versions, load_model, publish_model, resolve_model_dir
from tagger.paths import default_model_root

from helpers import TINY_DOCS, tiny_model


def _manifest(vdir: Path) -> dict:
    return json.loads((vdir / "manifest.json").read_text("utf-8"))


def test_publish_then_load_round_trip(tmp_path: Path) -> None:
    model = tiny_model()
    vdir = publish_model(model, tmp_path / "m", extra_manifest={"seed": 7})
    assert vdir == tmp_path / "m" / "1"
    loaded = load_model(vdir)
    assert loaded.version == "m/1" and loaded.manifest["seed"] == 7
    assert loaded.model.topics == model.topics
    text = TINY_DOCS["sanctions"]
    np.testing.assert_allclose(loaded.model.scores([text]), model.scores([text]), atol=1e-5)
    m = _manifest(vdir)
    for key in ("created", "sha256", "topics", "thresholds", "versions"):
        assert key in m
    assert set(m["versions"]) >= {"python", "scikit-learn", "numpy"}


def test_versions_count_up_and_newest_wins(tmp_path: Path) -> None:
    root = tmp_path / "m"
    for _ in range(3):
        publish_model(tiny_model(), root)
    assert [p.name for p in list_versions(root)] == ["1", "2", "3"]
    assert resolve_model_dir(root) == root / "3"
    assert load_model(root).version == "m/3"
    (root / "10").mkdir()  # numeric order, not string order; an empty folder is not a model
    assert list_versions(root)[-1].name == "10"


def test_tampered_model_is_refused_before_unpickling(tmp_path: Path, monkeypatch) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    with open(vdir / "model.joblib", "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
    calls = []
    monkeypatch.setattr(artifacts.joblib, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_model(vdir)
    assert calls == []  # never unpickled


def test_replaced_model_file_is_refused(tmp_path: Path) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    joblib.dump({"format": 1, "evil": True}, vdir / "model.joblib")
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_model(vdir)


@pytest.mark.parametrize(
    ("component", "recorded", "message"),
    [
        ("scikit-learn", "0.24.2", r"scikit-learn 0\.24\.2.*install scikit-learn==0\.24\.\*"),
        ("normalization", "0", "normalisation"),  # the text pipeline the model was trained with
    ],
)
def test_version_mismatch_is_refused(tmp_path: Path, component: str, recorded: str, message: str) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    m = _manifest(vdir)
    m["versions"][component] = recorded
    (vdir / "manifest.json").write_text(json.dumps(m), "utf-8")
    with pytest.raises(ArtifactError, match=message):
        load_model(vdir)


@pytest.mark.parametrize("damage", ["no_manifest", "bad_json", "no_model", "missing_key"])
def test_broken_version_folders_give_clear_errors(tmp_path: Path, damage: str) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    if damage == "no_manifest":
        (vdir / "manifest.json").unlink()
        match = "no model found"
    elif damage == "bad_json":
        (vdir / "manifest.json").write_text("{not json", "utf-8")
        match = "cannot read manifest"
    elif damage == "no_model":
        (vdir / "model.joblib").unlink()
        match = "is missing"
    else:
        m = _manifest(vdir)
        del m["sha256"]
        (vdir / "manifest.json").write_text(json.dumps(m), "utf-8")
        match = "lacks 'sha256'"
    with pytest.raises(ArtifactError, match=match):
        load_model(vdir)


def test_failed_publish_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "m"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts.joblib, "dump", boom)
    with pytest.raises(OSError, match="disk full"):
        publish_model(tiny_model(), root)
    assert list(root.iterdir()) == []


def test_shipped_default_model_verifies_and_is_small() -> None:
    root = default_model_root()
    loaded = load_model(root)
    assert loaded.manifest["metrics"]["dev"]["micro_f1"] > 0.5
    total = sum(f.stat().st_size for f in root.parent.rglob("*") if f.is_file())
    assert total < 25 * 1024 * 1024
    assert os.access(loaded.path / "model.joblib", os.R_OK)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: [m], "must be a JSON object, got list"),
        (lambda m: m | {"sha256": 123}, "'sha256' must be 64 lower-case hex digits"),
        (lambda m: m | {"versions": [1]}, "'versions' must be an object"),
        (lambda m: m | {"topics": "sanctions"}, "'topics' must be a list"),
        (lambda m: m | {"thresholds": None}, "'thresholds' must be an object"),
        (lambda m: m | {"name": ""}, "'name' must be a non-empty string"),
        (lambda m: m | {"model_file": None}, "'model_file' must be a file name"),
        (lambda m: m | {"model_file": "../1/model.joblib"}, "'model_file' must be a file name"),
        (lambda m: m | {"taxonomy": {"version": 9, "topics": []}}, "bad 'taxonomy'.*version 9"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_field(tmp_path: Path, edit, match: str) -> None:
    """A hand-edited or damaged manifest is an ArtifactError saying what is wrong, never a TypeError
    further on; and it can never point the unpickler outside its folder."""
    vdir = publish_model(tiny_model(), tmp_path / "m")
    (vdir / "manifest.json").write_text(json.dumps(edit(_manifest(vdir))), "utf-8")
    with pytest.raises(ArtifactError, match=match):
        load_model(vdir)


def test_a_published_version_is_readable_like_any_new_folder_and_named_after_its_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = os.umask(0o022)
    try:
        vdir = publish_model(tiny_model(), tmp_path / "m")
    finally:
        os.umask(old)
    assert vdir.stat().st_mode & 0o777 == 0o755  # not mkdtemp's private 0700
    monkeypatch.chdir(tmp_path / "m")
    v2 = publish_model(tiny_model(), Path("."))
    assert load_model(tmp_path / "m" / v2.name).version == "m/2"

"""Versioned artifacts: arrays + JSON only, atomic publish, sha256 and folder checks, hostile files refused."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pickle
import shutil
import zipfile

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
    assert set(m["versions"]) >= {"python", "numpy", "tagger", "normalization"}
    assert m["format"] == 2 and m["model_file"] == "model.npz"
    assert sorted(p.name for p in vdir.iterdir()) == ["manifest.json", "model.npz"]


def test_versions_count_up_and_newest_wins(tmp_path: Path) -> None:
    root = tmp_path / "m"
    for _ in range(3):
        publish_model(tiny_model(), root)
    assert [p.name for p in list_versions(root)] == ["1", "2", "3"]
    assert resolve_model_dir(root) == root / "3"
    assert load_model(root).version == "m/3"
    (root / "10").mkdir()  # numeric order, not string order; an empty folder is not a model
    assert list_versions(root)[-1].name == "10"


def test_tampered_model_is_refused_before_it_is_read(tmp_path: Path, monkeypatch) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    with open(vdir / "model.npz", "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
    calls = []
    monkeypatch.setattr(artifacts.np, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_model(vdir)
    assert calls == []  # never opened


class _Payload:
    """Unpickling this writes a marker file: proof that code ran."""

    marker: Path

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _evil_pickle(marker: Path) -> bytes:
    payload = _Payload()
    payload.marker = marker
    return pickle.dumps(payload, protocol=4)


def _rehash(vdir: Path, **changes) -> None:
    m = _manifest(vdir)
    m.update(changes)
    m["sha256"] = artifacts.sha256_file(vdir / m["model_file"])
    (vdir / "manifest.json").write_text(json.dumps(m), "utf-8")


def test_a_crafted_pickle_with_a_matching_hash_never_runs(tmp_path: Path) -> None:
    """The attack that ran code under the old format: a writer of the models folder drops a pickle
    and updates the manifest's hash. It is refused, and the payload never runs."""
    marker = tmp_path / "ran"
    vdir = publish_model(tiny_model(), tmp_path / "m")
    (vdir / "model.joblib").write_bytes(_evil_pickle(marker))
    _rehash(vdir, model_file="model.joblib")
    with pytest.raises(ArtifactError, match="model_file.*npz"):
        load_model(vdir)
    _rehash(vdir, model_file="model.npz")  # the manifest points at the real file; the pickle sits beside it
    with pytest.raises(ArtifactError, match="model.joblib is a pickle"):
        load_model(vdir)
    (vdir / "model.joblib").unlink()
    (vdir / "model.npz").write_bytes(_evil_pickle(marker))  # a pickle under the .npz name
    _rehash(vdir)
    with pytest.raises(ArtifactError, match="is a pickle .by its first bytes"):
        load_model(vdir)
    assert not marker.exists()


def test_an_npz_with_an_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    vdir = publish_model(tiny_model(), tmp_path / "m")
    with np.load(vdir / "model.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    evil = np.empty(1, dtype=object)
    payload = _Payload()
    payload.marker = marker
    evil[0] = payload
    arrays["vocabulary"] = evil
    with open(vdir / "model.npz", "wb") as f:
        np.savez(f, **arrays)
    _rehash(vdir)
    with pytest.raises(ArtifactError, match="Object arrays cannot be loaded"):
        load_model(vdir)
    assert not marker.exists()


def test_an_npz_with_extra_or_missing_members_is_refused(tmp_path: Path) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    with zipfile.ZipFile(vdir / "model.npz", "a") as z:
        z.writestr("extra.npy", b"\x93NUMPY")
    _rehash(vdir)
    with pytest.raises(ArtifactError, match="holds exactly"):
        load_model(vdir)
    (vdir / "model.npz").write_bytes(b"not a zip at all")
    _rehash(vdir)
    with pytest.raises(ArtifactError, match="not a readable .npz"):
        load_model(vdir)


def test_an_array_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    with np.load(vdir / "model.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["coef"] = arrays["coef"].astype(np.str_)
    np.savez_compressed(vdir / "model.npz", **arrays)
    _rehash(vdir)
    with pytest.raises(ArtifactError, match="'coef' has dtype"):
        load_model(vdir)


def test_a_version_folder_must_be_where_its_manifest_says(tmp_path: Path) -> None:
    """A copied or renamed folder would be served under a version it is not (the old loader served a
    folder as whatever its manifest said)."""
    vdir = publish_model(tiny_model(), tmp_path / "m")
    shutil.copytree(vdir, tmp_path / "m" / "7")
    with pytest.raises(ArtifactError, match="manifest says m/1, but it is in folder m/7"):
        load_model(tmp_path / "m")  # newest folder is 7
    shutil.copytree(vdir, tmp_path / "other" / "1")
    with pytest.raises(ArtifactError, match="manifest says m/1, but it is in folder other/1"):
        load_model(tmp_path / "other" / "1")


def test_a_format_1_model_says_to_retrain(tmp_path: Path) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    m = _manifest(vdir)
    del m["format"]
    m["model_file"] = "model.joblib"
    (vdir / "manifest.json").write_text(json.dumps(m), "utf-8")
    with pytest.raises(ArtifactError, match="no longer loads: retrain it"):
        load_model(vdir)


def test_an_oversized_manifest_is_refused_unread(tmp_path: Path) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    with open(vdir / "manifest.json", "a") as f:
        f.truncate(artifacts._MAX_MANIFEST_BYTES + 1)
    with pytest.raises(ArtifactError, match="over 16 MB"):
        load_model(vdir)


def test_normalisation_mismatch_is_refused_with_the_way_out(tmp_path: Path) -> None:
    vdir = publish_model(tiny_model(), tmp_path / "m")
    m = _manifest(vdir)
    m["versions"]["normalization"] = "0"
    (vdir / "manifest.json").write_text(json.dumps(m), "utf-8")
    with pytest.raises(ArtifactError, match="normalisation v0.*retrain it"):
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
        (vdir / "model.npz").unlink()
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

    monkeypatch.setattr(artifacts.np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        publish_model(tiny_model(), root)
    assert list(root.iterdir()) == []


def test_shipped_default_model_verifies_and_is_small() -> None:
    root = default_model_root()
    loaded = load_model(root)
    assert loaded.manifest["metrics"]["dev"]["micro_f1"] > 0.5
    total = sum(f.stat().st_size for f in root.parent.rglob("*") if f.is_file())
    assert total < 25 * 1024 * 1024
    assert os.access(loaded.path / "model.npz", os.R_OK)
    assert not [p for p in root.rglob("*") if p.suffix in (".joblib", ".pkl", ".pickle")]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: [m], "must be a JSON object, got list"),
        (lambda m: m | {"sha256": 123}, "'sha256' must be 64 lower-case hex digits"),
        (lambda m: m | {"versions": [1]}, "'versions' must be an object"),
        (lambda m: m | {"topics": "sanctions"}, "'topics' must be a list"),
        (lambda m: m | {"thresholds": None}, "'thresholds' must be an object"),
        (lambda m: m | {"name": ""}, "'name' must be a non-empty string"),
        (lambda m: m | {"model_file": None}, "'model_file' must be the name of a .npz file"),
        (lambda m: m | {"model_file": "../1/model.npz"}, "'model_file' must be the name of a .npz file"),
        (lambda m: m | {"featurizer": []}, "'featurizer' must be an object"),
        (lambda m: m | {"format": 1}, "artifact format 1 is not 2"),
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


def test_copy_version_republishes_a_verified_version_under_a_new_number(tmp_path: Path) -> None:
    src = publish_model(tiny_model(), tmp_path / "m")
    copied = artifacts.copy_version(src, tmp_path / "other", 7)
    loaded = load_model(copied)  # name and version follow the new folders; the file hash still matches
    assert loaded.version == "other/7" and loaded.manifest["sha256"] == _manifest(src)["sha256"]
    assert not [p for p in (tmp_path / "other").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(ArtifactError, match="already exists"):
        artifacts.copy_version(src, tmp_path / "other", 7)

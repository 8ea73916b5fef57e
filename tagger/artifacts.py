"""Versioned, verified model artifacts: ``models/<name>/<version>/{model.joblib, manifest.json}``.

Unpickling runs code, so :func:`load_model` checks the file's sha256 against the manifest *before*
``joblib.load`` and refuses a model built with another scikit-learn/numpy line or text pipeline.
:func:`publish_model` writes into a hidden temporary folder and renames it into place, so a reader
(the hot-reloading server) never sees half a model.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from importlib.metadata import version as _dist_version

from tagger.model import TopicModel
from tagger.taxonomy import Taxonomy, default_taxonomy
from tagger.text import NORMALIZATION_VERSION

__all__ = [
    "ArtifactError", "LoadedModel", "load_model", "publish_model", "list_versions", "latest_version_dir",
    "sha256_file", "MODEL_FILE", "MANIFEST_FILE",
]

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
_VERSION_DIR = re.compile(r"^\d+$")


class ArtifactError(RuntimeError):
    """A model artifact is missing, corrupt, tampered with or incompatible; the message says which."""


@dataclass(frozen=True)
class LoadedModel:
    model: TopicModel
    manifest: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        return f"{self.manifest['name']}/{self.manifest['version']}"

    @property
    def taxonomy(self) -> Taxonomy:
        """The taxonomy the model was trained with (a retrain may have added topics), else the packaged one."""
        data = self.manifest.get("taxonomy")
        return Taxonomy.from_dict(data) if data else default_taxonomy()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def runtime_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": _dist_version("scikit-learn"),  # importing sklearn costs ~1 s per process
        "numpy": np.__version__,
        "normalization": str(NORMALIZATION_VERSION),
    }


def list_versions(model_root: Path) -> list[Path]:
    """Version folders of one model name, oldest first (numeric order)."""
    if not model_root.is_dir():
        return []
    dirs = [p for p in model_root.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name)]
    return sorted(dirs, key=lambda p: int(p.name))


def latest_version_dir(model_root: Path) -> Path:
    versions = list_versions(model_root)
    if not versions:
        raise ArtifactError(f"no model versions under {model_root} (expected folders named 1, 2, ...)")
    return versions[-1]


def resolve_model_dir(path: Path) -> Path:
    """Accept a version folder, a model-name folder (newest version) or a models/ root with one name."""
    path = Path(path)
    if (path / MANIFEST_FILE).is_file():
        return path
    if list_versions(path):
        return latest_version_dir(path)
    if path.is_dir():
        names = sorted(p for p in path.iterdir() if p.is_dir() and list_versions(p))
        if len(names) == 1:
            return latest_version_dir(names[0])
        if len(names) > 1:
            raise ArtifactError(f"{path} holds several models ({', '.join(n.name for n in names)}); name one")
    raise ArtifactError(f"no model found at {path}")


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_manifest(manifest: Any, where: Path) -> None:
    """Refuse a manifest whose fields have the wrong shape, each with a message naming the field, so a
    hand-edited or damaged manifest is an ArtifactError, never a crash further on."""
    def bad(key: str, expected: str) -> ArtifactError:
        return ArtifactError(f"manifest {where}: '{key}' must be {expected}")

    if not isinstance(manifest, dict):
        raise ArtifactError(f"manifest {where} must be a JSON object, got {type(manifest).__name__}")
    for key in ("name", "version", "sha256", "topics", "thresholds", "versions"):
        if key not in manifest:
            raise ArtifactError(f"manifest {where} lacks '{key}'")
    if not isinstance(manifest["name"], str) or not manifest["name"]:
        raise bad("name", "a non-empty string")
    if not isinstance(manifest["version"], (str, int)) or isinstance(manifest["version"], bool):
        raise bad("version", "a string or an integer")
    if not isinstance(manifest["sha256"], str) or not _SHA256.fullmatch(manifest["sha256"]):
        raise bad("sha256", "64 lower-case hex digits")
    if not isinstance(manifest["topics"], list) or not all(isinstance(t, str) for t in manifest["topics"]):
        raise bad("topics", "a list of topic ids")
    if not isinstance(manifest["thresholds"], dict):
        raise bad("thresholds", "an object of topic: threshold")
    if not isinstance(manifest["versions"], dict) or not all(isinstance(v, str) for v in manifest["versions"].values()):
        raise bad("versions", "an object of library: version string")
    model_file = manifest.get("model_file", MODEL_FILE)
    # A plain file name: the manifest must not point the unpickler at a file outside its folder.
    if not isinstance(model_file, str) or model_file in ("", ".", "..") or Path(model_file).name != model_file:
        raise bad("model_file", "a file name in the version folder")
    if manifest.get("taxonomy") is not None:
        try:
            Taxonomy.from_dict(manifest["taxonomy"])
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise ArtifactError(f"manifest {where}: bad 'taxonomy': {e}") from e


def load_model(path: Path, *, check_versions: bool = True) -> LoadedModel:
    """Load and verify a model version folder (or the newest version under a name folder)."""
    vdir = resolve_model_dir(path)
    try:
        manifest = json.loads((vdir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"cannot read manifest {vdir / MANIFEST_FILE}: {e}") from e
    _check_manifest(manifest, vdir / MANIFEST_FILE)
    model_file = vdir / manifest.get("model_file", MODEL_FILE)
    if not model_file.is_file():
        raise ArtifactError(f"model file {model_file} is missing")
    digest = sha256_file(model_file)
    if digest != manifest["sha256"]:
        raise ArtifactError(
            f"sha256 mismatch for {model_file}: manifest says {manifest['sha256'][:12]}…, file is "
            f"{digest[:12]}…; the file was modified or corrupted, refusing to unpickle it"
        )
    if check_versions:
        built, here = manifest["versions"], runtime_versions()
        for lib in ("scikit-learn", "numpy"):
            if _minor(built.get(lib, "?")) != _minor(here[lib]):
                raise ArtifactError(
                    f"model {vdir} was built with {lib} {built.get(lib)}, this environment has {here[lib]}; "
                    f"install {lib}=={_minor(built.get(lib, '?'))}.* or retrain the model"
                )
        if built.get("normalization") != here["normalization"]:
            raise ArtifactError(
                f"model {vdir} was trained with text normalisation v{built.get('normalization')}, "
                f"this tagger uses v{here['normalization']}; retrain the model"
            )
    try:
        payload = joblib.load(model_file)
        model = TopicModel.from_payload(payload)
    except Exception as e:  # a verified file that still fails to load is an incompatible build
        raise ArtifactError(f"cannot load {model_file}: {e}") from e
    if list(model.topics) != list(manifest["topics"]):
        raise ArtifactError(f"{model_file} topics {list(model.topics)} disagree with its manifest")
    return LoadedModel(model, manifest, vdir)


def publish_model(
    model: TopicModel,
    model_root: Path,
    *,
    extra_manifest: dict[str, Any] | None = None,
    version: int | None = None,
    card: str | None = None,
) -> Path:
    """Write a new version folder atomically and return it. Versions count up from 1."""
    model_root = Path(model_root)
    model_root.mkdir(parents=True, exist_ok=True)
    if version is None:
        existing = list_versions(model_root)
        version = int(existing[-1].name) + 1 if existing else 1
    final = model_root / str(version)
    if final.exists():
        raise ArtifactError(f"{final} already exists; versions are immutable")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_root))
    try:
        model_file = tmp / MODEL_FILE
        joblib.dump(model.to_payload(), model_file, compress=("xz", 6))
        manifest: dict[str, Any] = {
            "name": model_root.resolve().name,  # "models/x/." or "." must still give the folder's name
            "version": str(version),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model_file": MODEL_FILE,
            "sha256": sha256_file(model_file),
            "size_bytes": model_file.stat().st_size,
            "topics": list(model.topics),
            "thresholds": {t: round(float(v), 6) for t, v in zip(model.topics, model.thresholds)},
            "n_features": model.featurizer.n_features,
            "versions": runtime_versions(),
        }
        manifest.update(extra_manifest or {})
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")
        if card is not None:
            (tmp / "MODEL.md").write_text(card, encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        # mkdtemp makes the folder private (0700); a version is read by servers that may run as another
        # user, so it gets the permissions any new folder would (the umask decides).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        os.rename(tmp, final)  # atomic on one filesystem; fails if a racing writer took the number
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final

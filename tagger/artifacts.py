"""Versioned, verified model artifacts: ``models/<name>/<version>/{model.npz, manifest.json, MODEL.md}``.

A model is arrays and JSON only: the weights, idf and vocabulary in a NumPy ``.npz`` read with
``allow_pickle=False``, its settings and provenance in ``manifest.json``. Loading never unpickles
anything, so whoever can write a models folder can at worst make a model fail to load, never run
code in the processes that load it. :func:`load_model` refuses a folder holding a pickle, an
``.npz`` with object arrays or unexpected members, a file whose sha256 disagrees with the manifest,
and a manifest whose name and version disagree with the folders it was found in.
:func:`publish_model` numbers versions, builds the manifest and writes into a hidden temporary
folder that is renamed into place, so a reader (the hot-reloading server) never sees half a model.
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
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any

import numpy as np

from tagger import __version__
from tagger.io import JSONProblem, loads_json
from tagger.model import TopicModel
from tagger.taxonomy import Taxonomy, default_taxonomy
from tagger.text import NORMALIZATION_VERSION

__all__ = [
    "ArtifactError", "NormalizationMismatch", "LoadedModel", "load_model", "publish_model", "copy_version", "build_manifest", "next_version",
    "list_versions", "latest_version_dir", "resolve_model_dir", "sha256_file", "MODEL_FILE", "MANIFEST_FILE",
    "FORMAT",
]

MODEL_FILE = "model.npz"
MANIFEST_FILE = "manifest.json"
#: The artifact format: 2 = arrays in model.npz + settings in manifest.json (1 was a pickle, retired).
FORMAT = 2
#: File suffixes of Python pickles (joblib writes pickles too); a version folder holding one is refused.
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
#: Largest manifest and largest model file accepted, and largest total the .npz may unpack to, so a
#: hostile file cannot exhaust memory before it is refused.
_MAX_MANIFEST_BYTES = 16 << 20
_MAX_MODEL_BYTES = 1 << 30
_MAX_UNPACKED_BYTES = 4 << 30
_VERSION_DIR = re.compile(r"^\d+$")


class ArtifactError(RuntimeError):
    """A model artifact is missing, corrupt, tampered with or incompatible; the message says which."""


class NormalizationMismatch(ArtifactError):
    """A sound model trained with another text normalisation: its features would not match this
    tagger's, so it is not served; ``tagger retrain`` can still gate a successor against it."""


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


def runtime_versions() -> dict[str, str]:
    """Versions recorded in a new manifest. scikit-learn only trains (its version is provenance, not
    a loading requirement), so it is recorded where installed and never imported for it."""
    versions = {"python": platform.python_version(), "numpy": np.__version__, "tagger": __version__,
                "normalization": str(NORMALIZATION_VERSION)}
    try:
        versions["scikit-learn"] = _dist_version("scikit-learn")
    except PackageNotFoundError:
        pass
    return versions


def list_versions(model_root: Path) -> list[Path]:
    """Version folders of one model name, oldest first (numeric order)."""
    if not model_root.is_dir():
        return []
    dirs = [p for p in model_root.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name)]
    return sorted(dirs, key=lambda p: int(p.name))


def next_version(model_root: Path) -> int:
    """The number the next published version of ``model_root`` gets: one past the newest, from 1."""
    existing = list_versions(Path(model_root))
    return int(existing[-1].name) + 1 if existing else 1


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
    what = "no such folder" if not path.exists() else "no manifest.json there, nor version folders 1, 2, ... under it"
    raise ArtifactError(f"no model found at {path}: {what}")


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_manifest(manifest: Any, where: Path) -> None:
    """Refuse a manifest whose fields have the wrong shape, each with a message naming the field, so a
    hand-edited or damaged manifest is an ArtifactError, never a crash further on."""
    def bad(key: str, expected: str) -> ArtifactError:
        return ArtifactError(f"manifest {where}: '{key}' must be {expected}")

    if not isinstance(manifest, dict):
        raise ArtifactError(f"manifest {where} must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        found = manifest.get("format", manifest.get("model_file", "none"))
        raise ArtifactError(
            f"manifest {where}: artifact format {found!r} is not {FORMAT} (arrays in {MODEL_FILE}); a format-1 model "
            "is a pickle, which tagger no longer loads: retrain it (tagger train / tagger retrain)")
    for key in ("name", "version", "sha256", "topics", "thresholds", "versions", "featurizer"):
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
    if not isinstance(manifest["featurizer"], dict):
        raise bad("featurizer", "an object of featuriser settings")
    if not isinstance(manifest.get("decision", {}), dict):
        raise bad("decision", "an object of decision-rule settings")
    model_file = manifest.get("model_file", MODEL_FILE)
    # A plain .npz file name: the manifest must not point the loader at a file outside its folder.
    if not isinstance(model_file, str) or Path(model_file).name != model_file or not model_file.endswith(".npz"):
        raise bad("model_file", "the name of a .npz file in the version folder")
    if manifest.get("taxonomy") is not None:
        try:
            Taxonomy.from_dict(manifest["taxonomy"])
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise ArtifactError(f"manifest {where}: bad 'taxonomy': {e}") from e


def _refuse_pickles(vdir: Path) -> None:
    """A version folder holds arrays and JSON only: any pickle in it means it was not written by
    :func:`publish_model` (or was tampered with), so the whole folder is refused."""
    for f in sorted(vdir.iterdir()):
        if not f.is_file():
            continue
        if f.suffix.lower() in _PICKLE_SUFFIXES:
            raise ArtifactError(f"{f} is a pickle; a model folder must hold only arrays (.npz) and JSON, refusing "
                                f"the model in {vdir}")
        with open(f, "rb") as fh:
            head = fh.read(2)
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode of pickle protocols 2-5
            raise ArtifactError(f"{f} is a pickle (by its first bytes); a model folder must hold only arrays (.npz) "
                                f"and JSON, refusing the model in {vdir}")


def _read_arrays(model_file: Path) -> dict[str, np.ndarray]:
    """The model's arrays, read without pickle; refuses unknown members and oversized contents."""
    expected = {f"{name}.npy" for name in TopicModel.ARRAY_KINDS}
    try:
        with zipfile.ZipFile(model_file) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise ArtifactError(f"{model_file} is not a readable .npz archive: {e}") from e
    names = {i.filename for i in infos}
    if names != expected or len(infos) != len(expected):
        raise ArtifactError(f"{model_file} holds {sorted(names)}; a model file holds exactly {sorted(expected)}")
    if sum(i.file_size for i in infos) > _MAX_UNPACKED_BYTES:
        raise ArtifactError(f"{model_file} unpacks to more than {_MAX_UNPACKED_BYTES >> 30} GiB; refusing it")
    try:
        with np.load(model_file, allow_pickle=False) as npz:
            return {name: npz[name] for name in TopicModel.ARRAY_KINDS}
    except ValueError as e:  # "Object arrays cannot be loaded when allow_pickle=False", bad headers
        raise ArtifactError(f"{model_file}: {e}; a model file holds only numeric and text arrays") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ArtifactError(f"{model_file} cannot be read: {e}") from e


def _read_manifest(vdir: Path) -> dict[str, Any]:
    path = vdir / MANIFEST_FILE
    try:
        if path.stat().st_size > _MAX_MANIFEST_BYTES:
            raise ArtifactError(f"manifest {path} is over {_MAX_MANIFEST_BYTES >> 20} MB; refusing it")
        manifest = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, JSONProblem) as e:
        raise ArtifactError(f"cannot read manifest {path}: {e}") from e
    _check_manifest(manifest, path)
    return manifest


def load_model(path: Path, *, check_versions: bool = True) -> LoadedModel:
    """Load and verify a model version folder (or the newest version under a model folder).

    Raises ArtifactError, naming the file and the reason, for a missing, corrupt, tampered,
    misplaced or incompatible model. ``check_versions=False`` skips only the text-pipeline check.
    """
    vdir = resolve_model_dir(path)
    manifest = _read_manifest(vdir)
    where = vdir.resolve()
    # A manifest copied into another model's folder (or a renamed folder) would be served under the
    # wrong name or version: the folders a model is found in must be the ones it was published as.
    if (manifest["name"], str(manifest["version"])) != (where.parent.name, where.name):
        raise ArtifactError(
            f"{vdir}: its manifest says {manifest['name']}/{manifest['version']}, but it is in folder "
            f"{where.parent.name}/{where.name}; a version folder must be <name>/<version> as published")
    _refuse_pickles(vdir)
    model_file = vdir / manifest.get("model_file", MODEL_FILE)
    if not model_file.is_file():
        raise ArtifactError(f"model file {model_file} is missing")
    if model_file.stat().st_size > _MAX_MODEL_BYTES:
        raise ArtifactError(f"model file {model_file} is over {_MAX_MODEL_BYTES >> 30} GiB; refusing it")
    digest = sha256_file(model_file)
    if digest != manifest["sha256"]:
        raise ArtifactError(
            f"sha256 mismatch for {model_file}: manifest says {manifest['sha256'][:12]}…, file is "
            f"{digest[:12]}…; the file was modified or corrupted"
        )
    if check_versions:
        built, here = manifest["versions"].get("normalization"), str(NORMALIZATION_VERSION)
        if built != here:
            raise NormalizationMismatch(
                f"model {vdir} was trained with text normalisation v{built}, this tagger {__version__} uses v{here}, "
                f"so its features would not match: retrain it with this tagger (tagger retrain --model "
                f"{vdir.parent} --same-data, which gates the new version against this one), or serve it with "
                "the tagger release it was built with"
            )
    arrays = _read_arrays(model_file)
    try:
        decision = manifest.get("decision") or {}
        model = TopicModel.from_arrays(arrays, {"topics": manifest["topics"], **manifest["featurizer"],
                                                "empty_fallback": decision.get("empty_fallback")})
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"cannot load {model_file}: {e}") from e
    if list(model.topics) != list(manifest["topics"]):
        raise ArtifactError(f"{model_file} topics {list(model.topics)} disagree with its manifest")
    return LoadedModel(model, manifest, vdir)


def build_manifest(model: TopicModel, *, name: str, version: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of ``model`` as version ``version`` of ``name``, without the file's sha256 and size
    (:func:`publish_model` adds them when it writes the file). ``extra`` adds provenance fields."""
    _, settings = model.to_arrays()
    manifest: dict[str, Any] = {
        "name": name,
        "version": str(version),
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_file": MODEL_FILE,
        "topics": list(model.topics),
        "thresholds": {t: round(float(v), 6) for t, v in zip(model.topics, model.thresholds)},
        "n_features": model.featurizer.n_features,
        "featurizer": {k: settings[k] for k in ("min_df", "max_features", "n_docs")},
        "decision": {"empty_fallback": settings["empty_fallback"]},
        "versions": runtime_versions(),
    }
    reserved = set(manifest) | {"sha256", "size_bytes"}
    clash = reserved & set(extra or {}) - {"created", "versions"}
    if clash:
        raise ValueError(f"extra manifest fields {sorted(clash)} are set by publishing itself")
    manifest.update(extra or {})
    return manifest


def publish_model(
    model: TopicModel,
    model_root: Path,
    *,
    extra_manifest: dict[str, Any] | None = None,
    version: int | None = None,
    card: str | Callable[[dict[str, Any]], str] | None = None,
) -> Path:
    """Write a new version folder atomically and return it. Versions count up from 1.

    ``card`` is MODEL.md's text, or a function of the final manifest that renders it.
    """
    model_root = Path(model_root)
    model_root.mkdir(parents=True, exist_ok=True)
    if version is None:
        version = next_version(model_root)
    final = model_root / str(version)
    if final.exists():
        raise ArtifactError(f"{final} already exists; versions are immutable")
    # "models/x/." or "." must still give the folder's name.
    manifest = build_manifest(model, name=model_root.resolve().name, version=version, extra=extra_manifest)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_root))
    try:
        model_file = tmp / MODEL_FILE
        arrays, _ = model.to_arrays()
        np.savez_compressed(model_file, **arrays)
        manifest["sha256"] = sha256_file(model_file)
        manifest["size_bytes"] = model_file.stat().st_size
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")
        if card is not None:
            (tmp / "MODEL.md").write_text(card(manifest) if callable(card) else card, encoding="utf-8")
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


def copy_version(src: Path, model_root: Path, version: int) -> Path:
    """Publish an existing version folder again as ``version`` under ``model_root`` (e.g. to roll a
    known-good model forward), atomically like :func:`publish_model`: a hidden copy, its manifest's
    name and version set to the folders it will sit in, then renamed into place. The model file is
    copied byte for byte, so its sha256 still matches."""
    model_root = Path(model_root)
    model_root.mkdir(parents=True, exist_ok=True)
    final = model_root / str(version)
    if final.exists():
        raise ArtifactError(f"{final} already exists; versions are immutable")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_root))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        manifest = _read_manifest(tmp)
        manifest.update(name=model_root.resolve().name, version=str(version))
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final

"""The serving model and its hot reload: poll the model folder, load, verify, warm, then swap.

``ModelHolder.current`` is one reference to an immutable :class:`~tagger.tagger.Tagger`. Each RPC
reads it once, so a batch is tagged by one version, and a swap is a single assignment (atomic in
CPython): no request waits for, or fails because of, a reload. "Newest wins": the highest-numbered
version folder that loads and verifies is served; one that fails is logged, remembered (until its
files change) and skipped, and the old model keeps serving. Folders being written by
:func:`tagger.artifacts.publish_model` are hidden ``.tmp-*`` folders and never numbered, so they
are never seen half-written.
"""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tagger.artifacts import ArtifactError, LoadedModel, list_versions, load_model, resolve_model_dir
from tagger.document import from_fields
from tagger.tagger import Tagger, TagOptions

__all__ = ["ModelHolder", "ModelSource", "warm_up"]

log = logging.getLogger("tagger.server.reload")

# Exercises tokenising, scoring, thresholds and evidence (which builds the feature-name table) once,
# so the first real request does not pay for it.
_WARMUP_DOCS = (
    from_fields(id="warmup-1", title="وزير الخارجية يبحث مع نظيره العقوبات والتعاون العسكري",
                text="بحث وزير الخارجية مع نظيره الأمريكي تطورات الأزمة وفرض عقوبات اقتصادية جديدة.\n"
                     "Officials discussed sanctions, trade and a military exercise."),
    from_fields(id="warmup-2", text="فاز المنتخب الوطني في المباراة النهائية لكأس البطولة"),
)


def warm_up(tagger: Tagger) -> None:
    """Run sample documents through the tagger and check its scores; raises ArtifactError if they are bad."""
    for explain in (True, False):
        for result in tagger.tag_many(_WARMUP_DOCS, TagOptions(explain=explain)):
            bad = [t for t, s in result.scores.items() if not (math.isfinite(s) and 0.0 <= s <= 1.0)]
            if bad:
                raise ArtifactError(f"model {tagger.version} gives invalid scores for {bad} on a warm-up document")


class Verifier(Protocol):
    """Vouches for a version folder before it is read (tagger.server_trust.ManifestVerifier)."""

    def verify(self, version_dir: Path) -> dict[str, Any]: ...

    def check_loaded(self, signed: dict[str, Any], loaded_manifest: dict[str, Any], version_dir: Path) -> None: ...


class ModelSource:
    """Where models come from: a model folder (newest version, reloadable) or one pinned version folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        version_dir = resolve_model_dir(self.path)  # raises ArtifactError if there is no model
        # A version folder given directly is pinned; otherwise its parent holds the numbered versions.
        self.root: Path | None = None if version_dir.resolve() == self.path.resolve() else version_dir.parent

    @property
    def reloadable(self) -> bool:
        return self.root is not None

    def versions_newest_first(self) -> list[Path]:
        return list(reversed(list_versions(self.root))) if self.root else [resolve_model_dir(self.path)]


def _signature(folder: Path) -> tuple:
    """Changes when any file in the folder changes (to retry a version that was fixed in place)."""
    try:
        return tuple(sorted((p.name, s.st_size, s.st_mtime_ns) for p in folder.iterdir() if (s := p.stat())))
    except OSError:
        return ()


class ModelHolder:
    """The Tagger being served, plus a background thread that swaps in newer versions."""

    def __init__(self, source: ModelSource, make_tagger: Callable[[LoadedModel], Tagger], *,
                 interval: float = 2.0) -> None:
        self.source = source
        self.make_tagger = make_tagger
        self.interval = interval
        self.current: Tagger | None = None
        # Set by the server to feed its metrics; called after a swap and after each background load.
        self.on_swap: Callable[[str | None, str], None] = lambda old, new: None
        self.on_reload: Callable[[bool], None] = lambda ok: None
        self.last_error = ""
        # Set to require a valid signature on every version before it is read (--model-public-key).
        self.verifier: Verifier | None = None
        self._rejected: dict[Path, tuple] = {}  # version folder -> its files' signature when it failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one load at a time (the poller vs an explicit check_now)

    def load_initial(self) -> Tagger:
        """Load the newest good version; raises ArtifactError if none loads."""
        self.check_now()
        if self.current is None:
            raise ArtifactError(f"no loadable model at {self.source.path}: {self.last_error}")
        return self.current

    def check_now(self) -> bool:
        """Serve the newest good version if it is not the one being served; True if a swap happened."""
        with self._lock:
            serving = self.current.loaded.path.resolve() if self.current else None
            for folder in self.source.versions_newest_first():
                if folder.resolve() == serving:
                    return False
                if self._rejected.get(folder) == (sig := _signature(folder)):
                    continue
                try:
                    loaded = self.load(folder)
                    tagger = self.make_tagger(loaded)
                    warm_up(tagger)
                except Exception as e:  # any failure leaves the old model serving
                    self._rejected[folder] = sig
                    self.last_error = str(e)
                    if self.current is not None:
                        self.on_reload(False)
                    log.error("model version %s not loaded, still serving %s: %s", folder,
                              self.current.version if self.current else "nothing", e)
                    continue
                old, self.current = self.current, tagger
                if old is not None:
                    self.on_reload(True)
                self.on_swap(old.version if old else None, tagger.version)
                log.info("serving model %s from %s%s", tagger.version, loaded.path,
                         f" (was {old.version})" if old else "")
                return True
            return False

    def load(self, folder: Path) -> LoadedModel:
        """Load one version folder, verified first when a verifier is set; raises ArtifactError."""
        if self.verifier is None:
            return load_model(folder)
        signed = self.verifier.verify(folder)
        loaded = load_model(folder)
        self.verifier.check_loaded(signed, loaded.manifest, folder)
        return loaded

    def start(self) -> None:
        """Poll for new versions every ``interval`` seconds in a daemon thread (no-op if pinned or interval 0)."""
        if not self.source.reloadable or self.interval <= 0 or self._thread:
            return
        self._thread = threading.Thread(target=self._run, name="tagger-model-reload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_now()
            except Exception:  # a broken folder listing must not kill the poller
                log.exception("model reload check failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

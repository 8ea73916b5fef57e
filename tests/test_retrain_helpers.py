"""Builders shared by the retrain tests (no tests here): small files cut from the real shared data, a
published live model, a `tagger serve` subprocess and client load against it.

Sizes are small on purpose (300 base gold articles, every 24th corpus article, 8k features, 3 folds,
one job): the machine is shared, and the gate's logic does not need the full data to be exercised.
"""
from __future__ import annotations

import functools
import itertools
import json
import shutil
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from serve_process import ClientLoad, ServeProcess

from tagger.client import TaggerClient
from tagger.taxonomy import Taxonomy, default_taxonomy
from tagger.training.data import Article, read_articles, read_gold
from tagger.training.fit import TrainConfig
from tagger.training.pipeline import train_and_publish

REPO = Path(__file__).resolve().parent.parent
NAME = "arabic-news-topics"
SMALL = {"max_features": 8_000, "cv_folds": 3, "n_jobs": 1}
SMALL_CFG = TrainConfig(seed=3, **SMALL)
BASE_GOLD = 300
QUIET = lambda *a: None


def article_json(a: Article, topics: Iterable[str] | None = None, **extra: object) -> dict:
    out = {"id": a.id, "title": a.title, "text": a.body, "outlet": a.outlet, "sections": list(a.sections),
           "published": a.published}
    if topics is not None:
        out["topics"] = list(topics)
    return out | extra


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@dataclass(frozen=True)
class SmallData:
    tx: Taxonomy
    gold: list[Article]  # all 2,100 gold training articles, file order
    corpus: list[Article]  # every 24th corpus article: all outlets and sections
    dev: Path


@functools.cache
def small_data(shared: Path) -> SmallData:
    tx = default_taxonomy()
    gold = read_gold(shared / "gold/train.jsonl.xz", tx)
    corpus = list(itertools.islice(read_articles(shared / "corpus/ant-train.jsonl.xz"), 0, None, 24))
    return SmallData(tx, gold, corpus, shared / "gold/dev.jsonl")


@dataclass(frozen=True)
class Setup:
    """Files on disk and a model folder whose version 1 (trained on the base gold) is live."""

    data: SmallData
    base_gold: Path
    corpus: Path
    root: Path

    def retrain_args(self) -> list[str]:
        """`tagger retrain` arguments for this base data (the live model's small config is reused)."""
        return ["retrain", "--model", str(self.root), "--corpus", str(self.corpus), "--gold", str(self.base_gold),
                "--gold-eval", str(self.data.dev)]

    def retrain_kwargs(self) -> dict:
        return {"model_root": self.root, "corpus": self.corpus, "gold": [self.base_gold], "gold_eval": [self.data.dev],
                "log": QUIET}


def build_live(folder: Path, shared: Path) -> Setup:
    """Write the base files and publish version 1 under ``folder/models/NAME``."""
    data = small_data(shared)
    base_gold = write_jsonl(folder / "base_gold.jsonl", (article_json(a, a.topics) for a in data.gold[:BASE_GOLD]))
    corpus = write_jsonl(folder / "corpus.jsonl", (article_json(a) for a in data.corpus))
    root = folder / "models" / NAME
    train_and_publish(corpus=corpus, gold=[base_gold], dev=data.dev, taxonomy=data.tx, model_root=root,
                      cfg=SMALL_CFG, log=QUIET)
    return Setup(data, base_gold, corpus, root)


def copy_setup(template: Setup, folder: Path) -> Setup:
    """A private copy of the model folder, so each test promotes into its own."""
    root = folder / "models" / NAME
    shutil.copytree(template.root, root)
    return Setup(template.data, template.base_gold, template.corpus, root)


@pytest.fixture(scope="module")
def live_template(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Setup:
    return build_live(tmp_path_factory.mktemp("live"), shared_dir)


@pytest.fixture()
def live(live_template: Setup, tmp_path: Path) -> Setup:
    return copy_setup(live_template, tmp_path)


# ------------------------------------------------------------------------------ a running server
class Serve(ServeProcess):
    """`tagger serve` for one model root: one worker, fast reload polling, no metrics port."""

    def __init__(self, model_root: Path) -> None:
        super().__init__("--port", "0", "--workers", "1", "--metrics-port", "0", "--reload-interval", "0.2",
                         "--grace", "5", "--model", str(model_root), start_timeout=120)


class Load(ClientLoad):
    """Client threads tagging one document in a loop until stopped: counts answers per model version
    (in order of arrival) and collects every failure."""

    def __init__(self, target: str, document: dict, threads: int = 2) -> None:
        self.client = TaggerClient(target, timeout=30)
        self.document = document
        self.versions: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                version = self.client.tag(self.document).model_version
            except Exception as e:  # every failed RPC fails the test
                self.errors.append(repr(e))
                return
            with self._lock:
                self.versions.append(version)

    def count(self, version: str) -> int:
        with self._lock:
            return Counter(self.versions)[version]

    def wait_for(self, version: str, n: int = 20) -> None:
        """Until ``n`` answers came from ``version`` (bounded: 60 s at most)."""
        for _ in range(1200):
            if self.count(version) >= n or self.errors:
                break
            self.stop.wait(0.05)

"""`tagger train` end to end: read data, fit, evaluate on dev gold, publish a verified version."""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from pathlib import Path

from tagger.artifacts import publish_model, sha256_file
from tagger.document import Document
from tagger.metrics import Report, score
from tagger.tagger import Tagger
from tagger.artifacts import LoadedModel
from tagger.model import TopicModel
from tagger.taxonomy import Taxonomy
from training.data import Article, read_articles, read_gold
from training.fit import TrainConfig, TrainResult, fit_model
from training.weak import load_keyword_rules, load_section_rules

__all__ = ["train_and_publish", "evaluate_model", "data_fingerprint"]


def data_fingerprint(path: Path) -> dict:
    path = Path(path)
    return {"path": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}


def evaluate_model(model: TopicModel, gold: list[Article], version: str = "candidate") -> Report:
    """Score a model on gold articles through the one predict path (Tagger.tag_many)."""
    tagger = Tagger(LoadedModel(model, {"name": "eval", "version": version}, Path(".")))
    docs = [Document(id=a.id, title=a.title, body=a.body) for a in gold]
    pred = {r.id: {t.topic for t in r.topics} for r in tagger.tag_many(docs)}
    return score({a.id: set(a.topics or ()) for a in gold}, pred, model.topics)


def train_and_publish(
    *,
    corpus: Path,
    gold: list[Path],
    dev: Path | None,
    taxonomy: Taxonomy,
    model_root: Path,
    cfg: TrainConfig,
    publish: bool = True,
    extra_articles: list[Article] | None = None,
    log=print,
) -> tuple[TrainResult, Report | None, Path | None]:
    t0 = time.perf_counter()
    gold_articles: list[Article] = []
    for g in gold:
        gold_articles.extend(read_gold(g, taxonomy))
    if extra_articles:
        gold_articles.extend(extra_articles)
    unlabelled = list(read_articles(corpus))
    log(f"read {len(gold_articles)} gold and {len(unlabelled)} corpus articles ({time.perf_counter() - t0:.1f}s)")
    result = fit_model(
        gold_articles, unlabelled, taxonomy, cfg,
        keyword_rules=load_keyword_rules(taxonomy), section_rules=load_section_rules(taxonomy), log=log,
    )
    report = None
    if dev is not None:
        report = evaluate_model(result.model, read_gold(dev, taxonomy))
        log(report.table())
    out = None
    if publish:
        manifest = {
            "seed": cfg.seed,
            "train_config": asdict(cfg),
            "training_data": {"corpus": data_fingerprint(corpus), "gold": [data_fingerprint(g) for g in gold]},
            "n_gold": result.stats["n_gold"],
            "n_unlabelled": result.stats["n_unlabelled"],
            "training_seconds": result.stats["seconds"],
            "metrics": {"dev": ({"file": data_fingerprint(dev)} | report.to_json()) if report and dev else None},
        }
        out = publish_model(result.model, model_root, extra_manifest=manifest)
        log(f"published {out}")
    return result, report, out

"""`tagger train` end to end: read data, fit, evaluate on dev gold, publish a verified version."""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tagger.artifacts import MANIFEST_FILE, LoadedModel, list_versions, publish_model, sha256_file
from tagger.document import Document
from tagger.io import InputError
from tagger.metrics import Report, score
from tagger.model import TopicModel
from tagger.tagger import Tagger
from tagger.taxonomy import Taxonomy
from tagger.training.assemble import assemble_training_data
from tagger.training.card import render_card
from tagger.training.data import Article, read_gold
from tagger.training.fit import TrainConfig, TrainResult, fit_model
from tagger.training.weak import load_keyword_rules, load_section_rules

__all__ = ["train_and_publish", "evaluate_model", "predict_topics", "data_fingerprint"]


def data_fingerprint(path: Path) -> dict:
    path = Path(path)
    return {"path": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}


def predict_topics(model: TopicModel, articles: list[Article], version: str = "candidate") -> dict[str, set[str]]:
    """Each article's chosen topics through the one predict path (Tagger.tag_many)."""
    tagger = Tagger(LoadedModel(model, {"name": "eval", "version": version}, Path(".")))
    docs = [Document(id=a.id, title=a.title, body=a.body) for a in articles]
    return {r.id: {t.topic for t in r.topics} for r in tagger.tag_many(docs)}


def evaluate_model(model: TopicModel, gold: list[Article], version: str = "candidate") -> Report:
    """Score a model on gold articles through the one predict path (Tagger.tag_many)."""
    return score({a.id: set(a.topics or ()) for a in gold}, predict_topics(model, gold, version), model.topics)


def train_and_publish(
    *,
    corpus: Path,
    gold: list[Path],
    dev: Path | None,
    taxonomy: Taxonomy,
    model_root: Path,
    cfg: TrainConfig,
    labels: Sequence[Path] = (),
    publish: bool = True,
    log=print,
    card: bool = False,
) -> tuple[TrainResult, Report | None, Path | None]:
    """Train on ``gold`` + ``corpus`` + ``labels`` (label files: corpus articles given their labels by id,
    training/assemble.py), report on ``dev``, publish a new version. ``card``: also write MODEL.md
    (training/card.py), compared with the previous version's recorded dev metrics when it was scored on
    the same file."""
    t0 = time.perf_counter()
    # Dev is read and checked before training: a bad or empty file must not cost a whole fit.
    dev_articles = read_gold(dev, taxonomy) if dev is not None else None
    if dev_articles is not None and not dev_articles:
        raise InputError(f"{dev}: no articles to report on (pass --dev none to skip the report)")
    data = assemble_training_data(gold=gold, corpus=corpus, labels=labels, taxonomy=taxonomy)
    n_labelled = data.summary["labels"].get("articles", 0)
    log(f"read {len(data.gold) - n_labelled} gold, {n_labelled} label-file and {len(data.unlabelled)} further corpus "
        f"articles ({time.perf_counter() - t0:.1f}s)")
    result = fit_model(
        data.gold, data.unlabelled, taxonomy, cfg,
        keyword_rules=load_keyword_rules(taxonomy), section_rules=load_section_rules(taxonomy), log=log,
    )
    report = None
    if dev_articles is not None:
        report = evaluate_model(result.model, dev_articles)
        log(report.table())
    out = None
    if publish:
        manifest = {
            "taxonomy": taxonomy.to_dict(),
            "seed": cfg.seed,
            "train_config": asdict(cfg),
            "training_data": {"corpus": data_fingerprint(corpus), "gold": [data_fingerprint(g) for g in gold]}
            | ({"labels": [data_fingerprint(p) for p in labels]} if labels else {}),
            "n_gold": result.stats["n_gold"],
            "n_unlabelled": result.stats["n_unlabelled"],
            "training_seconds": result.stats["seconds"],
            "data_summary": data.summary,
            "metrics": {"dev": ({"file": data_fingerprint(dev)} | report.to_json()) if report and dev else None},
        }
        if card:
            out = _publish_with_card(result.model, Path(model_root), manifest, dev)
        else:
            out = publish_model(result.model, model_root, extra_manifest=manifest)
        log(f"published {out}")
    return result, report, out


def _publish_with_card(model: TopicModel, model_root: Path, manifest: dict, dev: Path | None) -> Path:
    """Publish with MODEL.md, compared with the previous version's dev metrics when it was scored on
    the same dev file."""
    previous = None
    newest = list_versions(model_root)[-1:] if Path(model_root).is_dir() else []
    if newest and dev is not None:
        try:
            old = json.loads((newest[0] / MANIFEST_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            old = {}
        old_dev = (old.get("metrics") or {}).get("dev") or {}
        if old_dev.get("file", {}).get("sha256") == sha256_file(dev):
            previous = {"version": old.get("version"), "metrics": {"dev": old_dev}}
    return publish_model(model, model_root, extra_manifest=manifest, card=lambda m: render_card(m, previous))

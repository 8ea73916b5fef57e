"""Retraining with gated promotion: new data in, a candidate out, shipped only if it is not worse.

    base gold + base corpus + label files (corpus articles labelled by id) + new data (labelled / unlabelled / site-tagged) + corrections by id
        → the same pipeline as `tagger train` (tagger.training.fit.fit_model, same rules, the live model's
          training configuration) → candidate
        → candidate and live model scored side by side on the gate gold set(s) (tagger.training.gate)
        → promoted as the next version folder (atomically, with MODEL.md) only if it passes the gate;
          otherwise refused, per topic.

The live model is the newest version under the model folder that loads and verifies: the one a
hot-reloading `tagger serve` is serving. Without one there is nothing to gate against, so a model
folder with versions of which none loads, a folder that holds model folders or versions of its own,
or a folder with no versions is an error; only ``first_version=True`` publishes version 1 of a new
model, ungated. A promoted version is picked up by the server's folder watch.

Every input (gold, corpus, label files, new data, corrections, gate gold, rules) is read and checked before
training starts, and the gate gold must share no id with the training gold.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagger.artifacts import (
    MANIFEST_FILE,
    ArtifactError,
    LoadedModel,
    NormalizationMismatch,
    build_manifest,
    list_versions,
    load_model,
    next_version,
    publish_model,
)
from tagger.model import TopicModel
from tagger.taxonomy import Taxonomy, default_taxonomy
from tagger.training.assemble import assemble_training_data
from tagger.training.card import render_card
from tagger.training.fit import TrainConfig, fit_model
from tagger.training.gate import Decision, GatePolicy, compare
from tagger.training.pipeline import data_fingerprint, predict_topics
from tagger.training.data import read_gold
from tagger.training.tags import TagAudit, TagAuditConfig, audit_tags
from tagger.training.weak import load_keyword_rules, load_section_rules

__all__ = ["RetrainError", "RetrainResult", "retrain"]

Log = Callable[[str], None]


class RetrainError(ValueError):
    """The inputs cannot be retrained from as given (not a refusal by the gate); the message says why."""


@dataclass
class RetrainResult:
    decision: Decision
    model: TopicModel
    manifest: dict[str, Any]
    card: str
    report: dict[str, Any]  # the deterministic summary written by --report
    audit: TagAudit | None
    published: Path | None

    @property
    def exit_code(self) -> int:
        return 0 if self.decision.promote else 1


def _live_model(model_root: Path, first_version: bool, log: Log) -> LoadedModel | None:
    """The newest version under ``model_root`` that loads and verifies: what a hot-reloading server
    serves. None only for a folder with no versions when ``first_version`` asks for version 1; every
    other way of finding no live model is a RetrainError, since without one the gate cannot run."""
    if model_root.exists() and not model_root.is_dir():
        raise RetrainError(f"model root {model_root} is not a folder")
    if (model_root / MANIFEST_FILE).is_file():
        raise RetrainError(f"{model_root} is a model version folder; pass the model folder that holds the "
                           f"versions: --model {model_root.parent}")
    versions = list_versions(model_root)
    if not versions:
        names = sorted(p.name for p in model_root.iterdir() if p.is_dir() and list_versions(p)) \
            if model_root.is_dir() else []
        if names:
            raise RetrainError(f"{model_root} holds model folders ({', '.join(names)}), not versions; pass the "
                               f"model folder, e.g. --model {model_root / names[0]}")
        if not first_version:
            missing = "" if model_root.is_dir() else " (the folder does not exist)"
            raise RetrainError(f"no model versions under {model_root}{missing}, so there is no live model to gate "
                               "against; pass --first-version to create version 1 (published ungated)")
        return None
    if first_version:
        raise RetrainError(f"--first-version, but {model_root} already has version(s) "
                           f"{', '.join(v.name for v in versions)}; drop it to retrain against the live version")
    failed: list[tuple[str, ArtifactError]] = []
    for vdir in reversed(versions):
        try:
            return load_model(vdir)
        except NormalizationMismatch as e:
            # A sound model from before a text-pipeline change: it cannot be served any more, but it is
            # the model being served until its successor ships, so the gate still compares against it,
            # scored with this pipeline (only texts the change touches score differently).
            log(f"warning: {e}; gating against it with this tagger's text pipeline")
            return load_model(vdir, check_versions=False)
        except ArtifactError as e:
            log(f"skipping version {vdir.name}: {e}")
            failed.append((vdir.name, e))
    newest, error = failed[0]
    others = f" (version(s) {', '.join(n for n, _ in reversed(failed[1:]))} do not load either)" if failed[1:] else ""
    raise RetrainError(f"no version under {model_root} loads, so the candidate cannot be gated: version {newest}: "
                       f"{error}{others}. Nothing was trained or published: make a version load again, or publish "
                       "a new model deliberately with `tagger train`")


def _counts(counts: Mapping[str, Any]) -> str:
    """``{"labelled": 2, "replaced_gold": 0}`` as "2 labelled, 0 replaced gold" (or "none")."""
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) if counts else "none"


def _gold_set_names(paths: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = Path(p).name.split(".")[0] or "gold"
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def _cv_f1(stats: Mapping[str, Any], model: TopicModel) -> dict[str, float]:
    """Per-topic F1 of the out-of-fold scores at the model's thresholds (the training gold's own view)."""
    oof, y = stats["cv_oof_scores"], stats["cv_labels"].astype(bool)
    pred = oof >= model.thresholds
    out = {}
    for j, t in enumerate(model.topics):
        tp = int((pred[:, j] & y[:, j]).sum())
        denom = int(pred[:, j].sum() + y[:, j].sum())
        out[t] = round(2 * tp / denom, 4) if denom else 0.0
    return out


def _resolve_config(live: LoadedModel | None, overrides: Mapping[str, Any]) -> TrainConfig:
    """The live model's training configuration (so a retrain changes the data, not the recipe), with overrides."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: v for k, v in ((live.manifest.get("train_config") if live else None) or {}).items() if k in known}
    bad = set(overrides) - known
    if bad:
        raise RetrainError(f"unknown training setting(s) {sorted(bad)}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**base)


def _resolve_taxonomy(taxonomy: Taxonomy | Path | None, live: LoadedModel | None) -> Taxonomy:
    if isinstance(taxonomy, Taxonomy):
        return taxonomy
    if taxonomy is not None:
        return Taxonomy.load(taxonomy)
    if live is not None and live.manifest.get("taxonomy"):
        return Taxonomy.from_dict(live.manifest["taxonomy"])  # a topic added by an earlier retrain stays
    return default_taxonomy()


def retrain(
    *,
    model_root: Path,
    corpus: Path,
    gold: Sequence[Path],
    gold_eval: Sequence[Path],
    labels: Sequence[Path] = (),
    new: Sequence[Path] = (),
    corrections: Sequence[Path] = (),
    taxonomy: Taxonomy | Path | None = None,
    keywords: Path | None = None,
    sections: Path | None = None,
    config: Mapping[str, Any] | None = None,
    policy: GatePolicy = GatePolicy(),
    tag_audit: TagAuditConfig | None = TagAuditConfig(),
    dry_run: bool = False,
    first_version: bool = False,
    command: str = "tagger retrain",
    log: Log = print,
) -> RetrainResult:
    """Train a candidate on the base + new data, gate it against the live model, publish it if it passes.

    ``taxonomy`` defaults to the live model's (its manifest records one that differs from the
    packaged taxonomy), else the packaged one. ``config`` overrides fields of the live model's
    TrainConfig. ``tag_audit=None`` ignores site tags. ``first_version`` publishes version 1 under a
    model folder with no versions (ungated: there is no live model); without it such a folder is an
    error, as is one whose versions all fail to load. Every input is read and checked before training.
    Raises RetrainError / InputError / ValueError for bad inputs; a refusal is a result (``exit_code``
    1), not an exception.
    """
    t0 = time.perf_counter()
    # Resolved, so that `.`, `..` or a trailing slash still give the model's name (the folder's name).
    model_root = Path(model_root).resolve()
    if not model_root.name:
        raise RetrainError(f"model root {model_root} has no folder name to name the model by")
    live = _live_model(model_root, first_version, log)
    live_version = live.version if live else None
    tx = _resolve_taxonomy(taxonomy, live)
    if live is not None:
        missing = [t for t in live.model.topics if t not in tx]
        if missing:
            raise RetrainError(
                f"the taxonomy lacks topic(s) {missing} that the live model {live_version} serves; removing a topic "
                "is not a retrain (train and publish such a model deliberately with `tagger train`)")
    cfg = _resolve_config(live, config or {})
    log(f"live model: {live_version or 'none (first version)'} under {model_root}; taxonomy: {len(tx)} topics; "
        f"seed {cfg.seed}")

    # Every input is read and checked before training, so a bad file fails in seconds, not after it.
    names = _gold_set_names(gold_eval)
    gold_sets = [(name, read_gold(path, tx)) for name, path in zip(names, gold_eval)]
    for (name, arts), path in zip(gold_sets, gold_eval):
        if not arts:
            raise RetrainError(f"{path}: gate gold set {name} has no articles")
    keyword_rules, section_rules = load_keyword_rules(tx, keywords), load_section_rules(tx, sections)
    data = assemble_training_data(gold=gold, corpus=corpus, labels=labels, new=new, corrections=corrections,
                                  taxonomy=tx)
    log(f"training data: {len(data.gold)} gold, {len(data.unlabelled)} unlabelled articles "
        f"(from label files: {data.summary['labels'].get('articles', 0)}; new: {_counts(data.summary['new'])}; "
        f"corrections: {_counts(data.summary['corrections'])}) ({time.perf_counter() - t0:.1f}s)")
    # The gate gold is never trained on: a shared id would let the candidate be scored on its own labels.
    train_ids = {a.id for a in data.gold}
    overlaps = [(name, path, sum(a.id in train_ids for a in arts), len(arts))
                for (name, arts), path in zip(gold_sets, gold_eval)]
    overlaps = [o for o in overlaps if o[2]]
    if overlaps:
        raise RetrainError(
            "the gate gold must never be trained on, but "
            + "; ".join(f"{n} of {total} articles of gate gold {name} ({path}) are training gold too (same id)"
                        for name, path, n, total in overlaps)
            + ": remove them from --gold/--labels/--new/--corrections, or gate on another --gold-eval set")
    unl_ids = {a.id for a in data.unlabelled}
    for name, arts in gold_sets:
        seen = sum(a.id in unl_ids for a in arts)
        if seen:
            log(f"warning: {seen} of {len(arts)} articles of gate gold {name} are in the unlabelled training data "
                "(weakly labelled, not with their gold labels)")

    audit = None
    tag_rules = None
    if tag_audit is not None:
        tagged_gold = [a for a in data.gold if a.tags]
        tagged_unl = [a for a in data.unlabelled if a.tags] if live is not None else []
        if tagged_gold or tagged_unl:
            # Labels for the audit: gold where an article has it, else what the live model predicts.
            predicted = predict_topics(live.model, tagged_unl) if tagged_unl else {}
            page_topics = [set(a.topics or ()) for a in tagged_gold] + [predicted[a.id] for a in tagged_unl]
            audit = audit_tags([a.tags for a in tagged_gold + tagged_unl], page_topics, tx.ids, tag_audit,
                               {"gold": len(tagged_gold), "live model": len(tagged_unl)})
            log(audit.table())
            tag_rules = audit.rules(tx.ids) or None

    result = fit_model(
        data.gold, data.unlabelled, tx, cfg,
        keyword_rules=keyword_rules, section_rules=section_rules, log=log, tag_rules=tag_rules,
    )
    candidate = result.model

    decision = compare(live.model if live else None, live_version, candidate, gold_sets, policy)
    log(f"gate: {'promote' if decision.promote else 'refuse'} ({len(decision.reasons)} reason(s))")

    version = next_version(model_root)
    fingerprints: dict[str, Any] = {"corpus": data_fingerprint(corpus), "gold": [data_fingerprint(g) for g in gold]}
    for role, paths in (("labels", labels), ("new", new), ("corrections", corrections)):
        if paths:
            fingerprints[role] = [data_fingerprint(p) for p in paths]
    for role, p in (("taxonomy", taxonomy if isinstance(taxonomy, Path) else None), ("keywords", keywords),
                    ("sections", sections)):
        if p is not None:
            fingerprints[role] = data_fingerprint(p)
    summary = data.summary | {"eval_outlets": {n: sorted({a.outlet for a in arts if a.outlet}) for n, arts in gold_sets}}
    metrics = {name: {"file": data_fingerprint(path)} | c.candidate_report.to_json()
               for name, path, c in zip(names, gold_eval, decision.comparisons)}
    provenance: dict[str, Any] = {
        "seed": cfg.seed,
        "train_config": dataclasses.asdict(cfg),
        "training_data": fingerprints,
        "n_gold": result.stats["n_gold"],
        "n_unlabelled": result.stats["n_unlabelled"],
        "training_seconds": result.stats["seconds"],
        "gold_topic_counts": {t: sum(t in (a.topics or ()) for a in data.gold) for t in tx.ids},
        "weak_labels": result.stats.get("weak_labels", {}),
        "cv_f1": _cv_f1(result.stats, candidate),
        "metrics": metrics,
        "data_summary": summary,
        "retrain": {
            "command": command,
            "previous_version": live_version,
            "gate": decision.to_json(),
            "tag_audit": audit.to_json() if audit else None,
        },
    }
    if "tag_rule_positives" in result.stats:
        provenance["tag_rule_positives"] = result.stats["tag_rule_positives"]
    if tx != default_taxonomy():
        provenance["taxonomy"] = tx.to_dict()
    # The manifest the version will carry (publishing adds the file's sha256 and size), so the card
    # and --report show the same thing whether or not it is published.
    manifest = build_manifest(candidate, name=model_root.name, version=version, extra=provenance)
    previous = None
    if live is not None:
        previous = {"version": live.manifest.get("version"),
                    "metrics": {c.name: c.live_report.to_json() for c in decision.comparisons if c.live_report}}
    card = render_card(manifest, previous)

    published = None
    if decision.promote and not dry_run:
        published = publish_model(candidate, model_root, extra_manifest=provenance, version=version, card=card)
        log(f"promoted: published {published}")
    elif decision.promote:
        log(f"dry run: would publish {model_root / str(version)}")
    else:
        log(f"refused: {live_version} stays live")
    report = {
        "decision": decision.to_json(),
        "published": str(published) if published else None,
        "dry_run": dry_run,
        "version": str(version),
        "seed": cfg.seed,
        "train_config": dataclasses.asdict(cfg),
        "data": summary,
        "candidate_metrics": {c.name: c.candidate_report.to_json() for c in decision.comparisons},
        "live_metrics": {c.name: c.live_report.to_json() for c in decision.comparisons if c.live_report},
        "cv_f1": manifest["cv_f1"],
        "tag_audit": audit.to_json() if audit else None,
    }
    return RetrainResult(decision, candidate, manifest, card, report, audit, published)

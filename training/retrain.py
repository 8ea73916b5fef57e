"""Retraining with gated promotion: new data in, a candidate out, shipped only if it is not worse.

    base gold + base corpus + label files (corpus articles labelled by id) + new data (labelled / unlabelled / site-tagged) + corrections by id
        → the same pipeline as `tagger train` (training.fit.fit_model, same rules, the live model's
          training configuration) → candidate
        → candidate and live model scored side by side on the gate gold set(s)
        → promoted as the next version folder (atomically, with MODEL.md) only if micro-F1 and every
          topic with enough support are within tolerance of the live model; otherwise refused, per topic.

The live model is the newest version under the model folder that loads and verifies: the one a
hot-reloading `tagger serve` is serving. Without one there is nothing to gate against, so a model
folder with versions of which none loads, a folder that holds model folders or versions of its own,
or a folder with no versions is an error; only ``--first-version`` (``first_version=True``) publishes
version 1 of a new model, ungated. A promoted version is picked up by the server's folder watch;
``--wait-served`` waits until the server answers with it.

Every input (gold, corpus, label files, new data, corrections, gate gold, rules) is read and checked before
training starts, and the gate gold must share no id with the training gold.

Run as `tagger retrain` or `python -m tagger.training.retrain` (which also has `split-by-date`, used by the
README's walk-through to cut labelled data at a publication date).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from tagger.artifacts import (
    MANIFEST_FILE,
    ArtifactError,
    LoadedModel,
    list_versions,
    load_model,
    publish_model,
)
from tagger.io import InputError, read_jsonl
from tagger.metrics import Report, score
from tagger.model import TopicModel
from tagger.taxonomy import Taxonomy, default_taxonomy
from tagger.training.assemble import (
    Correction,
    TrainingData,
    apply_corrections,
    assemble_training_data,
    read_corrections,
)
from tagger.training.card import render_card
from tagger.training.data import Article, read_gold
from tagger.training.fit import TrainConfig, fit_model
from tagger.training.pipeline import data_fingerprint, predict_topics
from tagger.training.tags import TagAudit, TagAuditConfig, audit_tags
from tagger.training.weak import load_keyword_rules, load_section_rules

__all__ = [
    "Comparison",
    "Correction",
    "Decision",
    "GatePolicy",
    "RetrainError",
    "RetrainResult",
    "TopicGate",
    "TrainingData",
    "apply_corrections",
    "assemble_training_data",
    "compare",
    "main",
    "read_corrections",
    "retrain",
    "split_by_date",
]

Log = Callable[[str], None]


class RetrainError(ValueError):
    """The inputs cannot be retrained from as given (not a refusal by the gate); the message says why."""


# ---------------------------------------------------------------------------------------------- gate
@dataclass(frozen=True)
class GatePolicy:
    """How much worse than the live model a candidate may be and still ship.

    ``tol`` bounds the drop in micro-F1 (over the topics both models have); ``topic_tol`` the drop in
    F1 of each topic with at least ``min_support`` articles in the gate gold set (below that, one
    article moves F1 by many points, so the topic is reported but not gated). A topic the live model
    lacks cannot be compared: it is gated on an absolute ``new_topic_min_f1`` when the gold set has
    enough of it, and reported otherwise.

    A topic is only "worse" when its F1 drop exceeds ``topic_tol`` *and* the candidate gets at least
    ``min_net_losses`` more articles wrong on that topic than the live model (articles it gets right
    and live gets wrong are subtracted). On a few hundred gold articles a 2-3 article wobble moves a
    topic's F1 by 5-7 points in either direction; this paired count keeps such noise from blocking a
    candidate that is better overall, while a real regression (many articles lost) still fails.
    """

    tol: float = 0.01
    topic_tol: float = 0.05
    min_support: int = 10
    new_topic_min_f1: float = 0.5
    min_net_losses: int = 4

    def __post_init__(self) -> None:
        if self.tol < 0 or self.topic_tol < 0 or self.min_support < 1 or not 0 <= self.new_topic_min_f1 <= 1:
            raise ValueError("tolerances must be >= 0, min_support >= 1, new_topic_min_f1 in [0, 1]")
        if self.min_net_losses < 0:
            raise ValueError("min_net_losses must be >= 0")


@dataclass(frozen=True)
class TopicGate:
    topic: str
    support: int
    live_f1: float | None  # None: the live model has no such topic (or there is no live model)
    candidate_f1: float
    status: str  # ok | worse | low support | new | new, weak | no live model
    failed: bool

    def to_json(self) -> dict:
        return {"topic": self.topic, "support": self.support,
                "live_f1": None if self.live_f1 is None else round(self.live_f1, 4),
                "candidate_f1": round(self.candidate_f1, 4), "status": self.status, "failed": self.failed}


@dataclass(frozen=True)
class Comparison:
    """Live vs candidate on one gate gold set."""

    name: str
    n_docs: int
    live_micro_f1: float | None  # over the shared topics
    candidate_micro_f1: float  # over the shared topics (all candidate topics without a live model)
    rows: tuple[TopicGate, ...]
    reasons: tuple[str, ...]  # why it fails; empty if it passes
    candidate_report: Report  # every candidate topic
    live_report: Report | None  # every live topic

    @property
    def failed(self) -> bool:
        return bool(self.reasons)

    def to_json(self) -> dict:
        return {"name": self.name, "n_docs": self.n_docs,
                "live_micro_f1": None if self.live_micro_f1 is None else round(self.live_micro_f1, 4),
                "candidate_micro_f1": round(self.candidate_micro_f1, 4),
                "topics": [r.to_json() for r in self.rows], "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]
    comparisons: tuple[Comparison, ...]
    live_version: str | None
    new_topics: tuple[str, ...]
    policy: GatePolicy

    def to_json(self) -> dict:
        return {"promote": self.promote, "reasons": list(self.reasons), "live_version": self.live_version,
                "new_topics": list(self.new_topics), "policy": dataclasses.asdict(self.policy),
                "comparisons": [c.to_json() for c in self.comparisons]}

    def table(self) -> str:
        """Side-by-side per-topic table per gold set, then the decision and its reasons."""
        out = []
        live = self.live_version or "(none)"
        for c in self.comparisons:
            out.append(f"gate gold {c.name} ({c.n_docs} articles): live {live} vs candidate")
            out.append(f"{'topic':20s} {'support':>7s} {'live F1':>8s} {'cand F1':>8s} {'delta':>7s}  gate")
            for r in c.rows:
                live_f1 = "–" if r.live_f1 is None else f"{r.live_f1:.3f}"
                delta = "–" if r.live_f1 is None else f"{r.candidate_f1 - r.live_f1:+.3f}"
                name = r.topic + (" (new)" if r.status.startswith("new") else "")
                status = {"low support": f"not gated (support < {self.policy.min_support})",
                          "worse": f"FAIL (drop > {self.policy.topic_tol})",
                          "new, weak": f"FAIL (new topic F1 < {self.policy.new_topic_min_f1})"}.get(r.status, r.status)
                if r.status == "new" and r.support == 0:
                    status = "new: no article of it in this gold set"
                out.append(f"{name:20s} {r.support:7d} {live_f1:>8s} {r.candidate_f1:8.3f} {delta:>7s}  {status}")
            if c.live_micro_f1 is None:
                out.append(f"micro-F1 {c.candidate_micro_f1:.3f}")
            else:
                ok = "FAIL" if any("micro-F1" in r for r in c.reasons) else "ok"
                out.append(f"micro-F1 (shared topics) {c.live_micro_f1:.3f} -> {c.candidate_micro_f1:.3f} "
                           f"({c.candidate_micro_f1 - c.live_micro_f1:+.3f})  {ok}")
            out.append("")
        out.append(("PROMOTE" if self.promote else "REFUSED") + ":")
        out.extend(f"  - {r}" for r in self.reasons)
        return "\n".join(out)


def _net_losses(truth: Mapping[str, set[str]], live: Mapping[str, set[str]], cand: Mapping[str, set[str]],
                topic: str) -> int:
    """Articles the candidate gets wrong on ``topic`` and live gets right, minus the reverse."""
    net = 0
    for i, gold in truth.items():
        want = topic in gold
        net += ((topic in live[i]) == want) - ((topic in cand[i]) == want)
    return net


def _compare_one(name: str, gold: Sequence[Article], live: TopicModel | None, candidate: TopicModel,
                 policy: GatePolicy) -> Comparison:
    truth = {a.id: set(a.topics or ()) for a in gold}
    cand_pred = predict_topics(candidate, gold)
    cand_report = score(truth, cand_pred, candidate.topics)
    if live is None:
        rows = tuple(TopicGate(m.topic, m.support, None, m.f1, "no live model", False) for m in cand_report.per_topic)
        return Comparison(name, len(gold), None, cand_report.micro_f1, rows, (), cand_report, None)
    live_pred = predict_topics(live, gold)
    live_report = score(truth, live_pred, live.topics)
    shared = [t for t in candidate.topics if t in live.topics]
    # micro-F1 over the topics both models have, so a new topic neither helps nor hurts the comparison.
    live_shared, cand_shared = score(truth, live_pred, shared), score(truth, cand_pred, shared)
    reasons = []
    if cand_shared.micro_f1 < live_shared.micro_f1 - policy.tol - 1e-9:
        reasons.append(f"{name}: micro-F1 {cand_shared.micro_f1:.3f} is below live {live_shared.micro_f1:.3f} "
                       f"- {policy.tol} ({cand_shared.micro_f1 - live_shared.micro_f1:+.3f})")
    rows = []
    for m in cand_report.per_topic:
        if m.topic in live.topics:
            live_f1 = live_report.f1(m.topic)
            if m.support < policy.min_support:
                status = "low support"
            elif m.f1 < live_f1 - policy.topic_tol - 1e-9 and (
                net := _net_losses(truth, live_pred, cand_pred, m.topic)
            ) >= policy.min_net_losses:
                status = "worse"
                reasons.append(f"{name}: {m.topic} F1 {m.f1:.3f} is below live {live_f1:.3f} - {policy.topic_tol} "
                               f"({m.f1 - live_f1:+.3f}, support {m.support}; P {m.precision:.2f} R {m.recall:.2f}; "
                               f"{net} more articles wrong than live)")
            else:
                status = "ok"
            rows.append(TopicGate(m.topic, m.support, live_f1, m.f1, status, status == "worse"))
        else:
            weak = m.support >= policy.min_support and m.f1 < policy.new_topic_min_f1 - 1e-9
            if weak:
                reasons.append(f"{name}: new topic {m.topic} F1 {m.f1:.3f} is below {policy.new_topic_min_f1} "
                               f"(support {m.support})")
            rows.append(TopicGate(m.topic, m.support, None, m.f1, "new, weak" if weak else "new", weak))
    return Comparison(name, len(gold), live_shared.micro_f1, cand_shared.micro_f1, tuple(rows), tuple(reasons),
                      cand_report, live_report)


def compare(live: TopicModel | None, live_version: str | None, candidate: TopicModel,
            gold_sets: Sequence[tuple[str, Sequence[Article]]], policy: GatePolicy = GatePolicy()) -> Decision:
    """Score both models on each gold set and decide: promote only if no set fails the gate."""
    if not gold_sets:
        raise RetrainError("the gate needs at least one gold set")
    comparisons = tuple(_compare_one(name, gold, live, candidate, policy) for name, gold in gold_sets)
    new_topics = tuple(t for t in candidate.topics if live is not None and t not in live.topics)
    if live is None:
        return Decision(True, ("no live model (--first-version): the candidate becomes the first version, ungated",),
                        comparisons, None, new_topics, policy)
    lost = [t for t in live.topics if t not in candidate.topics]
    reasons = [f"candidate lacks topic(s) {lost} that the live model serves"] if lost else []
    reasons += [r for c in comparisons for r in c.reasons]
    if reasons:
        return Decision(False, tuple(reasons), comparisons, live_version, new_topics, policy)
    ok = []
    for c in comparisons:
        assert c.live_micro_f1 is not None
        gated = [r for r in c.rows if r.status == "ok"]
        ok.append(f"{c.name}: micro-F1 {c.live_micro_f1:.3f} -> {c.candidate_micro_f1:.3f} "
                  f"({c.candidate_micro_f1 - c.live_micro_f1:+.3f}); none of the {len(gated)} topics with support "
                  f">= {policy.min_support} dropped by more than {policy.topic_tol} with "
                  f"{policy.min_net_losses}+ more articles wrong")
    if new_topics:
        ok.append(f"new topic(s) {', '.join(new_topics)}: reported, not compared")
    return Decision(True, tuple(ok), comparisons, live_version, new_topics, policy)


# ------------------------------------------------------------------------------------------ retrain
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
                           f"versions: --model-root {model_root.parent}")
    versions = list_versions(model_root)
    if not versions:
        names = sorted(p.name for p in model_root.iterdir() if p.is_dir() and list_versions(p)) \
            if model_root.is_dir() else []
        if names:
            raise RetrainError(f"{model_root} holds model folders ({', '.join(names)}), not versions; pass the "
                               f"model folder, e.g. --model-root {model_root / names[0]}")
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
        except ArtifactError as e:
            log(f"skipping version {vdir.name}: {e}")
            failed.append((vdir.name, e))
    newest, error = failed[0]
    others = f" (version(s) {', '.join(n for n, _ in reversed(failed[1:]))} do not load either)" if failed[1:] else ""
    raise RetrainError(f"no version under {model_root} loads, so the candidate cannot be gated: version {newest}: "
                       f"{error}{others}. Nothing was trained or published: make a version load again, or publish "
                       "a new model deliberately with `tagger train`")


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
        f"(from label files: {data.summary['labels'].get('articles', 0)}; new: {data.summary['new'] or 'none'}; "
        f"corrections: {data.summary['corrections'] or 'none'}) "
        f"({time.perf_counter() - t0:.1f}s)")
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

    existing = list_versions(model_root)
    version = int(existing[-1].name) + 1 if existing else 1
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
    manifest: dict[str, Any] = {
        "name": model_root.name,
        "version": str(version),
        "topics": list(candidate.topics),
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
        manifest["tag_rule_positives"] = result.stats["tag_rule_positives"]
    if tx != default_taxonomy():
        manifest["taxonomy"] = tx.to_dict()
    previous = None
    if live is not None:
        previous = {"version": live.manifest.get("version"),
                    "metrics": {c.name: c.live_report.to_json() for c in decision.comparisons if c.live_report}}
    card = render_card(manifest, previous)

    published = None
    if decision.promote and not dry_run:
        extra = {k: v for k, v in manifest.items() if k not in ("name", "version", "topics")}
        published = publish_model(candidate, model_root, extra_manifest=extra, version=version, card=card)
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


# ------------------------------------------------------------------------------------------ serving
def wait_until_served(target: str, version: str, timeout: float = 60.0) -> None:
    """Block until the gRPC server at ``target`` answers with model ``version`` (its folder watch
    picked it up); raises TimeoutError."""
    from tagger.client import TaggerClient  # grpc only when asked for

    deadline = time.monotonic() + timeout
    with TaggerClient(target, timeout=max(1.0, timeout)) as client:
        while True:
            try:
                if client.model_info(timeout=5).version == version:
                    return
            except Exception:  # a restarting server: keep asking until the deadline
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{target} did not serve {version} within {timeout:.0f}s")
            time.sleep(0.2)


# ------------------------------------------------------------------------------------------- dates
def _parse_date(text: str) -> _dt.datetime:
    """RSS dates ("Mon, 05 Mar 2018 10:46:41 +0000") or ISO 8601; naive times are taken as UTC."""
    try:
        d = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        d = _dt.datetime.fromisoformat(text.strip())
    return d if d.tzinfo else d.replace(tzinfo=_dt.timezone.utc)


def split_by_date(paths: Sequence[Path], cutoff: str, out_dir: Path) -> dict[str, tuple[int, int]]:
    """Write ``<stem>-before.jsonl`` / ``<stem>-after.jsonl`` per input: articles published before the
    cut-off date (UTC midnight) and on or after it. Lines are copied as they are."""
    cut = _parse_date(cutoff)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path in paths:
        stem = Path(path).name.split(".")[0]
        n = [0, 0]
        with open(out_dir / f"{stem}-before.jsonl", "w", encoding="utf-8") as before, \
                open(out_dir / f"{stem}-after.jsonl", "w", encoding="utf-8") as after:
            for line_no, obj in read_jsonl(path):
                try:
                    late = _parse_date(str(obj.get("published") or "")) >= cut
                except ValueError as e:
                    raise InputError(f"{path}:{line_no}: cannot read 'published' date: {e}") from e
                (after if late else before).write(json.dumps(obj, ensure_ascii=False) + "\n")
                n[late] += 1
        counts[str(path)] = (n[0], n[1])
    return counts


def _split_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tagger.training.retrain split-by-date",
                                description="Split JSONL articles at a publication date (for the retrain walk-through).")
    p.add_argument("--cutoff", required=True, help="date, e.g. 2018-06-01 (UTC); 'before' is strictly earlier")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("paths", type=Path, nargs="+")
    args = p.parse_args(argv)
    try:
        counts = split_by_date(args.paths, args.cutoff, args.out_dir)
    except (InputError, ValueError, OSError) as e:
        print(f"split-by-date: error: {e}", file=sys.stderr)
        return 2
    for path, (before, after) in counts.items():
        print(f"{path}: {before} before, {after} on or after {args.cutoff}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m tagger.training.retrain ARGS` = `tagger retrain ARGS`; plus `split-by-date`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["split-by-date"]:
        return _split_main(argv[1:])
    from tagger.cli import main as tagger_main

    return tagger_main(["retrain", *argv])


if __name__ == "__main__":
    sys.exit(main())

"""Model cards: the MODEL.md written beside each version's manifest.

The card is rendered from the manifest alone (plus the previous version's metrics on the same gold
sets, when there is one), so it states nothing the manifest cannot back: what data and weak-label
sources trained the model, its metrics per topic, where it is known to be weak, and how it compares
with the version it replaces.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tagger.taxonomy import default_taxonomy

__all__ = ["known_weaknesses", "render_card"]

#: Below this F1 on a gold set (with enough support), a topic is listed as a weakness.
WEAK_F1 = 0.6
#: Fewer gold training articles than this, and a topic is listed as thinly labelled.
THIN_GOLD = 50
#: Support needed before a per-topic F1 on a gold set is read as more than noise.
MIN_SUPPORT = 10


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _delta(new: float | None, old: float | None) -> str:
    return "–" if new is None or old is None else f"{new - old:+.3f}"


def known_weaknesses(manifest: Mapping[str, Any]) -> list[str]:
    """Weak spots read off the manifest's numbers (metrics per gold set, gold counts, outlets)."""
    out: list[str] = []
    topics = list(manifest.get("topics", []))
    gold_counts: Mapping[str, int] = manifest.get("gold_topic_counts", {})
    for t in topics:
        n = gold_counts.get(t)
        if n == 0:
            out.append(f"`{t}` has no gold training article: it is learned from weak labels alone.")
        elif n is not None and n < THIN_GOLD:
            out.append(f"`{t}` has only {n} gold training articles; expect unstable thresholds and recall.")
    for name, rep in (manifest.get("metrics") or {}).items():
        if not isinstance(rep, Mapping) or "per_topic" not in rep:
            continue
        for t, m in rep["per_topic"].items():
            if m["support"] >= MIN_SUPPORT and m["f1"] < WEAK_F1:
                side = "misses many" if m["recall"] < m["precision"] else "over-predicts"
                out.append(f"`{t}` is weak on {name} (F1 {m['f1']:.2f}, P {m['precision']:.2f} / R "
                           f"{m['recall']:.2f}: it {side}).")
        thin = [f"`{t}` ({m['support']})" for t, m in rep["per_topic"].items() if m["support"] < MIN_SUPPORT]
        if thin:
            out.append(f"On {name}, F1 of {', '.join(thin)} rests on fewer than {MIN_SUPPORT} articles: one "
                       f"article moves it by several points.")
        missing = [t for t in topics if t not in rep["per_topic"] or rep["per_topic"][t]["support"] == 0]
        if missing:
            out.append(f"{name} has no article of {', '.join(f'`{t}`' for t in missing)}: only the cross-validated "
                       f"F1 on training gold speaks for {'it' if len(missing) == 1 else 'them'}.")
    data = manifest.get("data_summary") or {}
    train_outlets = set(data.get("gold_outlets", []))
    for name, outlets in (data.get("eval_outlets") or {}).items():
        unseen = sorted(set(outlets) - train_outlets)
        if unseen and train_outlets:
            out.append(f"{name} comes from outlet(s) {', '.join(unseen)} that no gold training article is from: "
                       f"its numbers measure transfer to a new site's style, not the training outlets.")
    out.append("Only the title and body are scored; site tags, read-also links and teasers are dropped at "
               "serving time, so tag rules shape training only.")
    return out


def _data_section(m: Mapping[str, Any]) -> list[str]:
    lines = ["## Data", ""]
    td = m.get("training_data") or {}
    for role, files in td.items():
        for f in files if isinstance(files, list) else [files]:
            if isinstance(f, Mapping) and "sha256" in f:
                lines.append(f"- {role}: `{f['path']}` ({f.get('size_bytes', 0):,} bytes, sha256 `{f['sha256'][:12]}…`)")
    data = m.get("data_summary") or {}
    from_labels = (data.get("labels") or {}).get("articles")
    lines.append(f"- {m.get('n_gold', '?')} gold-labelled training articles"
                 + (f" ({from_labels} of them corpus articles labelled by the label files)" if from_labels else "")
                 + f", {m.get('n_unlabelled', '?')} unlabelled corpus articles (weak labels)")
    if data.get("new"):
        n = data["new"]
        lines.append(f"- new data: {n.get('labelled', 0)} labelled articles ({n.get('replaced_gold', 0)} of them "
                     f"replace a base gold article), {n.get('unlabelled', 0)} unlabelled, {n.get('tagged', 0)} "
                     "carrying site tags")
    if data.get("corrections"):
        c = data["corrections"]
        lines.append(f"- corrections: {c.get('entries', 0)} entries, {c.get('changed', 0)} articles' labels changed "
                     f"({c.get('promoted_to_gold', 0)} unlabelled articles became gold)")
    if m.get("gold_topic_counts"):
        counts = ", ".join(f"{t} {n}" for t, n in m["gold_topic_counts"].items())
        lines.append(f"- gold training articles per topic: {counts}")
    if m.get("taxonomy"):
        packaged = default_taxonomy()
        extra = [t["id"] for t in m["taxonomy"]["topics"] if t["id"] not in packaged]
        lines.append(f"- taxonomy: the manifest's `taxonomy` ({len(m['taxonomy']['topics'])} topics); beyond the "
                     f"packaged one: {', '.join(f'`{t}`' for t in extra) or 'none'}")
    return lines + [""]


def _weak_section(m: Mapping[str, Any]) -> list[str]:
    cfg = m.get("train_config") or {}
    lines = ["## Weak-label sources", ""]
    if cfg.get("use_sections", True):
        lines.append("- outlet sections (`training/rules/sections.json`, audited on gold): positives and ruled-out "
                     "topics per section")
    if cfg.get("use_self_training", True):
        lines.append(f"- self-training: a model fitted on gold labels the corpus where p >= "
                     f"{cfg.get('self_train_hi', '?')} (positive) or <= {cfg.get('self_train_lo', '?')} (negative)")
    if cfg.get("use_keywords", True):
        lines.append("- keyword rules: a positive where a topic's phrases occur and the model leans that way")
    audit = (m.get("retrain") or {}).get("tag_audit")
    if audit:
        rules = audit.get("rules") or {}
        lines.append(f"- site tags: audited over {audit['n_docs']} tagged articles; "
                     + (", ".join(f"`{tag}` → {'+'.join(ts)}" for tag, ts in rules.items()) or "no tag qualified")
                     + (f"; navigation noise: {', '.join(f'`{t}`' for t in audit.get('noise', []))}" if audit.get("noise") else ""))
    else:
        lines.append("- site tags: none (no tagged articles in the training data)")
    lines.append(f"- weak rows weigh {cfg.get('weak_weight', '?')} against 1 for gold; classes are balanced per topic")
    weak = m.get("weak_labels") or {}
    if weak:
        lines += ["", "| topic | weak positives | weak negatives | from tag rules |", "|---|---:|---:|---:|"]
        tag_pos = m.get("tag_rule_positives") or {}
        for t, c in weak.items():
            lines.append(f"| {t} | {c['positive']} | {c['negative']} | {tag_pos.get(t, 0)} |")
    return lines + [""]


def _metrics_section(m: Mapping[str, Any], previous: Mapping[str, Any] | None) -> list[str]:
    lines = ["## Metrics", ""]
    prev_metrics = (previous or {}).get("metrics") or {}
    prev_v = (previous or {}).get("version")
    cv = m.get("cv_f1") or {}
    for name, rep in (m.get("metrics") or {}).items():
        if not isinstance(rep, Mapping) or "per_topic" not in rep:
            continue
        prev = prev_metrics.get(name) or {}
        head = "| topic | P | R | F1 | support |" + (f" v{prev_v} F1 | Δ |" if prev else "")
        lines += [f"### {name} ({rep['n_docs']} articles)", "", head,
                  "|---|---:|---:|---:|---:|" + ("---:|---:|" if prev else "")]
        for t, x in rep["per_topic"].items():
            row = f"| {t} | {x['precision']:.3f} | {x['recall']:.3f} | {x['f1']:.3f} | {x['support']} |"
            if prev:
                old = (prev.get("per_topic") or {}).get(t, {}).get("f1")
                row += f" {_f(old)} | {_delta(x['f1'], old)} |"
            lines.append(row)
        summary = f"micro-F1 **{rep['micro_f1']:.3f}**, macro-F1 {_f(rep['macro_f1'])}, mission F1 {rep['mission_f1']:.3f}"
        if prev:
            summary += f" (v{prev_v}: micro-F1 {prev['micro_f1']:.3f}, Δ {rep['micro_f1'] - prev['micro_f1']:+.3f})"
        lines += ["", summary, ""]
    if cv:
        lines += ["Cross-validated F1 on the gold training articles (out-of-fold, at the chosen thresholds): "
                  + ", ".join(f"{t} {v:.2f}" for t, v in cv.items()), ""]
    return lines


def _comparison_section(m: Mapping[str, Any]) -> list[str]:
    gate = (m.get("retrain") or {}).get("gate")
    if not gate:
        return []
    lines = ["## Comparison with the previous version", ""]
    if not gate.get("live_version"):
        return lines + ["No previous version: this is the first one under its model folder.", ""]
    p = gate["policy"]
    lines.append(f"Gate against `{gate['live_version']}`: micro-F1 may drop by at most {p['tol']}, the F1 of each "
                 f"topic with support >= {p['min_support']} by at most {p['topic_tol']}. Decision: "
                 f"**{'promoted' if gate['promote'] else 'refused'}**.")
    for reason in gate.get("reasons", []):
        lines.append(f"- {reason}")
    for comp in gate.get("comparisons", []):
        lines += ["", (f"{comp['name']}: micro-F1 on shared topics {comp['live_micro_f1']:.3f} → "
                      f"{comp['candidate_micro_f1']:.3f} ({comp['candidate_micro_f1'] - comp['live_micro_f1']:+.3f})")]
    if gate.get("new_topics"):
        lines.append(f"\nNew topics (not in the previous version): {', '.join(gate['new_topics'])}.")
    return lines + [""]


def render_card(manifest: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> str:
    """MODEL.md for a version. ``previous``: {"version": "3", "metrics": {gold set: Report.to_json()}}."""
    m = manifest
    name = f"{m.get('name', 'model')}/{m.get('version', '?')}"
    made_by = (m.get("retrain") or {}).get("command") or "tagger train"
    lines = [
        f"# Model card: {name}", "",
        (f"Topics ({len(m.get('topics', []))}): {', '.join(f'`{t}`' for t in m.get('topics', []))}. "
        f"Made by `{made_by}` with seed {m.get('seed', '?')}; the manifest beside this file has the model "
        "file's sha256, thresholds, training configuration and library versions."), "",
    ]
    lines += _data_section(m)
    lines += _weak_section(m)
    lines += _metrics_section(m, previous)
    lines += _comparison_section(m)
    lines += ["## Known weaknesses", ""] + [f"- {w}" for w in known_weaknesses(m)] + [""]
    return "\n".join(lines)

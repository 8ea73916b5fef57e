"""`tagger evaluate --gold PATH`: per-topic P/R/F1, micro/macro/mission F1 for the model and, beside
it, for the keyword labelling functions alone, so the model's gain over keyword tags is visible.
Numbers agree with ``shared/tools/score_topics.py`` (same formulas; a test holds them together)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tagger.cli import CLIError, emit
from tagger.cli._common import add_model_option, check_data_files, load
from tagger.paths import shared_dir


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gold", type=Path, default=shared_dir() / "gold/dev.jsonl",
                   help="gold JSONL with id, title, text, topics (default: ../shared/gold/dev.jsonl)")
    add_model_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--predictions", type=Path, default=None,
                   help="also write the model's predictions as JSONL (id, topics) for score_topics.py")
    p.add_argument("--force", action="store_true", help="overwrite the --predictions file if it exists")
    p.add_argument("--no-keywords", action="store_true", help="skip the keyword-rules baseline")


def run(args: argparse.Namespace) -> int:
    from tagger.document import Document
    from tagger.io import InputError
    from tagger.metrics import score
    from tagger.tagger import InvalidDocumentError, Tagger
    from tagger.taxonomy import UnknownTopicError
    from tagger.text import document_tokens
    from tagger.training.data import read_gold
    from tagger.training.weak import load_keyword_rules

    if args.predictions is not None:  # checked before the work, not after it
        if args.predictions.exists() and not args.force:
            raise CLIError(f"{args.predictions} exists; use --force to overwrite it")
        if not args.predictions.parent.is_dir():
            raise CLIError(f"{args.predictions}: no such directory {args.predictions.parent}")
    check_data_files([args.gold])
    loaded = load(args)
    taxonomy = loaded.taxonomy
    try:
        gold = read_gold(args.gold, taxonomy)
    except (InputError, UnknownTopicError) as e:
        raise CLIError(str(e)) from e
    if not gold:
        raise CLIError(f"{args.gold}: no articles")
    topics = loaded.model.topics
    truth = {a.id: set(a.topics or ()) for a in gold}
    try:
        results = Tagger(loaded).tag_many([Document(id=a.id, title=a.title, body=a.body) for a in gold])
    except InvalidDocumentError as e:
        raise CLIError(f"{args.gold}: {e}") from e
    pred = {r.id: {t.topic for t in r.topics} for r in results}
    model_report = score(truth, pred, topics)
    kw_report = None
    if not args.no_keywords:
        rules = load_keyword_rules(taxonomy)
        kw_pred = {}
        for a in gold:
            fired = rules.fire(document_tokens(a.title, a.body))
            kw_pred[a.id] = {t for t, f in zip(rules.topics, fired) if f and t in topics}
        kw_report = score(truth, kw_pred, topics)
    if args.predictions:
        try:
            with open(args.predictions, "w", encoding="utf-8") as f:
                for r in results:
                    f.write(json.dumps({"id": r.id, "topics": [t.topic for t in r.topics]}, ensure_ascii=False) + "\n")
        except OSError as e:
            raise CLIError(f"{args.predictions}: {e.strerror or e}") from e
    if args.json:
        out = {"gold": str(args.gold), "model_version": loaded.version, "model": model_report.to_json()}
        if kw_report:
            out["keyword_rules"] = kw_report.to_json()
        emit(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    emit(f"model {loaded.version} on {args.gold} ({len(gold)} articles)")
    emit(model_report.table())
    if kw_report:
        emit("\nkeyword rules alone (training/rules/keywords.json)")
        emit(kw_report.table())
        emit(f"\nmodel gain over keyword rules: micro-F1 {model_report.micro_f1 - kw_report.micro_f1:+.3f}")
    return 0
